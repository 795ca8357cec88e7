// Package postgres is pkid's multi-node store (DESIGN §16): store.Store on
// a PostgreSQL database through jackc/pgx (pgxpool), which any number of
// pkid nodes may share.
//
// Writes go through one writer goroutine per DB, as in store/sqlite: it
// takes the writes waiting at that moment, runs them in one transaction,
// each inside its own savepoint, and commits once (group commit), so that
// the commit's WAL flush is paid once per group and a write that fails is
// rolled back alone. Each caller is answered only after the commit that
// holds its write.
//
// One audit chain across nodes. A group that appends to the audit log
// locks the one-row audit_head table (SELECT … FOR UPDATE) and reads the
// head under that lock — never from memory, since another node may have
// appended since — so the nodes' groups append one after another and the
// chain stays one chain. The lock, like the flush, is taken once per group,
// not once per certificate. A group runs its writes that do not touch the
// chain (reservations, heartbeats, OCSP answers, tokens) first and takes
// the head lock only for the rest and the commit, so the lock that
// serializes the nodes is held as briefly as it can be; and since a group
// holding it touches only committed rows, it never waits for a lock of
// another node's group, so the two cannot deadlock.
//
// Round trips. A write's savepoint goes out with its first statement, a
// record's change with its audit entry, the head's move with COMMIT, in
// one pgx batch each: a certificate's two writes cost three round trips.
//
// Serial numbers are unique by constraint; CRL numbers only increase,
// enforced by a trigger under a per-CA row lock; records are forward-only
// and the audit log and its checkpoints append-only, by triggers. The
// schema is versioned (migrations/) and applied at Open in one transaction
// under an advisory lock, so nodes starting together migrate once.
//
// A database that went away. Every error that comes from not reaching the
// server (refused or broken connections, a server shutting down, a group
// that ran out of Options.WriteTimeout) wraps record.ErrUnavailable, and
// context.DeadlineExceeded where a deadline was the cause, so the caller
// can answer 503. The pool reconnects on its own and the writer never
// stops on a failed group: the next group takes a fresh connection, so the
// store works again as soon as PostgreSQL does, without reopening. When
// the answer to a COMMIT is lost, the writer asks the server whether the
// transaction committed (txid_status) before answering, so that a durable
// write is not reported as failed; if the server stays away it cannot
// know, and the error says so.
//
// The password is given in Options (read by the caller from a file or a
// systemd credential), never in the DSN, and no error prints the DSN.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/acmesql"
	"github.com/pkid/pkid/store/internal/writequeue"
)

// maxGroup bounds how many writes share one transaction. PostgreSQL keeps
// up to 64 subtransaction ids per transaction in shared memory
// (PGPROC_MAX_CACHED_SUBXIDS); a transaction with more overflows that
// cache and slows every other session's snapshots, so a group's savepoints
// stay within it.
const maxGroup = 64

// Defaults for Options.
const (
	defaultMaxConns     = 10
	defaultWriteTimeout = 10 * time.Second
)

// DB is the PostgreSQL store.
type DB struct {
	pool   *pgxpool.Pool
	where  string // "database D on H:P", for messages (never the DSN)
	writes *writequeue.Queue[*group]
	quit   chan struct{} // closed by Close: finish what was submitted, then stop
	closed chan struct{} // closed once the pool is released
	once   sync.Once
	// closeErr is written before closed is closed and read after.
	closeErr error

	writeTimeout time.Duration
	onCommit     func(d time.Duration, size int)
	onAudit      func(head int64)

	leadMu sync.Mutex
	leads  map[*lead]struct{} // locks held, released by Close if their holder has not

	statsMu sync.Mutex
	stats   Stats

	// The ACME part of the contract (DESIGN §17), in SQL shared with
	// store/sqlite.
	*acmesql.Store
}

var _ store.Store = (*DB)(nil)

// Options tune a DB.
type Options struct {
	// Password authenticates to the server. The caller reads it from a file
	// or a systemd credential; a DSN that carries one is refused, so that
	// it never sits in a config file.
	Password string
	// OnCommit, if set, is called after each group commit with its
	// duration (flush included) and the number of writes in it.
	OnCommit func(d time.Duration, size int)
	// OnAudit, if set, is called after each group commit that appended
	// audit entries, with the sequence number of the newest one in the
	// chain all nodes share: what a checkpoint every N entries waits for
	// (DESIGN §6). It runs on the writer and must not block.
	OnAudit func(head int64)
	// ApplicationName names the pool's connections in pg_stat_activity and
	// the server's log when the DSN sets no application_name; "" means
	// "pkid". The daemon passes "pkid/<nodeName>", so a DBA sees which node
	// holds a connection or a lock.
	ApplicationName string
	// MaxConns bounds the pool; 0 means 10. The writer takes one, each held
	// Lead one, reads the rest.
	MaxConns int
	// WriteTimeout bounds one group: waiting for the chain-head lock
	// another node holds, the statements and the commit; 0 means 10s. A
	// group that runs out fails with record.ErrUnavailable and
	// context.DeadlineExceeded.
	WriteTimeout time.Duration
}

