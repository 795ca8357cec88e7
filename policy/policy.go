package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// NameRule constrains one kind of value (the subject common name, one SAN
// type, key usages or extended key usages) in Infisical's shape. Each entry
// is a pattern: `*` matches any run of characters, anything else itself;
// New canonicalizes name patterns by the rules of their kind.
type NameRule struct {
	Required []string `yaml:"required" json:"required,omitempty"`
	Allowed  []string `yaml:"allowed" json:"allowed,omitempty"`
	Denied   []string `yaml:"denied" json:"denied,omitempty"`
}

// Rules is a profile's policy as written in the config file.
type Rules struct {
	CommonName          *NameRule            `yaml:"commonName"`
	AltNames            map[string]*NameRule `yaml:"altNames"`
	KeyUsages           *NameRule            `yaml:"keyUsages"`
	ExtendedKeyUsages   *NameRule            `yaml:"extendedKeyUsages"`
	SignatureAlgorithms []string             `yaml:"signatureAlgorithms"`
	KeyAlgorithms       []string             `yaml:"keyAlgorithms"`
	MaxValidity         string               `yaml:"maxValidity"`
}

// Policy is validated Rules with canonical patterns, ready to evaluate
// requests. Build it with New.
type Policy struct {
	commonName    *cnRule
	altNames      map[string]*sanRule
	keyUsages     *NameRule
	extKeyUsages  *NameRule
	signatureAlgs []string
	keyAlgs       []string
	maxValidity   time.Duration
	maxText       string
	warnings      []string
}

// cnRule is the commonName rule with canonical patterns.
type cnRule struct {
	required, allowed, denied []cnPattern
}

// sanRule is one SAN type's rule with canonical patterns.
type sanRule struct {
	typ                       string
	required, allowed, denied []sanPattern
}

// literalOnlyEKUs must be named in a required or allowed list: a `*` never
// covers them (DESIGN §3). Each makes a certificate trusted for something
// no ordinary service needs — signing code, time stamps, OCSP responses for
// the CA (RFC 6960 §4.2.2.2) — so a profile issues them only on purpose.
var literalOnlyEKUs = []string{"code_signing", "time_stamping", "ocsp_signing"}

