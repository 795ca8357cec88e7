// Command pkid-bench measures pkid end to end (`make bench`): it builds the
// demo fixture in a temporary directory, measures the floor — the CPU cost
// of generating a leaf key and signing a certificate with the same token
// key in-process, nothing else — and zlint's cost per certificate, starts
// the real daemon and drives it over keep-alive connections from
// 127.0.0.1, and writes BENCHMARKS.md. The parts, each of which -only can
// run alone:
//
//	issue  issue-certificate, EC and RSA leaves, at each -concurrency
//	csr    sign-certificate with EC P-256 CSRs built before the case,
//	       at each -csr-concurrency, plus a 5 s daemon CPU profile at c=16
//	ocsp   cached OCSP answers by POST and GET at -ocsp-concurrency, and
//	       the time from a revocation to an answer that says revoked
//	crl    -crl-entries revoked certificates written into the database
//	       before the daemon starts; the CRL made at start, after one more
//	       revocation, and under issuance load at concurrency 8
//	pg     EC issue-certificate and CSR signing at each -pg-concurrency,
//	       on one SQLite node and on two nodes sharing one PostgreSQL
//	       server (issue 12), side by side
//
// ocsp, issue and csr share one daemon (in that order, so that the OCSP
// revocation does not make the responder pre-sign answers for the
// certificates the other parts issue); crl stops it, fills the database
// and starts a second one on the same fixture. pg runs last, on a fixture
// of its own (softhsm/setup-demo-ha.sh's, on a throw-away PostgreSQL
// server that store/postgres/pgtest starts), so that nothing the other
// parts stored is in either of its databases.
//
// Every loop is bounded by time and count, and all traffic stays on
// loopback. Results are measurements, never assertions.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The demo fixture's profiles (softhsm/setup-demo.sh, DESIGN.md §10).
const (
	webServerID        = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"
	internalServicesID = "a1e5a186-5d12-4ffb-81c5-2e93d83a049f"
	demoIdentity       = "uri:spiffe://example.internal/demo-client"
)

// API routes the bench drives.
const (
	issuePath  = "/api/v3/pki/certificates/issue-certificate"
	signPath   = "/api/v3/pki/certificates/sign-certificate"
	revokePath = "/api/v1/pki/certificates/%s/revoke"
)

// Request bodies of the issue-certificate cases.
const (
	ecBody = `{"profileId":"` + webServerID + `","commonName":"bench.example.internal","ttl":"1h",
		"altNames":[{"type":"dns_name","value":"bench.example.internal"}],"signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`
	rsaBody = `{"profileId":"` + internalServicesID + `","commonName":"bench.svc.example.internal","ttl":"1h",
		"altNames":[{"type":"dns_name","value":"bench.svc.example.internal"}],"signatureAlgorithm":"RSA-SHA256","keyAlgorithm":"RSA_2048"}`
	// An EC leaf on the RSA CA: cheap to issue, for a revocation on rsa-issuing.
	ecOnRSABody = `{"profileId":"` + internalServicesID + `","commonName":"bench.svc.example.internal","ttl":"1h",
		"altNames":[{"type":"dns_name","value":"bench.svc.example.internal"}],"signatureAlgorithm":"RSA-SHA256","keyAlgorithm":"EC_prime256v1"}`
)

// Parts of the benchmark, in the order they run.
const (
	partOCSP  = "ocsp"
	partIssue = "issue"
	partCSR   = "csr"
	partCRL   = "crl"
	partPG    = "pg"
)

type options struct {
	bin, out        string
	parts           map[string]bool
	alg             string // issue cases: leaf key algorithm prefix (EC, RSA); "" for both
	duration        time.Duration
	rsaDuration     time.Duration
	warmup          time.Duration
	maxRequests     int
	concurrency     []int
	pprof           string
	csrConcurrency  []int
	csrPool         int
	csrProfile      bool
	csrPprof        string
	crlEntries      int
	crlWorkers      int
	crlBefore       time.Duration
	crlSettle       time.Duration
	crlProfile      bool
	crlPprof        string
	ocspConcurrency int
	ocspDuration    time.Duration
	pgConcurrency   []int
	pgPprof         string
}

