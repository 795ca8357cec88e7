// Package pkidtest starts a real pkid — the daemon, on a fresh SoftHSM2
// token — for another project's tests, and stops it and deletes its token
// when the test ends:
//
//	srv := pkidtest.Start(t, pkidtest.Options{})
//	resp, err := srv.Client.Post(srv.URL+"/api/v3/pki/certificates/issue-certificate", "application/json", body)
//
// It runs `pkid dev --json FILE` (the binary from Options.Binary, else
// $PKID_BIN, else pkid on $PATH) and waits until it serves. Without the
// binary or SoftHSM2 the test is skipped, unless PKID_REQUIRE_SOFTHSM=1
// makes that a failure.
package pkidtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/softhsm"
)

// Options configure Start; the zero value is fine.
type Options struct {
	Binary       string        // the pkid binary; default $PKID_BIN, else pkid on $PATH
	ListenHost   string        // a loopback address; default 127.0.0.1
	Env          []string      // added to the environment of pkid
	StartTimeout time.Duration // default 2m
}

// Server is a running pkid dev.
type Server struct {
	URL        string // the API, https://127.0.0.1:PORT
	MetricsURL string // /metrics, /healthz, /readyz
	PublicURL  string // CRLs, CA certificates, OCSP (plain HTTP)

	// Client presents the client certificate (identity ClientIdentity,
	// allowed on every profile) and trusts the server's CA.
	Client *http.Client
	// BearerClient trusts the server's CA and has no client certificate:
	// send "Authorization: Bearer "+Token (or StaticToken) with it.
	BearerClient *http.Client
	Token        string // an access token of the machine identity, from universal-auth login
	StaticToken  string // a static token of the same identity ("token auth")

	ServerCAs *x509.CertPool // the mTLS CA that signs the server certificate
	RootCAs   *x509.CertPool // the PKI root every issued certificate chains to

	// Files, for tools under test that read them (SSL_CERT_FILE=CABundle).
	CABundle, RootCA, ClientCertificate, ClientKey string

	ClientIdentity, MachineIdentity string
	ClientID, ClientSecret          string
	Profiles                        map[string]string // profile id by name: web-server, prod-clients
	ProjectSlug                     string
}

// devInfo is what `pkid dev --json` writes.
type devInfo struct {
	APIURL            string            `json:"apiURL"`
	MetricsURL        string            `json:"metricsURL"`
	PublicURL         string            `json:"publicURL"`
	CABundle          string            `json:"caBundle"`
	RootCA            string            `json:"rootCA"`
	ClientCertificate string            `json:"clientCertificate"`
	ClientKey         string            `json:"clientKey"`
	ClientIdentity    string            `json:"clientIdentity"`
	MachineIdentity   string            `json:"machineIdentity"`
	ClientID          string            `json:"clientId"`
	ClientSecret      string            `json:"clientSecret"`
	StaticToken       string            `json:"staticToken"`
	Profiles          map[string]string `json:"profiles"`
	ProjectSlug       string            `json:"projectSlug"`
	Dir               string            `json:"dir"`
}

// stopTimeout covers pkid's drain of in-flight requests (30s) and its
// last audit checkpoint.
const stopTimeout = 45 * time.Second

