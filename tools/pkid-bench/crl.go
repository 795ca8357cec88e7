package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/sqlite"
)

// Issue 9's targets for a CRL of 100 000 entries.
const (
	crlTargetCPU       = 3 * time.Second // to build, lint, sign and store it
	crlMaxDrop         = 1.0 / 3         // issuance throughput while it is made, at most this much lower
	crlLoadConcurrency = 8
)

// Bounds of the CRL part's waits and polls.
const (
	crlFillTimeout   = 20 * time.Minute
	crlReadyTimeout  = 10 * time.Minute
	crlServeTimeout  = 2 * time.Minute // from a revocation to the new CRL being served
	crlPollInterval  = 50 * time.Millisecond
	cpuSampleEvery   = 10 * time.Millisecond
	idleWindow       = 2 * time.Second
	idleShare        = 0.10 // of one core: below it, the daemon counts as idle
	placeholderBytes = 720  // the size of a typical EC leaf's DER
	crlProfileSecs   = 10   // the profile of one more revocation on the idle daemon
)

// crlRun is one CRL the daemon made and how long and how much CPU it took
// until it was served.
type crlRun struct {
	what     string
	ca       string
	wall     time.Duration
	cpu      time.Duration
	number   int64
	entries  int
	derBytes int
	polls    int
	served   bool
	// From the revocation until the daemon was idle again (idle cases
	// only): everything the revocation set off, not only the CRL.
	untilIdle, totalCPU time.Duration
}

// window is issuance throughput over a span of time.
type window struct {
	span time.Duration
	n    int
	cpu  time.Duration // daemon CPU over the span
}

func (w window) rate() float64 {
	if w.span <= 0 {
		return 0
	}
	return float64(w.n) / w.span.Seconds()
}

// crlResult is the CRL part.
type crlResult struct {
	entries, workers     int
	fill, fillCPU        time.Duration
	fillWrites, commits  int64
	dbBytes              int64
	startup              time.Duration // exec to ready
	atStart              crlRun
	settle, settleCPU    time.Duration
	settleSigs           float64
	settled              bool
	control, idle, under crlRun
	before, during       window
	duringSigs           float64 // token signatures from the revocation to the new CRL, under load
	loadErrors           int
	loadFirstErr         string
	get304CPU, get200CPU time.Duration
	peakRSS              int64
	profile              *profileSummary // a revocation on the idle daemon, profiled in a run of its own
	profiled             crlRun
}

