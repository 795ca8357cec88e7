package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
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
			res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.KeyAlgorithm, r.SignatureAlgorithm = alg, sig }))
			if err != nil {
				t.Fatalf("rsaCA=%t %s: %v", rsaCA, alg, err)
			}
			leaf := parsePEM(t, res.Certificate)
			if err := leaf.CheckSignatureFrom(h.ca.Certificate()); err != nil {
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
			if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
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
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
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
	if string(leaf.AuthorityKeyId) != string(h.ca.Certificate().SubjectKeyId) || len(leaf.SubjectKeyId) != 20 {
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
	if res.IssuingCACertificate != pemString("CERTIFICATE", h.ca.Certificate().Raw) {
		t.Error("issuingCaCertificate is not the issuing CA")
	}
	want := pemString("CERTIFICATE", h.ca.Certificate().Raw) + "\n" + pemString("CERTIFICATE", h.ca.Lineage()[1].Raw)
	if res.CertificateChain != want {
		t.Error("certificateChain is not issuing CA then root")
	}
	// The reservation holds what was about to be signed (DESIGN.md §5 step 2).
	rec := h.store.only(t)
	caSum := sha256.Sum256(h.ca.Certificate().Raw)
	tbsSum := sha256.Sum256(leaf.RawTBSCertificate)
	switch {
	case rec.ID != res.CertificateID, rec.Status != record.StatusIssued, rec.Serial != res.SerialNumber,
		string(rec.DER) != string(leaf.Raw), rec.Identity != "uri:spiffe://test/client", rec.RequestID != h.meta.RequestID:
		t.Errorf("record does not match the result: %+v", rec)
	case rec.TBSHash != hex.EncodeToString(tbsSum[:]):
		t.Errorf("record TBS hash %s is not the signed TBS's", rec.TBSHash)
	case rec.IssuerHash != hex.EncodeToString(caSum[:]), rec.ProfileID != profileID, rec.Profile != "web":
		t.Errorf("record issuer/profile wrong: %s %s %s", rec.IssuerHash, rec.ProfileID, rec.Profile)
	case rec.CertificateRequestID == "" || rec.CertificateRequestID != res.CertificateRequestID:
		t.Errorf("certificate request id %q / %q", rec.CertificateRequestID, res.CertificateRequestID)
	}
	derSum := sha256.Sum256(leaf.Raw)
	if len(h.store.audit) != 1 || h.store.audit[0].Action != record.ActionIssued || h.store.audit[0].CertificateID != rec.ID ||
		h.store.audit[0].DERHash != hex.EncodeToString(derSum[:]) {
		t.Errorf("audit = %+v, want one issued entry with the DER hash", h.store.audit)
	}
}

// Canonical values (DESIGN.md §3): what the policy matched is what the
// certificate encodes and the record stores.
func TestCanonicalValuesReachCertificateAndRecord(t *testing.T) {
	h := newHarness(t, false, func(p *ProfileConfig) {
		p.Policy.AltNames[policy.SANURI] = &policy.NameRule{Allowed: []string{"https://*.example.internal/*"}}
	})
	res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) {
		r.CommonName = cn(t, "API.Example.Internal")
		r.AltNames = []policy.SAN{san(t, policy.SANDNS, "API.Example.Internal"), san(t, policy.SANDNS, "api.example.internal"),
			san(t, policy.SANIP, "::ffff:10.0.0.7"), san(t, policy.SANURI, "HTTPS://API.Example.Internal:443")}
	}))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if leaf.Subject.CommonName != "api.example.internal" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "api.example.internal" {
		t.Errorf("certificate names %q %v, want the canonical value once", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 1 || len(leaf.IPAddresses[0]) != 4 || leaf.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("IP SANs %v, want the unmapped 4-byte 10.0.0.7", leaf.IPAddresses)
	}
	// No default port, and "/" for the empty path (RFC 3986 §6.2.3).
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "https://api.example.internal/" {
		t.Errorf("URI SANs %v, want https://api.example.internal/", leaf.URIs)
	}
	rec := h.store.only(t)
	want := []record.AltName{{Type: "dns_name", Value: "api.example.internal"}, {Type: "ip_address", Value: "10.0.0.7"},
		{Type: "uri", Value: "https://api.example.internal/"}}
	if rec.CommonName != "api.example.internal" || fmt.Sprint(rec.AltNames) != fmt.Sprint(want) {
		t.Errorf("record holds %q %v, want %v", rec.CommonName, rec.AltNames, want)
	}
}

