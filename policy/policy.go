package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// NameRule constrains one kind of value (the subject common name, one SAN
// type, key usages or extended key usages) in Infisical's shape. Each entry
// is a pattern (see Match).
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

// Policy is validated Rules, ready to evaluate requests. Build it with New.
type Policy struct {
	commonName    *NameRule
	altNames      map[string]*NameRule
	keyUsages     *NameRule
	extKeyUsages  *NameRule
	signatureAlgs []string
	keyAlgs       []string
	maxValidity   time.Duration
	maxText       string
}

// New validates rules and returns the Policy, or every problem found at
// once. A policy that can never issue (no key algorithm or no signature
// algorithm allowed, no maximum validity) is an error: default-deny would
// refuse every request.
func New(r Rules) (*Policy, error) {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	checkRule := func(what string, rule *NameRule, vocabulary []string) {
		if rule == nil {
			return
		}
		for _, list := range [][]string{rule.Required, rule.Allowed, rule.Denied} {
			for _, p := range list {
				if p == "" {
					add("%s: empty pattern", what)
					continue
				}
				if vocabulary != nil && !matchesSomeName(p, vocabulary) {
					add("%s: %q matches none of %s", what, p, strings.Join(vocabulary, ", "))
				}
			}
		}
		for _, req := range rule.Required {
			if MatchAny(rule.Denied, req) {
				add("%s: required %q is also denied", what, req)
			}
		}
	}
	checkRule("commonName", r.CommonName, nil)
	for typ, rule := range r.AltNames {
		if !IsOneOf(SANTypeNames, typ) {
			add("altNames: unknown SAN type %q (want one of %s)", typ, strings.Join(SANTypeNames, ", "))
			continue
		}
		checkRule("altNames."+typ, rule, nil)
	}
	checkRule("keyUsages", r.KeyUsages, KeyUsageNames)
	checkRule("extendedKeyUsages", r.ExtendedKeyUsages, ExtKeyUsageNames)

	if len(r.SignatureAlgorithms) == 0 {
		add("signatureAlgorithms: none allowed, the profile could never issue")
	}
	for _, p := range r.SignatureAlgorithms {
		if !matchesSomeName(p, SignatureAlgorithmNames) {
			add("signatureAlgorithms: %q matches none of %s", p, strings.Join(SignatureAlgorithmNames, ", "))
		}
	}
	if len(r.KeyAlgorithms) == 0 {
		add("keyAlgorithms: none allowed, the profile could never issue")
	}
	for _, p := range r.KeyAlgorithms {
		if !matchesSomeName(p, KeyAlgorithmNames) {
			add("keyAlgorithms: %q matches none of %s", p, strings.Join(KeyAlgorithmNames, ", "))
		}
	}
	var maxValidity time.Duration
	if r.MaxValidity == "" {
		add("maxValidity: required")
	} else if d, err := ParseDuration(r.MaxValidity); err != nil {
		add("maxValidity: %v", err)
	} else {
		maxValidity = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Policy{
		commonName:    r.CommonName,
		altNames:      r.AltNames,
		keyUsages:     r.KeyUsages,
		extKeyUsages:  r.ExtendedKeyUsages,
		signatureAlgs: r.SignatureAlgorithms,
		keyAlgs:       r.KeyAlgorithms,
		maxValidity:   maxValidity,
		maxText:       r.MaxValidity,
	}, nil
}

func matchesSomeName(pattern string, names []string) bool {
	for _, n := range names {
		if Match(pattern, n) {
			return true
		}
	}
	return false
}

// MaxValidity is the longest certificate lifetime the policy allows.
func (p *Policy) MaxValidity() time.Duration { return p.maxValidity }

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

// Candidate is what a certificate request would produce, as the policy sees it.
type Candidate struct {
	CommonName         string // "" when the request has none
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

func (p *Policy) evaluateCommonName(cn string) []string {
	const typ = "common_name"
	rule := p.commonName
	if rule == nil {
		if cn != "" {
			return []string{typ + " is not allowed by template policy (no subject policies defined)"}
		}
		return nil
	}
	if cn == "" {
		if len(rule.Required) > 0 {
			return []string{"Missing required " + typ + " attribute"}
		}
		return nil
	}
	var v []string
	matchesRequired := MatchAny(rule.Required, cn)
	if len(rule.Required) > 0 && !matchesRequired {
		v = append(v, fmt.Sprintf("%s value '%s' does not match any required patterns: %s", typ, cn, strings.Join(rule.Required, ", ")))
	}
	if MatchAny(rule.Denied, cn) {
		return append(v, fmt.Sprintf("%s value '%s' is denied by template policy", typ, cn))
	}
	if !matchesRequired && !MatchAny(rule.Allowed, cn) && len(rule.Required) == 0 {
		v = append(v, notAllowedMessage(typ+" value", cn, rule.Allowed))
	}
	return v
}

func notAllowedMessage(what, value string, allowed []string) string {
	if hasWildcard(allowed) {
		return fmt.Sprintf("%s '%s' does not match allowed patterns: %s", what, value, strings.Join(allowed, ", "))
	}
	return fmt.Sprintf("%s '%s' is not in allowed values list", what, value)
}

func (p *Policy) evaluateAltNames(sans []SAN) []string {
	var v []string
	byType := map[string][]string{}
	for _, s := range sans {
		byType[s.Type] = append(byType[s.Type], s.Value)
	}
	if len(p.altNames) == 0 {
		for _, s := range sans {
			v = append(v, s.Type+" SAN is not allowed by template policy (no SAN policies defined)")
		}
		return v
	}
	for _, typ := range SANTypeNames {
		rule, values := p.altNames[typ], byType[typ]
		if rule == nil {
			if len(values) > 0 {
				v = append(v, typ+" SAN is not allowed by template policy (not defined in template)")
			}
			continue
		}
		for _, req := range rule.Required {
			if !anyMatches(req, values) {
				v = append(v, fmt.Sprintf("Required %s SAN matching pattern '%s' not found in request", typ, req))
			}
		}
		for _, val := range values {
			if MatchAny(rule.Denied, val) {
				v = append(v, fmt.Sprintf("%s SAN matching denied pattern '%s' found in request", typ, val))
				continue
			}
			if !MatchAny(rule.Required, val) && !MatchAny(rule.Allowed, val) {
				v = append(v, notAllowedMessage(typ+" SAN value", val, rule.Allowed))
			}
		}
	}
	return v
}

func anyMatches(pattern string, values []string) bool {
	for _, val := range values {
		if Match(pattern, val) {
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
		if !anyMatches(req, got) {
			missing = append(missing, req)
		}
	}
	for _, u := range got {
		switch {
		case MatchAny(rule.Denied, u):
			denied = append(denied, u)
		case !MatchAny(rule.Required, u) && !MatchAny(rule.Allowed, u):
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

// sampleLabel replaces `*` when a sample name is made from a pattern.
const sampleLabel = "sample"

// Sample returns a common name and SANs this policy allows, so that a
// sample certificate can be linted at start-up. It takes required patterns
// first, then allowed ones; the common name is repeated as a DNS SAN when
// the DNS rules allow it (server certificates need it, BR 7.1.4.3).
func (p *Policy) Sample() (cn string, sans []SAN) {
	pick := func(rule *NameRule) string {
		if rule == nil {
			return ""
		}
		for _, list := range [][]string{rule.Required, rule.Allowed} {
			for _, pat := range list {
				if v := strings.ReplaceAll(pat, "*", sampleLabel); !MatchAny(rule.Denied, v) {
					return v
				}
			}
		}
		return ""
	}
	cn = pick(p.commonName)
	for _, typ := range SANTypeNames {
		rule := p.altNames[typ]
		if rule == nil {
			continue
		}
		for _, req := range rule.Required {
			sans = append(sans, SAN{Type: typ, Value: strings.ReplaceAll(req, "*", sampleLabel)})
		}
	}
	if dns := p.altNames[SANDNS]; dns != nil && len(dns.Required) == 0 {
		v := cn
		if v == "" || !MatchAny(append(dns.Allowed, dns.Required...), v) || MatchAny(dns.Denied, v) {
			v = pick(dns)
		}
		if v != "" {
			sans = append(sans, SAN{Type: SANDNS, Value: v})
		}
	}
	return cn, sans
}
