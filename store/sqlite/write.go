package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

// Reserve durably inserts c with status pending.
func (d *DB) Reserve(ctx context.Context, c *record.Certificate) error {
	r := *c // validation fills in the CSR hash; the caller's value stays as given
	if err := contract.ValidateCertificate(&r); err != nil {
		return err
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		created := contract.TimeText(r.CreatedAt)
		_, err := d.stmts.reserve.ExecContext(ctx,
			r.ID, r.Serial, r.ProfileID, r.Profile, r.CA, r.IssuerHash, r.Identity, r.RequestID,
			r.CertificateRequestID, r.ApplicationID, r.CommonName,
			contract.JSONText(r.AltNames), contract.JSONText(r.KeyUsages), contract.JSONText(r.ExtKeyUsages),
			r.SignatureAlgorithm, r.KeyAlgorithm, contract.TimeText(r.NotBefore), contract.TimeText(r.NotAfter),
			r.TBSHash, r.CSR, r.CSRHash, r.Renews, r.Node, created, created)
		if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: certificates.serial") {
			return fmt.Errorf("reserving serial %s: %w", r.Serial, record.ErrDuplicateSerial)
		}
		if err != nil {
			return fmt.Errorf("reserving serial %s: %w", r.Serial, err)
		}
		return nil
	})
}

// certState reads a certificate's status, serial and CA inside the
// writer's transaction.
func (d *DB) certState(ctx context.Context, id string) (status, serial, ca string, err error) {
	err = d.stmts.certState.QueryRowContext(ctx, id).Scan(&status, &serial, &ca)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", "", record.ErrNotFound
	}
	return status, serial, ca, err
}

// Finalize marks a pending record issued with its DER and appends ev, in
// one transaction. Empty certificateId, serialNumber and derSha256 in ev
// are filled in; values that contradict the record are refused.
func (d *DB) Finalize(ctx context.Context, id string, der []byte, ev record.AuditEvent) error {
	return d.resolve(ctx, id, record.StatusIssued, der, ev)
}

// Abort marks a pending record aborted (keeping der, if any, for
// forensics) and appends ev, in one transaction.
func (d *DB) Abort(ctx context.Context, id string, der []byte, ev record.AuditEvent) error {
	return d.resolve(ctx, id, record.StatusAborted, der, ev)
}

func (d *DB) resolve(ctx context.Context, id, status string, der []byte, ev record.AuditEvent) error {
	verb := contract.ResolveVerb(status)
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		have, serial, _, err := d.certState(ctx, id)
		if err != nil {
			return fmt.Errorf("%s certificate %s: %w", verb, id, err)
		}
		if ev, err = contract.ResolveCertificate(have, status, ev, id, serial, der); err != nil {
			return err
		}
		if _, err := d.stmts.transition.ExecContext(ctx, status, der, contract.TimeText(ev.Time), id); err != nil {
			return fmt.Errorf("%s certificate %s: %w", verb, id, err)
		}
		return d.appendAudit(ctx, ev)
	})
}

// Refuse appends the audit event of a refused request (or a summary of
// suppressed refusals).
func (d *DB) Refuse(ctx context.Context, ev record.AuditEvent) error {
	ev, err := contract.RefuseEvent(ev)
	if err != nil {
		return fmt.Errorf("recording refusal: %w", err)
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		return d.appendAudit(ctx, ev)
	})
}

// Revoke marks an issued certificate revoked at at for reason and appends
// ev, in one transaction.
func (d *DB) Revoke(ctx context.Context, id string, at time.Time, reason string, ev record.AuditEvent) error {
	if at.IsZero() || reason == "" {
		return fmt.Errorf("revoking certificate %s: a revocation needs a time and a reason", id)
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		status, serial, ca, err := d.certState(ctx, id)
		if err != nil {
			return fmt.Errorf("revoking certificate %s: %w", id, err)
		}
		if ev, err = contract.RevokeCertificate(status, ev, id, serial, ca); err != nil {
			return err
		}
		if _, err := d.stmts.revoke.ExecContext(ctx, contract.TimeText(at), reason, contract.TimeText(ev.Time), id); err != nil {
			return fmt.Errorf("revoking certificate %s: %w", id, err)
		}
		return d.appendAudit(ctx, ev)
	})
}

