package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/pkid/pkid/softhsm"
)

// `pkid dev` (like `vault server -dev`) serves a complete, throw-away pkid
// on loopback: a fresh SoftHSM2 token in a new temporary directory holding
// every CA key, mTLS material, a machine identity and a config, all made by
// the same ceremony and identity functions an operator uses. When ctx ends
// — or start-up fails — the directory, and with it the token, is deleted.

// DevOptions say where `pkid dev` listens and what it writes.
type DevOptions struct {
	ListenHost                       string // a loopback address or localhost; default 127.0.0.1
	APIPort, MetricsPort, PublicPort int    // 0: a free port
	Module                           string // SoftHSM2's PKCS#11 module; default the installed one
	JSONFile                         string // if set, DevInfo is written here (0600) once pkid serves, and removed at exit
}

// DevInfo is what a client of `pkid dev` needs, as written to --json.
type DevInfo struct {
	APIURL            string            `json:"apiURL"`
	MetricsURL        string            `json:"metricsURL"`
	PublicURL         string            `json:"publicURL"`
	CABundle          string            `json:"caBundle"` // the mTLS CA that signs the server certificate: SSL_CERT_FILE
	RootCA            string            `json:"rootCA"`   // the PKI root that issued certificates chain to
	ClientCertificate string            `json:"clientCertificate"`
	ClientKey         string            `json:"clientKey"`
	ClientIdentity    string            `json:"clientIdentity"` // the client certificate's identity
	MachineIdentity   string            `json:"machineIdentity"`
	ClientID          string            `json:"clientId"`
	ClientSecret      string            `json:"clientSecret"`
	StaticToken       string            `json:"staticToken"` // a Bearer token of the machine identity
	Profiles          map[string]string `json:"profiles"`    // profile id by name
	ProjectID         string            `json:"projectId"`
	ProjectSlug       string            `json:"projectSlug"`
	Dir               string            `json:"dir"` // everything above lives here and is deleted at exit
	Config            string            `json:"config"`
	PID               int               `json:"pid"`
}

// The fixed parts of the dev environment: the demo's names (DESIGN.md §10),
// so that what works against `make demo` works against `pkid dev`.
const (
	devTokenLabel     = "pkid-dev"
	devMachine        = "demo-agent"
	devClientURI      = "spiffe://example.internal/demo-client"
	devProjectID      = "6e7c3d3a-52a4-4b8e-9d0c-2a6a4f2c1b11"
	devProjectSlug    = "pkid-dev"
	devWebServerID    = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"
	devProdClientsID  = "13646ca2-2a8e-4d37-aa4e-641fc7771122"
	devStartupTimeout = time.Minute
)

