package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/softhsm"
)

// TestMain lets the tests run this test binary as pkid itself: with
// PKID_TEST_MAIN=1 it is `pkid ARGS…` (race detector included), so that
// signals and exit codes are a real process's.
func TestMain(m *testing.M) {
	if os.Getenv("PKID_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// assertEmpty fails unless dir, a test's TMPDIR, holds nothing.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("pkid dev left %s in $TMPDIR", filepath.Join(dir, e.Name()))
	}
}

// TestDevRefuses checks that bad input is a clear error that creates
// nothing.
func TestDevRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	noTools := t.TempDir() // a $PATH without softhsm2-util

	for _, tc := range []struct {
		name string
		args []string
		path string // $PATH, if set
		code int
		want string
	}{
		{"any address", []string{"--listen-host", "0.0.0.0"}, "", 2, `--listen-host "0.0.0.0" is not a loopback address`},
		{"documentation address", []string{"--listen-host", "192.0.2.1"}, "", 2, `--listen-host "192.0.2.1" is not a loopback address`},
		{"IPv6 any", []string{"--listen-host", "::"}, "", 2, "not a loopback address"},
		{"host name", []string{"--listen-host", "example.com"}, "", 2, "not a loopback address"},
		{"port in use", []string{"--api-port", busyPort}, "", 1, "--api-port " + busyPort + ": cannot listen (is the port in use?)"},
		{"not a port", []string{"--public-port", "70000"}, "", 2, "--public-port 70000 is not a port"},
		{"no module", []string{"--module", "/nonexistent/libsofthsm2.so"}, "", 1, "SoftHSM2 is not installed (apt-get install softhsm2)"},
		{"no softhsm2-util", nil, noTools, 1, "SoftHSM2 is not installed (apt-get install softhsm2)"},
		{"no directory for --json", []string{"--json", "/nonexistent/dev.json"}, "", 2, "--json /nonexistent/dev.json: its directory must exist"},
		{"stray argument", []string{"serve"}, "", 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"dev"}, tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
			assertEmpty(t, tmp)
		})
	}
}

// TestDevStartFailureDeletesEverything: a failure after the directory was
// made (here softhsm2-util refusing to make the token) deletes it.
func TestDevStartFailureDeletesEverything(t *testing.T) {
	tools := t.TempDir()
	fake := "#!/bin/sh\necho 'token directory is haunted' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(tools, "softhsm2-util"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("PATH", tools)
	var stdout, stderr bytes.Buffer
	// The module is only looked at once the token exists; any file will do.
	code := run([]string{"dev", "--module", os.Args[0]}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "softhsm2-util --init-token: exit status 1: token directory is haunted") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	assertEmpty(t, tmp)
}

func needSoftHSM(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil || softhsm.Module() == "" {
		if softhsm.Required() {
			t.Fatal("SoftHSM2 is not installed (apt-get install softhsm2) and PKID_REQUIRE_SOFTHSM=1")
		}
		t.Skip("SoftHSM2 not installed; set PKID_REQUIRE_SOFTHSM=1 to make this a failure")
	}
}

// dev is a running `pkid dev` child process with its own $TMPDIR.
type dev struct {
	cmd    *exec.Cmd
	tmp    string
	stdout *bufio.Reader
	stderr bytes.Buffer
}

// startDev starts `pkid dev ARGS` and returns once it said it is ready:
// its first line on stdout, written after it serves.
func startDev(t *testing.T, args ...string) *dev {
	t.Helper()
	d := &dev{tmp: t.TempDir()}
	d.cmd = exec.Command(os.Args[0], append([]string{"dev"}, args...)...)
	d.cmd.Env = append(os.Environ(), "PKID_TEST_MAIN=1", "TMPDIR="+d.tmp)
	d.cmd.Stderr = &d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.stdout = bufio.NewReader(out)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that failed before stop
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	line, err := d.stdout.ReadString('\n') // EOF if it exits instead
	if err != nil || !strings.HasPrefix(line, "pkid dev: ready") {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		t.Fatalf("pkid dev did not become ready: %q, %v\n%s", line, err, d.stderr.String())
	}
	return d
}

