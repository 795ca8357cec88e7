package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/acmesql"
)

// numbered turns acmesql's "?" placeholders into PostgreSQL's $1, $2, …
// (its queries hold no "?" in literals).
func numbered(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// acmeError maps a unique violation to acmesql.ErrUnique, no row to
// record.ErrNotFound and a lost server to record.ErrUnavailable.
func acmeError(err error) error {
	switch code, _ := sqlState(err); {
	case err == nil:
		return nil
	case code == stateUnique:
		return fmt.Errorf("%w: %v", acmesql.ErrUnique, err)
	case errors.Is(err, pgx.ErrNoRows):
		return record.ErrNotFound
	}
	return classify(err)
}

// acmeWrite runs acmesql's statements inside one write of the writer.
type acmeWrite struct{ g *group }

func (t acmeWrite) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.g.exec(ctx, numbered(query), args...)
	if err != nil {
		return 0, acmeError(err)
	}
	return tag.RowsAffected(), nil
}

func (t acmeWrite) QueryRow(ctx context.Context, query string, args []any, fn func(scan func(...any) error) error) error {
	br := t.g.batch(ctx, stmt{numbered(query), args})
	err := fn(br.QueryRow().Scan)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return acmeError(err)
}

func (t acmeWrite) Query(ctx context.Context, query string, args []any, each func(scan func(...any) error) error) error {
	rows, err := t.g.query(ctx, numbered(query), args...)
	if err != nil {
		return acmeError(err)
	}
	return scanRows(rows, each)
}

func scanRows(rows pgx.Rows, each func(scan func(...any) error) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return acmeError(rows.Err())
}

// acmeRead runs acmesql's reads on the pool.
type acmeRead struct{ d *DB }

func (t acmeRead) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := t.d.closing(); err != nil {
		return 0, err
	}
	tag, err := t.d.pool.Exec(ctx, numbered(query), args...)
	if err != nil {
		return 0, acmeError(err)
	}
	return tag.RowsAffected(), nil
}

func (t acmeRead) QueryRow(ctx context.Context, query string, args []any, fn func(scan func(...any) error) error) error {
	if err := t.d.closing(); err != nil {
		return err
	}
	return acmeError(fn(t.d.pool.QueryRow(ctx, numbered(query), args...).Scan))
}

func (t acmeRead) Query(ctx context.Context, query string, args []any, each func(scan func(...any) error) error) error {
	if err := t.d.closing(); err != nil {
		return err
	}
	rows, err := t.d.pool.Query(ctx, numbered(query), args...)
	if err != nil {
		return acmeError(err)
	}
	return scanRows(rows, each)
}

// acmeBackend runs the ACME part of the contract on this database: writes
// through the writer (they never touch the audit chain, so their groups
// need not hold its head), reads on the pool.
func (d *DB) acmeBackend() acmesql.Backend {
	return acmesql.Backend{
		Write: func(ctx context.Context, fn func(context.Context, acmesql.Tx) error) error {
			return d.writes.Submit(ctx, false, func(ctx context.Context, g *group) error { return fn(ctx, acmeWrite{g}) })
		},
		Read: acmeRead{d},
	}
}
