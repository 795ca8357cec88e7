package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

// beat records a heartbeat of node at at.
func (f *fixture) beat(node string, at time.Time) {
	f.t.Helper()
	if err := f.s().Heartbeat(f.ctx, node, at); err != nil {
		f.t.Fatalf("Heartbeat(%s): %v", node, err)
	}
}

// reserveByNodes reserves one certificate for each of nodes, and CRL 1 of
// each CA in crls for its node; it returns the certificates by node.
func (f *fixture) reserveByNodes(nodes []string, crls map[string]string) map[string]*record.Certificate {
	f.t.Helper()
	reserved := map[string]*record.Certificate{}
	for _, n := range nodes {
		c := f.cert("ec-issuing", "web-server")
		c.Node = n
		f.reserve(c)
		reserved[n] = c
	}
	for ca, n := range crls {
		c := f.crl(ca, 1)
		c.Node = n
		if err := f.s().ReserveCRL(f.ctx, c); err != nil {
			f.t.Fatalf("ReserveCRL(%s): %v", ca, err)
		}
	}
	return reserved
}

// wantResolved checks that what resolved exactly the rows want names
// ("certificate of NODE", "crl CA N of NODE"), each a reservation made.
func (f *fixture) wantResolved(what string, got []store.Recovered, err error, reserved map[string]*record.Certificate, want ...string) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
	resolved := []string{}
	for _, r := range got {
		if r.CRLNumber != 0 {
			resolved = append(resolved, fmt.Sprintf("crl %s %d of %q", r.CA, r.CRLNumber, r.Node))
			continue
		}
		if c := reserved[r.Node]; c == nil || c.ID != r.ID || r.TBSHash != c.TBSHash {
			f.t.Errorf("%s: recovered %+v is not the reservation of node %q", what, r, r.Node)
		}
		resolved = append(resolved, fmt.Sprintf("certificate of %q", r.Node))
	}
	slices.Sort(resolved)
	if strings.Join(resolved, "; ") != strings.Join(want, "; ") {
		f.t.Fatalf("%s resolved\n%s\nwant\n%s", what, strings.Join(resolved, "; "), strings.Join(want, "; "))
	}
}

// A node resolves its own pending rows, those of nodes whose heartbeat
// stopped and those of nodes that never sent one (records made before
// nodes had names among them), and leaves those of live nodes (DESIGN §16).
func testPendingRecoveryByNode(t *testing.T, f *fixture) {
	base := f.now()
	f.beat(node, base)
	f.beat("node-2", base)                   // alive
	f.beat("node-3", base.Add(-2*time.Hour)) // stopped
	f.beat("node-3", base.Add(-3*time.Hour)) // a heartbeat never moves back
	// node-4 never beat; "" is a legacy row.
	reserved := f.reserveByNodes([]string{node, "node-2", "node-3", "node-4", ""},
		map[string]string{"ca-alive": "node-2", "ca-stopped": "node-3"})
	got, err := f.s().AbortPending(f.ctx, node, time.Hour, "node restart", base.Add(time.Minute))
	f.wantResolved("AbortPending", got, err, reserved,
		`certificate of ""`, `certificate of "node-1"`, `certificate of "node-3"`, `certificate of "node-4"`, `crl ca-stopped 1 of "node-3"`)
	if n, _ := f.s().CountPending(f.ctx); n != 2 {
		t.Errorf("CountPending = %d, want node-2's certificate and CRL", n)
	}
	if s := f.get(reserved["node-2"].ID).Status; s != record.StatusPending {
		t.Errorf("the live node's reservation is %s", s)
	}
	// node-2 is alive until an hour after its heartbeat, even though it
	// sent an older one since.
	f.beat("node-2", base.Add(-5*time.Hour))
	if got, err := f.s().AbortPending(f.ctx, node, time.Hour, "again", base.Add(59*time.Minute)); err != nil || len(got) != 0 {
		t.Errorf("AbortPending while node-2 is alive = %+v, %v", got, err)
	}
	got, err = f.s().AbortPending(f.ctx, node, time.Hour, "node-2 stopped", base.Add(61*time.Minute))
	if err != nil || len(got) != 2 {
		t.Fatalf("AbortPending once node-2 stopped = %+v, %v; want its certificate and CRL", got, err)
	}
	wantErr(t, "ReserveCRL of the stopped node's number", f.s().ReserveCRL(f.ctx, f.crl("ca-alive", 1)), record.ErrCRLNumberUsed)
	if err := f.s().Heartbeat(f.ctx, "", base); err == nil {
		t.Error(`Heartbeat of node "" succeeded`)
	}
	if rep := f.verify(store.VerifyOptions{}); rep.Entries != 7 || rep.Certificates != 5 || rep.CRLs != 2 {
		t.Errorf("VerifyAudit report %+v; want a recovered entry for each of 5 certificates and 2 CRLs", rep)
	}
}

