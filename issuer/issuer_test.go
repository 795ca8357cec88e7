package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

func parsePEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, rest := pem.Decode([]byte(s))
	if b == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("not exactly one PEM block: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantKind(t *testing.T, err error, kind Kind) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("error = %v (%#v), want kind %d", err, err, kind)
	}
	return e
}

func TestIssueEveryKeyAlgorithm(t *testing.T) {
	for _, rsaCA := range []bool{false, true} {
		h := newHarness(t, rsaCA)
		sig := "ECDSA-SHA384"
		if rsaCA {
			sig = "RSA-SHA512"
		}
		for _, alg := range policy.KeyAlgorithmNames {
			res, err := h.iss.Issue(context.Background(), meta, request(func(r *Request) { r.KeyAlgorithm, r.SignatureAlgorithm = alg, sig }))
			if err != nil {
				t.Fatalf("rsaCA=%t %s: %v", rsaCA, alg, err)
			}
			leaf := parsePEM(t, res.Certificate)
			if err := leaf.CheckSignatureFrom(h.ca.Certificate); err != nil {
				t.Errorf("%s: leaf does not verify with the CA: %v", alg, err)
			}
			if leaf.SignatureAlgorithm != signatureAlgorithms[sig] {
				t.Errorf("%s: signed with %v, want %s", alg, leaf.SignatureAlgorithm, sig)
			}
			if got := KeyAlgorithmOf(leaf.PublicKey); got != alg {
				t.Errorf("leaf key is %s, want %s", got, alg)
			}
			if got := hex.EncodeToString(leaf.SerialNumber.Bytes()); got != res.SerialNumber || len(got) != 40 {
				t.Errorf("serialNumber %q does not match certificate serial %q", res.SerialNumber, got)
			}
			block, _ := pem.Decode([]byte(res.PrivateKey))
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("privateKey is not a PKCS#8 PEM block: %q", res.PrivateKey)
			}
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			signer := key.(crypto.Signer)
			if !signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
				t.Errorf("%s: private key does not match the certificate", alg)
			}
			if r, ok := key.(*rsa.PrivateKey); ok && r.E != 65537 {
				t.Errorf("RSA exponent %d, want 65537", r.E)
			}
		}
	}
}

func TestIssueResultAndRecord(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), meta, request())
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if leaf.Subject.CommonName != "a.example.internal" || leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("subject/basic constraints wrong: %v IsCA=%t", leaf.Subject, leaf.IsCA)
	}
	// Defaults: EC leaf gets digital_signature without key_encipherment (RFC 5480 §3).
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("EKU = %v, want serverAuth", leaf.ExtKeyUsage)
	}
	if !leaf.NotBefore.Equal(testNow) || !leaf.NotAfter.Equal(testNow.Add(24*time.Hour)) {
		t.Errorf("window %v..%v", leaf.NotBefore, leaf.NotAfter)
	}
	if string(leaf.AuthorityKeyId) != string(h.ca.Certificate.SubjectKeyId) || len(leaf.SubjectKeyId) != 20 {
		t.Errorf("AKI/SKI wrong")
	}
	for _, e := range leaf.Extensions {
		switch {
		case e.Id.Equal([]int{2, 5, 29, 19}) && !e.Critical:
			t.Error("basicConstraints must be critical")
		case e.Id.Equal([]int{2, 5, 29, 15}) && !e.Critical:
			t.Error("keyUsage must be critical")
		case e.Id.Equal([]int{2, 5, 29, 37}) && e.Critical:
			t.Error("extKeyUsage must not be critical")
		}
	}
	if res.IssuingCACertificate != pemString("CERTIFICATE", h.ca.Certificate.Raw) {
		t.Error("issuingCaCertificate is not the issuing CA")
	}
	want := pemString("CERTIFICATE", h.ca.Certificate.Raw) + "\n" + pemString("CERTIFICATE", h.ca.Parents[0].Raw)
	if res.CertificateChain != want {
		t.Error("certificateChain is not issuing CA then root")
	}
	rec := h.store.only(t)
	if rec.ID != res.CertificateID || rec.Status != record.StatusIssued || rec.Serial != res.SerialNumber ||
		string(rec.DER) != string(leaf.Raw) || rec.Identity != meta.Identity || rec.RequestID != meta.RequestID {
		t.Errorf("record does not match the result: %+v", rec)
	}
	if len(h.store.audit) != 1 || h.store.audit[0].Action != "issued" || h.store.audit[0].CertificateID != rec.ID {
		t.Errorf("audit = %+v", h.store.audit)
	}
}

