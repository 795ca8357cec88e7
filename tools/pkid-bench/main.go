// Command pkid-bench measures pkid end to end (`make bench`): it builds the
// demo fixture in a temporary directory, measures the floor — the CPU cost
// of generating a leaf key and signing a certificate with the same token
// key in-process, nothing else — and zlint's cost per certificate, starts
// the real daemon, drives issue-certificate over keep-alive mTLS
// connections from 127.0.0.1 for each case, and writes BENCHMARKS.md.
//
// Every loop is bounded by time and count, and all traffic stays on
// loopback. Results are measurements, never assertions.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
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

type benchCase struct {
	name        string
	keyAlg      string
	concurrency int
	body        []byte
}

type result struct {
	benchCase
	n             int
	errors        int
	elapsed       time.Duration
	p50, p90, p99 time.Duration
	cpuPerCert    time.Duration
	peakRSS       int64
	commitGroup   float64
	floor         time.Duration
	firstErr      string
}

func main() {
	bin := flag.String("bin", "bin/pkid", "pkid binary")
	out := flag.String("out", "BENCHMARKS.md", "report file")
	duration := flag.Duration("duration", 8*time.Second, "measured time per EC case")
	rsaDuration := flag.Duration("rsa-duration", 20*time.Second, "measured time per RSA case and for the RSA floor: RSA key generation time is heavy-tailed, so its mean needs hundreds of samples")
	warmup := flag.Duration("warmup", time.Second, "warm-up per case")
	maxRequests := flag.Int("max-requests", 200000, "upper bound of requests per case")
	concs := flag.String("concurrency", "1,8,32", "client concurrency levels")
	profile := flag.String("pprof", "", "write a 5s daemon CPU profile of the EC c=32 case here")
	only := flag.String("only", "", "run only the cases whose leaf key algorithm starts with this (EC or RSA)")
	flag.Parse()
	if err := run(*bin, *out, *duration, *rsaDuration, *warmup, *maxRequests, *concs, *profile, *only); err != nil {
		fmt.Fprintln(os.Stderr, "pkid-bench:", err)
		os.Exit(1)
	}
}

