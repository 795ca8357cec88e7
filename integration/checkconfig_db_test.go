package integration

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/store/postgres"
	"github.com/pkid/pkid/store/postgres/pgtest"
	"github.com/pkid/pkid/store/sqlite"
)

// checkConfigWithDatabase runs check-config on the demo config with its
// database line replaced by database (YAML), and returns its output and
// exit code.
func checkConfigWithDatabase(t *testing.T, database string) (string, int) {
	t.Helper()
	c := strings.Replace(readFile(t, s.path("pkid.yaml")), "database: pkid.db\n", database, 1)
	// Beside the demo's config, whose relative paths are relative to its
	// directory: only the database changes.
	variant := s.path(fmt.Sprintf("variant-db-%s.yaml", strings.ReplaceAll(t.Name(), "/", "-")))
	if err := os.WriteFile(variant, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(variant) })
	out, errOut, code := s.pkid(t, "check-config", "--config", variant)
	return out + errOut, code
}

// dirState lists dir's files with their mode, size, modification time and
// content hash: what must not change.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s %v %d %s %x\n", e.Name(), fi.Mode(), fi.Size(), fi.ModTime(), sha256.Sum256(b))
	}
	return out.String()
}

// check-config reads a SQLite database's schema version and says what
// start will do, and changes nothing: it neither creates a missing file
// nor migrates an old one.
func TestCheckConfigReportsSQLiteSchemaWithoutChangingIt(t *testing.T) {
	ctx := context.Background()
	v1, err := os.ReadFile("../store/sqlite/testdata/schema_v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string
	}{
		{"new", func(*testing.T, string) {}, "new database, created at start"},
		{"first release", func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(string(v1)); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("schema v1, %d pending migrations (applied at start, to v%d)", sqlite.LatestSchemaVersion-1, sqlite.LatestSchemaVersion)},
		{"current", func(t *testing.T, path string) {
			d, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("schema v%d, up to date", sqlite.LatestSchemaVersion)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pkid.db")
			tc.prepare(t, path)
			before := dirState(t, dir)
			out, code := checkConfigWithDatabase(t, "database: "+path+"\n")
			if code != 0 || !strings.Contains(out, "SQLite database "+path+": "+tc.want) {
				t.Fatalf("check-config: exit %d, want it to report %q\n%s", code, tc.want, out)
			}
			if after := dirState(t, dir); after != before {
				t.Errorf("check-config changed the database's directory:\n%s\nbecame\n%s", before, after)
			}
		})
	}
	t.Run("directory missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gone", "pkid.db")
		out, code := checkConfigWithDatabase(t, "database: "+path+"\n")
		if code == 0 || !strings.Contains(out, "does not exist") {
			t.Fatalf("check-config: exit %d, want a refusal naming the missing directory\n%s", code, out)
		}
	})
}

// check-config connects to PostgreSQL and reports the schema state without
// migrating: a new database stays empty, an old schema stays old.
func TestCheckConfigReportsPostgreSQLSchemaWithoutMigrating(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	pwFile := filepath.Join(t.TempDir(), "pg-password")
	if err := os.WriteFile(pwFile, []byte(srv.Password()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	database := fmt.Sprintf("database: %q\ndatabasePasswordFile: %s\n", dsn, pwFile)
	version := func() int {
		t.Helper()
		v, err := postgres.SchemaVersionAt(ctx, dsn, postgres.Options{Password: srv.Password()})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	check := func(want string) {
		t.Helper()
		out, code := checkConfigWithDatabase(t, database)
		if code != 0 || !strings.Contains(out, "PostgreSQL database: "+want) {
			t.Fatalf("check-config: exit %d, want it to report %q\n%s", code, want, out)
		}
	}

	check(fmt.Sprintf("new database, schema v%d created at start", postgres.LatestSchemaVersion))
	if v := version(); v != 0 {
		t.Fatalf("after check-config the new database has schema v%d", v)
	}

	d, err := postgres.Open(ctx, dsn, postgres.Options{Password: srv.Password()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	check(fmt.Sprintf("schema v%d, up to date", postgres.LatestSchemaVersion))

	// As a database of the previous release: the last migration not yet
	// recorded.
	if _, err := srv.Connect(t, dsn).Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, postgres.LatestSchemaVersion); err != nil {
		t.Fatal(err)
	}
	old := postgres.LatestSchemaVersion - 1
	check(fmt.Sprintf("schema v%d, 1 pending migrations (applied at start, to v%d)", old, postgres.LatestSchemaVersion))
	if v := version(); v != old {
		t.Errorf("after check-config the database has schema v%d, want v%d still", v, old)
	}
}
