package hsm

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/pkid/pkid/softhsm"
)

func openTestToken(t *testing.T) *Token {
	t.Helper()
	tt := softhsm.NewTestToken(t)
	tok, err := Open(Config{Module: tt.Module, TokenLabel: tt.Label, PIN: tt.PIN, MaxSessions: 4})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

func selfSigned(t *testing.T, tok *Token, label string) *x509.Certificate {
	t.Helper()
	s, err := tok.Signer(label)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: label},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, s.Public(), s)
	if err != nil {
		t.Fatalf("signing with token key: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Keys made by GenerateCAKey pass the custody check, sign, and refuse a
// second key under the same label.
func TestGenerateCAKeyCustody(t *testing.T) {
	tok := openTestToken(t)
	for _, kt := range []KeyType{KeyECP256, KeyECP384, KeyRSA2048} {
		label := "ca-" + string(kt)
		if _, err := tok.GenerateCAKey(label, kt); err != nil {
			t.Fatalf("GenerateCAKey(%s): %v", kt, err)
		}
		cert := selfSigned(t, tok, label)
		if _, err := tok.CheckCustody(label, cert.PublicKey); err != nil {
			t.Errorf("CheckCustody(%s): %v", kt, err)
		}
		attrs, err := tok.Attributes(label)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]bool{"CKA_TOKEN": true, "CKA_PRIVATE": true, "CKA_SENSITIVE": true,
			"CKA_EXTRACTABLE": false, "CKA_ALWAYS_SENSITIVE": true, "CKA_NEVER_EXTRACTABLE": true, "CKA_SIGN": true} {
			if attrs[name] != want {
				t.Errorf("%s: %s = %t, want %t", kt, name, attrs[name], want)
			}
		}
		if _, err := tok.GenerateCAKey(label, kt); err == nil {
			t.Errorf("second GenerateCAKey(%s) under the same label succeeded", kt)
		}
	}
}

// A key has one job: the mTLS CA key passes only CheckMTLSCustody, and a
// CA key only CheckCustody, each refusal naming the role.
func TestKeyRolesAreExclusive(t *testing.T) {
	tok := openTestToken(t)
	if _, err := tok.GenerateMTLSCAKey("mtls", KeyECP256); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateCAKey("issuing", KeyECP256); err != nil {
		t.Fatal(err)
	}
	mtls, issuing := selfSigned(t, tok, "mtls"), selfSigned(t, tok, "issuing")
	if _, err := tok.CheckMTLSCustody("mtls", mtls.PublicKey); err != nil {
		t.Errorf("CheckMTLSCustody(mTLS CA key) = %v", err)
	}
	if _, err := tok.CheckCustody("issuing", issuing.PublicKey); err != nil {
		t.Errorf("CheckCustody(CA key) = %v", err)
	}
	for _, c := range []struct {
		label string
		check func(string, crypto.PublicKey) (crypto.Signer, error)
		pub   crypto.PublicKey
		want  string
	}{
		{"mtls", tok.CheckCustody, mtls.PublicKey, `key "mtls": role is mTLS CA key, must be CA, audit or OCSP key`},
		{"mtls", tok.CheckCustody, nil, `key "mtls": role is mTLS CA key, must be CA, audit or OCSP key`},
		{"issuing", tok.CheckMTLSCustody, issuing.PublicKey, `key "issuing": role is CA, audit or OCSP key, must be mTLS CA key`},
	} {
		_, err := c.check(c.label, c.pub)
		var ce *CustodyError
		if !errors.As(err, &ce) || ce.Attribute != "role" || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.label, err, c.want)
		}
	}
}

// A certificate whose public key is not the token key's is refused, naming
// the problem; a missing label is ErrKeyNotFound.
func TestCheckCustodyRefusesMismatchAndMissing(t *testing.T) {
	tok := openTestToken(t)
	if _, err := tok.GenerateCAKey("a", KeyECP256); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateCAKey("b", KeyECP256); err != nil {
		t.Fatal(err)
	}
	_, err := tok.CheckCustody("a", selfSigned(t, tok, "b").PublicKey)
	var ce *CustodyError
	if !errors.As(err, &ce) || ce.Attribute != "public key" {
		t.Fatalf("CheckCustody with the wrong certificate = %v, want a public key CustodyError", err)
	}
	if _, err := tok.Signer("nope"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Signer(nope) = %v, want ErrKeyNotFound", err)
	}
}

// With no public key to compare (an OCSP responder key, which pkid
// certifies itself), custody still checks every attribute and answers the
// token's key.
func TestCheckCustodyWithoutAPublicKey(t *testing.T) {
	tok := openTestToken(t)
	made, err := tok.GenerateCAKey("responder", KeyECP256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.CheckCustody("responder", nil)
	if err != nil || !samePublicKey(s.Public(), made.Public()) {
		t.Fatalf("CheckCustody(nil) = %v, %v", s, err)
	}
	if err := generateExtractable(tok, "weak2"); err != nil {
		t.Fatal(err)
	}
	var ce *CustodyError
	if _, err := tok.CheckCustody("weak2", nil); !errors.As(err, &ce) || ce.Attribute != "CKA_EXTRACTABLE" {
		t.Fatalf("CheckCustody(extractable, nil) = %v", err)
	}
}

// A key that was extractable when created is refused by name.
func TestCheckCustodyRefusesExtractableKey(t *testing.T) {
	tok := openTestToken(t)
	if err := generateExtractable(tok, "weak"); err != nil {
		t.Fatalf("creating an extractable key: %v", err)
	}
	_, err := tok.CheckCustody("weak", selfSigned(t, tok, "weak").PublicKey)
	var ce *CustodyError
	if !errors.As(err, &ce) || ce.Attribute != "CKA_EXTRACTABLE" {
		t.Fatalf("CheckCustody(extractable) = %v, want a CKA_EXTRACTABLE CustodyError", err)
	}
}

func TestSignConcurrently(t *testing.T) {
	tok := openTestToken(t)
	s, err := tok.GenerateCAKey("c", KeyECP256)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	errs := make(chan error, 32)
	for k := 0; k < 32; k++ {
		go func() {
			_, err := s.Sign(rand.Reader, digest[:], nil)
			errs <- err
		}()
	}
	for k := 0; k < 32; k++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Sign: %v", err)
		}
	}
}