// Each bypass of issue #8 is refused, and the refusal names the value.
func TestCanonicalBypassesAreRefused(t *testing.T) {
	cases := []struct {
		name string
		sans []policy.SAN
		msg  string
	}{
		{"upper-case denied name", []policy.SAN{san(t, policy.SANDNS, "ADMIN.example.internal")}, "admin.example.internal"},
		{"IPv4-mapped denied address", []policy.SAN{san(t, policy.SANIP, "::ffff:10.0.0.66")}, "10.0.0.66"},
		{"wildcard covering a denied name", []policy.SAN{san(t, policy.SANDNS, "*.example.internal")}, "*.example.internal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			_, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.CommonName, r.AltNames = policy.CommonName{}, c.sans }))
			if e := wantKind(t, err, KindPolicy); !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q does not name %q", e.Message, c.msg)
			}
			if h.signer.calls != 0 {
				t.Error("a refused request was signed")
			}
		})
	}
}

func TestIssueSubjectlessMakesSANCritical(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.CommonName = policy.CommonName{} }))
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
	res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.RemoveRootsFromChain = true }))
	if err != nil {
		t.Fatal(err)
	}
	if res.CertificateChain != res.IssuingCACertificate {
		t.Error("with removeRootsFromChain the chain must be the issuing CA alone")
	}
}

// The window (DESIGN.md §1, §3): explicit bounds are kept; the backdate
// is an allowance that the lifetime, backdate included, never exceeds the
// ttl with; a notBefore earlier than now minus the backdate is refused.
func TestValidityWindow(t *testing.T) {
	ptr := func(t time.Time) *time.Time { return &t }
	const backdate = 5 * time.Minute
	cases := []struct {
		name         string
		nb, na       *time.Time
		ttl          time.Duration
		wantNB       time.Time
		wantNA       time.Time
		refused, msg string
	}{
		{name: "default: backdated, lifetime = ttl", ttl: time.Hour, wantNB: testNow.Add(-backdate), wantNA: testNow.Add(time.Hour - backdate)},
		{name: "explicit window", nb: ptr(testNow.Add(time.Hour)), na: ptr(testNow.Add(5 * time.Hour)), ttl: 4 * time.Hour,
			wantNB: testNow.Add(time.Hour), wantNA: testNow.Add(5 * time.Hour)},
		{name: "notAfter alone: the backdate shrinks to keep lifetime <= ttl", na: ptr(testNow.Add(time.Hour)), ttl: time.Hour,
			wantNB: testNow, wantNA: testNow.Add(time.Hour)},
		{name: "notAfter alone, room for the whole backdate", na: ptr(testNow.Add(time.Hour)), ttl: 2 * time.Hour,
			wantNB: testNow.Add(-backdate), wantNA: testNow.Add(time.Hour)},
		{name: "notBefore within the backdate", nb: ptr(testNow.Add(-backdate)), ttl: time.Hour,
			wantNB: testNow.Add(-backdate), wantNA: testNow.Add(time.Hour - backdate)},
		{name: "notBefore before the backdate", nb: ptr(testNow.Add(-backdate - time.Second)), ttl: time.Hour,
			refused: "bad", msg: "earlier than the profile allows"},
		{name: "explicit window longer than ttl", nb: ptr(testNow), na: ptr(testNow.Add(2 * time.Hour)), ttl: time.Hour,
			refused: "bad", msg: "must not exceed ttl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false, func(p *ProfileConfig) { p.Backdate = "5m" })
			res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.NotBefore, r.NotAfter, r.TTL = c.nb, c.na, c.ttl }))
			if c.refused != "" {
				if e := wantKind(t, err, KindBadRequest); !strings.Contains(e.Message, c.msg) {
					t.Errorf("message %q lacks %q", e.Message, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := parsePEM(t, res.Certificate)
			if !leaf.NotBefore.Equal(c.wantNB) || !leaf.NotAfter.Equal(c.wantNA) {
				t.Errorf("window %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, c.wantNB, c.wantNA)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life > c.ttl {
				t.Errorf("lifetime %v exceeds ttl %v", life, c.ttl)
			}
		})
	}
}

