package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/storetest"
)

// blocked opens a store whose writer is held inside a write until the
// returned release is called, and whose queued hook reports each write
// handed to the writer on the returned channel. This is how the tests
// stand for a stuck disk or a long group without sleeping.
func blocked(t *testing.T) (d *DB, path string, queued <-chan struct{}, release func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "pkid.db")
	d = openDB(t, path)
	q := make(chan struct{}, 4*maxGroup)
	d.writes.Queued = func() { q <- struct{}{} }
	started, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(func() {
		release()
		d.Close(context.Background())
	})
	go d.writes.Submit(context.Background(), false, func(context.Context, *DB) error {
		close(started)
		<-hold
		return nil
	})
	<-started
	<-q // the blocking write itself
	return d, path, q, release
}

// waitQueued waits until n more writes were handed to the writer.
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

// Writes that arrive while the writer is busy share the next commit, and
// each is durable when its caller is answered.
func TestGroupCommitShares(t *testing.T) {
	ctx := context.Background()
	d, path, queued, release := blocked(t)
	const n = 51
	errs := make(chan error, n)
	for k := 0; k < n; k++ {
		go func() { errs <- d.Refuse(ctx, refused(k)) }()
	}
	waitQueued(t, queued, n)
	release()
	for k := 0; k < n; k++ {
		if err := <-errs; err != nil {
			t.Errorf("write %d: %v", k, err)
		}
	}
	st := d.Stats()
	if st.Writes != n+1 || st.Commits > 3 {
		t.Errorf("%d writes in %d commits; want all %d writes in at most 3 commits", st.Writes, st.Commits, n+1)
	}
	t.Logf("%d writes in %d commits", st.Writes, st.Commits)
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := openDB(t, path)
	defer d2.Close(ctx)
	if rep, err := d2.VerifyAudit(ctx, store.VerifyOptions{}); err != nil || rep.Entries != n {
		t.Fatalf("after reopen: %+v, %v; want %d durable entries", rep, err, n)
	}
}

// A write that fails inside a group is rolled back alone.
func TestFailingWriteDoesNotSinkGroup(t *testing.T) {
	ctx := context.Background()
	d, path, queued, release := blocked(t)
	taken := newCert(1000)
	const n = 30
	type result struct {
		k   int
		err error
	}
	results := make(chan result, n)
	for k := 0; k < n; k++ {
		go func() {
			var err error
			switch k % 3 {
			case 0:
				err = d.Refuse(ctx, refused(k))
			case 1:
				err = d.Reserve(ctx, newCert(k))
			case 2: // fails: the record does not exist, or the serial is taken
				if k == 2 {
					err = d.Reserve(ctx, taken)
				} else if k == 5 {
					dup := newCert(k)
					dup.Serial = taken.Serial
					err = d.Reserve(ctx, dup)
				} else {
					err = d.Finalize(ctx, "no-such-id", []byte("der"), issued(k))
				}
			}
			results <- result{k, err}
		}()
	}
	waitQueued(t, queued, n)
	release()
	failed := 0
	for k := 0; k < n; k++ {
		r := <-results
		if r.err != nil {
			failed++
			if r.k%3 != 2 {
				t.Errorf("write %d failed: %v", r.k, r.err)
			}
		}
	}
	// k == 2 and k == 5 race for the serial: exactly one of them wins.
	if failed != n/3-1 {
		t.Errorf("%d writes failed, want %d", failed, n/3-1)
	}
	if st := d.Stats(); st.Commits > 3 {
		t.Errorf("%d commits for %d writes", st.Commits, st.Writes)
	}
	d.Close(ctx)
	d2 := openDB(t, path)
	defer d2.Close(ctx)
	rep, err := d2.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil || rep.Entries != n/3 || rep.Certificates != n/3+1 {
		t.Fatalf("after reopen: %+v, %v; want %d entries and %d records", rep, err, n/3, n/3+1)
	}
}

// Check returns by its deadline while the writer is stuck, and works
// again once it is not.
func TestCheckHonoursDeadline(t *testing.T) {
	d, _, _, release := blocked(t)
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := d.Check(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check with the writer stuck = %v, want a deadline error", err)
	}
	if late := time.Since(start) - deadline; late > 2*time.Second {
		t.Errorf("Check returned %v after its deadline", late)
	}
	release()
	if err := d.Check(context.Background()); err != nil {
		t.Fatalf("Check once the writer is free: %v", err)
	}
}

