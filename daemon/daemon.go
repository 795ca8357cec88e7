package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/metrics"
)

// Timings of the lifecycle.
const (
	shutdownGrace = 30 * time.Second // in-flight requests get this long to finish
	probeInterval = 5 * time.Second  // token and database health probes
	probeTimeout  = 3 * time.Second
)

// Info describes the build.
type Info struct {
	Version, Commit string
}

// tokenProber is what readiness needs from the token.
type tokenProber interface {
	Probe(label string) error
}

// storeChecker is what readiness needs from the store.
type storeChecker interface {
	Check(ctx context.Context) error
	CountPending(ctx context.Context) (int, error)
}

// Daemon is a running pkid.
type Daemon struct {
	log        *slog.Logger
	configPath string
	res        *resources
	metrics    *metrics.Metrics
	gen        atomic.Pointer[generation]
	token      tokenProber
	store      storeChecker

	stopping atomic.Bool
	mu       sync.Mutex
	problems []string // from the last probe; empty means ready
	probed   bool
}

func newMetrics(info Info, cfg *ConfigFile) *metrics.Metrics {
	sessions := cfg.HSM.MaxSessions
	if sessions == 0 {
		sessions = 8 // hsm's default
	}
	return metrics.New(metrics.Options{Version: info.Version, Commit: info.Commit, GoVersion: runtime.Version(),
		Routes: []string{api.IssuePath, "/metrics", "/healthz", "/readyz"}, SessionLimit: sessions})
}

// Serve runs pkid until ctx ends: it builds and checks everything, listens,
// tells systemd it is ready, reloads on SIGHUP, and on the end of ctx
// (SIGTERM) becomes not-ready, stops accepting, drains in-flight requests,
// and closes the store before the token.
func Serve(ctx context.Context, configPath string, info Info, log *slog.Logger) error {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	tuneGC()
	d := &Daemon{log: log, configPath: configPath, metrics: newMetrics(info, cfg)}
	if d.res, err = openResources(ctx, cfg, d.metrics, log); err != nil {
		return err
	}
	d.token, d.store = d.res.token, d.res.store
	defer func() {
		if err := d.res.Close(); err != nil {
			log.Error("closing token and database", "error", err)
		}
	}()
	gen, err := buildGeneration(ctx, cfg, d.res, d.metrics, log)
	if err != nil {
		return err
	}
	d.install(gen)
	if err := d.recoverPending(ctx); err != nil {
		return err
	}
	d.probe(ctx)

	apiSrv, apiDone, err := d.listenAPI(cfg.Listen, cfg.limits())
	if err != nil {
		return err
	}
	metSrv, metDone, err := d.listenMetrics(cfg)
	if err != nil {
		apiSrv.Close()
		return err
	}
	log.Info("serving", "listen", cfg.Listen, "metricsListen", cfg.MetricsListen,
		"profiles", len(cfg.Profiles), "cas", len(gen.cas), "version", info.Version)
	notify(log, sdnotify.SdNotifyReady)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	probes := time.NewTicker(probeInterval)
	defer probes.Stop()
	var watchdog <-chan time.Time
	if interval, err := sdnotify.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		watchdog = t.C
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			notify(log, sdnotify.SdNotifyReloading)
			d.reload(ctx)
			notify(log, sdnotify.SdNotifyReady)
		case <-probes.C:
			d.probe(ctx)
		case <-watchdog:
			go d.watchdogTick() // never on the main loop's time
		case err := <-apiDone:
			runErr = fmt.Errorf("API listener stopped: %w", err)
			break loop
		case err := <-metDone:
			runErr = fmt.Errorf("metrics listener stopped: %w", err)
			break loop
		}
	}

	d.stopping.Store(true)
	notify(log, sdnotify.SdNotifyStopping)
	log.Info("shutting down: draining in-flight requests", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := apiSrv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("draining: %w", err))
	}
	if err := metSrv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("stopping metrics listener: %w", err))
	}
	log.Info("stopped")
	return runErr
}

