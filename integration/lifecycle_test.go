package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// daemon2 is a second pkid on its own fixture, driven through its
// lifecycle: notify, watchdog, reloads, and a draining stop.
type daemon2 struct {
	dir, addr, metrics, public, logPath, sock string
	logOffset                                 int64 // where the current run's log starts
	cmd                                       *exec.Cmd
	clients                                   map[string]*http.Client
	notes                                     chan string
	exited                                    chan error
}

// newDaemon2 builds a fixture in its own directory, applies edit (if any)
// to its pkid.yaml, and starts pkid on it.
func newDaemon2(t *testing.T, edit func(string) string) *daemon2 {
	t.Helper()
	base := t.TempDir()
	d := &daemon2{dir: filepath.Join(base, "demo"), addr: freeAddr(), metrics: freeAddr(), public: freeAddr(), logPath: filepath.Join(base, "pkid.log")}
	setup := exec.Command("../softhsm/setup-demo.sh", d.dir)
	setup.Env = append(os.Environ(), "PKID_BIN="+s.bin, "PKID_API_ADDR="+d.addr, "PKID_METRICS_ADDR="+d.metrics, "PKID_PUBLIC_ADDR="+d.public)
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("setup-demo.sh: %v\n%s", err, out)
	}
	if edit != nil {
		d.editConfig(t, edit)
	}
	var err error
	if d.clients, _, err = fixtureClients(d.dir); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.sock = sock
	d.notes = make(chan string, 1024)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			// Keep draining the socket whoever listens; drop watchdog
			// pings nobody waits for.
			select {
			case d.notes <- string(buf[:n]):
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
		}
		if t.Failed() {
			log, _ := os.ReadFile(d.logPath)
			t.Logf("daemon log:\n%s", log)
		}
	})
	d.start(t)
	return d
}

// start runs pkid on the fixture (again) and waits for READY=1.
func (d *daemon2) start(t *testing.T) {
	t.Helper()
	for drained := false; !drained; { // forget what an earlier run said
		select {
		case <-d.notes:
		default:
			drained = true
		}
	}
	logFile, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d.logOffset = d.logSize(t)
	d.cmd = exec.Command(s.bin, "serve", "--config", filepath.Join(d.dir, "pkid.yaml"))
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.sock, "WATCHDOG_USEC=400000")
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func(cmd *exec.Cmd) { d.exited <- cmd.Wait() }(d.cmd)
	d.expect(t, "READY=1", 60*time.Second)
}

func startDaemon2(t *testing.T) *daemon2 { return newDaemon2(t, nil) }

// expect waits for a notify message, skipping watchdog pings unless asked.
func (d *daemon2) expect(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-d.notes:
			if got == want {
				return
			}
			if got != "WATCHDOG=1" {
				t.Fatalf("notify %q while waiting for %q", got, want)
			}
		case <-deadline:
			t.Fatalf("no %q within %s", want, within)
		}
	}
}