// A running node resolves the rows of nodes whose heartbeat stopped (and
// of nodes that never sent one) and never its own nor a live node's, even
// when its own heartbeat is old; with nothing to resolve it writes
// nothing (DESIGN §16).
func testAbandonedByNode(t *testing.T, f *fixture) {
	base := f.now()
	abandoned := func(at time.Time) ([]store.Recovered, error) {
		return f.s().AbortAbandoned(f.ctx, node, time.Hour, "node stopped", at)
	}
	got, err := abandoned(base)
	f.wantResolved("AbortAbandoned of an empty store", got, err, nil)
	f.beat(node, base)
	f.beat("node-2", base)                   // alive
	f.beat("node-3", base.Add(-2*time.Hour)) // stopped
	reserved := f.reserveByNodes([]string{node, "node-2", "node-3", "node-4", ""},
		map[string]string{"ca-mine": node, "ca-alive": "node-2", "ca-stopped": "node-3"})
	got, err = abandoned(base.Add(time.Minute))
	f.wantResolved("AbortAbandoned", got, err, reserved,
		`certificate of ""`, `certificate of "node-3"`, `certificate of "node-4"`, `crl ca-stopped 1 of "node-3"`)
	seq, _ := f.head()
	got, err = abandoned(base.Add(2 * time.Minute))
	f.wantResolved("AbortAbandoned again", got, err, reserved)
	f.noAuditChange(seq, "AbortAbandoned with nothing to resolve")
	// Two hours on, node-2 has stopped; this node's heartbeat is as old,
	// but its own rows are still never resolved by itself while it runs.
	got, err = abandoned(base.Add(2 * time.Hour))
	f.wantResolved("AbortAbandoned once node-2 stopped", got, err, reserved, `certificate of "node-2"`, `crl ca-alive 1 of "node-2"`)
	if s := f.get(reserved[node].ID).Status; s != record.StatusPending {
		t.Errorf("the caller's own reservation is %s", s)
	}
	if n, _ := f.s().CountPending(f.ctx); n != 2 {
		t.Errorf("CountPending = %d, want the caller's certificate and CRL", n)
	}
	if rep := f.verify(store.VerifyOptions{}); rep.Entries != 6 {
		t.Errorf("VerifyAudit report %+v; want a recovered entry for each of 4 certificates and 2 CRLs", rep)
	}
}

// Lead lets one holder at a time have a task, and gives it back.
func testLead(t *testing.T, f *fixture) {
	lead := func(task string) (func(), bool) {
		t.Helper()
		release, ok, err := f.s().Lead(f.ctx, task)
		if err != nil {
			t.Fatalf("Lead(%s): %v", task, err)
		}
		if ok == (release == nil) {
			t.Fatalf("Lead(%s) = ok %v with release %v", task, ok, release != nil)
		}
		return release, ok
	}
	release, ok := lead("crl:ec-issuing")
	if !ok {
		t.Fatal("Lead of a free task refused")
	}
	if _, ok := lead("crl:ec-issuing"); ok {
		t.Fatal("Lead of a held task succeeded")
	}
	other, ok := lead("crl:rsa-issuing")
	if !ok {
		t.Fatal("Lead of another task refused")
	}
	if held, err := f.s().StillLeads(f.ctx, "crl:ec-issuing"); err != nil || !held {
		t.Errorf("StillLeads of a held lead = %v, %v", held, err)
	}
	other()
	if held, err := f.s().StillLeads(f.ctx, "crl:rsa-issuing"); err != nil || held {
		t.Errorf("StillLeads after release = %v, %v", held, err)
	}
	release()
	release() // harmless
	again, ok := lead("crl:ec-issuing")
	if !ok {
		t.Fatal("Lead after release refused")
	}
	again()
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if release, ok, err := f.s().Lead(ctx, "crl:ec-issuing"); err == nil {
		if ok {
			release()
		}
		t.Error("Lead with a cancelled context succeeded")
	}
}

