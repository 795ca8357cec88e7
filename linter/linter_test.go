package linter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

func leaf(t *testing.T, cn string, dns []string, eku x509.ExtKeyUsage) []byte {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{1, 2, 3}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	anyPolicy, _ := x509.OIDFromInts([]uint64{2, 5, 29, 32, 0})
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1 << 62), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: now, NotAfter: now.Add(time.Hour), BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, Policies: []x509.OID{anyPolicy}, SubjectKeyId: []byte{4, 5, 6}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLint(t *testing.T) {
	l, err := New(map[string][]string{"web": nil, "lenient": {"e_subject_common_name_not_exactly_from_san"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// An internal name with no public TLD passes: e_dnsname_not_valid_tld is excluded by default.
	if failed, err := l.Lint(ctx, "web", leaf(t, "a.example.internal", []string{"a.example.internal"}, x509.ExtKeyUsageServerAuth)); err != nil || len(failed) != 0 {
		t.Errorf("clean server certificate: %v %v", failed, err)
	}
	// A server certificate whose CN is not among its SANs fails the BR lint...
	bad := leaf(t, "a.example.internal", []string{"b.example.internal"}, x509.ExtKeyUsageServerAuth)
	failed, err := l.Lint(ctx, "web", bad)
	if err != nil || !reflect.DeepEqual(failed, []string{"e_subject_common_name_not_exactly_from_san"}) {
		t.Errorf("CN not in SANs: %v %v", failed, err)
	}
	// ...unless the profile excludes it; and BR lints do not apply to client certificates.
	if failed, _ := l.Lint(ctx, "lenient", bad); len(failed) != 0 {
		t.Errorf("profile exclusion ignored: %v", failed)
	}
	if failed, _ := l.Lint(ctx, "web", leaf(t, "a.example.internal", []string{"b.example.internal"}, x509.ExtKeyUsageClientAuth)); len(failed) != 0 {
		t.Errorf("BR lints applied to a client certificate: %v", failed)
	}
	if _, err := l.Lint(ctx, "nope", bad); err == nil {
		t.Error("unknown profile accepted")
	}
}

func TestUnknownExclusionIsAnError(t *testing.T) {
	if _, err := New(map[string][]string{"web": {"e_no_such_lint"}}); err == nil || !strings.Contains(err.Error(), "web") {
		t.Errorf("New = %v, want an error naming the profile", err)
	}
}

func TestDefaultExclusionsExist(t *testing.T) {
	if _, err := New(map[string][]string{"p": nil}); err != nil {
		t.Fatalf("a default exclusion is not a zlint lint: %v", err)
	}
}

func BenchmarkLintServerCertificate(b *testing.B) {
	l, err := New(map[string][]string{"web": nil})
	if err != nil {
		b.Fatal(err)
	}
	t := &testing.T{}
	der := leaf(t, "a.example.internal", []string{"a.example.internal"}, x509.ExtKeyUsageServerAuth)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if failed, err := l.Lint(context.Background(), "web", der); err != nil || len(failed) > 0 {
			b.Fatal(failed, err)
		}
	}
}
