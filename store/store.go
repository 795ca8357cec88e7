package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/pkid/pkid/record"
)

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

// genesisHash is the "previous hash" of the first audit entry.
const genesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = errors.New("store is closed")

// DB is the SQLite store. It satisfies the issuer's Store interface.
type DB struct {
	db     *sql.DB
	dir    string // the database's directory, for free-space checks
	writer *sql.Conn
	ops    chan *op
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once

	// Owned by the writer goroutine.
	seq   int64
	hash  string
	stmts statements

	statsMu  sync.Mutex
	stats    Stats
	onCommit func(d time.Duration, size int)
}

// Options tune a DB.
type Options struct {
	// BusyTimeout is how long a write waits for a lock held by another
	// process before failing; 0 means 5s.
	BusyTimeout time.Duration
	// OnCommit, if set, is called after each group commit with its
	// duration (fsync included) and the number of writes in it.
	OnCommit func(d time.Duration, size int)
}

// Stats describes the group commits so far.
type Stats struct {
	Commits int64 // transactions committed
	Writes  int64 // writes in them
}

type op struct {
	ctx  context.Context
	fn   func(ctx context.Context, c *sql.Conn, d *DB) error
	done chan error
}

// Open opens (creating if needed) the database at path and starts the
// writer.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = 5 * time.Second
	}
	q := url.Values{}
	for _, p := range []string{fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()), "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	sqlDB, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	if err := migrate(ctx, sqlDB); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("preparing database %s: %w", path, err)
	}
	w, err := sqlDB.Conn(ctx)
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("opening writer connection: %w", err)
	}
	d := &DB{db: sqlDB, dir: filepath.Dir(path), writer: w, ops: make(chan *op, maxGroup), quit: make(chan struct{}), done: make(chan struct{}), onCommit: opts.OnCommit}
	err = d.loadChainHead(ctx)
	if err == nil {
		err = d.stmts.prepare(ctx, w)
	}
	if err != nil {
		d.stmts.close()
		w.Close()
		sqlDB.Close()
		return nil, err
	}
	go d.writeLoop()
	return d, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS certificates (
	id                  TEXT PRIMARY KEY,
	serial              TEXT NOT NULL UNIQUE,
	profile             TEXT NOT NULL,
	ca                  TEXT NOT NULL,
	identity            TEXT NOT NULL,
	request_id          TEXT NOT NULL,
	common_name         TEXT NOT NULL,
	alt_names           TEXT NOT NULL,
	key_usages          TEXT NOT NULL,
	ext_key_usages      TEXT NOT NULL,
	signature_algorithm TEXT NOT NULL,
	key_algorithm       TEXT NOT NULL,
	not_before          TEXT NOT NULL,
	not_after           TEXT NOT NULL,
	status              TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'aborted')),
	der                 BLOB,
	created_at          TEXT NOT NULL,
	updated_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_status ON certificates(status);
