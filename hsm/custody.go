package hsm

import (
	"bytes"
	"crypto"
	"crypto/rand"
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

// KeyRole says which job a key in the token was created for. A key has
// one: the daemon's keys (CAs, the audit key, OCSP responders) sign only
// through its pipeline, and the mTLS CA key only the API listener's TLS
// material in the key ceremony.
type KeyRole int

const (
	// RoleDaemon: a CA, audit or OCSP responder key.
	RoleDaemon KeyRole = iota
	// RoleMTLSCA: the CA of the API listener and its clients.
	RoleMTLSCA
)

func (r KeyRole) String() string {
	if r == RoleMTLSCA {
		return "mTLS CA key"
	}
	return "CA, audit or OCSP key"
}

// mtlsCAMarker starts the CKA_ID of an mTLS CA key. The key is created
// with CKA_MODIFIABLE false, so its CKA_ID stays what it was made with; the
// rest of it is random, as for every other key.
var mtlsCAMarker = []byte("pkid-mtls-ca:")

func newKeyID(role KeyRole) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("hsm: key id: %w", err)
	}
	if role == RoleMTLSCA {
		id = append(append([]byte{}, mtlsCAMarker...), id...)
	}
	return id, nil
}

// CheckCustody verifies that the key labelled label exists, that its
// private half has every required attribute, that it was created for the
// daemon (not as the mTLS CA), and that its public key is pub (a CA
// certificate's, or the audit key's). It returns the key as a signer when
// all hold. A nil pub accepts the key the token holds (an OCSP responder
// key, which pkid certifies itself); after a re-open the token must still
// hold that same key.
func (t *Token) CheckCustody(label string, pub crypto.PublicKey) (crypto.Signer, error) {
	return t.checkCustody(label, pub, RoleDaemon)
}

// CheckMTLSCustody is CheckCustody for the mTLS CA key: the same
// attributes, and the key must carry the mTLS marker.
func (t *Token) CheckMTLSCustody(label string, pub crypto.PublicKey) (crypto.Signer, error) {
	return t.checkCustody(label, pub, RoleMTLSCA)
}

func (t *Token) checkCustody(label string, pub crypto.PublicKey, role KeyRole) (crypto.Signer, error) {
	s, b, err := t.key(label)
	if err != nil {
		return nil, err
	}
	types := make([]uint, len(requiredAttributes), len(requiredAttributes)+1)
	for k, a := range requiredAttributes {
		types[k] = a.typ
	}
	attrs, err := b.GetAttributes(s, append(types, pkcs11.CKA_ID))
	if err != nil {
		t.failed(b, err)
		return nil, fmt.Errorf("hsm: reading attributes of key %q: %w", label, err)
	}
	got := RoleDaemon
	if id := attrs[pkcs11.CKA_ID]; id != nil && bytes.HasPrefix(id.Value, mtlsCAMarker) {
		got = RoleMTLSCA
	}
	if got != role {
		return nil, &CustodyError{Label: label, Attribute: "role", Problem: fmt.Sprintf("is %s, must be %s", got, role)}
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