// benchCRL fills the fixture's database with revoked certificates through
// the store's own API (the daemon is not running), starts the daemon —
// which makes every CA's first CRL before it is ready — and measures that
// CRL, then one made after one more revocation on an idle daemon, one on
// rsa-issuing as a control (what a revocation costs besides a big CRL),
// and one made while issue-certificate runs at concurrency 8.
func benchCRL(o *options, fx *fixture) (*crlResult, error) {
	out := &crlResult{entries: o.crlEntries, workers: o.crlWorkers}
	caPEM, err := os.ReadFile(fx.path("ca", "ec-issuing.pem"))
	if err != nil {
		return nil, err
	}
	ca, err := ceremony.ReadCertificate(caPEM)
	if err != nil {
		return nil, err
	}
	fmt.Printf("writing %d revoked certificates of ec-issuing into the database (%d goroutines)…\n", o.crlEntries, o.crlWorkers)
	if err := fillRevoked(out, fx.path("pkid.db"), ca); err != nil {
		return nil, err
	}
	for _, f := range []string{"pkid.db", "pkid.db-wal"} {
		if st, err := os.Stat(fx.path(f)); err == nil {
			out.dbBytes += st.Size()
		}
	}
	fmt.Printf("filled in %v (%d writes in %d commits), database %d MiB\n", out.fill.Round(time.Millisecond), out.fillWrites, out.commits, out.dbBytes>>20)

	d, err := startDaemon(o.bin, fx, "pkid-2.log")
	if err != nil {
		return nil, err
	}
	defer d.stop()
	stopSampling := make(chan struct{})
	samples := sampleCPU(d.pid, stopSampling)
	err = d.waitReady(fx.metrics, crlReadyTimeout)
	close(stopSampling)
	cpuSamples := <-samples
	if err != nil {
		return nil, err
	}
	out.startup = d.ready.Sub(d.started)
	pub := newPublicClient()
	if out.atStart, err = startCRL(d, cpuSamples); err != nil {
		return nil, d.withLog(err)
	}
	if st, err := currentCRL(pub, fx, "ec-issuing"); err == nil {
		out.atStart.derBytes, out.atStart.number, out.atStart.entries = len(st.der), st.number, st.entries
	}
	fmt.Printf("CRL at start: %d entries, %d bytes, made in %v with %v daemon CPU; ready after %v\n",
		out.atStart.entries, out.atStart.derBytes, out.atStart.wall, out.atStart.cpu, out.startup)

	// The OCSP responder pre-signs an answer for every unexpired issued or
	// revoked certificate once it runs: wait for that to finish, so that
	// the measurements below see the daemon as it runs afterwards.
	sigs0 := metricSums(fx.metrics, "pkid_hsm_sign_duration_seconds_count")["pkid_hsm_sign_duration_seconds_count"]
	fmt.Println("waiting for the daemon to go idle (OCSP pre-signing)…")
	w := waitIdle(d.pid, o.crlSettle)
	out.settle, out.settleCPU, out.settled = w.quietAt, w.cpuToQuiet, w.idle
	out.settleSigs = metricSums(fx.metrics, "pkid_hsm_sign_duration_seconds_count")["pkid_hsm_sign_duration_seconds_count"] - sigs0
	fmt.Printf("idle after %v: %v daemon CPU, %.0f signatures (settled %t)\n", out.settle, out.settleCPU, out.settleSigs, out.settled)

	client, err := newClient(fx.dir)
	if err != nil {
		return nil, err
	}
	var certs [4]*issued
	for i, body := range []string{ecOnRSABody, ecBody, ecBody, ecBody} {
		if certs[i], err = issueOne(client, fx, body); err != nil {
			return nil, d.withLog(err)
		}
	}
	waitIdle(d.pid, 30*time.Second)

	for _, c := range []struct {
		into *crlRun
		what string
		ca   string
		cert *issued
	}{{&out.control, "control: one revocation on rsa-issuing (small CRL), idle daemon", "rsa-issuing", certs[0]},
		{&out.idle, "one more revocation, idle daemon", "ec-issuing", certs[1]}} {
		st, err := currentCRL(pub, fx, c.ca)
		if err != nil {
			return nil, d.withLog(err)
		}
		if *c.into, err = triggerCRL(d, client, pub, fx, st, c.cert.serial); err != nil {
			return nil, d.withLog(err)
		}
		c.into.what = c.what
		w := waitIdle(d.pid, 2*time.Minute)
		c.into.untilIdle, c.into.totalCPU = c.into.wall+w.quietAt, c.into.cpu+w.cpuTo
		fmt.Printf("%s: served after %v, %v daemon CPU, number %d, %d entries, %d bytes; idle again after %v, %v CPU in all\n", c.what,
			c.into.wall, c.into.cpu, c.into.number, c.into.entries, c.into.derBytes, c.into.untilIdle, c.into.totalCPU)
	}
	out.get304CPU, out.get200CPU = crlGetCost(d, pub, fx)

	// Under load: issue-certificate at concurrency 8, measured right before
	// the revocation and from it until the new CRL is served.
	st, err := currentCRL(pub, fx, "ec-issuing")
	if err != nil {
		return nil, d.withLog(err)
	}
	url, body := "https://"+fx.api+issuePath, []byte(ecBody)
	l := load{concurrency: crlLoadConcurrency, max: o.maxRequests, send: func(int) string { return post(client, url, "application/json", body) }}
	ctx, cancel := context.WithTimeout(context.Background(), o.warmup+o.crlBefore+crlServeTimeout+10*time.Second)
	defer cancel()
	loaded := make(chan sample, 1)
	go func() { loaded <- l.run(ctx) }()
	time.Sleep(o.warmup)
	b0, bcpu0 := time.Now(), daemonCPU(d.pid)
	time.Sleep(o.crlBefore)
	out.before = window{span: time.Since(b0), cpu: daemonCPU(d.pid) - bcpu0}
	sigName := "pkid_hsm_sign_duration_seconds_count"
	sigs := metricSums(fx.metrics, sigName)[sigName]
	t0 := time.Now()
	out.under, err = triggerCRL(d, client, pub, fx, st, certs[2].serial)
	out.duringSigs = metricSums(fx.metrics, sigName)[sigName] - sigs
	cancel()
	s := <-loaded
	if err != nil {
		return nil, d.withLog(err)
	}
	out.under.what = fmt.Sprintf("one more revocation, issue-certificate running at c=%d", crlLoadConcurrency)
	out.during = window{span: out.under.wall, cpu: out.under.cpu}
	t1 := t0.Add(out.under.wall)
	for _, at := range s.done {
		switch {
		case !at.Before(b0) && at.Before(t0):
			out.before.n++
		case !at.Before(t0) && !at.After(t1):
			out.during.n++
		}
	}
	out.loadErrors, out.loadFirstErr = s.errs, s.first
	fmt.Printf("%s: served after %v; issuance %.0f/s before, %.0f/s during (errors %d)\n", out.under.what, out.under.wall,
		out.before.rate(), out.during.rate(), s.errs)
	if o.crlProfile {
		waitIdle(d.pid, 60*time.Second)
		out.profiled, out.profile = profileCRL(o, d, client, pub, fx, certs[3].serial)
	}
	out.peakRSS = peakRSS(d.pid)
	return out, nil
}

