package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pkid/pkid/store/internal/contract"
)

// LatestSchemaVersion is the schema this release writes. Version 1 is the
// whole store contract of SQLite schema version 3: records with their node,
// CRLs, the audit log with its head, checkpoints and legacy boundary, node
// heartbeats, OCSP answers and revoked tokens; version 2 the ACME server's
// state, as SQLite schema 4 adds it.
const LatestSchemaVersion = 2

// The migrations are embedded so a binary carries the schema it needs; the
// file name's number is the version. Read-only after build.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations, checked and in order.
func migrations() ([]contract.Migration, error) {
	return contract.Migrations(migrationFiles, LatestSchemaVersion)
}

// migrate applies the missing migrations in one transaction under a
// transaction-scoped advisory lock: nodes that start at once wait for the
// first, then find nothing left to do, and a failure leaves the database
// as it was (PostgreSQL's DDL is transactional).
func migrate(ctx context.Context, pool *pgxpool.Pool) (err error) {
	ms, err := migrations()
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning migration: %w", classify(err))
	}
	defer func() {
		if err != nil {
			// context.Background: the rollback must happen even if ctx ended.
			if rerr := tx.Rollback(context.Background()); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
				err = errors.Join(err, fmt.Errorf("rolling back migration: %w", rerr))
			}
		}
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("migrate", "schema")); err != nil {
		return fmt.Errorf("taking the migration lock: %w", classify(err))
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		applied_at text NOT NULL
	)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", classify(err))
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", classify(err))
	}
	if current > LatestSchemaVersion {
		return fmt.Errorf("database schema version %d is newer than this pkid's (%d): refusing to use it", current, LatestSchemaVersion)
	}
	for _, m := range ms[current:] {
		// No arguments: pgx sends it with the simple protocol, which runs
		// a file of several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("applying migration %s: %w", m.Name, classify(err))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.Version, contract.TimeText(time.Now())); err != nil {
			return fmt.Errorf("recording migration %s: %w", m.Name, classify(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing migrations: %w", classify(err))
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
	if err := d.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", classify(err))
	}
	return v, nil
}

// SchemaVersionAt connects to the database dsn names and returns its
// schema version without migrating or writing anything (for check-config):
// 0 for a database pkid never used.
func SchemaVersionAt(ctx context.Context, dsn string, opts Options) (int, error) {
	cfg, err := config(dsn, opts)
	if err != nil {
		return 0, err
	}
	where := describe(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return 0, fmt.Errorf("connecting to %s: %w", where, classify(err))
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("reading %s: %w", where, classify(err))
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version of %s: %w", where, classify(err))
	}
	return v, nil
}
