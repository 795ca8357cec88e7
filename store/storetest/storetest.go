// Package storetest is the contract test suite every store backend runs
// (as database/sql drivers share compliance tests): Run exercises each
// behaviour of store.Store on a fresh store per test, and tampers with the
// stored data through the backend's Tamperer to prove VerifyAudit detects
// each kind of damage. It knows no SQL and no backend.
package storetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

// Harness is one fresh, empty store and the backend's means to reopen and
// damage it.
type Harness struct {
	Store store.Store
	// Tamper changes the stored data behind the store's back, as someone
	// with raw access to the database would.
	Tamper Tamperer
	// Reopen closes Store and opens the same database again, as a restart
	// (or a crash, for writes that were durable) would; the old value must
	// not be used afterwards. The harness closes the last store at the end
	// of the test.
	Reopen func(t *testing.T) store.Store
}

// Tamperer holds the raw operations the suite uses to damage a backend's
// data. They bypass every safeguard (the append-only triggers included)
// and fail the test if they cannot be done. Tests only.
type Tamperer interface {
	// DeleteAudit removes the entries with from ≤ seq ≤ through; through 0
	// means to the end of the log.
	DeleteAudit(t *testing.T, from, through int64)
	// RewriteAudit replaces the stored body of entry seq. Without rehash
	// the stored hashes stay (an edit); with rehash the hash of that entry
	// and the links and hashes of every later one are recomputed with
	// record.ChainHash, as an attacker who rewrites the chain would.
	RewriteAudit(t *testing.T, seq int64, body string, rehash bool)
	// SwapAudit exchanges everything but the sequence numbers of entries a
	// and b (a reordering).
	SwapAudit(t *testing.T, a, b int64)
	// DeleteCertificate removes the record with id.
	DeleteCertificate(t *testing.T, id string)
	// DeleteCheckpoints removes every audit checkpoint.
	DeleteCheckpoints(t *testing.T)
}

// Run runs the contract suite. open must return a fresh, empty store for
// each call; each test builds its own state, so tests do not depend on one
// another or on their order.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"ReserveFinalize", testReserveFinalize},
		{"RoundTrip", testRoundTrip},
		{"Abort", testAbort},
		{"ResolveRefusals", testResolveRefusals},
		{"Refuse", testRefuse},
		{"DuplicateSerial", testDuplicateSerial},
		{"InvalidReservation", testInvalidReservation},
		{"Revoke", testRevoke},
		{"RevokeRefusals", testRevokeRefusals},
		{"LookupsNotFound", testLookupsNotFound},
		{"ListFilters", testListFilters},
		{"RevokedListing", testRevokedListing},
		{"CRLNumbers", testCRLNumbers},
		{"CRLRefusals", testCRLRefusals},
		{"PendingRecovery", testPendingRecovery},
		{"PendingRecoveryByNode", testPendingRecoveryByNode},
		{"AbandonedByNode", testAbandonedByNode},
		{"Lead", testLead},
		{"OCSPResponses", testOCSPResponses},
		{"OCSPRefusals", testOCSPRefusals},
		{"RevokedTokens", testRevokedTokens},
		{"Checkpoints", testCheckpoints},
		{"VerifyIntact", testVerifyIntact},
		{"VerifyDetects", testVerifyDetects},
		{"CheckpointKeys", testCheckpointKeys},
		{"ChainSurvivesReopen", testChainSurvivesReopen},
		{"ConcurrentWrites", testConcurrentWrites},
		{"CancelledBeforeSubmit", testCancelledBeforeSubmit},
		{"CheckAndClose", testCheckAndClose},
		{"ACMEAccounts", testACMEAccounts},
		{"ACMEOrders", testACMEOrders},
		{"ACMENonces", testACMENonces},
		{"ACMEConcurrentTransitions", testACMEConcurrentTransitions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := open(t)
			tc.fn(t, newFixture(t, &h, open))
		})
	}
}

