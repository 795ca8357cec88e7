package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// Bounds of the pg part.
const (
	pgStartTimeout = 2 * time.Minute
	pgQueryTimeout = 10 * time.Second
	// PostgreSQL keeps a backend's statistics (xact_commit among them) in
	// the backend and flushes them at most once a second while it is busy,
	// and 10 s after it went idle (PGSTAT_MIN_INTERVAL and
	// PGSTAT_IDLE_INTERVAL, src/backend/utils/activity/pgstat.c): the
	// count is read this long after the load stopped, so that it holds
	// every transaction of the load.
	pgStatsSettle = 11 * time.Second
)

// pgResult is the pg part: each case on one SQLite node and on two
// PostgreSQL nodes, in the same run, on the same token and fixture.
type pgResult struct {
	server string // PostgreSQL's version
	cases  []pgCase
}

// pgCase is one load measured on both stores.
type pgCase struct {
	spec        pgSpec
	concurrency int
	sqlite, pg  result // pg: both nodes together
}

func (c pgCase) ratio() float64 {
	if c.sqlite.rate() == 0 {
		return 0
	}
	return c.pg.rate() / c.sqlite.rate()
}

// pgSpec is a request the pg part sends: to which route, and the body of
// request i.
type pgSpec struct {
	name, short, path string
	body              func(i int) []byte
}

// benchPG runs a throw-away PostgreSQL server (store/postgres/pgtest, on
// loopback, fsync on), builds softhsm/setup-demo-ha.sh's fixture on it
// (one token; pkid.yaml on SQLite, node-a.yaml and node-b.yaml on the
// server), and measures each case at each -pg-concurrency first on the
// SQLite node alone, then on both PostgreSQL nodes with half the client
// workers on each.
func benchPG(o *options, tmp string) (*pgResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	srv, err := pgtest.Launch(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer srv.Close()
	dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		return nil, err
	}
	meter, err := newPGMeter(ctx, srv, dsn)
	if err != nil {
		return nil, err
	}
	defer meter.conn.Close(context.Background())
	out := &pgResult{server: meter.version}

	dir := filepath.Join(tmp, "demo-ha")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pwFile := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(srv.Password()+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "PKID_BIN="+o.bin, "PKID_DATABASE="+dsn, "PKID_DATABASE_PASSWORD_FILE="+pwFile)
	var nodeFx []*fixture
	for _, n := range []string{"A", "B"} {
		f := &fixture{tmp: tmp, dir: dir, config: filepath.Join(dir, "node-"+strings.ToLower(n)+".yaml"), api: freeAddr(), metrics: freeAddr(), public: freeAddr()}
		env = append(env, "PKID_"+n+"_API_ADDR="+f.api, "PKID_"+n+"_METRICS_ADDR="+f.metrics, "PKID_"+n+"_PUBLIC_ADDR="+f.public)
		nodeFx = append(nodeFx, f)
	}
	setup := exec.Command("softhsm/setup-demo-ha.sh", dir)
	setup.Env = env
	if b, err := setup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("setup-demo-ha.sh: %v\n%s", err, b)
	}
	if o.pgPprof != "" {
		if err := appendFile(nodeFx[0].config, "metricsPprof: true\n"); err != nil {
			return nil, err
		}
	}
	// The SQLite node is the demo fixture setup-demo-ha.sh builds first,
	// on node-a's listeners (they never run at the same time).
	sqliteFx := *nodeFx[0]
	sqliteFx.config = filepath.Join(dir, "pkid.yaml")

	bodies, err := csrBodies(max(o.csrPool, 1))
	if err != nil {
		return nil, err
	}
	ec := []byte(ecBody)
	specs := []pgSpec{
		{"EC_prime256v1 leaf, EC P-256 CA (issue-certificate, web-server)", "EC issue", issuePath, func(int) []byte { return ec }},
		{"EC P-256 CSR, EC P-256 CA (sign-certificate, web-server)", "CSR sign", signPath, func(i int) []byte { return bodies[i%len(bodies)] }},
	}
	client, err := newClient(dir)
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		for _, n := range o.pgConcurrency {
			out.cases = append(out.cases, pgCase{spec: s, concurrency: n})
		}
	}

	fmt.Println("pg: one node on SQLite…")
	if err := pgCases(o, out, client, []*fixture{&sqliteFx}, nil); err != nil {
		return nil, err
	}
	fmt.Printf("pg: two nodes on PostgreSQL %s…\n", out.server)
	if err := pgCases(o, out, client, nodeFx, meter); err != nil {
		return nil, err
	}
	return out, nil
}