func run(bin, out string, duration, rsaDuration, warmup time.Duration, maxRequests int, concs, profile, only string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "pkid-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "demo")
	api, metrics := freeAddr(), freeAddr()
	setup := exec.Command("softhsm/setup-demo.sh", dir)
	setup.Env = append(os.Environ(), "PKID_BIN="+bin, "PKID_API_ADDR="+api, "PKID_METRICS_ADDR="+metrics, "PKID_PUBLIC_ADDR="+freeAddr())
	if o, err := setup.CombinedOutput(); err != nil {
		return fmt.Errorf("setup-demo.sh: %v\n%s", err, o)
	}
	if profile != "" {
		appendFile(filepath.Join(dir, "pkid.yaml"), "metricsPprof: true\n")
	}
	fmt.Println("measuring the floor (in-process: leaf key + signature by the token key)…")
	floorEC, floorECRate, err := measureFloor(dir, "pkid-ec-issuing", "ca/ec-issuing.pem", "EC_prime256v1", 3*time.Second)
	if err != nil {
		return err
	}
	floorRSA, floorRSARate, err := measureFloor(dir, "pkid-rsa-issuing", "ca/rsa-issuing.pem", "RSA_2048", rsaDuration)
	if err != nil {
		return err
	}
	lintCost, err := measureLint(dir, 2*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("floor EC %v/cert, RSA %v/cert; zlint %v/cert\n", floorEC, floorRSA, lintCost)

	daemon := exec.Command(bin, "serve", "--config", filepath.Join(dir, "pkid.yaml"))
	logFile, _ := os.Create(filepath.Join(tmp, "pkid.log"))
	daemon.Stdout, daemon.Stderr = logFile, logFile
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	if err := waitReady(metrics, 60*time.Second); err != nil {
		return err
	}
	client, err := newClient(dir)
	if err != nil {
		return err
	}

	ecBody := `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","commonName":"bench.example.internal","ttl":"1h",
		"altNames":[{"type":"dns_name","value":"bench.example.internal"}],"signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`
	rsaBody := `{"profileId":"a1e5a186-5d12-4ffb-81c5-2e93d83a049f","commonName":"bench.svc.example.internal","ttl":"1h",
		"altNames":[{"type":"dns_name","value":"bench.svc.example.internal"}],"signatureAlgorithm":"RSA-SHA256","keyAlgorithm":"RSA_2048"}`
	var results []result
	for _, spec := range []struct {
		name, alg, body string
		floor, duration time.Duration
	}{{"EC_prime256v1 leaf, EC P-256 CA (web-server)", "EC_prime256v1", ecBody, floorEC, duration},
		{"RSA_2048 leaf, RSA-3072 CA (internal-services)", "RSA_2048", rsaBody, floorRSA, rsaDuration}} {
		if !strings.HasPrefix(spec.alg, only) {
			continue
		}
		for _, c := range strings.Split(concs, ",") {
			n, _ := strconv.Atoi(c)
			bc := benchCase{name: spec.name, keyAlg: spec.alg, concurrency: n, body: []byte(spec.body)}
			var prof func()
			if profile != "" && spec.alg == "EC_prime256v1" && n == 32 {
				prof = func() { fetchProfile(metrics, profile) }
			}
			r, err := runCase(client, api, metrics, daemon.Process.Pid, bc, warmup, spec.duration, maxRequests, prof)
			if err != nil {
				return err
			}
			r.floor = spec.floor
			fmt.Printf("%-48s c=%-3d %8.0f certs/s  p50 %-8v p99 %-8v cpu %v/cert (%.2f× floor)  errors %d  rss %d MiB  group %.1f\n",
				spec.name, n, float64(r.n)/r.elapsed.Seconds(), r.p50, r.p99, r.cpuPerCert,
				float64(r.cpuPerCert)/float64(r.floor), r.errors, r.peakRSS>>20, r.commitGroup)
			results = append(results, r)
		}
	}
	return writeReport(out, results, floorEC, floorECRate, floorRSA, floorRSARate, lintCost, duration, rsaDuration)
}

func appendFile(path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		f.WriteString(s)
		f.Close()
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cpuNow is this process's user+system CPU time (SoftHSM2 runs in-process).
func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
func measureLint(dir string, budget time.Duration) (time.Duration, error) {
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
	for time.Since(start) < budget {
		if failed, err := l.Lint(ctx, "web-server", der); err != nil || len(failed) > 0 {
			return 0, fmt.Errorf("lint of the sample: %v %v", failed, err)
		}
		n++
	}
	return (cpuNow() - cpu0) / time.Duration(n), nil
}

func waitReady(metrics string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the daemon was not ready within %s", within)
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

// commitStats returns the sum and count of pkid_db_commit_group_size.
func commitStats(metrics string) (float64, float64) {
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum, count float64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "pkid_db_commit_group_size_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(l, "pkid_db_commit_group_size_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	return sum, count
}

func fetchProfile(metrics, path string) {
	resp, err := http.Get("http://" + metrics + "/debug/pprof/profile?seconds=5")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	io.Copy(f, resp.Body)
	f.Close()
}

func runCase(client *http.Client, api, metrics string, pid int, bc benchCase, warmup, duration time.Duration, maxRequests int, prof func()) (result, error) {
	url := "https://" + api + "/api/v3/pki/certificates/issue-certificate"
	post := func() (time.Duration, string) {
		start := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(bc.body))
		if err != nil {
			return time.Since(start), err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return time.Since(start), fmt.Sprintf("%d %.200s", resp.StatusCode, b)
		}
		return time.Since(start), ""
	}
	drive := func(d time.Duration, record bool) ([]time.Duration, int, string) {
		var mu sync.Mutex
		var lat []time.Duration
		errs, first := 0, ""
		stop := time.Now().Add(d)
		var wg sync.WaitGroup
		var issued int
		for w := 0; w < bc.concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					mu.Lock()
					if issued >= maxRequests {
						mu.Unlock()
						return
					}
					issued++
					mu.Unlock()
					l, e := post()
					if !record {
						continue
					}
					mu.Lock()
					if e != "" {
						errs++
						if first == "" {
							first = e
						}
					} else {
						lat = append(lat, l)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, errs, first
	}
	drive(warmup, false)
	if prof != nil {
		go prof()
	}
	sum0, cnt0 := commitStats(metrics)
	cpu0, t0 := daemonCPU(pid), time.Now()
	lat, errs, first := drive(duration, true)
	elapsed, cpu := time.Since(t0), daemonCPU(pid)-cpu0
	sum1, cnt1 := commitStats(metrics)
	r := result{benchCase: bc, n: len(lat), errors: errs, elapsed: elapsed, peakRSS: peakRSS(pid), firstErr: first}
	if len(lat) == 0 {
		return r, fmt.Errorf("%s c=%d: no successful request (%s)", bc.name, bc.concurrency, first)
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond) }
	r.p50, r.p90, r.p99 = pct(.50), pct(.90), pct(.99)
	r.cpuPerCert = cpu / time.Duration(len(lat))
	if cnt1 > cnt0 {
		r.commitGroup = (sum1 - sum0) / (cnt1 - cnt0)
	}
	return r, nil
}

func writeReport(path string, rs []result, floorEC time.Duration, floorECRate float64, floorRSA time.Duration, floorRSARate float64, lint, duration, rsaDuration time.Duration) error {
	var b strings.Builder
	model := "unknown"
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(ci), "\n") {
			if v, ok := strings.CutPrefix(l, "model name\t: "); ok {
				model = v
				break
			}
		}
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(&b, "# pkid benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` (`go run ./tools/pkid-bench -bin bin/pkid -out BENCHMARKS.md`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %d cores (%s), %s, %s. The load generator runs on the same machine and shares its cores.\n\n", runtime.NumCPU(), model, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "Every safety step is on: the serial is reserved durably before signing, the exact TBS is linted with zlint (RFC 5280 + CA/B Forum BR lints for server certificates), the token (SoftHSM2) signs, the signature and TBS are verified, and the record and its audit entry are committed (WAL, synchronous=FULL, grouped) before the response.\n\n")
	fmt.Fprintf(&b, "## Floor (in-process, one core: leaf key generation + signing a certificate with the same token key; RSA over %s)\n\n", rsaDuration)
	fmt.Fprintf(&b, "| leaf / CA | CPU per certificate (ms) | certificates/s on one core |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| EC_prime256v1 / EC P-256 | %s | %.0f |\n| RSA_2048 / RSA-3072 | %s | %.0f |\n\n", ms(floorEC), floorECRate, ms(floorRSA), floorRSARate)
	fmt.Fprintf(&b, "zlint cost per server certificate (pkid's filtered registries, in-process): %s ms CPU.\n\n", ms(lint))
	fmt.Fprintf(&b, "## End to end (real daemon, keep-alive mTLS, %s per EC case and %s per RSA case after a warm-up)\n\n", duration, rsaDuration)
	fmt.Fprintf(&b, "| case | concurrency | certificates/s | p50 ms | p90 ms | p99 ms | errors | daemon CPU ms/cert | ÷ floor | peak RSS MiB | avg commit group |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s | %s | %d | %s | %.2f | %d | %.1f |\n", r.name, r.concurrency, float64(r.n)/r.elapsed.Seconds(),
			ms(r.p50), ms(r.p90), ms(r.p99), r.errors, ms(r.cpuPerCert), float64(r.cpuPerCert)/float64(r.floor), r.peakRSS>>20, r.commitGroup)
	}
	for _, r := range rs {
		if r.firstErr != "" {
			fmt.Fprintf(&b, "\nFirst error in %s c=%d: `%s`\n", r.name, r.concurrency, r.firstErr)
		}
	}
	if notes, err := os.ReadFile("docs/benchmark-notes.md"); err == nil {
		b.WriteString("\n")
		b.Write(notes)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