// profileCRL takes a daemon CPU profile from just before one more
// revocation on the idle daemon until after its CRL is served, in a run of
// its own so that the profiler's overhead is in none of the measured ones.
func profileCRL(o *options, d *daemon, client, pub *http.Client, fx *fixture, serial string) (crlRun, *profileSummary) {
	path := o.crlPprof
	if path == "" {
		path = filepath.Join(fx.tmp, "crl-revocation.pprof")
	}
	st, err := currentCRL(pub, fx, "ec-issuing")
	if err != nil {
		return crlRun{}, &profileSummary{err: err.Error()}
	}
	fmt.Printf("profiling the daemon for %ds across one more revocation…\n", crlProfileSecs)
	profiled := make(chan error, 1)
	go func() { profiled <- fetchProfile(fx.metrics, path, crlProfileSecs) }()
	time.Sleep(200 * time.Millisecond)
	r, rerr := triggerCRL(d, client, pub, fx, st, serial)
	r.what = "one more revocation, idle daemon, profiled (not a measurement)"
	if err := <-profiled; err != nil {
		return r, &profileSummary{err: err.Error()}
	}
	if rerr != nil {
		return r, &profileSummary{err: rerr.Error()}
	}
	return r, summarizeProfile(o.bin, path, crlPipelineSteps())
}

// crlPipelineSteps names the functions that stand for what the daemon does
// after a revocation (DESIGN.md §13, §14); their cumulative times overlap
// where one calls another.
func crlPipelineSteps() []namedStep {
	return []namedStep{
		{"making and publishing the CRL (issuer.(*CRLPublisher).Refresh)", "github.com/pkid/pkid/issuer.(*CRLPublisher).Refresh"},
		{"… reading the revocations (sqlite.(*DB).Revoked)", "github.com/pkid/pkid/store/sqlite.(*DB).Revoked"},
		{"… turning them into entries (issuer.crlEntries)", "github.com/pkid/pkid/issuer.crlEntries"},
		{"… the pipeline: reserve, lint copy, lint, sign, verify, finalize (issuer.(*Service).signCRL)", "github.com/pkid/pkid/issuer.(*Service).signCRL"},
		{"… … encoding the lint copy (x509.CreateRevocationList)", "crypto/x509.CreateRevocationList"},
		{"… … parsing it back (x509.ParseRevocationList)", "crypto/x509.ParseRevocationList"},
		{"… … zlint's CRL lints (linter.(*Linter).LintCRL)", "github.com/pkid/pkid/linter.(*Linter).LintCRL"},
		{"… … verifying the token's signature (issuer.verifySigned)", "github.com/pkid/pkid/issuer.verifySigned"},
		{"SQLite writer, CRL reservation and DER stored (sqlite.(*DB).writeLoop)", "github.com/pkid/pkid/store/sqlite.(*DB).writeLoop"},
		{"OCSP responder's round after the revocation (issuer.(*OCSPResponder).refresh)", "github.com/pkid/pkid/issuer.(*OCSPResponder).refresh"},
		{"… listing every certificate (issuer.(*OCSPResponder).dueAnswers)", "github.com/pkid/pkid/issuer.(*OCSPResponder).dueAnswers"},
		{"serving the CRL to the bench's polls (http.ServeContent)", "net/http.ServeContent"},
		{"SHA-256 (the ETag of every GET, CRL hashes)", "crypto/sha256.Sum256"},
		{"garbage collector workers (runtime.gcBgMarkWorker)", "runtime.gcBgMarkWorker"},
		{"memory-limit scavenging / assist (runtime.gcAssistAlloc)", "runtime.gcAssistAlloc"},
	}
}

