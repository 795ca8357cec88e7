package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
)

// acmeEnv is a second pkid on its own demo fixture, whose ACME server
// (web-server, with external account binding) checks http-01 and
// tls-alpn-01 on ports of 127.0.0.1 the test's ACME clients answer on:
// the fixture points the demo names at 127.0.0.1 (acme.hostOverrides).
type acmeEnv struct {
	d                  *daemon2
	httpPort, alpnPort int
	directory          string
	caBundle           string
	root               *x509.Certificate
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr())
	p, _ := strconv.Atoi(port)
	return p
}

func newACMEEnv(t *testing.T) *acmeEnv {
	t.Helper()
	e := &acmeEnv{httpPort: freePort(t), alpnPort: freePort(t)}
	// lego logs every step at INFO; its warnings and errors go to the test log.
	prev := legolog.Default()
	legolog.SetDefault(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { legolog.SetDefault(prev) })
	t.Setenv("PKID_ACME_HTTP_PORT", strconv.Itoa(e.httpPort))
	t.Setenv("PKID_ACME_TLS_ALPN_PORT", strconv.Itoa(e.alpnPort))
	e.d = startDaemon2(t)
	e.directory = "https://" + e.d.addr + "/acme/web-server/directory"
	e.caBundle = filepath.Join(e.d.dir, "tls", "ca.pem")
	rootPEM, err := os.ReadFile(filepath.Join(e.d.dir, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if e.root, err = parseCert(string(rootPEM)); err != nil {
		t.Fatal(err)
	}
	return e
}

// eabKey makes a new EAB key with `pkid acme eab add` while the daemon
// runs (a key binds one account).
func (e *acmeEnv) eabKey(t *testing.T) (kid, hmac string) {
	t.Helper()
	out, errOut, code := s.pkid(t, "acme", "eab", "add", "--config", filepath.Join(e.d.dir, "pkid.yaml"), "--profile", "web-server")
	if code != 0 {
		t.Fatalf("pkid acme eab add: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`(?m)^kid: (\S+)\nhmac: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pkid acme eab add printed %q", out)
	}
	return m[1], m[2]
}

// verifyLeaf checks that pemChain starts with a certificate for names that
// chains to the demo root through the certificates after it.
func (e *acmeEnv) verifyLeaf(t *testing.T, pemChain []byte, names ...string) *x509.Certificate {
	t.Helper()
	certs := parseChain(t, string(pemChain))
	if len(certs) < 2 {
		t.Fatalf("chain of %d certificates, want the leaf and its issuing CA", len(certs))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.root)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: n,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", n, err)
		}
	}
	lintClean(t, leaf)
	return leaf
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// revokedOnCRL waits for the CRL of ec-issuing past number after and
// checks it lists serial with reason.
func (e *acmeEnv) revokedOnCRL(t *testing.T, after int64, serial string, reason int) {
	t.Helper()
	crl, _ := waitCRLListing(t, e.d.public, "ec-issuing", after, serial)
	for _, entry := range crl.RevokedCertificateEntries {
		if entry.SerialNumber.Text(16) == serial && entry.ReasonCode != reason {
			t.Errorf("CRL lists %s with reason %d, want %d", serial, entry.ReasonCode, reason)
		}
	}
}

func (e *acmeEnv) crlNumber(t *testing.T) int64 {
	t.Helper()
	crl, _, _ := fetchCRL(t, e.d.public, "ec-issuing")
	return crl.Number.Int64()
}

// The real ACME clients against the real daemon on loopback, then what
// must be refused, then the counters and the audit log.
func TestACME(t *testing.T) {
	e := newACMEEnv(t)
	t.Run("Certbot", e.certbot)
	t.Run("Lego", e.lego)
	t.Run("RejectedIdentifier", e.rejectedIdentifier)
	t.Run("FailedChallenge", e.failedChallenge)
	t.Run("MetricsAndAudit", e.metricsAndAudit)
}

// certbot (Debian's) registers with the demo's EAB key, gets a
// certificate with http-01 from its standalone server, renews it, and
// revokes it; the CRL then lists it.
func (e *acmeEnv) certbot(t *testing.T) {
	certbot := requireTool(t, "certbot")
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, certbot, append(args, "--non-interactive", "--server", e.directory,
			"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"))...)
		cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+e.caBundle)
		out, err := cmd.CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
			t.Fatalf("certbot %s: %v\n%s\n--- letsencrypt.log:\n%s", args[0], err, out, log)
		}
		return string(out)
	}
	kid, _ := os.ReadFile(filepath.Join(e.d.dir, "acme", "eab-kid"))
	hmac, _ := os.ReadFile(filepath.Join(e.d.dir, "acme", "eab-hmac-key"))
	run("certonly", "--standalone", "--http-01-port", strconv.Itoa(e.httpPort), "--http-01-address", "127.0.0.1",
		"--agree-tos", "--no-eff-email", "-m", "ops@example.internal",
		"--eab-kid="+string(kid), "--eab-hmac-key="+string(hmac), "-d", "www.example.internal", "-d", "example.internal")
	live := filepath.Join(dir, "config", "live", "www.example.internal")
	first, err := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := e.verifyLeaf(t, first, "www.example.internal", "example.internal")

	run("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "www.example.internal")
	renewed, _ := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	next := e.verifyLeaf(t, renewed, "www.example.internal", "example.internal")
	if next.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("certbot renew did not get a new certificate")
	}

	before := e.crlNumber(t)
	run("revoke", "--cert-name", "www.example.internal", "--reason", "keycompromise", "--no-delete-after-revoke")
	e.revokedOnCRL(t, before, serialHex(next), 1)
	out, _, code := s.pkid(t, "records", "show", "--config", filepath.Join(e.d.dir, "pkid.yaml"), serialHex(next))
	if code != 0 || !strings.Contains(out, `"identity": "acme:`) || !strings.Contains(out, `"status": "revoked"`) {
		t.Errorf("the record of certbot's certificate: %s", out)
	}
}

