package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

// sqlState is the SQLSTATE of a server error, or "".
func sqlState(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

// SQLSTATEs the schema raises (migrations/0001_initial.sql).
const (
	stateGuard         = "PK000" // a forward-only or append-only guard refused
	stateCRLNumberUsed = "PK001"
	stateUnique        = "23505"
)

const insertCertificate = `INSERT INTO certificates (id, serial, profile_id, profile, ca, issuer_hash, identity,
	request_id, certificate_request_id, application_id, common_name, alt_names, key_usages, ext_key_usages,
	signature_algorithm, key_algorithm, not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der,
	revoked_at, revocation_reason, node, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
	$23, $24, $25, $26, $27, $28, $29)`

// certificateArgs are insertCertificate's arguments for c as it is.
func certificateArgs(c *record.Certificate) []any {
	return []any{c.ID, c.Serial, c.ProfileID, c.Profile, c.CA, c.IssuerHash, c.Identity, c.RequestID,
		c.CertificateRequestID, c.ApplicationID, c.CommonName,
		contract.JSONText(c.AltNames), contract.JSONText(c.KeyUsages), contract.JSONText(c.ExtKeyUsages),
		c.SignatureAlgorithm, c.KeyAlgorithm, contract.TimeText(c.NotBefore), contract.TimeText(c.NotAfter),
		c.TBSHash, c.CSR, c.CSRHash, c.Renews, c.Status, c.DER, contract.OptionalTime(c.RevokedAt), c.RevocationReason,
		c.Node, contract.TimeText(c.CreatedAt), contract.TimeText(c.UpdatedAt)}
}

// Reserve durably inserts c with status pending.
func (d *DB) Reserve(ctx context.Context, c *record.Certificate) error {
	r := *c // validation fills in the CSR hash; the caller's value stays as given
	if err := contract.ValidateCertificate(&r); err != nil {
		return err
	}
	r.Status, r.DER, r.RevokedAt, r.RevocationReason, r.UpdatedAt = record.StatusPending, nil, time.Time{}, "", r.CreatedAt
	return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error {
		_, err := g.exec(ctx, insertCertificate, certificateArgs(&r)...)
		if code, constraint := sqlState(err); code == stateUnique && constraint == "certificates_serial_key" {
			return fmt.Errorf("reserving serial %s: %w", r.Serial, record.ErrDuplicateSerial)
		}
		if err != nil {
			return fmt.Errorf("reserving serial %s: %w", r.Serial, err)
		}
		return nil
	})
}

// certState reads and locks a certificate's status, serial and CA inside
// the group's transaction.
func (g *group) certState(ctx context.Context, id string) (status, serial, ca string, err error) {
	err = g.queryRow(ctx, `SELECT status, serial, ca FROM certificates WHERE id = $1 FOR UPDATE`, []any{id},
		&status, &serial, &ca)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", "", record.ErrNotFound
	}
	return status, serial, ca, err
}

// Finalize marks a pending record issued with its DER and appends ev, in
// one transaction.
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
	return d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		have, serial, _, err := g.certState(ctx, id)
		if err != nil {
			return fmt.Errorf("%s certificate %s: %w", verb, id, err)
		}
		if ev, err = contract.ResolveCertificate(have, status, ev, id, serial, der); err != nil {
			return err
		}
		return g.appendAudit(ctx, ev, stmt{`UPDATE certificates SET status = $1, der = $2, updated_at = $3
			WHERE id = $4 AND status = 'pending'`, []any{status, der, contract.TimeText(ev.Time), id}})
	})
}

// Refuse appends the audit event of a refused request (or a summary of
// suppressed refusals).
func (d *DB) Refuse(ctx context.Context, ev record.AuditEvent) error {
	ev, err := contract.RefuseEvent(ev)
	if err != nil {
		return fmt.Errorf("recording refusal: %w", err)
	}
	return d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		return g.appendAudit(ctx, ev)
	})
}

// Revoke marks an issued certificate revoked at at for reason and appends
// ev, in one transaction.
func (d *DB) Revoke(ctx context.Context, id string, at time.Time, reason string, ev record.AuditEvent) error {
	if at.IsZero() || reason == "" {
		return fmt.Errorf("revoking certificate %s: a revocation needs a time and a reason", id)
	}
	return d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		status, serial, ca, err := g.certState(ctx, id)
		if err != nil {
			return fmt.Errorf("revoking certificate %s: %w", id, err)
		}
		if ev, err = contract.RevokeCertificate(status, ev, id, serial, ca); err != nil {
			return err
		}
		return g.appendAudit(ctx, ev, stmt{`UPDATE certificates SET status = 'revoked', revoked_at = $1,
			revocation_reason = $2, updated_at = $3 WHERE id = $4 AND status = 'issued'`,
			[]any{contract.TimeText(at), reason, contract.TimeText(ev.Time), id}})
	})
}

