package issuer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pkid/pkid/record"
)

// A request can end while the store cannot take its outcome: the database
// went away between the reservation and the finalize, or the abort after a
// lint failure. The client got 503 and the row stays pending; recovery at
// the next start would resolve it (DESIGN.md §5). This node knows those
// requests are over, so it resolves their rows itself once the store is
// back, instead of leaving them pending (and pkid_pending_records raised)
// until a restart.

// maxUnfinished bounds what a node keeps to resolve; past it (a store that
// keeps failing mid-request for a long time) rows wait for the next start,
// counted meanwhile by pkid_pending_records like any pending row.
const maxUnfinished = 10000

// Unfinished is a pending row whose request has ended.
type Unfinished struct {
	ID, Serial, Profile string // a certificate; empty for a CRL
	CA                  string
	CRLNumber           int64 // a CRL; 0 for a certificate
	TBSHash             string
}

type unfinishedRow struct {
	Unfinished
	abort    func(ctx context.Context) error // record.ErrNotPending once the row is resolved
	failures int                             // attempts the store refused
}

// maxUnfinishedFailures is how often a row's abort may fail for a reason of
// its own (not the store away, not the pass out of time) before it is left
// for the start-up recovery: an error that does not go away must not be
// retried on every beat.
const maxUnfinishedFailures = 10

// unfinishedRows are the rows a Service owes an outcome, by record id (or
// "crl:<ca>:<number>").
type unfinishedRows struct {
	pass sync.Mutex // one ResolveUnfinished at a time
	mu   sync.Mutex
	rows map[string]unfinishedRow
}

func (u *unfinishedRows) add(key string, row unfinishedRow) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rows == nil {
		u.rows = map[string]unfinishedRow{}
	}
	if len(u.rows) < maxUnfinished {
		u.rows[key] = row
	}
}

func (u *unfinishedRows) snapshot() map[string]unfinishedRow {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]unfinishedRow, len(u.rows))
	for k, r := range u.rows {
		out[k] = r
	}
	return out
}

func (u *unfinishedRows) drop(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.rows, key)
}

// failed counts a refused attempt at key's row and reports whether it may
// be tried again.
func (u *unfinishedRows) failed(key string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	row, ok := u.rows[key]
	if !ok {
		return false
	}
	row.failures++
	if row.failures >= maxUnfinishedFailures {
		delete(u.rows, key)
		return false
	}
	u.rows[key] = row
	return true
}

// unfinishedReason is the audit reason of a row whose finalize failed.
const unfinishedReason = "the database failed as the outcome was being recorded; the request was answered 503 and the certificate, if signed, was never returned"

// unfinishedReservationReason is the audit reason of a reservation whose
// answer the database lost and that had committed all the same.
const unfinishedReservationReason = "the database went away as the serial was being reserved; the request was answered 503 and nothing was signed"

// abortEvent turns a request's audit entry ev into the entry of its
// reservation aborted for reason.
func abortEvent(ev record.AuditEvent, outcome, reason string) record.AuditEvent {
	ev.Action, ev.Outcome, ev.Reason = record.ActionAborted, outcome, reason
	return ev
}

// leaveCertificate keeps a certificate reservation whose request ended
// without its outcome recorded: ab is the abort entry to append (its time
// is set when it is), der what the token signed, if anything.
func (s *Service) leaveCertificate(rec *record.Certificate, der []byte, ab record.AuditEvent) {
	s.unfinished.add(rec.ID, unfinishedRow{
		Unfinished: Unfinished{ID: rec.ID, Serial: rec.Serial, Profile: rec.Profile, CA: rec.CA, TBSHash: rec.TBSHash},
		abort: func(ctx context.Context) error {
			e := ab // each attempt its own copy: the time is the attempt's
			e.Time = s.clock.Now().UTC()
			return s.store.Abort(ctx, rec.ID, der, e)
		}})
}

// leaveCRL is leaveCertificate for a CRL reservation.
func (s *Service) leaveCRL(rec *record.CRL, ab record.AuditEvent) {
	s.unfinished.add(fmt.Sprintf("crl:%s:%d", rec.CA, rec.Number), unfinishedRow{
		Unfinished: Unfinished{CA: rec.CA, CRLNumber: rec.Number, TBSHash: rec.TBSHash},
		abort: func(ctx context.Context) error {
			e := ab
			e.Time = s.clock.Now().UTC()
			return s.store.AbortCRL(ctx, rec.CA, rec.Number, e)
		}})
}

// ResolveUnfinished aborts, with an audit entry each, the pending rows of
// this node's requests that ended while the store could not record their
// outcome, and returns those it resolved. A row the store no longer has
// pending (a finalize whose commit reached the server before the
// connection broke), or never had (a reservation that did not commit), is
// forgotten without an entry. A row whose abort fails is tried again on
// the next call, up to maxUnfinishedFailures times; the error of the
// first failure is returned. Calls are serialized.
func (s *Service) ResolveUnfinished(ctx context.Context) ([]Unfinished, error) {
	s.unfinished.pass.Lock()
	defer s.unfinished.pass.Unlock()
	var resolved []Unfinished
	var first error
	left := 0
	for key, row := range s.unfinished.snapshot() {
		if ctx.Err() != nil {
			break // the rest wait for the next call
		}
		err := row.abort(ctx)
		switch {
		case err == nil:
			resolved = append(resolved, row.Unfinished)
			s.unfinished.drop(key)
		case errors.Is(err, record.ErrNotPending), errors.Is(err, record.ErrNotFound):
			s.unfinished.drop(key)
		default:
			first = cmp.Or(first, err)
			// The store away or the pass out of time is not counted.
			if !transient(err) && !s.unfinished.failed(key) {
				left++
			}
		}
	}
	if first == nil {
		return resolved, nil
	}
	err := fmt.Errorf("resolving the pending rows of ended requests: %w", first)
	if left > 0 {
		err = fmt.Errorf("%w (%d left to the start-up recovery after %d attempts)", err, left, maxUnfinishedFailures)
	}
	return resolved, err
}

// transient reports an error that says nothing about the row: the store
// was away, or the pass ran out of time.
func transient(err error) bool {
	return errors.Is(err, record.ErrUnavailable) || errors.Is(err, record.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
