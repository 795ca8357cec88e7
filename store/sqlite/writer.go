package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
	"github.com/pkid/pkid/store/internal/writequeue"
)

// statements are prepared once on the writer connection; each write binds
// them into its transaction.
type statements struct {
	reserve, certState, transition, revoke, audit                 *sql.Stmt
	lastCRL, reserveCRL, crlState, crlTransition                  *sql.Stmt
	entryHash, lastCheckpoint, addCheckpoint, head                *sql.Stmt
	begin, commit, rollback, savepoint, release, undo, checkWrite *sql.Stmt
}

func (st *statements) list() []**sql.Stmt {
	return []**sql.Stmt{&st.reserve, &st.certState, &st.transition, &st.revoke, &st.audit,
		&st.lastCRL, &st.reserveCRL, &st.crlState, &st.crlTransition,
		&st.entryHash, &st.lastCheckpoint, &st.addCheckpoint, &st.head,
		&st.begin, &st.commit, &st.rollback, &st.savepoint, &st.release, &st.undo, &st.checkWrite}
}

func (st *statements) prepare(ctx context.Context, c *sql.Conn) error {
	texts := []string{
		`INSERT INTO certificates (id, serial, profile_id, profile, ca, issuer_hash, identity, request_id,
			certificate_request_id, application_id, common_name, alt_names, key_usages, ext_key_usages,
			signature_algorithm, key_algorithm, not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der,
			revoked_at, revocation_reason, node, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, '', '', ?, ?, ?)`,
		`SELECT status, serial, ca FROM certificates WHERE id = ?`,
		`UPDATE certificates SET status = ?, der = ?, updated_at = ? WHERE id = ? AND status = 'pending'`,
		`UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?, updated_at = ?
			WHERE id = ? AND status = 'issued'`,
		`INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`,
		`SELECT coalesce(max(number), 0) FROM crls WHERE ca = ?`,
		`INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, node, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, 'pending', NULL, ?, ?, ?)`,
		`SELECT status FROM crls WHERE ca = ? AND number = ?`,
		`UPDATE crls SET status = ?, der = ?, updated_at = ? WHERE ca = ? AND number = ? AND status = 'pending'`,
		`SELECT hash FROM audit WHERE seq = ?`,
		`SELECT coalesce(max(seq), 0) FROM audit_checkpoints`,
		`INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?)`,
		`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`,
		`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`, `SAVEPOINT w`, `RELEASE w`, `ROLLBACK TO w`,
		// Takes the write lock and touches nothing: Check's proof of writability.
		`UPDATE certificates SET status = status WHERE 0`,
	}
	into := st.list()
	if len(into) != len(texts) {
		return fmt.Errorf("internal error: %d statements for %d texts", len(into), len(texts))
	}
	for k, text := range texts {
		var err error
		if *into[k], err = c.PrepareContext(ctx, text); err != nil {
			return fmt.Errorf("preparing statement %q: %w", text, err)
		}
	}
	return nil
}

func (st *statements) close() {
	for _, s := range st.list() {
		if *s != nil {
			(*s).Close()
		}
	}
}

// commitGroup runs the group's writes in one transaction, each inside its
// own savepoint, and commits once. The transaction is driven with SQL on
// the writer's dedicated connection (not database/sql's Tx, which would
// re-prepare the statements every time). Writes run under
// context.Background: a caller's deadline must not interrupt a statement
// of a transaction that holds other callers' writes.
func (d *DB) commitGroup(group []*writequeue.Op[*DB]) {
	results := make([]error, len(group))
	start := time.Now()
	ctx := context.Background()
	st := &d.stmts
	fail := func(err error) {
		for _, o := range group {
			o.Answer(err)
		}
	}
	if _, err := st.begin.ExecContext(ctx); err != nil {
		fail(fmt.Errorf("beginning transaction: %w", err))
		return
	}
	// The chain head is read under the write lock, not remembered: another
	// process (`pkid revoke`) may have appended since the last group.
	if err := d.readHead(ctx); err != nil {
		st.rollback.ExecContext(ctx)
		fail(err)
		return
	}
	seq, hash := d.seq, d.hash
	for k, o := range group {
		if err := o.Ctx.Err(); err != nil {
			// Given up before its turn: nothing of it is written.
			results[k] = err
			continue
		}
		opSeq, opHash := d.seq, d.hash
		if _, err := st.savepoint.ExecContext(ctx); err != nil {
			results[k] = fmt.Errorf("savepoint: %w", err)
			continue
		}
		results[k] = o.Fn(ctx, d)
		if results[k] != nil {
			d.seq, d.hash = opSeq, opHash
			if _, err := st.undo.ExecContext(ctx); err != nil {
				results[k] = errors.Join(results[k], fmt.Errorf("rollback to savepoint: %w", err))
			}
		}
		if _, err := st.release.ExecContext(ctx); err != nil {
			results[k] = errors.Join(results[k], fmt.Errorf("release savepoint: %w", err))
		}
	}
	if _, err := st.commit.ExecContext(ctx); err != nil {
		st.rollback.ExecContext(ctx)
		d.seq, d.hash = seq, hash
		for k := range results {
			if results[k] == nil {
				results[k] = fmt.Errorf("committing: %w", err)
			}
		}
	} else {
		d.statsMu.Lock()
		d.stats.Commits++
		d.stats.Writes += int64(len(group))
		d.statsMu.Unlock()
		if d.onCommit != nil {
			d.onCommit(time.Since(start), len(group))
		}
		if d.onAudit != nil && d.seq != seq {
			d.onAudit(d.seq)
		}
	}
	for k, o := range group {
		o.Answer(results[k])
	}
}

// readHead loads the newest audit entry's sequence number and hash.
func (d *DB) readHead(ctx context.Context) error {
	err := d.stmts.head.QueryRowContext(ctx).Scan(&d.seq, &d.hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		d.seq, d.hash = 0, record.GenesisHash
	case err != nil:
		return fmt.Errorf("reading the audit chain head: %w", err)
	}
	return nil
}

// appendAudit runs on the writer goroutine only, inside its transaction.
func (d *DB) appendAudit(ctx context.Context, ev record.AuditEvent) error {
	body := record.EncodeEvent(ev)
	seq := d.seq + 1
	h := record.ChainHash(d.hash, seq, body)
	if _, err := d.stmts.audit.ExecContext(ctx, seq, contract.TimeText(ev.Time), body, d.hash, h); err != nil {
		return fmt.Errorf("appending audit entry %d: %w", seq, err)
	}
	d.seq, d.hash = seq, h
	return nil
}
