package issuer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
)

// A finalize the database fails leaves the row pending and the client a
// 503; once the store is back the node aborts the row itself, with an audit
// entry saying why and the signed DER kept — and only once.
func TestUnfinishedCertificateIsResolvedWhenTheStoreIsBack(t *testing.T) {
	h := newHarness(t, false)
	h.store.failFinal = record.ErrUnavailable
	_, err := h.iss.Issue(context.Background(), h.meta, request(t))
	wantKind(t, err, KindUnavailable)
	var pending *record.Certificate
	for _, r := range h.store.records {
		pending = r
	}
	if pending == nil || pending.Status != record.StatusPending || h.signer.calls != 1 {
		t.Fatalf("after the failed finalize: %+v, %d signatures", pending, h.signer.calls)
	}

	// Still away: nothing resolved, the row still owed.
	h.store.failAbort = record.ErrUnavailable
	if done, err := h.service.ResolveUnfinished(context.Background()); err == nil || len(done) != 0 {
		t.Fatalf("with the store away: %v, %v", done, err)
	}

	h.store.failFinal, h.store.failAbort = nil, nil
	h.clock.Set(testNow.Add(time.Minute))
	done, err := h.service.ResolveUnfinished(context.Background())
	if err != nil || len(done) != 1 || done[0].ID != pending.ID || done[0].Serial != pending.Serial || done[0].CA != h.ca.Name() {
		t.Fatalf("resolved %+v, %v; want the pending row %s", done, err, pending.ID)
	}
	if r := h.store.records[pending.ID]; r.Status != record.StatusAborted || len(r.DER) == 0 {
		t.Errorf("record after resolution: status %s, %d bytes of DER", r.Status, len(r.DER))
	}
	last := h.store.audit[len(h.store.audit)-1]
	if last.Action != record.ActionAborted || last.CertificateID != pending.ID || last.Reason != unfinishedReason ||
		last.Outcome != OutcomeUnavailable || !last.Time.Equal(testNow.Add(time.Minute)) {
		t.Errorf("audit entry %+v", last)
	}
	if done, err := h.service.ResolveUnfinished(context.Background()); err != nil || len(done) != 0 {
		t.Errorf("a second pass: %v, %v", done, err)
	}
}

// A finalize whose commit reached the server before the connection broke
// reports failure, yet the record is issued: the pass forgets the row
// without an entry.
func TestUnfinishedRowThatCommittedAfterAllIsForgotten(t *testing.T) {
	h := newHarness(t, false)
	h.store.failFinal = record.ErrUnavailable
	_, err := h.iss.Issue(context.Background(), h.meta, request(t))
	wantKind(t, err, KindUnavailable)
	for _, r := range h.store.records {
		r.Status = record.StatusIssued // what the server committed
	}
	entries := len(h.store.audit)
	if done, err := h.service.ResolveUnfinished(context.Background()); err != nil || len(done) != 0 || len(h.store.audit) != entries {
		t.Errorf("resolved %v, %v, %d new entries", done, err, len(h.store.audit)-entries)
	}
	if done, _ := h.service.ResolveUnfinished(context.Background()); len(done) != 0 {
		t.Errorf("the row was not forgotten: %v", done)
	}
}

// The same for a CRL whose finalize failed: its number stays used, and the
// reservation is aborted once the store is back, its entry holding the hash
// of what the key signed.
func TestUnfinishedCRLIsResolvedWhenTheStoreIsBack(t *testing.T) {
	h := newHarness(t, false)
	pub := NewCRLPublisher(h.service, CRLConfig{Validity: 24 * time.Hour, MaxDelay: time.Second}, nil)
	pub.SetCAs([]*CA{h.ca}, &crlLinter{})
	ca := h.ca.Name()
	h.store.failFinalCRL = record.ErrUnavailable
	if _, err := pub.Refresh(context.Background(), ca, nil); err == nil {
		t.Fatal("Refresh succeeded with FinalizeCRL failing")
	}
	if rows := h.store.crlRows(ca)[1]; len(rows) != 1 || rows[0].Status != record.StatusPending {
		t.Fatalf("CRL 1 after the failed finalize: %+v", rows)
	}
	h.store.failFinalCRL = nil
	done, err := h.service.ResolveUnfinished(context.Background())
	if err != nil || len(done) != 1 || done[0].CRLNumber != 1 || done[0].CA != ca || done[0].ID != "" {
		t.Fatalf("resolved %+v, %v", done, err)
	}
	if rows := h.store.crlRows(ca)[1]; rows[0].Status != record.StatusAborted {
		t.Errorf("CRL 1 after resolution: %s", rows[0].Status)
	}
	last := h.store.audit[len(h.store.audit)-1]
	if last.Action != record.ActionAborted || last.CRLNumber != 1 || len(last.DERHash) != 64 || last.Reason != unfinishedReason {
		t.Errorf("audit entry %+v", last)
	}
	next, err := pub.Refresh(context.Background(), ca, nil)
	if err != nil || next.Number != 2 {
		t.Errorf("the next CRL: %+v, %v; want number 2", next, err)
	}
}

