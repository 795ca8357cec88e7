package daemon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
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

// logEvents forwards every log record whose message is msg: the event a
// test waits for instead of sleeping.
type logEvents struct {
	slog.Handler
	msg  string
	recs chan slog.Record
}

func newLogEvents(msg string) logEvents {
	return logEvents{Handler: slog.NewTextHandler(io.Discard, nil), msg: msg, recs: make(chan slog.Record, 64)}
}

func (h logEvents) Enabled(context.Context, slog.Level) bool { return true }

func (h logEvents) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.recs <- r
	}
	return nil
}

// attr returns the value of r's attribute key.
func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// withAuditStore gives d a real SQLite store, which reports its audit head
// to d, and a signing service whose audit key is key.
func withAuditStore(t *testing.T, d *Daemon, key crypto.Signer) *sqlite.DB {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{OnAudit: d.audit.appended})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	svc, err := issuer.NewService(issuer.ServiceConfig{Store: st, AuditKey: key})
	if err != nil {
		t.Fatal(err)
	}
	d.res = &resources{store: st, service: svc}
	return st
}

// A checkpoint follows every checkpointEvery entries as soon as the store
// reports them, however fast they come, not only when the periodic look
// comes round (here an hour away) — DESIGN.md §6.
func TestCheckpointEveryThousandEntries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &Daemon{metrics: metrics.New(metrics.Options{}), audit: newAuditCount(), housekeeping: time.Hour}
	logged := newLogEvents("audit checkpoint")
	d.log = slog.New(logged)

	// With no one listening, the store's writer never waits.
	for range 3 {
		d.audit.appended(checkpointEvery)
	}
	<-d.audit.wake

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := withAuditStore(t, d, key)
	var loop sync.WaitGroup
	loop.Add(1)
	go func() { defer loop.Done(); d.housekeepingLoop(ctx) }()
	defer loop.Wait()
	defer cancel()

	// append writes n refusals from 8 writers at once.
	var written atomic.Int64
	appendN := func(n int64) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		target := written.Load() + n
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := written.Add(1); k <= target; k = written.Add(1) {
					ev := record.AuditEvent{Time: time.Now().UTC(), Action: record.ActionRefused, Identity: "client",
						Profile: "web-server", Outcome: "forbidden", Reason: fmt.Sprint("refusal ", k)}
					if err := st.Refuse(ctx, ev); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		written.Store(target)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	next := func(what string) int64 {
		t.Helper()
		select {
		case r := <-logged.recs:
			return attr(r, "seq").Int64()
		case <-time.After(time.Minute): // a failure bound only; the tick is an hour away
			t.Fatalf("no checkpoint %s", what)
			return 0
		}
	}

	// Exactly checkpointEvery entries: the checkpoint covers the last.
	appendN(checkpointEvery)
	if seq := next("after the first 1000 entries"); seq != checkpointEvery {
		t.Fatalf("first checkpoint at entry %d, want %d", seq, checkpointEvery)
	}
	// A stream that does not stop at a boundary: every checkpoint comes
	// after at least checkpointEvery new entries (no tick fired), and once
	// it stops fewer than checkpointEvery entries are left unanchored.
	appendN(2500)
	head := written.Load()
	last := int64(checkpointEvery)
	for head-last >= checkpointEvery {
		seq := next(fmt.Sprintf("within %d entries of the head %d (the newest is at %d)", checkpointEvery, head, last))
		if seq-last < checkpointEvery {
			t.Errorf("checkpoint at %d, only %d entries after the one at %d", seq, seq-last, last)
		}
		t.Logf("checkpoint at %d, %d entries after the previous", seq, seq-last)
		last = seq
	}
	rep, err := st.VerifyAudit(ctx, store.VerifyOptions{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != head || rep.LastCheckpoint != last || rep.AfterLastCheckpoint >= checkpointEvery {
		t.Errorf("VerifyAudit: %+v; want %d entries, the last checkpoint at %d", rep, head, last)
	}
}

// failingKey is an audit key whose every signature fails, as a token that
// lost the key would.
type failingKey struct {
	crypto.Signer
	calls atomic.Int64
	once  sync.Once
	tried chan struct{} // closed at the first attempt
}

func (k *failingKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	k.calls.Add(1)
	k.once.Do(func() { close(k.tried) })
	return nil, errors.New("CKR_DEVICE_ERROR")
}

// countingHandler counts the log records whose message is msg, never
// blocking the logger.
type countingHandler struct {
	slog.Handler
	msg   string
	count *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.count.Add(1)
	}
	return nil
}

// A checkpoint that cannot be made is tried again at the next periodic
// look, not after every commit: thousands of entries appended after a
// failure cost no more signatures or error lines.
func TestFailingCheckpointIsNotRetriedPerCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failures := new(atomic.Int64)
	d := &Daemon{metrics: metrics.New(metrics.Options{}), audit: newAuditCount(), housekeeping: time.Hour,
		log: slog.New(countingHandler{Handler: slog.NewTextHandler(io.Discard, nil), msg: "audit checkpoint failed", count: failures})}
	real, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := &failingKey{Signer: real, tried: make(chan struct{})}
	st := withAuditStore(t, d, key)
	var loop sync.WaitGroup
	loop.Add(1)
	go func() { defer loop.Done(); d.housekeepingLoop(ctx) }()

	refuse := func(n int) {
		t.Helper()
		for k := range n {
			ev := record.AuditEvent{Time: time.Now().UTC(), Action: record.ActionRefused, Identity: "client",
				Profile: "web-server", Outcome: "forbidden", Reason: fmt.Sprint("refusal ", k)}
			if err := st.Refuse(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	refuse(checkpointEvery)
	select {
	case <-key.tried:
	case <-time.After(time.Minute): // a failure bound only; the tick is an hour away
		t.Fatal("no checkpoint was attempted after 1000 entries")
	}
	refuse(2 * checkpointEvery) // each commit reports the head
	cancel()
	loop.Wait()
	if n, f := key.calls.Load(), failures.Load(); n != 1 || f != 1 {
		t.Errorf("%d signatures and %d error lines after 3000 entries with a failing audit key, want 1 and 1", n, f)
	}
}
