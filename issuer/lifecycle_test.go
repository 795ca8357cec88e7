package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// csrPEM makes a CSR for key with the given subject CN and SANs.
func csrPEM(t *testing.T, key crypto.Signer, cn string, dns []string, ips []net.IP) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestSignCSR(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"EC P-384": ecKey, "RSA 2048": rsaKey} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, false)
			csr := csrPEM(t, key, "API.example.internal", []string{"API.example.internal"}, []net.IP{net.ParseIP("::ffff:10.0.0.9")})
			res, err := h.iss.Sign(context.Background(), h.meta, SignRequest{ProfileID: profileID, CSR: csr, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if res.PrivateKey != "" {
				t.Error("a CSR signature answered a private key")
			}
			leaf := parsePEM(t, res.Certificate)
			if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("the certificate does not carry the CSR's key")
			}
			if leaf.Subject.CommonName != "api.example.internal" || leaf.DNSNames[0] != "api.example.internal" || leaf.IPAddresses[0].String() != "10.0.0.9" {
				t.Errorf("names %q %v %v, want the CSR's, canonical", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
			}
			// Defaults apply when the CSR asks for no usages; no keyEncipherment for an EC key.
			wantKU := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
			if _, ec := key.(*ecdsa.PrivateKey); ec {
				wantKU = x509.KeyUsageDigitalSignature
			}
			if leaf.KeyUsage != wantKU || leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("key usage %v, signed with %v", leaf.KeyUsage, leaf.SignatureAlgorithm)
			}
			rec := h.store.only(t)
			block, _ := pem.Decode([]byte(csr))
			if string(rec.CSR) != string(block.Bytes) || rec.CSRHash != sha256Hex(block.Bytes) || rec.KeyAlgorithm != KeyAlgorithmOf(key.Public()) {
				t.Errorf("the record does not keep the CSR: hash %q, key %s", rec.CSRHash, rec.KeyAlgorithm)
			}
		})
	}
}

func TestSignCSRRefusals(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cases := []struct {
		name, csr string
		kind      Kind
		msg       string
	}{
		{"not a CSR", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", KindBadRequest, "Invalid CSR"},
		{"weak key", csrPEM(t, weak, "a.example.internal", []string{"a.example.internal"}, nil), KindBadRequest, "1024 bits"},
		{"a name the policy does not allow", csrPEM(t, key, "a.example.internal", []string{"evil.com"}, nil), KindPolicy, "'evil.com'"},
		{"a denied name in another case", csrPEM(t, key, "", []string{"ADMIN.example.internal"}, nil), KindPolicy, "admin.example.internal"},
		{"a key algorithm the profile does not allow", csrPEM(t, p384, "a.example.internal", []string{"a.example.internal"}, nil), KindPolicy, "EC_secp384r1"},
	}
	onlyP256 := func(c *ProfileConfig) { c.Policy.KeyAlgorithms = []string{"EC_prime256v1", "RSA_2048"} }
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false, onlyP256)
			_, err := h.iss.Sign(context.Background(), h.meta, SignRequest{ProfileID: profileID, CSR: c.csr, TTL: time.Hour})
			if e := wantKind(t, err, c.kind); !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q lacks %q", e.Message, c.msg)
			}
			if h.signer.calls != 0 || len(h.store.records) != 0 {
				t.Error("a refused CSR reached the pipeline")
			}
		})
	}
}

