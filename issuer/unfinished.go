package issuer

import (
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
	abort func(ctx context.Context) error // record.ErrNotPending once the row is resolved
}

// unfinishedRows are the rows a Service owes an outcome, by record id (or
// "crl:<ca>:<number>").
type unfinishedRows struct {
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

// unfinishedReason is the audit reason of a row whose finalize failed.
const unfinishedReason = "the database failed as the outcome was being recorded; the request was answered 503 and the certificate, if signed, was never returned"

// unfinishedEvent turns the finalize entry ev into the abort entry of a
// row whose finalize failed.
func unfinishedEvent(ev record.AuditEvent, outcome string) record.AuditEvent {
	ev.Action, ev.Outcome, ev.Reason = record.ActionAborted, outcome, unfinishedReason
	return ev
}

// leaveCertificate keeps a certificate reservation whose request ended
// without its outcome recorded: ab is the abort entry to append (its time
// is set when it is), der what the token signed, if anything.
func (s *Service) leaveCertificate(rec *record.Certificate, der []byte, ab record.AuditEvent) {
	s.unfinished.add(rec.ID, unfinishedRow{
		Unfinished: Unfinished{ID: rec.ID, Serial: rec.Serial, Profile: rec.Profile, CA: rec.CA, TBSHash: rec.TBSHash},
		abort: func(ctx context.Context) error {
			ab.Time = s.clock.Now().UTC()
			return s.store.Abort(ctx, rec.ID, der, ab)
		}})
}

// leaveCRL is leaveCertificate for a CRL reservation.
func (s *Service) leaveCRL(rec *record.CRL, ab record.AuditEvent) {
	s.unfinished.add(fmt.Sprintf("crl:%s:%d", rec.CA, rec.Number), unfinishedRow{
		Unfinished: Unfinished{CA: rec.CA, CRLNumber: rec.Number, TBSHash: rec.TBSHash},
		abort: func(ctx context.Context) error {
			ab.Time = s.clock.Now().UTC()
			return s.store.AbortCRL(ctx, rec.CA, rec.Number, ab)
		}})
}

// ResolveUnfinished aborts, with an audit entry each, the pending rows of
// this node's requests that ended while the store could not record their
// outcome, and returns those it resolved. A row the store no longer has
// pending (a finalize whose commit reached the server before the
// connection broke) is forgotten without an entry. It stops at the first
// failure: the store is still away, and the rest wait for the next call.
func (s *Service) ResolveUnfinished(ctx context.Context) ([]Unfinished, error) {
	var resolved []Unfinished
	for key, row := range s.unfinished.snapshot() {
		err := row.abort(ctx)
		switch {
		case err == nil:
			resolved = append(resolved, row.Unfinished)
		case errors.Is(err, record.ErrNotPending), errors.Is(err, record.ErrNotFound):
		default:
			return resolved, fmt.Errorf("resolving the pending rows of ended requests: %w", err)
		}
		s.unfinished.drop(key)
	}
	return resolved, nil
}
