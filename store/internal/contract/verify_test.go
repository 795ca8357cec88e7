package contract

import (
	"context"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

func seq[T any](vs ...T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, v := range vs {
			if !yield(v, nil) {
				return
			}
		}
	}
}

// chain links bodies into entries as a store writes them.
func chain(bodies ...string) []Entry {
	var es []Entry
	prev := record.GenesisHash
	for k, b := range bodies {
		h := record.ChainHash(prev, int64(k+1), b)
		es = append(es, Entry{Seq: int64(k + 1), PrevHash: prev, Hash: h, Body: b})
		prev = h
	}
	return es
}

func ev(action, id, derOf string) string {
	e := record.AuditEvent{Time: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), Action: action, CertificateID: id}
	if derOf != "" {
		e.DERHash = DERHash([]byte(derOf))
	}
	return record.EncodeEvent(e)
}

func TestVerifyRules(t *testing.T) {
	crlEv := record.EncodeEvent(record.AuditEvent{Time: time.Unix(1, 0), Action: record.ActionCRL, CA: "ca", CRLNumber: 1, DERHash: DERHash([]byte("crl"))})
	for _, tc := range []struct {
		name    string
		legacy  int64
		bodies  []string
		certs   []CertificateEvidence
		crls    []CRLEvidence
		seq     int64
		problem string // "" for none
	}{
		{name: "intact", bodies: []string{ev("issued", "a", "der a"), ev("revoked", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "revoked", DER: []byte("der a")}}},
		{name: "issued entry without derSha256", bodies: []string{ev("issued", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "issued", DER: []byte("der a")}}, seq: 1, problem: "no derSha256"},
		{name: "legacy issued entry without derSha256", legacy: 1, bodies: []string{ev("issued", "a", ""), ev("issued", "b", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "issued", DER: []byte("anything")}}, seq: 2, problem: "no derSha256"},
		{name: "legacy boundary covers it", legacy: 1, bodies: []string{ev("issued", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "issued", DER: []byte("anything")}}},
		{name: "second issued entry", bodies: []string{ev("issued", "a", "der a"), ev("issued", "a", "der a")},
			certs: []CertificateEvidence{{ID: "a", Status: "issued", DER: []byte("der a")}}, seq: 2, problem: "second issued entry"},
		{name: "second revoked entry", bodies: []string{ev("issued", "a", "der a"), ev("revoked", "a", ""), ev("revoked", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "revoked", DER: []byte("der a")}}, seq: 3, problem: "second revoked entry"},
		// The status edited back from revoked: the log still says revoked.
		{name: "revoked entry, record issued", bodies: []string{ev("issued", "a", "der a"), ev("revoked", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "issued", DER: []byte("der a")}}, seq: 2, problem: "whose record is issued"},
		{name: "revoked entry, record pending", bodies: []string{ev("revoked", "a", "")},
			certs: []CertificateEvidence{{ID: "a", Status: "pending"}}, seq: 1, problem: "whose record is pending"},
		{name: "not JSON", bodies: []string{"not json"}, seq: 1, problem: "not an audit event"},
		{name: "bad derSha256", bodies: []string{strings.Replace(ev("issued", "a", "x"), `"derSha256":"`, `"derSha256":"zz`, 1)},
			seq: 1, problem: "not a hex SHA-256"},
		{name: "crl entry without number", bodies: []string{record.EncodeEvent(record.AuditEvent{Time: time.Unix(1, 0), Action: record.ActionCRL, CA: "ca"})},
			seq: 1, problem: "names no CA and number"},
		{name: "crl entry without a record", bodies: []string{crlEv}, seq: 1, problem: "which has no record"},
		{name: "crl entry, record aborted", bodies: []string{crlEv}, crls: []CRLEvidence{{CA: "ca", Number: 1, Status: "aborted"}},
			seq: 1, problem: "whose record is aborted"},
		{name: "second crl entry", bodies: []string{crlEv, crlEv}, seq: 2, problem: "second crl entry"},
		{name: "crl intact", bodies: []string{crlEv}, crls: []CRLEvidence{{CA: "ca", Number: 1, Status: "issued", DER: []byte("crl")}}},
		{name: "earliest orphan reported", bodies: []string{ev("refused", "x", ""), ev("refused", "y", ""), ev("refused", "x", "")},
			certs: []CertificateEvidence{{ID: "y", Status: "aborted"}}, seq: 1, problem: "no record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Verify(context.Background(), store.VerifyOptions{}, Log{
				LegacyThrough: tc.legacy, Entries: seq(chain(tc.bodies...)...), Checkpoints: seq[record.Checkpoint](),
				Certificates: seq(tc.certs...), CRLs: seq(tc.crls...),
			})
			if tc.problem == "" {
				if err != nil || rep.Entries != int64(len(tc.bodies)) {
					t.Fatalf("Verify = %+v, %v; want no problem", rep, err)
				}
				return
			}
			var p *store.AuditProblem
			if !errors.As(err, &p) || p.Seq != tc.seq || !strings.Contains(p.Reason, tc.problem) {
				t.Fatalf("Verify = %v; want entry %d: %q", err, tc.seq, tc.problem)
			}
		})
	}
}

func TestVerifyReadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	failing := func(yield func(Entry, error) bool) { yield(Entry{}, boom) }
	_, err := Verify(context.Background(), store.VerifyOptions{}, Log{
		Entries: failing, Checkpoints: seq[record.Checkpoint](), Certificates: seq[CertificateEvidence](), CRLs: seq[CRLEvidence](),
	})
	var p *store.AuditProblem
	if !errors.Is(err, boom) || errors.As(err, &p) {
		t.Fatalf("Verify with a failing read = %v, want the read error, not a verdict", err)
	}
	_, err = Verify(context.Background(), store.VerifyOptions{Anchor: &store.Anchor{Seq: 0}}, Log{
		Entries: seq[Entry](), Checkpoints: seq[record.Checkpoint](), Certificates: seq[CertificateEvidence](), CRLs: seq[CRLEvidence](),
	})
	if err == nil || errors.As(err, &p) {
		t.Fatalf("Verify with anchor 0 = %v, want an error", err)
	}
}

func TestEventRules(t *testing.T) {
	now := time.Unix(1, 0)
	got, err := FinalizeEvent(record.AuditEvent{Time: now}, "id", "4a", []byte("der"))
	if err != nil || got.Action != record.ActionIssued || got.CertificateID != "id" || got.Serial != "4a" || got.DERHash != DERHash([]byte("der")) {
		t.Errorf("FinalizeEvent = %+v, %v", got, err)
	}
	if _, err := FinalizeEvent(record.AuditEvent{Time: now, Serial: "4b"}, "id", "4a", []byte("der")); err == nil {
		t.Error("FinalizeEvent accepted another serial")
	}
	if _, err := FinalizeEvent(record.AuditEvent{}, "id", "4a", []byte("der")); err == nil {
		t.Error("FinalizeEvent accepted an event without a time")
	}
	got, err = AbortEvent(record.AuditEvent{Time: now, Action: record.ActionRefused}, "id", "4a", nil)
	if err != nil || got.DERHash != "" || got.CertificateID != "id" {
		t.Errorf("AbortEvent = %+v, %v", got, err)
	}
	got, err = CRLEvent(record.AuditEvent{Time: now}, "ca", 3, []byte("crl"))
	if err != nil || got.Action != record.ActionCRL || got.CA != "ca" || got.CRLNumber != 3 {
		t.Errorf("CRLEvent = %+v, %v", got, err)
	}
	if _, err := CRLEvent(record.AuditEvent{Time: now, CRLNumber: 2}, "ca", 3, []byte("crl")); err == nil {
		t.Error("CRLEvent accepted another number")
	}
	if _, err := AbortCRLEvent(record.AuditEvent{Time: now, Action: record.ActionCRL}, "ca", 3); err == nil {
		t.Error("AbortCRLEvent accepted action crl")
	}
}