// Who may read, renew and revoke (DESIGN.md §12): the requester and the
// profile's managers; nobody else.
func TestLifecycleAuthorization(t *testing.T) {
	for _, who := range []struct {
		identity string
		allowed  bool
	}{
		{"uri:spiffe://test/client", true},   // the requester
		{"uri:spiffe://admins/ops", true},    // a manager
		{"uri:spiffe://test/another", false}, // allowed on the profile, but not its requester
	} {
		t.Run(who.identity, func(t *testing.T) {
			h := newHarness(t, false)
			res, err := h.iss.Issue(context.Background(), h.meta, request(t))
			if err != nil {
				t.Fatal(err)
			}
			m := metaFor(t, who.identity)
			_, lookupErr := h.iss.Lookup(context.Background(), m, res.SerialNumber, false)
			_, renewErr := h.iss.Renew(context.Background(), m, res.CertificateID, false)
			_, revokeErr := h.iss.Revoke(context.Background(), m, res.SerialNumber, false, "SUPERSEDED")
			for op, err := range map[string]error{"look-up": lookupErr, "renewal": renewErr, "revocation": revokeErr} {
				if who.allowed && err != nil {
					t.Errorf("%s by %s: %v", op, who.identity, err)
				}
				if !who.allowed {
					if e := wantKind(t, err, KindForbidden); !strings.Contains(e.Message, "not allowed") {
						t.Errorf("%s: %q", op, e.Message)
					}
				}
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.iss.Revoke(context.Background(), h.meta, res.SerialNumber, false, "CERTIFICATE_HOLD"); err == nil ||
		!strings.Contains(AsError(err).Message, "CERTIFICATE_HOLD is not supported") {
		t.Errorf("certificateHold: %v", err)
	}
	wantKind(t, func() error {
		_, err := h.iss.Revoke(context.Background(), h.meta, "4bad", false, "SUPERSEDED")
		return err
	}(), KindNotFound)
	rec, err := h.iss.Revoke(context.Background(), h.meta, res.SerialNumber, false, "KEY_COMPROMISE")
	if err != nil || rec.Status != record.StatusRevoked || !rec.RevokedAt.Equal(testNow) || rec.RevocationReason != "KEY_COMPROMISE" {
		t.Fatalf("Revoke = %+v, %v", rec, err)
	}
	last := h.store.audit[len(h.store.audit)-1]
	if last.Action != record.ActionRevoked || last.CertificateID != res.CertificateID || last.Reason != "KEY_COMPROMISE" {
		t.Errorf("audit entry %+v", last)
	}
	_, err = h.iss.Revoke(context.Background(), h.meta, res.SerialNumber, false, "KEY_COMPROMISE")
	if e := wantKind(t, err, KindBadRequest); e.Message != "Certificate already revoked" {
		t.Errorf("second revocation: %q", e.Message)
	}
	view, err := h.iss.Lookup(context.Background(), h.meta, res.SerialNumber, false)
	if err != nil || view.Status != StatusRevoked {
		t.Errorf("look-up after revocation: %+v %v", view, err)
	}
}

func TestRenew(t *testing.T) {
	h := newHarness(t, false)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) {
		r.AltNames = append(r.AltNames, san(t, "ip_address", "10.1.1.1"))
		r.TTL = 5 * time.Hour
	}))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Set(testNow.Add(time.Hour))
	renewed, err := h.iss.Renew(context.Background(), h.meta, res.CertificateID, true)
	if err != nil {
		t.Fatal(err)
	}
	old, leaf := parsePEM(t, res.Certificate), parsePEM(t, renewed.Certificate)
	switch {
	case renewed.SerialNumber == res.SerialNumber, renewed.PrivateKey == "" || renewed.PrivateKey == res.PrivateKey:
		t.Error("a renewal must have a new serial and a new key")
	case strings.Join(leaf.DNSNames, ",") != strings.Join(old.DNSNames, ",") || leaf.IPAddresses[0].String() != "10.1.1.1" ||
		leaf.Subject.CommonName != old.Subject.CommonName:
		t.Errorf("names changed: %v %v", leaf.DNSNames, leaf.IPAddresses)
	case leaf.NotAfter.Sub(leaf.NotBefore) != 5*time.Hour || !leaf.NotBefore.Equal(testNow.Add(time.Hour)):
		t.Errorf("lifetime %v from %v, want the original 5h from now", leaf.NotAfter.Sub(leaf.NotBefore), leaf.NotBefore)
	case renewed.CertificateChain != renewed.IssuingCACertificate:
		t.Error("removeRootsFromChain was not applied")
	}
	rec, err := h.store.Certificate(context.Background(), renewed.CertificateID)
	if err != nil || rec.Renews != res.CertificateID {
		t.Errorf("the renewal's record does not link to the original: %+v %v", rec, err)
	}

	// A certificate signed from a CSR cannot be renewed: pkid never held its key.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, err := h.iss.Sign(context.Background(), h.meta, SignRequest{ProfileID: profileID, TTL: time.Hour,
		CSR: csrPEM(t, key, "c.example.internal", []string{"c.example.internal"}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.iss.Renew(context.Background(), h.meta, signed.CertificateID, false)
	if e := wantKind(t, err, KindBadRequest); !strings.Contains(e.Message, "CSR") {
		t.Errorf("renewing a CSR certificate: %q", e.Message)
	}
}

// A manager's renewal leaves the certificate with its requester (DESIGN.md
// §12): the new record names the original requester, who can still read,
// renew and revoke it; the audit entry names the manager, who acted.
func TestRenewByManagerKeepsTheRequester(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, false)
	res, err := h.iss.Issue(ctx, h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	manager := metaFor(t, "uri:spiffe://admins/ops")
	manager.RequestID = "req-manager0000000"
	renewed, err := h.iss.Renew(ctx, manager, res.CertificateID, false)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := h.store.Certificate(ctx, renewed.CertificateID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Identity != h.meta.Identity.String() || rec.Renews != res.CertificateID || rec.RequestID != manager.RequestID {
		t.Errorf("the renewal's record names requester %q (renews %q, request %q), want %q, the original's",
			rec.Identity, rec.Renews, rec.RequestID, h.meta.Identity)
	}
	var issued []record.AuditEvent
	for _, ev := range h.store.audit {
		if ev.Action == record.ActionIssued && ev.CertificateID == renewed.CertificateID {
			issued = append(issued, ev)
		}
	}
	if len(issued) != 1 || issued[0].Identity != manager.Identity.String() || issued[0].RequestID != manager.RequestID {
		t.Errorf("audit of the renewal %+v, want one issued entry naming the manager", issued)
	}

	// The requester keeps every right on the renewed certificate.
	if view, err := h.iss.Lookup(ctx, h.meta, renewed.SerialNumber, false); err != nil || view.Record.ID != renewed.CertificateID {
		t.Errorf("the requester's look-up of the renewal: %v", err)
	}
	again, err := h.iss.Renew(ctx, h.meta, renewed.CertificateID, false)
	if err != nil {
		t.Fatalf("the requester's renewal of the manager's renewal: %v", err)
	}
	if _, err := h.iss.Revoke(ctx, h.meta, again.SerialNumber, false, "SUPERSEDED"); err != nil {
		t.Errorf("the requester's revocation of the renewal: %v", err)
	}
	if rec, _ := h.store.Certificate(ctx, again.CertificateID); rec.Identity != h.meta.Identity.String() {
		t.Errorf("the requester's own renewal names %q", rec.Identity)
	}
}

// Renewal evaluates the profile's current policy and the certificate's
// state again (DESIGN.md §12): what the profile no longer allows, or a
// revoked certificate, is refused with its reason, and nothing is signed
// or recorded but the refusal.
func TestRenewRefusals(t *testing.T) {
	cases := []struct {
		name string
		// now is the profile after a reload; nil keeps it.
		now    func(*ProfileConfig)
		revoke bool
		kind   Kind
		msg    string
	}{
		{"the SAN is now denied", func(c *ProfileConfig) {
			c.Policy.AltNames[policy.SANDNS].Denied = []string{"a.example.internal"}
		}, false, KindPolicy, "a.example.internal"},
		{"the requester is no longer allowed", func(c *ProfileConfig) {
			c.AllowedIdentities = []string{"uri:spiffe://test/someone-else"}
		}, false, KindForbidden, "You are not allowed to renew this certificate"},
		{"the lifetime now exceeds the maximum", func(c *ProfileConfig) { c.Policy.MaxValidity = "1h" }, false, KindPolicy, "validity"},
		{"revoked", nil, true, KindBadRequest, "A revoked certificate cannot be renewed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, false)
			res, err := h.iss.Issue(ctx, h.meta, request(t))
			if err != nil {
				t.Fatal(err)
			}
			if c.revoke {
				if _, err := h.iss.Revoke(ctx, h.meta, res.SerialNumber, false, "KEY_COMPROMISE"); err != nil {
					t.Fatal(err)
				}
			}
			iss := h.iss
			if c.now != nil { // a reload: the same service and store, the profile as it is now
				if iss, err = New(Config{Profiles: []*Profile{testProfile(t, c.now)}, CAs: []*CA{h.ca}, Service: h.service,
					Linter: h.lint, Clock: h.clock, Limiter: NewRateLimiter(0, h.clock)}); err != nil {
					t.Fatal(err)
				}
			}
			signatures, entries := h.signer.calls, len(h.store.audit)
			_, err = iss.Renew(ctx, h.meta, res.CertificateID, false)
			if e := wantKind(t, err, c.kind); !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q lacks %q", e.Message, c.msg)
			}
			if h.signer.calls != signatures || len(h.store.records) != 1 {
				t.Errorf("a refused renewal reached the pipeline: %d signatures, %d records", h.signer.calls-signatures, len(h.store.records))
			}
			if got := h.store.audit[entries:]; len(got) != 1 || got[0].Action != record.ActionRefused || got[0].Identity != h.meta.Identity.String() {
				t.Errorf("audit after the refusal %+v, want one refusal entry", got)
			}
		})
	}
}

// crlLinter is a CRLLinter that fails the lints it is told to.
type crlLinter struct{ failed []string }

func (l *crlLinter) LintCRL(context.Context, []byte) ([]string, error) { return l.failed, nil }

func revokedFixture(t *testing.T, h *harness, notAfter time.Time, reason string) *record.Certificate {
	t.Helper()
	id := "00000000-0000-4000-8000-" + strings.Repeat("0", 11) + string(rune('a'+len(h.store.records)))
	serial := new(big.Int).Lsh(big.NewInt(int64(len(h.store.records)+1)), 100).Text(16)
	c := &record.Certificate{ID: id, Serial: serial, CA: h.ca.Name(), Status: record.StatusRevoked, NotAfter: notAfter,
		RevokedAt: testNow.Add(-time.Minute), RevocationReason: reason}
	h.store.records[id] = c
	return c
}

// CRL contents (DESIGN.md §13): numbers increase by one per CRL, a
// reasonCode per entry but for unspecified, the CRL verifies with the CA,
// and an expired certificate is carried by one CRL issued after it expired,
// then dropped.
func TestCRLContents(t *testing.T) {
	h := newHarness(t, false)
	pub := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: time.Second}, nil)
	pub.SetCAs([]*CA{h.ca}, &crlLinter{})
	compromised := revokedFixture(t, h, testNow.Add(time.Hour), "KEY_COMPROMISE")
	unspecified := revokedFixture(t, h, testNow.Add(time.Hour), "UNSPECIFIED")
	expiring := revokedFixture(t, h, testNow.Add(30*time.Minute), "SUPERSEDED")

	parse := func(p *PublishedCRL) *x509.RevocationList {
		t.Helper()
		crl, err := x509.ParseRevocationList(p.DER)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(h.ca.Certificate()); err != nil {
			t.Fatalf("CRL %d does not verify with the CA: %v", p.Number, err)
		}
		return crl
	}
	entries := func(crl *x509.RevocationList) map[string]int {
		out := map[string]int{}
		for _, e := range crl.RevokedCertificateEntries {
			out[e.SerialNumber.Text(16)] = e.ReasonCode
		}
		return out
	}
	first, err := pub.Refresh(context.Background(), h.ca.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	crl := parse(first)
	got := entries(crl)
	if crl.Number.Int64() != 1 || len(got) != 3 || got[compromised.Serial] != 1 || got[unspecified.Serial] != 0 || got[expiring.Serial] != 4 ||
		!crl.NextUpdate.Equal(crl.ThisUpdate.Add(24*time.Hour)) {
		t.Fatalf("first CRL: number %v, entries %v, %v..%v", crl.Number, got, crl.ThisUpdate, crl.NextUpdate)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Text(16) == unspecified.Serial && len(e.Extensions) != 0 {
			t.Error("an unspecified revocation carries a reasonCode (RFC 5280 §5.3.1: omit it)")
		}
	}
	// After the expiry: the next CRL still carries it (none issued after
	// its notAfter has), the one after that drops it.
	h.clock.Set(testNow.Add(time.Hour + 40*time.Minute))
	second, _ := pub.Refresh(context.Background(), h.ca.Name(), nil)
	h.clock.Set(testNow.Add(2 * time.Hour))
	third, _ := pub.Refresh(context.Background(), h.ca.Name(), nil)
	if n := parse(second).Number.Int64(); n != 2 || len(entries(parse(second))) != 3 {
		t.Errorf("second CRL %d with %v, want number 2 still carrying the expired entries", n, entries(parse(second)))
	}
	if got := entries(parse(third)); parse(third).Number.Int64() != 3 || len(got) != 0 {
		t.Errorf("third CRL %d with %v, want number 3 without the certificates that expired before the second", parse(third).Number, got)
	}

	// A CRL that fails its lint is never signed; its number stays used.
	pub.SetCAs([]*CA{h.ca}, &crlLinter{failed: []string{"e_crl_something"}})
	signatures := h.signer.calls
	if _, err := pub.Refresh(context.Background(), h.ca.Name(), nil); err == nil || !strings.Contains(err.Error(), "e_crl_something") {
		t.Fatalf("a CRL failing lint: %v", err)
	}
	if h.signer.calls != signatures {
		t.Error("a CRL that failed its lint was signed")
	}
	pub.SetCAs([]*CA{h.ca}, &crlLinter{})
	fifth, err := pub.Refresh(context.Background(), h.ca.Name(), nil)
	if err != nil || fifth.Number != 5 {
		t.Errorf("after an aborted CRL 4 the next is %v (%v), want 5", fifth, err)
	}
	if cur, _ := pub.Current(h.ca.Name()); cur != fifth {
		t.Error("the current CRL is not the newest")
	}
}