// New validates rules and returns the Policy, or every problem found at
// once. Name patterns are canonicalized by the rules of their kind (see
// ParseSAN, ParseCommonName); a pattern that cannot be is an error naming
// the rule, the list and the pattern, and one that changed is listed by
// Warnings. A policy that can never issue (no key algorithm or no signature
// algorithm allowed, no maximum validity) is an error: default-deny would
// refuse every request.
func New(r Rules) (*Policy, error) {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	p := &Policy{}
	warn := func(where, raw, canon string) {
		if raw != canon {
			p.warnings = append(p.warnings, fmt.Sprintf("%s: %q is matched as %q", where, raw, canon))
		}
	}

	if rule := r.CommonName; rule != nil {
		cr := &cnRule{}
		for _, l := range []struct {
			name string
			in   []string
			out  *[]cnPattern
		}{{"required", rule.Required, &cr.required}, {"allowed", rule.Allowed, &cr.allowed}, {"denied", rule.Denied, &cr.denied}} {
			for _, raw := range l.in {
				pat, err := parseCNPattern(raw)
				if err != nil {
					add("commonName.%s: %q: %v", l.name, raw, err)
					continue
				}
				if pat.hasDNS && pat.dns != raw && strings.Contains(raw, "*") {
					// The glob as written still matches the CNs that are no
					// host names ("Demo*" matches "Demo Client").
					p.warnings = append(p.warnings, fmt.Sprintf("commonName.%s: %q is matched as %q for host names, as written for other common names", l.name, raw, pat.dns))
				} else if pat.hasDNS {
					warn("commonName."+l.name, raw, pat.dns)
				}
				*l.out = append(*l.out, pat)
			}
		}
		for _, req := range cr.required {
			if cr.requiredIsDenied(req) {
				add("commonName: required %q is also denied", req.raw)
			}
		}
		p.commonName = cr
	}

	types := make([]string, 0, len(r.AltNames))
	for typ := range r.AltNames {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		rule := r.AltNames[typ]
		if !IsOneOf(SANTypeNames, typ) {
			add("altNames: unknown SAN type %q (want one of %s)", typ, strings.Join(SANTypeNames, ", "))
			continue
		}
		if rule == nil {
			continue
		}
		sr := &sanRule{typ: typ}
		for _, l := range []struct {
			name string
			in   []string
			out  *[]sanPattern
		}{{"required", rule.Required, &sr.required}, {"allowed", rule.Allowed, &sr.allowed}, {"denied", rule.Denied, &sr.denied}} {
			where := "altNames." + typ + "." + l.name
			for _, raw := range l.in {
				pat, err := parseSANPattern(typ, raw)
				if err != nil {
					add("%s: %q: %v", where, raw, err)
					continue
				}
				warn(where, raw, pat.text)
				*l.out = append(*l.out, pat)
			}
		}
		for _, req := range sr.required {
			if sr.requiredIsDenied(req) {
				add("altNames.%s: required %q is also denied", typ, req.text)
			}
		}
		if p.altNames == nil {
			p.altNames = map[string]*sanRule{}
		}
		p.altNames[typ] = sr
	}

	checkUsages := func(what string, rule *NameRule, vocabulary []string) {
		if rule == nil {
			return
		}
		for _, l := range []struct {
			name       string
			list       []string
			restricted bool
		}{{"required", rule.Required, true}, {"allowed", rule.Allowed, true}, {"denied", rule.Denied, false}} {
			for _, pat := range l.list {
				switch {
				case pat == "":
					add("%s.%s: empty pattern", what, l.name)
				case !matchesSomeName(pat, vocabulary, false):
					add("%s.%s: %q matches none of %s", what, l.name, pat, strings.Join(vocabulary, ", "))
				case l.restricted && !matchesSomeName(pat, vocabulary, true):
					add("%s.%s: %q matches only usages that must be named literally (%s)", what, l.name, pat, strings.Join(literalOnlyEKUs, ", "))
				}
			}
		}
		for _, req := range rule.Required {
			if MatchAny(rule.Denied, req) {
				add("%s: required %q is also denied", what, req)
			}
		}
	}
	checkUsages("keyUsages", r.KeyUsages, KeyUsageNames)
	checkUsages("extendedKeyUsages", r.ExtendedKeyUsages, ExtKeyUsageNames)

	if len(r.SignatureAlgorithms) == 0 {
		add("signatureAlgorithms: none allowed, the profile could never issue")
	}
	for _, pat := range r.SignatureAlgorithms {
		if !matchesSomeName(pat, SignatureAlgorithmNames, false) {
			add("signatureAlgorithms: %q matches none of %s", pat, strings.Join(SignatureAlgorithmNames, ", "))
		}
	}
	if len(r.KeyAlgorithms) == 0 {
		add("keyAlgorithms: none allowed, the profile could never issue")
	}
	for _, pat := range r.KeyAlgorithms {
		if !matchesSomeName(pat, KeyAlgorithmNames, false) {
			add("keyAlgorithms: %q matches none of %s", pat, strings.Join(KeyAlgorithmNames, ", "))
		}
	}
	if r.MaxValidity == "" {
		add("maxValidity: required")
	} else if d, err := ParseDuration(r.MaxValidity); err != nil {
		add("maxValidity: %v", err)
	} else {
		p.maxValidity = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.keyUsages = cloneRule(r.KeyUsages)
	p.extKeyUsages = cloneRule(r.ExtendedKeyUsages)
	p.signatureAlgs = append([]string(nil), r.SignatureAlgorithms...)
	p.keyAlgs = append([]string(nil), r.KeyAlgorithms...)
	p.maxText = r.MaxValidity
	return p, nil
}

// cloneRule copies a rule, so that the Policy does not share the caller's
// slices.
func cloneRule(r *NameRule) *NameRule {
	if r == nil {
		return nil
	}
	return &NameRule{
		Required: append([]string(nil), r.Required...),
		Allowed:  append([]string(nil), r.Allowed...),
		Denied:   append([]string(nil), r.Denied...),
	}
}

// requiredIsDenied reports a required pattern that a denied one refuses: a
// literal one as the value it stands for, a glob by its text.
func (r *cnRule) requiredIsDenied(req cnPattern) bool {
	if req.literal() {
		if cn, err := ParseCommonName(req.raw); err == nil {
			return anyCN(r.denied, cn)
		}
	}
	for _, d := range r.denied {
		if Match(d.raw, req.raw) || req.hasDNS && d.hasDNS && Match(d.dns, req.dns) {
			return true
		}
	}
	return false
}

func (r *sanRule) requiredIsDenied(req sanPattern) bool {
	if req.literal() {
		if v, err := ParseSAN(r.typ, req.text); err == nil {
			return anySAN(r.denied, v, denying)
		}
	}
	for _, d := range r.denied {
		if Match(d.text, req.text) {
			return true
		}
	}
	return false
}

// matchesSomeName reports whether pattern matches a name of the vocabulary;
// restricted applies the literal-only rule of required and allowed lists.
func matchesSomeName(pattern string, names []string, restricted bool) bool {
	for _, n := range names {
		if usageMatch(pattern, n, restricted) {
			return true
		}
	}
	return false
}

// usageMatch matches a usage pattern; restricted (required and allowed
// lists), a pattern with `*` never matches a literal-only EKU.
func usageMatch(pattern, name string, restricted bool) bool {
	if restricted && strings.Contains(pattern, "*") && IsOneOf(literalOnlyEKUs, name) {
		return false
	}
	return Match(pattern, name)
}

func usageMatchAny(patterns []string, name string, restricted bool) bool {
	for _, p := range patterns {
		if usageMatch(p, name, restricted) {
			return true
		}
	}
	return false
}

// Warnings lists the patterns New canonicalized into something other than
// what the config says (`check-config` prints them), e.g.
// `commonName.allowed: "API.Example.internal" is matched as "api.example.internal"`.
func (p *Policy) Warnings() []string { return append([]string(nil), p.warnings...) }

// MaxValidity is the longest certificate lifetime the policy allows.
func (p *Policy) MaxValidity() time.Duration { return p.maxValidity }

// RequiresExtKeyUsage reports whether the EKU rule has a required entry, so
// that every certificate carries an EKU. A certificate without one is valid
// for any purpose (RFC 5280 §4.2.1.12), which a profile must not allow by
// accident.
func (p *Policy) RequiresExtKeyUsage() bool {
	return p.extKeyUsages != nil && len(p.extKeyUsages.Required) > 0
}

// AllowedSignatureAlgorithms lists the API signature algorithms the policy
// allows, in vocabulary order.
func (p *Policy) AllowedSignatureAlgorithms() []string {
	return filterNames(SignatureAlgorithmNames, p.signatureAlgs)
}

// AllowedKeyAlgorithms lists the API key algorithms the policy allows.
func (p *Policy) AllowedKeyAlgorithms() []string { return filterNames(KeyAlgorithmNames, p.keyAlgs) }

func filterNames(names, patterns []string) []string {
	var out []string
	for _, n := range names {
		if MatchAny(patterns, n) {
			out = append(out, n)
		}
	}
	return out
}

// Candidate is what a certificate request would produce, as the policy sees
// it: canonical values only. AltNames are expected without duplicates
// (UniqueSANs).
type Candidate struct {
	CommonName         CommonName // zero when the request has none
	AltNames           []SAN
	KeyUsages          []string
	ExtKeyUsages       []string
	SignatureAlgorithm string
	KeyAlgorithm       string
	Lifetime           time.Duration
	ExplicitWindow     bool // notAfter was given by the client
}

// Evaluate returns every rule the candidate violates, in Infisical's
// wording, in a stable order. An empty result means the policy allows it.
func (p *Policy) Evaluate(c Candidate) []string {
	var v []string
	v = append(v, p.evaluateCommonName(c.CommonName)...)
	v = append(v, p.evaluateAltNames(c.AltNames)...)
	v = append(v, evaluateUsages(p.keyUsages, c.KeyUsages, "key usages", "Key usages")...)
	v = append(v, evaluateUsages(p.extKeyUsages, c.ExtKeyUsages, "extended key usages", "Extended key usages")...)
	if !MatchAny(p.signatureAlgs, c.SignatureAlgorithm) {
		v = append(v, fmt.Sprintf("Signature algorithm '%s' is not allowed by template policy", c.SignatureAlgorithm))
	}
	if !MatchAny(p.keyAlgs, c.KeyAlgorithm) {
		v = append(v, fmt.Sprintf("Key algorithm '%s' is not allowed by template policy", c.KeyAlgorithm))
	}
	if c.Lifetime > p.maxValidity {
		if c.ExplicitWindow {
			v = append(v, "Requested validity period (notBefore to notAfter) exceeds maximum allowed duration of "+p.maxText)
		} else {
			v = append(v, "Requested validity period exceeds maximum allowed duration")
		}
	}
	return v
}

func (p *Policy) evaluateCommonName(cn CommonName) []string {
	const typ = "common_name"
	rule := p.commonName
	if rule == nil {
		if !cn.IsZero() {
			return []string{typ + " is not allowed by template policy (no subject policies defined)"}
		}
		return nil
	}
	if cn.IsZero() {
		if len(rule.required) > 0 {
			return []string{"Missing required " + typ + " attribute"}
		}
		return nil
	}
	var v []string
	matchesRequired := anyCN(rule.required, cn)
	if len(rule.required) > 0 && !matchesRequired {
		v = append(v, fmt.Sprintf("%s value '%s' does not match any required patterns: %s", typ, cn, cnTexts(rule.required, cn.host)))
	}
	if anyCN(rule.denied, cn) {
		return append(v, fmt.Sprintf("%s value '%s' is denied by template policy", typ, cn))
	}
	if cn.wildcard {
		var denied []string
		for _, d := range rule.denied {
			if d.hasDNS {
				denied = append(denied, d.dns)
			}
		}
		if covered := coversDenied(cn.value, denied); len(covered) > 0 {
			return append(v, coversMessage(typ+" value", cn.value, covered))
		}
	}
	if !matchesRequired && len(rule.required) == 0 && !anyCN(rule.allowed, cn) {
		literal := true
		for _, a := range rule.allowed {
			literal = literal && a.literal()
		}
		v = append(v, notAllowedMessage(typ+" value", cn.value, cnTexts(rule.allowed, cn.host), literal))
	}
	return v
}

func anyCN(patterns []cnPattern, cn CommonName) bool {
	for _, p := range patterns {
		if p.match(cn) {
			return true
		}
	}
	return false
}

func cnTexts(patterns []cnPattern, host bool) string {
	texts := make([]string, len(patterns))
	for i, p := range patterns {
		texts[i] = p.text(host)
	}
	return strings.Join(texts, ", ")
}

func notAllowedMessage(what, value, patterns string, literal bool) string {
	if !literal {
		return fmt.Sprintf("%s '%s' does not match allowed patterns: %s", what, value, patterns)
	}
	return fmt.Sprintf("%s '%s' is not in allowed values list", what, value)
}

func coversMessage(what, value string, denied []string) string {
	return fmt.Sprintf("%s '%s' covers names denied by template policy: %s", what, value, strings.Join(denied, ", "))
}

func (p *Policy) evaluateAltNames(sans []SAN) []string {
	var v []string
	if len(p.altNames) == 0 {
		for _, s := range sans {
			v = append(v, fmt.Sprintf("%s SAN value '%s' is not allowed by template policy (no SAN policies defined)", s.typ, s.value))
		}
		return v
	}
	byType := map[string][]SAN{}
	for _, s := range sans {
		if !IsOneOf(SANTypeNames, s.typ) {
			// Only a SAN{} built outside ParseSAN has no type: fail closed.
			v = append(v, fmt.Sprintf("SAN value '%s' of unknown type '%s' is not allowed by template policy", s.value, s.typ))
			continue
		}
		byType[s.typ] = append(byType[s.typ], s)
	}
	for _, typ := range SANTypeNames {
		rule, values := p.altNames[typ], byType[typ]
		if rule == nil {
			for _, s := range values {
				v = append(v, fmt.Sprintf("%s SAN value '%s' is not allowed by template policy (not defined in template)", typ, s.value))
			}
			continue
		}
		for _, req := range rule.required {
			if !anyValue(req, values) {
				v = append(v, fmt.Sprintf("Required %s SAN matching pattern '%s' not found in request", typ, req.text))
			}
		}
		for _, s := range values {
			if msg, ok := rule.refusal(s); ok {
				v = append(v, msg)
			}
		}
	}
	return v
}

// refusal is the violation one SAN value commits against its type's rule,
// if any: denied, a wildcard covering denied names, or not allowed.
func (r *sanRule) refusal(s SAN) (string, bool) {
	if anySAN(r.denied, s, denying) {
		return fmt.Sprintf("%s SAN matching denied pattern '%s' found in request", r.typ, s.value), true
	}
	if s.IsWildcard() {
		var denied []string
		for _, d := range r.denied {
			denied = append(denied, d.glob)
		}
		if covered := coversDenied(s.value, denied); len(covered) > 0 {
			return coversMessage(r.typ+" SAN value", s.value, covered), true
		}
	}
	if !anySAN(r.required, s, admitting) && !anySAN(r.allowed, s, admitting) {
		literal := true
		texts := make([]string, len(r.allowed))
		for i, a := range r.allowed {
			literal = literal && a.literal()
			texts[i] = a.text
		}
		return notAllowedMessage(r.typ+" SAN value", s.value, strings.Join(texts, ", "), literal), true
	}
	return "", false
}

func anySAN(patterns []sanPattern, s SAN, mode matchMode) bool {
	for _, p := range patterns {
		if p.match(s, mode) {
			return true
		}
	}
	return false
}

// anyValue reports whether the required pattern p is met by one of values.
func anyValue(p sanPattern, values []SAN) bool {
	for _, s := range values {
		if p.match(s, admitting) {
			return true
		}
	}
	return false
}

func evaluateUsages(rule *NameRule, got []string, lower, title string) []string {
	if rule == nil {
		if len(got) > 0 {
			return []string{title + " are not allowed by template policy (not defined in template)"}
		}
		return nil
	}
	var missing, denied, invalid []string
	for _, req := range rule.Required {
		found := false
		for _, u := range got {
			found = found || usageMatch(req, u, true)
		}
		if !found {
			missing = append(missing, req)
		}
	}
	for _, u := range got {
		switch {
		case MatchAny(rule.Denied, u):
			denied = append(denied, u)
		case !usageMatchAny(rule.Required, u, true) && !usageMatchAny(rule.Allowed, u, true):
			invalid = append(invalid, u)
		}
	}
	var v []string
	if len(missing) > 0 {
		v = append(v, "Missing required "+lower+": "+strings.Join(missing, ", "))
	}
	if len(denied) > 0 {
		v = append(v, "Denied "+lower+" found in request: "+strings.Join(denied, ", "))
	}
	if len(invalid) > 0 {
		v = append(v, "Invalid "+lower+": "+strings.Join(invalid, ", "))
	}
	return v
}
