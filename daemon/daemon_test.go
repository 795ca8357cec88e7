package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/metrics"
)

type fakeToken struct {
	mu  sync.Mutex
	err error
}

func (f *fakeToken) Probe(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeToken) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// fakeStore answers Check with err, or, while stuck, not before ctx ends.
type fakeStore struct {
	mu    sync.Mutex
	err   error
	stuck bool
}

func (f *fakeStore) Check(ctx context.Context) error {
	f.mu.Lock()
	err, stuck := f.err, f.stuck
	f.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeStore) CountPending(context.Context) (int, error) { return 2, nil }

func (f *fakeStore) setStuck(stuck bool) {
	f.mu.Lock()
	f.stuck = stuck
	f.mu.Unlock()
}

// notifySocket listens where sd_notify will write and returns the messages.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 16)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

func expectMessage(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("notify message %q, want %q", got, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("no notify message, want %q", want)
	}
}

func expectSilence(t *testing.T, ch <-chan string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("unexpected notify message %q", got)
	case <-time.After(200 * time.Millisecond):
	}
}

func testDaemon(tok *fakeToken, st *fakeStore) *Daemon {
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: metrics.New(metrics.Options{}),
		token: tok, store: st, probeTimeout: 100 * time.Millisecond}
	d.gen.Store(&generation{probeLabel: "ca"})
	return d
}

// The watchdog means "alive, and the store's writer answers" (DESIGN.md
// §8): pings keep flowing while the token is down — pkid heals it and
// answers 503 — and stop while the store is stuck; /readyz says why it is
// not ready.
func TestWatchdogFollowsTheStoreNotTheToken(t *testing.T) {
	msgs := notifySocket(t)
	tok, st := &fakeToken{}, &fakeStore{}
	d := testDaemon(tok, st)
	ctx := context.Background()

	d.probe(ctx)
	d.watchdogTick()
	expectMessage(t, msgs, "WATCHDOG=1")
	if code, _ := readyz(d); code != http.StatusOK {
		t.Fatalf("/readyz = %d while healthy", code)
	}

	tok.set(errors.New("CKR_DEVICE_REMOVED"))
	d.probe(ctx)
	d.watchdogTick()
	expectMessage(t, msgs, "WATCHDOG=1")
	code, body := readyz(d)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "CKR_DEVICE_REMOVED") {
		t.Fatalf("/readyz = %d %s while the token fails", code, body)
	}

	// A stuck store: the probe still returns (by its own deadline), and the
	// watchdog stops once the writer has not answered for three probes.
	st.setStuck(true)
	d.mu.Lock()
	d.storeAnswered = time.Now().Add(-3 * probeInterval)
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.probe(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a probe blocked on a stuck store")
	}
	d.watchdogTick()
	expectSilence(t, msgs)
	if code, body := readyz(d); code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline") {
		t.Fatalf("/readyz = %d %s while the store is stuck", code, body)
	}

	st.setStuck(false)
	tok.set(nil)
	d.probe(ctx)
	d.watchdogTick()
	expectMessage(t, msgs, "WATCHDOG=1")

	d.stopping.Store(true)
	d.watchdogTick()
	expectSilence(t, msgs)
	if code, body := readyz(d); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz = %d %s while stopping", code, body)
	}
}

func TestReadyzReportsTheDatabase(t *testing.T) {
	d := testDaemon(&fakeToken{}, &fakeStore{err: errors.New("database not writable: attempt to write a readonly database")})
	d.probe(context.Background())
	code, body := readyz(d)
	var parsed struct {
		Status   string   `json:"status"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(body), &parsed); err != nil || code != 503 || len(parsed.Problems) != 1 ||
		!strings.Contains(parsed.Problems[0], "readonly") {
		t.Fatalf("/readyz = %d %s", code, body)
	}
}

func readyz(d *Daemon) (int, string) {
	w := httptest.NewRecorder()
	d.serveReadyz(w, httptest.NewRequest("GET", "/readyz", nil))
	return w.Code, w.Body.String()
}

func TestRestartOnlySettings(t *testing.T) {
	a := &Config{listen: "127.0.0.1:1", metricsListen: "127.0.0.1:2", database: "x.db", hsm: HSMConfig{Module: "m"}}
	b := *a
	if got := restartOnly(a, &b); got != "" {
		t.Errorf("identical configs: %q", got)
	}
	b.hsm.TokenLabel = "other"
	if got := restartOnly(a, &b); got != "hsm" {
		t.Errorf("changed token: %q", got)
	}
	b = *a
	b.database = "y.db"
	if got := restartOnly(a, &b); got != "database" {
		t.Errorf("changed database: %q", got)
	}
	// The login limiter and the node's name outlive reloads.
	b = *a
	b.tokens.Burst = 99
	if got := restartOnly(a, &b); got != "accessTokens login limits" {
		t.Errorf("changed login burst: %q", got)
	}
	b = *a
	b.nodeName = "elsewhere"
	if got := restartOnly(a, &b); got != "nodeName and nodeTimeout" {
		t.Errorf("changed node name: %q", got)
	}
}

// A stop waits for background loops that end with their context, and no
// longer than backgroundGrace for one stuck in a call that ignores it (a
// queued store write, a token call): systemd must not have to kill pkid.
func TestStopBackgroundDoesNotWaitForeverForAStuckLoop(t *testing.T) {
	var logged strings.Builder
	d := testDaemon(&fakeToken{}, &fakeStore{})
	d.log = slog.New(slog.NewJSONHandler(&logged, nil)) // written before stopBackground returns
	d.backgroundGrace = 200 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	loops.Add(1)
	go func() { defer loops.Done(); <-ctx.Done() }()
	if err := d.stopBackground(cancel, &loops); err != nil {
		t.Fatalf("loops that follow their context: %v", err)
	}

	_, cancel = context.WithCancel(context.Background())
	stuck := make(chan struct{})
	defer close(stuck)
	loops.Add(1)
	go func() { defer loops.Done(); <-stuck }()
	err := d.stopBackground(cancel, &loops)
	if err == nil || !strings.Contains(err.Error(), "did not stop within 200ms") {
		t.Fatalf("a stuck loop: %v", err)
	}
	if !strings.Contains(logged.String(), `"msg":"background work did not stop; exiting without it and without the last audit checkpoint"`) {
		t.Errorf("log:\n%s", logged.String())
	}
}

// blockingCloser is a token whose Close waits for a session that a hung
// call never gives back.
type blockingCloser struct{ release chan struct{} }

func (b blockingCloser) Close() error { <-b.release; return nil }

// Closing the token is bounded: the daemon exits even when a call is
// still inside a hung HSM.
func TestCloseTokenWithinDoesNotWaitForAHungCall(t *testing.T) {
	hung := blockingCloser{release: make(chan struct{})}
	defer close(hung.release)
	if err := closeTokenWithin(hung, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not close within 50ms") {
		t.Errorf("a hung token: %v", err)
	}
	free := blockingCloser{release: make(chan struct{})}
	close(free.release)
	if err := closeTokenWithin(free, time.Minute); err != nil {
		t.Errorf("a token that closes: %v", err)
	}
}