func main() {
	var o options
	var only, concs, csrConcs, pgConcs string
	flag.StringVar(&o.bin, "bin", "bin/pkid", "pkid binary")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report file")
	flag.StringVar(&only, "only", "", "run only these parts, comma-separated: issue, csr, crl, ocsp, pg (default all); EC or RSA alone means issue with -alg of that value")
	flag.StringVar(&o.alg, "alg", "", "issue cases: only those whose leaf key algorithm starts with this (EC or RSA)")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measured time per EC issue case and per CSR case")
	flag.DurationVar(&o.rsaDuration, "rsa-duration", 20*time.Second, "measured time per RSA case and for the RSA floor: RSA key generation time is heavy-tailed, so its mean needs hundreds of samples")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per case")
	flag.IntVar(&o.maxRequests, "max-requests", 200000, "upper bound of requests per case")
	flag.StringVar(&concs, "concurrency", "1,8,32", "issue cases: client concurrency levels")
	flag.StringVar(&o.pprof, "pprof", "", "write a 5s daemon CPU profile of the EC issue c=32 case here")
	flag.StringVar(&csrConcs, "csr-concurrency", "1,8,16,32", "CSR cases: client concurrency levels")
	flag.IntVar(&o.csrPool, "csr-pool", 512, "distinct CSRs built before the CSR cases and sent round-robin")
	flag.BoolVar(&o.csrProfile, "csr-profile", true, "take a 5 s daemon CPU profile while signing CSRs at c=16 (a separate run) and put its top entries in the report")
	flag.StringVar(&o.csrPprof, "csr-pprof", "", "also keep that profile in this file")
	flag.IntVar(&o.crlEntries, "crl-entries", 100000, "revoked certificates of ec-issuing written into the database before the daemon starts")
	flag.IntVar(&o.crlWorkers, "crl-workers", 256, "goroutines writing them (group commit batches up to 256 writes)")
	flag.DurationVar(&o.crlBefore, "crl-before", 4*time.Second, "issuance at c=8 measured right before the revocation that triggers a CRL")
	flag.DurationVar(&o.crlSettle, "crl-settle", 5*time.Minute, "longest wait for the daemon to go idle after start (it pre-signs an OCSP answer for every certificate)")
	flag.BoolVar(&o.crlProfile, "crl-profile", true, "after the CRL measurements, profile the daemon across one more revocation (a separate run) and put its top entries in the report")
	flag.StringVar(&o.crlPprof, "crl-pprof", "", "also keep that profile in this file")
	flag.IntVar(&o.ocspConcurrency, "ocsp-concurrency", 32, "OCSP cases: client concurrency")
	flag.DurationVar(&o.ocspDuration, "ocsp-duration", 5*time.Second, "measured time per OCSP case")
	flag.StringVar(&o.pgPprof, "pg-pprof", "", "write a 5 s CPU profile of PostgreSQL node A during the EC issue case at the highest -pg-concurrency here")
	flag.StringVar(&pgConcs, "pg-concurrency", "16,32", "pg cases: client concurrency levels, split evenly across the two PostgreSQL nodes")
	flag.Parse()
	var err error
	if o.parts, err = parseParts(only, &o.alg); err == nil {
		if o.concurrency, err = parseInts(concs); err == nil {
			if o.csrConcurrency, err = parseInts(csrConcs); err == nil {
				o.pgConcurrency, err = parseInts(pgConcs)
			}
		}
	}
	if err == nil {
		err = run(&o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkid-bench:", err)
		os.Exit(1)
	}
}

func parseParts(only string, alg *string) (map[string]bool, error) {
	all := map[string]bool{partOCSP: true, partIssue: true, partCSR: true, partCRL: true, partPG: true}
	if only == "" {
		return all, nil
	}
	if only == "EC" || only == "RSA" { // the flag's earlier meaning
		*alg = only
		return map[string]bool{partIssue: true}, nil
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		p = strings.TrimSpace(p)
		if !all[p] {
			return nil, fmt.Errorf("-only: unknown part %q (issue, csr, crl, ocsp, pg)", p)
		}
		parts[p] = true
	}
	return parts, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("concurrency %q: want positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// fixture is the demo environment the daemon serves.
type fixture struct {
	tmp, dir, config     string
	api, metrics, public string
}

func (f *fixture) path(p ...string) string { return filepath.Join(append([]string{f.dir}, p...)...) }

func run(o *options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	o.bin = bin
	tmp, err := os.MkdirTemp("", "pkid-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fx := &fixture{tmp: tmp, dir: filepath.Join(tmp, "demo"), api: freeAddr(), metrics: freeAddr(), public: freeAddr()}
	fx.config = fx.path("pkid.yaml")
	if o.parts[partOCSP] || o.parts[partIssue] || o.parts[partCSR] || o.parts[partCRL] { // pg builds its own
		setup := exec.Command("softhsm/setup-demo.sh", fx.dir)
		setup.Env = append(os.Environ(), "PKID_BIN="+bin, "PKID_API_ADDR="+fx.api, "PKID_METRICS_ADDR="+fx.metrics, "PKID_PUBLIC_ADDR="+fx.public)
		if out, err := setup.CombinedOutput(); err != nil {
			return fmt.Errorf("setup-demo.sh: %v\n%s", err, out)
		}
		if o.pprof != "" || (o.parts[partCSR] && o.csrProfile) || (o.parts[partCRL] && o.crlProfile) {
			if err := appendFile(fx.config, "metricsPprof: true\n"); err != nil {
				return err
			}
		}
	}
	rep := &report{opts: o}
	runEC := strings.HasPrefix("EC_prime256v1", o.alg)
	runRSA := strings.HasPrefix("RSA_2048", o.alg)
	if o.parts[partIssue] || o.parts[partCSR] {
		fmt.Println("measuring the floor (in-process: leaf key + signature by the token key)…")
		if rep.floorEC, rep.floorECRate, err = measureFloor(fx.dir, "pkid-ec-issuing", "ca/ec-issuing.pem", "EC_prime256v1", 3*time.Second); err != nil {
			return err
		}
		fmt.Printf("floor EC %v/cert\n", rep.floorEC)
	}
	if o.parts[partIssue] {
		if runRSA {
			if rep.floorRSA, rep.floorRSARate, err = measureFloor(fx.dir, "pkid-rsa-issuing", "ca/rsa-issuing.pem", "RSA_2048", o.rsaDuration); err != nil {
				return err
			}
			fmt.Printf("floor RSA %v/cert\n", rep.floorRSA)
		}
		if rep.lintCost, err = measureLint(2 * time.Second); err != nil {
			return err
		}
		fmt.Printf("zlint %v/cert\n", rep.lintCost)
	}

	if o.parts[partOCSP] || o.parts[partIssue] || o.parts[partCSR] {
		if err := runFirstDaemon(o, fx, rep, runEC, runRSA); err != nil {
			return err
		}
	}
	if o.parts[partCRL] {
		if rep.crl, err = benchCRL(o, fx); err != nil {
			return err
		}
	}
	if o.parts[partPG] {
		if rep.pg, err = benchPG(o, tmp); err != nil {
			return err
		}
	}
	return writeReport(o.out, rep)
}

// runFirstDaemon runs the parts that share a daemon on the fixture as
// setup-demo.sh made it: ocsp, then issue, then csr.
func runFirstDaemon(o *options, fx *fixture, rep *report, runEC, runRSA bool) error {
	d, err := startDaemon(o.bin, fx, "pkid-1.log")
	if err != nil {
		return err
	}
	defer d.stop()
	if err := d.waitReady(fx.metrics, 60*time.Second); err != nil {
		return err
	}
	client, err := newClient(fx.dir)
	if err != nil {
		return err
	}
	if o.parts[partOCSP] {
		if rep.ocsp, err = benchOCSP(o, fx, d, client); err != nil {
			return d.withLog(err)
		}
	}
	if o.parts[partIssue] {
		for _, spec := range []struct {
			name, alg, body string
			floor, duration time.Duration
			on              bool
		}{{"EC_prime256v1 leaf, EC P-256 CA (web-server)", "EC_prime256v1", ecBody, rep.floorEC, o.duration, runEC},
			{"RSA_2048 leaf, RSA-3072 CA (internal-services)", "RSA_2048", rsaBody, rep.floorRSA, o.rsaDuration, runRSA}} {
			if !spec.on {
				continue
			}
			for _, n := range o.concurrency {
				var prof func()
				if o.pprof != "" && spec.alg == "EC_prime256v1" && n == 32 {
					prof = func() {
						if err := fetchProfile(fx.metrics, o.pprof, 5); err != nil {
							fmt.Fprintln(os.Stderr, "pprof:", err)
						}
					}
				}
				url, body := "https://"+fx.api+issuePath, []byte(spec.body)
				l := load{concurrency: n, max: o.maxRequests, send: func(int) string { return post(client, url, "application/json", body) }}
				r, err := measure(d, fx, l, o.warmup, spec.duration, prof)
				if err != nil {
					return d.withLog(fmt.Errorf("%s c=%d: %w", spec.name, n, err))
				}
				r.name, r.keyAlg, r.floor = spec.name, spec.alg, spec.floor
				fmt.Printf("%-48s c=%-3d %8.0f certs/s  p50 %-8v p99 %-8v cpu %v/cert (%.2f× floor)  errors %d  rss %d MiB  group %.1f\n",
					spec.name, n, r.rate(), r.p50, r.p99, r.cpuPerOp, ratio(r.cpuPerOp, r.floor), r.errors, r.peakRSS>>20, r.commitGroup)
				rep.issue = append(rep.issue, r)
			}
		}
	}
	if o.parts[partCSR] {
		if rep.csr, err = benchCSR(o, fx, d, client, rep.floorEC); err != nil {
			return d.withLog(err)
		}
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// daemon is a running `pkid serve`.
type daemon struct {
	cmd     *exec.Cmd
	pid     int
	logPath string
	started time.Time
	ready   time.Time
	done    chan struct{} // closed when the process has exited
}

// startDaemon starts pkid on the fixture and returns without waiting for
// it to be ready, so that a caller can watch its start-up.
func startDaemon(bin string, fx *fixture, logName string) (*daemon, error) {
	d := &daemon{logPath: filepath.Join(fx.tmp, logName), done: make(chan struct{})}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "serve", "--config", fx.config)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	logFile.Close() // the child has its own descriptor
	d.pid = d.cmd.Process.Pid
	go func() { d.cmd.Wait(); close(d.done) }()
	return d, nil
}

func (d *daemon) waitReady(metrics string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return d.withLog(errors.New("the daemon exited during start-up"))
		default:
		}
		if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				d.ready = time.Now()
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d.withLog(fmt.Errorf("the daemon was not ready within %s", within))
}

// stop sends SIGTERM and waits (bounded) for the daemon to drain and exit.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(45 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// withLog adds the end of the daemon's log to err.
func (d *daemon) withLog(err error) error {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("%w\ndaemon log (end):\n%s", err, b)
}

func newClient(dir string) (*http.Client, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", "client.pem"), filepath.Join(dir, "tls", "client-key.pem"))
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // one keep-alive HTTP/1.1 connection per client
	}}, nil
}

// newPublicClient is a plain keep-alive HTTP/1.1 client for the public
// listener, as relying parties use it.
func newPublicClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: false,
	}}
}

// post sends one request and reads the whole answer (so the connection is
// reused); it returns "" for a 200 and a short description otherwise.
func post(c *http.Client, url, contentType string, body []byte) string {
	resp, err := c.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Sprintf("%d %.200s", resp.StatusCode, b)
	}
	return ""
}
