package storetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

func testCheckpoints(t *testing.T, f *fixture) {
	f.refuse()
	f.refuse()
	_, hash1 := f.head()
	f.refuse()
	seq, hash := f.head()
	for _, tc := range []struct {
		name string
		cp   record.Checkpoint
	}{
		{"wrong hash", f.signCheckpoint(f.key, f.key, seq, hash1)},
		{"no such entry", f.signCheckpoint(f.key, f.key, seq+1, hash)},
		{"entry 0", f.signCheckpoint(f.key, f.key, 0, record.GenesisHash)},
		{"unsigned", record.Checkpoint{Seq: seq, Hash: hash, Time: f.now(), KeyID: "x"}},
	} {
		wantErr(t, "AddCheckpoint with "+tc.name, f.s().AddCheckpoint(f.ctx, tc.cp), record.ErrInvalidCheckpoint)
	}
	wantErr(t, "LatestCheckpoint before any", second(f.s().LatestCheckpoint(f.ctx)), record.ErrNotFound)

	cp := f.checkpoint(f.key)
	f.addCheckpoint(cp)
	got, err := f.s().LatestCheckpoint(f.ctx)
	if err != nil {
		t.Fatalf("LatestCheckpoint: %v", err)
	}
	if got.Seq != cp.Seq || got.Hash != cp.Hash || !got.Time.Equal(cp.Time) || got.KeyID != cp.KeyID ||
		string(got.Signature) != string(cp.Signature) || string(got.SignedMessage()) != string(cp.SignedMessage()) {
		t.Errorf("LatestCheckpoint = %+v, want %+v", got, cp)
	}
	// Only forward: neither the same entry again nor an earlier one.
	wantErr(t, "AddCheckpoint of the same entry", f.s().AddCheckpoint(f.ctx, f.checkpoint(f.key)), record.ErrInvalidCheckpoint)
	wantErr(t, "AddCheckpoint of an earlier entry", f.s().AddCheckpoint(f.ctx, f.signCheckpoint(f.key, f.key, 2, hash1)),
		record.ErrInvalidCheckpoint)
	f.refuse()
	next := f.checkpoint(f.key)
	f.addCheckpoint(next)
	if got, _ := f.s().LatestCheckpoint(f.ctx); got == nil || got.Seq != next.Seq {
		t.Errorf("LatestCheckpoint = %+v, want entry %d", got, next.Seq)
	}
	f.reopen()
	if got, _ := f.s().LatestCheckpoint(f.ctx); got == nil || got.Seq != next.Seq {
		t.Errorf("LatestCheckpoint after reopen = %+v", got)
	}
}

// scenario is a log with every kind of entry, and what a test needs to
// damage it precisely. Entries:
//
//	1 refused   2 issued c1   3 issued c2   4 refused
//	5 issued c3 6 revoked c3  7 crl 1       8 refused
type scenario struct {
	c1, c2, c3            *record.Certificate
	refused4              record.AuditEvent
	issued1, issued2      record.AuditEvent
	revoked6, crl7        record.AuditEvent
	hashes                map[int64]string // entry hashes as written
	ca                    string
	crlNumber             int64
	issuedSeq, revokedSeq int64
}

func (f *fixture) scenario() *scenario {
	f.t.Helper()
	sc := &scenario{ca: "ec-issuing", crlNumber: 1, hashes: map[int64]string{}}
	note := func() {
		seq, hash := f.head()
		sc.hashes[seq] = hash
	}
	f.refuse()
	note()
	sc.c1, sc.issued1 = f.issue(sc.ca, "web-server")
	note()
	sc.c2, sc.issued2 = f.issue(sc.ca, "web-server")
	note()
	sc.refused4 = f.refuse()
	note()
	sc.c3, _ = f.issue(sc.ca, "web-server")
	note()
	sc.revoked6 = f.revoke(sc.c3)
	note()
	sc.crl7 = f.issueCRL(sc.ca, sc.crlNumber)
	note()
	f.refuse()
	note()
	if len(sc.hashes) != 8 || sc.hashes[8] == "" {
		f.t.Fatalf("scenario wrote entries %v, want 1–8", sc.hashes)
	}
	return sc
}