// legoUser is lego's view of an ACME account.
type legoUser struct {
	key crypto.Signer
	reg *acme.ExtendedAccount
}

func (u *legoUser) GetEmail() string                       { return "ops@example.internal" }
func (u *legoUser) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *legoUser) GetPrivateKey() crypto.Signer           { return u.key }

func (e *acmeEnv) httpClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(e.caBundle)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// legoClient is a lego client of a new account key, registered with a
// new EAB key.
func (e *acmeEnv) legoClient(t *testing.T) (*lego.Client, *legoUser) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u := &legoUser{key: key}
	cfg := lego.NewConfig(u)
	cfg.CADirURL, cfg.HTTPClient = e.directory, e.httpClient(t)
	c, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kid, hmac := e.eabKey(t)
	if u.reg, err = c.Registration.RegisterWithExternalAccountBinding(t.Context(),
		registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmac}); err != nil {
		t.Fatalf("lego register with EAB: %v", err)
	}
	return c, u
}

func wantACMEProblem(t *testing.T, what string, err error, typ string) {
	t.Helper()
	var pd *acme.ProblemDetails
	if !errors.As(err, &pd) || pd.Type != "urn:ietf:params:acme:error:"+typ {
		t.Errorf("%s: %v, want an ACME %s problem", what, err, typ)
	}
}

// lego (as a library) registers with a fresh EAB key, gets certificates
// by http-01 and by tls-alpn-01, renews, rolls its account key over,
// revokes (the CRL then lists it) and deactivates its account.
func (e *acmeEnv) lego(t *testing.T) {
	ctx := t.Context()
	c, u := e.legoClient(t)
	if err := c.Challenge.SetHTTP01Provider(http01.NewProviderServer("127.0.0.1", strconv.Itoa(e.httpPort))); err != nil {
		t.Fatal(err)
	}
	res, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"app.example.internal", "api.example.internal"}, KeyType: certcrypto.EC256, Bundle: true})
	if err != nil {
		t.Fatalf("lego obtain (http-01): %v", err)
	}
	leaf := e.verifyLeaf(t, res.Certificate, "app.example.internal", "api.example.internal")

	renewed, err := c.Certificate.Renew(ctx, *res, &certificate.RenewOptions{Bundle: true})
	if err != nil {
		t.Fatalf("lego renew: %v", err)
	}
	if next := e.verifyLeaf(t, renewed.Certificate, "app.example.internal"); next.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("lego renew did not get a new certificate")
	}

	c.Challenge.Remove("http-01")
	if err := c.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", strconv.Itoa(e.alpnPort))); err != nil {
		t.Fatal(err)
	}
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := c.Registration.KeyRollover(ctx, newKey); err != nil {
		t.Fatalf("lego key rollover: %v", err)
	}
	u.key = newKey
	if c, err = newLegoClientFor(e, t, u); err != nil {
		t.Fatal(err)
	}
	if err := c.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", strconv.Itoa(e.alpnPort))); err != nil {
		t.Fatal(err)
	}
	c.Challenge.Remove("http-01")
	alpn, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"example.internal"}, KeyType: certcrypto.RSA2048, Bundle: true})
	if err != nil {
		t.Fatalf("lego obtain (tls-alpn-01, after the key rollover): %v", err)
	}
	alpnLeaf := e.verifyLeaf(t, alpn.Certificate, "example.internal")

	before := e.crlNumber(t)
	superseded := uint(4)
	if err := c.Certificate.RevokeWithReason(ctx, alpn.Certificate, &superseded); err != nil {
		t.Fatalf("lego revoke: %v", err)
	}
	e.revokedOnCRL(t, before, serialHex(alpnLeaf), 4)
	wantACMEProblem(t, "revoking twice", c.Certificate.RevokeWithReason(ctx, alpn.Certificate, &superseded), "alreadyRevoked")

	if err := c.Registration.DeleteRegistration(ctx); err != nil {
		t.Fatalf("lego deactivate: %v", err)
	}
	_, err = c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"example.internal"}, KeyType: certcrypto.EC256})
	wantACMEProblem(t, "an order of a deactivated account", err, "unauthorized")
}