// Dev builds the dev environment, serves it until ctx ends, calls ready
// once pkid answers, and deletes everything it made before it returns.
// Nothing is created before the options, the ports and SoftHSM2 are
// found usable.
func Dev(ctx context.Context, opts DevOptions, info Info, log *slog.Logger, ready func(DevInfo)) (err error) {
	host, err := loopbackHost(opts.ListenHost)
	if err != nil {
		return err
	}
	module, err := findSoftHSM(opts.Module)
	if err != nil {
		return err
	}
	if opts.JSONFile != "" {
		if st, err := os.Stat(filepath.Dir(opts.JSONFile)); err != nil || !st.IsDir() {
			return fmt.Errorf("%w: --json %s: its directory must exist (%v)", ErrUsage, opts.JSONFile, err)
		}
	}
	apiAddr, metricsAddr, publicAddr, err := reservePorts(host, opts.APIPort, opts.MetricsPort, opts.PublicPort)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pkid-dev-") // mode 0700
	if err != nil {
		return fmt.Errorf("making the dev directory: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("deleting the dev directory: %w", rmErr))
		}
	}()
	env, err := buildDev(ctx, dir, module, host, apiAddr, metricsAddr, publicAddr)
	if err != nil {
		return err
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var serveErr error
	served := make(chan struct{})
	go func() { serveErr = Serve(sctx, env.Config, info, log); close(served) }()
	abort := func(err error) error { stop(); <-served; return errors.Join(err, serveErr) }
	if err := waitServing(ctx, metricsAddr, publicAddr, served); err != nil {
		return abort(err)
	}
	if opts.JSONFile != "" {
		raw, err := json.MarshalIndent(env, "", "  ")
		if err != nil {
			return abort(err)
		}
		if err := writeFile(opts.JSONFile, append(raw, '\n'), 0o600); err != nil {
			return abort(fmt.Errorf("--json: %w", err))
		}
		defer os.Remove(opts.JSONFile) // its credentials die with the token
	}
	log.Info("pkid dev ready; everything is deleted when it stops", "dir", dir, "api", env.APIURL)
	if ready != nil {
		ready(*env)
	}
	<-served
	return serveErr
}

// loopbackHost accepts localhost and loopback addresses (127.0.0.0/8,
// ::1) only: anyone who reaches a dev pkid may issue certificates with its
// well-known profiles, and its credentials lie about in files.
func loopbackHost(h string) (string, error) {
	if h == "" {
		return "127.0.0.1", nil
	}
	if h == "localhost" {
		return h, nil
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" && a.Unmap().IsLoopback() {
		return a.Unmap().String(), nil
	}
	return "", fmt.Errorf("%w: --listen-host %q is not a loopback address (127.0.0.0/8, ::1 or localhost); pkid dev serves throw-away credentials and listens on loopback only", ErrUsage, h)
}

// findSoftHSM returns the SoftHSM2 module and checks that softhsm2-util,
// which initialises tokens, is installed.
func findSoftHSM(module string) (string, error) {
	const install = "SoftHSM2 is not installed (apt-get install softhsm2)"
	if module == "" {
		if module = softhsm.Module(); module == "" {
			return "", fmt.Errorf("%s: no libsofthsm2.so in %v", install, softhsm.ModuleCandidates)
		}
	} else if _, err := os.Stat(module); err != nil {
		return "", fmt.Errorf("%s: %w", install, err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return "", fmt.Errorf("%s: %w", install, err)
	}
	return module, nil
}

// reservePorts finds the three listeners' addresses: a port 0 becomes a
// free one, a given one must be free now. The listeners are closed again
// for Serve to open; should another process take a port meanwhile, Serve
// fails naming it and everything is deleted.
func reservePorts(host string, ports ...int) (api, metrics, public string, err error) {
	flags := []string{"--api-port", "--metrics-port", "--public-port"}
	var addrs []string
	for k, p := range ports {
		if p < 0 || p > 65535 {
			return "", "", "", fmt.Errorf("%w: %s %d is not a port", ErrUsage, flags[k], p)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return "", "", "", fmt.Errorf("%s %d: cannot listen (is the port in use?): %w", flags[k], p, err)
		}
		defer ln.Close() // held until all are found, so no two get the same free port
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs[0], addrs[1], addrs[2], nil
}

// buildDev makes the token, the keys and certificates, the machine
// identity and the config under dir.
func buildDev(ctx context.Context, dir, module, host, apiAddr, metricsAddr, publicAddr string) (*DevInfo, error) {
	path := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	pin, soPIN, tokenKey := randomHex(12), randomHex(12), randomHex(32)
	if err := os.Mkdir(path("tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", path("tokens"))
	if err := writeFile(path("softhsm2.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	for name, secret := range map[string]string{"hsm-pin": pin, "token-key": tokenKey} {
		if err := WriteSecretFile(path(name), secret); err != nil {
			return nil, err
		}
	}
	init := exec.CommandContext(ctx, "softhsm2-util", "--init-token", "--free", "--label", devTokenLabel, "--so-pin", soPIN, "--pin", pin)
	init.Env = append(os.Environ(), "SOFTHSM2_CONF="+path("softhsm2.conf"))
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w: %s", err, bytes.TrimSpace(out))
	}
	// The module reads SOFTHSM2_CONF when it is loaded, here for the
	// ceremony and again by Serve (hsm.environment in the config).
	if err := os.Setenv("SOFTHSM2_CONF", path("softhsm2.conf")); err != nil {
		return nil, err
	}
	if err := devCeremony(ctx, TokenParams{Module: module, TokenLabel: devTokenLabel, PINFile: path("hsm-pin")}, dir, host); err != nil {
		return nil, err
	}
	machine, err := NewMachineIdentity(devMachine)
	if err != nil {
		return nil, err
	}
	static, err := NewStaticToken(devMachine)
	if err != nil {
		return nil, err
	}
	var cfg bytes.Buffer
	err = template.Must(template.New("pkid.yaml").Parse(devConfig)).Execute(&cfg, map[string]string{
		"API": apiAddr, "Metrics": metricsAddr, "Public": publicAddr, "Module": module, "Token": devTokenLabel,
		"Machine": devMachine, "ClientIdentity": "uri:" + devClientURI, "ProjectID": devProjectID, "ProjectSlug": devProjectSlug,
		"WebServerID": devWebServerID, "ProdClientsID": devProdClientsID,
		"MachineIdentities": machine.Stanza + static.Stanza, // the stanzas pkid identity prints: hashes only
	})
	if err != nil {
		return nil, fmt.Errorf("writing the config: %w", err)
	}
	if err := writeFile(path("pkid.yaml"), cfg.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return &DevInfo{APIURL: "https://" + apiAddr, MetricsURL: "http://" + metricsAddr, PublicURL: "http://" + publicAddr,
		CABundle: path("tls", "ca.pem"), RootCA: path("ca", "root.pem"),
		ClientCertificate: path("tls", "client.pem"), ClientKey: path("tls", "client-key.pem"),
		ClientIdentity: "uri:" + devClientURI, MachineIdentity: "machine:" + devMachine,
		ClientID: machine.ClientID, ClientSecret: machine.ClientSecret, StaticToken: static.Token,
		Profiles:  map[string]string{"web-server": devWebServerID, "prod-clients": devProdClientsID},
		ProjectID: devProjectID, ProjectSlug: devProjectSlug, Dir: dir, Config: path("pkid.yaml"), PID: os.Getpid()}, nil
}

// devCeremony is softhsm/setup-demo.sh's ceremony with one issuing CA:
// every key is made in the token, and the token makes every signature.
func devCeremony(ctx context.Context, tp TokenParams, dir, host string) error {
	c, err := OpenCeremony(tp)
	if err != nil {
		return err
	}
	defer c.Close()
	path := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	const year = 8766 * time.Hour
	steps := []func() error{
		func() error {
			_, err := c.CreateRoot("pkid-root", "ec-p384", CASpec{CommonName: "pkid Dev Root CA", Organization: "pkid dev",
				Validity: 10 * year, MaxPathLen: -1}, path("ca", "root.pem"))
			return err
		},
		func() error {
			_, err := c.CreateIntermediate("pkid-ec-issuing", "ec-p256", CASpec{CommonName: "pkid Dev EC Issuing CA",
				Organization: "pkid dev", Validity: 5 * year}, "pkid-root", path("ca", "root.pem"), path("ca", "ec-issuing.pem"))
			return err
		},
		func() error { return c.CreateAuditKey("pkid-audit", "ec-p256", path("audit", "audit-key.pem")) },
		func() error { return c.CreateOCSPKey("pkid-ocsp-ec-issuing", "ec-p256") },
		func() error {
			_, err := c.CreateMTLSCA("pkid-tls-ca", "ec-p256", CASpec{CommonName: "pkid Dev mTLS CA", Organization: "pkid dev",
				Validity: 10 * year}, path("tls", "ca.pem"))
			return err
		},
		func() error {
			ips := []string{"127.0.0.1", "::1"}
			if host != "localhost" && host != "127.0.0.1" && host != "::1" {
				ips = append(ips, host)
			}
			return c.IssueTLS(TLSRequest{CALabel: "pkid-tls-ca", CACert: path("tls", "ca.pem"), CommonName: "localhost",
				DNS: []string{"localhost"}, IPs: ips, Server: true, Validity: 2 * year,
				CertOut: path("tls", "server.pem"), KeyOut: path("tls", "server-key.pem")})
		},
		func() error {
			return c.IssueTLS(TLSRequest{CALabel: "pkid-tls-ca", CACert: path("tls", "ca.pem"), CommonName: "demo-client",
				URIs: []string{devClientURI}, Client: true, Validity: 2 * year,
				CertOut: path("tls", "client.pem"), KeyOut: path("tls", "client-key.pem")})
		},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil { // PKCS#11 calls take no context: stop between them
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// waitServing returns once the metrics listener reports ready and the
// public listener, the last Serve opens, accepts connections — or Serve
// returned, ctx ended or devStartupTimeout passed.
func waitServing(ctx context.Context, metricsAddr, publicAddr string, served <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, devStartupTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	check := func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/readyz", nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", publicAddr)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !check() {
		select {
		case <-served:
			return errors.New("pkid stopped while starting")
		case <-ctx.Done():
			return fmt.Errorf("pkid did not become ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// devConfig is softhsm/setup-demo.sh's config with its web-server and
// prod-clients profiles, both on the one EC issuing CA.
const devConfig = `# pkid dev configuration, written by pkid dev; deleted when it stops.
# Relative paths are relative to this file. The token PIN is in hsm-pin.
listen: "{{.API}}"
metricsListen: "{{.Metrics}}"
publicListen: "{{.Public}}"
crl:
  validity: 7d
  maxDelay: 2s
tls:
  certificate: tls/server.pem
  key: tls/server-key.pem
  clientCAs: tls/ca.pem
database: pkid.db
{{.MachineIdentities -}}
accessTokens:
  keyFile: token-key
project:
  id: {{.ProjectID}}
  slug: {{.ProjectSlug}}
  name: pkid dev
applications:
  - id: 0c4f7a52-8d21-4f51-a3f4-9a1b2c3d4e5f
    name: web
    profiles: [web-server]
  - id: 5d2e8b90-1f3c-4a6b-8e7d-6c5b4a392817
    name: clients
    profiles: [prod-clients]
audit:
  keyLabel: pkid-audit
  publicKey: audit/audit-key.pem
hsm:
  module: "{{.Module}}"
  tokenLabel: {{.Token}}
  pinFile: hsm-pin
  environment:
    SOFTHSM2_CONF: softhsm2.conf
cas:
  - name: root
    certificate: ca/root.pem
    keyLabel: pkid-root
  - name: ec-issuing
    certificate: ca/ec-issuing.pem
    keyLabel: pkid-ec-issuing
    parent: root
    ocspKeyLabel: pkid-ocsp-ec-issuing
    crlURLs: ["http://{{.Public}}/crl/ec-issuing.crl"]
    issuingCertificateURLs: ["http://{{.Public}}/ca/ec-issuing.crt"]
    ocspURLs: ["http://{{.Public}}/ocsp"]
profiles:
  - id: {{.WebServerID}}
    name: web-server
    ca: ec-issuing
    allowedIdentities: ["{{.ClientIdentity}}", "machine:{{.Machine}}"]
    managers: ["{{.ClientIdentity}}", "machine:{{.Machine}}"]
    defaults:
      keyUsages: [digital_signature]
      extendedKeyUsages: [server_auth]
    policy:
      commonName:
        allowed: [example.internal, "*.example.internal"]
      altNames:
        dns_name:
          allowed: [example.internal, "*.example.internal"]
        ip_address:
          allowed: ["10.*", 127.0.0.1]
      keyUsages:
        allowed: [digital_signature, key_encipherment]
      extendedKeyUsages:
        allowed: [server_auth, client_auth]
      signatureAlgorithms: ["ECDSA-*"]
      keyAlgorithms: [RSA_2048, RSA_3072, RSA_4096, EC_prime256v1, EC_secp384r1, EC_secp521r1]
      maxValidity: 90d
  - id: {{.ProdClientsID}}
    name: prod-clients
    ca: ec-issuing
    allowedIdentities: ["{{.ClientIdentity}}", "machine:{{.Machine}}"]
    managers: ["{{.ClientIdentity}}", "machine:{{.Machine}}"]
    defaults:
      keyUsages: [digital_signature]
      extendedKeyUsages: [client_auth]
    policy:
      commonName:
        required: ["*.prod.example.internal"]
      keyUsages:
        allowed: [digital_signature]
      extendedKeyUsages:
        required: [client_auth]
        denied: [server_auth]
      signatureAlgorithms: [ECDSA-SHA256]
      keyAlgorithms: [EC_prime256v1]
      maxValidity: 24h
`