// ReserveCRL durably inserts c pending, if its number is beyond every
// number reserved for its CA. The schema's trigger decides, under the CA's
// row lock in crl_numbers, so that two nodes cannot both take a number.
func (d *DB) ReserveCRL(ctx context.Context, c *record.CRL) error {
	r := *c
	if err := contract.ValidateCRL(&r); err != nil {
		return err
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error {
		created := contract.TimeText(r.CreatedAt)
		_, err := g.exec(ctx, `INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der,
			node, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', NULL, $6, $7, $7)`,
			r.CA, r.Number, contract.TimeText(r.ThisUpdate), contract.TimeText(r.NextUpdate), r.TBSHash, r.Node, created)
		switch code, _ := sqlState(err); {
		case code == stateCRLNumberUsed, code == stateUnique:
			return fmt.Errorf("reserving CRL %d of %s: %w", r.Number, r.CA, record.ErrCRLNumberUsed)
		case err != nil:
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
	return d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		var have string
		err := g.queryRow(ctx, `SELECT status FROM crls WHERE ca = $1 AND number = $2 FOR UPDATE`, []any{ca, number}, &have)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, record.ErrNotFound)
		case err != nil:
			return fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, err)
		}
		if ev, err = contract.ResolveCRL(have, status, ev, ca, number, der); err != nil {
			return err
		}
		return g.appendAudit(ctx, ev, stmt{`UPDATE crls SET status = $1, der = $2, updated_at = $3
			WHERE ca = $4 AND number = $5 AND status = 'pending'`, []any{status, der, contract.TimeText(ev.Time), ca, number}})
	})
}

// AbortPending resolves the pending certificates and CRLs that node
// reserved and those of nodes whose heartbeat is older than at − staleAfter
// or that never sent one, each to aborted with an audit entry (action
// recovered) that gives reason. It leaves the rows of live nodes alone:
// they may be signing them now. Two nodes recovering the same stopped
// node's rows at once resolve each row once: both hold the chain-head lock
// in turn, and each row is locked and re-read as pending before it moves.
func (d *DB) AbortPending(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	return d.abortPending(ctx, node, true, staleAfter, reason, at)
}

// AbortAbandoned resolves, as AbortPending does, the pending rows of the
// nodes other than node whose heartbeat is older than at − staleAfter or
// that never sent one, and leaves node's own alone: node is running and
// may be signing them. When there is nothing to resolve it writes nothing
// and takes no lock, so that calling it on every heartbeat costs the
// other nodes' issuance nothing.
func (d *DB) AbortAbandoned(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	stale := contract.TimeText(contract.StaleBefore(at, staleAfter))
	n, err := d.count(ctx, "finding abandoned pending records", `SELECT
		(SELECT count(*) FROM certificates WHERE status = 'pending' AND `+resolvable("certificates", false)+`)
		+ (SELECT count(*) FROM crls WHERE status = 'pending' AND `+resolvable("crls", false)+`)`, node, stale)
	if err != nil || n == 0 {
		return nil, err
	}
	return d.abortPending(ctx, node, false, staleAfter, reason, at)
}

// resolvable is the condition, on the rows of table with $1 the node and
// $2 the heartbeat cutoff, under which a pending row may be resolved: its
// node has no heartbeat at or after the cutoff (none at all for records
// made before nodes had names), or, with own, it is node's.
func resolvable(table string, own bool) string {
	stopped := `NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.name = ` + table + `.node AND nodes.heartbeat_at >= $2)`
	if own {
		return `(` + table + `.node = $1 OR ` + stopped + `)`
	}
	return `(` + table + `.node <> $1 AND ` + stopped + `)`
}

