package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
	"github.com/pkid/pkid/store/internal/writequeue"
)

// group is one transaction of the writer: its connection and, once
// locked, the chain head as the transaction sees it.
type group struct {
	conn   *pgx.Conn
	locked bool
	seq    int64
	hash   string
	// needSavepoint: the running write has not sent a statement yet, so
	// its savepoint goes out with the first one (one round trip, not two);
	// tookSavepoint: it did, so a failure rolls back to it.
	needSavepoint, tookSavepoint bool
}

// commitGroup runs the group's writes in one transaction on a connection
// of its own, each inside a savepoint, and commits once. The statements
// run under the group's own deadline (Options.WriteTimeout), not a
// caller's: one caller's deadline must not interrupt a transaction that
// holds other callers' writes, and no group may wait without bound (for a
// lock another node holds, or a server that stopped answering).
//
// Whatever happens, the writer goes on to the next group: a broken
// connection is dropped by the pool and the next group dials a new one.
func (d *DB) commitGroup(ops []*writequeue.Op[*group]) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d.writeTimeout)
	defer cancel()
	results := make([]error, len(ops))
	fail := func(err error) {
		for k, o := range ops {
			if results[k] == nil {
				o.Answer(err)
			} else {
				o.Answer(results[k])
			}
		}
	}
	// Writes that do not touch the chain run first, so that the chain-head
	// lock — which serializes the groups of every node — is held only for
	// the writes that need it and the commit.
	var order []int
	for _, chain := range []bool{false, true} {
		for k, o := range ops {
			if o.Chain == chain {
				order = append(order, k)
			}
		}
	}
	// A pooled connection may have died with a server that restarted since
	// it was last used; nothing of the group has been sent when begin
	// fails, so it is tried once more on a new connection.
	var g *group
	var xid string
	for attempt := 0; ; attempt++ {
		pc, err := d.pool.Acquire(ctx)
		if err != nil {
			fail(fmt.Errorf("writing to %s: %w", d.where, classify(err)))
			return
		}
		// Release gives a connection left inside a transaction (a group
		// that stopped half-way) to no one: the pool closes it instead.
		defer pc.Release()
		g = &group{conn: pc.Conn()}
		if xid, err = g.begin(ctx); err == nil {
			break
		}
		if attempt == 1 || !unreachable(err) || ctx.Err() != nil {
			fail(fmt.Errorf("beginning a transaction on %s: %w", d.where, classify(err)))
			return
		}
		pc.Conn().Close(ctx) // so that the pool does not lend it again
	}
	var seq0 int64
	for _, k := range order {
		o := ops[k]
		if err := o.Ctx.Err(); err != nil {
			// Given up before its turn: nothing of it is written.
			results[k] = err
			continue
		}
		if o.Chain && !g.locked {
			if err := g.lockHead(ctx); err != nil {
				fail(fmt.Errorf("locking the audit chain head on %s: %w", d.where, classify(err)))
				return
			}
			seq0 = g.seq
		}
		g.needSavepoint, g.tookSavepoint = true, false
		opSeq, opHash := g.seq, g.hash
		err := o.Fn(ctx, g)
		if err == nil {
			// Savepoints are not released: they nest, at most maxGroup
			// deep, and each release would cost a round trip.
			continue
		}
		results[k] = classify(err)
		g.seq, g.hash = opSeq, opHash
		switch {
		case g.tookSavepoint:
			// The savepoint keeps the others' writes.
			if _, rerr := g.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT w`); rerr != nil {
				fail(fmt.Errorf("rolling back one write on %s: %w", d.where, classify(errors.Join(err, rerr))))
				return
			}
		case g.conn.IsClosed() || g.conn.PgConn().TxStatus() != 'T':
			// The savepoint itself failed: the transaction is gone.
			fail(fmt.Errorf("writing to %s: %w", d.where, classify(err)))
			return
		}
		// Otherwise the write refused before it sent anything.
	}
	var moved bool
	if g.locked && g.seq != seq0 {
		moved = true
	}
	if err := d.commit(ctx, g, xid, moved); err != nil {
		fail(err)
		return
	}
	d.statsMu.Lock()
	d.stats.Commits++
	d.stats.Writes += int64(len(ops))
	d.statsMu.Unlock()
	if d.onCommit != nil {
		d.onCommit(time.Since(start), len(ops))
	}
	if d.onAudit != nil && moved {
		d.onAudit(g.seq)
	}
	for k, o := range ops {
		o.Answer(results[k])
	}
}

// begin opens the transaction and takes its transaction id — which a
// standby cannot give (Check's proof that the server accepts writes), and
// what commit asks about when the answer to COMMIT is lost — in one round
// trip.
func (g *group) begin(ctx context.Context) (xid string, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_current_xact_id()::text`).QueryRow(func(r pgx.Row) error { return r.Scan(&xid) })
	return xid, g.conn.SendBatch(ctx, b).Close()
}