// Start starts pkid dev for t and returns once it serves; t.Cleanup stops
// it with SIGTERM and checks that it deleted its directory and token.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := binary(t, o.Binary)
	if softhsm.Module() == "" {
		unavailable(t, "SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		unavailable(t, "SoftHSM2's softhsm2-util is not on $PATH (apt-get install softhsm2)")
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	jsonFile := filepath.Join(t.TempDir(), "pkid-dev.json")
	args := []string{"dev", "--json", jsonFile}
	if o.ListenHost != "" {
		args = append(args, "--listen-host", o.ListenHost)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	logs := &syncBuffer{}
	ready := newReadySignal()
	cmd.Stdout, cmd.Stderr = ready, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("pkidtest: starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	var info devInfo
	t.Cleanup(func() { stop(t, cmd, exited, &exitErr, info.Dir, logs) })

	// pkid dev writes the JSON file, then one line to stdout: the line is
	// the event, and a process that exits first has failed.
	select {
	case <-ready.c:
	case <-exited:
		t.Fatalf("pkidtest: pkid dev exited before it served (%v):\n%s", exitErr, logs)
	case <-time.After(o.StartTimeout):
		t.Fatalf("pkidtest: pkid dev did not serve within %s:\n%s", o.StartTimeout, logs)
	}
	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("pkidtest: %v", err)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("pkidtest: %s: %v", jsonFile, err)
	}
	srv, err := newServer(info)
	if err != nil {
		t.Fatalf("pkidtest: %v", err)
	}
	if srv.Token, err = srv.login(); err != nil {
		t.Fatalf("pkidtest: %v\n%s", err, logs)
	}
	return srv
}

// binary finds the pkid binary, or skips the test when there is none.
func binary(t testing.TB, bin string) string {
	t.Helper()
	if bin == "" {
		bin = os.Getenv("PKID_BIN")
	}
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("pkidtest: the pkid binary: %v", err)
		}
		return bin
	}
	bin, err := exec.LookPath("pkid")
	if err != nil {
		unavailable(t, "no pkid binary: set Options.Binary or $PKID_BIN, or put pkid on $PATH")
	}
	return bin
}

// unavailable skips the test, or fails it when PKID_REQUIRE_SOFTHSM=1.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if softhsm.Required() {
		t.Fatalf("pkidtest: %s, and PKID_REQUIRE_SOFTHSM=1", why)
	}
	t.Skipf("pkidtest: %s; set PKID_REQUIRE_SOFTHSM=1 to make this a failure", why)
}

func newServer(i devInfo) (*Server, error) {
	serverCAs, err := pool(i.CABundle)
	if err != nil {
		return nil, err
	}
	roots, err := pool(i.RootCA)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(i.ClientCertificate, i.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: serverCAs, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	}
	return &Server{URL: i.APIURL, MetricsURL: i.MetricsURL, PublicURL: i.PublicURL,
		Client: client(pair), BearerClient: client(), StaticToken: i.StaticToken,
		ServerCAs: serverCAs, RootCAs: roots,
		CABundle: i.CABundle, RootCA: i.RootCA, ClientCertificate: i.ClientCertificate, ClientKey: i.ClientKey,
		ClientIdentity: i.ClientIdentity, MachineIdentity: i.MachineIdentity, ClientID: i.ClientID, ClientSecret: i.ClientSecret,
		Profiles: i.Profiles, ProjectSlug: i.ProjectSlug}, nil
}

func pool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return p, nil
}

// login is universal auth with the machine identity's client id and secret.
func (s *Server) login() (string, error) {
	body, err := json.Marshal(map[string]string{"clientId": s.ClientID, "clientSecret": s.ClientSecret})
	if err != nil {
		return "", err
	}
	resp, err := s.BearerClient.Post(s.URL+"/api/v1/auth/universal-auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("login: status %d (%v)", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

// stop sends SIGTERM, waits, and checks that pkid dev deleted dir.
func stop(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}, exitErr *error, dir string, logs *syncBuffer) {
	select {
	case <-exited:
	default:
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("pkidtest: SIGTERM: %v", err)
		}
		select {
		case <-exited:
			if *exitErr != nil {
				t.Errorf("pkidtest: pkid dev exited with %v", *exitErr)
			}
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-exited
			t.Errorf("pkidtest: pkid dev did not stop within %s of SIGTERM; killed", stopTimeout)
		}
	}
	if dir != "" {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("pkidtest: pkid dev left %s behind (%v); removing it", dir, err)
			os.RemoveAll(dir)
		}
	}
	if t.Failed() {
		t.Logf("pkid dev's log:\n%s", logs)
	}
}

// readySignal is pkid dev's stdout: c is closed when its first line, the
// one it writes once it serves, has arrived.
type readySignal struct {
	once sync.Once
	c    chan struct{}
}

func newReadySignal() *readySignal { return &readySignal{c: make(chan struct{})} }

func (r *readySignal) Write(p []byte) (int, error) {
	if bytes.IndexByte(p, '\n') >= 0 {
		r.once.Do(func() { close(r.c) })
	}
	return len(p), nil
}

// syncBuffer collects pkid's log for the test's failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