// stop signals pkid dev, waits for it to exit 0, and returns the rest of
// its stdout.
func (d *dev) stop(t *testing.T, sig os.Signal) string {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(d.stdout) // until the process closes stdout
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("pkid dev exited with %v after %v\n%s", err, sig, d.stderr.String())
	}
	assertEmpty(t, d.tmp)
	return string(rest)
}

func TestDevJSON(t *testing.T) {
	needSoftHSM(t)
	file := filepath.Join(t.TempDir(), "dev.json")
	d := startDev(t, "--json", file)
	var info struct {
		APIURL, MetricsURL, PublicURL, CABundle, RootCA, ClientCertificate, ClientKey string
		ClientIdentity, MachineIdentity, ClientID, ClientSecret, StaticToken          string
		Profiles                                                                      map[string]string
		ProjectID, ProjectSlug, Dir, Config                                           string
		PID                                                                           int
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", file, st.Mode().Perm())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	if info.PID != d.cmd.Process.Pid {
		t.Errorf("pid %d, want %d", info.PID, d.cmd.Process.Pid)
	}
	if filepath.Dir(info.Dir) != d.tmp {
		t.Errorf("dir %s is not in $TMPDIR %s", info.Dir, d.tmp)
	}
	if st, err := os.Stat(info.Dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir %s: %v, %v; want mode 0700", info.Dir, st.Mode(), err)
	}
	if info.ProjectSlug != "pkid-dev" || info.Profiles["web-server"] == "" || info.Profiles["prod-clients"] == "" ||
		info.ClientIdentity != "uri:spiffe://example.internal/demo-client" || info.MachineIdentity != "machine:demo-agent" {
		t.Errorf("JSON: %s", raw)
	}
	config, err := os.ReadFile(info.Config)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(config, []byte(info.ClientSecret)) || bytes.Contains(config, []byte(info.StaticToken)) ||
		!bytes.Contains(config, []byte("$argon2id$")) {
		t.Error("the config must hold the secret's argon2id hash and neither the secret nor the static token")
	}

	// Every credential works, and caBundle and rootCA are what they say.
	serverCAs, roots := readPool(t, info.CABundle), readPool(t, info.RootCA)
	pair, err := tls.LoadX509KeyPair(info.ClientCertificate, info.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	mtls := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCAs, Certificates: []tls.Certificate{pair}}}}
	plain := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCAs}}}
	issued := call(t, mtls, info.APIURL+"/api/v3/pki/certificates/issue-certificate", map[string]any{
		"profileId": info.Profiles["web-server"], "commonName": "app.example.internal", "ttl": "1h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1",
		"altNames": []map[string]string{{"type": "dns_name", "value": "app.example.internal"}}})
	leaf := parsePEM(t, issued["certificate"].(string))
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM([]byte(issued["certificateChain"].(string)))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "app.example.internal"}); err != nil {
		t.Errorf("issued certificate does not chain to rootCA: %v", err)
	}
	login := call(t, plain, info.APIURL+"/api/v1/auth/universal-auth/login",
		map[string]string{"clientId": info.ClientID, "clientSecret": info.ClientSecret})
	for _, bearer := range []string{login["accessToken"].(string), info.StaticToken} {
		req, _ := http.NewRequest(http.MethodGet, info.APIURL+"/api/v1/projects/slug/"+info.ProjectSlug, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if resp, err := plain.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("project look-up with a Bearer token: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
	}
	for _, url := range []string{info.MetricsURL + "/readyz", info.PublicURL + "/ca/root.crt"} {
		if resp, err := http.Get(url); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", url, resp, err)
		} else {
			resp.Body.Close()
		}
	}

	d.stop(t, syscall.SIGTERM)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the JSON file outlived pkid dev: %v", err)
	}
}

// TestDevSummary: without --json the environment is printed; SIGINT, on
// IPv6 loopback, deletes everything as SIGTERM does.
func TestDevSummary(t *testing.T) {
	needSoftHSM(t)
	d := startDev(t, "--listen-host", "::1")
	summary := d.stop(t, os.Interrupt)
	for _, want := range []string{"https://[::1]:", "tls/ca.pem", "ca/root.pem", "machine:demo-agent", "web-server=b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e", "curl --cacert"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

func readPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", path)
	}
	return p
}

func parsePEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// call POSTs body as JSON and returns the 200 answer.
func call(t *testing.T, c *http.Client, url string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := c.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %v %v", url, resp.StatusCode, out, err)
	}
	return out
}