CREATE TABLE IF NOT EXISTS audit (
	seq       INTEGER PRIMARY KEY,
	at        TEXT NOT NULL,
	event     TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
	BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
	BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
`

// statements are prepared once on the writer connection; each write binds
// them into its transaction.
type statements struct {
	reserve, transition, audit *sql.Stmt
	begin, commit, rollback    *sql.Stmt
	savepoint, release, undo   *sql.Stmt
}

func (st *statements) prepare(ctx context.Context, c *sql.Conn) error {
	var err error
	for _, p := range []struct {
		into **sql.Stmt
		sql  string
	}{
		{&st.reserve, `INSERT INTO certificates
			(id, serial, profile, ca, identity, request_id, common_name, alt_names, key_usages, ext_key_usages,
			 signature_algorithm, key_algorithm, not_before, not_after, status, der, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?)`},
		{&st.transition, `UPDATE certificates SET status = ?, der = ?, updated_at = ? WHERE id = ? AND status = 'pending'`},
		{&st.audit, `INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`},
		{&st.begin, `BEGIN IMMEDIATE`}, {&st.commit, `COMMIT`}, {&st.rollback, `ROLLBACK`},
		{&st.savepoint, `SAVEPOINT w`}, {&st.release, `RELEASE w`}, {&st.undo, `ROLLBACK TO w`},
	} {
		if *p.into, err = c.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("preparing statement: %w", err)
		}
	}
	return nil
}

func (st *statements) close() {
	for _, s := range []*sql.Stmt{st.reserve, st.transition, st.audit, st.begin, st.commit, st.rollback, st.savepoint, st.release, st.undo} {
		if s != nil {
			s.Close()
		}
	}
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("creating schema: %w", err)
	}
	return nil
}

func (d *DB) loadChainHead(ctx context.Context) error {
	err := d.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&d.seq, &d.hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		d.seq, d.hash = 0, genesisHash
		return nil
	case err != nil:
		return fmt.Errorf("reading audit chain head: %w", err)
	}
	return nil
}

// Close stops the writer after the writes already submitted and closes the
// database.
func (d *DB) Close() error {
	d.once.Do(func() { close(d.quit) })
	<-d.done
	d.stmts.close()
	werr := d.writer.Close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	return werr
}

// Stats returns the group-commit counters.
func (d *DB) Stats() Stats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.stats
}

// submit hands fn to the writer and waits until its group is committed.
// Once submitted, the write is waited for even if ctx ends, so the caller
// never misreports a write that became durable.
func (d *DB) submit(ctx context.Context, fn func(context.Context, *sql.Conn, *DB) error) error {
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case <-d.quit:
		return ErrClosed
	default:
	}
	select {
	case d.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-d.quit:
		return ErrClosed
	}
	return <-o.done
}

func (d *DB) writeLoop() {
	defer close(d.done)
	for {
		var first *op
		select {
		case first = <-d.ops:
		case <-d.quit:
			// Finish what was submitted before Close.
			for {
				select {
				case o := <-d.ops:
					d.commitGroup([]*op{o})
				default:
					return
				}
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
// re-prepare the statements every time).
func (d *DB) commitGroup(group []*op) {
	results := make([]error, len(group))
	seq, hash := d.seq, d.hash
	start := time.Now()
	ctx := context.Background()
	c, st := d.writer, &d.stmts
	if _, err := st.begin.ExecContext(ctx); err != nil {
		for _, o := range group {
			o.done <- fmt.Errorf("beginning transaction: %w", err)
		}
		return
	}
	for k, o := range group {
		if err := o.ctx.Err(); err != nil {
			results[k] = err
			continue
		}
		opSeq, opHash := d.seq, d.hash
		if _, err := st.savepoint.ExecContext(ctx); err != nil {
			results[k] = fmt.Errorf("savepoint: %w", err)
			continue
		}
		results[k] = o.fn(ctx, c, d)
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
	}
	for k, o := range group {
		o.done <- results[k]
	}
}

func timeText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}

// Reserve durably inserts rec with status pending.
func (d *DB) Reserve(ctx context.Context, rec *record.Record) error {
	return d.submit(ctx, func(ctx context.Context, _ *sql.Conn, d *DB) error {
		now := timeText(rec.CreatedAt)
		_, err := d.stmts.reserve.ExecContext(ctx,
			rec.ID, rec.Serial, rec.Profile, rec.CA, rec.Identity, rec.RequestID, rec.CommonName,
			jsonText(nonNil(rec.AltNames)), jsonText(nonNil(rec.KeyUsages)), jsonText(nonNil(rec.ExtKeyUsages)),
			rec.SignatureAlgorithm, rec.KeyAlgorithm, timeText(rec.NotBefore), timeText(rec.NotAfter), now, now)
		if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: certificates.serial") {
			return fmt.Errorf("reserving serial %s: %w", rec.Serial, record.ErrDuplicateSerial)
		}
		if err != nil {
			return fmt.Errorf("reserving serial %s: %w", rec.Serial, err)
		}
		return nil
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Finalize marks a pending record issued with its DER and appends ev, in
// one transaction.
func (d *DB) Finalize(ctx context.Context, id string, der []byte, ev record.AuditEvent) error {
	return d.transition(ctx, id, record.StatusIssued, der, ev)
}

// Abort marks a pending record aborted (keeping der, if any, for
// forensics) and appends ev, in one transaction.
func (d *DB) Abort(ctx context.Context, id string, der []byte, ev record.AuditEvent) error {
	return d.transition(ctx, id, record.StatusAborted, der, ev)
}

func (d *DB) transition(ctx context.Context, id, status string, der []byte, ev record.AuditEvent) error {
	return d.submit(ctx, func(ctx context.Context, _ *sql.Conn, d *DB) error {
		res, err := d.stmts.transition.ExecContext(ctx, status, der, timeText(ev.Time), id)
		if err != nil {
			return fmt.Errorf("marking %s %s: %w", id, status, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("marking %s %s: no pending record (rows=%d, err=%v)", id, status, n, err)
		}
		return d.appendAudit(ctx, ev)
	})
}

// Refuse appends the audit event of a refused request.
func (d *DB) Refuse(ctx context.Context, ev record.AuditEvent) error {
	return d.submit(ctx, func(ctx context.Context, _ *sql.Conn, d *DB) error {
		return d.appendAudit(ctx, ev)
	})
}

// appendAudit runs on the writer goroutine only, inside its transaction.
func (d *DB) appendAudit(ctx context.Context, ev record.AuditEvent) error {
	body := jsonText(ev)
	seq := d.seq + 1
	h := chainHash(d.hash, seq, body)
	if _, err := d.stmts.audit.ExecContext(ctx, seq, timeText(ev.Time), body, d.hash, h); err != nil {
		return fmt.Errorf("appending audit entry %d: %w", seq, err)
	}
	d.seq, d.hash = seq, h
	return nil
}

// chainHash commits an entry to its position, its content and the previous
// entry's hash.
func chainHash(prev string, seq int64, body string) string {
	sum := sha256.Sum256([]byte(prev + "\n" + strconv.FormatInt(seq, 10) + "\n" + body))
	return hex.EncodeToString(sum[:])
}

// Recovered describes a pending record resolved at start-up.
type Recovered struct {
	ID, Serial, Profile string
}

// AbortPending resolves every pending record, marking it aborted with an
// audit entry that gives reason. It is meant for start-up, before any new
// request can reserve a serial: a pending record then belongs to a run that
// stopped between reservation and finalization, so its certificate — signed
// or not — was never returned, and its private key is gone with that run.
func (d *DB) AbortPending(ctx context.Context, reason string, at time.Time) ([]Recovered, error) {
	var out []Recovered
	err := d.submit(ctx, func(ctx context.Context, c *sql.Conn, d *DB) error {
		rows, err := c.QueryContext(ctx, `SELECT id, serial, profile, identity, request_id FROM certificates
			WHERE status = 'pending' ORDER BY created_at`)
		if err != nil {
			return fmt.Errorf("finding pending records: %w", err)
		}
		var evs []record.AuditEvent
		for rows.Next() {
			var r Recovered
			var identity, reqID string
			if err := rows.Scan(&r.ID, &r.Serial, &r.Profile, &identity, &reqID); err != nil {
				rows.Close()
				return fmt.Errorf("reading pending record: %w", err)
			}
			out = append(out, r)
			evs = append(evs, record.AuditEvent{Time: at, Action: "recovered", RequestID: reqID, Identity: identity,
				Profile: r.Profile, Outcome: record.StatusAborted, Reason: reason, CertificateID: r.ID, Serial: r.Serial})
		}
		rows.Close()
		for k, r := range out {
			if _, err := c.ExecContext(ctx, `UPDATE certificates SET status = 'aborted', updated_at = ? WHERE id = ? AND status = 'pending'`,
				timeText(at), r.ID); err != nil {
				return fmt.Errorf("resolving pending record %s: %w", r.ID, err)
			}
			if err := d.appendAudit(ctx, evs[k]); err != nil {
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
