package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"
	"syscall"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

// querier is what reads need: the pool, or VerifyAudit's snapshot.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// rowsOf streams the rows of a query through scan. It yields an error at
// most once, last.
func rowsOf[T any](ctx context.Context, q querier, scan func(*sql.Rows) (T, error), query string, args ...any) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			yield(zero, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				yield(zero, err)
				return
			}
			if !yield(v, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(zero, err)
		}
	}
}

const certColumns = contract.CertificateColumns

func scanCertificate(rows *sql.Rows) (*record.Certificate, error) {
	return contract.ScanCertificate(rows.Scan)
}

func (d *DB) certificateWhere(ctx context.Context, what, where string, arg string) (*record.Certificate, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	for c, err := range rowsOf(ctx, d.db, scanCertificate, `SELECT `+certColumns+` FROM certificates WHERE `+where, arg) {
		if err != nil {
			return nil, fmt.Errorf("reading certificate %s: %w", what, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("certificate %s: %w", what, record.ErrNotFound)
}

// Certificate returns the record with id.
func (d *DB) Certificate(ctx context.Context, id string) (*record.Certificate, error) {
	return d.certificateWhere(ctx, id, `id = ?`, id)
}

// CertificateBySerial returns the record with serial (lowercase hex;
// other spellings are lowered first).
func (d *DB) CertificateBySerial(ctx context.Context, serial string) (*record.Certificate, error) {
	serial = strings.ToLower(serial)
	return d.certificateWhere(ctx, "with serial "+serial, `serial = ?`, serial)
}

// CertificateByRequestID returns the record answered with
// certificateRequestID.
func (d *DB) CertificateByRequestID(ctx context.Context, certificateRequestID string) (*record.Certificate, error) {
	if certificateRequestID == "" {
		// Records from schema version 1 have none; "" names nothing.
		return nil, fmt.Errorf("certificate with no request id: %w", record.ErrNotFound)
	}
	return d.certificateWhere(ctx, "of request "+certificateRequestID, `certificate_request_id = ?`, certificateRequestID)
}

// ListCertificates calls fn for each record f selects, in creation order,
// then by id.
func (d *DB) ListCertificates(ctx context.Context, f store.Filter, fn func(*record.Certificate) error) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("listing certificates: %w", err)
	}
	if err := d.closing(); err != nil {
		return err
	}
	var where []string
	var args []any
	for _, c := range []struct{ column, value string }{{"status", f.Status}, {"ca", f.CA}, {"profile", f.Profile}} {
		if c.value != "" {
			where = append(where, c.column+` = ?`)
			args = append(args, c.value)
		}
	}
	query := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	for c, err := range rowsOf(ctx, d.db, scanCertificate, query+` ORDER BY created_at, id`, args...) {
		if err != nil {
			return fmt.Errorf("listing certificates: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// Revoked calls fn for every revoked certificate of ca, by serial.
func (d *DB) Revoked(ctx context.Context, ca string, fn func(record.RevokedEntry) error) error {
	if err := d.closing(); err != nil {
		return err
	}
	scan := func(rows *sql.Rows) (record.RevokedEntry, error) {
		var e record.RevokedEntry
		var at, na string
		if err := rows.Scan(&e.Serial, &at, &e.Reason, &na); err != nil {
			return e, err
		}
		var err1, err2 error
		e.RevokedAt, err1 = contract.ParseTime(at)
		e.NotAfter, err2 = contract.ParseTime(na)
		return e, errors.Join(err1, err2)
	}
	for e, err := range rowsOf(ctx, d.db, scan, `SELECT serial, revoked_at, revocation_reason, not_after
		FROM certificates WHERE status = 'revoked' AND ca = ? ORDER BY serial`, ca) {
		if err != nil {
			return fmt.Errorf("listing revoked certificates of %s: %w", ca, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// RevocationCount counts the revoked certificates of ca.
func (d *DB) RevocationCount(ctx context.Context, ca string) (int64, error) {
	if err := d.closing(); err != nil {
		return 0, err
	}
	var n int64
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE status = 'revoked' AND ca = ?`, ca).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting revocations of %s: %w", ca, err)
	}
	return n, nil
}

// CountPending returns how many certificates and CRLs are still pending.
func (d *DB) CountPending(ctx context.Context) (int, error) {
	if err := d.closing(); err != nil {
		return 0, err
	}
	var n int
	if err := d.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM certificates WHERE status = 'pending')
		+ (SELECT count(*) FROM crls WHERE status = 'pending')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pending records: %w", err)
	}
	return n, nil
}

func scanCRL(rows *sql.Rows) (*record.CRL, error) {
	var c record.CRL
	var this, next, created string
	if err := rows.Scan(&c.CA, &c.Number, &this, &next, &c.TBSHash, &c.Status, &c.DER, &c.Node, &created); err != nil {
		return nil, fmt.Errorf("reading CRL record: %w", err)
	}
	var err1, err2, err3 error
	c.ThisUpdate, err1 = contract.ParseTime(this)
	c.NextUpdate, err2 = contract.ParseTime(next)
	c.CreatedAt, err3 = contract.ParseTime(created)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("CRL record %d of %s: %w", c.Number, c.CA, err)
	}
	return &c, nil
}

// LatestCRL returns ca's issued CRL with the highest number.
func (d *DB) LatestCRL(ctx context.Context, ca string) (*record.CRL, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	for c, err := range rowsOf(ctx, d.db, scanCRL, `SELECT ca, number, this_update, next_update, tbs_hash, status, der, node, created_at
		FROM crls WHERE ca = ? AND status = 'issued' ORDER BY number DESC LIMIT 1`, ca) {
		if err != nil {
			return nil, fmt.Errorf("reading the latest CRL of %s: %w", ca, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("latest CRL of %s: %w", ca, record.ErrNotFound)
}

// LastCRLNumber returns the highest number ever reserved for ca; 0 if none.
func (d *DB) LastCRLNumber(ctx context.Context, ca string) (int64, error) {
	if err := d.closing(); err != nil {
		return 0, err
	}
	var n int64
	if err := d.db.QueryRowContext(ctx, `SELECT coalesce(max(number), 0) FROM crls WHERE ca = ?`, ca).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the last CRL number of %s: %w", ca, err)
	}
	return n, nil
}

// AuditHead returns the newest committed entry's sequence number and hash.
func (d *DB) AuditHead(ctx context.Context) (int64, string, error) {
	if err := d.closing(); err != nil {
		return 0, "", err
	}
	var seq int64
	var hash string
	err := d.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, record.GenesisHash, nil
	case err != nil:
		return 0, "", fmt.Errorf("reading the audit chain head: %w", err)
	}
	return seq, hash, nil
}

func scanCheckpoint(rows *sql.Rows) (record.Checkpoint, error) {
	var cp record.Checkpoint
	var at string
	if err := rows.Scan(&cp.Seq, &cp.Hash, &at, &cp.KeyID, &cp.Signature); err != nil {
		return cp, fmt.Errorf("reading audit checkpoint: %w", err)
	}
	var err error
	if cp.Time, err = contract.ParseTime(at); err != nil {
		return cp, fmt.Errorf("audit checkpoint %d: %w", cp.Seq, err)
	}
	return cp, nil
}

// LatestCheckpoint returns the checkpoint with the highest Seq.
func (d *DB) LatestCheckpoint(ctx context.Context) (*record.Checkpoint, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	for cp, err := range rowsOf(ctx, d.db, scanCheckpoint, `SELECT seq, hash, at, key_id, signature
		FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`) {
		if err != nil {
			return nil, fmt.Errorf("reading the latest audit checkpoint: %w", err)
		}
		return &cp, nil
	}
	return nil, fmt.Errorf("latest audit checkpoint: %w", record.ErrNotFound)
}

// minFreeBytes is the free space below which the database is reported
// not writable: a commit needs room for its WAL frames.
const minFreeBytes = 1 << 20

// Check proves the database is writable: its volume has room, and an empty
// write goes through the writer and its transaction, which takes SQLite's
// write lock. It returns by ctx's deadline even if the writer is stuck;
// the abandoned probe is skipped when its turn comes.
func (d *DB) Check(ctx context.Context) error {
	if free, err := freeBytes(d.dir); err == nil && free < minFreeBytes {
		return fmt.Errorf("database volume is full: %d bytes free", free)
	}
	err := d.writes.SubmitBounded(ctx, false, func(ctx context.Context, d *DB) error {
		_, err := d.stmts.checkWrite.ExecContext(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("database not writable: %w", err)
	}
	return nil
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
