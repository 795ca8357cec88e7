package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/record"
)

// lintAll is a Linter that passes everything (the real zlint runs in the
// daemon's tests).
type lintAll struct{}

func (lintAll) Lint(context.Context, string, []byte) ([]string, error) { return nil, nil }

type ocspHarness struct {
	*harness
	ocsp *OCSPResponder
	key  crypto.Signer
}

func newOCSPHarness(t *testing.T) *ocspHarness {
	t.Helper()
	h := &ocspHarness{harness: newHarness(t, false)}
	h.ocsp = NewOCSPResponder(h.service, OCSPConfig{Validity: 12 * time.Hour, ResponderValidity: 30 * 24 * time.Hour}, nil)
	h.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := h.ocsp.SetResponders(context.Background(), []OCSPKey{{CA: h.ca, Key: h.key}}, lintAll{}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *ocspHarness) ask(t *testing.T, cert *x509.Certificate, hash crypto.Hash) (OCSPAnswer, *ocsp.Response) {
	t.Helper()
	raw, err := ocsp.CreateRequest(cert, h.ca.Certificate(), &ocsp.RequestOptions{Hash: hash})
	if err != nil {
		t.Fatal(err)
	}
	a := h.ocsp.Respond(context.Background(), raw)
	if a.Status == OCSPMalformed || a.Status == OCSPUnauthorized || a.Status == OCSPTryLater {
		return a, nil
	}
	resp, err := ocsp.ParseResponseForCert(a.DER, cert, h.ca.Certificate())
	if err != nil {
		t.Fatalf("the answer does not verify as a relying party checks it: %v", err)
	}
	return a, resp
}

// The responder certificate is a delegated one (RFC 6960 §4.2.2.2) for the
// responder key, issued through the pipeline: recorded and audited.
func TestOCSPResponderCertificate(t *testing.T) {
	h := newOCSPHarness(t)
	var rec *record.Certificate
	for _, r := range h.store.records {
		rec = r
	}
	if rec == nil || rec.Profile != OCSPResponderProfile || rec.Status != record.StatusIssued {
		t.Fatalf("no issued responder record: %+v", rec)
	}
	c, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	nocheck := false
	for _, e := range c.Extensions {
		nocheck = nocheck || e.Id.Equal(oidOCSPNoCheck)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || !nocheck || c.IsCA ||
		c.CheckSignatureFrom(h.ca.Certificate()) != nil || !samePublicKey(c.PublicKey, h.key.Public()) ||
		c.NotAfter.Sub(c.NotBefore) != 30*24*time.Hour+time.Minute {
		t.Errorf("responder certificate: EKU %v nocheck %t, %v..%v", c.ExtKeyUsage, nocheck, c.NotBefore, c.NotAfter)
	}
	if len(h.store.audit) != 1 || h.store.audit[0].Action != record.ActionIssued || h.store.audit[0].Profile != OCSPResponderProfile {
		t.Errorf("audit %+v", h.store.audit)
	}

	// A reload with the same key keeps the certificate; a third of its
	// validity left, it is renewed.
	if err := h.ocsp.SetResponders(context.Background(), []OCSPKey{{CA: h.ca, Key: h.key}}, lintAll{}); err != nil || len(h.store.records) != 1 {
		t.Fatalf("a reload issued another responder certificate (%d records, %v)", len(h.store.records), err)
	}
	h.clock.Set(testNow.Add(21 * 24 * time.Hour))
	h.ocsp.refresh(context.Background())
	if len(h.store.records) != 2 {
		t.Errorf("with a third of its validity left the responder certificate was not renewed (%d records)", len(h.store.records))
	}
}

// Status selection (DESIGN.md §14) and the cache.
func TestOCSPAnswers(t *testing.T) {
	h := newOCSPHarness(t)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)

	a1, resp := h.ask(t, leaf, crypto.SHA1)
	if resp.Status != ocsp.Good || a1.Status != OCSPGood || !resp.ThisUpdate.Equal(testNow) || !resp.NextUpdate.Equal(testNow.Add(12*time.Hour)) {
		t.Fatalf("issued certificate: %+v", resp)
	}
	if a2, _ := h.ask(t, leaf, crypto.SHA1); string(a2.DER) != string(a1.DER) {
		t.Error("a second request was not answered from the cache")
	}
	if _, resp := h.ask(t, leaf, crypto.SHA256); resp.Status != ocsp.Good || resp.IssuerHash != crypto.SHA256 {
		t.Errorf("SHA-256 CertID: %+v", resp)
	}
	// Past half its validity the answer is signed again.
	h.clock.Set(testNow.Add(6 * time.Hour))
	if _, resp := h.ask(t, leaf, crypto.SHA1); !resp.ThisUpdate.Equal(testNow.Add(6 * time.Hour)) {
		t.Errorf("after half-life thisUpdate is %v", resp.ThisUpdate)
	}
	// A revocation is answered at once, with its time and reason.
	h.clock.Set(testNow.Add(7 * time.Hour))
	if _, err := h.iss.Revoke(context.Background(), h.meta, res.SerialNumber, false, "KEY_COMPROMISE"); err != nil {
		t.Fatal(err)
	}
	if _, resp := h.ask(t, leaf, crypto.SHA1); resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.KeyCompromise ||
		!resp.RevokedAt.Equal(testNow.Add(7*time.Hour)) {
		t.Errorf("after revocation: status %d reason %d at %v", resp.Status, resp.RevocationReason, resp.RevokedAt)
	}

	// A serial this CA never issued is unknown; another CA's is unauthorized.
	other := *leaf
	other.SerialNumber = big.NewInt(0x1234)
	if a, resp := h.ask(t, &other, crypto.SHA1); a.Status != OCSPUnknown || resp.Status != ocsp.Unknown {
		t.Errorf("never issued: %s", a.Status)
	}
	foreign, _ := testCA(t, false)
	raw, _ := ocsp.CreateRequest(leaf, foreign.Certificate(), nil)
	if a := h.ocsp.Respond(context.Background(), raw); a.Status != OCSPUnauthorized || string(a.DER) != string(ocsp.UnauthorizedErrorResponse) {
		t.Errorf("another CA: %s", a.Status)
	}
	if a := h.ocsp.Respond(context.Background(), []byte("garbage")); a.Status != OCSPMalformed || string(a.DER) != string(ocsp.MalformedRequestErrorResponse) {
		t.Errorf("garbage: %s", a.Status)
	}
	// An expired certificate is not good any more.
	h.clock.Set(testNow.Add(25 * time.Hour))
	res2, err := h.iss.Issue(context.Background(), h.meta, request(t, func(r *IssueRequest) { r.TTL = time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Set(testNow.Add(27 * time.Hour))
	if a, _ := h.ask(t, parsePEM(t, res2.Certificate), crypto.SHA1); a.Status != OCSPUnknown {
		t.Errorf("expired certificate: %s", a.Status)
	}
}

// Random serials cannot make the token sign without limit: past the
// budget the answer is the unsigned tryLater.
func TestOCSPUnknownBudget(t *testing.T) {
	h := newOCSPHarness(t)
	tryLater := 0
	for k := 0; k < 2*unknownPerSecond; k++ {
		raw, _ := (&ocsp.Request{HashAlgorithm: crypto.SHA1, IssuerNameHash: h.ocsp.responders["issuing"].nameHash[crypto.SHA1],
			IssuerKeyHash: h.ocsp.responders["issuing"].keyHash[crypto.SHA1], SerialNumber: big.NewInt(int64(1000 + k))}).Marshal()
		if a := h.ocsp.Respond(context.Background(), raw); a.Status == OCSPTryLater {
			tryLater++
		}
	}
	if tryLater == 0 {
		t.Errorf("%d unknown serials at once were all signed", 2*unknownPerSecond)
	}
}

// Run pre-signs an answer for every issued certificate.
func TestOCSPPreSigns(t *testing.T) {
	h := newOCSPHarness(t)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	h.ocsp.refresh(context.Background())
	h.ocsp.mu.RLock()
	a := h.ocsp.cache[cacheKey{ca: h.ca.Name(), serial: res.SerialNumber, hash: crypto.SHA1}]
	h.ocsp.mu.RUnlock()
	if a == nil || a.Status != OCSPGood {
		t.Fatalf("no pre-signed answer for %s: %+v", res.SerialNumber, a)
	}
	// ECDSA signatures are randomized: the same bytes mean the same signature.
	leaf := parsePEM(t, res.Certificate)
	if got, _ := h.ask(t, leaf, crypto.SHA1); string(got.DER) != string(a.DER) {
		t.Error("a pre-signed answer was signed again on request")
	}
}

// A revocation another process wrote (pkid revoke, another node) never
// reaches this responder's hooks; once the store's revocation count has
// been polled, the answer follows the record, and until then (at most a
// second) the cache answers without a read per request.
func TestOCSPFollowsTheRecordNotTheCache(t *testing.T) {
	h := newOCSPHarness(t)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if a, _ := h.ask(t, leaf, crypto.SHA1); a.Status != OCSPGood {
		t.Fatalf("issued: %s", a.Status)
	}
	if a, _ := h.ask(t, leaf, crypto.SHA1); a.Status != OCSPGood {
		t.Fatalf("answered from the cache: %s", a.Status)
	}
	if err := h.store.Revoke(context.Background(), res.CertificateID, testNow, "SUPERSEDED", record.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	h.ocsp.pollRevocations(context.Background(), h.store.revocationCount)
	if _, resp := h.ask(t, leaf, crypto.SHA1); resp == nil || resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.Superseded {
		t.Fatalf("after a revocation behind the responder's back: %+v", resp)
	}
}

// fakeCluster is the shared part of a store two nodes use, with a lead
// lock the test can hold: the case real PostgreSQL cannot be made to show
// on demand (another node mid-round).
type fakeCluster struct {
	mu     sync.Mutex
	held   map[string]int // task → the holder's lease number
	lease  int
	stored map[string]record.OCSPResponse
	puts   int
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{held: map[string]int{}, stored: map[string]record.OCSPResponse{}}
}

// node is one node's view of the cluster: the leases it took.
func (c *fakeCluster) node() *fakeNode { return &fakeNode{fakeCluster: c, mine: map[string]int{}} }

type fakeNode struct {
	*fakeCluster
	mine map[string]int
}

func (n *fakeNode) Lead(_ context.Context, task string) (func(), bool, error) {
	c := n.fakeCluster
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[task] != 0 {
		return nil, false, nil
	}
	c.lease++
	lease := c.lease
	c.held[task], n.mine[task] = lease, lease
	return func() { // a lease already lost frees nobody else's
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.held[task] == lease {
			delete(c.held, task)
		}
	}, true, nil
}

func (n *fakeNode) StillLeads(_ context.Context, task string) (bool, error) {
	c := n.fakeCluster
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.mine[task] != 0 && c.held[task] == n.mine[task], nil
}

// lose drops a lead as a database restart would, behind its holder's back.
func (c *fakeCluster) lose(task string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, task)
}

func (c *fakeCluster) PutOCSPResponses(_ context.Context, rs []record.OCSPResponse) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		c.stored[r.CA+"/"+r.Serial] = r
		c.puts++
	}
	return nil
}

func (c *fakeCluster) OCSPResponse(_ context.Context, ca, serial string) (*record.OCSPResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.stored[ca+"/"+serial]
	if !ok {
		return nil, record.ErrNotFound
	}
	return &r, nil
}

// Two nodes on one store: the node holding the lead pre-signs and stores;
// the other serves the stored answer byte for byte, and while the lead is
// held elsewhere it answers tryLater rather than a status the record no
// longer has.
func TestOCSPTwoNodes(t *testing.T) {
	h := newOCSPHarness(t)
	cluster := newFakeCluster()
	h.service.cluster = cluster.node()
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	h.ocsp.refresh(context.Background())
	if cluster.puts == 0 {
		t.Fatal("the leading node stored no answer")
	}

	// Node B: its own service and responder on the same store and cluster.
	svcB, err := NewService(ServiceConfig{Store: h.store, Lister: h.store, Clock: h.clock, Cluster: cluster.node()})
	if err != nil {
		t.Fatal(err)
	}
	b := &ocspHarness{harness: h.harness, key: h.key}
	b.ocsp = NewOCSPResponder(svcB, OCSPConfig{Validity: 12 * time.Hour, ResponderValidity: 30 * 24 * time.Hour}, nil)
	if err := b.ocsp.SetResponders(context.Background(), []OCSPKey{{CA: h.ca, Key: h.key}}, lintAll{}); err != nil {
		t.Fatal(err)
	}
	stored, _ := cluster.OCSPResponse(context.Background(), h.ca.Name(), res.SerialNumber)
	if a, _ := b.ask(t, leaf, crypto.SHA1); string(a.DER) != string(stored.DER) {
		t.Error("node B signed its own answer instead of serving the stored one")
	}

	// Revoked behind both nodes' caches while another node holds the lead:
	// tryLater, never the stored good answer.
	release, _, _ := cluster.node().Lead(context.Background(), "ocsp:"+h.ca.Name()) // a third node
	if err := h.store.Revoke(context.Background(), res.CertificateID, testNow, "KEY_COMPROMISE", record.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	b.ocsp.pollRevocations(context.Background(), h.store.revocationCount)
	if a, _ := b.ask(t, leaf, crypto.SHA1); a.Status != OCSPTryLater {
		t.Errorf("with the lead elsewhere and the record revoked: %s", a.Status)
	}
	release()
	if _, resp := b.ask(t, leaf, crypto.SHA1); resp == nil || resp.Status != ocsp.Revoked {
		t.Fatalf("with the lead free: %+v", resp)
	}
	if got, _ := cluster.OCSPResponse(context.Background(), h.ca.Name(), res.SerialNumber); got.Status != OCSPRevoked {
		t.Errorf("the revoked answer was not stored for the other nodes: %s", got.Status)
	}
}

// With a store other nodes write to, the record is read on every request:
// a revocation made elsewhere is answered revoked at once, with no poll.
func TestOCSPSharedStoreReadsTheRecordEveryTime(t *testing.T) {
	h := newOCSPHarness(t)
	h.ocsp.cfg.Shared = true
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)
	if a, _ := h.ask(t, leaf, crypto.SHA1); a.Status != OCSPGood {
		t.Fatalf("issued: %s", a.Status)
	}
	if err := h.store.Revoke(context.Background(), res.CertificateID, testNow, "KEY_COMPROMISE", record.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	if _, resp := h.ask(t, leaf, crypto.SHA1); resp == nil || resp.Status != ocsp.Revoked {
		t.Fatalf("right after a revocation made elsewhere: %+v", resp)
	}
}

// logLines is a slog handler that hands each record's message and
// attributes to a channel.
type logLines chan map[string]any

func (l logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logLines) WithGroup(string) slog.Handler            { return l }
func (l logLines) Handle(_ context.Context, r slog.Record) error {
	line := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { line[a.Key] = a.Value.Any(); return true })
	l <- line
	return nil
}

// Run's first pass signs an answer for every certificate and logs when it
// has ended, with what it signed: the operator (and a test counting the
// token's signatures) can tell start-up work from what follows.
func TestOCSPRunLogsItsFirstPass(t *testing.T) {
	h := newHarness(t, false)
	for range 2 {
		if _, err := h.iss.Issue(context.Background(), h.meta, request(t)); err != nil {
			t.Fatal(err)
		}
	}
	lines := make(logLines, 64)
	o := NewOCSPResponder(h.service, OCSPConfig{Validity: 12 * time.Hour, ResponderValidity: 30 * 24 * time.Hour}, slog.New(lines))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := o.SetResponders(context.Background(), []OCSPKey{{CA: h.ca, Key: key}}, lintAll{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	for line := range lines {
		if line["msg"] != "OCSP answers pre-signed" {
			continue
		}
		if line["cas"] != int64(1) || line["signed"] != int64(2) {
			t.Errorf("first pass logged %v, want cas=1 signed=2 (two leaves; the responder certificate gets no answer)", line)
		}
		break
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(o.cache) != 2 {
		t.Errorf("%d answers cached after the first pass, want 2", len(o.cache))
	}
}

// A CA whose responder certificate could not be issued (the database was
// away at start) is one pkid serves: its requests get tryLater, never
// unauthorized, until the refresh loop has issued the certificate.
func TestOCSPTryLaterUntilTheResponderIsCertified(t *testing.T) {
	h := &ocspHarness{harness: newHarness(t, false)}
	h.ocsp = NewOCSPResponder(h.service, OCSPConfig{Validity: 12 * time.Hour, ResponderValidity: 30 * 24 * time.Hour}, nil)
	h.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	res, err := h.iss.Issue(context.Background(), h.meta, request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, res.Certificate)

	h.store.mu.Lock()
	h.store.failReserve = record.ErrUnavailable
	h.store.mu.Unlock()
	if err := h.ocsp.SetResponders(context.Background(), []OCSPKey{{CA: h.ca, Key: h.key}}, lintAll{}); err == nil {
		t.Fatal("SetResponders issued a responder certificate with the store away")
	}
	if a, _ := h.ask(t, leaf, crypto.SHA1); a.Status != OCSPTryLater {
		t.Errorf("before the responder is certified: %s, want %s", a.Status, OCSPTryLater)
	}

	// Run retries soon (not at its tick, 15 minutes away) while a CA has
	// no responder certificate.
	logged := make(logLines, 64)
	h.ocsp.log, h.ocsp.retry = slog.New(logged), 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); h.ocsp.Run(ctx, nil) }()
	defer func() { // stop Run, draining what it logs meanwhile
		cancel()
		for {
			select {
			case <-ran:
				return
			case <-logged:
			}
		}
	}()
	h.store.mu.Lock()
	h.store.failReserve = nil
	h.store.mu.Unlock()
	for issued := false; !issued; {
		select {
		case line := <-logged:
			issued = line["msg"] == "issued OCSP responder certificate"
		case <-time.After(time.Minute): // a failure bound only
			t.Fatal("no responder certificate after the store came back")
		}
	}
	if a, resp := h.ask(t, leaf, crypto.SHA1); a.Status != OCSPGood || resp == nil {
		t.Errorf("once certified: %s", a.Status)
	}
}
