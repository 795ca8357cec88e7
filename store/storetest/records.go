package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

func testReserveFinalize(t *testing.T, f *fixture) {
	c := f.cert("ec-issuing", "web-server")
	f.reserve(c)
	if n, err := f.s().CountPending(f.ctx); err != nil || n != 1 {
		t.Fatalf("CountPending = %d, %v; want 1", n, err)
	}
	got := f.get(c.ID)
	if got.Status != record.StatusPending || got.DER != nil {
		t.Fatalf("after Reserve: status %q, DER %x; want pending, none", got.Status, got.DER)
	}
	// The event leaves certificateId, serialNumber and derSha256 for the
	// store to fill in from the record it resolves.
	ev := f.issuedEvent(c)
	partial := ev
	partial.CertificateID, partial.Serial, partial.DERHash = "", "", ""
	if err := f.s().Finalize(f.ctx, c.ID, der(c), partial); err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	seq, hash := f.head()
	if seq != 1 || hash != record.ChainHash(record.GenesisHash, 1, record.EncodeEvent(ev)) {
		t.Fatalf("AuditHead = %d, %s; want entry 1 holding the completed event %s", seq, hash, record.EncodeEvent(ev))
	}

	// Durable: a restart finds it.
	f.reopen()
	got = f.get(c.ID)
	want := *c
	want.Status, want.DER, want.UpdatedAt = record.StatusIssued, der(c), ev.Time
	f.wantCertificate(got, &want)
	if n, _ := f.s().CountPending(f.ctx); n != 0 {
		t.Errorf("CountPending after Finalize = %d", n)
	}
	rep := f.verify(store.VerifyOptions{})
	if rep.Entries != 1 || rep.Certificates != 1 || rep.SignaturesChecked {
		t.Errorf("VerifyAudit report %+v; want 1 entry, 1 certificate, signatures not checked", rep)
	}
}

func testRoundTrip(t *testing.T, f *fixture) {
	plain := f.cert("ec-issuing", "web-server")
	withCSR := f.cert("rsa-issuing", "csr-profile")
	withCSR.CSR = []byte("csr bytes")
	withCSR.Renews = plain.ID
	withCSR.ApplicationID = ""
	withCSR.NotBefore = withCSR.NotBefore.In(time.FixedZone("CET", 3600)) // an instant, whatever its zone
	for _, c := range []*record.Certificate{plain, withCSR} {
		f.reserve(c)
	}
	// The store fills in the CSR hash; the caller's value is left alone.
	if withCSR.CSRHash != "" {
		t.Fatal("Reserve changed the caller's certificate")
	}
	wantCSR := *withCSR
	wantCSR.CSRHash = hexHash("csr bytes")
	for _, want := range []*record.Certificate{plain, &wantCSR} {
		want.Status, want.UpdatedAt = record.StatusPending, want.CreatedAt
		lookups := []struct {
			name string
			get  func() (*record.Certificate, error)
		}{
			{"Certificate", func() (*record.Certificate, error) { return f.s().Certificate(f.ctx, want.ID) }},
			{"CertificateBySerial", func() (*record.Certificate, error) { return f.s().CertificateBySerial(f.ctx, want.Serial) }},
			{"CertificateByRequestID", func() (*record.Certificate, error) {
				return f.s().CertificateByRequestID(f.ctx, want.CertificateRequestID)
			}},
		}
		for _, l := range lookups {
			got, err := l.get()
			if err != nil {
				t.Fatalf("%s(%s): %v", l.name, want.ID, err)
			}
			f.wantCertificate(got, want)
		}
	}
}