// fillRevoked writes out.entries certificates of ca, each reserved,
// finalized and revoked through store/sqlite as the daemon's pipeline
// would (the records and events have the shape store/storetest gives
// them), from out.workers goroutines so that group commit batches them.
// The DER is a placeholder of a leaf's usual size: nothing on the paths
// measured parses a revoked certificate's DER.
func fillRevoked(out *crlResult, dbPath string, ca *x509.Certificate) error {
	ctx, cancel := context.WithTimeout(context.Background(), crlFillTimeout)
	defer cancel()
	db, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
	if err != nil {
		return err
	}
	issuerHash := sha256Hex(ca.Raw)
	reasons := []string{"KEY_COMPROMISE", "SUPERSEDED", "CESSATION_OF_OPERATION", "UNSPECIFIED", "AFFILIATION_CHANGED", "PRIVILEGE_WITHDRAWN"}
	now := time.Now().UTC().Truncate(time.Second)
	start, cpu0 := time.Now(), cpuNow()
	var next, done atomic.Int64
	var once sync.Once
	var firstErr error
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	var wg sync.WaitGroup
	for w := 0; w < max(out.workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(out.entries) {
					return
				}
				if err := writeRevoked(ctx, db, i, issuerHash, reasons[i%int64(len(reasons))], now); err != nil {
					fail(fmt.Errorf("certificate %d: %w", i, err))
					return
				}
				if n := done.Add(1); n%20000 == 0 {
					fmt.Printf("  %d written (%v)\n", n, time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	wg.Wait()
	out.fill, out.fillCPU = time.Since(start), cpuNow()-cpu0
	st := db.Stats()
	out.fillWrites, out.commits = st.Writes, st.Commits
	cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
	defer ccancel()
	if err := db.Close(cctx); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("filling the database: %w", ctx.Err())
	}
	return firstErr
}

func writeRevoked(ctx context.Context, db *sqlite.DB, i int64, issuerHash, reason string, now time.Time) error {
	var c *record.Certificate
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if c, err = revokedRecord(i, issuerHash, now); err != nil {
			return err
		}
		if err = db.Reserve(ctx, c); !errors.Is(err, record.ErrDuplicateSerial) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("Reserve: %w", err)
	}
	der := placeholderDER(c.ID)
	if err := db.Finalize(ctx, c.ID, der, record.AuditEvent{Time: c.CreatedAt, Action: record.ActionIssued, RequestID: c.RequestID,
		Identity: c.Identity, Profile: c.Profile, Outcome: "issued", CertificateID: c.ID, Serial: c.Serial, DERHash: sha256Hex(der)}); err != nil {
		return fmt.Errorf("Finalize: %w", err)
	}
	at := now.Add(-time.Duration(i%3600) * time.Second)
	if err := db.Revoke(ctx, c.ID, at, reason, record.AuditEvent{Time: at, Action: record.ActionRevoked, RequestID: c.RequestID,
		Identity: c.Identity, Profile: c.Profile, Outcome: "revoked", Reason: reason, CertificateID: c.ID, Serial: c.Serial, CA: c.CA}); err != nil {
		return fmt.Errorf("Revoke: %w", err)
	}
	return nil
}

// revokedRecord is reservation i: a web-server certificate of ec-issuing
// with a random 128-bit serial (lowercase hex, no leading zero octet), a
// 64-hex TBS hash and the CA certificate's hash as issuer, valid for 30
// days from an hour ago so that it stays on the CRL.
func revokedRecord(i int64, issuerHash string, now time.Time) (*record.Certificate, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	b[0] = 0x10 + b[0]%0x70 // positive, and exactly 32 hex digits
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, err
	}
	reqID, err := uuid.NewRandom()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("revoked-%d.example.internal", i)
	return &record.Certificate{
		ID: id.String(), Serial: hex.EncodeToString(b[:]), ProfileID: webServerID, Profile: "web-server",
		CA: "ec-issuing", IssuerHash: issuerHash, Identity: demoIdentity, RequestID: fmt.Sprintf("req-bench%09d", i),
		CertificateRequestID: reqID.String(), CommonName: name, AltNames: []record.AltName{{Type: "dns_name", Value: name}},
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		TBSHash: sha256Hex([]byte("pkid-bench tbs " + id.String())), CreatedAt: now.Add(-time.Hour),
	}, nil
}