// GC defaults for the issuance hot path, unless the operator set GOGC or
// GOMEMLIMIT: collect less often (each issuance allocates ~160 KB of
// short-lived objects), under a soft memory limit that keeps RSS bounded.
const (
	gcPercent   = 400
	memoryLimit = 256 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// notifyTimeout bounds how long a notification may block: a notify socket
// whose reader stopped must never stall the main loop (and with it SIGTERM).
const notifyTimeout = time.Second

func notify(log *slog.Logger, state string) {
	done := make(chan error, 1)
	go func() {
		_, err := sdnotify.SdNotify(false, state)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("sd_notify failed", "state", state, "error", err)
		}
	case <-time.After(notifyTimeout):
		log.Warn("sd_notify blocked; the service manager is not reading its socket", "state", state)
	}
}

// recoverPending reports and resolves the records an earlier run left
// pending (it stopped between reserving a serial and finalizing the
// record). No client received those certificates: the response is written
// only after finalization, and the leaf keys died with that run.
func (d *Daemon) recoverPending(ctx context.Context) error {
	n, err := d.res.store.CountPending(ctx)
	if err != nil {
		return fmt.Errorf("counting pending records: %w", err)
	}
	d.metrics.SetPending(n)
	if n == 0 {
		return nil
	}
	d.log.Warn("pending records left by an earlier run that stopped before finalizing them; resolving them as aborted", "count", n)
	recovered, err := d.res.store.AbortPending(ctx,
		"recovered at start-up: the previous run stopped after reserving this serial and before finalizing; the certificate, if signed, was never returned", time.Now().UTC())
	if err != nil {
		return fmt.Errorf("resolving pending records: %w", err)
	}
	for _, r := range recovered {
		d.log.Warn("resolved pending record", "certificateId", r.ID, "serial", r.Serial, "profile", r.Profile)
	}
	d.metrics.ObserveRecovered(len(recovered))
	return nil
}

// install makes g the generation new requests use.
func (d *Daemon) install(g *generation) {
	d.gen.Store(g)
	d.metrics.SetConfig(g.profileNames(), g.caNames())
	g.publishExpiries(d.metrics)
}

// reload builds a new generation from the config file and swaps it in; a
// config that fails any check is refused and the running one stays.
func (d *Daemon) reload(ctx context.Context) {
	old := d.gen.Load()
	err := func() error {
		cfg, err := LoadConfig(d.configPath)
		if err != nil {
			return err
		}
		if fixed := restartOnly(old.cfg, cfg); fixed != "" {
			return fmt.Errorf("%s cannot change on reload; restart pkid to apply it", fixed)
		}
		g, err := buildGeneration(ctx, cfg, d.res, d.metrics, d.log)
		if err != nil {
			return err
		}
		d.install(g)
		return nil
	}()
	d.metrics.ObserveReload(err == nil)
	if err != nil {
		d.log.Error("reload refused; the running configuration stays in force", "error", err)
		return
	}
	d.log.Info("reloaded configuration", "profiles", len(d.gen.Load().cfg.Profiles))
}

// restartOnly names a setting that differs between a and b but that only a
// restart can apply, or "".
func restartOnly(a, b *ConfigFile) string {
	switch {
	case a.Listen != b.Listen:
		return "listen"
	case a.MetricsListen != b.MetricsListen:
		return "metricsListen"
	case a.Database != b.Database:
		return "database"
	case !reflect.DeepEqual(a.HSM, b.HSM):
		return "hsm"
	case !reflect.DeepEqual(a.MetricsTLS, b.MetricsTLS):
		return "metricsTLS"
	case listenerLimits(a) != listenerLimits(b):
		return "limits (timeouts and header size)"
	}
	return ""
}

// listenerLimits are the limits baked into the API listener at start.
func listenerLimits(c *ConfigFile) [5]int64 {
	l := c.limits()
	return [5]int64{int64(l.readHeaderTimeout), int64(l.readTimeout), int64(l.writeTimeout),
		int64(l.idleTimeout), int64(l.maxHeaderBytes)}
}

