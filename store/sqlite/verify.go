package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

// VerifyAudit checks the audit log and its agreement with the records
// (see store.Store). It reads one snapshot — a read transaction, which in
// WAL mode neither blocks nor is blocked by the writer — so records and
// entries committed during the check do not look like problems. It streams:
// one pass over the log merged with the checkpoints, one over the
// certificates, one over the CRLs.
func (d *DB) VerifyAudit(ctx context.Context, o store.VerifyOptions) (*store.AuditReport, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("verifying audit log: %w", err)
	}
	defer tx.Rollback()
	// The first read fixes the snapshot every later query sees.
	var legacy int64
	if err := tx.QueryRowContext(ctx, `SELECT through_seq FROM audit_legacy`).Scan(&legacy); err != nil {
		return nil, fmt.Errorf("verifying audit log: reading the legacy boundary: %w", err)
	}
	log := contract.Log{
		LegacyThrough: legacy,
		Entries: rowsOf(ctx, tx, func(rows *sql.Rows) (contract.Entry, error) {
			var e contract.Entry
			return e, rows.Scan(&e.Seq, &e.PrevHash, &e.Hash, &e.Body)
		}, `SELECT seq, prev_hash, hash, event FROM audit ORDER BY seq`),
		Checkpoints: rowsOf(ctx, tx, scanCheckpoint, `SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq`),
		Certificates: rowsOf(ctx, tx, func(rows *sql.Rows) (contract.CertificateEvidence, error) {
			var c contract.CertificateEvidence
			return c, rows.Scan(&c.ID, &c.Serial, &c.Status, &c.DER)
		}, `SELECT id, serial, status, der FROM certificates`),
		CRLs: rowsOf(ctx, tx, func(rows *sql.Rows) (contract.CRLEvidence, error) {
			var c contract.CRLEvidence
			return c, rows.Scan(&c.CA, &c.Number, &c.Status, &c.DER)
		}, `SELECT ca, number, status, der FROM crls`),
	}
	return contract.Verify(ctx, o, log)
}
