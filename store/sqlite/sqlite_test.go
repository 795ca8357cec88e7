package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/storetest"
)

func openDB(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		path := filepath.Join(t.TempDir(), "pkid.db")
		cur := openDB(t, path)
		t.Cleanup(func() {
			if err := cur.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return storetest.Harness{
			Store:  cur,
			Tamper: tamperer{path: path},
			Reopen: func(t *testing.T) store.Store {
				if err := cur.Close(context.Background()); err != nil {
					t.Fatalf("Close before reopening: %v", err)
				}
				cur = openDB(t, path)
				return cur
			},
		}
	})
}

// tamperer edits the file through a connection of its own, with the
// triggers that guard the table dropped for the edit and restored after,
// as someone with write access to the file could.
type tamperer struct{ path string }

func (tp tamperer) edit(t *testing.T, table string, fn func(tx *sql.Tx) error) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+tp.path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?`, table)
	if err != nil {
		t.Fatal(err)
	}
	triggers := map[string]string{}
	for rows.Next() {
		var name, text string
		if err := rows.Scan(&name, &text); err != nil {
			t.Fatal(err)
		}
		triggers[name] = text
	}
	rows.Close()
	for name := range triggers {
		if _, err := tx.Exec(`DROP TRIGGER ` + name); err != nil {
			t.Fatal(err)
		}
	}
	if err := fn(tx); err != nil {
		t.Fatalf("tampering with %s: %v", table, err)
	}
	for _, text := range triggers {
		if _, err := tx.Exec(text); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (tp tamperer) DeleteAudit(t *testing.T, from, through int64) {
	tp.edit(t, "audit", func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM audit WHERE seq >= ? AND (? = 0 OR seq <= ?)`, from, through, through)
		return err
	})
}

func (tp tamperer) RewriteAudit(t *testing.T, seq int64, body string, rehash bool) {
	tp.edit(t, "audit", func(tx *sql.Tx) error {
		if !rehash {
			_, err := tx.Exec(`UPDATE audit SET event = ? WHERE seq = ?`, body, seq)
			return err
		}
		type entry struct {
			seq        int64
			body, prev string
		}
		var later []entry
		rows, err := tx.Query(`SELECT seq, event, prev_hash FROM audit WHERE seq >= ? ORDER BY seq`, seq)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e entry
			if err := rows.Scan(&e.seq, &e.body, &e.prev); err != nil {
				return err
			}
			later = append(later, e)
		}
		rows.Close()
		if len(later) == 0 || later[0].seq != seq {
			return fmt.Errorf("no entry %d", seq)
		}
		later[0].body = body
		prev := later[0].prev
		for _, e := range later {
			h := record.ChainHash(prev, e.seq, e.body)
			if _, err := tx.Exec(`UPDATE audit SET event = ?, prev_hash = ?, hash = ? WHERE seq = ?`, e.body, prev, h, e.seq); err != nil {
				return err
			}
			prev = h
		}
		return nil
	})
}