func (f *fixture) ocsp(ca, serial, status string, at time.Time) record.OCSPResponse {
	return record.OCSPResponse{CA: ca, Serial: serial, Status: status, ThisUpdate: at, NextUpdate: at.Add(12 * time.Hour),
		DER: []byte(fmt.Sprintf("ocsp %s %s %s %s", ca, serial, status, at.Format(time.RFC3339Nano)))}
}

func (f *fixture) wantOCSP(want record.OCSPResponse) {
	f.t.Helper()
	got, err := f.s().OCSPResponse(f.ctx, want.CA, want.Serial)
	if err != nil {
		f.t.Fatalf("OCSPResponse(%s, %s): %v", want.CA, want.Serial, err)
	}
	if got.CA != want.CA || got.Serial != want.Serial || got.Status != want.Status || !got.ThisUpdate.Equal(want.ThisUpdate) ||
		!got.NextUpdate.Equal(want.NextUpdate) || string(got.DER) != string(want.DER) {
		f.t.Errorf("OCSPResponse(%s, %s) = %+v, want %+v", want.CA, want.Serial, got, want)
	}
}

func testOCSPResponses(t *testing.T, f *fixture) {
	const ca = "ec-issuing"
	seq, _ := f.head()
	t0 := f.now().Add(17 * time.Nanosecond) // every digit kept
	good := f.ocsp(ca, "4a01", record.OCSPGood, t0)
	revoked := f.ocsp(ca, "4a02", record.OCSPRevoked, t0)
	elsewhere := f.ocsp("rsa-issuing", "4a01", record.OCSPRevoked, t0)
	if err := f.s().PutOCSPResponses(f.ctx, []record.OCSPResponse{good, revoked, elsewhere}); err != nil {
		t.Fatalf("PutOCSPResponses: %v", err)
	}
	f.wantOCSP(good)
	f.wantOCSP(revoked)
	f.wantOCSP(elsewhere)
	f.noAuditChange(seq, "PutOCSPResponses")

	later, older := f.now(), t0.Add(-time.Minute)
	refreshed := f.ocsp(ca, "4a01", record.OCSPGood, later)
	if err := f.s().PutOCSPResponses(f.ctx, []record.OCSPResponse{refreshed}); err != nil {
		t.Fatal(err)
	}
	f.wantOCSP(refreshed)
	// Neither an older answer nor "good" for a revoked certificate
	// replaces what is stored (a node that lost the lead writing late).
	stale := f.ocsp(ca, "4a01", record.OCSPRevoked, older)
	unrevoked := f.ocsp(ca, "4a02", record.OCSPGood, later)
	if err := f.s().PutOCSPResponses(f.ctx, []record.OCSPResponse{stale, unrevoked}); err != nil {
		t.Fatal(err)
	}
	f.wantOCSP(refreshed)
	f.wantOCSP(revoked)
	// A revocation replaces good at once.
	nowRevoked := f.ocsp(ca, "4a01", record.OCSPRevoked, f.now())
	if err := f.s().PutOCSPResponses(f.ctx, []record.OCSPResponse{nowRevoked}); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	f.wantOCSP(nowRevoked)
	if got, err := f.s().OCSPResponse(f.ctx, ca, "4A01"); err != nil || got.Status != record.OCSPRevoked {
		t.Errorf("OCSPResponse with an uppercase serial = %+v, %v", got, err)
	}
	wantErr(t, "OCSPResponse(unknown serial)", second(f.s().OCSPResponse(f.ctx, ca, "4a03")), record.ErrNotFound)
	wantErr(t, "OCSPResponse(unknown CA)", second(f.s().OCSPResponse(f.ctx, "no-such-ca", "4a01")), record.ErrNotFound)
	if err := f.s().PutOCSPResponses(f.ctx, nil); err != nil {
		t.Errorf("PutOCSPResponses(nil) = %v", err)
	}
}

