package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/postgres/pgtest"
)

// Two nodes on one database, each with many concurrent issuers, write one
// audit chain that verifies, with every certificate accounted for.
func TestTwoNodesOneChain(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	nodes := map[string]*DB{"node-a": openDB(t, dsn, srv.Password()), "node-b": openDB(t, dsn, srv.Password())}
	for _, d := range nodes {
		defer d.Close(ctx)
	}
	const writers, each = 12, 10
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*each*2)
	for name, d := range nodes {
		if err := d.Heartbeat(ctx, name, time.Now()); err != nil {
			t.Fatal(err)
		}
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < each; k++ {
					i := int(n.Add(1))
					if i%4 == 0 {
						if err := d.Refuse(ctx, refused(i)); err != nil {
							errs <- fmt.Errorf("%s: %w", name, err)
						}
						continue
					}
					c := newCert(i, name)
					if err := d.Reserve(ctx, c); err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						continue
					}
					if err := d.Finalize(ctx, c.ID, []byte("der "+c.ID), issued(i)); err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := int64(2 * writers * each)
	for name, d := range nodes {
		rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
		if err != nil {
			t.Fatalf("VerifyAudit from %s: %v", name, err)
		}
		if rep.Entries != total || rep.Certificates != total-total/4 {
			t.Errorf("VerifyAudit from %s: %+v; want %d entries and %d certificates", name, rep, total, total-total/4)
		}
		st := d.Stats()
		t.Logf("%s: %d writes in %d commits", name, st.Writes, st.Commits)
	}
	var fromA, fromB int
	if err := nodes["node-a"].ListCertificates(ctx, store.Filter{Status: record.StatusIssued}, func(c *record.Certificate) error {
		switch c.Node {
		case "node-a":
			fromA++
		case "node-b":
			fromB++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fromA == 0 || fromB == 0 {
		t.Errorf("issued by node-a %d, by node-b %d: want both in the one chain", fromA, fromB)
	}
}

// The same serial reserved by two nodes at once is taken by exactly one.
func TestSerialUniqueAcrossNodes(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	a, b := openDB(t, dsn, srv.Password()), openDB(t, dsn, srv.Password())
	defer a.Close(ctx)
	defer b.Close(ctx)
	for k := 0; k < 20; k++ {
		ca, cb := newCert(2*k+1, "node-a"), newCert(2*k+2, "node-b")
		cb.Serial = ca.Serial
		var errA, errB error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); errA = a.Reserve(ctx, ca) }()
		go func() { defer wg.Done(); errB = b.Reserve(ctx, cb) }()
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("serial %s: node-a %v, node-b %v; want exactly one reservation", ca.Serial, errA, errB)
		}
		if lost := errors.Join(errA, errB); !errors.Is(lost, record.ErrDuplicateSerial) {
			t.Fatalf("the losing reservation = %v, want ErrDuplicateSerial", lost)
		}
	}
}

// Lead excludes the other node until released, and a node that closes
// gives up what it held.
func TestLeadExcludesOtherNode(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	a, b := openDB(t, dsn, srv.Password()), openDB(t, dsn, srv.Password())
	defer a.Close(ctx)
	lead := func(d *DB, who string) (func(), bool) {
		t.Helper()
		release, ok, err := d.Lead(ctx, "crl:ec-issuing")
		if err != nil {
			t.Fatalf("Lead from %s: %v", who, err)
		}
		return release, ok
	}
	release, ok := lead(a, "node-a")
	if !ok {
		t.Fatal("node-a could not take a free lead")
	}
	if _, ok := lead(b, "node-b"); ok {
		t.Fatal("node-b took the lead node-a holds")
	}
	release()
	releaseB, ok := lead(b, "node-b")
	if !ok {
		t.Fatal("node-b could not take the lead node-a released")
	}
	_ = releaseB // never called: Close gives it up
	if _, ok := lead(a, "node-a"); ok {
		t.Fatal("node-a took the lead node-b holds")
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	releaseB() // after Close: harmless
	if release, ok := lead(a, "node-a"); !ok {
		t.Fatal("node-a could not take the lead of a node that closed")
	} else {
		release()
	}
}

// Nodes that start at once on a new database migrate it once.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	if v, err := SchemaVersionAt(ctx, dsn, Options{Password: srv.Password()}); err != nil || v != 0 {
		t.Fatalf("SchemaVersionAt(new database) = %d, %v; want 0", v, err)
	}
	const nodes = 4
	dbs := make([]*DB, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for k := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[k], errs[k] = Open(ctx, dsn, Options{Password: srv.Password()})
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", k, err)
		}
		defer dbs[k].Close(ctx)
	}
	var rows int
	if err := dbs[0].pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != LatestSchemaVersion {
		t.Errorf("schema_migrations holds %d rows, %v; want %d", rows, err, LatestSchemaVersion)
	}
	if v, err := SchemaVersionAt(ctx, dsn, Options{Password: srv.Password()}); err != nil || v != LatestSchemaVersion {
		t.Errorf("SchemaVersionAt = %d, %v", v, err)
	}
	if seq, hash, err := dbs[1].AuditHead(ctx); err != nil || seq != 0 || hash != record.GenesisHash {
		t.Errorf("AuditHead of a new database = %d, %s, %v; want 0 and the genesis hash", seq, hash, err)
	}
	// A database from a newer pkid is refused, not downgraded.
	if _, err := dbs[0].pool.Exec(ctx, `INSERT INTO schema_migrations VALUES ($1, 'later')`, LatestSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if d, err := Open(ctx, dsn, Options{Password: srv.Password()}); err == nil {
		d.Close(ctx)
		t.Fatal("Open of a newer schema succeeded")
	}
}