func testAbort(t *testing.T, f *fixture) {
	signed := f.cert("ec-issuing", "web-server")
	unsigned := f.cert("ec-issuing", "web-server")
	f.reserve(signed)
	f.reserve(unsigned)
	ev := record.AuditEvent{Time: f.now(), Action: record.ActionRefused, Outcome: "error", Reason: "verification failed"}
	if err := f.s().Abort(f.ctx, signed.ID, der(signed), ev); err != nil {
		t.Fatalf("Abort with DER: %v", err)
	}
	ev.Reason = "lint failed"
	if err := f.s().Abort(f.ctx, unsigned.ID, nil, ev); err != nil {
		t.Fatalf("Abort without DER: %v", err)
	}
	if got := f.get(signed.ID); got.Status != record.StatusAborted || string(got.DER) != string(der(signed)) {
		t.Errorf("aborted with DER: status %q, DER %q; want aborted, kept for forensics", got.Status, got.DER)
	}
	if got := f.get(unsigned.ID); got.Status != record.StatusAborted || got.DER != nil {
		t.Errorf("aborted without DER: status %q, DER %q", got.Status, got.DER)
	}
	if rep := f.verify(store.VerifyOptions{}); rep.Entries != 2 {
		t.Errorf("VerifyAudit: %d entries, want 2", rep.Entries)
	}
}

func testResolveRefusals(t *testing.T, f *fixture) {
	issued, _ := f.issue("ec-issuing", "web-server")
	pending := f.cert("ec-issuing", "web-server")
	f.reserve(pending)
	seq, _ := f.head()
	ev := f.issuedEvent(pending)
	other := f.issuedEvent(issued)
	for _, tc := range []struct {
		name   string
		do     func() error
		target error
	}{
		{"Finalize unknown", func() error { return f.s().Finalize(f.ctx, "no-such-id", []byte{1}, ev) }, record.ErrNotFound},
		{"Abort unknown", func() error { return f.s().Abort(f.ctx, "no-such-id", nil, f.refusal()) }, record.ErrNotFound},
		{"Finalize twice", func() error { return f.s().Finalize(f.ctx, issued.ID, der(issued), other) }, record.ErrNotPending},
		{"Abort after Finalize", func() error { return f.s().Abort(f.ctx, issued.ID, nil, f.refusal()) }, record.ErrNotPending},
		{"event of another certificate", func() error { return f.s().Finalize(f.ctx, pending.ID, der(pending), other) }, nil},
		{"event with another DER hash", func() error { return f.s().Finalize(f.ctx, pending.ID, []byte("other der"), ev) }, nil},
		{"event with another action", func() error {
			e := ev
			e.Action = record.ActionRefused
			return f.s().Finalize(f.ctx, pending.ID, der(pending), e)
		}, nil},
		{"no DER", func() error { return f.s().Finalize(f.ctx, pending.ID, nil, ev) }, nil},
		{"Abort claiming issued", func() error { return f.s().Abort(f.ctx, pending.ID, nil, ev) }, nil},
	} {
		err := tc.do()
		if err == nil || tc.target != nil && !errors.Is(err, tc.target) {
			t.Errorf("%s = %v, want an error (%v)", tc.name, err, tc.target)
		}
	}
	f.noAuditChange(seq, "refused resolutions")
	if got := f.get(pending.ID); got.Status != record.StatusPending || got.DER != nil {
		t.Errorf("pending record changed by refused resolutions: %q", got.Status)
	}
	if err := f.s().Finalize(f.ctx, pending.ID, der(pending), ev); err != nil {
		t.Fatalf("Finalize after the refusals: %v", err)
	}
	f.verify(store.VerifyOptions{})
}

func testRefuse(t *testing.T, f *fixture) {
	f.refuse()
	summary := record.AuditEvent{Time: f.now(), Action: record.ActionRefusalsSuppressed, Identity: "x", Outcome: "forbidden", Count: 42}
	if err := f.s().Refuse(f.ctx, summary); err != nil {
		t.Fatalf("Refuse summary: %v", err)
	}
	seq, hash := f.head()
	if seq != 2 {
		t.Fatalf("AuditHead = %d, want 2", seq)
	}
	// An entry alone may not claim a state change the records would have
	// to account for.
	for _, action := range []string{record.ActionIssued, record.ActionRevoked, record.ActionCRL, record.ActionRecovered, ""} {
		ev := f.refusal()
		ev.Action = action
		if err := f.s().Refuse(f.ctx, ev); err == nil {
			t.Errorf("Refuse with action %q succeeded", action)
		}
	}
	if err := f.s().Refuse(f.ctx, record.AuditEvent{Action: record.ActionRefused}); err == nil {
		t.Error("Refuse of an event without a time succeeded")
	}
	f.noAuditChange(seq, "refused Refuse calls")
	if rep := f.verify(store.VerifyOptions{}); rep.Entries != 2 {
		t.Errorf("VerifyAudit: %d entries", rep.Entries)
	}
	if _, h := f.head(); h != hash {
		t.Error("head hash changed")
	}
}

