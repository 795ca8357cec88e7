package policy

import (
	"fmt"
	"strings"
)

// identityACME is the kind of an ACME account (DESIGN §17): acme:<account
// id>, or acme:key-<thumbprint> for a request signed by a certificate's
// own key (RFC 8555 §7.6). No profile lists such identities: a profile
// that enables ACME lets its accounts issue, under its policy.
const identityACME = "acme"

// ACMEIdentity returns acme:<name> for an ACME account id or key
// thumbprint: 1..128 of A-Z a-z 0-9 - _ (base64url and UUIDs).
func ACMEIdentity(name string) (Identity, error) {
	if name == "" || len(name) > 128 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return Identity{}, fmt.Errorf("invalid ACME identity %q: want 1..128 of A-Z a-z 0-9 - _", name)
	}
	return Identity{kind: identityACME, value: name}, nil
}

// EvaluateNames returns the violations of the SANs alone. An ACME order
// is judged on its identifiers when it is made, before a CSR exists; the
// whole policy (the CN, usages, algorithms, lifetime) is applied again to
// the certificate at finalize.
func (p *Policy) EvaluateNames(sans []SAN) []string {
	return p.evaluateAltNames(UniqueSANs(sans))
}

// AllowsSANType reports whether the policy lets some SAN of type typ
// through: its rule has an allowed or a required pattern.
func (p *Policy) AllowsSANType(typ string) bool {
	r := p.altNames[typ]
	return r != nil && (len(r.allowed) > 0 || len(r.required) > 0)
}