// Close returns by its deadline while the writer is stuck, leaves the
// writer to finish what was submitted, and a later Close completes.
func TestCloseHonoursDeadline(t *testing.T) {
	d, path, queued, release := blocked(t)
	written := make(chan error, 1)
	go func() { written <- d.Refuse(context.Background(), refused(1)) }()
	waitQueued(t, queued, 1)
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with the writer stuck = %v, want a deadline error", err)
	}
	if late := time.Since(start) - deadline; late > 2*time.Second {
		t.Errorf("Close returned %v after its deadline", late)
	}
	if err := d.Refuse(context.Background(), refused(2)); !errors.Is(err, record.ErrClosed) {
		t.Errorf("write after Close = %v, want ErrClosed", err)
	}
	release()
	if err := <-written; err != nil {
		t.Errorf("the write submitted before Close: %v", err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	d2 := openDB(t, path)
	defer d2.Close(context.Background())
	if seq, _, err := d2.AuditHead(context.Background()); err != nil || seq != 1 {
		t.Errorf("after reopen: head %d, %v; want the write submitted before Close", seq, err)
	}
}

// Writes racing Close are each either durable or refused with ErrClosed;
// none is left waiting.
func TestWritesRacingClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	d := openDB(t, path)
	const n = 200
	var ok atomic.Int64
	var wg sync.WaitGroup
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := d.Refuse(ctx, refused(k)); {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, record.ErrClosed):
				t.Errorf("write %d: %v", k, err)
			}
		}()
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("writes racing Close are still waiting")
	}
	d2 := openDB(t, path)
	defer d2.Close(ctx)
	if seq, _, err := d2.AuditHead(ctx); err != nil || seq != ok.Load() {
		t.Errorf("after reopen: %d entries, %v; %d writes reported durable", seq, err, ok.Load())
	}
}

// BenchmarkIssueWrites is one certificate's writes (reserve, then finalize
// with its audit entry) from 16×GOMAXPROCS concurrent issuers.
func BenchmarkIssueWrites(b *testing.B) {
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(b.TempDir(), "pkid.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close(ctx)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := int(n.Add(1))
			c := newCert(k)
			if err := d.Reserve(ctx, c); err != nil {
				b.Fatal(err)
			}
			if err := d.Finalize(ctx, c.ID, []byte{1}, issued(k)); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := d.Stats()
	b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
}

// Another process appending to the audit log between two of this
// process's commits (as `pkid revoke` does beside a running daemon) does
// not fork the chain: the head is read under the write lock every time.
func TestAnotherWriterKeepsOneChain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	daemon := openDB(t, path)
	if err := daemon.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	operator := openDB(t, path) // a second handle, as a second process would have
	for n := 2; n <= 3; n++ {
		if err := operator.Refuse(ctx, refused(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := daemon.Refuse(ctx, refused(4)); err != nil {
		t.Fatalf("the first writer's next append after the other's: %v", err)
	}
	rep, err := daemon.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil || rep.Entries != 4 {
		t.Fatalf("VerifyAudit = %+v, %v; want one chain of 4 entries", rep, err)
	}
}

// OnAudit reports the chain's head after each commit that appended to it,
// entries another process appended included, and is not called for a
// commit that appended nothing.
func TestOnAuditReportsTheHead(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	var heads storetest.Heads
	d, err := Open(ctx, path, Options{OnAudit: heads.Record})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	if err := d.Refuse(ctx, refused(1)); err != nil {
		t.Fatal(err)
	}
	if err := d.Heartbeat(ctx, "node-1", at(2)); err != nil { // no audit entry
		t.Fatal(err)
	}
	if err := d.Reserve(ctx, newCert(3)); err != nil { // no audit entry
		t.Fatal(err)
	}
	operator := openDB(t, path) // a second process, as `pkid revoke`
	defer operator.Close(ctx)
	for n := 4; n <= 5; n++ {
		if err := operator.Refuse(ctx, refused(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Finalize(ctx, newCert(3).ID, []byte("der"), issued(6)); err != nil {
		t.Fatal(err)
	}
	heads.Want(t, 1, 4)
}