// Refusals: the right kind, an audit entry, no record, no signature.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name     string
		identity string
		change   func(*IssueRequest)
		kind     Kind
		msg      string
	}{
		{"unknown profile", "uri:spiffe://test/client", func(r *IssueRequest) { r.ProfileID = "00000000-0000-4000-8000-000000000000" },
			KindNotFound, "Certificate profile not found"},
		{"identity not allowed", "uri:spiffe://other/x", nil, KindForbidden, "You are not allowed"},
		{"a CN that spells an allowed URI is only a cn: identity", "cn:spiffe://test/client", nil, KindForbidden, "You are not allowed"},
		{"a manager may not issue", "uri:spiffe://admins/ops", nil, KindForbidden, "You are not allowed"},
		{"policy", "uri:spiffe://test/client", func(r *IssueRequest) { r.CommonName = cn(t, "evil.com") }, KindPolicy,
			"Certificate request validation failed: common_name value 'evil.com' does not match allowed patterns: *.example.internal"},
		{"explicit key_encipherment on EC", "uri:spiffe://test/client", func(r *IssueRequest) { r.KeyUsages = []string{"digital_signature", "key_encipherment"} },
			KindPolicy, "key_encipherment cannot be used with an EC key"},
		{"neither CN nor SAN", "uri:spiffe://test/client", func(r *IssueRequest) { r.CommonName, r.AltNames = policy.CommonName{}, nil },
			KindBadRequest, "commonName or at least one altName"},
		{"signature family", "uri:spiffe://test/client", func(r *IssueRequest) { r.SignatureAlgorithm = "RSA-SHA256" }, KindBadRequest,
			"Requested signature algorithm RSA-SHA256 is not compatible with CA key algorithm EC_prime256v1. CA can only sign with ECDSA-based signature algorithms."},
		{"notAfter after CA", "uri:spiffe://test/client", func(r *IssueRequest) {
			nb := testNow.Add(3*365*24*time.Hour - time.Hour)
			r.NotBefore = &nb
		}, KindBadRequest, "notAfter date is after CA certificate's notAfter date"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			var change []func(*IssueRequest)
			if c.change != nil {
				change = append(change, c.change)
			}
			_, err := h.iss.Issue(context.Background(), metaFor(t, c.identity), request(t, change...))
			e := wantKind(t, err, c.kind)
			if !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q lacks %q", e.Message, c.msg)
			}
			if len(h.store.records) != 0 || h.signer.calls != 0 || h.lint.calls != 0 {
				t.Errorf("a refusal reached the pipeline: %d records, %d signatures, %d lints", len(h.store.records), h.signer.calls, h.lint.calls)
			}
			if len(h.store.audit) != 1 || h.store.audit[0].Action != record.ActionRefused || h.store.audit[0].Reason != e.Message ||
				h.store.audit[0].Identity != c.identity {
				t.Errorf("audit = %+v, want one refusal", h.store.audit)
			}
		})
	}
}

// Admission (DESIGN.md §2, §8): an identity allowed on no profile and
// managing none is refused (and audited) before anything else.
func TestAdmit(t *testing.T) {
	h := newHarness(t, false)
	for id, want := range map[string]bool{
		"uri:spiffe://test/client": true, "uri:spiffe://admins/ops": true, // allowed; manager
		"uri:spiffe://other/x": false, "cn:spiffe://test/client": false, "dns:test": false,
	} {
		err := h.iss.Admit(context.Background(), metaFor(t, id))
		if want != (err == nil) {
			t.Errorf("Admit(%s) = %v, want admitted=%t", id, err, want)
		}
		if !want {
			if e := wantKind(t, err, KindForbidden); !strings.Contains(fmt.Sprint(e.Details), id) {
				t.Errorf("403 details %v do not name %s", e.Details, id)
			}
		}
	}
	if len(h.store.audit) != 3 {
		t.Errorf("audit holds %d entries, want the 3 refusals", len(h.store.audit))
	}
}

