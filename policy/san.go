package policy

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
)

// SAN is a subject alternative name: its declared type and its canonical
// value (DESIGN §3). Only ParseSAN builds one, so a SAN that exists has
// passed the checks of its type; the policy matches, the certificate encodes
// and the record stores Value(), never the string the client sent. SANs are
// comparable: two SANs are == exactly when they have the same type and value.
type SAN struct {
	typ   string
	value string
	ip    netip.Addr // ip_address
	uri   uriValue   // uri
}

// ParseSAN parses raw as a SAN of the declared type and returns its
// canonical form. The error text is safe to show to the client.
//   - dns_name: a DNS name, optionally with a leftmost `*` label; lower
//     case, A-labels (IDNA 2008), no trailing dot.
//   - ip_address: an IPv4 or IPv6 address; IPv4-mapped IPv6 is unmapped,
//     zones are refused, the text is netip's (RFC 5952 for IPv6).
//   - email: local@domain, the local part a dot-atom kept as given, the
//     domain a canonical DNS name.
//   - uri: an absolute URI (see canonicalURI).
func ParseSAN(typ, raw string) (SAN, error) {
	switch typ {
	case SANDNS:
		v, err := canonicalDNS(raw, true)
		if err != nil {
			return SAN{}, err
		}
		return SAN{typ: typ, value: v}, nil
	case SANIP:
		a, err := parseIP(raw)
		if err != nil {
			return SAN{}, err
		}
		return SAN{typ: typ, value: a.String(), ip: a}, nil
	case SANEmail:
		v, err := canonicalEmail(raw)
		if err != nil {
			return SAN{}, err
		}
		return SAN{typ: typ, value: v}, nil
	case SANURI:
		u, err := canonicalURI(raw)
		if err != nil {
			return SAN{}, err
		}
		return SAN{typ: typ, value: u.String(), uri: u}, nil
	default:
		return SAN{}, errors.New("Invalid SAN type")
	}
}

// Type is the declared type: one of SANTypeNames.
func (s SAN) Type() string { return s.typ }

// Value is the canonical text, exactly what the certificate encodes.
func (s SAN) Value() string { return s.value }

// IP is the address of an ip_address SAN (IPv4 or IPv6, never IPv4-mapped,
// never zoned); the zero Addr for other types.
func (s SAN) IP() netip.Addr { return s.ip }

// URI returns a fresh copy of a uri SAN, whose String() is Value(); nil for
// other types. ParseSAN verified that the value parses back to itself.
func (s SAN) URI() *url.URL {
	if s.typ != SANURI {
		return nil
	}
	u, err := url.Parse(s.value)
	if err != nil {
		return nil // unreachable: canonicalURI checked the round trip
	}
	return u
}

// IsWildcard reports whether s is a dns_name with a leftmost `*` label.
func (s SAN) IsWildcard() bool {
	return s.typ == SANDNS && strings.HasPrefix(s.value, "*.")
}

// UniqueSANs returns sans without duplicates (same type and canonical
// value), in first-seen order. Because the values are canonical,
// `ADMIN.example.internal` and `admin.example.internal` are one SAN.
func UniqueSANs(sans []SAN) []SAN {
	if len(sans) == 0 {
		return sans
	}
	seen := make(map[SAN]bool, len(sans))
	out := make([]SAN, 0, len(sans))
	for _, s := range sans {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// parseIP parses an IP address SAN value (RFC 5280 §4.2.1.6: four octets
// for IPv4, sixteen for IPv6). An IPv4-mapped IPv6 address (RFC 4291
// §2.5.5.2) is the IPv4 address — and crypto/x509 encodes it in four
// octets — so it is unmapped, or a policy denying 127.0.0.1 would issue
// ::ffff:127.0.0.1. A zone names an interface of one host and has no
// encoding in a certificate. netip refuses IPv4 octets with leading zeros,
// which some parsers read as octal.
func parseIP(raw string) (netip.Addr, error) {
	a, err := netip.ParseAddr(raw)
	if err != nil {
		return netip.Addr{}, errors.New("Invalid IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("Invalid IP address: a zone is not allowed")
	}
	return a.Unmap(), nil
}

// maxEmailLocal is RFC 5321 §4.5.3.1.1's limit on a local part.
const maxEmailLocal = 64

// canonicalEmail checks an rfc822Name (RFC 5280 §4.2.1.6): a bare addr-spec
// local@domain whose local part is a dot-atom (RFC 5322 §3.4.1; quoted
// strings and comments are refused) of ASCII characters — rfc822Name is an
// IA5String, internationalized mailboxes have their own name form (RFC
// 9598) — and whose domain is a DNS name, canonicalized like any other.
// The local part is kept as given: it is case-sensitive (RFC 5321 §2.4).
func canonicalEmail(raw string) (string, error) {
	local, domain, ok := strings.Cut(raw, "@")
	if !ok || strings.Contains(domain, "@") {
		return "", errors.New("Invalid email address: exactly one @ is required")
	}
	if err := checkDotAtom(local); err != nil {
		return "", err
	}
	d, err := canonicalDNS(domain, false)
	if err != nil {
		return "", errors.New("Invalid email address: the domain is not valid: " + err.Error())
	}
	return local + "@" + d, nil
}

// checkDotAtom checks a local part: 1..64 atext characters in dot-separated
// runs, no leading, trailing or doubled dot (RFC 5322 §3.2.3, §3.4.1).
func checkDotAtom(local string) error {
	if local == "" {
		return errors.New("Invalid email address: the local part is empty")
	}
	if len(local) > maxEmailLocal {
		return errors.New("Invalid email address: the local part is longer than 64 characters")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return errors.New("Invalid email address: the local part may not start or end with a dot or hold two in a row")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c != '.' && !isAtext(c) {
			return errors.New("Invalid email address: the local part must be a dot-atom of ASCII letters, digits and !#$%&'*+-/=?^_`{|}~")
		}
	}
	return nil
}

// isAtext reports whether c is RFC 5322 §3.2.3 atext.
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