func testDuplicateSerial(t *testing.T, f *fixture) {
	first := f.cert("ec-issuing", "web-server")
	f.reserve(first)
	dup := f.cert("ec-issuing", "web-server")
	dup.Serial = first.Serial
	wantErr(t, "Reserve of a taken serial", f.s().Reserve(f.ctx, dup), record.ErrDuplicateSerial)
	if _, err := f.s().Certificate(f.ctx, dup.ID); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("the refused reservation was stored: %v", err)
	}
	if n, _ := f.s().CountPending(f.ctx); n != 1 {
		t.Errorf("CountPending = %d, want 1", n)
	}
}

func testInvalidReservation(t *testing.T, f *fixture) {
	for _, tc := range []struct {
		name   string
		break_ func(*record.Certificate)
	}{
		{"uppercase serial", func(c *record.Certificate) { c.Serial = strings.ToUpper(c.Serial) }},
		{"no serial", func(c *record.Certificate) { c.Serial = "" }},
		{"no id", func(c *record.Certificate) { c.ID = "" }},
		{"no TBS hash", func(c *record.Certificate) { c.TBSHash = "" }},
		{"no issuer hash", func(c *record.Certificate) { c.IssuerHash = "" }},
		{"wrong CSR hash", func(c *record.Certificate) { c.CSR, c.CSRHash = []byte("csr"), hexHash("other") }},
		{"no creation time", func(c *record.Certificate) { c.CreatedAt = time.Time{} }},
	} {
		c := f.cert("ec-issuing", "web-server")
		tc.break_(c)
		if err := f.s().Reserve(f.ctx, c); err == nil {
			t.Errorf("Reserve with %s succeeded", tc.name)
		}
	}
	if n, _ := f.s().CountPending(f.ctx); n != 0 {
		t.Errorf("CountPending = %d after refused reservations", n)
	}
}

func testRevoke(t *testing.T, f *fixture) {
	c, issuedEv := f.issue("ec-issuing", "web-server")
	ev := f.revokedEvent(c)
	partial := ev
	partial.CertificateID, partial.Serial, partial.CA = "", "", ""
	revokedAt := ev.Time.Add(-time.Second)
	if err := f.s().Revoke(f.ctx, c.ID, revokedAt, "KEY_COMPROMISE", partial); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	f.reopen()
	got := f.get(c.ID)
	want := *c
	want.Status, want.DER, want.RevokedAt, want.RevocationReason, want.UpdatedAt =
		record.StatusRevoked, der(c), revokedAt, "KEY_COMPROMISE", ev.Time
	f.wantCertificate(got, &want)
	// The entry is the completed event, chained after the issuance.
	first := record.ChainHash(record.GenesisHash, 1, record.EncodeEvent(issuedEv))
	if seq, hash := f.head(); seq != 2 || hash != record.ChainHash(first, 2, record.EncodeEvent(ev)) {
		t.Errorf("AuditHead = %d, %s; want entry 2 holding %s", seq, hash, record.EncodeEvent(ev))
	}
	rep := f.verify(store.VerifyOptions{})
	if rep.Entries != 2 || rep.Certificates != 1 {
		t.Errorf("VerifyAudit report %+v", rep)
	}
}

