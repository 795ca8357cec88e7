// Package integration runs pkid end to end: softhsm/setup-demo.sh builds
// the demo fixture (a real SoftHSM2 token) in a temporary directory, the
// real bin/pkid serves it on 127.0.0.1 with real mutual TLS and a real
// SQLite database, and the tests talk to it as clients would.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/softhsm"
)

// suite is the running daemon shared by the tests of this package.
type suite struct {
	dir     string // the demo fixture
	bin     string
	addr    string
	metrics string // metrics listener address
	public  string // public listener address (CRLs, CA certificates)
	logPath string
	cmd     *exec.Cmd
	root    *x509.Certificate
	clients map[string]*http.Client // "client", "intruder", "none"
}

var s *suite

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	if softhsm.Module() == "" {
		if softhsm.Required() {
			return 1, errors.New("SoftHSM2 is not installed and PKID_REQUIRE_SOFTHSM=1")
		}
		fmt.Println("integration: SoftHSM2 not installed; skipping (make test installs it)")
		return 0, nil
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		return 1, err
	}
	tmp, err := os.MkdirTemp("", "pkid-integration-")
	if err != nil {
		return 1, err
	}
	s = &suite{dir: filepath.Join(tmp, "demo"), logPath: filepath.Join(tmp, "pkid.log")}
	s.bin = os.Getenv("PKID_BIN")
	if s.bin == "" {
		s.bin = filepath.Join(tmp, "pkid")
		build := exec.Command("go", "build", "-o", s.bin, "./cmd/pkid")
		build.Dir = repo
		if out, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("building pkid: %v\n%s", err, out)
		}
	}
	s.addr, s.metrics, s.public = freeAddr(), freeAddr(), freeAddr()
	setup := exec.Command(filepath.Join(repo, "softhsm", "setup-demo.sh"), s.dir)
	setup.Env = append(os.Environ(), "PKID_BIN="+s.bin, "PKID_API_ADDR="+s.addr, "PKID_METRICS_ADDR="+s.metrics, "PKID_PUBLIC_ADDR="+s.public)
	if out, err := setup.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("setup-demo.sh: %v\n%s", err, out)
	}
	if err := s.loadClients(); err != nil {
		return 1, err
	}
	if err := s.start(); err != nil {
		return 1, err
	}
	code := m.Run()
	if err := s.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: stopping pkid:", err)
		code = 1
	}
	if code == 0 {
		os.RemoveAll(tmp)
	} else {
		fmt.Fprintf(os.Stderr, "integration: kept %s (daemon log: %s)\n", tmp, s.logPath)
	}
	return code, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *suite) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

func (s *suite) loadClients() error {
	var err error
	s.clients, s.root, err = fixtureClients(s.dir)
	return err
}

// fixtureClients builds an HTTP client per demo identity ("client",
// "intruder", "none") trusting the fixture's mTLS CA, and reads its root.
func fixtureClients(dir string) (map[string]*http.Client, *x509.Certificate, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "ca", "root.pem"))
	if err != nil {
		return nil, nil, err
	}
	root, err := parseCert(string(rootPEM))
	if err != nil {
		return nil, nil, err
	}
	clients := map[string]*http.Client{}
	for _, name := range []string{"client", "intruder", "none"} {
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if name != "none" {
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", name+".pem"), filepath.Join(dir, "tls", name+"-key.pem"))
			if err != nil {
				return nil, nil, err
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		clients[name] = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 16}}
	}
	return clients, root, nil
}

func (s *suite) start() error {
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(s.bin, "serve", "--config", s.path("pkid.yaml"))
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := tls.Dial("tcp", s.addr, s.clients["client"].Transport.(*http.Transport).TLSClientConfig)
		if err == nil {
			conn.Close()
			return nil
		}
		if s.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(s.logPath)
	return fmt.Errorf("pkid did not start listening on %s:\n%s", s.addr, log)
}

func (s *suite) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return errors.New("pkid did not stop within 30s of SIGTERM")
	}
}

// reply is one HTTP answer, decoded.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r reply) str(key string) string { v, _ := r.body[key].(string); return v }

func (s *suite) post(t *testing.T, client, contentType string, body []byte) reply {
	t.Helper()
	r := s.send(t, client, "/api/v3/pki/certificates/issue-certificate", contentType, body)
	if r.status == http.StatusOK {
		if _, err := parseCert(r.str("certificate")); err != nil {
			t.Fatalf("200 without a parsable certificate: %v", err)
		}
	}
	return r
}

// postTo posts a JSON body to another route of the suite's daemon.
func (s *suite) postTo(t *testing.T, client, path string, body []byte) reply {
	t.Helper()
	return s.send(t, client, path, "application/json", body)
}

func (s *suite) send(t *testing.T, client, path, contentType string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://"+s.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.clients[client].Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("status %d, body is not a JSON object: %q", resp.StatusCode, raw)
	}
	return r
}

// issue posts a JSON request from the allowed client.
func (s *suite) issue(t *testing.T, req map[string]any) reply {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return s.post(t, "client", "application/json", b)
}

// pkid runs a pkid subcommand and returns its stdout, stderr and exit code.
func (s *suite) pkid(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(s.bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running pkid %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func runScript(t *testing.T, script string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "PKID_BIN="+s.bin, "PKID_API_ADDR="+s.addr, "PKID_METRICS_ADDR="+s.metrics, "PKID_PUBLIC_ADDR="+s.public)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}