// pgCases starts a daemon on each fixture, one after the other (SoftHSM2
// can fail one of two processes that log in to the same token at the same
// instant), measures every case on them, into the SQLite side of
// out.cases or, with db set, the PostgreSQL one, and stops them.
func pgCases(o *options, out *pgResult, client *http.Client, fxs []*fixture, db *pgMeter) error {
	var nodes []node
	defer func() {
		for _, nd := range nodes {
			nd.d.stop()
		}
	}()
	for _, f := range fxs {
		d, err := startDaemon(o.bin, f, "pkid-pg-"+strings.TrimSuffix(filepath.Base(f.config), ".yaml")+".log")
		if err != nil {
			return err
		}
		nodes = append(nodes, node{d, f.metrics})
		if err := d.waitReady(f.metrics, 60*time.Second); err != nil {
			return err
		}
	}
	if db != nil {
		time.Sleep(pgStatsSettle) // the start-ups' transactions counted before the first case
	}
	for k := range out.cases {
		c := &out.cases[k]
		var next atomic.Int64
		// Each worker keeps to one node: half the workers on each.
		l := load{concurrency: c.concurrency, max: o.maxRequests, worker: func() (func(int) string, func()) {
			url := "https://" + fxs[int(next.Add(1)-1)%len(fxs)].api + c.spec.path
			return func(i int) string { return post(client, url, "application/json", c.spec.body(i)) }, func() {}
		}}
		var prof func()
		if db != nil && o.pgPprof != "" && c.spec.path == issuePath && c.concurrency == slices.Max(o.pgConcurrency) {
			prof = func() {
				if err := fetchProfile(fxs[0].metrics, o.pgPprof, 5); err != nil {
					fmt.Fprintln(os.Stderr, "pg-pprof:", err)
				}
			}
		}
		r, err := measureNodes(nodes, db, l, o.warmup, o.duration, prof)
		store, into := "SQLite, one node", &c.sqlite
		if db != nil {
			store, into = "PostgreSQL, two nodes", &c.pg
		}
		if err != nil {
			return nodes[0].d.withLog(fmt.Errorf("%s, %s c=%d: %w", store, c.spec.name, c.concurrency, err))
		}
		r.name = store
		*into = r
		fmt.Printf("%-22s %-9s c=%-3d %6.0f certs/s  p50 %-8v p99 %-8v cpu %v/cert  db cpu %v/cert  commits %.2f/cert  xacts %.2f/cert  errors %d\n",
			store, c.spec.short, c.concurrency, r.rate(), r.p50, r.p99, r.cpuPerOp, r.dbCPUPerOp, r.commitsPerOp, r.dbXactPerOp, r.errors)
	}
	return nil
}

// pgMeter reads, from the PostgreSQL server the nodes share, what their
// load cost it. Its own connection is to the database "postgres", so its
// queries are not among the nodes' database's transactions.
type pgMeter struct {
	conn     *pgx.Conn
	database string // the nodes'
	version  string
}

func newPGMeter(ctx context.Context, srv *pgtest.Server, nodesDSN string) (*pgMeter, error) {
	nodesCfg, err := pgx.ParseConfig(nodesDSN)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(srv.DSN(pgtest.AppUser, "postgres"))
	if err != nil {
		return nil, err
	}
	cfg.Password = srv.Password()
	m := &pgMeter{database: nodesCfg.Database}
	if m.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := m.conn.QueryRow(ctx, "SHOW server_version").Scan(&m.version); err != nil {
		m.conn.Close(context.Background())
		return nil, err
	}
	return m, nil
}

// commits is pg_stat_database.xact_commit of the nodes' database: every
// transaction committed in it, read-only ones included, as far as the
// backends have flushed their counts.
func (m *pgMeter) commits() (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgQueryTimeout)
	defer cancel()
	var n int64
	if err := m.conn.QueryRow(ctx, "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", m.database).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading pg_stat_database: %w", err)
	}
	return float64(n), nil
}

// settledCommits is commits once the backends have flushed what the load
// just finished counted.
func (m *pgMeter) settledCommits() (float64, error) {
	time.Sleep(pgStatsSettle)
	return m.commits()
}

// serverCPU is the CPU time of each of the server's processes that
// pg_stat_activity lists: the backends and the background processes
// (checkpointer, WAL writer, …), not the postmaster, which only forks.
func (m *pgMeter) serverCPU() map[int]time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), pgQueryTimeout)
	defer cancel()
	out := map[int]time.Duration{}
	rows, err := m.conn.Query(ctx, "SELECT pid FROM pg_stat_activity")
	if err != nil {
		return out
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return out
	}
	for _, pid := range pids {
		out[int(pid)] = daemonCPU(int(pid))
	}
	return out
}

// cpuSince is the server's CPU time since before: a process that began
// in between counts from zero, one that ended is lost (the nodes keep
// their connections, so neither happens under a steady load).
func (m *pgMeter) cpuSince(before map[int]time.Duration) time.Duration {
	var t time.Duration
	for pid, cpu := range m.serverCPU() {
		t += cpu - before[pid]
	}
	return t
}
