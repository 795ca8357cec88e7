package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/postgres/pgtest"
	"github.com/pkid/pkid/store/storetest"
)

func openDB(t testing.TB, dsn, password string) *DB {
	t.Helper()
	d, err := Open(context.Background(), dsn, Options{Password: password})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// One server for the whole suite, a fresh database per test: starting a
// server costs seconds, a database tens of milliseconds.
func TestContract(t *testing.T) {
	srv := pgtest.StartServer(t)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		dsn := srv.NewDatabase(t)
		cur := openDB(t, dsn, srv.Password())
		t.Cleanup(func() {
			if err := cur.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return storetest.Harness{
			Store:  cur,
			Tamper: tamperer{dsn: dsn, password: srv.Password()},
			Reopen: func(t *testing.T) store.Store {
				if err := cur.Close(context.Background()); err != nil {
					t.Fatalf("Close before reopening: %v", err)
				}
				cur = openDB(t, dsn, srv.Password())
				return cur
			},
		}
	})
}

// tamperer edits the database through a connection of its own, with the
// table's triggers disabled for the edit (ALTER TABLE … DISABLE TRIGGER
// USER, inside the same transaction), as its owner could.
type tamperer struct{ dsn, password string }

func (tp tamperer) edit(t *testing.T, table string, fn func(tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(tp.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = tp.password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `ALTER TABLE `+table+` DISABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if err := fn(tx); err != nil {
		t.Fatalf("tampering with %s: %v", table, err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+table+` ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func (tp tamperer) DeleteAudit(t *testing.T, from, through int64) {
	tp.edit(t, "audit", func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `DELETE FROM audit WHERE seq >= $1 AND ($2 = 0 OR seq <= $2)`, from, through)
		return err
	})
}

func (tp tamperer) RewriteAudit(t *testing.T, seq int64, body string, rehash bool) {
	ctx := context.Background()
	tp.edit(t, "audit", func(tx pgx.Tx) error {
		if !rehash {
			_, err := tx.Exec(ctx, `UPDATE audit SET event = $1 WHERE seq = $2`, body, seq)
			return err
		}
		type entry struct {
			seq        int64
			body, prev string
		}
		rows, err := tx.Query(ctx, `SELECT seq, event, prev_hash FROM audit WHERE seq >= $1 ORDER BY seq`, seq)
		if err != nil {
			return err
		}
		later, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
			var e entry
			return e, r.Scan(&e.seq, &e.body, &e.prev)
		})
		if err != nil {
			return err
		}
		if len(later) == 0 || later[0].seq != seq {
			return fmt.Errorf("no entry %d", seq)
		}
		later[0].body = body
		prev := later[0].prev
		for _, e := range later {
			h := record.ChainHash(prev, e.seq, e.body)
			if _, err := tx.Exec(ctx, `UPDATE audit SET event = $1, prev_hash = $2, hash = $3 WHERE seq = $4`, e.body, prev, h, e.seq); err != nil {
				return err
			}
			prev = h
		}
		return nil
	})
}

func (tp tamperer) SwapAudit(t *testing.T, a, b int64) {
	tp.edit(t, "audit", func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `UPDATE audit SET at = o.at, event = o.event, prev_hash = o.prev_hash, hash = o.hash
			FROM audit o WHERE (audit.seq, o.seq) IN (($1, $2), ($2, $1))`, a, b)
		return err
	})
}

func (tp tamperer) DeleteCertificate(t *testing.T, id string) {
	tp.edit(t, "certificates", func(tx pgx.Tx) error {
		tag, err := tx.Exec(context.Background(), `DELETE FROM certificates WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() != 1 {
			return fmt.Errorf("no certificate %s", id)
		}
		return err
	})
}

func (tp tamperer) DeleteCheckpoints(t *testing.T) {
	tp.edit(t, "audit_checkpoints", func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `DELETE FROM audit_checkpoints`)
		return err
	})
}

// at is the n-th millisecond of the tests' timeline.
func at(n int) time.Time {
	return time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
}

func hexHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// newCert is a valid reservation, distinct for each n, from node.
func newCert(n int, node string) *record.Certificate {
	return &record.Certificate{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Serial: fmt.Sprintf("4%039x", n),
		ProfileID: "11111111-0000-4000-8000-000000000001", Profile: "web-server", CA: "ec-issuing",
		IssuerHash: hexHash("ca"), Identity: "uri:spiffe://example.internal/demo-client", RequestID: "req-x",
		CertificateRequestID: fmt.Sprintf("22222222-0000-4000-8000-%012d", n),
		CommonName:           "a.example.internal", AltNames: []record.AltName{{Type: "dns_name", Value: "a.example.internal"}},
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
		NotBefore: at(n), NotAfter: at(n).Add(time.Hour), TBSHash: hexHash(fmt.Sprint("tbs", n)), Node: node, CreatedAt: at(n),
	}
}

func issued(n int) record.AuditEvent {
	return record.AuditEvent{Time: at(n), Action: record.ActionIssued, Identity: "client", Profile: "web-server", Outcome: "issued"}
}

func refused(n int) record.AuditEvent {
	return record.AuditEvent{Time: at(n), Action: record.ActionRefused, Identity: "client", Profile: "web-server", Outcome: "forbidden"}
}

// The pool's connections carry the caller's name unless the DSN sets one.
func TestConfigNamesTheConnections(t *testing.T) {
	for _, c := range []struct{ dsn, name, want string }{
		{"postgres://pkid@127.0.0.1/pkid", "pkid/node-a", "pkid/node-a"},
		{"postgres://pkid@127.0.0.1/pkid", "", "pkid"},
		{"postgres://pkid@127.0.0.1/pkid?application_name=dba-chosen", "pkid/node-a", "dba-chosen"},
		{"host=127.0.0.1 user=pkid application_name=dba-chosen", "pkid/node-a", "dba-chosen"},
	} {
		cfg, err := config(c.dsn, Options{ApplicationName: c.name})
		if err != nil {
			t.Fatalf("%s: %v", c.dsn, err)
		}
		if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != c.want {
			t.Errorf("%s with %q: application_name %q, want %q", c.dsn, c.name, got, c.want)
		}
	}
}
