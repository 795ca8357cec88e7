package integration

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

func parseCert(s string) (*x509.Certificate, error) {
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("not exactly one CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseChain(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// checkIssued verifies a 200 answer as a client would: the leaf chains to
// the demo root through certificateChain, the private key is PKCS#8 and
// matches, the serial is the certificate's, and zlint finds nothing.
func (s *suite) checkIssued(t *testing.T, r reply) *x509.Certificate {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	leaf, err := parseCert(r.str("certificate"))
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, r.str("certificateChain"))
	if len(chain) == 0 || r.str("issuingCaCertificate") != strings.SplitAfter(r.str("certificateChain"), "-----END CERTIFICATE-----")[0] {
		t.Fatal("certificateChain does not start with the issuing CA")
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
		if c.Equal(leaf) {
			t.Fatal("the chain contains the leaf")
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime: leaf.NotBefore.Add(time.Second)}); err != nil {
		t.Fatalf("leaf does not verify up to the demo root: %v", err)
	}
	block, _ := pem.Decode([]byte(r.str("privateKey")))
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("privateKey is not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatal("privateKey does not match the certificate")
	}
	if got := strings.ToLower(leaf.SerialNumber.Text(16)); strings.TrimLeft(r.str("serialNumber"), "0") != got {
		t.Fatalf("serialNumber %s is not the certificate's %s", r.str("serialNumber"), got)
	}
	lintClean(t, leaf)
	return leaf
}

// designExclusions is DESIGN.md §1's list, written out here on purpose so
// the test does not trust the linter package it checks.
var designExclusions = []string{
	"e_sub_cert_aia_missing", "e_sub_cert_aia_does_not_contain_ocsp_url", "w_sub_cert_aia_does_not_contain_issuing_ca_url",
	"w_sub_cert_aia_contains_internal_names", "e_missing_crl_distrib_point", "e_dnsname_not_valid_tld",
	"e_ext_san_contains_reserved_ip", "e_subject_contains_reserved_ip",
	"w_ext_subject_key_identifier_not_recommended_subscriber", "w_subject_common_name_included",
}

// meshExclusions are what the demo's internal-services profile adds.
var meshExclusions = []string{
	"e_ext_san_uniform_resource_identifier_present", "e_ext_san_rfc822_name_present",
	"e_server_cert_valid_time_longer_than_200_days", "w_server_cert_valid_time_longer_than_199_days",
	"e_server_cert_valid_time_longer_than_100_days", "w_server_cert_valid_time_longer_than_99_days",
	"e_server_cert_valid_time_longer_than_47_days", "w_server_cert_valid_time_longer_than_46_days",
}

func lintClean(t *testing.T, c *x509.Certificate) {
	t.Helper()
	exclude := designExclusions
	if c.Issuer.CommonName == "pkid Demo RSA Issuing CA" { // internal-services
		exclude = append(append([]string{}, designExclusions...), meshExclusions...)
	}
	sources := lint.SourceList{lint.RFC5280}
	for _, eku := range c.ExtKeyUsage {
		if eku == x509.ExtKeyUsageServerAuth {
			sources = append(sources, lint.CABFBaselineRequirements)
		}
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: sources, ExcludeNames: exclude})
	if err != nil {
		t.Fatal(err)
	}
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, res := range zlint.LintCertificateEx(zc, reg).Results {
		if res.Status == lint.Warn || res.Status == lint.Error || res.Status == lint.Fatal {
			t.Errorf("zlint %s: %s %s", name, res.Status, res.Details)
		}
	}
}
