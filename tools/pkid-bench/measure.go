package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/linter"
	"github.com/pkid/pkid/softhsm"
)

// load is a closed loop: concurrency workers, each sending its next
// request when the previous one is answered, until the context ends or max
// requests were sent.
type load struct {
	concurrency int
	max         int
	send        func(i int) string // request number i; "" on success, else what went wrong
	// worker, if set, is called once per worker for that worker's own
	// send (a connection of its own) and a function releasing it; send is
	// then not used.
	worker func() (send func(i int) string, release func())
}

// sample is what one run of a load saw.
type sample struct {
	lat   []time.Duration // successful requests
	done  []time.Time     // when each successful request was answered
	errs  int
	first string
}

func (l load) run(ctx context.Context) sample {
	var mu sync.Mutex
	var s sample
	sent := 0
	var wg sync.WaitGroup
	for w := 0; w < l.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send := l.send
			if l.worker != nil {
				var release func()
				send, release = l.worker()
				defer release()
			}
			for ctx.Err() == nil {
				mu.Lock()
				if sent >= l.max {
					mu.Unlock()
					return
				}
				i := sent
				sent++
				mu.Unlock()
				start := time.Now()
				e := send(i)
				end := time.Now()
				mu.Lock()
				if e != "" {
					s.errs++
					if s.first == "" {
						s.first = e
					}
				} else {
					s.lat = append(s.lat, end.Sub(start))
					s.done = append(s.done, end)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return s
}

func (l load) runFor(d time.Duration) sample {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.run(ctx)
}

// result is one measured case.
type result struct {
	name          string
	keyAlg        string
	concurrency   int
	n             int
	errors        int
	elapsed       time.Duration
	p50, p90, p99 time.Duration
	cpuPerOp      time.Duration // daemon CPU per successful request (every node's)
	clientPerOp   time.Duration // this process's CPU per successful request
	peakRSS       int64         // the largest node's
	commitGroup   float64
	commitsPerOp  float64 // the store writers' group commits per successful request
	floor         time.Duration
	firstErr      string
	// With a PostgreSQL server measured alongside (measureNodes' db):
	dbCPUPerOp  time.Duration // the server's processes' CPU per successful request
	dbXactPerOp float64       // transactions the nodes' database committed per certificate
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// node is a running daemon and its metrics listener.
type node struct {
	d       *daemon
	metrics string
}

// measure is measureNodes for the one daemon of fx, without a database
// server to watch.
func measure(d *daemon, fx *fixture, l load, warmup, duration time.Duration, prof func()) (result, error) {
	return measureNodes([]node{{d, fx.metrics}}, nil, l, warmup, duration, prof)
}

// measureNodes warms l up, then runs it for duration and measures it:
// latency, throughput, the daemons' CPU per request from /proc/PID/stat
// (summed over nodes, which share the load) and this process's own, and
// the store writers' group commits from the daemons' metrics. With db set
// it also measures the PostgreSQL server the nodes share (pgMeter). prof,
// if set, runs alongside the measured run and is waited for before
// measureNodes returns.
func measureNodes(nodes []node, db *pgMeter, l load, warmup, duration time.Duration, prof func()) (result, error) {
	var xact0 float64
	if db != nil {
		var err error
		if xact0, err = db.commits(); err != nil {
			return result{}, err
		}
	}
	warm := l.runFor(warmup)
	var profiling sync.WaitGroup
	if prof != nil {
		profiling.Add(1)
		go func() { defer profiling.Done(); prof() }()
	}
	var srv0 map[int]time.Duration
	if db != nil {
		srv0 = db.serverCPU()
	}
	sum0, cnt0 := commitStats(nodes)
	cpu0, own0, t0 := nodesCPU(nodes), cpuNow(), time.Now()
	s := l.runFor(duration)
	elapsed, cpu, own := time.Since(t0), nodesCPU(nodes)-cpu0, cpuNow()-own0
	var srv time.Duration
	if db != nil {
		srv = db.cpuSince(srv0)
	}
	sum1, cnt1 := commitStats(nodes)
	profiling.Wait()
	r := result{concurrency: l.concurrency, n: len(s.lat), errors: s.errs, elapsed: elapsed, firstErr: s.first}
	for _, nd := range nodes {
		r.peakRSS = max(r.peakRSS, peakRSS(nd.d.pid))
	}
	if len(s.lat) == 0 {
		return r, fmt.Errorf("no successful request (%s)", s.first)
	}
	n := time.Duration(len(s.lat))
	r.p50, r.p90, r.p99 = percentiles(s.lat)
	r.cpuPerOp, r.clientPerOp, r.dbCPUPerOp = cpu/n, own/n, srv/n
	if cnt1 > cnt0 {
		r.commitGroup = (sum1 - sum0) / (cnt1 - cnt0)
	}
	r.commitsPerOp = (cnt1 - cnt0) / float64(len(s.lat))
	if db != nil {
		xact1, err := db.settledCommits()
		if err != nil {
			return r, err
		}
		r.dbXactPerOp = (xact1 - xact0) / float64(len(warm.lat)+len(s.lat))
	}
	return r, nil
}

func percentiles(lat []time.Duration) (p50, p90, p99 time.Duration) {
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond) }
	return pct(.50), pct(.90), pct(.99)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// cpuNow is this process's user+system CPU time (SoftHSM2 runs in-process).
func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// daemonCPU reads utime+stime of pid from /proc.
func daemonCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func peakRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metricSums scrapes /metrics and sums, for each name asked for, every
// series of it (all label values).
func metricSums(metrics string, names ...string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, n := range names {
			rest, ok := strings.CutPrefix(l, n)
			if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if i := strings.LastIndexByte(rest, ' '); i >= 0 {
				v, _ := strconv.ParseFloat(rest[i+1:], 64)
				out[n] += v
			}
		}
	}
	return out
}

// commitStats returns the sum and count of pkid_db_commit_group_size over
// the nodes.
func commitStats(nodes []node) (sum, count float64) {
	for _, nd := range nodes {
		m := metricSums(nd.metrics, "pkid_db_commit_group_size_sum", "pkid_db_commit_group_size_count")
		sum, count = sum+m["pkid_db_commit_group_size_sum"], count+m["pkid_db_commit_group_size_count"]
	}
	return sum, count
}

// nodesCPU is the nodes' CPU time, added up.
func nodesCPU(nodes []node) time.Duration {
	var t time.Duration
	for _, nd := range nodes {
		t += daemonCPU(nd.d.pid)
	}
	return t
}

// fetchProfile asks the daemon for a CPU profile of secs seconds
// (metricsPprof) and writes it to path.
func fetchProfile(metrics, path string, secs int) error {
	c := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", metrics, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("profile: %d %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// topEntry is one line of `go tool pprof -top`.
type topEntry struct {
	flat, flatPct, cum, cumPct string
	name                       string
}

// pprofTop runs `go tool pprof -top` (sorted by flat, or by cum) on a
// profile of bin and returns its header ("Duration: …, Total samples = …")
// and first n entries.
// n 0 means every node, none dropped.
func pprofTop(bin, profile string, cum bool, n int) (string, []topEntry, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(n)}
	if n == 0 {
		args = []string{"tool", "pprof", "-top", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0"}
	}
	if cum {
		args = append(args, "-cum")
	}
	cmd := exec.Command(goBin, append(args, bin, profile)...)
	out, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("go tool pprof: %v", err)
	}
	var header string
	var entries []topEntry
	table := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Duration:") {
			header = strings.TrimSpace(l)
		}
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "flat" && f[1] == "flat%" {
			table = true
			continue
		}
		if !table || len(f) < 6 {
			continue
		}
		entries = append(entries, topEntry{flat: f[0], flatPct: f[1], cum: f[3], cumPct: f[4], name: strings.Join(f[5:], " ")})
	}
	return header, entries, nil
}