// An invalid answer fails the whole batch, with nothing stored.
func testOCSPRefusals(t *testing.T, f *fixture) {
	const ca = "ec-issuing"
	valid := f.ocsp(ca, "4a01", record.OCSPGood, f.now())
	for _, tc := range []struct {
		name   string
		break_ func(*record.OCSPResponse)
	}{
		{"status unknown", func(r *record.OCSPResponse) { r.Status = "unknown" }},
		{"uppercase serial", func(r *record.OCSPResponse) { r.Serial = "4A02" }},
		{"no CA", func(r *record.OCSPResponse) { r.CA = "" }},
		{"no DER", func(r *record.OCSPResponse) { r.DER = nil }},
		{"nextUpdate not after thisUpdate", func(r *record.OCSPResponse) { r.NextUpdate = r.ThisUpdate }},
		{"the same certificate twice", func(r *record.OCSPResponse) { r.Serial = valid.Serial }},
	} {
		bad := f.ocsp(ca, "4a02", record.OCSPRevoked, f.now())
		tc.break_(&bad)
		if err := f.s().PutOCSPResponses(f.ctx, []record.OCSPResponse{valid, bad}); err == nil {
			t.Errorf("PutOCSPResponses with %s succeeded", tc.name)
		}
	}
	wantErr(t, "OCSPResponse after refused batches", second(f.s().OCSPResponse(f.ctx, ca, valid.Serial)), record.ErrNotFound)
}

func testRevokedTokens(t *testing.T, f *fixture) {
	// Token expiries are real times: a store may purge revocations of
	// tokens that have expired by its clock.
	future := time.Now().Add(time.Hour)
	revoked := func(jti string) bool {
		t.Helper()
		ok, err := f.s().TokenRevoked(f.ctx, jti)
		if err != nil {
			t.Fatalf("TokenRevoked(%s): %v", jti, err)
		}
		return ok
	}
	if revoked("jti-1") {
		t.Fatal("a token never revoked is reported revoked")
	}
	seq, _ := f.head()
	for range 2 { // idempotent
		if err := f.s().RevokeToken(f.ctx, "jti-1", future); err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
	}
	// An earlier expiry given later does not shorten the revocation.
	if err := f.s().RevokeToken(f.ctx, "jti-1", time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("RevokeToken with an earlier expiry: %v", err)
	}
	if err := f.s().RevokeToken(f.ctx, "jti-expired", time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("RevokeToken of an expired token: %v", err)
	}
	if err := f.s().RevokeToken(f.ctx, "jti-2", future); err != nil {
		t.Fatal(err)
	}
	f.noAuditChange(seq, "RevokeToken")
	f.reopen()
	if !revoked("jti-1") || !revoked("jti-2") {
		t.Error("a revocation of an unexpired token was lost")
	}
	if revoked("jti-3") {
		t.Error("an unrelated token is reported revoked")
	}
	for _, tc := range []struct {
		name string
		jti  string
		exp  time.Time
	}{{"no id", "", future}, {"no expiry", "jti-4", time.Time{}}} {
		if err := f.s().RevokeToken(f.ctx, tc.jti, tc.exp); err == nil {
			t.Errorf("RevokeToken with %s succeeded", tc.name)
		}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if err := f.s().RevokeToken(ctx, "jti-5", future); !errors.Is(err, context.Canceled) {
		t.Errorf("RevokeToken with a cancelled context = %v", err)
	}
}