func (d *daemon2) post(t *testing.T, client string, req map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := d.clients[client].Post("https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Errorf("POST: %v", err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func (d *daemon2) editConfig(t *testing.T, edit func(string) string) {
	t.Helper()
	p := filepath.Join(d.dir, "pkid.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon2) serverCN(t *testing.T) string {
	t.Helper()
	cfg := d.clients["client"].Transport.(*http.Transport).TLSClientConfig.Clone()
	conn, err := tls.Dial("tcp", d.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

var intruderWeb = map[string]any{"profileId": webServer, "commonName": "i.example.internal", "ttl": "1h",
	"altNames":           []map[string]string{{"type": "dns_name", "value": "i.example.internal"}},
	"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}

func TestLifecycle(t *testing.T) {
	d := startDaemon2(t)
	d.expect(t, "WATCHDOG=1", 5*time.Second)

	// Steady load through every reload: none of it may fail.
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	var served, failed atomic.Int64
	for w := 0; w < 2; w++ {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _ := d.post(t, "client", map[string]any{"profileId": prodClients, "commonName": "l.prod.example.internal",
					"ttl": "1h", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
				if code == 200 {
					served.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}

	t.Run("reload applies new profiles and TLS material", func(t *testing.T) {
		if code, _ := d.post(t, "intruder", intruderWeb); code != 403 {
			t.Fatalf("intruder before reload: %d, want 403", code)
		}
		// New server certificate, issued from the mTLS CA in the token.
		issue := exec.Command(s.bin, "ca", "issue-tls", "--module", moduleFromConfig(t, d.dir), "--token-label", "pkid-demo",
			"--pin-file", filepath.Join(d.dir, "hsm-pin"), "--ca-label", "pkid-tls-ca", "--ca-cert", filepath.Join(d.dir, "tls", "ca.pem"),
			"--server", "--cn", "reloaded", "--dns", "localhost", "--ip", "127.0.0.1",
			"--out", filepath.Join(d.dir, "tls", "server2.pem"), "--key-out", filepath.Join(d.dir, "tls", "server2-key.pem"))
		issue.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(d.dir, "softhsm2.conf"))
		out, err := issue.CombinedOutput()
		if err != nil {
			t.Fatalf("issue-tls: %v\n%s", err, out)
		}
		d.editConfig(t, func(c string) string {
			c = strings.Replace(c, `allowedIdentities: ["uri:spiffe://example.internal/demo-client", "machine:demo-agent"]`,
				`allowedIdentities: ["uri:spiffe://example.internal/demo-client", "machine:demo-agent", "uri:spiffe://example.internal/intruder"]`, 1)
			return strings.Replace(strings.Replace(c, "tls/server.pem", "tls/server2.pem", 1), "tls/server-key.pem", "tls/server2-key.pem", 1)
		})
		d.cmd.Process.Signal(syscall.SIGHUP)
		d.expect(t, "RELOADING=1", 10*time.Second)
		d.expect(t, "READY=1", 30*time.Second)
		if code, body := d.post(t, "intruder", intruderWeb); code != 200 {
			t.Fatalf("intruder after reload: %d %v", code, body)
		}
		if cn := d.serverCN(t); cn != "reloaded" {
			t.Errorf("new connections see server certificate %q, want the reloaded one", cn)
		}
	})

	t.Run("a bad config is refused and the running one stays", func(t *testing.T) {
		d.editConfig(t, func(c string) string { return c + "bogus: true\n" })
		d.cmd.Process.Signal(syscall.SIGHUP)
		d.expect(t, "RELOADING=1", 10*time.Second)
		d.expect(t, "READY=1", 30*time.Second)
		if code, _ := d.post(t, "intruder", intruderWeb); code != 200 {
			t.Fatalf("after a refused reload the previous config must stay: %d", code)
		}
		log, _ := os.ReadFile(d.logPath)
		if !strings.Contains(string(log), "reload refused") || !strings.Contains(string(log), "field bogus not found") {
			t.Errorf("no log line for the refused reload")
		}
		if _, text := httpGet(t, "http://"+d.metrics+"/metrics"); !strings.Contains(text, `pkid_config_reloads_total{result="failure"} 1`) ||
			!strings.Contains(text, `pkid_config_reloads_total{result="success"} 1`) {
			t.Errorf("reload counters wrong")
		}
	})

	close(stop)
	loadWG.Wait()
	if failed.Load() > 0 || served.Load() == 0 {
		t.Errorf("load during reloads: %d served, %d failed", served.Load(), failed.Load())
	}

	t.Run("SIGTERM drains in-flight requests", func(t *testing.T) {
		const n = 6
		type result struct {
			code int
			id   string
			at   time.Time
		}
		results := make(chan result, n)
		written := make(chan struct{}, n)
		var answered, transportErrs atomic.Int32
		// Each request on a connection of its own: a request written on an
		// idle keep-alive connection can meet Shutdown closing that
		// connection before the server has read it (net/http closes idle
		// connections first), which is the client's retry to make, not a
		// drain failure.
		tr := d.clients["client"].Transport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		fresh := &http.Client{Timeout: time.Minute, Transport: tr}
		for k := 0; k < n; k++ {
			go func() {
				b, _ := json.Marshal(map[string]any{"profileId": webServer, "commonName": "slow.example.internal", "ttl": "1h",
					"altNames":           []map[string]string{{"type": "dns_name", "value": "slow.example.internal"}},
					"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "RSA_4096"})
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { written <- struct{}{} }})
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+d.addr+"/api/v3/pki/certificates/issue-certificate", bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				resp, err := fresh.Do(req)
				if err != nil {
					transportErrs.Add(1)
					answered.Add(1)
					results <- result{0, "", time.Now()}
					return
				}
				var body map[string]any
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				answered.Add(1)
				id, _ := body["certificateId"].(string)
				results <- result{resp.StatusCode, id, time.Now()}
			}()
		}
		// SIGTERM once the daemon has taken every request — in flight or
		// already answered: a request it has not read yet when shutdown
		// starts is the client's to retry — and some are still in flight
		// (RSA-4096 key generation keeps them there while it drains). All
		// six in flight at once is not waited for: one key may come fast.
		for k := 0; k < n; k++ {
			<-written
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, text := httpGet(t, "http://"+d.metrics+"/metrics")
			inFlight := int(sampleValue(text, "pkid_http_requests_in_flight"))
			if transportErrs.Load() > 0 {
				t.Fatal("a request failed before SIGTERM (no answer)")
			}
			if done := int(answered.Load()); inFlight > 0 && inFlight+done == n {
				break
			} else if done == n {
				t.Fatal("every request was answered before SIGTERM could be sent: nothing was left to drain")
			}
			if time.Now().After(deadline) {
				t.Fatalf("the daemon never took all %d requests", n)
			}
			time.Sleep(10 * time.Millisecond) // between scrapes, leave the cores to the key generation
		}
		termAt := time.Now()
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.expect(t, "STOPPING=1", 10*time.Second)
		var ids []string
		after := 0
		for k := 0; k < n; k++ {
			r := <-results
			if r.code != 200 {
				t.Errorf("in-flight request answered %d during shutdown", r.code)
			}
			if r.at.After(termAt) {
				after++
			}
			ids = append(ids, r.id)
		}
		if after == 0 {
			t.Error("no request was still in flight at SIGTERM; the test proved nothing")
		}
		select {
		case err := <-d.exited:
			if err != nil {
				t.Errorf("pkid exited with %v after SIGTERM", err)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("pkid did not exit after draining")
		}
		d.editConfig(t, func(c string) string { return strings.TrimSuffix(c, "bogus: true\n") })
		out, err := exec.Command(s.bin, "records", "list", "--config", filepath.Join(d.dir, "pkid.yaml"), "--status", "issued").Output()
		if err != nil {
			t.Fatalf("records list: %v", err)
		}
		for _, id := range ids {
			if !strings.Contains(string(out), id) {
				t.Errorf("certificate %s answered during the drain has no issued record", id)
			}
		}
		t.Logf("%d of %d requests finished after SIGTERM", after, n)
	})
}

func moduleFromConfig(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pkid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module:" {
			return f[1]
		}
	}
	t.Fatal("no hsm.module in the config")
	return ""
}