// Stats describes the group commits so far.
type Stats struct {
	Commits int64 // transactions committed
	Writes  int64 // writes in them
}

// config parses dsn into a pool configuration with opts applied.
func config(dsn string, opts Options) (*pgxpool.Config, error) {
	if dsnHasPassword(dsn) {
		return nil, errors.New("the PostgreSQL DSN holds a password: give it in a password file or systemd credential instead")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN; say only what kind of problem it is.
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			if inner := errors.Unwrap(pe); inner != nil {
				return nil, fmt.Errorf("invalid PostgreSQL DSN (not shown): %v", inner)
			}
		}
		return nil, errors.New("invalid PostgreSQL DSN (not shown)")
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	cfg.MaxConns = int32(opts.MaxConns)
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = cmp.Or(opts.ApplicationName, "pkid")
	}
	return cfg, nil
}

// dsnHasPassword reports a password in either DSN form (a URL's userinfo
// or password= key, or a keyword/value string's password key).
func dsnHasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return strings.Contains(dsn, "password") || strings.Count(dsn, ":") > 2
		}
		if _, set := u.User.Password(); set {
			return true
		}
		return u.Query().Has("password")
	}
	for _, f := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return false
}

func describe(cfg *pgxpool.Config) string {
	return fmt.Sprintf("database %s on %s:%d", cfg.ConnConfig.Database, cfg.ConnConfig.Host, cfg.ConnConfig.Port)
}

// Open connects to the database dsn names (sslmode and the other libpq
// parameters are honoured as pgx does), brings its schema to
// LatestSchemaVersion and starts the writer.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := config(dsn, opts)
	if err != nil {
		return nil, err
	}
	where := describe(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", where, classify(err))
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("preparing %s: %w", where, err)
	}
	d := &DB{
		pool: pool, where: where,
		quit: make(chan struct{}), closed: make(chan struct{}),
		writeTimeout: opts.WriteTimeout, onCommit: opts.OnCommit, onAudit: opts.OnAudit, leads: make(map[*lead]struct{}),
	}
	d.writes = writequeue.New[*group](maxGroup, d.quit)
	if d.writeTimeout <= 0 {
		d.writeTimeout = defaultWriteTimeout
	}
	d.Store = acmesql.New(d.acmeBackend())
	go d.writes.Run(maxGroup, d.commitGroup)
	return d, nil
}

// Close stops the writer once the writes already submitted are committed,
// drops the leads still held and releases the pool. If ctx ends first it
// returns ctx.Err() and the rest happens on its own; a later Close waits
// again.
func (d *DB) Close(ctx context.Context) error {
	d.once.Do(func() {
		close(d.quit)
		go func() {
			<-d.writes.Done()
			d.dropLeads()
			// pgxpool's Close waits for connections still lent to readers.
			d.pool.Close()
			close(d.closed)
		}()
	})
	select {
	case <-d.closed:
		return d.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closing reports ErrClosed once Close has been called.
func (d *DB) closing() error {
	select {
	case <-d.quit:
		return record.ErrClosed
	default:
		return nil
	}
}

// Stats returns the group-commit counters.
func (d *DB) Stats() Stats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.stats
}

// lockKey names an advisory lock: the first 64 bits of FNV-1a over a
// pkid-specific prefix and name, so pkid's locks do not collide with each
// other or, in practice, with another application's on the same database.
func lockKey(kind, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("pkid\x00" + kind + "\x00" + name))
	return int64(h.Sum64())
}

// unavailableError marks an error that comes from not reaching the
// database; it is record.ErrUnavailable and still its cause.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return "database unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{record.ErrUnavailable, e.err}
}

// classify marks err as record.ErrUnavailable when it says the server
// could not be reached or answered that it cannot serve now.
func classify(err error) error {
	if err == nil || errors.Is(err, record.ErrUnavailable) || !unreachable(err) {
		return err
	}
	return &unavailableError{err}
}

func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, crashed, starting up
			pe.Code == "53300",                    // too many connections
			pe.Code == "25006",                    // read-only transaction: a standby, during a failover
			pe.Code == "57014" && ctxTimeout(err): // our deadline cancelled the statement
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return ctxTimeout(err) || pgconn.Timeout(err) || errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

func ctxTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