func testRevokeRefusals(t *testing.T, f *fixture) {
	revoked, _ := f.issue("ec-issuing", "web-server")
	f.revoke(revoked)
	pending := f.cert("ec-issuing", "web-server")
	f.reserve(pending)
	aborted := f.cert("ec-issuing", "web-server")
	f.reserve(aborted)
	if err := f.s().Abort(f.ctx, aborted.ID, nil, f.refusal()); err != nil {
		t.Fatal(err)
	}
	issued, _ := f.issue("ec-issuing", "web-server")
	seq, _ := f.head()
	before := map[string]*record.Certificate{}
	for _, c := range []*record.Certificate{revoked, pending, aborted, issued} {
		before[c.ID] = f.get(c.ID)
	}
	for _, tc := range []struct {
		name   string
		id     string
		ev     record.AuditEvent
		target error
	}{
		{"unknown", "no-such-id", f.revokedEvent(issued), record.ErrNotFound},
		{"revoked", revoked.ID, f.revokedEvent(revoked), record.ErrAlreadyRevoked},
		{"pending", pending.ID, f.revokedEvent(pending), record.ErrNotRevocable},
		{"aborted", aborted.ID, f.revokedEvent(aborted), record.ErrNotRevocable},
	} {
		wantErr(t, "Revoke of "+tc.name, f.s().Revoke(f.ctx, tc.id, tc.ev.Time, "SUPERSEDED", tc.ev), tc.target)
	}
	// Neither may an event contradict the record, nor a reason be missing.
	if err := f.s().Revoke(f.ctx, issued.ID, f.now(), "SUPERSEDED", f.revokedEvent(revoked)); err == nil {
		t.Error("Revoke with another certificate's event succeeded")
	}
	if err := f.s().Revoke(f.ctx, issued.ID, f.now(), "", f.revokedEvent(issued)); err == nil {
		t.Error("Revoke without a reason succeeded")
	}
	f.noAuditChange(seq, "refused revocations")
	for id, want := range before {
		f.wantCertificate(f.get(id), want)
	}
	f.verify(store.VerifyOptions{})
}

func testLookupsNotFound(t *testing.T, f *fixture) {
	f.issue("ec-issuing", "web-server")
	old := f.cert("ec-issuing", "web-server")
	old.CertificateRequestID = "" // as records made before request ids were kept
	f.reserve(old)
	wantErr(t, "Certificate(unknown)", second(f.s().Certificate(f.ctx, "no-such-id")), record.ErrNotFound)
	wantErr(t, "CertificateBySerial(unknown)", second(f.s().CertificateBySerial(f.ctx, "ffff")), record.ErrNotFound)
	wantErr(t, "CertificateByRequestID(unknown)", second(f.s().CertificateByRequestID(f.ctx, "no-such-request")), record.ErrNotFound)
	wantErr(t, `CertificateByRequestID("")`, second(f.s().CertificateByRequestID(f.ctx, "")), record.ErrNotFound)
	wantErr(t, "LatestCRL(none)", second(f.s().LatestCRL(f.ctx, "ec-issuing")), record.ErrNotFound)
	wantErr(t, "LatestCheckpoint(none)", second(f.s().LatestCheckpoint(f.ctx)), record.ErrNotFound)
}

func second[T any](_ T, err error) error { return err }