// abortPending is AbortPending, or with !own AbortAbandoned.
func (d *DB) abortPending(ctx context.Context, node string, own bool, staleAfter time.Duration, reason string, at time.Time) ([]store.Recovered, error) {
	stale := contract.TimeText(contract.StaleBefore(at, staleAfter))
	mine := func(table string) string { return resolvable(table, own) }
	var out []store.Recovered
	err := d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		out = out[:0]
		rows, err := g.query(ctx, `SELECT id, serial, profile, identity, request_id, ca, tbs_hash, node
			FROM certificates WHERE status = 'pending' AND `+mine("certificates")+` ORDER BY created_at, id FOR UPDATE`, node, stale)
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
		if err := rows.Err(); err != nil {
			return fmt.Errorf("finding pending certificates: %w", err)
		}
		rows, err = g.query(ctx, `SELECT ca, number, tbs_hash, node FROM crls
			WHERE status = 'pending' AND `+mine("crls")+` ORDER BY ca, number FOR UPDATE`, node, stale)
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
		if err := rows.Err(); err != nil {
			return fmt.Errorf("finding pending CRLs: %w", err)
		}
		for _, r := range out {
			if r.CRLNumber != 0 {
				if err := g.appendAudit(ctx, contract.RecoveredCRLEvent(r.CA, r.CRLNumber, reason, at),
					stmt{`UPDATE crls SET status = 'aborted', updated_at = $1 WHERE ca = $2 AND number = $3 AND status = 'pending'`,
						[]any{contract.TimeText(at), r.CA, r.CRLNumber}}); err != nil {
					return fmt.Errorf("resolving pending CRL %d of %s: %w", r.CRLNumber, r.CA, err)
				}
				continue
			}
			ev := contract.RecoveredCertificateEvent(&record.Certificate{ID: r.ID, Serial: r.Serial, Profile: r.Profile,
				Identity: r.Identity, RequestID: r.RequestID, CA: r.CA}, reason, at)
			if err := g.appendAudit(ctx, ev, stmt{`UPDATE certificates SET status = 'aborted', updated_at = $1
				WHERE id = $2 AND status = 'pending'`, []any{contract.TimeText(at), r.ID}}); err != nil {
				return fmt.Errorf("resolving pending certificate %s: %w", r.ID, err)
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
// lies beyond the latest checkpoint. It holds the chain-head lock, so two
// nodes anchoring at once are checked one after the other.
func (d *DB) AddCheckpoint(ctx context.Context, cp record.Checkpoint) error {
	if cp.Seq < 1 || cp.Hash == "" || cp.Time.IsZero() || cp.KeyID == "" || len(cp.Signature) == 0 {
		return fmt.Errorf("adding audit checkpoint %d: incomplete: %w", cp.Seq, record.ErrInvalidCheckpoint)
	}
	return d.writes.Submit(ctx, true, func(ctx context.Context, g *group) error {
		var latest int64
		if err := g.queryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_checkpoints`, nil, &latest); err != nil {
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		}
		if cp.Seq <= latest {
			return fmt.Errorf("adding audit checkpoint %d: not beyond the latest checkpoint (%d): %w", cp.Seq, latest, record.ErrInvalidCheckpoint)
		}
		var hash string
		err := g.queryRow(ctx, `SELECT hash FROM audit WHERE seq = $1`, []any{cp.Seq}, &hash)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("adding audit checkpoint %d: no such entry: %w", cp.Seq, record.ErrInvalidCheckpoint)
		case err != nil:
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		case hash != cp.Hash:
			return fmt.Errorf("adding audit checkpoint %d: the entry's hash is %s, not %s: %w", cp.Seq, hash, cp.Hash, record.ErrInvalidCheckpoint)
		}
		if _, err := g.exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5)`,
			cp.Seq, cp.Hash, contract.TimeText(cp.Time), cp.KeyID, cp.Signature); err != nil {
			return fmt.Errorf("adding audit checkpoint %d: %w", cp.Seq, err)
		}
		return nil
	})
}

// Heartbeat records that node is alive at at; a heartbeat never moves
// back.
func (d *DB) Heartbeat(ctx context.Context, node string, at time.Time) error {
	if err := contract.ValidateNode(node); err != nil {
		return err
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error {
		if _, err := g.exec(ctx, `INSERT INTO nodes AS n (name, heartbeat_at) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at
			WHERE EXCLUDED.heartbeat_at > n.heartbeat_at`, node, contract.TimeText(at)); err != nil {
			return fmt.Errorf("recording the heartbeat of node %s: %w", node, err)
		}
		return nil
	})
}

// PutOCSPResponses stores the answers in one statement of one write, each
// replacing the stored one unless that is fresher or revoked while this
// one says good.
func (d *DB) PutOCSPResponses(ctx context.Context, rs []record.OCSPResponse) error {
	if err := contract.ValidateOCSPResponses(rs); err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	cas, serials, statuses := make([]string, len(rs)), make([]string, len(rs)), make([]string, len(rs))
	this, next, ders := make([]string, len(rs)), make([]string, len(rs)), make([][]byte, len(rs))
	for k, r := range rs {
		cas[k], serials[k], statuses[k] = r.CA, r.Serial, r.Status
		this[k], next[k], ders[k] = contract.TimeText(r.ThisUpdate), contract.TimeText(r.NextUpdate), r.DER
	}
	return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error {
		if _, err := g.exec(ctx, `INSERT INTO ocsp_responses AS o (ca, serial, status, this_update, next_update, der)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
			ON CONFLICT (ca, serial) DO UPDATE SET status = EXCLUDED.status, this_update = EXCLUDED.this_update,
				next_update = EXCLUDED.next_update, der = EXCLUDED.der
			WHERE EXCLUDED.this_update >= o.this_update AND NOT (o.status = 'revoked' AND EXCLUDED.status = 'good')`,
			cas, serials, statuses, this, next, ders); err != nil {
			return fmt.Errorf("storing %d OCSP answers: %w", len(rs), err)
		}
		return nil
	})
}

// RevokeToken records jti as revoked until expiresAt (the later expiry
// wins when it is revoked again) and purges the revocations of tokens that
// have expired.
func (d *DB) RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if err := contract.ValidateToken(jti, expiresAt); err != nil {
		return err
	}
	now := contract.TimeText(time.Now())
	return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error {
		if _, err := g.exec(ctx, `WITH purged AS (DELETE FROM revoked_tokens WHERE expires_at < $3 AND jti <> $1)
			INSERT INTO revoked_tokens AS t (jti, expires_at) VALUES ($1, $2)
			ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(t.expires_at, EXCLUDED.expires_at)`,
			jti, contract.TimeText(expiresAt), now); err != nil {
			return fmt.Errorf("revoking token %s: %w", jti, err)
		}
		return nil
	})
}
