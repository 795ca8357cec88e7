package hsm

import (
	"crypto"
	"fmt"

	"github.com/miekg/pkcs11"
)

// CustodyError names the attribute of a CA key that breaks DESIGN.md §4.
type CustodyError struct {
	Label     string
	Attribute string
	Problem   string
}

func (e *CustodyError) Error() string {
	return fmt.Sprintf("key %q: %s %s", e.Label, e.Attribute, e.Problem)
}

// requiredAttributes are the boolean attributes a CA private key must have,
// with the value each must hold. ALWAYS_SENSITIVE and NEVER_EXTRACTABLE
// prove the key was born in the token and never left it (PKCS#11 v2.40
// §4.9 table 25).
var requiredAttributes = []struct {
	typ  uint
	name string
	want bool
}{
	{pkcs11.CKA_TOKEN, "CKA_TOKEN", true},
	{pkcs11.CKA_PRIVATE, "CKA_PRIVATE", true},
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false},
	{pkcs11.CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true},
	{pkcs11.CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true},
	{pkcs11.CKA_SIGN, "CKA_SIGN", true},
}

// CheckCustody verifies that the key labelled label exists, that its
// private half has every required attribute, and that its public key is
// pub (a CA certificate's, or the audit key's). It returns the key as a
// signer when all hold. A nil pub accepts the key the token holds (an OCSP
// responder key, which pkid certifies itself); after a re-open the token
// must still hold that same key.
func (t *Token) CheckCustody(label string, pub crypto.PublicKey) (crypto.Signer, error) {
	s, b, err := t.key(label)
	if err != nil {
		return nil, err
	}
	types := make([]uint, len(requiredAttributes))
	for k, a := range requiredAttributes {
		types[k] = a.typ
	}
	attrs, err := b.GetAttributes(s, types)
	if err != nil {
		t.failed(b, err)
		return nil, fmt.Errorf("hsm: reading attributes of key %q: %w", label, err)
	}
	for _, a := range requiredAttributes {
		got, ok := attrs[a.typ]
		if !ok || got == nil || len(got.Value) != 1 {
			return nil, &CustodyError{Label: label, Attribute: a.name, Problem: "is missing"}
		}
		if (got.Value[0] != 0) != a.want {
			return nil, &CustodyError{Label: label, Attribute: a.name, Problem: fmt.Sprintf("is %t, must be %t", !a.want, a.want)}
		}
	}
	if pub != nil && !samePublicKey(s.Public(), pub) {
		return nil, &CustodyError{Label: label, Attribute: "public key", Problem: "does not match the certificate or public key file configured for it"}
	}
	t.mu.Lock()
	t.want[label] = s.Public() // found again, and checked, after every re-open
	t.mu.Unlock()
	return &tokenKey{t: t, label: label, pub: s.Public()}, nil
}

// Attributes reads boolean attributes of the private key labelled label;
// used by tests and diagnostics.
func (t *Token) Attributes(label string) (map[string]bool, error) {
	s, b, err := t.key(label)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, a := range requiredAttributes {
		attrs, err := b.GetAttributes(s, []uint{a.typ})
		if err != nil {
			return nil, fmt.Errorf("hsm: reading %s of key %q: %w", a.name, label, err)
		}
		attr := attrs[a.typ]
		out[a.name] = attr != nil && len(attr.Value) == 1 && attr.Value[0] != 0
	}
	return out, nil
}
