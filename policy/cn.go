package policy

import (
	"errors"
	"net/netip"
	"strings"
)

// maxCommonName is §1's limit (and RFC 5280's ub-common-name, Appendix A.1).
const maxCommonName = 100

// Client-facing texts of the common-name rule, as the API reports them.
const (
	cnCharsetMessage  = "Invalid pattern: only alphanumeric characters, spaces, *, ., @, -, and \\ are allowed."
	cnWildcardMessage = "A wildcard is only allowed as a leading '*.' label"
)

// CommonName is a canonical subject common name. Only ParseCommonName builds
// a non-zero one. A CN that looks like a host name is a DNS name and is
// canonicalized like one (TLS clients that still read the CN compare it as a
// host name, RFC 6125 §6.4.4), so ADMIN.example.internal is
// admin.example.internal; any other CN is kept as given.
type CommonName struct {
	value    string
	host     bool
	wildcard bool
}

// ParseCommonName applies §1's rule — 1..100 characters of letters, digits,
// space and * @ - . \, a `*` only as a leading "*." label — and
// canonicalizes a host-like CN by the DNS rules. A CN of only letters,
// digits, hyphens and dots is host-like unless it is all digits and dots:
// then it must be an IPv4 address in dotted-quad form (kept as given), since
// shorter or zero-padded forms are read as other addresses by some parsers
// (inet_aton reads 0177.1 as 127.0.0.1). A wildcard CN must be a host name.
func ParseCommonName(raw string) (CommonName, error) {
	if raw == "" || len(raw) > maxCommonName {
		return CommonName{}, errors.New("Invalid common name: it must be 1 to 100 characters long")
	}
	for i := 0; i < len(raw); i++ {
		if !isCNChar(raw[i]) {
			return CommonName{}, errors.New(cnCharsetMessage)
		}
	}
	body, wildcard := strings.CutPrefix(raw, "*.")
	if strings.Contains(body, "*") {
		return CommonName{}, errors.New(cnWildcardMessage)
	}
	if !isHostChars(body) {
		if wildcard {
			return CommonName{}, errors.New("Invalid common name: a wildcard common name must be a host name")
		}
		return CommonName{value: raw}, nil
	}
	if !wildcard && strings.Trim(body, "0123456789.") == "" {
		if a, err := netip.ParseAddr(body); err != nil || !a.Is4() {
			return CommonName{}, errors.New("Invalid common name: it looks like an IPv4 address but is not one")
		}
		return CommonName{value: raw}, nil
	}
	v, err := canonicalDNS(raw, true)
	if err != nil {
		return CommonName{}, errors.New("Invalid common name: " + err.Error())
	}
	return CommonName{value: v, host: true, wildcard: wildcard}, nil
}

// String is the canonical CN, "" for the zero value (no CN).
func (c CommonName) String() string { return c.value }

// IsZero reports whether there is no CN.
func (c CommonName) IsZero() bool { return c.value == "" }

// IsWildcard reports whether the CN is a host name with a leftmost `*` label.
func (c CommonName) IsWildcard() bool { return c.wildcard }

// IsHostName reports whether the CN is a (canonical) DNS name, possibly a
// wildcard — the CNs that a dns_name SAN can repeat (CA/B BR 7.1.4.3).
func (c CommonName) IsHostName() bool { return c.host }

// isCNChar is §1's CN alphabet.
func isCNChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" *@-.\\", c) >= 0
}

// isHostChars reports whether s holds only what a host name can: letters,
// digits, hyphens and dots.
func isHostChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// cnPattern is a common-name pattern in both the forms it is matched in: as
// written, a `*` glob for CNs that are not host names, and, when it can
// match a host name, canonicalized as a DNS pattern for host-like CNs.
type cnPattern struct {
	raw    string
	dns    string
	hasDNS bool
}

// parseCNPattern canonicalizes a commonName pattern. A pattern that can
// never match a CN (a character outside the CN alphabet) is an error; so is
// one that looks like a host-name pattern but is not a valid one — unless it
// is made of digits, dots and `*` only, which matches IPv4 CNs.
func parseCNPattern(raw string) (cnPattern, error) {
	if raw == "" {
		return cnPattern{}, errors.New("empty pattern")
	}
	for i := 0; i < len(raw); i++ {
		if !isCNChar(raw[i]) {
			return cnPattern{}, errors.New("it can never match a common name (only letters, digits, space and * @ - . \\ are allowed)")
		}
	}
	p, err := cnPatternForms(raw)
	if err != nil && strings.Trim(raw, "0123456789.*") != "" {
		return cnPattern{}, err
	}
	return p, nil
}

// cnPatternForms builds both forms of a CN pattern; the DNS form only when
// the pattern is made of host-name characters and `*`, and then err says
// why it is no valid DNS pattern (the pattern is returned as written only).
func cnPatternForms(raw string) (p cnPattern, err error) {
	p = cnPattern{raw: raw}
	if !isHostChars(strings.ReplaceAll(raw, "*", "")) {
		return p, nil
	}
	if p.dns, err = canonicalDNSPattern(raw); err == nil {
		p.hasDNS = true
	}
	return p, err
}

// text is the form matched against cn, shown in messages.
func (p cnPattern) text(host bool) string {
	if host && p.hasDNS {
		return p.dns
	}
	return p.raw
}

func (p cnPattern) match(cn CommonName) bool {
	if cn.host {
		return p.hasDNS && Match(p.dns, cn.value)
	}
	return Match(p.raw, cn.value)
}

// literal reports whether the pattern matches one CN only.
func (p cnPattern) literal() bool { return !strings.Contains(p.raw, "*") }