// The guards hold for a plain connection as the tables' owner: only
// disabling the triggers (which the tamperer does) gets past them.
func TestGuardsRefuseEdits(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	d := openDB(t, dsn, srv.Password())
	defer d.Close(ctx)
	if err := d.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	c := newCert(1, "node-a")
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
	raw := srv.Connect(t, dsn)
	const crl = `INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, node, created_at, updated_at)
		VALUES ('ca', %d, 'x', 'y', 'h', 'pending', NULL, 'n', 'c', 'u')`
	for _, tc := range []struct {
		stmt string
		ok   bool
	}{
		{`UPDATE audit SET event = '{}' WHERE seq = 1`, false},
		{`DELETE FROM audit WHERE seq = 1`, false},
		{`TRUNCATE audit`, false},
		{`DELETE FROM certificates`, false},
		{`TRUNCATE certificates`, false},
		{`UPDATE certificates SET der = '\x00'`, false},
		{`UPDATE certificates SET status = 'pending'`, false},
		{`UPDATE certificates SET serial = 'ff'`, false},
		{`UPDATE certificates SET node = 'another'`, false},
		{`UPDATE certificates SET status = 'revoked', revoked_at = 'now'`, true}, // the one move an issued record may make
		{`UPDATE certificates SET status = 'issued'`, false},
		{fmt.Sprintf(crl, 2), true},
		{fmt.Sprintf(crl, 1), false}, // a lower number
		{fmt.Sprintf(crl, 2), false}, // the same one
		{`UPDATE crls SET node = 'another'`, false},
		{`UPDATE crls SET status = 'aborted'`, true},
		{`UPDATE crls SET status = 'pending'`, false},
		{`DELETE FROM crls`, false},
		{`UPDATE crl_numbers SET last = 0`, false},
		{`DELETE FROM crl_numbers`, false},
		{`UPDATE audit_checkpoints SET hash = ''`, false},
		{`DELETE FROM audit_checkpoints`, false},
		{`INSERT INTO audit_checkpoints VALUES (1, 'h', 'at', 'k', '\x01')`, false}, // not beyond the latest
		{`UPDATE audit_head SET seq = 1`, false},                                    // back
		{`UPDATE audit_head SET seq = 3`, false},                                    // to no entry
		{`DELETE FROM audit_head`, false},
		{`INSERT INTO audit_head VALUES (2, 0, 'x')`, false},
		{`DELETE FROM audit_legacy`, false},
		{`INSERT INTO audit_legacy VALUES (99)`, false},
		{`UPDATE audit_legacy SET through_seq = 99`, false}, // the log is not empty
	} {
		_, err := raw.Exec(ctx, tc.stmt)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v; want success %v", tc.stmt, err, tc.ok)
		}
	}
}

// A password belongs in Options, never in the DSN; no error shows it.
func TestPasswordNeverShown(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	const secret = "s3cret-Pa55"
	for _, bad := range []string{
		strings.Replace(dsn, "pkid@", "pkid:"+secret+"@", 1),
		dsn + "&password=" + secret,
		fmt.Sprintf("host=127.0.0.1 port=%d user=pkid password=%s dbname=x", srv.Port(), secret),
		"postgres://pkid:" + secret + "@[::1/x", // unparsable
	} {
		_, err := Open(ctx, bad, Options{})
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Open of a DSN with a password = %v; want a refusal that does not show it", err)
		}
	}
	_, err := Open(ctx, dsn, Options{Password: secret})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Open with a wrong password = %v; want an error that does not show it", err)
	}
	// Nothing listens on port 1: unavailable, a 503 for the caller.
	if _, err := Open(ctx, "postgres://pkid@127.0.0.1:1/x?sslmode=disable", Options{Password: secret}); !errors.Is(err, record.ErrUnavailable) ||
		strings.Contains(err.Error(), secret) {
		t.Errorf("Open of an unreachable server = %v; want ErrUnavailable, without the password", err)
	}
}
