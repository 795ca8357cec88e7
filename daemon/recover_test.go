package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/metrics"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/sqlite"
)

// A running node resolves, on its heartbeat schedule, the pending rows of a
// node whose heartbeat stopped more than nodeTimeout ago, without a start
// of any node, and never its own (DESIGN.md §16).
func TestHeartbeatResolvesStoppedNodesRows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := twoNodesPendingRows(t, ctx)
	logged := newLogEvents("resolved pending record")
	d := heartbeatDaemon(t, st, logged)
	runHeartbeats(t, d)

	resolvedOfNodeB(t, logged, "the stopped node's row was not resolved")
	// Node A's own row stays pending however many beats pass: the beat
	// after the one that resolved node B's row finds nothing more.
	seq, _, err := st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := st.Heartbeat(ctx, "node-a", time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		d.recoverAbandoned(ctx)
	}
	if n, err := st.CountPending(ctx); err != nil || n != 1 {
		t.Errorf("CountPending = %d, %v; want node A's own row", n, err)
	}
	if again, _, _ := st.AuditHead(ctx); again != seq {
		t.Errorf("the audit head moved from %d to %d with nothing to resolve", seq, again)
	}
	select {
	case r := <-logged.recs:
		t.Errorf("resolved another row: node %s", attr(r, "node"))
	default:
	}
}

// twoNodesPendingRows is a SQLite store with one pending row of node-a and
// one of node-b, whose last heartbeat was an hour ago.
func twoNodesPendingRows(t *testing.T, ctx context.Context) *sqlite.DB {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	now := time.Now().UTC()
	if err := st.Heartbeat(ctx, "node-b", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	for k, node := range []string{"node-a", "node-b"} {
		sum := fmt.Sprintf("%064x", k+1)
		c := &record.Certificate{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", k), Serial: fmt.Sprintf("4%039x", k),
			ProfileID: "11111111-0000-4000-8000-000000000001", Profile: "web-server", CA: "ec-issuing", IssuerHash: sum,
			Identity: "uri:spiffe://example.internal/client", RequestID: "req", CommonName: "a.example.internal",
			KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"}, SignatureAlgorithm: "ECDSA-SHA256",
			KeyAlgorithm: "EC_prime256v1", NotBefore: now, NotAfter: now.Add(time.Hour), TBSHash: sum, CreatedAt: now, Node: node}
		if err := st.Reserve(ctx, c); err != nil {
			t.Fatalf("Reserve for %s: %v", node, err)
		}
	}
	return st
}

// heartbeatDaemon is node-a on st, beating every 10ms (nodeTimeout 40ms).
func heartbeatDaemon(t *testing.T, st store.Store, logged logEvents) *Daemon {
	t.Helper()
	svc, err := issuer.NewService(issuer.ServiceConfig{Store: st, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	return &Daemon{log: slog.New(logged), metrics: metrics.New(metrics.Options{}), res: &resources{store: st, service: svc},
		node: "node-a", nodeTimeout: 40 * time.Millisecond}
}

// runHeartbeats runs d's heartbeat loop until the test ends.
func runHeartbeats(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Add(1)
	go func() { defer loop.Done(); d.heartbeatLoop(ctx) }()
	t.Cleanup(func() { cancel(); loop.Wait() }) // before the store closes
}

// resolvedOfNodeB waits for the log line of a resolved row and checks it
// was node-b's; failure says what did not happen.
func resolvedOfNodeB(t *testing.T, logged logEvents, failure string) slog.Record {
	t.Helper()
	select {
	case r := <-logged.recs:
		if node := attr(r, "node").String(); node != "node-b" {
			t.Fatalf("resolved a row of %s", node)
		}
		return r
	case <-time.After(time.Minute): // a failure bound only
		t.Fatal(failure)
	}
	return slog.Record{}
}

// awayBeats is a store whose heartbeats fail while away is set, and that
// notes when the first beat after that was recorded.
type awayBeats struct {
	store.Store
	away      atomic.Bool
	failEvery int           // if set, every failEvery-th beat fails too (a busy writer)
	missed    chan struct{} // a beat failed while away (nil: not watched)
	mu        sync.Mutex
	back      time.Time // the first recorded beat after a failed one
	failed    bool
	beats     int
}

func (s *awayBeats) Heartbeat(ctx context.Context, node string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beats++
	if s.failEvery > 0 && s.beats%s.failEvery == 0 {
		return record.ErrUnavailable
	}
	if s.away.Load() {
		s.failed = true
		select {
		case s.missed <- struct{}{}:
		default:
		}
		return record.ErrUnavailable
	}
	if err := s.Store.Heartbeat(ctx, node, at); err != nil {
		return err
	}
	if s.failed && s.back.IsZero() {
		s.back = time.Now()
	}
	return nil
}

// After a database outage every node's last beat is old. A node whose own
// beats are recorded again gives the others a whole nodeTimeout to record
// theirs before it takes them for stopped: node B's row is resolved no
// sooner than nodeTimeout after node A's first beat back.
func TestHeartbeatJudgesOthersOnlyAfterANodeTimeoutOfItsOwnBeats(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &awayBeats{Store: twoNodesPendingRows(t, ctx), missed: make(chan struct{}, 1)}
	st.away.Store(true)
	logged := newLogEvents("resolved pending record")
	d := heartbeatDaemon(t, st, logged)
	runHeartbeats(t, d)

	<-st.missed
	st.away.Store(false)
	r := resolvedOfNodeB(t, logged, "the stopped node's row was not resolved after the outage")
	st.mu.Lock()
	back := st.back
	st.mu.Unlock()
	if waited := r.Time.Sub(back); waited < d.nodeTimeout {
		t.Errorf("node B's row was resolved %s after node A's beats resumed; nodeTimeout is %s", waited, d.nodeTimeout)
	}
}

// A beat missed now and then (the writer busy) is no outage: a node whose
// every third beat fails still resolves a stopped node's rows, within the
// beats a nodeTimeout takes (four) and a few more — not after the rare run
// of beats slow enough to span a nodeTimeout between two misses.
func TestHeartbeatMissedNowAndThenStillJudgesOthers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &awayBeats{Store: twoNodesPendingRows(t, ctx), failEvery: 3}
	logged := newLogEvents("resolved pending record")
	d := heartbeatDaemon(t, st, logged)
	runHeartbeats(t, d)
	resolvedOfNodeB(t, logged, "with one beat in three missed, the stopped node's row was never resolved")
	st.mu.Lock()
	beats := st.beats
	st.mu.Unlock()
	if beats > 16 {
		t.Errorf("the stopped node's row was resolved only after %d beats", beats)
	}
}