// A reservation whose answer was lost may have been committed: it is
// resolved if it was, and forgotten without an entry if it was not.
func TestUnfinishedReservationIsResolvedIfItCommitted(t *testing.T) {
	for _, c := range []struct {
		name      string
		committed bool
	}{{"committed", true}, {"not committed", false}} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			if c.committed {
				h.store.lostReserve = record.ErrUnavailable
			} else {
				h.store.failReserve = record.ErrUnavailable
			}
			_, err := h.iss.Issue(context.Background(), h.meta, request(t))
			wantKind(t, err, KindUnavailable)
			if h.signer.calls != 0 {
				t.Fatal("the token signed without a reservation")
			}
			h.store.lostReserve, h.store.failReserve = nil, nil
			entries := len(h.store.audit)
			done, err := h.service.ResolveUnfinished(context.Background())
			if err != nil || len(done) != map[bool]int{true: 1, false: 0}[c.committed] {
				t.Fatalf("resolved %+v, %v", done, err)
			}
			for _, r := range h.store.records {
				if r.Status != record.StatusAborted || len(r.DER) != 0 {
					t.Errorf("record %s: %s with %d bytes of DER", r.ID, r.Status, len(r.DER))
				}
			}
			if c.committed != (len(h.store.audit) == entries+1) {
				t.Errorf("%d audit entries added", len(h.store.audit)-entries)
			}
		})
	}
}

// An abort the store keeps refusing for a reason of the row's is tried
// maxUnfinishedFailures times, then left to the start-up recovery; the
// store being away does not count. Two
// passes at once (under -race: their attempts share no state) resolve a
// row once.
func TestUnfinishedRowsGiveUpAndPassesDoNotOverlap(t *testing.T) {
	h := newHarness(t, false)
	h.store.failFinal = record.ErrUnavailable
	for range 2 {
		_, err := h.iss.Issue(context.Background(), h.meta, request(t))
		wantKind(t, err, KindUnavailable)
	}
	h.store.failFinal = nil
	// The store away, or a pass out of time, says nothing about the rows:
	// those attempts are not counted.
	h.store.failAbort = record.ErrUnavailable
	for range 2 * maxUnfinishedFailures {
		h.service.ResolveUnfinished(context.Background())
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	h.service.ResolveUnfinished(expired)
	h.store.mu.Lock()
	h.store.failAbort = errors.New("constraint violated")
	h.store.mu.Unlock()
	for k := 1; k <= maxUnfinishedFailures; k++ {
		_, err := h.service.ResolveUnfinished(context.Background())
		if err == nil || !strings.Contains(err.Error(), "constraint violated") {
			t.Fatalf("attempt %d: %v", k, err)
		}
		if left := strings.Contains(err.Error(), "left to the start-up recovery"); left != (k == maxUnfinishedFailures) {
			t.Errorf("attempt %d: %v", k, err)
		}
	}
	if done, err := h.service.ResolveUnfinished(context.Background()); err != nil || len(done) != 0 {
		t.Errorf("after giving up: %v, %v", done, err)
	}

	h.store.mu.Lock()
	h.store.failAbort, h.store.failFinal = nil, record.ErrUnavailable
	h.store.mu.Unlock()
	_, err := h.iss.Issue(context.Background(), h.meta, request(t))
	wantKind(t, err, KindUnavailable)
	h.store.mu.Lock()
	h.store.failFinal = nil
	h.store.mu.Unlock()
	results := make(chan int, 2)
	for range 2 {
		go func() {
			done, _ := h.service.ResolveUnfinished(context.Background())
			results <- len(done)
		}()
	}
	if total := <-results + <-results; total != 1 {
		t.Errorf("two passes resolved %d rows, want the one", total)
	}
}
