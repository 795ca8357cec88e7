package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pkid/pkid/store/internal/contract"
)

// LatestSchemaVersion is the schema this release writes. Version 1 is the
// first release's schema; version 2 adds revocation, the reservation's
// forensic fields, CRLs, audit checkpoints and the legacy-entry boundary;
// version 3 the reserving node of each record, node heartbeats, pre-signed
// OCSP answers and revoked access tokens; version 4 the ACME server's
// accounts, EAB keys, orders, authorizations, challenges and nonces.
const LatestSchemaVersion = 4

// The migrations are embedded so a binary carries the schema it needs; the
// file name's number is the version. Read-only after build.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations, checked and in order.
func migrations() ([]contract.Migration, error) {
	return contract.Migrations(migrationFiles, LatestSchemaVersion)
}

// migrate applies the missing migrations in one IMMEDIATE transaction, so
// a second process opening the same file waits instead of migrating twice,
// and a failure leaves the database as it was.
//
// A first-release database has the version-1 tables but no
// schema_migrations; migration 1 only creates what does not exist, so
// applying it there changes nothing and records the version.
func migrate(ctx context.Context, db *sql.DB) (err error) {
	ms, err := migrations()
	if err != nil {
		return err
	}
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("opening migration connection: %w", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("beginning migration: %w", err)
	}
	defer func() {
		if err != nil {
			// context.Background: the rollback must happen even if ctx ended.
			if _, rerr := c.ExecContext(context.Background(), `ROLLBACK`); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rolling back migration: %w", rerr))
			}
		}
	}()
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	var current int
	if err := c.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if current > LatestSchemaVersion {
		return fmt.Errorf("database schema version %d is newer than this pkid's (%d): refusing to use it", current, LatestSchemaVersion)
	}
	for _, m := range ms[current:] {
		if _, err := c.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("applying migration %s: %w", m.Name, err)
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			m.Version, contract.TimeText(time.Now())); err != nil {
			return fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
	}
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("committing migrations: %w", err)
	}
	return nil
}

// SchemaVersion returns the schema version of the open database (after
// Open, LatestSchemaVersion).
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	if err := d.closing(); err != nil {
		return 0, err
	}
	var v int
	if err := d.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// SchemaVersionAt returns the schema version of the database at path
// without creating, migrating or writing it (for check-config): 0 for an
// empty file, 1 for a first-release database. A missing file is an error
// wrapping os.ErrNotExist.
func SchemaVersionAt(ctx context.Context, dbPath string) (int, error) {
	if _, err := os.Stat(dbPath); err != nil {
		return 0, fmt.Errorf("database %s: %w", dbPath, err)
	}
	// A read-only connection to a WAL database creates the -wal and -shm
	// files beside it when they are missing, and leaves them behind. With
	// no -wal file nothing is in flight, so the file is read as immutable,
	// alone; with one (pkid is running, or stopped without a checkpoint)
	// both files are there already and are read as SQLite reads them.
	mode := "mode=ro"
	if _, err := os.Stat(dbPath + "-wal"); errors.Is(err, os.ErrNotExist) {
		mode = "immutable=1"
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?"+mode)
	if err != nil {
		return 0, fmt.Errorf("opening database %s: %w", dbPath, err)
	}
	defer db.Close()
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&tables); err != nil {
		return 0, fmt.Errorf("reading database %s: %w", dbPath, err)
	}
	if tables == 1 {
		var v int
		if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
			return 0, fmt.Errorf("reading schema version of %s: %w", dbPath, err)
		}
		return v, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'certificates'`).Scan(&tables); err != nil {
		return 0, fmt.Errorf("reading database %s: %w", dbPath, err)
	}
	return tables, nil // the first release's tables, or nothing yet
}
