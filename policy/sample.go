package policy

import "strings"

// sampleFillers replace `*` when a sample value is made from a pattern of a
// SAN type, tried in order until the result is a valid value the pattern
// and its rule accept.
func sampleFillers(typ string) []string {
	switch typ {
	case SANIP:
		return []string{"1", "0.1", "0.0.1", "10.0.0.1", ":1", "1::1", "::1"}
	case SANEmail:
		return []string{"sample", "sample@example.internal"}
	case SANURI:
		return []string{"sample", "spiffe://example.internal/sample"}
	default: // dns_name
		return []string{"sample"}
	}
}

// sampleLabel replaces `*` in a common-name pattern.
const sampleLabel = "sample"

// Sample returns a common name and SANs this policy allows, so that a
// sample certificate can be linted at start-up. It takes required patterns
// first, then allowed ones; the common name is repeated as a DNS SAN when
// it is a host name the DNS rules allow (server certificates need it, BR
// 7.1.4.3). A rule whose required patterns no value can meet leaves them
// unmet, and Evaluate then reports the profile's problem.
func (p *Policy) Sample() (CommonName, []SAN) {
	cn := p.sampleCommonName()
	var sans []SAN
	for _, typ := range SANTypeNames {
		rule := p.altNames[typ]
		if rule == nil {
			continue
		}
		for _, req := range rule.required {
			if s, ok := rule.sample(req); ok {
				sans = append(sans, s)
			}
		}
	}
	if dns := p.altNames[SANDNS]; dns != nil && len(dns.required) == 0 {
		s, ok := SAN{}, false
		if cn.IsHostName() {
			if v, err := ParseSAN(SANDNS, cn.String()); err == nil {
				_, refused := dns.refusal(v)
				s, ok = v, !refused
			}
		}
		for _, pat := range dns.allowed {
			if ok {
				break
			}
			s, ok = dns.sample(pat)
		}
		if ok {
			sans = append(sans, s)
		}
	}
	return cn, UniqueSANs(sans)
}

func (p *Policy) sampleCommonName() CommonName {
	rule := p.commonName
	if rule == nil {
		return CommonName{}
	}
	for _, list := range [][]cnPattern{rule.required, rule.allowed} {
		for _, pat := range list {
			for _, text := range []string{pat.dns, pat.raw} {
				if text == "" {
					continue
				}
				cn, err := ParseCommonName(strings.ReplaceAll(text, "*", sampleLabel))
				if err == nil && len(p.evaluateCommonName(cn)) == 0 {
					return cn
				}
			}
		}
	}
	return CommonName{}
}

// sample makes a value of the rule's type that pat matches and the rule
// allows.
func (r *sanRule) sample(pat sanPattern) (SAN, bool) {
	var candidates []string
	switch pat.kind {
	case addrKind:
		candidates = []string{pat.addr.String()}
	case prefixKind:
		a := pat.prefix.Addr()
		if pat.prefix.Bits() < a.BitLen() {
			a = a.Next() // not the all-zero host (RFC 1122 §3.2.1.3)
		}
		candidates = []string{a.String()}
	default:
		for _, f := range sampleFillers(r.typ) {
			candidates = append(candidates, strings.ReplaceAll(pat.text, "*", f))
		}
		if pat.kind == uriKind && pat.uri.any {
			candidates = sampleFillers(SANURI)[1:]
		}
	}
	for _, c := range candidates {
		s, err := ParseSAN(r.typ, c)
		if err != nil || !pat.match(s, admitting) {
			continue
		}
		if _, refused := r.refusal(s); !refused {
			return s, true
		}
	}
	return SAN{}, false
}