// A flood of refusals by one identity writes at most 10 entries a minute
// and then one summary with the count (DESIGN.md §6).
func TestRefusalAuditIsCapped(t *testing.T) {
	h := newHarness(t, false)
	intruder := metaFor(t, "uri:spiffe://other/intruder")
	for k := 0; k < 300; k++ {
		wantKind(t, h.iss.Admit(context.Background(), intruder), KindForbidden)
	}
	if n := len(h.store.audit); n != refusalsPerWindow {
		t.Fatalf("300 refusals wrote %d entries, want %d", n, refusalsPerWindow)
	}
	// Another identity has its own allowance.
	wantKind(t, h.iss.Admit(context.Background(), metaFor(t, "uri:spiffe://other/second")), KindForbidden)
	if n := len(h.store.audit); n != refusalsPerWindow+1 {
		t.Fatalf("a second identity's refusal was not written (%d entries)", n)
	}
	h.clock.Set(testNow.Add(refusalWindow))
	if err := h.service.FlushRefusals(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := h.store.audit[len(h.store.audit)-1]
	if last.Action != record.ActionRefusalsSuppressed || last.Count != 290 || last.Identity != "uri:spiffe://other/intruder" {
		t.Errorf("summary = %+v, want 290 suppressed refusals of the intruder", last)
	}
	if err := h.service.FlushRefusals(context.Background()); err != nil || len(h.store.audit) != refusalsPerWindow+2 {
		t.Errorf("a second flush wrote again (%d entries, %v)", len(h.store.audit), err)
	}
}

func TestExpiredCA(t *testing.T) {
	h := newHarness(t, false)
	h.clock.Set(testNow.Add(4 * 365 * 24 * time.Hour))
	_, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if e := wantKind(t, err, KindBadRequest); e.Message != "CA is expired" {
		t.Errorf("message %q", e.Message)
	}
}

// Buckets live in the RateLimiter, which outlives a configuration
// generation: a reload (a new Issuer) does not refill them.
func TestRateLimitSurvivesReload(t *testing.T) {
	h := newHarness(t, false, func(p *ProfileConfig) { p.RateLimit = RateLimitConfig{PerMinute: 60, Burst: 2} })
	for k := 0; k < 2; k++ {
		if _, err := h.iss.Issue(context.Background(), h.meta, request(t)); err != nil {
			t.Fatal(err)
		}
	}
	reloaded, err := New(Config{Profiles: []*Profile{h.prof}, CAs: []*CA{h.ca}, Service: h.service, Linter: h.lint,
		Clock: h.clock, Limiter: h.iss.limiter})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reloaded.Issue(context.Background(), h.meta, request(t))
	if e := wantKind(t, err, KindRateLimited); e.RetryAfter <= 0 || e.RetryAfter > time.Second {
		t.Errorf("RetryAfter = %v, want (0, 1s]", e.RetryAfter)
	}
	// Another identity has its own bucket.
	if _, err := reloaded.Issue(context.Background(), metaFor(t, "uri:spiffe://test/other"), request(t)); err != nil {
		t.Errorf("other identity: %v", err)
	}
	// Tokens refill with time.
	h.clock.Set(testNow.Add(time.Second))
	if _, err := reloaded.Issue(context.Background(), h.meta, request(t)); err != nil {
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
			res, err := h.iss.Issue(context.Background(), h.meta, request(t))
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
			if rec.Status != c.status || rec.TBSHash == "" {
				t.Errorf("record status = %s (TBS hash %q), want %s with the TBS hash", rec.Status, rec.TBSHash, c.status)
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
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
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
	_, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.CommonName = cn(t, "evil.com") }))
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
	rsaOnly := testProfile(t, func(p *ProfileConfig) { p.Policy.SignatureAlgorithms = []string{"RSA-*"} })
	if err := h.iss.CheckProfile(context.Background(), rsaOnly); err == nil || !strings.Contains(err.Error(), "can never issue") {
		t.Errorf("CheckProfile(RSA-only on EC CA) = %v", err)
	}
}