// A fault after a CRL number is reserved (DESIGN.md §5, §13): the token
// fails, or the daemon stops while the token signs. The reserved number is
// resolved — aborted, or finalized when the signature came back — with a
// context the stop does not cancel, is never reused, and the next CRL has
// the number after it.
func TestCRLNumberSurvivesAFaultAfterReservation(t *testing.T) {
	deviceError := errors.New("pkcs11: CKR_DEVICE_ERROR")
	cases := []struct {
		name   string
		fault  func(s *countingSigner, stop context.CancelFunc)
		status string // of the reserved number afterwards
	}{
		{"the token fails to sign", func(s *countingSigner, _ context.CancelFunc) { s.err = deviceError }, record.StatusAborted},
		{"the daemon stops while the token signs, which fails", func(s *countingSigner, stop context.CancelFunc) {
			s.onSign, s.err = stop, deviceError
		}, record.StatusAborted},
		{"the daemon stops while the token signs, which succeeds", func(s *countingSigner, stop context.CancelFunc) {
			s.onSign = stop
		}, record.StatusIssued},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			pub := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: time.Second}, nil)
			pub.SetCAs([]*CA{h.ca}, &crlLinter{})
			ca := h.ca.Name()
			first, err := pub.Refresh(context.Background(), ca, nil)
			if err != nil {
				t.Fatal(err)
			}
			reserved := first.Number + 1

			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			c.fault(h.signer, stop)
			signatures := h.signer.calls
			_, err = pub.Refresh(ctx, ca, nil)
			if h.signer.calls != signatures+1 {
				t.Fatalf("the token was asked %d times, want once: the fault must come after the reservation", h.signer.calls-signatures)
			}
			if failed := c.status == record.StatusAborted; failed != (err != nil) {
				t.Fatalf("Refresh after the fault: %v", err)
			}
			if rows := h.store.crlRows(ca)[reserved]; len(rows) != 1 || rows[0].Status != c.status {
				t.Fatalf("CRL %d after the fault: %+v, want one %s row", reserved, rows, c.status)
			}
			var entries []record.AuditEvent
			for _, ev := range h.store.audit {
				if ev.CRLNumber == reserved {
					entries = append(entries, ev)
				}
			}
			wantAction := map[string]string{record.StatusAborted: record.ActionAborted, record.StatusIssued: record.ActionCRL}[c.status]
			if len(entries) != 1 || entries[0].Action != wantAction {
				t.Errorf("audit of CRL %d: %+v, want one %s entry", reserved, entries, wantAction)
			}
			if cur, _ := pub.Current(ca); c.status == record.StatusAborted && cur != first {
				t.Errorf("after a failed CRL the publisher serves %d, want %d still", cur.Number, first.Number)
			}

			h.signer.onSign, h.signer.err = nil, nil
			next, err := pub.Refresh(context.Background(), ca, nil)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(next.DER)
			if err != nil {
				t.Fatal(err)
			}
			if next.Number != reserved+1 || crl.Number.Int64() != reserved+1 {
				t.Errorf("the CRL after the fault is number %d (extension %v), want %d", next.Number, crl.Number, reserved+1)
			}
			for n, rows := range h.store.crlRows(ca) {
				if len(rows) != 1 || rows[0].Status == record.StatusPending {
					t.Errorf("CRL number %d: %+v, want one resolved row", n, rows)
				}
			}
		})
	}
}

