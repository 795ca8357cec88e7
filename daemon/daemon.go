package daemon

import (
	"context"
	"crypto/tls"
	"encoding/base64"
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
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/metrics"
	"github.com/pkid/pkid/public"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

// Timings of the lifecycle.
const (
	shutdownGrace   = 30 * time.Second // in-flight requests get this long to finish
	backgroundGrace = 5 * time.Second  // then background loops get this long to stop
	probeInterval   = 5 * time.Second  // token and database health probes
	probeTimeout    = 3 * time.Second  // each check of a probe has its own deadline
	housekeeping    = 5 * time.Second  // how often refusal summaries and the checkpoint's age are looked at
	checkpointEvery = 1000             // entries: a checkpoint at least this often ...
	checkpointAfter = time.Minute      // ... or this long after the last one, when there are new entries
)

// auditCount wakes the housekeeping loop as soon as checkpointEvery entries
// follow the newest checkpoint it knows of, so that the chain is anchored
// at least every checkpointEvery entries however fast they are appended
// (DESIGN.md §6); the periodic look covers checkpointAfter. The store's
// writer calls appended after each commit that appended entries: it never
// waits for the loop, so issuance never waits for a checkpoint.
type auditCount struct {
	anchored atomic.Int64  // seq of the newest checkpoint the loop has seen
	wake     chan struct{} // capacity 1: one pending wake-up is enough
}

func newAuditCount() *auditCount { return &auditCount{wake: make(chan struct{}, 1)} }

// appended is told the chain's head after a commit that appended to it.
func (c *auditCount) appended(head int64) {
	if head-c.anchored.Load() < checkpointEvery {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Info describes the build.
type Info struct {
	Version, Commit string
}

// tokenProber is what readiness needs from the token.
type tokenProber interface {
	Probe(label string) error
}

// storeProber is what readiness needs from the store.
type storeProber interface {
	Check(ctx context.Context) error
	CountPending(ctx context.Context) (int, error)
}

// Daemon is a running pkid.
type Daemon struct {
	log             *slog.Logger
	configPath      string
	res             *resources
	metrics         *metrics.Metrics
	gen             atomic.Pointer[generation]
	token           tokenProber
	store           storeProber
	probeTimeout    time.Duration
	backgroundGrace time.Duration // how long a stop waits for the background loops
	node            string        // this node's name in the store (DESIGN.md §16)
	nodeTimeout     time.Duration // a node silent this long is taken for stopped
	audit           *auditCount   // entries appended since the newest checkpoint
	housekeeping    time.Duration // how often housekeepingLoop runs without being woken

	stopping     atomic.Bool
	reloading    atomic.Bool
	tokenProbing atomic.Bool

	mu            sync.Mutex
	problems      []string  // from the last probe; empty means ready
	probed        bool      // a probe has completed
	storeAnswered time.Time // the last time the store's writer answered a probe
}

func newMetrics(info Info, cfg *Config) *metrics.Metrics {
	sessions := cfg.hsm.MaxSessions
	if sessions == 0 {
		sessions = 8 // hsm's default
	}
	o := metrics.Options{Version: info.Version, Commit: info.Commit, GoVersion: runtime.Version(),
		Routes:            append(api.Routes(), public.RouteCRL, public.RouteCA, public.RouteOCSP, "/metrics", "/healthz", "/readyz"),
		SessionLimit:      sessions,
		RejectReasons:     []string{api.RejectNoCredential, api.RejectAmbiguous, api.RejectUnusable, api.RejectNotAllowed, api.RejectInvalidToken},
		RevocationReasons: issuer.RevocationReasons, OCSPStatuses: issuer.OCSPStatuses}
	acmeMetricOptions(&o)
	return metrics.New(o)
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
	d := &Daemon{log: log, configPath: configPath, metrics: newMetrics(info, cfg), probeTimeout: probeTimeout,
		backgroundGrace: backgroundGrace, node: cfg.nodeName, nodeTimeout: cfg.nodeTimeout, audit: newAuditCount(), housekeeping: housekeeping}
	// The store tells d.audit the audit head after each commit that
	// appended to it.
	openDB := func() (store.Store, error) { return openStore(ctx, cfg, d.metrics.ObserveCommit, d.audit.appended) }
	if d.res, err = openResources(ctx, cfg, d.metrics, log, openDB); err != nil {
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
	// The heartbeat comes first: a node that reserves must be seen alive,
	// or another node starting would take its pending rows for abandoned.
	if err := d.res.store.Heartbeat(ctx, d.node, time.Now().UTC()); err != nil {
		return fmt.Errorf("database: heartbeat of node %s: %w", d.node, err)
	}
	if err := d.recoverPending(ctx); err != nil {
		return err
	}
	d.install(ctx, gen)
	d.publishCRLs(ctx)
	d.probe(ctx)

	apiSrv, apiDone, err := d.listenAPI(cfg.listen, cfg.limits)
	if err != nil {
		return err
	}
	metSrv, metDone, err := d.listenMetrics(cfg)
	if err != nil {
		apiSrv.Close()
		return err
	}
	pubSrv, pubDone, err := d.listenPublic(cfg.publicListen)
	if err != nil {
		apiSrv.Close()
		metSrv.Close()
		return err
	}
	// Background work never runs on the main loop, so a hung token or
	// store cannot delay SIGTERM or SIGHUP handling.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	crlLoop := func(ctx context.Context) { d.res.crls.Run(ctx, d.res.store.RevocationCount) }
	ocspLoop := func(ctx context.Context) { d.res.ocsp.Run(ctx, d.res.store.RevocationCount) }
	for _, loop := range []func(context.Context){d.probeLoop, d.heartbeatLoop, d.housekeepingLoop, crlLoop, ocspLoop} {
		background.Add(1)
		go func() { defer background.Done(); loop(bg) }()
	}
	log.Info("serving", "listen", cfg.listen, "metricsListen", cfg.metricsListen, "publicListen", cfg.publicListen,
		"profiles", len(cfg.profiles), "cas", len(gen.cas), "node", d.node, "machineIdentities", len(cfg.machineFiles),
		"accessTokenKeyId", gen.tokenKeyID, "version", info.Version)
	notify(log, sdnotify.SdNotifyReady)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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
			if !d.reloading.CompareAndSwap(false, true) {
				log.Warn("reload requested while one is running; ignored")
				continue
			}
			go func() {
				defer d.reloading.Store(false)
				notify(log, sdnotify.SdNotifyReloading)
				d.reload(bg)
				notify(log, sdnotify.SdNotifyReady)
			}()
		case <-watchdog:
			go d.watchdogTick() // never on the main loop's time
		case err := <-apiDone:
			runErr = fmt.Errorf("API listener stopped: %w", err)
			break loop
		case err := <-metDone:
			runErr = fmt.Errorf("metrics listener stopped: %w", err)
			break loop
		case err := <-pubDone:
			runErr = fmt.Errorf("public listener stopped: %w", err)
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
	if pubSrv != nil {
		if err := pubSrv.Shutdown(sctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("stopping public listener: %w", err))
		}
	}
	if err := d.stopBackground(stopBackground, &background); err != nil {
		runErr = errors.Join(runErr, err)
	} else {
		cctx, ccancel := context.WithTimeout(context.Background(), probeTimeout)
		d.checkpoint(cctx, d.audit.anchored.Load()) // the last entries of this run are anchored too
		ccancel()
	}
	log.Info("stopped")
	return runErr
}

// stopBackground cancels the background loops and waits d.backgroundGrace
// for them. A loop still inside a store write or a token call past that
// (a write, once queued, is waited for whatever the context says) must not
// keep the process from exiting until systemd kills it: the daemon leaves
// without it, and without the last audit checkpoint, which would queue
// behind the same stuck writer. The next run's housekeeping anchors the
// entries it would have (it reads the newest checkpoint from the store).
func (d *Daemon) stopBackground(cancel context.CancelFunc, loops *sync.WaitGroup) error {
	cancel()
	if done, _ := returnsWithin(d.backgroundGrace, func() error { loops.Wait(); return nil }); done {
		return nil
	}
	d.log.Error("background work did not stop; exiting without it and without the last audit checkpoint",
		"waited", d.backgroundGrace.String())
	return fmt.Errorf("background work did not stop within %s", d.backgroundGrace)
}

// GC defaults for the issuance hot path, unless the operator set GOGC or
// GOMEMLIMIT: collect less often (each issuance allocates ~160 KB of
// short-lived objects), under a soft memory limit that keeps RSS bounded.
// The OCSP answer cache is most of a large CA's live heap (~1.5 KB per
// certificate: 100 000 certificates hold ~150 MB); past a few hundred
// thousand certificates, raise GOMEMLIMIT in the unit.
const (
	gcPercent   = 400
	memoryLimit = 512 << 20
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
// pending (it stopped between reserving a serial or CRL number and
// finalizing it). No client received those certificates: the response is
// written only after finalization, and the leaf keys died with that run.
func (d *Daemon) recoverPending(ctx context.Context) error {
	n, err := d.res.store.CountPending(ctx)
	if err != nil {
		return fmt.Errorf("counting pending records: %w", err)
	}
	d.metrics.SetPending(n)
	if n == 0 {
		return nil
	}
	recovered, err := d.res.store.AbortPending(ctx, d.node, ownRowsOnly,
		"recovered at start-up: the previous run stopped after reserving this serial and before finalizing; the certificate, if signed, was never returned", time.Now().UTC())
	if err != nil {
		return fmt.Errorf("resolving pending records: %w", err)
	}
	if len(recovered) > 0 {
		d.log.Warn("pending records left by an earlier run that stopped before finalizing them; resolved them as aborted", "count", len(recovered))
	}
	d.reportRecovered(ctx, recovered)
	return nil
}

// ownRowsOnly is the staleAfter of the start-up recovery: at start a node
// resolves only its own pending rows (DESIGN.md §16), and those of records
// made before nodes had names (which never beat). Another node's rows are
// the heartbeat loop's to judge, once this node's own beats have been
// recorded for a nodeTimeout: a node starting right after a database
// outage would otherwise take a live node, whose last beat is as old as
// the outage, for stopped.
const ownRowsOnly = 100 * 365 * 24 * time.Hour

// recoverAbandoned resolves the pending rows of the nodes whose heartbeat
// stopped more than nodeTimeout ago (DESIGN.md §16), so that a node that
// stays dead does not leave them pending — and the pending-records alert
// firing — until some node starts. This node's own rows and those of live
// nodes are left alone: they may be being signed.
func (d *Daemon) recoverAbandoned(ctx context.Context) {
	recovered, err := d.res.store.AbortAbandoned(ctx, d.node, d.nodeTimeout,
		"recovered by node "+d.node+": the node that reserved this serial stopped sending heartbeats before finalizing; the certificate, if signed, was never returned", time.Now().UTC())
	if err != nil {
		d.log.Warn("resolving the pending records of stopped nodes", "error", err)
		return
	}
	if len(recovered) > 0 {
		d.log.Warn("pending records left by a node that stopped; resolved them as aborted", "count", len(recovered))
		d.reportRecovered(ctx, recovered)
	}
}

// reportRecovered logs and counts the pending records just resolved.
func (d *Daemon) reportRecovered(ctx context.Context, recovered []store.Recovered) {
	for _, r := range recovered {
		d.log.Warn("resolved pending record", "certificateId", r.ID, "serial", r.Serial, "crlNumber", r.CRLNumber,
			"ca", r.CA, "profile", r.Profile, "node", r.Node, "tbsHash", r.TBSHash)
	}
	d.metrics.ObserveRecovered(len(recovered))
	if n, err := d.res.store.CountPending(ctx); err == nil { // live nodes' rows in flight stay pending
		d.metrics.SetPending(n)
	}
}

// install makes g the generation new requests use.
func (d *Daemon) install(ctx context.Context, g *generation) {
	d.metrics.SetConfig(g.profileNames(), g.caNames()) // first: what follows is labelled by CA
	g.publishExpiries(d.metrics)
	d.gen.Store(g)
	d.res.crls.SetCAs(g.cas, g.linter)
	if err := d.res.ocsp.SetResponders(ctx, g.ocspKeys, g.linter); err != nil {
		d.log.Error("OCSP responder not ready; retrying in the background", "error", err)
	}
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
		d.install(ctx, g)
		return nil
	}()
	d.metrics.ObserveReload(err == nil)
	if err != nil {
		d.log.Error("reload refused; the running configuration stays in force", "error", err)
		return
	}
	d.log.Info("reloaded configuration", "profiles", len(d.gen.Load().cfg.profiles))
}

// restartOnly names a setting that differs between a and b but that only a
// restart can apply, or "".
func restartOnly(a, b *Config) string {
	switch {
	case a.listen != b.listen:
		return "listen"
	case a.metricsListen != b.metricsListen:
		return "metricsListen"
	case a.database != b.database:
		return "database"
	case !reflect.DeepEqual(a.hsm, b.hsm) || a.poolWait != b.poolWait:
		return "hsm"
	case a.audit != b.audit:
		return "audit"
	case !reflect.DeepEqual(a.metricsTLS, b.metricsTLS):
		return "metricsTLS"
	case listenerLimits(a) != listenerLimits(b):
		return "limits (timeouts, header size and concurrency)"
	case a.publicListen != b.publicListen:
		return "publicListen"
	case a.crl != b.crl:
		return "crl"
	case a.ocsp != b.ocsp:
		return "ocsp"
	case a.nodeName != b.nodeName || a.nodeTimeout != b.nodeTimeout:
		return "nodeName and nodeTimeout"
	case a.dbPassword != b.dbPassword || a.dbMaxConns != b.dbMaxConns || a.limits.databaseBusyTimeout != b.limits.databaseBusyTimeout:
		return "databasePasswordFile, databaseMaxConns and limits.databaseBusyTimeout"
	case a.metricsPprof != b.metricsPprof:
		return "metricsPprof"
	case a.tokens.PerClientPerMinute != b.tokens.PerClientPerMinute || a.tokens.PerSourcePerMinute != b.tokens.PerSourcePerMinute ||
		a.tokens.Burst != b.tokens.Burst:
		return "accessTokens login limits"
	}
	return ""
}

// listenerLimits are the limits baked into the API listener and the
// admission state at start.
func listenerLimits(c *Config) [7]int64 {
	l := c.limits
	return [7]int64{int64(l.readHeaderTimeout), int64(l.readTimeout), int64(l.writeTimeout),
		int64(l.idleTimeout), int64(l.maxHeaderBytes), int64(l.maxConcurrent), int64(l.maxPerIdentity)}
}

// probeLoop probes the token and the database until ctx ends.
func (d *Daemon) probeLoop(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.probe(ctx)
		}
	}
}

// probe checks the token and the database, each under its own deadline,
// and records the result for /readyz, pkid_hsm_up and the watchdog.
func (d *Daemon) probe(ctx context.Context) {
	var problems []string
	if err := d.probeToken(ctx); err != nil {
		problems = append(problems, "token: "+err.Error())
	}
	d.metrics.SetHSMUp(len(problems) == 0)

	sctx, cancel := context.WithTimeout(ctx, d.probeTimeout)
	err := d.store.Check(sctx)
	answered := !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if n, err := d.store.CountPending(sctx); err == nil {
		d.metrics.SetPending(n)
	}
	cancel()

	d.mu.Lock()
	defer d.mu.Unlock()
	if answered {
		d.storeAnswered = time.Now()
	}
	if len(problems) > 0 && (len(d.problems) == 0 || !d.probed) {
		d.log.Error("not ready", "problems", problems)
	} else if len(problems) == 0 && len(d.problems) > 0 {
		d.log.Info("ready again")
	}
	d.problems, d.probed = problems, true
}

// probeToken asks the token to answer within probeTimeout. PKCS#11 calls
// take no context, so the call runs aside; while one is still unanswered
// no second one is started.
func (d *Daemon) probeToken(ctx context.Context) error {
	if !d.tokenProbing.CompareAndSwap(false, true) {
		return errors.New("the previous probe has still no answer")
	}
	label := d.gen.Load().probeLabel
	done := make(chan error, 1)
	go func() {
		err := d.token.Probe(label)
		// Cleared before the answer is sent, so that a probe that got its
		// answer never finds the next one refused.
		d.tokenProbing.Store(false)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d.probeTimeout):
		return fmt.Errorf("no answer within %s", d.probeTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchdogTick tells systemd the daemon is alive. It runs when the main
// loop ticks, and pings only if the store's writer answered lately: a
// daemon whose writer is wedged should be restarted. A token that is down
// does not stop the pings — pkid heals the token itself and answers 503
// meanwhile; a restart would only turn 503s into refused connections.
func (d *Daemon) watchdogTick() {
	d.mu.Lock()
	alive := time.Since(d.storeAnswered) < 3*probeInterval
	d.mu.Unlock()
	if alive && !d.stopping.Load() {
		notify(d.log, sdnotify.SdNotifyWatchdog)
	}
}

// heartbeatLoop tells the other nodes this one is alive, four times per
// nodeTimeout, until ctx ends, and after each beat resolves the pending
// rows of nodes whose heartbeat stopped, then its own rows of requests the
// database cut. A missed beat is logged (and no other node's rows are
// resolved on it); three in a row and the others may resolve this node's
// in-flight reservations as abandoned. A beat may take up to its interval,
// not probeTimeout: it waits in the store's writer behind issuance, and a
// busy node is not a stopped one.
//
// Other nodes are judged only once this node's own beats have been
// recorded for a whole nodeTimeout with no two missed in a row (one, under
// a busy writer, is no outage): after a database outage every node's last
// beat is old, and the first node back must give the others that long to
// record theirs before it takes them for stopped.
func (d *Daemon) heartbeatLoop(ctx context.Context) {
	var beatingSince time.Time
	missed := 2 // as if after an outage: the loop's first beat starts the clock
	every(ctx, d.nodeTimeout/4, d.nodeTimeout/4, func(ctx context.Context) {
		now := time.Now()
		if err := d.res.store.Heartbeat(ctx, d.node, now.UTC()); err != nil {
			d.log.Warn("heartbeat not recorded", "node", d.node, "error", err)
			missed++
			return
		}
		if missed >= 2 {
			beatingSince = now
		}
		missed = 0
		if now.Sub(beatingSince) >= d.nodeTimeout {
			d.recoverAbandoned(ctx)
		}
		d.resolveUnfinished(ctx)
	})
}

// resolveUnfinished aborts this node's pending rows whose requests ended
// while the store could not record their outcome (a finalize the database
// failed): once a heartbeat is recorded the store is back, and those rows
// need not wait for a restart.
func (d *Daemon) resolveUnfinished(ctx context.Context) {
	done, err := d.res.service.ResolveUnfinished(ctx)
	if err != nil {
		d.log.Warn("resolving the pending rows of ended requests", "error", err)
	}
	if len(done) == 0 {
		return
	}
	recovered := make([]store.Recovered, len(done))
	for k, u := range done {
		recovered[k] = store.Recovered{ID: u.ID, Serial: u.Serial, Profile: u.Profile, CA: u.CA, Node: d.node,
			CRLNumber: u.CRLNumber, TBSHash: u.TBSHash}
	}
	d.log.Warn("pending records of requests that ended while the database was away; resolved them as aborted", "count", len(done))
	d.reportRecovered(ctx, recovered)
}

// every calls fn each interval, with a deadline of timeout, until ctx
// ends.
func every(ctx context.Context, interval, timeout time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		fn(tctx)
		cancel()
	}
}

// housekeepingLoop writes the refusal summaries owed and anchors the audit
// chain with signed checkpoints, every d.housekeeping and whenever the
// store reports checkpointEvery new entries, until ctx ends.
func (d *Daemon) housekeepingLoop(ctx context.Context) {
	t := time.NewTicker(d.housekeeping)
	defer t.Stop()
	wake := d.audit.wake
	for {
		tick := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tick = true
		case <-wake:
		}
		tctx, cancel := context.WithTimeout(ctx, probeTimeout)
		if tick {
			if err := d.res.service.FlushRefusals(tctx); err != nil {
				d.log.Warn("writing refusal summaries", "error", err)
			}
		}
		// After a failed attempt only the tick tries again: every commit
		// wakes the loop, and a checkpoint that cannot be made (the token,
		// the database) must not cost a signature and an error per commit.
		if d.anchorAudit(tctx) {
			wake = d.audit.wake
		} else {
			wake = nil
		}
		cancel()
	}
}

// anchorAudit signs a checkpoint when checkpointEvery entries follow the
// newest one, or when any do and it is checkpointAfter old (DESIGN.md §6).
// The newest checkpoint is read from the store each time: another node
// sharing the chain may have made it. It reports false when a checkpoint
// was owed and could not be made.
func (d *Daemon) anchorAudit(ctx context.Context) bool {
	var lastSeq int64
	var lastAt time.Time
	switch cp, err := d.res.store.LatestCheckpoint(ctx); {
	case err == nil:
		lastSeq, lastAt = cp.Seq, cp.Time
		d.metrics.SetAuditCheckpoint(cp.Time)
	case !errors.Is(err, record.ErrNotFound):
		d.log.Warn("reading the latest audit checkpoint", "error", err)
		return false
	}
	d.audit.anchored.Store(lastSeq)
	seq, _, err := d.res.store.AuditHead(ctx)
	if err != nil {
		d.log.Warn("reading the audit head", "error", err)
		return false
	}
	if seq-lastSeq >= checkpointEvery || (seq > lastSeq && time.Since(lastAt) >= checkpointAfter) {
		cp := d.checkpoint(ctx, lastSeq)
		if cp == nil {
			return d.audit.anchored.Load() > lastSeq // another node anchored first
		}
		d.audit.anchored.Store(cp.Seq)
	}
	return true
}

// checkpoint signs and stores a checkpoint of the audit chain and logs it,
// so that a copy lives outside the database (journald). known is the
// newest checkpoint the caller saw: when the store refuses this one because
// a newer one has appeared since (another node anchored first), that is
// not a failure.
func (d *Daemon) checkpoint(ctx context.Context, known int64) *record.Checkpoint {
	cp, err := d.res.service.Checkpoint(ctx)
	if err != nil {
		if errors.Is(err, record.ErrInvalidCheckpoint) {
			if latest, lerr := d.res.store.LatestCheckpoint(ctx); lerr == nil && latest.Seq > known {
				d.log.Info("audit checkpoint made by another node first", "seq", latest.Seq, "hash", latest.Hash)
				d.audit.anchored.Store(latest.Seq)
				return nil
			}
		}
		d.log.Error("audit checkpoint failed", "error", err)
		return nil
	}
	if cp == nil {
		return nil
	}
	d.metrics.SetAuditCheckpoint(cp.Time)
	d.log.Info("audit checkpoint", "seq", cp.Seq, "hash", cp.Hash, "time", cp.Time.Format(time.RFC3339Nano),
		"keyId", cp.KeyID, "signature", base64.StdEncoding.EncodeToString(cp.Signature),
		"verify", fmt.Sprintf("pkid audit verify --checkpoint %d:%s", cp.Seq, cp.Hash))
	return cp
}

func (d *Daemon) ready() ([]string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	problems := append([]string(nil), d.problems...)
	if !d.probed {
		problems = append(problems, "starting")
	}
	if d.stopping.Load() {
		problems = append(problems, "shutting down")
	}
	return problems, len(problems) == 0
}

// listenAPI serves the API with the current generation's handler and TLS
// material, so a reload takes effect for new requests and new connections
// while in-flight ones finish on the generation they started.
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

// publishCRLs makes every CA's first CRL before pkid says it is ready, so
// that the CRL URLs in its certificates answer from the start. A CRL that
// cannot be made is logged and counted; the publisher keeps trying.
func (d *Daemon) publishCRLs(ctx context.Context) {
	d.res.crls.Publish(ctx, d.res.store.RevocationCount)
}

// listenPublic serves the current generation's CRLs and CA certificates
// over plain HTTP (DESIGN.md §13), with its own, tighter limits; "" means
// no public listener.
func (d *Daemon) listenPublic(addr string) (*http.Server, <-chan error, error) {
	done := make(chan error, 1)
	if addr == "" {
		return nil, done, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.gen.Load().public.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	return srv, done, nil
}

// listenMetrics serves /metrics, /healthz and /readyz, over TLS (and mTLS
// when a client CA bundle is given) if metricsTLS is configured.
func (d *Daemon) listenMetrics(cfg *Config) (*http.Server, <-chan error, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", d.serveReadyz)
	if cfg.metricsPprof {
		mux.HandleFunc("GET /debug/pprof/profile", serveCPUProfile)
	}
	ln, err := net.Listen("tcp", cfg.metricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", cfg.metricsListen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	if cfg.metricsTLS != nil {
		if srv.TLSConfig, _, _, err = serverTLS(*cfg.metricsTLS); err != nil {
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

// serveReadyz answers from the last probe's result; it never probes itself.
func (d *Daemon) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	problems, ok := d.ready()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"status": "not ready", "problems": problems})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "ready"})
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
