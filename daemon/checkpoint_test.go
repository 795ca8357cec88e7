package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{OnAudit: d.audit.appended})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := issuer.NewService(issuer.ServiceConfig{Store: st, AuditKey: key})
	if err != nil {
		t.Fatal(err)
	}
	d.res = &resources{store: st, service: svc}
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
