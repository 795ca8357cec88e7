package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
)

// op is one write handed to the writer goroutine.
type op struct {
	ctx  context.Context
	fn   func(ctx context.Context, d *DB) error
	done chan error // buffered: the writer never blocks on an abandoned op
}

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

// submit hands fn to the writer and waits until its group is committed or
// rolled back. Once submitted, the write is waited for even if ctx ends,
// so the caller never misreports a write that became durable.
func (d *DB) submit(ctx context.Context, fn func(context.Context, *DB) error) error {
	o, err := d.enqueue(ctx, fn)
	if err != nil {
		return err
	}
	return d.await(o, nil)
}

// submitBounded is submit for callers that must return by ctx's deadline
// even if the writer is stuck (Check). Only writes whose outcome does not
// matter once abandoned may use it.
func (d *DB) submitBounded(ctx context.Context, fn func(context.Context, *DB) error) error {
	o, err := d.enqueue(ctx, fn)
	if err != nil {
		return err
	}
	return d.await(o, ctx.Done())
}

func (d *DB) enqueue(ctx context.Context, fn func(context.Context, *DB) error) (*op, error) {
	select {
	case <-d.quit:
		return nil, record.ErrClosed
	default:
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case d.ops <- o:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.quit:
		return nil, record.ErrClosed
	}
	if d.queued != nil {
		d.queued()
	}
	return o, nil
}

// await waits for o's answer. If the writer has stopped without taking o
// (an op sent as Close drained the queue), o never ran: ErrClosed. The
// writer answers every op it took before it stops, so checking o.done once
// more after d.done cannot miss an answer.
func (d *DB) await(o *op, abandon <-chan struct{}) error {
	select {
	case err := <-o.done:
		return err
	case <-abandon:
		return o.ctx.Err()
	case <-d.done:
		select {
		case err := <-o.done:
			return err
		default:
			return record.ErrClosed
		}
	}
}

func (d *DB) writeLoop() {
	defer close(d.done)
	for {
		var first *op
		select {
		case first = <-d.ops:
		case <-d.quit:
			// Finish what was submitted before Close, still in groups.
			select {
			case first = <-d.ops:
			default:
				return
			}
		}
		group := []*op{first}
	gather:
		for len(group) < maxGroup {
			select {
			case o := <-d.ops:
				group = append(group, o)
			default:
				break gather
			}
		}
		d.commitGroup(group)
	}
}

// commitGroup runs the group's writes in one transaction, each inside its
// own savepoint, and commits once. The transaction is driven with SQL on
// the writer's dedicated connection (not database/sql's Tx, which would
// re-prepare the statements every time). Writes run under
// context.Background: a caller's deadline must not interrupt a statement
// of a transaction that holds other callers' writes.
func (d *DB) commitGroup(group []*op) {
	results := make([]error, len(group))
	start := time.Now()
	ctx := context.Background()
	st := &d.stmts
	fail := func(err error) {
		for _, o := range group {
			o.done <- err
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
		if err := o.ctx.Err(); err != nil {
			// Given up before its turn: nothing of it is written.
			results[k] = err
			continue
		}
		opSeq, opHash := d.seq, d.hash
		if _, err := st.savepoint.ExecContext(ctx); err != nil {
			results[k] = fmt.Errorf("savepoint: %w", err)
			continue
		}
		results[k] = o.fn(ctx, d)
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
		o.done <- results[k]
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