func testVerifyIntact(t *testing.T, f *fixture) {
	sc := f.scenario()
	cp := f.signCheckpoint(f.key, f.key, 6, sc.hashes[6])
	f.addCheckpoint(cp)
	rep := f.verify(store.VerifyOptions{Key: f.key.Public(), Anchor: &store.Anchor{Seq: 5, Hash: strings.ToUpper(sc.hashes[5])}})
	want := store.AuditReport{Entries: 8, Checkpoints: 1, LastCheckpoint: 6, AfterLastCheckpoint: 2,
		SignaturesChecked: true, Certificates: 3, CRLs: 1}
	if *rep != want {
		t.Errorf("VerifyAudit report\n%+v\nwant\n%+v", *rep, want)
	}
	// Without the key, the checkpoint's entry is still checked; the report
	// says the signatures were not.
	rep = f.verify(store.VerifyOptions{})
	want.SignaturesChecked = false
	if *rep != want {
		t.Errorf("VerifyAudit report without key\n%+v\nwant\n%+v", *rep, want)
	}
	// A checkpoint by another key (a rotated key without re-anchoring)
	// is reported.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.s().VerifyAudit(f.ctx, store.VerifyOptions{Key: other.Public()})
	wantProblem(t, err, 6, "not by the audit key")
}