func placeholderDER(id string) []byte {
	b := make([]byte, placeholderBytes)
	copy(b, "pkid-bench placeholder, not a certificate: "+id)
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// sampleCPU records the daemon's CPU time every 10 ms until stop is
// closed (bounded by crlReadyTimeout), then sends what it saw.
func sampleCPU(pid int, stop <-chan struct{}) <-chan []cpuSample {
	out := make(chan []cpuSample, 1)
	go func() {
		var s []cpuSample
		tick := time.NewTicker(cpuSampleEvery)
		defer tick.Stop()
		bound := time.After(crlReadyTimeout)
		for {
			s = append(s, cpuSample{time.Now(), daemonCPU(pid)})
			select {
			case <-stop:
				out <- s
				return
			case <-bound:
				out <- s
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// cpuAt is the daemon's CPU time at t: the last sample taken at or before it.
func cpuAt(s []cpuSample, t time.Time) time.Duration {
	i := sort.Search(len(s), func(i int) bool { return s[i].at.After(t) })
	if i == 0 {
		return 0
	}
	return s[i-1].cpu
}

type logLine struct {
	Time    time.Time `json:"time"`
	Msg     string    `json:"msg"`
	CA      string    `json:"ca"`
	Number  int64     `json:"number"`
	Entries int       `json:"entries"`
}

// startCRL finds, in the daemon's log, the "published CRL" line of
// ec-issuing's first CRL and the line before it (the previous CA's CRL:
// the daemon makes them one after the other before it is ready). Wall
// time and CPU are measured between the two, which bounds the time spent
// reading the revocations, building, linting, signing and storing it.
func startCRL(d *daemon, samples []cpuSample) (crlRun, error) {
	f, err := os.Open(d.logPath)
	if err != nil {
		return crlRun{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var prev *logLine
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.IsZero() {
			continue
		}
		if l.Msg == "published CRL" && l.CA == "ec-issuing" {
			from := d.started
			if prev != nil {
				from = prev.Time
			}
			return crlRun{what: "made at start, before the daemon is ready", ca: l.CA, wall: l.Time.Sub(from),
				cpu: cpuAt(samples, l.Time) - cpuAt(samples, from), number: l.Number, entries: l.Entries, served: true}, nil
		}
		prev = &l
	}
	return crlRun{}, errors.New(`no "published CRL" line for ec-issuing in the daemon's log`)
}

// crlState is a CA's CRL as served.
type crlState struct {
	ca      string
	der     []byte
	etag    string
	number  int64
	entries int
}

// getCRL fetches a CA's CRL; with etag set, a 304 returns nil, nil.
func getCRL(pub *http.Client, fx *fixture, ca, etag string) (*crlState, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+fx.public+"/crl/"+ca+".crl", nil)
	if err != nil {
		return nil, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := pub.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		return &crlState{ca: ca, der: der, etag: resp.Header.Get("ETag")}, nil
	}
	return nil, fmt.Errorf("GET /crl/%s.crl: %d", ca, resp.StatusCode)
}

func (s *crlState) parse() error {
	l, err := x509.ParseRevocationList(s.der)
	if err != nil {
		return fmt.Errorf("parsing the CRL of %s: %w", s.ca, err)
	}
	s.number, s.entries = l.Number.Int64(), len(l.RevokedCertificateEntries)
	return nil
}

func currentCRL(pub *http.Client, fx *fixture, ca string) (*crlState, error) {
	s, err := getCRL(pub, fx, ca, "")
	if err == nil {
		err = s.parse()
	}
	return s, err
}

// triggerCRL revokes serial and polls the CA's CRL (conditional GETs
// every 50 ms) until one with a higher number than cur is served.
func triggerCRL(d *daemon, client, pub *http.Client, fx *fixture, cur *crlState, serial string) (crlRun, error) {
	r := crlRun{ca: cur.ca}
	cpu0, t0 := daemonCPU(d.pid), time.Now()
	if _, err := revoke(client, fx, serial, "KEY_COMPROMISE"); err != nil {
		return r, err
	}
	etag := cur.etag
	for time.Since(t0) < crlServeTimeout {
		time.Sleep(crlPollInterval)
		r.polls++
		s, err := getCRL(pub, fx, cur.ca, etag)
		if err != nil {
			return r, err
		}
		if s == nil {
			continue
		}
		at, cpu := time.Now(), daemonCPU(d.pid)
		if err := s.parse(); err != nil {
			return r, err
		}
		if s.number > cur.number {
			r.wall, r.cpu, r.number, r.entries, r.derBytes, r.served = at.Sub(t0), cpu-cpu0, s.number, s.entries, len(s.der), true
			return r, nil
		}
		etag = s.etag
	}
	return r, fmt.Errorf("no new CRL of %s within %s of a revocation", cur.ca, crlServeTimeout)
}

// crlGetCost is the daemon's CPU per GET of ec-issuing's CRL: answered
// 304 to a matching If-None-Match (what the polls above cost), and in full.
func crlGetCost(d *daemon, pub *http.Client, fx *fixture) (per304, per200 time.Duration) {
	cur, err := getCRL(pub, fx, "ec-issuing", "")
	if err != nil {
		return 0, 0
	}
	for _, c := range []struct {
		etag string
		into *time.Duration
	}{{cur.etag, &per304}, {"", &per200}} {
		// Enough requests for /proc's 10 ms ticks to resolve the cost.
		cpu0, ok, start := daemonCPU(d.pid), 0, time.Now()
		for k := 0; k < 400 && time.Since(start) < 2*time.Second; k++ {
			if _, err := getCRL(pub, fx, "ec-issuing", c.etag); err == nil {
				ok++
			}
		}
		if ok > 0 {
			*c.into = (daemonCPU(d.pid) - cpu0) / time.Duration(ok)
		}
	}
	return per304, per200
}

// idleWait is what waitIdle saw, measured from its call: when the quiet
// span began and the CPU used until then, and when it was recognized (2 s
// later) and the CPU until then (which includes the quiet span's few tens
// of milliseconds).
type idleWait struct {
	quietAt, seenAt   time.Duration
	cpuToQuiet, cpuTo time.Duration
	idle              bool
}

// waitIdle waits, at most bound, until the daemon used less than 10% of a
// core over 2 s.
func waitIdle(pid int, bound time.Duration) idleWait {
	start, cpu0 := time.Now(), daemonCPU(pid)
	hist := []cpuSample{{start, cpu0}}
	for time.Since(start) < bound {
		time.Sleep(250 * time.Millisecond)
		now := cpuSample{time.Now(), daemonCPU(pid)}
		hist = append(hist, now)
		for len(hist) > 1 && now.at.Sub(hist[1].at) >= idleWindow {
			hist = hist[1:]
		}
		if from := hist[0]; now.at.Sub(from.at) >= idleWindow &&
			float64(now.cpu-from.cpu) < idleShare*float64(now.at.Sub(from.at)) {
			return idleWait{quietAt: from.at.Sub(start), seenAt: now.at.Sub(start), cpuToQuiet: from.cpu - cpu0, cpuTo: now.cpu - cpu0, idle: true}
		}
	}
	t, c := time.Since(start), daemonCPU(pid)-cpu0
	return idleWait{quietAt: t, seenAt: t, cpuToQuiet: c, cpuTo: c}
}
