package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/postgres/pgtest"
	"github.com/pkid/pkid/store/storetest"
)

// blocked holds d's writer inside a write until release is called, and
// reports on queued each write handed to the writer after it: how the
// tests stand for a long group without sleeping.
func blocked(t *testing.T, d *DB) (queued <-chan struct{}, release func()) {
	t.Helper()
	q := make(chan struct{}, 4*maxGroup)
	d.writes.Queued = func() { q <- struct{}{} }
	started, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	go d.writes.Submit(context.Background(), false, func(context.Context, *group) error {
		close(started)
		<-hold
		return nil
	})
	<-started
	<-q // the blocking write itself
	return q, release
}

func waitQueued(t *testing.T, queued <-chan struct{}, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for k := 0; k < n; k++ {
		select {
		case <-queued:
		case <-timeout:
			t.Fatalf("only %d of %d writes were queued", k, n)
		}
	}
}

// Writes that arrive while the writer is busy share the next commits (at
// most maxGroup to a transaction), and a failing one among them is rolled
// back alone.
func TestGroupCommitShares(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	d := openDB(t, srv.NewDatabase(t), srv.Password())
	t.Cleanup(func() { d.Close(ctx) }) // after blocked's release
	queued, release := blocked(t, d)
	const n = maxGroup - 1 // as many as the queue holds while the writer is busy
	errs := make(chan error, n)
	for k := 0; k < n; k++ {
		go func() {
			switch k % 3 {
			case 0, 1:
				errs <- d.Refuse(ctx, refused(k))
			default: // fails: no such certificate
				if err := d.Finalize(ctx, "no-such-id", []byte("der"), issued(k)); !errors.Is(err, record.ErrNotFound) {
					errs <- errors.New("Finalize of an unknown id did not fail with ErrNotFound")
					return
				}
				errs <- nil
			}
		}()
	}
	waitQueued(t, queued, n)
	release()
	for k := 0; k < n; k++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := d.Stats()
	if st.Writes != n+1 || st.Commits > 3 {
		t.Errorf("%d writes in %d commits; want all %d in at most 3 commits", st.Writes, st.Commits, n+1)
	}
	rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil || rep.Entries != int64(n-n/3) {
		t.Fatalf("VerifyAudit = %+v, %v; want %d entries", rep, err, n-n/3)
	}
}

// Check returns by its deadline while the writer is stuck.
func TestCheckHonoursDeadline(t *testing.T) {
	srv := pgtest.StartServer(t)
	d := openDB(t, srv.NewDatabase(t), srv.Password())
	t.Cleanup(func() { d.Close(context.Background()) })
	_, release := blocked(t, d)
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	if err := d.Check(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, record.ErrUnavailable) {
		t.Fatalf("Check with the writer stuck = %v, want an unavailable deadline error", err)
	}
	if late := time.Since(start) - deadline; late > 2*time.Second {
		t.Errorf("Check returned %v after its deadline", late)
	}
	release()
	if err := d.Check(context.Background()); err != nil {
		t.Fatalf("Check once the writer is free: %v", err)
	}
}

// PostgreSQL stopped under a write in progress and writes waiting: each
// fails with ErrUnavailable, as do Check and reads while it is down; once
// it is back the same DB works again, without reopening, and the chain
// holds exactly the writes that were reported durable.
func TestOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	d, err := Open(ctx, srv.NewDatabase(t), Options{Password: srv.Password(), WriteTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(ctx) })
	if err := d.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	queued, release := blocked(t, d)
	waiting := make(chan error, 1)
	go func() { waiting <- d.Refuse(ctx, refused(2)) }()
	waitQueued(t, queued, 1)
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	release() // the held write's group commits into a server that is gone
	if err := <-waiting; !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("a write waiting while the server stopped = %v, want ErrUnavailable", err)
	}
	if err := d.Refuse(ctx, refused(3)); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("a write while the server is down = %v, want ErrUnavailable", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.Check(cctx); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("Check while the server is down = %v, want ErrUnavailable", err)
	}
	if _, _, err := d.AuditHead(ctx); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("a read while the server is down = %v, want ErrUnavailable", err)
	}

	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatalf("Check after the server is back: %v", err)
	}
	for k := 4; k < 8; k++ {
		if err := d.Refuse(ctx, refused(k)); err != nil {
			t.Fatalf("write %d after the server is back: %v", k, err)
		}
	}
	rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil || rep.Entries != 5 {
		t.Fatalf("VerifyAudit = %+v, %v; want the 5 writes reported durable", rep, err)
	}
}