func TestIssueSubjectlessMakesSANCritical(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), meta, request(func(r *Request) { r.CommonName = "" }))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if len(leaf.RawSubject) != 2 { // an empty SEQUENCE
		t.Errorf("subject = %v, want empty", leaf.Subject)
	}
	for _, e := range leaf.Extensions {
		if e.Id.Equal([]int{2, 5, 29, 17}) && !e.Critical {
			t.Error("SAN must be critical when the subject is empty (RFC 5280 §4.2.1.6)")
		}
	}
}

func TestRemoveRootsFromChain(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), meta, request(func(r *Request) { r.RemoveRootsFromChain = true }))
	if err != nil {
		t.Fatal(err)
	}
	if res.CertificateChain != res.IssuingCACertificate {
		t.Error("with removeRootsFromChain the chain must be the issuing CA alone")
	}
}

func TestExplicitWindow(t *testing.T) {
	h := newHarness(t, false)
	nb, na := testNow.Add(time.Hour), testNow.Add(5*time.Hour)
	res, err := h.iss.Issue(context.Background(), meta, request(func(r *Request) { r.NotBefore, r.NotAfter = &nb, &na }))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Errorf("window %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, nb, na)
	}
}

// Refusals: the right kind, an audit entry, no record, no signature.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name string
		meta Meta
		req  Request
		kind Kind
		msg  string
	}{
		{"unknown profile", meta, request(func(r *Request) { r.ProfileID = "00000000-0000-4000-8000-000000000000" }),
			KindNotFound, "Certificate profile not found"},
		{"identity not allowed", Meta{Identity: "spiffe://other/x"}, request(), KindForbidden, "You are not allowed"},
		{"policy", meta, request(func(r *Request) { r.CommonName = "evil.com" }), KindPolicy,
			"Certificate request validation failed: common_name value 'evil.com' does not match allowed patterns: *.example.internal"},
		{"explicit key_encipherment on EC", meta, request(func(r *Request) { r.KeyUsages = []string{"digital_signature", "key_encipherment"} }),
			KindPolicy, "key_encipherment cannot be used with an EC key"},
		{"neither CN nor SAN", meta, request(func(r *Request) { r.CommonName, r.AltNames = "", nil }), KindBadRequest, "commonName or at least one altName"},
		{"signature family", meta, request(func(r *Request) { r.SignatureAlgorithm = "RSA-SHA256" }), KindBadRequest,
			"Requested signature algorithm RSA-SHA256 is not compatible with CA key algorithm EC_prime256v1. CA can only sign with ECDSA-based signature algorithms."},
		{"notBefore before CA", meta, request(func(r *Request) { nb := testNow.Add(-48 * time.Hour); r.NotBefore = &nb }),
			KindBadRequest, "notBefore date is before CA certificate's notBefore date"},
		{"notAfter after CA", meta, request(func(r *Request) {
			nb := testNow.Add(3*365*24*time.Hour - time.Hour)
			r.NotBefore = &nb
		}), KindBadRequest, "notAfter date is after CA certificate's notAfter date"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			_, err := h.iss.Issue(context.Background(), c.meta, c.req)
			e := wantKind(t, err, c.kind)
			if !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q lacks %q", e.Message, c.msg)
			}
			if len(h.store.records) != 0 || h.signer.calls != 0 || h.lint.calls != 0 {
				t.Errorf("a refusal reached the pipeline: %d records, %d signatures, %d lints", len(h.store.records), h.signer.calls, h.lint.calls)
			}
			if len(h.store.audit) != 1 || h.store.audit[0].Action != "refused" || h.store.audit[0].Reason != e.Message {
				t.Errorf("audit = %+v, want one refusal", h.store.audit)
			}
		})
	}
}