// ReserveCRL durably inserts c pending, if its number is beyond every
// number reserved for its CA.
func (d *DB) ReserveCRL(ctx context.Context, c *record.CRL) error {
	r := *c
	if err := contract.ValidateCRL(&r); err != nil {
		return err
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		var last int64
		if err := d.stmts.lastCRL.QueryRowContext(ctx, r.CA).Scan(&last); err != nil {
			return fmt.Errorf("reserving CRL %d of %s: %w", r.Number, r.CA, err)
		}
		if r.Number <= last {
			return fmt.Errorf("reserving CRL %d of %s (the last reserved is %d): %w", r.Number, r.CA, last, record.ErrCRLNumberUsed)
		}
		created := contract.TimeText(r.CreatedAt)
		if _, err := d.stmts.reserveCRL.ExecContext(ctx, r.CA, r.Number, contract.TimeText(r.ThisUpdate), contract.TimeText(r.NextUpdate),
			r.TBSHash, r.Node, created, created); err != nil {
			return fmt.Errorf("reserving CRL %d of %s: %w", r.Number, r.CA, err)
		}
		return nil
	})
}

// FinalizeCRL marks a pending CRL issued with its DER and appends ev, in
// one transaction.
func (d *DB) FinalizeCRL(ctx context.Context, ca string, number int64, der []byte, ev record.AuditEvent) error {
	return d.resolveCRL(ctx, ca, number, record.StatusIssued, der, ev)
}

// AbortCRL marks a pending CRL aborted and appends ev, in one transaction.
func (d *DB) AbortCRL(ctx context.Context, ca string, number int64, ev record.AuditEvent) error {
	return d.resolveCRL(ctx, ca, number, record.StatusAborted, nil, ev)
}

func (d *DB) resolveCRL(ctx context.Context, ca string, number int64, status string, der []byte, ev record.AuditEvent) error {
	verb := contract.ResolveVerb(status)
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		var have string
		err := d.stmts.crlState.QueryRowContext(ctx, ca, number).Scan(&have)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, record.ErrNotFound)
		case err != nil:
			return fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, err)
		}
		if ev, err = contract.ResolveCRL(have, status, ev, ca, number, der); err != nil {
			return err
		}
		if _, err := d.stmts.crlTransition.ExecContext(ctx, status, der, contract.TimeText(ev.Time), ca, number); err != nil {
			return fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, err)
		}
		return d.appendAudit(ctx, ev)
	})
}

// AbortPending resolves the pending certificates and CRLs that node
// reserved and those of nodes whose heartbeat is older than at − staleAfter
// or that never sent one, marking each aborted with an audit entry (action
// recovered) that gives reason. A node calls it at start-up, before it
// reserves anything: its own pending rows then belong to a run that
// stopped between reservation and finalization, so their result — signed
// or not — was never returned (a certificate's private key is gone with
// that run), and a CRL number they held stays used because the token may
// have signed a CRL with it. SQLite serves one node, so in practice that
// is every pending row; the rule is the same as PostgreSQL's so that a
// database moved from one to the other behaves alike.
func (d *DB) AbortPending(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	return d.abortPending(ctx, node, true, staleAfter, reason, at)
}