// newLegoClientFor is a lego client for u's existing account.
func newLegoClientFor(e *acmeEnv, t *testing.T, u *legoUser) (*lego.Client, error) {
	cfg := lego.NewConfig(u)
	cfg.CADirURL, cfg.HTTPClient = e.directory, e.httpClient(t)
	return lego.NewClient(cfg)
}

// An order for a name the profile's policy does not allow is refused
// with rejectedIdentifier, and one without EAB with externalAccountRequired.
func (e *acmeEnv) rejectedIdentifier(t *testing.T) {
	c, _ := e.legoClient(t)
	_, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"www.example.com"}, KeyType: certcrypto.EC256})
	wantACMEProblem(t, "an order for www.example.com", err, "rejectedIdentifier")
	_, err = c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"www.example.internal", "10.1.2.3.example.com"}, KeyType: certcrypto.EC256})
	wantACMEProblem(t, "an order with one name outside the policy", err, "rejectedIdentifier")

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noEAB, err := newLegoClientFor(e, t, &legoUser{key: key})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noEAB.Registration.Register(t.Context(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	wantACMEProblem(t, "an account without EAB", err, "externalAccountRequired")
}

// A challenge that fails (nothing answers http-01) leaves the
// authorization and the order invalid, with the reason; driven through
// lego's protocol layer, which exposes the objects.
func (e *acmeEnv) failedChallenge(t *testing.T) {
	ctx := t.Context()
	_, u := e.legoClient(t)
	core, err := api.New(e.httpClient(t), "pkid-integration", e.directory, u.reg.Location, u.key)
	if err != nil {
		t.Fatal(err)
	}
	order, err := core.Orders.New(ctx, []string{"api.example.internal"}, nil)
	if err != nil {
		t.Fatalf("new-order: %v", err)
	}
	authz, err := core.Authorizations.Get(ctx, order.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	var chURL string
	for _, ch := range authz.Challenges {
		if ch.Type == "http-01" {
			chURL = ch.URL
		}
	}
	if _, err := core.Challenges.New(ctx, chURL); err != nil {
		t.Fatalf("answering the challenge: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for authz.Status == acme.StatusPending || authz.Status == acme.StatusProcessing {
		if time.Now().After(deadline) {
			t.Fatalf("the authorization stayed %s", authz.Status)
		}
		time.Sleep(100 * time.Millisecond) // the server validates in the background; the client polls, as real clients do
		if authz, err = core.Authorizations.Get(ctx, order.Authorizations[0]); err != nil {
			t.Fatal(err)
		}
	}
	if authz.Status != acme.StatusInvalid || authz.Challenges[0].Error == nil || authz.Challenges[0].Error.Type != "urn:ietf:params:acme:error:connection" {
		t.Errorf("authorization after a failed http-01: %s, challenge %+v", authz.Status, authz.Challenges[0])
	}
	got, err := core.Orders.Get(ctx, order.Location)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != acme.StatusInvalid || got.Error == nil || !strings.Contains(got.Error.Detail, "api.example.internal") {
		t.Errorf("order after a failed challenge: %s %+v", got.Status, got.Error)
	}
}

// The counters saw all of it, and the audit log, which every ACME
// certificate and revocation went into, verifies.
func (e *acmeEnv) metricsAndAudit(t *testing.T) {
	code, text := httpGet(t, "http://"+e.d.metrics+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	value := func(series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("scrape lacks %s", series)
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	for series, least := range map[string]float64{
		`pkid_acme_orders_total{outcome="created",profile="web-server"}`:              6,
		`pkid_acme_orders_total{outcome="valid",profile="web-server"}`:                5,
		`pkid_acme_orders_total{outcome="rejected",profile="web-server"}`:             2,
		`pkid_acme_orders_total{outcome="invalid",profile="web-server"}`:              1,
		`pkid_acme_challenge_validations_total{outcome="valid",type="http-01"}`:       3,
		`pkid_acme_challenge_validations_total{outcome="valid",type="tls-alpn-01"}`:   1,
		`pkid_acme_challenge_validations_total{outcome="invalid",type="http-01"}`:     1,
		`pkid_acme_challenge_validations_total{outcome="invalid",type="tls-alpn-01"}`: 0,
	} {
		if got := value(series); got < least {
			t.Errorf("%s = %v, want at least %v", series, got, least)
		}
	}
	if t.Failed() {
		return
	}
	if out, errOut, code := s.pkid(t, "audit", "verify", "--config", filepath.Join(e.d.dir, "pkid.yaml")); code != 0 {
		t.Errorf("pkid audit verify: %d %s %s", code, out, errOut)
	}
}
