package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
)

// Heartbeat records that node is alive at at. A heartbeat never moves
// back, so a node whose clock stepped back is not made to look stale.
func (d *DB) Heartbeat(ctx context.Context, node string, at time.Time) error {
	if err := contract.ValidateNode(node); err != nil {
		return err
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		if _, err := d.writer.ExecContext(ctx, `INSERT INTO nodes (name, heartbeat_at) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
			WHERE excluded.heartbeat_at > nodes.heartbeat_at`, node, contract.TimeText(at)); err != nil {
			return fmt.Errorf("recording the heartbeat of node %s: %w", node, err)
		}
		return nil
	})
}

// leads are the tasks whose lead this DB holds. SQLite serves one node,
// so a lock in the process is the whole cluster's (DESIGN §16).
type leads struct {
	mu   sync.Mutex
	held map[string]bool
}

// Lead takes the lock named task if no one in this process holds it.
func (d *DB) Lead(ctx context.Context, task string) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := d.closing(); err != nil {
		return nil, false, err
	}
	d.leads.mu.Lock()
	defer d.leads.mu.Unlock()
	if d.leads.held[task] {
		return nil, false, nil
	}
	if d.leads.held == nil {
		d.leads.held = make(map[string]bool)
	}
	d.leads.held[task] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			d.leads.mu.Lock()
			delete(d.leads.held, task)
			d.leads.mu.Unlock()
		})
	}, true, nil
}

// PutOCSPResponses stores the answers in one transaction (one write of
// the group), each replacing the stored one unless that is fresher or
// revoked while this one says good.
func (d *DB) PutOCSPResponses(ctx context.Context, rs []record.OCSPResponse) error {
	if err := contract.ValidateOCSPResponses(rs); err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		for _, r := range rs {
			if _, err := d.writer.ExecContext(ctx, `INSERT INTO ocsp_responses (ca, serial, status, this_update, next_update, der)
				VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (ca, serial) DO UPDATE SET status = excluded.status, this_update = excluded.this_update,
					next_update = excluded.next_update, der = excluded.der
				WHERE excluded.this_update >= ocsp_responses.this_update
					AND NOT (ocsp_responses.status = 'revoked' AND excluded.status = 'good')`,
				r.CA, r.Serial, r.Status, contract.TimeText(r.ThisUpdate), contract.TimeText(r.NextUpdate), r.DER); err != nil {
				return fmt.Errorf("storing the OCSP answer for %s %s: %w", r.CA, r.Serial, err)
			}
		}
		return nil
	})
}

// OCSPResponse returns the stored answer for serial of ca.
func (d *DB) OCSPResponse(ctx context.Context, ca, serial string) (*record.OCSPResponse, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	serial = strings.ToLower(serial)
	r := record.OCSPResponse{CA: ca, Serial: serial}
	var this, next string
	err := d.db.QueryRowContext(ctx, `SELECT status, this_update, next_update, der FROM ocsp_responses
		WHERE ca = ? AND serial = ?`, ca, serial).Scan(&r.Status, &this, &next, &r.DER)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("OCSP answer for %s %s: %w", ca, serial, record.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading the OCSP answer for %s %s: %w", ca, serial, err)
	}
	var err1, err2 error
	r.ThisUpdate, err1 = contract.ParseTime(this)
	r.NextUpdate, err2 = contract.ParseTime(next)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("OCSP answer for %s %s: %w", ca, serial, err)
	}
	return &r, nil
}

// RevokeToken records jti as revoked until expiresAt (the later expiry
// wins when it is revoked again) and purges the revocations of tokens
// that have expired, which are refused on their exp alone.
func (d *DB) RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if err := contract.ValidateToken(jti, expiresAt); err != nil {
		return err
	}
	now := contract.TimeText(time.Now())
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		if _, err := d.writer.ExecContext(ctx, `DELETE FROM revoked_tokens WHERE expires_at < ?`, now); err != nil {
			return fmt.Errorf("purging expired token revocations: %w", err)
		}
		if _, err := d.writer.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)
			ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`, jti, contract.TimeText(expiresAt)); err != nil {
			return fmt.Errorf("revoking token %s: %w", jti, err)
		}
		return nil
	})
}

// TokenRevoked reports whether jti was revoked (and not yet purged).
func (d *DB) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	if err := d.closing(); err != nil {
		return false, err
	}
	var n int
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM revoked_tokens WHERE jti = ?`, jti).Scan(&n); err != nil {
		return false, fmt.Errorf("looking up token %s: %w", jti, err)
	}
	return n > 0, nil
}

// StillLeads reports whether task's lead is held here: with one process
// on the file, a lead is lost only by releasing it.
func (d *DB) StillLeads(ctx context.Context, task string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d.leads.mu.Lock()
	defer d.leads.mu.Unlock()
	return d.leads.held[task], nil
}
