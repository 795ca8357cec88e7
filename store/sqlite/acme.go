package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/acmesql"
)

// conn is what acmesql's statements run on: the writer's connection
// inside its transaction, or the pool for reads.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// acmeTx adapts a connection to acmesql.Tx. closing, when set, refuses
// reads once Close has begun.
type acmeTx struct {
	c       conn
	closing func() error
}

func (t acmeTx) open() error {
	if t.closing == nil {
		return nil
	}
	return t.closing()
}

func (t acmeTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := t.open(); err != nil {
		return 0, err
	}
	res, err := t.c.ExecContext(ctx, query, args...)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return 0, fmt.Errorf("%w: %v", acmesql.ErrUnique, err)
		}
		return 0, err
	}
	return res.RowsAffected()
}

func (t acmeTx) QueryRow(ctx context.Context, query string, args []any, fn func(scan func(...any) error) error) error {
	if err := t.open(); err != nil {
		return err
	}
	err := fn(t.c.QueryRowContext(ctx, query, args...).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return record.ErrNotFound
	}
	return err
}

func (t acmeTx) Query(ctx context.Context, query string, args []any, each func(scan func(...any) error) error) error {
	if err := t.open(); err != nil {
		return err
	}
	rows, err := t.c.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// acmeBackend runs the ACME part of the contract on this database: writes
// through the writer (one savepoint of a group commit each), reads on the
// pool.
func (d *DB) acmeBackend() acmesql.Backend {
	return acmesql.Backend{
		Write: func(ctx context.Context, fn func(context.Context, acmesql.Tx) error) error {
			return d.writes.Submit(ctx, false, func(ctx context.Context, d *DB) error { return fn(ctx, acmeTx{c: d.writer}) })
		},
		Read: acmeTx{c: d.db, closing: d.closing},
	}
}