func TestExpiredCA(t *testing.T) {
	h := newHarness(t, false)
	h.iss.clock = fixedClock{testNow.Add(4 * 365 * 24 * time.Hour)}
	h.iss.limiter.clock = h.iss.clock
	_, err := h.iss.Issue(context.Background(), meta, request())
	if e := wantKind(t, err, KindBadRequest); e.Message != "CA is expired" {
		t.Errorf("message %q", e.Message)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, false)
	h.prof.RateLimit = RateLimit{PerMinute: 60, Burst: 2}
	for k := 0; k < 2; k++ {
		if _, err := h.iss.Issue(context.Background(), meta, request()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.iss.Issue(context.Background(), meta, request())
	if e := wantKind(t, err, KindRateLimited); e.RetryAfter <= 0 || e.RetryAfter > time.Second {
		t.Errorf("RetryAfter = %v, want (0, 1s]", e.RetryAfter)
	}
	// Another identity has its own bucket.
	if _, err := h.iss.Issue(context.Background(), Meta{Identity: "spiffe://test/other"}, request()); err != nil {
		t.Errorf("other identity: %v", err)
	}
	// Tokens refill with time.
	h.iss.limiter.clock = fixedClock{testNow.Add(time.Second)}
	if _, err := h.iss.Issue(context.Background(), meta, request()); err != nil {
		t.Errorf("after refill: %v", err)
	}
}

// Each failing pipeline step leaves the store consistent and returns no
// result: reserve → nothing; lint → aborted, never signed; sign → aborted;
// a signature that does not verify → aborted with the bad DER kept;
// finalize → still pending.
func TestPipelineFailures(t *testing.T) {
	boom := errors.New("boom")
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name       string
		setup      func(*harness)
		kind       Kind
		status     string // "" means no record
		signatures int
		keepsDER   bool
	}{
		{"reserve fails", func(h *harness) { h.store.failReserve = boom }, KindUnavailable, "", 0, false},
		{"lint refuses", func(h *harness) { h.lint.failed = []string{"e_some_lint", "w_other"} }, KindPolicy, record.StatusAborted, 0, false},
		{"lint errors", func(h *harness) { h.lint.err = boom }, KindInternal, record.StatusAborted, 0, false},
		{"token fails to sign", func(h *harness) { h.signer.err = boom }, KindUnavailable, record.StatusAborted, 1, false},
		{"token signs with another key", func(h *harness) { h.signer.impostor = otherKey }, KindInternal, record.StatusAborted, 1, true},
		{"finalize fails", func(h *harness) { h.store.failFinal = boom }, KindUnavailable, record.StatusPending, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			c.setup(h)
			res, err := h.iss.Issue(context.Background(), meta, request())
			if res != nil {
				t.Fatal("a failed pipeline returned a result")
			}
			e := wantKind(t, err, c.kind)
			if c.kind == KindPolicy && !strings.Contains(e.Message, "e_some_lint, w_other") {
				t.Errorf("lint refusal %q does not name the lints", e.Message)
			}
			if h.signer.calls != c.signatures {
				t.Errorf("signatures = %d, want %d", h.signer.calls, c.signatures)
			}
			if c.status == "" {
				if len(h.store.records) != 0 {
					t.Errorf("records = %d, want none", len(h.store.records))
				}
				return
			}
			rec := h.store.only(t)
			if rec.Status != c.status {
				t.Errorf("record status = %s, want %s", rec.Status, c.status)
			}
			if (len(rec.DER) > 0) != c.keepsDER {
				t.Errorf("record DER kept = %t, want %t", len(rec.DER) > 0, c.keepsDER)
			}
		})
	}
}

func TestDuplicateSerialIsRetried(t *testing.T) {
	h := newHarness(t, false)
	h.store.dupSerials = 2
	res, err := h.iss.Issue(context.Background(), meta, request())
	if err != nil {
		t.Fatal(err)
	}
	if h.store.only(t).Serial != res.SerialNumber {
		t.Error("record serial differs from the issued serial")
	}
}

func TestRefusalThatCannotBeAuditedIs503(t *testing.T) {
	h := newHarness(t, false)
	h.store.failRefuse = errors.New("disk full")
	_, err := h.iss.Issue(context.Background(), meta, request(func(r *Request) { r.CommonName = "evil.com" }))
	wantKind(t, err, KindUnavailable)
}

func TestCheckProfile(t *testing.T) {
	h := newHarness(t, false)
	if err := h.iss.CheckProfile(context.Background(), h.prof); err != nil {
		t.Errorf("CheckProfile(good) = %v", err)
	}
	h.lint.failed = []string{"e_ext_san_missing"}
	if err := h.iss.CheckProfile(context.Background(), h.prof); err == nil || !strings.Contains(err.Error(), "e_ext_san_missing") {
		t.Errorf("CheckProfile with failing lint = %v", err)
	}
	if h.signer.calls != 0 || len(h.store.records) != 0 {
		t.Error("CheckProfile must neither sign nor store")
	}
	rsaOnly, _ := policy.New(policy.Rules{SignatureAlgorithms: []string{"RSA-*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d"})
	bad := *h.prof
	bad.Policy = rsaOnly
	if err := h.iss.CheckProfile(context.Background(), &bad); err == nil || !strings.Contains(err.Error(), "can never issue") {
		t.Errorf("CheckProfile(RSA-only on EC CA) = %v", err)
	}
}
