// Package sqlite is pkid's embedded store: store.Store in one SQLite file
// (modernc.org/sqlite, pure Go), in WAL mode with synchronous=FULL so that
// a commit is on disk when it returns.
//
// Every write goes through one writer goroutine on one connection with
// prepared statements. It takes the writes waiting at that moment, runs
// them in one transaction, each inside its own savepoint, and commits once
// (group commit): many requests share one fsync, a write that fails is
// rolled back to its savepoint without disturbing the others, and each
// caller is answered only after the commit that holds its write. Reads use
// other connections and never wait for the writer (WAL).
//
// A write, once handed to the writer, is waited for even if its context
// ends, so that nothing durable is misreported as failed; a caller that
// must not wait without bound gives it a deadline before it is submitted,
// or uses Check and Close, which return by their deadline even when the
// writer is stuck.
//
// The file is created with mode 0600 before SQLite opens it, so the WAL
// and shared-memory files, which SQLite creates with the database's mode,
// are 0600 too; an existing database with looser permissions is tightened
// to 0600 at Open (the data is the CA's inventory and audit log).
//
// The schema is versioned (see migrations/): Open applies what is missing
// in one transaction. Version 1 is the schema of the first release, which
// had no version table; such a database is recognized and migrated.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/acmesql"
	"github.com/pkid/pkid/store/internal/writequeue"
)

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

// DB is the SQLite store.
type DB struct {
	db     *sql.DB
	dir    string // the database's directory, for free-space checks
	writer *sql.Conn
	writes *writequeue.Queue[*DB]
	quit   chan struct{} // closed by Close: finish what was submitted, then stop
	closed chan struct{} // closed once the database is released
	once   sync.Once
	// closeErr is written before closed is closed and read after.
	closeErr error

	// Owned by the writer goroutine.
	seq   int64
	hash  string
	stmts statements

	leads leads

	// The ACME part of the contract (DESIGN §17), in SQL shared with
	// store/postgres.
	*acmesql.Store

	statsMu  sync.Mutex
	stats    Stats
	onCommit func(d time.Duration, size int)
	onAudit  func(head int64)
}

var _ store.Store = (*DB)(nil)

// Options tune a DB.
type Options struct {
	// BusyTimeout is how long a write waits for a lock held by another
	// process before failing; 0 means 5s.
	BusyTimeout time.Duration
	// OnCommit, if set, is called after each group commit with its
	// duration (fsync included) and the number of writes in it.
	OnCommit func(d time.Duration, size int)
	// OnAudit, if set, is called after each group commit that appended
	// audit entries, with the sequence number of the newest one: what a
	// checkpoint every N entries waits for (DESIGN §6). It runs on the
	// writer and must not block.
	OnAudit func(head int64)
}

// Stats describes the group commits so far.
type Stats struct {
	Commits int64 // transactions committed
	Writes  int64 // writes in them
}

// Open opens (creating if needed, with mode 0600) the database at path,
// brings its schema to LatestSchemaVersion and starts the writer.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if err := secureFile(path); err != nil {
		return nil, err
	}
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
	d := &DB{
		db: sqlDB, dir: filepath.Dir(path), writer: w,
		quit: make(chan struct{}), closed: make(chan struct{}), onCommit: opts.OnCommit,
		onAudit: opts.OnAudit,
	}
	d.writes = writequeue.New[*DB](maxGroup, d.quit)
	d.seq, d.hash, err = d.AuditHead(ctx)
	if err == nil {
		err = d.stmts.prepare(ctx, w)
	}
	if err != nil {
		d.stmts.close()
		w.Close()
		sqlDB.Close()
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	d.Store = acmesql.New(d.acmeBackend())
	go d.writes.Run(maxGroup, d.commitGroup)
	return d, nil
}

// secureFile creates path with mode 0600 if it does not exist, and
// tightens an existing database and its WAL and shared-memory files to
// 0600. SQLite itself would create the file 0644, and creates the other two
// with the database's mode, so this must happen before it opens the file.
func secureFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening database file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening database file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("database %s is not a regular file", path)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("restricting database %s to mode 0600: %w", path, err)
		}
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Lstat(side)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("checking %s: %w", side, err)
		case fi.Mode().Perm() != 0o600:
			if err := os.Chmod(side, 0o600); err != nil {
				return fmt.Errorf("restricting %s to mode 0600: %w", side, err)
			}
		}
	}
	return nil
}

// Close stops the writer once the writes already submitted are committed
// and releases the database. If ctx ends first it returns ctx.Err() and
// the writer finishes and releases on its own; a later Close waits again.
func (d *DB) Close(ctx context.Context) error {
	d.once.Do(func() {
		close(d.quit)
		go func() {
			<-d.writes.Done()
			d.stmts.close()
			werr := d.writer.Close()
			if err := d.db.Close(); err != nil {
				werr = errors.Join(werr, fmt.Errorf("closing database: %w", err))
			}
			d.closeErr = werr
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

// closing reports ErrClosed once Close has been called, so that reads do
// not race the release of the connections.
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