// measureFloor signs certificates with the CA key in the token, in this
// process, one at a time: a fresh leaf key, x509.CreateCertificate with
// the token signer. It returns CPU per certificate and the single-core rate.
func measureFloor(dir, label, certFile, keyAlg string, budget time.Duration) (time.Duration, float64, error) {
	os.Setenv("SOFTHSM2_CONF", filepath.Join(dir, "softhsm2.conf"))
	pin, err := os.ReadFile(filepath.Join(dir, "hsm-pin"))
	if err != nil {
		return 0, 0, err
	}
	tok, err := hsm.Open(hsm.Config{Module: softhsm.Module(), TokenLabel: "pkid-demo", PIN: strings.TrimSpace(string(pin))})
	if err != nil {
		return 0, 0, err
	}
	defer tok.Close()
	pemBytes, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return 0, 0, err
	}
	ca, err := ceremony.ReadCertificate(pemBytes)
	if err != nil {
		return 0, 0, err
	}
	signer, err := tok.CheckCustody(label, ca.PublicKey)
	if err != nil {
		return 0, 0, err
	}
	one := func() error {
		key, err := issuer.GenerateLeafKey(rand.Reader, keyAlg)
		if err != nil {
			return err
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		t := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "floor.example.internal"},
			DNSNames: []string{"floor.example.internal"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		_, err = x509.CreateCertificate(rand.Reader, t, ca, key.Public(), signer)
		return err
	}
	for k := 0; k < 20; k++ { // warm up sessions and caches
		if err := one(); err != nil {
			return 0, 0, err
		}
	}
	start, cpu0, n := time.Now(), cpuNow(), 0
	for time.Since(start) < budget && n < 100000 {
		if err := one(); err != nil {
			return 0, 0, err
		}
		n++
	}
	elapsed := time.Since(start)
	return (cpuNow() - cpu0) / time.Duration(n), float64(n) / elapsed.Seconds(), nil
}

// measureLint runs pkid's linter (the web-server registries) over a typical
// server certificate and returns CPU per certificate.
func measureLint(budget time.Duration) (time.Duration, error) {
	l, err := linter.New(map[string][]string{"web-server": nil})
	if err != nil {
		return 0, err
	}
	key, _ := issuer.GenerateLeafKey(rand.Reader, "EC_prime256v1")
	caKey, _ := issuer.GenerateLeafKey(rand.Reader, "EC_prime256v1")
	anyPolicy, _ := x509.OIDFromInts([]uint64{2, 5, 29, 32, 0})
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{1}}
	t := &x509.Certificate{SerialNumber: big.NewInt(1 << 62), Subject: pkix.Name{CommonName: "a.example.internal"},
		DNSNames: []string{"a.example.internal"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Policies: []x509.OID{anyPolicy}, SubjectKeyId: []byte{2}}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, key.Public(), caKey)
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	start, cpu0, n := time.Now(), cpuNow(), 0
	for time.Since(start) < budget && n < 100000 {
		if failed, err := l.Lint(ctx, "web-server", der); err != nil || len(failed) > 0 {
			return 0, fmt.Errorf("lint of the sample: %v %v", failed, err)
		}
		n++
	}
	return (cpuNow() - cpu0) / time.Duration(n), nil
}