// A revocation makes a new CRL within MaxDelay; without one, a CRL is
// remade once half its validity has passed.
func TestCRLPublisherRefreshes(t *testing.T) {
	h := newHarness(t, false)
	pub := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: 40 * time.Millisecond}, nil)
	pub.SetCAs([]*CA{h.ca}, &crlLinter{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { pub.Run(ctx, nil); close(done) }()
	waitNumber := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, ok := pub.Current(h.ca.Name()); ok && c.Number >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no CRL %d", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitNumber(1)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.iss.Revoke(context.Background(), h.meta, res.SerialNumber, false, "KEY_COMPROMISE"); err != nil {
		t.Fatal(err)
	}
	waitNumber(2)
	if c, _ := pub.Current(h.ca.Name()); c.Entries != 1 {
		t.Errorf("the CRL after the revocation has %d entries", c.Entries)
	}
	h.clock.Set(testNow.Add(12 * time.Hour)) // half of the validity
	waitNumber(3)
	cancel()
	<-done
}

// Two nodes on one store (DESIGN.md §16): the node holding a CA's lead
// makes its CRLs, after its own revocations and the other node's alike;
// the other adopts them and makes none; when the leader stops, the other
// takes over.
func TestCRLTwoNodesShareTheWork(t *testing.T) {
	h := newHarness(t, false)
	cluster := newFakeCluster()
	h.service.cluster = cluster.node()
	svcB, err := NewService(ServiceConfig{Store: h.store, Lister: h.store, Clock: h.clock, Cluster: cluster.node()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := CRLConfig{Validity: 24 * time.Hour, MaxDelay: time.Second}
	a, b := NewCRLPublisher(h.service, cfg, nil), NewCRLPublisher(svcB, cfg, nil)
	a.SetCAs([]*CA{h.ca}, &crlLinter{})
	b.SetCAs([]*CA{h.ca}, &crlLinter{})
	ctx := context.Background()
	round := func() {
		a.refreshDue(ctx, h.store.revocationCount)
		b.refreshDue(ctx, h.store.revocationCount)
	}
	both := func(want int64, entries int) {
		t.Helper()
		ca, _ := a.Current(h.ca.Name())
		cb, _ := b.Current(h.ca.Name())
		if ca == nil || cb == nil || ca.Number != want || cb.Number != want || cb.Entries != entries || h.store.crlCount() != int(want) {
			t.Fatalf("want CRL %d with %d entries on both nodes and %d in the store; A %+v, B %+v, store %d", want, entries, want, ca, cb, h.store.crlCount())
		}
	}
	round()
	both(1, 0)
	revokedFixture(t, h, testNow.Add(time.Hour), "KEY_COMPROMISE")
	b.refreshDue(ctx, h.store.revocationCount) // B sees it first, but A leads
	round()
	both(2, 1)
	round()
	both(2, 1) // nothing owed: no CRL more

	a.releaseLeads() // A stops
	revokedFixture(t, h, testNow.Add(time.Hour), "SUPERSEDED")
	b.refreshDue(ctx, h.store.revocationCount)
	if got, _ := b.Current(h.ca.Name()); got.Number != 3 || got.Entries != 2 {
		t.Fatalf("B did not take over: %+v", got)
	}

	// B loses the lead with its database connection and A takes it (and
	// makes one CRL on taking over: it cannot know what B's covered). B
	// must notice, or from then on every revocation would make two CRLs.
	cluster.lose("crl:" + h.ca.Name())
	a.refreshDue(ctx, h.store.revocationCount)
	b.refreshDue(ctx, h.store.revocationCount)
	both(4, 2)
	revokedFixture(t, h, testNow.Add(time.Hour), "KEY_COMPROMISE")
	b.refreshDue(ctx, h.store.revocationCount)
	a.refreshDue(ctx, h.store.revocationCount)
	b.refreshDue(ctx, h.store.revocationCount)
	both(5, 3)
}

// A record keeps its requester as canonicalized when it was made; a rule
// that canonicalizes more today (default ports, host-like CNs) leaves the
// owner the owner, and no other identity becomes one.
func TestRequesterRecordedUnderEarlierRules(t *testing.T) {
	for _, c := range []struct {
		stored, now string
		want        bool
	}{
		{"uri:spiffe://example.internal/demo-client", "uri:spiffe://example.internal/demo-client", true},
		{"uri:https://svc.example.internal:443/agent", "uri:https://svc.example.internal/agent", true},
		{"uri:https://svc.example.internal", "uri:https://svc.example.internal/", true},
		{"cn:Demo-Client", "cn:demo-client", true},
		{"uri:https://svc.example.internal:8443/agent", "uri:https://svc.example.internal/agent", false},
		{"cn:Demo-Client", "cn:demo-client2", false},
		{"dns:svc.example.internal", "cn:svc.example.internal", false},
		{"not an identity", "cn:not an identity", false},
	} {
		id, err := policy.ParseIdentity(c.now)
		if err != nil {
			t.Fatal(err)
		}
		if got := isRequester(&record.Certificate{Identity: c.stored}, id); got != c.want {
			t.Errorf("record by %q, asked by %q: requester %t, want %t", c.stored, id, got, c.want)
		}
	}
}

// Every path takes the same view: the owner of a record stored under an
// earlier spelling of its identity looks it up, renews it, and revokes
// the renewal, which is recorded under today's spelling.
func TestOwnerOfAnEarlierSpellingKeepsEveryRight(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, false)
	res, err := h.iss.Issue(ctx, h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	h.store.mu.Lock()
	h.store.records[res.CertificateID].Identity = "uri:SPIFFE://TEST/client" // as an earlier rule could have kept it
	h.store.mu.Unlock()
	if _, err := h.iss.Lookup(ctx, h.meta, res.SerialNumber, false); err != nil {
		t.Errorf("look-up by the owner: %v", err)
	}
	renewed, err := h.iss.Renew(ctx, h.meta, res.CertificateID, false)
	if err != nil {
		t.Fatalf("renewal by the owner: %v", err)
	}
	if rec, _ := h.store.Certificate(ctx, renewed.CertificateID); rec == nil || rec.Identity != h.meta.Identity.String() {
		t.Errorf("the renewal is recorded for %+v, want %q", rec, h.meta.Identity)
	}
	if _, err := h.iss.Revoke(ctx, h.meta, res.SerialNumber, false, "SUPERSEDED"); err != nil {
		t.Errorf("revocation by the owner: %v", err)
	}
	other := metaFor(t, "uri:spiffe://test/other")
	_, err = h.iss.Renew(ctx, other, renewed.CertificateID, false)
	wantKind(t, err, KindForbidden)
}

// slowCRLLinter takes its time, as zlint does over a large CRL.
type slowCRLLinter struct{ d time.Duration }

func (l slowCRLLinter) LintCRL(context.Context, []byte) ([]string, error) {
	time.Sleep(l.d) // stands in for the work of a big CRL; nothing waits on it
	return nil, nil
}

// A revocation waits a quarter of crl.maxDelay for others to share its CRL,
// less once the CA's CRLs take long to make, and a CRL that takes more than
// half of crl.maxDelay to make is reported to the operator.
func TestCRLBatchWaitLeavesRoomForTheBuild(t *testing.T) {
	h := newHarness(t, false)
	logged := make(logLines, 16)
	pub := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: 2 * time.Second}, nil)
	pub.SetCAs([]*CA{h.ca}, &crlLinter{})
	for _, c := range []struct{ took, want time.Duration }{
		{0, 500 * time.Millisecond},
		{900 * time.Millisecond, 500 * time.Millisecond},
		{1200 * time.Millisecond, 300 * time.Millisecond},
		{3 * time.Second, 0},
	} {
		pub.took[h.ca.Name()] = c.took
		if got := pub.batchWait(); got != c.want {
			t.Errorf("last build %s: wait %s, want %s", c.took, got, c.want)
		}
	}

	slow := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: 40 * time.Millisecond}, slog.New(logged))
	slow.SetCAs([]*CA{h.ca}, slowCRLLinter{d: 30 * time.Millisecond})
	for range 2 {
		if _, err := slow.Refresh(context.Background(), h.ca.Name(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := slow.batchWait(); got != 0 {
		t.Errorf("after a 30ms build with maxDelay 40ms: wait %s, want 0", got)
	}
	close(logged)
	warnings := 0
	var msgs []any
	for line := range logged {
		if line["msg"] == "making a CRL took more than half of crl.maxDelay: revocations may reach it later than crl.maxDelay; raise it" {
			warnings++
		}
		msgs = append(msgs, line["msg"])
	}
	if warnings != 1 {
		t.Errorf("%d warnings for two slow CRLs in a row, want one; log: %v", warnings, msgs)
	}
	// A CA no longer configured stops shortening the wait.
	slow.SetCAs(nil, slowCRLLinter{})
	if got := slow.batchWait(); got != 10*time.Millisecond {
		t.Errorf("with the slow CA gone: wait %s, want maxDelay/4", got)
	}
}
