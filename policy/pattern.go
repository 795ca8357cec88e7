package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Match reports whether value matches pattern. `*` matches any run of
// characters (including none and including dots, as in Infisical); every
// other character matches itself exactly and case-sensitively. A pattern
// without `*` is therefore an exact comparison.
//
// The matcher is iterative with single-star backtracking, so it runs in
// O(len(pattern)·len(value)) at worst and cannot be driven into exponential
// time by hostile input.
func Match(pattern, value string) bool {
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case p < len(pattern) && pattern[p] == value[v]:
			p++
			v++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchAny reports whether value matches at least one of patterns.
func MatchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if Match(p, value) {
			return true
		}
	}
	return false
}

// sanPattern is a canonical SAN pattern (DESIGN §3). New builds them, so
// that requests are matched against patterns spelled the way values are.
type sanPattern struct {
	typ  string
	text string // canonical, as messages show it
	kind patternKind

	glob   string       // globKind: over the canonical value; emailKind: over the local part
	domain string       // emailKind: a DNS glob over the domain
	addr   netip.Addr   // addrKind
	prefix netip.Prefix // prefixKind
	uri    uriPattern   // uriKind
}

type patternKind int

const (
	globKind   patternKind = iota // `*` glob over the canonical text
	addrKind                      // one IP address
	prefixKind                    // a CIDR prefix
	emailKind                     // local-part glob @ domain pattern
	uriKind                       // a URI by parts
)

// parseSANPattern canonicalizes a pattern for SANs of type typ.
//   - dns_name: a DNS pattern (lower case, A-labels, `*` kept).
//   - ip_address: an address (compared as an address), a CIDR prefix whose
//     host bits are zero, or a `*` glob over the canonical text (10.*).
//   - email: localglob@domainpattern (the local part case-sensitive, the
//     domain a DNS pattern), or without '@' a glob over the whole value.
//   - uri: `*`, or a URI pattern by parts (uriPattern).
func parseSANPattern(typ, raw string) (sanPattern, error) {
	if raw == "" {
		return sanPattern{}, errors.New("empty pattern")
	}
	p := sanPattern{typ: typ}
	switch typ {
	case SANDNS:
		d, err := canonicalDNSPattern(raw)
		if err != nil {
			return sanPattern{}, err
		}
		p.kind, p.glob, p.text = globKind, d, d
	case SANIP:
		switch {
		case strings.Contains(raw, "/"):
			pfx, err := netip.ParsePrefix(raw)
			if err != nil {
				return sanPattern{}, errors.New("Invalid CIDR prefix")
			}
			if a := pfx.Addr(); a.Is4In6() {
				// Values are unmapped, so a mapped prefix is matched as the
				// IPv4 prefix it stands for.
				if pfx.Bits() < 96 {
					return sanPattern{}, errors.New("Invalid CIDR prefix: it mixes IPv4-mapped and other IPv6 addresses")
				}
				pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
			}
			if pfx.Masked() != pfx {
				return sanPattern{}, fmt.Errorf("Invalid CIDR prefix: host bits are set (the prefix is %s)", pfx.Masked())
			}
			p.kind, p.prefix, p.text = prefixKind, pfx, pfx.String()
		case strings.Contains(raw, "*"):
			g := strings.ToLower(raw)
			if strings.Trim(g, "0123456789abcdef.:*") != "" {
				return sanPattern{}, errors.New("Invalid IP pattern: a glob holds only hex digits, '.', ':' and '*'")
			}
			p.kind, p.glob, p.text = globKind, g, g
		default:
			a, err := parseIP(raw)
			if err != nil {
				return sanPattern{}, err
			}
			p.kind, p.addr, p.text = addrKind, a, a.String()
		}
	case SANEmail:
		at := strings.LastIndexByte(raw, '@')
		if at < 0 {
			if !isASCII(raw) {
				return sanPattern{}, errors.New("Invalid email pattern: an email address is ASCII")
			}
			p.kind, p.glob, p.text = globKind, raw, raw
			break
		}
		local := raw[:at]
		if err := checkDotAtom(strings.ReplaceAll(local, "*", "x")); err != nil {
			return sanPattern{}, err
		}
		domain, err := canonicalDNSPattern(raw[at+1:])
		if err != nil {
			return sanPattern{}, fmt.Errorf("Invalid email pattern: the domain is not valid: %w", err)
		}
		p.kind, p.glob, p.domain, p.text = emailKind, local, domain, local+"@"+domain
	case SANURI:
		u, err := parseURIPattern(raw)
		if err != nil {
			return sanPattern{}, err
		}
		p.kind, p.uri, p.text = uriKind, u, u.String()
	default:
		return sanPattern{}, fmt.Errorf("unknown SAN type %q", typ)
	}
	return p, nil
}

// matchMode says what a pattern list is for. Patterns match the same way
// in both modes except where a value has a part the pattern leaves unsaid
// (a URI's port): then an admitting pattern does not match and a denying
// one does, so that neither list can be walked around with that part.
type matchMode int

const (
	admitting matchMode = iota // required and allowed lists, identity lists
	denying                    // denied lists
)

// match reports whether the canonical SAN s (of the pattern's type)
// matches, used as mode says.
func (p sanPattern) match(s SAN, mode matchMode) bool {
	if s.typ != p.typ {
		return false
	}
	switch p.kind {
	case addrKind:
		return p.addr == s.ip
	case prefixKind:
		return p.prefix.Contains(s.ip)
	case emailKind:
		at := strings.LastIndexByte(s.value, '@')
		return Match(p.glob, s.value[:at]) && Match(p.domain, s.value[at+1:])
	case uriKind:
		return p.uri.match(s.uri, mode)
	default:
		return Match(p.glob, s.value)
	}
}

// literal reports whether the pattern stands for exactly one value, which
// decides Infisical's wording ("is not in allowed values list").
func (p sanPattern) literal() bool {
	switch p.kind {
	case addrKind:
		return true
	case prefixKind:
		return false
	case uriKind:
		return p.uri.literal()
	default:
		return !strings.Contains(p.text, "*")
	}
}