// probe checks the token and the database and records the result for
// /readyz, pkid_hsm_up and the watchdog.
func (d *Daemon) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var problems []string
	g := d.gen.Load()
	tokenErr := make(chan error, 1)
	go func() { tokenErr <- d.token.Probe(g.probeLabel) }() // PKCS#11 calls take no context
	select {
	case err := <-tokenErr:
		if err != nil {
			problems = append(problems, "token: "+err.Error())
		}
	case <-ctx.Done():
		problems = append(problems, "token: no answer within "+probeTimeout.String())
	}
	d.metrics.SetHSMUp(len(problems) == 0)
	if err := d.store.Check(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	if n, err := d.store.CountPending(ctx); err == nil {
		d.metrics.SetPending(n)
	}
	d.mu.Lock()
	if len(problems) > 0 && (len(d.problems) == 0 || !d.probed) {
		d.log.Error("not ready", "problems", problems)
	} else if len(problems) == 0 && len(d.problems) > 0 {
		d.log.Info("ready again")
	}
	d.problems, d.probed = problems, true
	d.mu.Unlock()
}

// watchdogTick tells systemd the daemon is alive, but only while the last
// probe found the token and the database usable: a daemon that cannot sign
// should be restarted, not kept.
func (d *Daemon) watchdogTick() {
	if d.ready() {
		notify(d.log, sdnotify.SdNotifyWatchdog)
	}
}

func (d *Daemon) ready() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.probed && len(d.problems) == 0 && !d.stopping.Load()
}

// listenAPI serves the issuance API with the current generation's handler
// and TLS material, so a reload takes effect for new requests and new
// connections while in-flight ones finish on the generation they started.
func (d *Daemon) listenAPI(addr string, lim limits) (*http.Server, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.gen.Load().handler.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return d.gen.Load().tls, nil
			},
		},
		ReadHeaderTimeout: lim.readHeaderTimeout,
		ReadTimeout:       lim.readTimeout,
		WriteTimeout:      lim.writeTimeout,
		IdleTimeout:       lim.idleTimeout,
		MaxHeaderBytes:    lim.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() {
		err := srv.ServeTLS(ln, "", "")
		if !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	return srv, done, nil
}

// listenMetrics serves /metrics, /healthz and /readyz, over TLS (and mTLS
// when a client CA bundle is given) if metricsTLS is configured.
func (d *Daemon) listenMetrics(cfg *ConfigFile) (*http.Server, <-chan error, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", d.serveReadyz)
	if cfg.MetricsPprof {
		mux.HandleFunc("GET /debug/pprof/profile", serveCPUProfile)
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", cfg.MetricsListen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	if cfg.MetricsTLS != nil {
		if srv.TLSConfig, _, err = serverTLS(*cfg.MetricsTLS); err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("metricsTLS: %w", err)
		}
		if srv.TLSConfig.ClientCAs != nil {
			srv.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	done := make(chan error, 1)
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	return srv, done, nil
}

func (d *Daemon) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	problems := append([]string(nil), d.problems...)
	d.mu.Unlock()
	if d.stopping.Load() {
		problems = append(problems, "shutting down")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"status": "not ready", "problems": problems})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "ready"})
}

// CheckConfig loads and checks everything Serve would, without listening.
// It returns warnings (certificates close to expiry) for the operator.
func CheckConfig(ctx context.Context, configPath string, log *slog.Logger) (*ConfigFile, []string, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, nil, err
	}
	m := newMetrics(Info{}, cfg)
	res, err := openResources(ctx, cfg, m, log)
	if err != nil {
		return nil, nil, err
	}
	defer res.Close()
	g, err := buildGeneration(ctx, cfg, res, m, log)
	if err != nil {
		return nil, nil, err
	}
	return cfg, g.warnings, nil
}

// serveCPUProfile writes a CPU profile of ?seconds=N (default 10, at most
// 60) for `go tool pprof`. It is served only when metricsPprof is set.
func serveCPUProfile(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || secs <= 0 {
		secs = 10
	}
	secs = min(secs, 60)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		http.Error(w, "a profile is already running", http.StatusConflict)
		return
	}
	select {
	case <-time.After(time.Duration(secs) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}