func testListFilters(t *testing.T, f *fixture) {
	// Created out of insertion order, two at the same instant (then by id).
	mk := func(ca, profile string, created int) *record.Certificate {
		c := f.cert(ca, profile)
		c.CreatedAt = at(1000 + created)
		return c
	}
	a := mk("ec-issuing", "web-server", 3)
	b := mk("ec-issuing", "client", 1)
	c := mk("rsa-issuing", "web-server", 2)
	d := mk("rsa-issuing", "client", 2)
	e := mk("ec-issuing", "web-server", 0) // whole second: no fraction to sort by text
	e.CreatedAt = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	g := mk("ec-issuing", "web-server", 0)
	g.CreatedAt = e.CreatedAt.Add(-500 * time.Millisecond)
	for _, x := range []*record.Certificate{a, b, c, d, e, g} {
		f.reserve(x)
	}
	for _, x := range []*record.Certificate{a, c} {
		if err := f.s().Finalize(f.ctx, x.ID, der(x), f.issuedEvent(x)); err != nil {
			t.Fatal(err)
		}
	}
	f.revoke(c)
	if err := f.s().Abort(f.ctx, d.ID, nil, f.refusal()); err != nil {
		t.Fatal(err)
	}
	ids := func(xs ...*record.Certificate) string {
		var s []string
		for _, x := range xs {
			s = append(s, x.ID)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		f    store.Filter
		want string
	}{
		{"all", store.Filter{}, ids(b, c, d, a, g, e)},
		{"issued", store.Filter{Status: record.StatusIssued}, ids(a)},
		{"revoked", store.Filter{Status: record.StatusRevoked}, ids(c)},
		{"pending", store.Filter{Status: record.StatusPending}, ids(b, g, e)},
		{"aborted", store.Filter{Status: record.StatusAborted}, ids(d)},
		{"ca", store.Filter{CA: "rsa-issuing"}, ids(c, d)},
		{"profile", store.Filter{Profile: "web-server"}, ids(c, a, g, e)},
		{"ca and profile", store.Filter{CA: "ec-issuing", Profile: "client"}, ids(b)},
		{"all three", store.Filter{Status: record.StatusPending, CA: "ec-issuing", Profile: "web-server"}, ids(g, e)},
		{"nothing", store.Filter{CA: "no-such-ca"}, ""},
	} {
		var got []*record.Certificate
		if err := f.s().ListCertificates(f.ctx, tc.f, func(x *record.Certificate) error { got = append(got, x); return nil }); err != nil {
			t.Fatalf("ListCertificates(%s): %v", tc.name, err)
		}
		if ids(got...) != tc.want {
			t.Errorf("ListCertificates(%s) =\n%s\nwant\n%s", tc.name, ids(got...), tc.want)
		}
	}
	if err := f.s().ListCertificates(f.ctx, store.Filter{Status: "expired"}, func(*record.Certificate) error { return nil }); err == nil {
		t.Error("ListCertificates with an unknown status succeeded")
	}
	stop := errors.New("stop")
	n := 0
	err := f.s().ListCertificates(f.ctx, store.Filter{}, func(*record.Certificate) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("ListCertificates with a failing callback = %v after %d calls; want its error after 1", err, n)
	}
}

func testRevokedListing(t *testing.T, f *fixture) {
	var want []record.RevokedEntry
	var certs []*record.Certificate
	// The first has expired long ago: it stays listed (the CRL builder
	// decides when it may leave, DESIGN §13).
	expired := f.cert("ec-issuing", "web-server")
	expired.NotBefore, expired.NotAfter = at(0).Add(-48*time.Hour), at(0).Add(-24*time.Hour)
	f.reserve(expired)
	if err := f.s().Finalize(f.ctx, expired.ID, der(expired), f.issuedEvent(expired)); err != nil {
		t.Fatal(err)
	}
	certs = append(certs, expired)
	for k := 0; k < 3; k++ {
		c, _ := f.issue("ec-issuing", "web-server")
		certs = append(certs, c)
	}
	other, _ := f.issue("rsa-issuing", "web-server")
	f.revoke(other)
	// Revoked out of serial order; one stays issued.
	for _, c := range []*record.Certificate{certs[2], certs[0], certs[3]} {
		f.revoke(c)
	}
	for _, c := range []*record.Certificate{certs[0], certs[2], certs[3]} {
		got := f.get(c.ID)
		want = append(want, record.RevokedEntry{Serial: c.Serial, RevokedAt: got.RevokedAt, Reason: "KEY_COMPROMISE", NotAfter: got.NotAfter})
	}
	var got []record.RevokedEntry
	if err := f.s().Revoked(f.ctx, "ec-issuing", func(e record.RevokedEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatalf("Revoked: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Revoked = %+v, want %+v", got, want)
	}
	for k := range want {
		if got[k].Serial != want[k].Serial || !got[k].RevokedAt.Equal(want[k].RevokedAt) ||
			got[k].Reason != want[k].Reason || !got[k].NotAfter.Equal(want[k].NotAfter) || got[k].RevokedAt.IsZero() {
			t.Errorf("Revoked[%d] = %+v, want %+v", k, got[k], want[k])
		}
	}
	stop := errors.New("stop")
	if err := f.s().Revoked(f.ctx, "ec-issuing", func(record.RevokedEntry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Revoked with a failing callback = %v", err)
	}
	for ca, want := range map[string]int64{"ec-issuing": 3, "rsa-issuing": 1, "nobody": 0} {
		if n, err := f.s().RevocationCount(f.ctx, ca); err != nil || n != want {
			t.Errorf("RevocationCount(%s) = %d, %v; want %d", ca, n, err, want)
		}
	}
}

func testCRLNumbers(t *testing.T, f *fixture) {
	const ca = "ec-issuing"
	last := func(want int64) {
		t.Helper()
		if n, err := f.s().LastCRLNumber(f.ctx, ca); err != nil || n != want {
			t.Fatalf("LastCRLNumber = %d, %v; want %d", n, err, want)
		}
	}
	last(0)
	f.issueCRL(ca, 1)
	last(1)
	// An aborted number stays used.
	if err := f.s().ReserveCRL(f.ctx, f.crl(ca, 2)); err != nil {
		t.Fatal(err)
	}
	if err := f.s().AbortCRL(f.ctx, ca, 2, record.AuditEvent{Time: f.now(), Action: record.ActionAborted, Outcome: "error", Reason: "lint"}); err != nil {
		t.Fatalf("AbortCRL: %v", err)
	}
	last(2)
	seq, _ := f.head()
	for _, n := range []int64{2, 1, 0} {
		wantErr(t, fmt.Sprintf("ReserveCRL(%d) after 2", n), f.s().ReserveCRL(f.ctx, f.crl(ca, n)), record.ErrCRLNumberUsed)
	}
	f.noAuditChange(seq, "refused CRL reservations")
	f.issueCRL(ca, 3)
	// Each CA numbers its own CRLs.
	f.issueCRL("rsa-issuing", 1)
	// Left pending by a crash: after a restart it is resolved, and stays used.
	if err := f.s().ReserveCRL(f.ctx, f.crl(ca, 4)); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if _, err := f.s().AbortPending(f.ctx, node, time.Hour, "restart", f.now()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "ReserveCRL(4) after a crash", f.s().ReserveCRL(f.ctx, f.crl(ca, 4)), record.ErrCRLNumberUsed)
	last(4)
	f.issueCRL(ca, 6) // numbers need only increase
	last(6)

	latest, err := f.s().LatestCRL(f.ctx, ca)
	if err != nil {
		t.Fatalf("LatestCRL: %v", err)
	}
	want := f.crl(ca, 6)
	if latest.CA != ca || latest.Number != 6 || latest.Status != record.StatusIssued ||
		string(latest.DER) != string(crlDER(ca, 6)) || latest.TBSHash != want.TBSHash ||
		latest.NextUpdate.Sub(latest.ThisUpdate) != 7*24*time.Hour ||
		latest.CreatedAt.IsZero() || !latest.ThisUpdate.Equal(latest.CreatedAt) || latest.Node != node {
		t.Errorf("LatestCRL = %+v", latest)
	}
	if l, err := f.s().LatestCRL(f.ctx, "rsa-issuing"); err != nil || l.Number != 1 {
		t.Errorf("LatestCRL(rsa-issuing) = %+v, %v", l, err)
	}
	rep := f.verify(store.VerifyOptions{})
	if rep.CRLs != 6 {
		t.Errorf("VerifyAudit checked %d CRLs, want 6", rep.CRLs)
	}
}

func testCRLRefusals(t *testing.T, f *fixture) {
	const ca = "ec-issuing"
	f.issueCRL(ca, 1)
	if err := f.s().ReserveCRL(f.ctx, f.crl(ca, 2)); err != nil {
		t.Fatal(err)
	}
	seq, _ := f.head()
	ev := f.crlEvent(ca, 2)
	for _, tc := range []struct {
		name   string
		do     func() error
		target error
	}{
		{"FinalizeCRL unknown", func() error { return f.s().FinalizeCRL(f.ctx, ca, 9, crlDER(ca, 9), f.crlEvent(ca, 9)) }, record.ErrNotFound},
		{"AbortCRL unknown", func() error { return f.s().AbortCRL(f.ctx, "no-such-ca", 1, f.refusal()) }, record.ErrNotFound},
		{"FinalizeCRL twice", func() error { return f.s().FinalizeCRL(f.ctx, ca, 1, crlDER(ca, 1), f.crlEvent(ca, 1)) }, record.ErrNotPending},
		{"AbortCRL after FinalizeCRL", func() error { return f.s().AbortCRL(f.ctx, ca, 1, f.refusal()) }, record.ErrNotPending},
		{"event of another number", func() error { return f.s().FinalizeCRL(f.ctx, ca, 2, crlDER(ca, 2), f.crlEvent(ca, 1)) }, nil},
		{"event with another DER hash", func() error { return f.s().FinalizeCRL(f.ctx, ca, 2, []byte("other"), ev) }, nil},
		{"no DER", func() error { return f.s().FinalizeCRL(f.ctx, ca, 2, nil, ev) }, nil},
	} {
		err := tc.do()
		if err == nil || tc.target != nil && !errors.Is(err, tc.target) {
			t.Errorf("%s = %v, want an error (%v)", tc.name, err, tc.target)
		}
	}
	bad := f.crl(ca, 3)
	bad.NextUpdate = bad.ThisUpdate
	if err := f.s().ReserveCRL(f.ctx, bad); err == nil {
		t.Error("ReserveCRL with nextUpdate = thisUpdate succeeded")
	}
	f.noAuditChange(seq, "refused CRL writes")
	if n, _ := f.s().CountPending(f.ctx); n != 1 {
		t.Errorf("CountPending = %d, want the one pending CRL", n)
	}
	partial := ev
	partial.CA, partial.CRLNumber, partial.DERHash = "", 0, ""
	if err := f.s().FinalizeCRL(f.ctx, ca, 2, crlDER(ca, 2), partial); err != nil {
		t.Fatalf("FinalizeCRL with fields left to the store: %v", err)
	}
	if rep := f.verify(store.VerifyOptions{}); rep.CRLs != 2 || rep.Entries != 2 {
		t.Errorf("VerifyAudit report %+v; want 2 CRLs in 2 entries", rep)
	}
}

func testPendingRecovery(t *testing.T, f *fixture) {
	first := f.cert("ec-issuing", "web-server")
	done := f.cert("ec-issuing", "web-server")
	second := f.cert("rsa-issuing", "client")
	for _, c := range []*record.Certificate{first, done, second} {
		f.reserve(c)
	}
	if err := f.s().Finalize(f.ctx, done.ID, der(done), f.issuedEvent(done)); err != nil {
		t.Fatal(err)
	}
	f.issueCRL("ec-issuing", 1)
	pendingCRL := f.crl("ec-issuing", 2)
	if err := f.s().ReserveCRL(f.ctx, pendingCRL); err != nil {
		t.Fatal(err)
	}
	// The run stops here; the next one finds what it left pending.
	f.reopen()
	if n, err := f.s().CountPending(f.ctx); err != nil || n != 3 {
		t.Fatalf("CountPending after restart = %d, %v; want 3", n, err)
	}
	got, err := f.s().AbortPending(f.ctx, node, time.Hour, "found pending at start-up", f.now())
	if err != nil {
		t.Fatalf("AbortPending: %v", err)
	}
	want := []store.Recovered{
		{ID: first.ID, Serial: first.Serial, Profile: first.Profile, Identity: first.Identity, RequestID: first.RequestID, CA: first.CA, Node: node, TBSHash: first.TBSHash},
		{ID: second.ID, Serial: second.Serial, Profile: second.Profile, Identity: second.Identity, RequestID: second.RequestID, CA: second.CA, Node: node, TBSHash: second.TBSHash},
		{CA: "ec-issuing", Node: node, CRLNumber: 2, TBSHash: pendingCRL.TBSHash},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AbortPending =\n%+v\nwant\n%+v", got, want)
	}
	if n, _ := f.s().CountPending(f.ctx); n != 0 {
		t.Errorf("CountPending after AbortPending = %d", n)
	}
	for _, c := range []*record.Certificate{first, second} {
		if s := f.get(c.ID).Status; s != record.StatusAborted {
			t.Errorf("%s is %s, want aborted", c.ID, s)
		}
	}
	wantErr(t, "ReserveCRL of the recovered number", f.s().ReserveCRL(f.ctx, f.crl("ec-issuing", 2)), record.ErrCRLNumberUsed)
	if l, err := f.s().LatestCRL(f.ctx, "ec-issuing"); err != nil || l.Number != 1 {
		t.Errorf("LatestCRL = %+v, %v; want the issued CRL 1, not the recovered 2", l, err)
	}
	// Nothing pending: nothing to do, nothing written.
	seq, _ := f.head()
	if again, err := f.s().AbortPending(f.ctx, node, time.Hour, "again", f.now()); err != nil || len(again) != 0 {
		t.Errorf("second AbortPending = %+v, %v", again, err)
	}
	f.noAuditChange(seq, "AbortPending with nothing pending")
	rep := f.verify(store.VerifyOptions{})
	// The issuance, the CRL and one recovery entry per pending row.
	if rep.Entries != 5 || rep.Certificates != 3 || rep.CRLs != 2 {
		t.Errorf("VerifyAudit report %+v; want 5 entries, 3 certificates, 2 CRLs", rep)
	}
}

func testChainSurvivesReopen(t *testing.T, f *fixture) {
	f.refuse()
	f.issue("ec-issuing", "web-server")
	f.reopen()
	f.refuse()
	f.issue("ec-issuing", "web-server")
	if rep := f.verify(store.VerifyOptions{}); rep.Entries != 4 {
		t.Errorf("VerifyAudit: %d entries, want 4", rep.Entries)
	}
}

// Many concurrent writers, some failing, leave every successful write
// recorded and the chain intact.
func testConcurrentWrites(t *testing.T, f *fixture) {
	const writers, each = 16, 6
	certs := make([][]*record.Certificate, writers)
	events := make([][]record.AuditEvent, writers)
	for w := range certs {
		for k := 0; k < each; k++ {
			c := f.cert("ec-issuing", "web-server")
			certs[w] = append(certs[w], c)
			events[w] = append(events[w], f.issuedEvent(c))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*3)
	for w := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k, c := range certs[w] {
				if err := f.s().Reserve(f.ctx, c); err != nil {
					errs <- err
					continue
				}
				if k%3 == 0 { // a failing write among the others
					if err := f.s().Finalize(f.ctx, "no-such-id", der(c), events[w][k]); err == nil {
						errs <- errors.New("Finalize of an unknown id succeeded")
					}
				}
				if err := f.s().Finalize(f.ctx, c.ID, der(c), events[w][k]); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rep := f.verify(store.VerifyOptions{})
	if rep.Entries != writers*each || rep.Certificates != writers*each {
		t.Errorf("VerifyAudit report %+v; want %d entries and certificates", rep, writers*each)
	}
}

// A write whose context is over before it is submitted writes nothing.
func testCancelledBeforeSubmit(t *testing.T, f *fixture) {
	f.refuse()
	seq, _ := f.head()
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if err := f.s().Refuse(ctx, f.refusal()); !errors.Is(err, context.Canceled) {
		t.Errorf("Refuse with a cancelled context = %v, want context.Canceled", err)
	}
	c := f.cert("ec-issuing", "web-server")
	if err := f.s().Reserve(ctx, c); !errors.Is(err, context.Canceled) {
		t.Errorf("Reserve with a cancelled context = %v", err)
	}
	f.noAuditChange(seq, "cancelled writes")
	wantErr(t, "the cancelled reservation", second(f.s().Certificate(f.ctx, c.ID)), record.ErrNotFound)
}

func testCheckAndClose(t *testing.T, f *fixture) {
	f.refuse()
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	if err := f.s().Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := f.s().Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.s().Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	wantErr(t, "Refuse after Close", f.s().Refuse(f.ctx, f.refusal()), record.ErrClosed)
	wantErr(t, "Reserve after Close", f.s().Reserve(f.ctx, f.cert("ec-issuing", "web-server")), record.ErrClosed)
	if err := f.s().Check(ctx); err == nil {
		t.Error("Check after Close succeeded")
	}
	// What was written before Close is there after a reopen.
	f.reopen()
	if seq, _ := f.head(); seq != 1 {
		t.Errorf("AuditHead after reopen = %d, want 1", seq)
	}
}
