package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
	"github.com/pkid/pkid/store/internal/dump"
)

// Import copies s into this database in one transaction, refusing (with
// an error wrapping dump.ErrNotEmpty) a database that holds any record,
// entry, checkpoint, OCSP answer, revoked token, EAB key or ACME account. Rows are copied as
// stored — audit entries verbatim, records in the state they reached — by
// COPY, with the guards on (rows are inserted, never updated), so a source
// that breaks them (a CRL number out of order) fails the copy. It is for
// store/migrate, which runs it from a SQLite store's Export.
func (d *DB) Import(ctx context.Context, s dump.Snapshot) (dump.Counts, error) {
	var n dump.Counts
	if err := d.closing(); err != nil {
		return n, err
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return n, fmt.Errorf("importing into %s: %w", d.where, classify(err))
	}
	defer tx.Rollback(context.Background())
	// The chain-head lock keeps every node's writer out until the copy
	// commits; under it, the database is checked to be empty.
	var headSeq int64
	if err := tx.QueryRow(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq); err != nil {
		return n, fmt.Errorf("importing into %s: %w", d.where, classify(err))
	}
	var used bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM certificates) OR EXISTS (SELECT 1 FROM crls)
		OR EXISTS (SELECT 1 FROM audit) OR EXISTS (SELECT 1 FROM audit_checkpoints)
		OR EXISTS (SELECT 1 FROM ocsp_responses) OR EXISTS (SELECT 1 FROM revoked_tokens)
		OR EXISTS (SELECT 1 FROM acme_eab_keys) OR EXISTS (SELECT 1 FROM acme_accounts)`).Scan(&used); err != nil {
		return n, fmt.Errorf("importing into %s: %w", d.where, classify(err))
	}
	if used || headSeq != 0 {
		return n, fmt.Errorf("importing into %s: %w", d.where, dump.ErrNotEmpty)
	}
	if s.LegacyThrough != 0 {
		// Allowed once, while the log is empty (the schema's guard).
		if _, err := tx.Exec(ctx, `UPDATE audit_legacy SET through_seq = $1`, s.LegacyThrough); err != nil {
			return n, fmt.Errorf("importing the legacy boundary: %w", classify(err))
		}
		n.LegacyThrough = s.LegacyThrough
	}

	copyIn := func(table string, columns []string, rows iter.Seq2[[]any, error]) (int64, error) {
		next, stop := iter.Pull2(rows)
		defer stop()
		var srcErr error
		count, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, &pulled{next: next, err: &srcErr})
		if srcErr != nil {
			return count, fmt.Errorf("reading the source's %s: %w", table, srcErr)
		}
		if err != nil {
			return count, fmt.Errorf("copying %s: %w", table, classify(err))
		}
		return count, nil
	}
	var headHash string
	steps := []struct {
		table   string
		columns []string
		rows    iter.Seq2[[]any, error]
		into    *int64
	}{
		{"certificates", []string{"id", "serial", "profile_id", "profile", "ca", "issuer_hash", "identity", "request_id",
			"certificate_request_id", "application_id", "common_name", "alt_names", "key_usages", "ext_key_usages",
			"signature_algorithm", "key_algorithm", "not_before", "not_after", "tbs_hash", "csr", "csr_hash", "renews",
			"status", "der", "revoked_at", "revocation_reason", "node", "created_at", "updated_at"},
			mapSeq(s.Certificates, certificateArgs), &n.Certificates},
		{"crls", []string{"ca", "number", "this_update", "next_update", "tbs_hash", "status", "der", "node", "created_at", "updated_at"},
			mapSeq(s.CRLs, func(c dump.CRL) []any {
				return []any{c.CA, c.Number, contract.TimeText(c.ThisUpdate), contract.TimeText(c.NextUpdate), c.TBSHash, c.Status, c.DER,
					c.Node, contract.TimeText(c.CreatedAt), contract.TimeText(c.UpdatedAt)}
			}), &n.CRLs},
		{"audit", []string{"seq", "at", "event", "prev_hash", "hash"},
			mapSeq(s.Entries, func(e dump.Entry) []any {
				n.HeadSeq, headHash = e.Seq, e.Hash
				return []any{e.Seq, e.At, e.Body, e.PrevHash, e.Hash}
			}), &n.Entries},
		{"audit_checkpoints", []string{"seq", "hash", "at", "key_id", "signature"},
			mapSeq(s.Checkpoints, func(cp record.Checkpoint) []any {
				return []any{cp.Seq, cp.Hash, contract.TimeText(cp.Time), cp.KeyID, cp.Signature}
			}), &n.Checkpoints},
		{"ocsp_responses", []string{"ca", "serial", "status", "this_update", "next_update", "der"},
			mapSeq(s.OCSP, func(r record.OCSPResponse) []any {
				return []any{r.CA, r.Serial, r.Status, contract.TimeText(r.ThisUpdate), contract.TimeText(r.NextUpdate), r.DER}
			}), &n.OCSPResponses},
		{"revoked_tokens", []string{"jti", "expires_at"},
			mapSeq(s.Tokens, func(tk dump.Token) []any { return []any{tk.JTI, contract.TimeText(tk.ExpiresAt)} }), &n.Tokens},
	}
	for _, st := range steps {
		if *st.into, err = copyIn(st.table, st.columns, st.rows); err != nil {
			return n, fmt.Errorf("importing into %s: %w", d.where, err)
		}
	}
	for _, r := range s.ACME {
		count, err := copyIn(r.Table, r.Columns, r.Rows)
		if err != nil {
			return n, fmt.Errorf("importing into %s: %w", d.where, err)
		}
		n.ACMERows += count
	}
	n.HeadHash = headHash
	if n.HeadSeq != 0 {
		// The head's guard checks that this entry exists with this hash.
		if _, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, n.HeadSeq, headHash); err != nil {
			return n, fmt.Errorf("importing into %s: moving the chain head: %w", d.where, classify(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return n, fmt.Errorf("importing into %s: committing: %w", d.where, classify(err))
	}
	return n, nil
}

// mapSeq turns a source sequence into COPY rows.
func mapSeq[T any](src iter.Seq2[T, error], row func(T) []any) iter.Seq2[[]any, error] {
	return func(yield func([]any, error) bool) {
		if src == nil {
			return
		}
		for v, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(row(v), nil) {
				return
			}
		}
	}
}

// pulled is a pgx.CopyFromSource over a pulled sequence; a source error
// stops the copy and is kept for the caller.
type pulled struct {
	next func() ([]any, error, bool)
	row  []any
	err  *error
}

func (p *pulled) Next() bool {
	row, err, ok := p.next()
	if !ok {
		return false
	}
	if err != nil {
		*p.err = err
		return false
	}
	p.row = row
	return true
}

func (p *pulled) Values() ([]any, error) { return p.row, nil }

func (p *pulled) Err() error {
	if *p.err != nil {
		return errors.New("the source failed")
	}
	return nil
}