func TestNewProfileReportsEveryProblem(t *testing.T) {
	_, err := NewProfile(profileConfig(func(p *ProfileConfig) {
		p.ID, p.Name, p.Slug, p.Backdate = "nope", "Web", "Bad Slug", "1h"
		p.AllowedIdentities = []string{"spiffe://test/client", "uri:spiffe://test/*"}
		p.Managers = []string{"demo-admin"}
		p.Defaults = DefaultsConfig{KeyUsages: []string{"flying"}}
		p.RateLimit.PerMinute = -1
	}))
	if err == nil {
		t.Fatal("NewProfile accepted a broken profile")
	}
	for _, want := range []string{`id: "nope" is not a UUID`, `name: "Web"`, `slug: "Bad Slug"`, "backdate: 1h is more than",
		`allowedIdentities[0]`, `uri:spiffe://test/client`, `managers[0]`, `unknown key usage "flying"`,
		"could carry no EKU", "rateLimit: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A required EKU in the policy is enough.
	if _, err := NewProfile(profileConfig(func(p *ProfileConfig) {
		p.Defaults.ExtendedKeyUsages = nil
		p.Policy.ExtendedKeyUsages = &policy.NameRule{Required: []string{"client_auth"}}
	})); err != nil {
		t.Errorf("a profile whose policy requires an EKU was refused: %v", err)
	}
}

// The audit key signs the chain's head; nothing new means no checkpoint.
func TestCheckpoint(t *testing.T) {
	h := newHarness(t, false)
	if _, err := h.iss.Issue(context.Background(), h.meta, request(t)); err != nil {
		t.Fatal(err)
	}
	cp, err := h.service.Checkpoint(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("Checkpoint = %v, %v", cp, err)
	}
	if cp.Seq != 1 || cp.Hash != "head" || !cp.Time.Equal(testNow) {
		t.Errorf("checkpoint %+v does not cover the head", cp)
	}
	if err := record.VerifyCheckpoint(h.service.auditKey.Public(), *cp); err != nil {
		t.Errorf("checkpoint signature: %v", err)
	}
	if again, err := h.service.Checkpoint(context.Background()); err != nil || again != nil {
		t.Errorf("a second checkpoint with nothing new = %v, %v", again, err)
	}
}

// Whatever value ParseSAN accepts and the policy allows is byte for byte
// what the certificate encodes and the record stores.
func FuzzCanonicalValueRoundTrip(f *testing.F) {
	for _, s := range []string{"A.Example.Internal", "::ffff:10.1.2.3", "0:0:0:0:0:0:0:1", "Ops@EXAMPLE.internal",
		"SPIFFE://Example.Internal/ns/a", "https://x.example/%7Euser", "HTTPS://X.example:443", "xn--bcher-kva.example", "bücher.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h := newHarness(t, false, func(p *ProfileConfig) {
			p.Policy.CommonName = nil
			p.Policy.AltNames = map[string]*policy.NameRule{policy.SANDNS: {Allowed: []string{"*"}},
				policy.SANIP: {Allowed: []string{"*"}}, policy.SANEmail: {Allowed: []string{"*"}}, policy.SANURI: {Allowed: []string{"*"}}}
		})
		for _, typ := range policy.SANTypeNames {
			s, err := policy.ParseSAN(typ, raw)
			if err != nil {
				continue
			}
			res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) {
				r.CommonName, r.AltNames = policy.CommonName{}, []policy.SAN{s}
			}))
			if err != nil {
				if e := AsError(err); e.Kind == KindPolicy || e.Kind == KindBadRequest {
					continue
				}
				t.Fatalf("%s %q: %v", typ, raw, err)
			}
			leaf := parsePEM(t, res.Certificate)
			var got []string
			got = append(got, leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				got = append(got, ip.String())
			}
			got = append(got, leaf.EmailAddresses...)
			for _, u := range leaf.URIs {
				got = append(got, u.String())
			}
			var stored []string
			for _, c := range h.store.records {
				if c.ID == res.CertificateID {
					for _, a := range c.AltNames {
						stored = append(stored, a.Value)
					}
				}
			}
			if len(got) != 1 || got[0] != s.Value() || len(stored) != 1 || stored[0] != s.Value() {
				t.Fatalf("%s %q: canonical %q, certificate %q, record %q", typ, raw, s.Value(), got, stored)
			}
		}
	})
}
