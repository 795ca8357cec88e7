package policy

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Client identities are typed (DESIGN §2), so that one kind of name can
// never pass for another: a certificate whose subject CN reads
// "spiffe://example.internal/admin" is cn:spiffe://example.internal/admin,
// which no uri: pattern matches.

// The identity kinds, as String() spells them before the ':'.
const (
	identityURI     = "uri"
	identityDNS     = "dns"
	identityCN      = "cn"
	identityMachine = "machine"
)

var (
	// ErrAmbiguousIdentity is returned for a client certificate with more
	// than one URI SAN: which one it speaks for is not for pkid to guess
	// (the API answers 401).
	ErrAmbiguousIdentity = errors.New("ambiguous client identity: the certificate has more than one URI SAN")
	// ErrNoIdentity is returned for a client certificate with no URI SAN,
	// no DNS SAN and no subject CN.
	ErrNoIdentity = errors.New("no client identity: the certificate has no URI SAN, no DNS SAN and no subject common name")
)

// Identity is a typed client identity: uri:, dns:, cn: or machine:, with a
// canonical value. Identities are comparable with ==.
type Identity struct {
	kind  string
	value string
	uri   uriValue   // kind uri
	cn    CommonName // kind cn
}

// IdentityFromCertificate derives the identity of a verified client
// certificate: exactly one URI SAN gives uri:<canonical URI> (a URI that
// fails the URI rules is an error); more than one, ErrAmbiguousIdentity;
// else the first DNS SAN gives dns:<canonical name> (a wildcard is refused:
// it names no one host); else a non-empty subject CN gives cn:<canonical
// CN> (identityCommonName); else ErrNoIdentity.
func IdentityFromCertificate(leaf *x509.Certificate) (Identity, error) {
	if leaf == nil {
		return Identity{}, ErrNoIdentity
	}
	uris, err := uriSANs(leaf)
	if err != nil {
		return Identity{}, err
	}
	switch {
	case len(uris) > 1:
		return Identity{}, ErrAmbiguousIdentity
	case len(uris) == 1:
		u, err := canonicalURI(uris[0])
		if err != nil {
			return Identity{}, fmt.Errorf("client certificate URI SAN %q: %w", uris[0], err)
		}
		return Identity{kind: identityURI, value: u.String(), uri: u}, nil
	case len(leaf.DNSNames) > 0:
		d, err := canonicalDNS(leaf.DNSNames[0], false)
		if err != nil {
			return Identity{}, fmt.Errorf("client certificate DNS SAN %q: %w", leaf.DNSNames[0], err)
		}
		return Identity{kind: identityDNS, value: d}, nil
	case leaf.Subject.CommonName != "":
		return cnIdentity(leaf.Subject.CommonName), nil
	default:
		return Identity{}, ErrNoIdentity
	}
}

// cnIdentity is cn:<identityCommonName(raw)>.
func cnIdentity(raw string) Identity {
	c := identityCommonName(raw)
	return Identity{kind: identityCN, value: c.value, cn: c}
}

// identityCommonName canonicalizes a client certificate's subject CN as a
// requested CN is (ParseCommonName, DESIGN §2, §3): one that looks like a
// host name is a DNS name, so DEMO-Client is demo-client. A CN that rule
// refuses is kept as given — a client CA may issue any CN, not only §1's
// alphabet, and one that fails the DNS rules is no host name — and only a
// pattern spelled exactly so matches it.
func identityCommonName(raw string) CommonName {
	if c, err := ParseCommonName(raw); err == nil {
		return c
	}
	return CommonName{value: raw}
}