// A crash of the server under a steady load: every write either succeeds
// or fails with ErrUnavailable, none hangs, the store recovers by itself,
// and every write reported durable is in the chain.
func TestCrashUnderLoad(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	d, err := Open(ctx, srv.NewDatabase(t), Options{Password: srv.Password(), WriteTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				switch err := d.Refuse(ctx, refused(k)); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, record.ErrUnavailable):
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
				default:
					t.Errorf("write: %v", err)
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("writes", func() bool { return ok.Load() > 50 })
	if err := srv.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("failures", func() bool { return failed.Load() > 0 })
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	after := ok.Load()
	waitFor("writes after the restart", func() bool { return ok.Load() > after+50 })
	close(stop)
	wg.Wait()
	rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	// A write whose COMMIT answer was lost in the crash may be durable
	// though reported failed; none reported durable may be missing.
	if rep.Entries < ok.Load() {
		t.Errorf("%d entries, but %d writes were reported durable", rep.Entries, ok.Load())
	}
	t.Logf("%d writes durable, %d failed while the server was down, %d entries", ok.Load(), failed.Load(), rep.Entries)
}

// A lead lives as long as its session: after a server restart the holder
// learns from StillLeads that it lost it, and another node can take it —
// and, once given up, so can the old holder again.
func TestLeadLostWithItsConnection(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	open := func() *DB {
		d, err := Open(ctx, dsn, Options{Password: srv.Password()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close(ctx) })
		return d
	}
	a, b := open(), open()
	if _, ok, err := a.Lead(ctx, "crl:ec-issuing"); err != nil || !ok {
		t.Fatalf("Lead = %v, %v", ok, err)
	}
	if _, ok, _ := b.Lead(ctx, "crl:ec-issuing"); ok {
		t.Fatal("two nodes hold one lead")
	}
	if held, err := a.StillLeads(ctx, "crl:ec-issuing"); err != nil || !held {
		t.Fatalf("StillLeads of a held lead = %v, %v", held, err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if held, _ := a.StillLeads(ctx, "crl:ec-issuing"); held {
		t.Fatal("the holder still believes it leads after the server restarted")
	}
	// A pooled connection the restart killed fails its first use (and
	// is dropped): a node's next round tries again, as this does.
	lead := func(d *DB) (func(), bool, error) {
		release, ok, err := d.Lead(ctx, "crl:ec-issuing")
		if errors.Is(err, record.ErrUnavailable) {
			release, ok, err = d.Lead(ctx, "crl:ec-issuing")
		}
		return release, ok, err
	}
	release, ok, err := lead(b)
	if err != nil || !ok {
		t.Fatalf("the other node cannot take the lost lead: %v, %v", ok, err)
	}
	release()
	if _, ok, err := lead(a); err != nil || !ok {
		t.Errorf("the old holder cannot take the lead back: %v, %v", ok, err)
	}
}

// OnAudit reports the head of the chain every node shares after each
// commit that appended to it, and is not called for a commit that
// appended nothing.
func TestOnAuditReportsTheSharedHead(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	var heads storetest.Heads
	a, err := Open(ctx, dsn, Options{Password: srv.Password(), OnAudit: heads.Record})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b := openDB(t, dsn, srv.Password()) // another node
	defer b.Close(ctx)
	if err := a.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(ctx, "node-a", time.Now()); err != nil { // no audit entry
		t.Fatal(err)
	}
	c := newCert(2, "node-a")
	if err := a.Reserve(ctx, c); err != nil { // no audit entry
		t.Fatal(err)
	}
	for n := 3; n <= 4; n++ {
		if err := b.Refuse(ctx, refused(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Finalize(ctx, c.ID, []byte("der "+c.ID), issued(5)); err != nil {
		t.Fatal(err)
	}
	heads.Want(t, 1, 4)
}