// lockHead locks the chain head and reads it under the lock: another node
// may have appended since this one last did.
func (g *group) lockHead(ctx context.Context) error {
	err := g.conn.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&g.seq, &g.hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("the audit chain head is missing")
	}
	if err == nil {
		g.locked = true
	}
	return err
}

// commit commits the group's transaction. If the server's answer is lost,
// the transaction may or may not have committed; commit then asks, on
// another connection, until the group's deadline.
func (d *DB) commit(ctx context.Context, g *group, xid string, moveHead bool) error {
	var err error
	if moveHead {
		// The head moves and the transaction commits in one round trip.
		b := &pgx.Batch{}
		b.Queue(`UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, g.seq, g.hash)
		b.Queue(`COMMIT`)
		err = g.conn.SendBatch(ctx, b).Close()
	} else {
		_, err = g.conn.Exec(ctx, `COMMIT`)
	}
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) || pgconn.SafeToRetry(err) {
		// The server answered (it rolled back), or nothing was sent.
		return fmt.Errorf("committing on %s: %w", d.where, classify(err))
	}
	for {
		status, qerr := d.txStatus(ctx, xid)
		switch {
		case qerr == nil && status == "committed":
			return nil
		case qerr == nil && status != "in progress":
			return fmt.Errorf("committing on %s (the transaction was rolled back): %w", d.where, classify(err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("committing on %s: the answer was lost and the server could not be asked whether it "+
				"committed, so the writes may be durable: %w", d.where, classify(errors.Join(err, ctx.Err())))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *DB) txStatus(ctx context.Context, xid string) (string, error) {
	var status *string
	if err := d.pool.QueryRow(ctx, `SELECT txid_status($1::bigint)`, xid).Scan(&status); err != nil {
		return "", err
	}
	if status == nil {
		// Too old to know (wrapped around): not this group's case.
		return "aborted", nil
	}
	return *status, nil
}

// batch sends stmts in one round trip, after the running write's
// savepoint if it has not been taken yet, and returns their results.
func (g *group) batch(ctx context.Context, stmts ...stmt) pgx.BatchResults {
	b := &pgx.Batch{}
	if g.needSavepoint {
		b.Queue(`SAVEPOINT w`)
	}
	for _, st := range stmts {
		b.Queue(st.sql, st.args...)
	}
	br := g.conn.SendBatch(ctx, b)
	if g.needSavepoint {
		g.needSavepoint = false
		if _, err := br.Exec(); err != nil {
			return failedBatch{br, err}
		}
		g.tookSavepoint = true
	}
	return br
}

// failedBatch answers every result with the savepoint's error.
type failedBatch struct {
	pgx.BatchResults
	err error
}

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return errRow{f.err} }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type stmt struct {
	sql  string
	args []any
}

// exec runs one statement of the running write.
func (g *group) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br := g.batch(ctx, stmt{sql, args})
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// queryRow runs one query of the running write and scans its one row.
func (g *group) queryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	br := g.batch(ctx, stmt{sql, args})
	err := br.QueryRow().Scan(dest...)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// query runs a query of the running write whose rows the caller reads
// (the savepoint is taken on its own first).
func (g *group) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if g.needSavepoint {
		if _, err := g.exec(ctx, `SELECT 1`); err != nil {
			return nil, err
		}
	}
	return g.conn.Query(ctx, sql, args...)
}

// appendAudit runs stmts (the record's change), then appends ev to the
// chain, in one round trip.
func (g *group) appendAudit(ctx context.Context, ev record.AuditEvent, stmts ...stmt) error {
	if !g.locked {
		return errors.New("internal error: audit append in a group that does not hold the chain head")
	}
	body := record.EncodeEvent(ev)
	seq := g.seq + 1
	h := record.ChainHash(g.hash, seq, body)
	br := g.batch(ctx, append(stmts, stmt{`INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES ($1, $2, $3, $4, $5)`,
		[]any{seq, contract.TimeText(ev.Time), body, g.hash, h}})...)
	var err error
	for range len(stmts) + 1 {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("appending audit entry %d: %w", seq, err)
	}
	g.seq, g.hash = seq, h
	return nil
}