// oidSubjectAltName is id-ce-subjectAltName (RFC 5280 §4.2.1.6).
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// uriSANs returns the certificate's URI SANs exactly as encoded: crypto/x509
// keeps them only as parsed *url.URL values, and the identity must be the
// canonical form of what the certificate says, not of a re-rendering. A
// certificate built in memory (no raw extension) falls back to leaf.URIs.
func uriSANs(leaf *x509.Certificate) ([]string, error) {
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) != 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence || seq.Class != asn1.ClassUniversal {
			return nil, errors.New("client certificate: malformed subject alternative name extension")
		}
		var uris []string
		for b := seq.Bytes; len(b) > 0; {
			var name asn1.RawValue
			if b, err = asn1.Unmarshal(b, &name); err != nil {
				return nil, errors.New("client certificate: malformed subject alternative name extension")
			}
			// uniformResourceIdentifier [6] IA5String (RFC 5280 §4.2.1.6)
			if name.Class == asn1.ClassContextSpecific && name.Tag == 6 {
				uris = append(uris, string(name.Bytes))
			}
		}
		return uris, nil
	}
	uris := make([]string, len(leaf.URIs))
	for i, u := range leaf.URIs {
		uris[i] = u.String()
	}
	return uris, nil
}

// MachineIdentity returns machine:<name> for a machine identity (§15),
// whose name is ^[a-z0-9][a-z0-9._-]{0,62}$.
func MachineIdentity(name string) (Identity, error) {
	if !validMachineName(name) {
		return Identity{}, fmt.Errorf("invalid machine identity name %q: want 1..63 of a-z 0-9 . _ - starting with a letter or digit", name)
	}
	return Identity{kind: identityMachine, value: name}, nil
}

func validMachineName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ParseIdentity parses the String() form of an identity (records, tests,
// the CLI) and canonicalizes its value by the rules of its kind, so that
// ParseIdentity(id.String()) == id.
func ParseIdentity(s string) (Identity, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok || value == "" {
		return Identity{}, fmt.Errorf("identity %q: want uri:, dns:, cn: or machine: and a value", s)
	}
	switch kind {
	case identityURI:
		u, err := canonicalURI(value)
		if err != nil {
			return Identity{}, fmt.Errorf("identity %q: %w", s, err)
		}
		return Identity{kind: kind, value: u.String(), uri: u}, nil
	case identityDNS:
		d, err := canonicalDNS(value, false)
		if err != nil {
			return Identity{}, fmt.Errorf("identity %q: %w", s, err)
		}
		return Identity{kind: kind, value: d}, nil
	case identityCN:
		return cnIdentity(value), nil
	case identityMachine:
		return MachineIdentity(value)
	case identityACME:
		return ACMEIdentity(value)
	default:
		return Identity{}, fmt.Errorf("identity %q: unknown type %q (want uri, dns, cn, machine or acme)", s, kind)
	}
}

// String is kind:value, e.g. "uri:spiffe://example.internal/demo-client";
// "" for the zero Identity.
func (id Identity) String() string {
	if id.kind == "" {
		return ""
	}
	return id.kind + ":" + id.value
}

// Kind is "uri", "dns", "cn", "machine" or "acme"; "" for the zero Identity.
func (id Identity) Kind() string { return id.kind }

// Value is the canonical value after the type, e.g.
// "spiffe://example.internal/demo-client".
func (id Identity) Value() string { return id.value }

// IsZero reports whether id is the zero Identity (no identity).
func (id Identity) IsZero() bool { return id.kind == "" }

// IdentityPattern is a typed identity pattern from a profile's
// allowedIdentities or managers. It matches only identities of its own
// kind, by that kind's rules: uri: by parts (uriPattern), dns: as a DNS
// glob, cn: as a common-name pattern (cnPattern: a host-like CN by the DNS
// form of the pattern, any other as written), machine: as a `*` glob.
type IdentityPattern struct {
	kind    string
	text    string // canonical pattern after the type
	uri     uriPattern
	cn      cnPattern // kind cn, a pattern with `*`
	changed bool
}

// ParseIdentityPattern parses a typed pattern —
// "uri:spiffe://example.internal/ns/web/*", "dns:*.svc.example.internal",
// "cn:demo-client", "machine:ci-agent" — and canonicalizes its value like a
// value of that kind. An untyped entry is an error naming the typed form to
// write (a guess: uri: for anything with "://", dns: for a dotted host
// name, else cn:).
func ParseIdentityPattern(s string) (IdentityPattern, error) {
	kind, value, ok := strings.Cut(s, ":")
	lower := strings.ToLower(kind)
	switch {
	case ok && lower == identityACME:
		return IdentityPattern{}, fmt.Errorf("%q: ACME accounts are not listed; a profile with acme.enabled lets its accounts issue under its policy", s)
	case !ok || !IsOneOf([]string{identityURI, identityDNS, identityCN, identityMachine}, lower):
		return IdentityPattern{}, fmt.Errorf("%q has no identity type; write %q", s, guessIdentityType(s)+":"+s)
	case value == "":
		return IdentityPattern{}, fmt.Errorf("identity pattern %q: empty value", s)
	}
	p := IdentityPattern{kind: lower, text: value, changed: lower != kind}
	switch lower {
	case identityURI:
		u, err := parseURIPattern(value)
		if err != nil {
			return IdentityPattern{}, fmt.Errorf("identity pattern %q: %w", s, err)
		}
		p.uri, p.text = u, u.String()
	case identityDNS:
		d, err := canonicalDNSPattern(value)
		if err != nil {
			return IdentityPattern{}, fmt.Errorf("identity pattern %q: %w", s, err)
		}
		p.text = d
	case identityCN:
		if !strings.Contains(value, "*") {
			// A literal is the value it names, canonical by the same rule.
			p.text = identityCommonName(value).value
			break
		}
		// A glob keeps both forms, as a commonName policy pattern does
		// ("Demo*" matches "Demo Client" and demo-x.example.internal). A
		// glob that is no valid DNS pattern matches only CNs kept as given.
		p.cn, _ = cnPatternForms(value)
		p.changed = p.changed || p.cn.hasDNS && p.cn.dns != value
	case identityMachine:
		for i := 0; i < len(value); i++ {
			if c := value[i]; c != '*' && !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return IdentityPattern{}, fmt.Errorf("identity pattern %q: a machine name holds only a-z 0-9 . _ - (and * in a pattern)", s)
			}
		}
	}
	p.changed = p.changed || p.text != value
	return p, nil
}