// AbortAbandoned resolves, as AbortPending does, the pending rows of the
// nodes other than node whose heartbeat is older than at − staleAfter or
// that never sent one, and leaves node's own alone: node is running and
// may be signing them. When there is nothing to resolve it writes nothing.
func (d *DB) AbortAbandoned(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	// A read first, so that the periodic call costs no write when no node
	// has stopped (the usual case).
	var found bool
	stale := contract.TimeText(contract.StaleBefore(at, staleAfter))
	if err := d.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM certificates WHERE status = 'pending' AND `+
		resolvable("certificates", false)+`) OR EXISTS (SELECT 1 FROM crls WHERE status = 'pending' AND `+
		resolvable("crls", false)+`)`, node, stale, node, stale).Scan(&found); err != nil {
		return nil, fmt.Errorf("finding abandoned pending records: %w", err)
	}
	if !found {
		return nil, nil
	}
	return d.abortPending(ctx, node, false, staleAfter, reason, at)
}

// resolvable is the condition, on the rows of table with the arguments
// node and the heartbeat cutoff, under which a pending row may be resolved:
// its node has no heartbeat at or after the cutoff (none at all for records
// made before nodes had names), or, with own, it is node's.
func resolvable(table string, own bool) string {
	stopped := `NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.name = ` + table + `.node AND nodes.heartbeat_at >= ?)`
	if own {
		return `(` + table + `.node = ? OR ` + stopped + `)`
	}
	return `(` + table + `.node <> ? AND ` + stopped + `)`
}

// abortPending is AbortPending, or with !own AbortAbandoned.
func (d *DB) abortPending(ctx context.Context, node string, own bool, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	stale := contract.TimeText(contract.StaleBefore(at, staleAfter))
	mine := func(table string) string { return resolvable(table, own) }
	var out []store.Recovered
	err := d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		out = out[:0]
		c := d.writer
		rows, err := c.QueryContext(ctx, `SELECT id, serial, profile, identity, request_id, ca, tbs_hash, node
			FROM certificates WHERE status = 'pending' AND `+mine("certificates")+` ORDER BY created_at, id`, node, stale)
		if err != nil {
			return fmt.Errorf("finding pending certificates: %w", err)
		}
		for rows.Next() {
			var r store.Recovered
			if err := rows.Scan(&r.ID, &r.Serial, &r.Profile, &r.Identity, &r.RequestID, &r.CA, &r.TBSHash, &r.Node); err != nil {
				rows.Close()
				return fmt.Errorf("reading pending certificate: %w", err)
			}
			out = append(out, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("finding pending certificates: %w", err)
		}
		rows, err = c.QueryContext(ctx, `SELECT ca, number, tbs_hash, node FROM crls
			WHERE status = 'pending' AND `+mine("crls")+` ORDER BY ca, number`, node, stale)
		if err != nil {
			return fmt.Errorf("finding pending CRLs: %w", err)
		}
		for rows.Next() {
			var r store.Recovered
			if err := rows.Scan(&r.CA, &r.CRLNumber, &r.TBSHash, &r.Node); err != nil {
				rows.Close()
				return fmt.Errorf("reading pending CRL: %w", err)
			}
			out = append(out, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("finding pending CRLs: %w", err)
		}
		for _, r := range out {
			if r.CRLNumber != 0 {
				if _, err := d.stmts.crlTransition.ExecContext(ctx, record.StatusAborted, nil, contract.TimeText(at), r.CA, r.CRLNumber); err != nil {
					return fmt.Errorf("resolving pending CRL %d of %s: %w", r.CRLNumber, r.CA, err)
				}
				if err := d.appendAudit(ctx, contract.RecoveredCRLEvent(r.CA, r.CRLNumber, reason, at)); err != nil {
					return err
				}
				continue
			}
			if _, err := d.stmts.transition.ExecContext(ctx, record.StatusAborted, nil, contract.TimeText(at), r.ID); err != nil {
				return fmt.Errorf("resolving pending certificate %s: %w", r.ID, err)
			}
			ev := contract.RecoveredCertificateEvent(&record.Certificate{ID: r.ID, Serial: r.Serial, Profile: r.Profile,
				Identity: r.Identity, RequestID: r.RequestID, CA: r.CA}, reason, at)
			if err := d.appendAudit(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddCheckpoint stores cp if it names an existing entry by its hash and
// lies beyond the latest checkpoint. Its signature is the verifier's to
// check.
func (d *DB) AddCheckpoint(ctx context.Context, cp record.Checkpoint) error {
	if cp.Seq < 1 || cp.Hash == "" || cp.Time.IsZero() || cp.KeyID == "" || len(cp.Signature) == 0 {
		return fmt.Errorf("adding audit checkpoint %d: incomplete: %w", cp.Seq, record.ErrInvalidCheckpoint)
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error {
		var latest int64
		if err := d.stmts.lastCheckpoint.QueryRowContext(ctx).Scan(&latest); err != nil {
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		}
		if cp.Seq <= latest {
			return fmt.Errorf("adding audit checkpoint %d: not beyond the latest checkpoint (%d): %w", cp.Seq, latest, record.ErrInvalidCheckpoint)
		}
		var hash string
		err := d.stmts.entryHash.QueryRowContext(ctx, cp.Seq).Scan(&hash)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("adding audit checkpoint %d: no such entry: %w", cp.Seq, record.ErrInvalidCheckpoint)
		case err != nil:
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		case hash != cp.Hash:
			return fmt.Errorf("adding audit checkpoint %d: the entry's hash is %s, not %s: %w", cp.Seq, hash, cp.Hash, record.ErrInvalidCheckpoint)
		}
		if _, err := d.stmts.addCheckpoint.ExecContext(ctx, cp.Seq, cp.Hash, contract.TimeText(cp.Time),
			cp.KeyID, cp.Signature); err != nil {
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		}
		return nil
	})
}