// Each case damages a fresh scenario one way and names the problem
// VerifyAudit must report first.
func testVerifyDetects(t *testing.T, f0 *fixture) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// damage returns the options to verify with (after the store's
		// state was built and damaged).
		damage func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions
		seq    int64
		reason string
	}{
		{"altered entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.refused4
			ev.Reason = "allowed after all"
			f.h.Tamper.RewriteAudit(t, 4, record.EncodeEvent(ev), false)
			return f.withKey()
		}, 4, "content does not match its hash"},
		{"removed middle entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.h.Tamper.DeleteAudit(t, 4, 4)
			return f.withKey()
		}, 4, "missing"},
		{"removed first entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.h.Tamper.DeleteAudit(t, 1, 1)
			return f.withKey()
		}, 1, "missing"},
		{"reordered entries", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.h.Tamper.SwapAudit(t, 3, 4)
			return f.withKey()
		}, 3, "previous-hash link does not match"},
		{"truncated tail a checkpoint covers", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(f.key, f.key, 8, sc.hashes[8]))
			f.h.Tamper.DeleteAudit(t, 7, 0)
			return f.withKey()
		}, 7, "truncated"},
		{"tail beyond the checkpoint holding issuances", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			// No signature covers entries 5–8, but the records they
			// account for are still there.
			f.addCheckpoint(f.signCheckpoint(f.key, f.key, 4, sc.hashes[4]))
			f.h.Tamper.DeleteAudit(t, 5, 0)
			return f.withKey()
		}, 0, "no issued entry names it"},
		{"tail beyond the checkpoint, anchored from the logs", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(f.key, f.key, 7, sc.hashes[7]))
			f.h.Tamper.DeleteAudit(t, 8, 8) // a refusal: no record accounts for it
			// Only an anchor kept outside the database can tell.
			rep := f.verify(f.withKey())
			if rep.AfterLastCheckpoint != 0 || rep.Entries != 7 {
				t.Errorf("report %+v", rep)
			}
			o := f.withKey()
			o.Anchor = &store.Anchor{Seq: 8, Hash: sc.hashes[8]}
			return o
		}, 8, "before the anchor"},
		{"forged checkpoint signature", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(other, f.key, 6, sc.hashes[6]))
			return f.withKey()
		}, 6, "signature does not verify"},
		{"checkpoint by another key", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(other, other, 6, sc.hashes[6]))
			return f.withKey()
		}, 6, "not by the audit key"},
		{"rewritten chain under a checkpoint", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(f.key, f.key, 8, sc.hashes[8]))
			ev := sc.refused4
			ev.Reason = "allowed after all"
			f.h.Tamper.RewriteAudit(t, 4, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 8, "does not match its checkpoint"},
		{"rewritten chain, checkpoints deleted, anchored", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.addCheckpoint(f.signCheckpoint(f.key, f.key, 8, sc.hashes[8]))
			f.h.Tamper.DeleteCheckpoints(t)
			ev := sc.refused4
			ev.Reason = "allowed after all"
			f.h.Tamper.RewriteAudit(t, 4, record.EncodeEvent(ev), true)
			if rep := f.verify(f.withKey()); rep.Checkpoints != 0 || rep.AfterLastCheckpoint != 8 {
				t.Errorf("report %+v: the deletion shows as no checkpoint at all", rep)
			}
			o := f.withKey()
			o.Anchor = &store.Anchor{Seq: 8, Hash: sc.hashes[8]}
			return o
		}, 8, "does not match the anchor"},
		{"anchor not in the chain", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			o := f.withKey()
			o.Anchor = &store.Anchor{Seq: 3, Hash: sc.hashes[4]}
			return o
		}, 3, "does not match the anchor"},
		{"anchor beyond the chain", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			o := f.withKey()
			o.Anchor = &store.Anchor{Seq: 99, Hash: sc.hashes[8]}
			return o
		}, 99, "before the anchor"},
		{"issued record without its entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.issued1
			ev.Action, ev.Outcome, ev.DERHash = record.ActionRefused, "forbidden", ""
			f.h.Tamper.RewriteAudit(t, 2, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 0, "no issued entry names it"},
		{"entry whose record was deleted", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			f.h.Tamper.DeleteCertificate(t, sc.c2.ID)
			return f.withKey()
		}, 3, "names a certificate that has no record"},
		{"DER hash mismatch", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.issued2
			ev.DERHash = hexHash("a certificate that was never recorded")
			f.h.Tamper.RewriteAudit(t, 3, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 3, "derSha256 does not match"},
		{"revoked record without its entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.revoked6
			ev.Action = record.ActionRefused
			f.h.Tamper.RewriteAudit(t, 6, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 0, "no revoked entry names it"},
		{"issued CRL without its entry", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.crl7
			ev.Action = record.ActionRefused
			f.h.Tamper.RewriteAudit(t, 7, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 0, "no crl entry names it"},
		{"CRL DER hash mismatch", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			ev := sc.crl7
			ev.DERHash = hexHash("another CRL")
			f.h.Tamper.RewriteAudit(t, 7, record.EncodeEvent(ev), true)
			return f.withKey()
		}, 7, "derSha256 does not match the DER of CRL"},
		{"issued entry of an aborted record", func(t *testing.T, f *fixture, sc *scenario) store.VerifyOptions {
			// Entry 4 claims the issuance of a reservation that was aborted.
			c := f.cert(sc.ca, "web-server")
			f.reserve(c)
			if err := f.s().Abort(f.ctx, c.ID, nil, f.refusal()); err != nil {
				t.Fatal(err)
			}
			f.h.Tamper.RewriteAudit(t, 4, record.EncodeEvent(f.issuedEvent(c)), true)
			return f.withKey()
		}, 4, "whose record is aborted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := f0.fresh(t)
			sc := f.scenario()
			o := tc.damage(t, f, sc)
			_, err := f.s().VerifyAudit(f.ctx, o)
			wantProblem(t, err, tc.seq, tc.reason)
		})
	}
}

// Every audit key type pkid accepts verifies; one it cannot use is an
// error, not a verdict.
func testCheckpointKeys(t *testing.T, f0 *fixture) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"P-256", f0.key}, {"P-384", p384}, {"RSA", rsaKey}} {
		t.Run(tc.name, func(t *testing.T) {
			f := f0.fresh(t)
			f.issue("ec-issuing", "web-server")
			f.addCheckpoint(f.checkpoint(tc.key))
			f.refuse()
			rep := f.verify(store.VerifyOptions{Key: tc.key.Public()})
			if !rep.SignaturesChecked || rep.Checkpoints != 1 || rep.LastCheckpoint != 1 || rep.AfterLastCheckpoint != 1 {
				t.Errorf("report %+v", rep)
			}
		})
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f0.refuse()
	_, err = f0.s().VerifyAudit(f0.ctx, store.VerifyOptions{Key: p521.Public()})
	var p *store.AuditProblem
	if err == nil || errors.As(err, &p) {
		t.Errorf("VerifyAudit with a P-521 key = %v, want an error that is not an audit problem", err)
	}
}