// fixture builds a test's state with deterministic, distinct values.
type fixture struct {
	t    *testing.T
	h    *Harness
	ctx  context.Context
	n    int
	key  *ecdsa.PrivateKey // the audit key of this test
	open func(t *testing.T) Harness
}

func newFixture(t *testing.T, h *Harness, open func(t *testing.T) Harness) *fixture {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, h: h, ctx: context.Background(), key: key, open: open}
}

// fresh is a new fixture on a new, empty store of the same backend, for a
// subtest that needs its own state.
func (f *fixture) fresh(t *testing.T) *fixture {
	h := f.open(t)
	return newFixture(t, &h, f.open)
}

func (f *fixture) s() store.Store { return f.h.Store }

func (f *fixture) reopen() { f.h.Store = f.h.Reopen(f.t) }

// at is the n-th instant of the test's timeline.
func at(n int) time.Time {
	return time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC).Add(time.Duration(n) * 1500 * time.Microsecond)
}

func (f *fixture) next() int { f.n++; return f.n }

func (f *fixture) now() time.Time { return at(f.next()) }

func hexHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// cert is a new reservation of ca under profile, every field set.
func (f *fixture) cert(ca, profile string) *record.Certificate {
	n := f.next()
	return &record.Certificate{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Serial: fmt.Sprintf("4a%038x", n),
		ProfileID: "11111111-0000-4000-8000-" + hexHash(profile)[:12], Profile: profile,
		CA: ca, IssuerHash: hexHash("ca:" + ca),
		Identity: "uri:spiffe://example.internal/demo-client", RequestID: fmt.Sprintf("req-%d", n),
		CertificateRequestID: fmt.Sprintf("22222222-0000-4000-8000-%012d", n), ApplicationID: "app-1",
		CommonName: fmt.Sprintf("host%d.example.internal", n),
		// Deliberately not sorted: the order must round-trip.
		AltNames: []record.AltName{{Type: "dns_name", Value: fmt.Sprintf("z%d.example.internal", n)},
			{Type: "ip_address", Value: "10.0.0.1"}, {Type: "dns_name", Value: "a.example.internal"}},
		KeyUsages:          []string{"key_encipherment", "digital_signature"},
		ExtKeyUsages:       []string{"server_auth", "client_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
		NotBefore: at(n), NotAfter: at(n).Add(24 * time.Hour),
		TBSHash: hexHash(fmt.Sprintf("tbs-%d", n)), Node: node, CreatedAt: at(n),
	}
}

// node is the name of the node the fixture's reservations come from.
const node = "node-1"

func (f *fixture) reserve(c *record.Certificate) {
	f.t.Helper()
	if err := f.s().Reserve(f.ctx, c); err != nil {
		f.t.Fatalf("Reserve %s: %v", c.ID, err)
	}
}

func der(c *record.Certificate) []byte { return []byte("der of " + c.ID) }

// issuedEvent is the complete event Finalize stores for c, so a test can
// rebuild the stored body.
func (f *fixture) issuedEvent(c *record.Certificate) record.AuditEvent {
	return record.AuditEvent{Time: f.now(), Action: record.ActionIssued, RequestID: c.RequestID, Identity: c.Identity,
		Profile: c.Profile, Outcome: "issued", CertificateID: c.ID, Serial: c.Serial, DERHash: hexHash(string(der(c)))}
}

// issue reserves and finalizes a new certificate and returns it and the
// event stored with it.
func (f *fixture) issue(ca, profile string) (*record.Certificate, record.AuditEvent) {
	f.t.Helper()
	c := f.cert(ca, profile)
	f.reserve(c)
	ev := f.issuedEvent(c)
	if err := f.s().Finalize(f.ctx, c.ID, der(c), ev); err != nil {
		f.t.Fatalf("Finalize %s: %v", c.ID, err)
	}
	return c, ev
}

func (f *fixture) revokedEvent(c *record.Certificate) record.AuditEvent {
	return record.AuditEvent{Time: f.now(), Action: record.ActionRevoked, RequestID: "req-revoke", Identity: c.Identity,
		Profile: c.Profile, Outcome: "revoked", Reason: "KEY_COMPROMISE", CertificateID: c.ID, Serial: c.Serial, CA: c.CA}
}

func (f *fixture) revoke(c *record.Certificate) record.AuditEvent {
	f.t.Helper()
	ev := f.revokedEvent(c)
	if err := f.s().Revoke(f.ctx, c.ID, ev.Time, "KEY_COMPROMISE", ev); err != nil {
		f.t.Fatalf("Revoke %s: %v", c.ID, err)
	}
	return ev
}

func (f *fixture) refusal() record.AuditEvent {
	n := f.next()
	return record.AuditEvent{Time: at(n), Action: record.ActionRefused, RequestID: fmt.Sprintf("req-%d", n),
		Identity: "uri:spiffe://example.internal/other", Profile: "web-server", Outcome: "forbidden", Reason: "not allowed"}
}

func (f *fixture) refuse() record.AuditEvent {
	f.t.Helper()
	ev := f.refusal()
	if err := f.s().Refuse(f.ctx, ev); err != nil {
		f.t.Fatalf("Refuse: %v", err)
	}
	return ev
}

func (f *fixture) crl(ca string, number int64) *record.CRL {
	n := f.next()
	return &record.CRL{CA: ca, Number: number, ThisUpdate: at(n), NextUpdate: at(n).Add(7 * 24 * time.Hour),
		TBSHash: hexHash(fmt.Sprintf("crl-tbs-%s-%d", ca, number)), Node: node, CreatedAt: at(n)}
}

func crlDER(ca string, number int64) []byte { return []byte(fmt.Sprintf("crl der %s %d", ca, number)) }

func (f *fixture) crlEvent(ca string, number int64) record.AuditEvent {
	return record.AuditEvent{Time: f.now(), Action: record.ActionCRL, Outcome: "issued", CA: ca, CRLNumber: number,
		DERHash: hexHash(string(crlDER(ca, number)))}
}

// issueCRL reserves and finalizes CRL number of ca.
func (f *fixture) issueCRL(ca string, number int64) record.AuditEvent {
	f.t.Helper()
	if err := f.s().ReserveCRL(f.ctx, f.crl(ca, number)); err != nil {
		f.t.Fatalf("ReserveCRL %s %d: %v", ca, number, err)
	}
	ev := f.crlEvent(ca, number)
	if err := f.s().FinalizeCRL(f.ctx, ca, number, crlDER(ca, number), ev); err != nil {
		f.t.Fatalf("FinalizeCRL %s %d: %v", ca, number, err)
	}
	return ev
}

func (f *fixture) head() (int64, string) {
	f.t.Helper()
	seq, hash, err := f.s().AuditHead(f.ctx)
	if err != nil {
		f.t.Fatalf("AuditHead: %v", err)
	}
	return seq, hash
}

// noAuditChange fails the test if the log grew since seq.
func (f *fixture) noAuditChange(seq int64, what string) {
	f.t.Helper()
	if now, _ := f.head(); now != seq {
		f.t.Errorf("%s appended audit entries (head %d, want %d)", what, now, seq)
	}
}

func (f *fixture) get(id string) *record.Certificate {
	f.t.Helper()
	c, err := f.s().Certificate(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Certificate %s: %v", id, err)
	}
	return c
}

// checkpoint signs a checkpoint of the current head with key.
func (f *fixture) checkpoint(key crypto.Signer) record.Checkpoint {
	f.t.Helper()
	seq, hash := f.head()
	return f.signCheckpoint(key, key, seq, hash)
}

// signCheckpoint signs (seq, hash) with signer under the key id of named.
func (f *fixture) signCheckpoint(signer, named crypto.Signer, seq int64, hash string) record.Checkpoint {
	f.t.Helper()
	cp := record.Checkpoint{Seq: seq, Hash: hash, Time: f.now().Add(123 * time.Nanosecond)}
	var err error
	if cp.KeyID, err = record.AuditKeyID(named.Public()); err != nil {
		f.t.Fatal(err)
	}
	h, digest, err := record.CheckpointDigest(signer.Public(), cp)
	if err != nil {
		f.t.Fatal(err)
	}
	if cp.Signature, err = signer.Sign(rand.Reader, digest, h); err != nil {
		f.t.Fatal(err)
	}
	return cp
}

func (f *fixture) addCheckpoint(cp record.Checkpoint) {
	f.t.Helper()
	if err := f.s().AddCheckpoint(f.ctx, cp); err != nil {
		f.t.Fatalf("AddCheckpoint %d: %v", cp.Seq, err)
	}
}

// verify runs VerifyAudit with the test's audit key and fails on any
// error.
func (f *fixture) verify(o store.VerifyOptions) *store.AuditReport {
	f.t.Helper()
	rep, err := f.s().VerifyAudit(f.ctx, o)
	if err != nil {
		f.t.Fatalf("VerifyAudit: %v (report %+v)", err, rep)
	}
	return rep
}

func (f *fixture) withKey() store.VerifyOptions { return store.VerifyOptions{Key: f.key.Public()} }

// diffCertificate lists the fields in which got differs from want; times
// compare as instants and empty slices as nil.
func diffCertificate(got, want *record.Certificate) []string {
	var diffs []string
	g, w := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for k := 0; k < g.NumField(); k++ {
		gf, wf := g.Field(k).Interface(), w.Field(k).Interface()
		switch gv := gf.(type) {
		case time.Time:
			if !gv.Equal(wf.(time.Time)) {
				diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", g.Type().Field(k).Name, gv, wf))
			}
			continue
		}
		if g.Field(k).Kind() == reflect.Slice && g.Field(k).Len() == 0 && w.Field(k).Len() == 0 {
			continue
		}
		if !reflect.DeepEqual(gf, wf) {
			diffs = append(diffs, fmt.Sprintf("%s = %#v, want %#v", g.Type().Field(k).Name, gf, wf))
		}
	}
	return diffs
}

func (f *fixture) wantCertificate(got, want *record.Certificate) {
	f.t.Helper()
	if d := diffCertificate(got, want); len(d) > 0 {
		f.t.Errorf("certificate %s differs:\n%s", want.ID, strings.Join(d, "\n"))
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s = %v, want %v", what, err, target)
	}
}

// wantProblem checks that err is an *store.AuditProblem at seq whose
// reason contains reason.
func wantProblem(t *testing.T, err error, seq int64, reason string) {
	t.Helper()
	var p *store.AuditProblem
	if !errors.As(err, &p) {
		t.Fatalf("VerifyAudit = %v, want an audit problem at entry %d (%q)", err, seq, reason)
	}
	if p.Seq != seq || !strings.Contains(p.Reason, reason) {
		t.Fatalf("VerifyAudit = %q (entry %d), want entry %d with %q", p.Error(), p.Seq, seq, reason)
	}
}

// Heads records the audit heads a backend's OnAudit option reports, for
// the backends' own tests of that option; safe for concurrent use.
type Heads struct {
	mu    sync.Mutex
	heads []int64
}

// Record is the OnAudit callback.
func (h *Heads) Record(head int64) {
	h.mu.Lock()
	h.heads = append(h.heads, head)
	h.mu.Unlock()
}

// Want fails t unless the heads reported so far are want, in order.
func (h *Heads) Want(t *testing.T, want ...int64) {
	t.Helper()
	h.mu.Lock()
	got := fmt.Sprint(h.heads)
	h.mu.Unlock()
	if got != fmt.Sprint(want) {
		t.Errorf("OnAudit reported heads %s; want %v", got, want)
	}
}
