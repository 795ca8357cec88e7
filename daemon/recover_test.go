package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/metrics"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/sqlite"
)

// A running node resolves, on its heartbeat schedule, the pending rows of a
// node whose heartbeat stopped more than nodeTimeout ago, without a start
// of any node, and never its own (DESIGN.md §16).
func TestHeartbeatResolvesStoppedNodesRows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	now := time.Now().UTC()
	if err := st.Heartbeat(ctx, "node-b", now.Add(-time.Hour)); err != nil { // stopped an hour ago
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
	svc, err := issuer.NewService(issuer.ServiceConfig{Store: st, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	logged := newLogEvents("resolved pending record")
	d := &Daemon{log: slog.New(logged), metrics: metrics.New(metrics.Options{}), res: &resources{store: st, service: svc},
		node: "node-a", nodeTimeout: 40 * time.Millisecond} // beats every 10ms
	var loop sync.WaitGroup
	loop.Add(1)
	go func() { defer loop.Done(); d.heartbeatLoop(ctx) }()
	defer loop.Wait()
	defer cancel()

	select {
	case r := <-logged.recs:
		if node := attr(r, "node").String(); node != "node-b" {
			t.Fatalf("resolved a row of %s", node)
		}
	case <-time.After(time.Minute): // a failure bound only
		t.Fatal("the stopped node's row was not resolved")
	}
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
