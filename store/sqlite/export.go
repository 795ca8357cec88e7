package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/acmesql"
	"github.com/pkid/pkid/store/internal/contract"
	"github.com/pkid/pkid/store/internal/dump"
)

// Export calls fn with the whole content of the database, read from one
// snapshot (a read transaction: a writer that is still running neither
// blocks it nor shows in it). It is for store/migrate, which copies a
// SQLite store into PostgreSQL; the sequences are valid only during fn.
func (d *DB) Export(ctx context.Context, fn func(dump.Snapshot) error) error {
	if err := d.closing(); err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("exporting: %w", err)
	}
	defer tx.Rollback()
	var legacy int64
	if err := tx.QueryRowContext(ctx, `SELECT through_seq FROM audit_legacy`).Scan(&legacy); err != nil {
		return fmt.Errorf("exporting: reading the legacy boundary: %w", err)
	}
	s := dump.Snapshot{
		LegacyThrough: legacy,
		Certificates:  rowsOf(ctx, tx, scanCertificate, `SELECT `+certColumns+` FROM certificates ORDER BY created_at, id`),
		CRLs: rowsOf(ctx, tx, func(rows *sql.Rows) (dump.CRL, error) {
			var c dump.CRL
			var this, next, created, updated string
			if err := rows.Scan(&c.CA, &c.Number, &this, &next, &c.TBSHash, &c.Status, &c.DER, &c.Node, &created, &updated); err != nil {
				return c, err
			}
			var errs [4]error
			c.ThisUpdate, errs[0] = contract.ParseTime(this)
			c.NextUpdate, errs[1] = contract.ParseTime(next)
			c.CreatedAt, errs[2] = contract.ParseTime(created)
			c.UpdatedAt, errs[3] = contract.ParseTime(updated)
			for _, err := range errs {
				if err != nil {
					return c, fmt.Errorf("CRL record %d of %s: %w", c.Number, c.CA, err)
				}
			}
			return c, nil
		}, `SELECT ca, number, this_update, next_update, tbs_hash, status, der, node, created_at, updated_at
			FROM crls ORDER BY ca, number`),
		Entries: rowsOf(ctx, tx, func(rows *sql.Rows) (dump.Entry, error) {
			var e dump.Entry
			return e, rows.Scan(&e.Seq, &e.At, &e.Body, &e.PrevHash, &e.Hash)
		}, `SELECT seq, at, event, prev_hash, hash FROM audit ORDER BY seq`),
		Checkpoints: rowsOf(ctx, tx, scanCheckpoint, `SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq`),
		OCSP: rowsOf(ctx, tx, func(rows *sql.Rows) (r record.OCSPResponse, err error) {
			var this, next string
			if err := rows.Scan(&r.CA, &r.Serial, &r.Status, &this, &next, &r.DER); err != nil {
				return r, err
			}
			if r.ThisUpdate, err = contract.ParseTime(this); err == nil {
				r.NextUpdate, err = contract.ParseTime(next)
			}
			return r, err
		}, `SELECT ca, serial, status, this_update, next_update, der FROM ocsp_responses ORDER BY ca, serial`),
		Tokens: rowsOf(ctx, tx, func(rows *sql.Rows) (tk dump.Token, err error) {
			var exp string
			if err := rows.Scan(&tk.JTI, &exp); err != nil {
				return tk, err
			}
			tk.ExpiresAt, err = contract.ParseTime(exp)
			return tk, err
		}, `SELECT jti, expires_at FROM revoked_tokens ORDER BY jti`),
	}
	for _, t := range acmesql.Tables {
		columns := t.ColumnNames()
		s.ACME = append(s.ACME, dump.Rows{Table: t.Name, Columns: columns,
			Rows: rowsOf(ctx, tx, func(rows *sql.Rows) ([]any, error) {
				values := make([]any, len(columns))
				into := make([]any, len(columns))
				for k := range values {
					into[k] = &values[k]
				}
				return values, rows.Scan(into...)
			}, `SELECT `+t.Columns+` FROM `+t.Name+` ORDER BY `+t.OrderBy)})
	}
	return fn(s)
}