func (tp tamperer) SwapAudit(t *testing.T, a, b int64) {
	tp.edit(t, "audit", func(tx *sql.Tx) error {
		type content struct{ at, event, prev, hash string }
		var ca, cb content
		for _, x := range []struct {
			seq  int64
			into *content
		}{{a, &ca}, {b, &cb}} {
			if err := tx.QueryRow(`SELECT at, event, prev_hash, hash FROM audit WHERE seq = ?`, x.seq).
				Scan(&x.into.at, &x.into.event, &x.into.prev, &x.into.hash); err != nil {
				return err
			}
		}
		for _, x := range []struct {
			seq int64
			c   content
		}{{a, cb}, {b, ca}} {
			if _, err := tx.Exec(`UPDATE audit SET at = ?, event = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
				x.c.at, x.c.event, x.c.prev, x.c.hash, x.seq); err != nil {
				return err
			}
		}
		return nil
	})
}

func (tp tamperer) DeleteCertificate(t *testing.T, id string) {
	tp.edit(t, "certificates", func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM certificates WHERE id = ?`, id)
		if n, _ := res.RowsAffected(); err == nil && n != 1 {
			return fmt.Errorf("no certificate %s", id)
		}
		return err
	})
}

func (tp tamperer) DeleteCheckpoints(t *testing.T) {
	tp.edit(t, "audit_checkpoints", func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM audit_checkpoints`)
		return err
	})
}

// The guards hold for a plain connection to the file: only dropping the
// triggers (which the tamperer does) gets past them.
func TestGuardsRefuseEdits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	d := openDB(t, path)
	defer d.Close(ctx)
	if err := d.Refuse(ctx, record.AuditEvent{Time: at(1), Action: record.ActionRefused}); err != nil {
		t.Fatal(err)
	}
	c := newCert(1)
	if err := d.Reserve(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := d.Finalize(ctx, c.ID, []byte("der"), record.AuditEvent{Time: at(2)}); err != nil {
		t.Fatal(err)
	}
	seq, hash, err := d.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddCheckpoint(ctx, record.Checkpoint{Seq: seq, Hash: hash, Time: at(3), KeyID: "k", Signature: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, tc := range []struct {
		stmt string
		ok   bool
	}{
		{`UPDATE audit SET event = '{}' WHERE seq = 1`, false},
		{`DELETE FROM audit WHERE seq = 1`, false},
		{`DELETE FROM certificates`, false},
		{`UPDATE certificates SET der = x'00'`, false},
		{`UPDATE certificates SET status = 'pending'`, false},
		{`UPDATE certificates SET serial = 'ff'`, false},
		{`UPDATE certificates SET node = 'another'`, false},
		{`UPDATE certificates SET status = 'revoked', revoked_at = 'now'`, true}, // the one move an issued record may make
		{`UPDATE certificates SET status = 'issued'`, false},
		{`INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, created_at, updated_at) VALUES ('ca', 2, 'x', 'y', 'h', 'pending', NULL, 'c', 'u')`, true},
		{`INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, created_at, updated_at) VALUES ('ca', 1, 'x', 'y', 'h', 'pending', NULL, 'c', 'u')`, false}, // a lower number
		{`INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, created_at, updated_at) VALUES ('ca', 2, 'x', 'y', 'h', 'pending', NULL, 'c', 'u')`, false}, // the same one
		{`UPDATE crls SET node = 'another'`, false},
		{`UPDATE crls SET status = 'aborted'`, true},
		{`UPDATE crls SET status = 'pending'`, false},
		{`DELETE FROM crls`, false},
		{`UPDATE audit_checkpoints SET hash = ''`, false},
		{`DELETE FROM audit_checkpoints`, false},
		{`INSERT INTO audit_checkpoints VALUES (1, 'h', 'at', 'k', x'01')`, false}, // not beyond the latest
		{`DELETE FROM audit_legacy`, false},
		{`INSERT INTO audit_legacy VALUES (99)`, false},
		{`UPDATE audit_legacy SET through_seq = 99`, false},
	} {
		_, err := raw.Exec(tc.stmt)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v; want success %v", tc.stmt, err, tc.ok)
		}
	}
}

func TestFileMode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	d := openDB(t, fresh)
	if err := d.Refuse(ctx, record.AuditEvent{Time: at(1), Action: record.ActionRefused}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A database someone made world-readable is tightened when opened.
	for _, p := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	d = openDB(t, fresh)
	defer d.Close(ctx)
	for _, p := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("reopened %s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}

	if _, err := Open(ctx, dir, Options{}); err == nil {
		t.Error("Open of a directory succeeded")
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := SchemaVersionAt(ctx, filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SchemaVersionAt(missing) = %v, want os.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Error("SchemaVersionAt created the file")
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := SchemaVersionAt(ctx, empty); err != nil || v != 0 {
		t.Errorf("SchemaVersionAt(empty) = %d, %v; want 0", v, err)
	}
	path := filepath.Join(dir, "pkid.db")
	d := openDB(t, path)
	if v, err := d.SchemaVersion(ctx); err != nil || v != LatestSchemaVersion {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, LatestSchemaVersion)
	}
	// While the store is open (pkid running) its -wal and -shm files are
	// there, and are read.
	if err := d.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	if v, err := SchemaVersionAt(ctx, path); err != nil || v != LatestSchemaVersion {
		t.Errorf("SchemaVersionAt of an open database = %d, %v", v, err)
	}
	d.Close(ctx)
	// Closed, the database is one file, and no -wal or -shm file appears
	// beside it.
	before := dirNames(t, dir)
	if v, err := SchemaVersionAt(ctx, path); err != nil || v != LatestSchemaVersion {
		t.Errorf("SchemaVersionAt = %d, %v", v, err)
	}
	if after := dirNames(t, dir); after != before {
		t.Errorf("SchemaVersionAt left files beside the database: %s became %s", before, after)
	}

	// A database from a newer pkid is refused, not downgraded.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO schema_migrations VALUES (?, 'later')`, LatestSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if d, err := Open(ctx, path, Options{}); err == nil {
		d.Close(ctx)
		t.Fatal("Open of a newer schema succeeded")
	}
}

// dirNames lists the names of dir's files.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