// guessIdentityType suggests the type an untyped pattern most likely means.
func guessIdentityType(s string) string {
	if strings.Contains(s, "://") {
		return identityURI
	}
	if strings.Contains(s, ".") {
		if _, err := canonicalDNSPattern(s); err == nil {
			return identityDNS
		}
	}
	return identityCN
}

// Match reports whether id is of the pattern's kind and matches it.
func (p IdentityPattern) Match(id Identity) bool {
	if p.kind == "" || id.kind != p.kind {
		return false
	}
	switch {
	case p.kind == identityURI:
		return p.uri.match(id.uri, admitting)
	case p.kind == identityCN && p.cn.raw != "":
		return p.cn.match(id.cn)
	}
	return Match(p.text, id.value)
}

// String is the canonical pattern, kind:pattern.
func (p IdentityPattern) String() string {
	if p.kind == "" {
		return ""
	}
	return p.kind + ":" + p.text
}

// Changed reports whether canonicalization changed the pattern (its String
// differs from what was parsed, or a cn: glob matches host names in another
// spelling), so that check-config can warn about it.
func (p IdentityPattern) Changed() bool { return p.changed }

// MatchedAs says how a changed pattern is matched, for check-config's
// warning: its canonical String, quoted, or for a cn: glob both of its forms.
func (p IdentityPattern) MatchedAs() string {
	if p.kind == identityCN && p.cn.hasDNS && p.cn.dns != p.cn.raw {
		return fmt.Sprintf("%q for host names, as written for other common names", identityCN+":"+p.cn.dns)
	}
	return fmt.Sprintf("%q (canonical form)", p.String())
}
