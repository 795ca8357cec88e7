package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pkid/pkid/acme/validate"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/store/sqlite"
)

const (
	webID   = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"
	eabID   = "a1e5a186-5d12-4ffb-81c5-2e93d83a049f"
	plainID = "13646ca2-2a8e-4d37-aa4e-641fc7771122"
)

var eabSecret = bytes.Repeat([]byte{7}, 32)

// fakeValidator answers every challenge with result(c).
type fakeValidator struct {
	mu     sync.Mutex
	result func(validate.Challenge) error
	seen   []validate.Challenge
}

func (f *fakeValidator) Validate(_ context.Context, c validate.Challenge) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, c)
	if f.result == nil {
		return nil
	}
	return f.result(c)
}

type noLint struct{}

func (noLint) Lint(context.Context, string, []byte) ([]string, error) { return nil, nil }

// countingMetrics records what the server counted.
type countingMetrics struct {
	mu     sync.Mutex
	counts map[string]int
}

func (m *countingMetrics) add(k string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[k]++
}
func (m *countingMetrics) ObserveACMEOrder(profile, outcome string) {
	m.add("order " + profile + " " + outcome)
}
func (m *countingMetrics) ObserveACMEValidation(typ, outcome string) {
	m.add("validation " + typ + " " + outcome)
}
func (m *countingMetrics) ObserveHTTP(string, int, time.Duration) {}
func (m *countingMetrics) get(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[k]
}

// env is an ACME server on a real SQLite store and a real issuer with a
// software CA, served over TLS on 127.0.0.1.
type env struct {
	t         *testing.T
	srv       *httptest.Server
	store     *sqlite.DB
	runtime   *Runtime
	validator Validator
	fake      *fakeValidator
	metrics   *countingMetrics
	caCert    *x509.Certificate
}

func profile(t *testing.T, id, name string, acme issuer.ACMEConfig) *issuer.Profile {
	t.Helper()
	p, err := issuer.NewProfile(issuer.ProfileConfig{ID: id, Name: name, CA: "issuing", ACME: acme,
		Defaults: issuer.DefaultsConfig{KeyUsages: []string{"digital_signature"}, ExtendedKeyUsages: []string{"server_auth"}},
		Policy: policy.Rules{
			AltNames: map[string]*policy.NameRule{
				policy.SANDNS: {Allowed: []string{"example.internal", "*.example.internal"}, Denied: []string{"admin.example.internal"}},
				policy.SANIP:  {Allowed: []string{"127.0.0.1"}},
			},
			CommonName:          &policy.NameRule{Allowed: []string{"*.example.internal"}},
			KeyUsages:           &policy.NameRule{Allowed: []string{"digital_signature"}},
			ExtendedKeyUsages:   &policy.NameRule{Allowed: []string{"server_auth"}},
			SignatureAlgorithms: []string{"ECDSA-*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "30d",
		}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newEnv builds the server; validator nil means a fake that passes.
func newEnv(t *testing.T, validator Validator) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: db, runtime: NewRuntime(), metrics: &countingMetrics{counts: map[string]int{}}}
	t.Cleanup(func() {
		e.runtime.Close(ctx)
		db.Close(ctx)
	})
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := caCert(t, "Test ACME Root", rootKey.Public(), nil, rootKey)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.caCert = caCert(t, "Test ACME Issuing CA", key.Public(), root, rootKey)
	ca, err := issuer.NewCA(issuer.CAParams{Name: "issuing", Certificate: e.caCert, Parents: []*x509.Certificate{root}, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := issuer.NewService(issuer.ServiceConfig{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{CAs: []*issuer.CA{ca}, Service: svc, Linter: noLint{}, Profiles: []*issuer.Profile{
		profile(t, webID, "web", issuer.ACMEConfig{Enabled: true}),
		profile(t, eabID, "eab", issuer.ACMEConfig{Enabled: true, ExternalAccountRequired: true}),
		profile(t, plainID, "http-only", issuer.ACMEConfig{Enabled: true, Challenges: []string{"http-01"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if validator == nil {
		e.fake = &fakeValidator{}
		validator = e.fake
	}
	s, err := New(Config{Issuer: iss, Store: db, Validator: validator, Runtime: e.runtime, EABSecret: eabSecret,
		Metrics: e.metrics, MaxBodyBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(s)
	t.Cleanup(e.srv.Close)
	return e
}

// caCert makes a CA certificate for pub, signed by parent (nil:
// self-signed).
func caCert(t *testing.T, cn string, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if parent == nil {
		parent = tpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) dir(slug string) string { return e.srv.URL + "/acme/" + slug }

// client is a small ACME client: one key, its account once registered.
type client struct {
	e    *env
	base string
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
	last string // the last nonce the server gave
}

func (e *env) client(slug string) *client {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &client{e: e, base: e.dir(slug), key: key, alg: jose.ES256}
}

// answer is one HTTP answer, decoded when it is JSON.
type answer struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (a answer) str(k string) string { v, _ := a.body[k].(string); return v }

// problemType is the answer's problem type without the namespace, or "".
func (a answer) problemType() string {
	return strings.TrimPrefix(a.str("type"), errorNS)
}

func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") || ct == "application/problem+json" {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			e.t.Fatalf("%s %s: %d with a body that is not JSON: %q", req.Method, req.URL, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode >= 400 && ct != "application/problem+json" {
		e.t.Errorf("%s %s: %d answered as %q, not a problem document: %s", req.Method, req.URL, resp.StatusCode, ct, raw)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
		e.t.Errorf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, raw)
	}
	return a
}

func (c *client) nonce() string {
	c.e.t.Helper()
	if c.last != "" {
		n := c.last
		c.last = ""
		return n
	}
	req, _ := http.NewRequest(http.MethodHead, c.base+"/new-nonce", nil)
	a := c.e.do(req)
	if a.status != http.StatusOK || a.header.Get("Replay-Nonce") == "" {
		c.e.t.Fatalf("new-nonce: %d, nonce %q", a.status, a.header.Get("Replay-Nonce"))
	}
	return a.header.Get("Replay-Nonce")
}

// sign makes a flattened JWS of payload for url; headers override the
// usual ones (a nil value removes one).
func (c *client) sign(url string, payload []byte, embed bool, headers map[jose.HeaderKey]any) []byte {
	c.e.t.Helper()
	h := map[jose.HeaderKey]any{"url": url, "nonce": c.nonce()}
	for k, v := range headers {
		h[k] = v
	}
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	for k, v := range h {
		if v != nil {
			opts.ExtraHeaders[k] = v
		}
	}
	key := jose.SigningKey{Algorithm: c.alg, Key: c.key}
	if embed {
		opts.EmbedJWK = true
	} else {
		key.Key = jose.JSONWebKey{Key: c.key, KeyID: c.kid}
	}
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		c.e.t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return flatten(jws.FullSerialize())
}

// flatten keeps an empty payload as "payload": "", as ACME clients send a
// POST-as-GET (go-jose omits it).
func flatten(serialized string) []byte {
	var f map[string]any
	json.Unmarshal([]byte(serialized), &f)
	if _, ok := f["payload"]; !ok {
		f["payload"] = ""
	}
	b, _ := json.Marshal(f)
	return b
}

// send posts a raw body and keeps the answer's nonce.
func (c *client) send(url string, body []byte) answer {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/jose+json")
	a := c.e.do(req)
	if a.header.Get("Replay-Nonce") == "" {
		c.e.t.Errorf("POST %s: %d without a Replay-Nonce", url, a.status)
	}
	c.last = a.header.Get("Replay-Nonce")
	return a
}

// post signs payload (JSON-encoded unless it is []byte) with the account
// (or, before there is one, the embedded key).
func (c *client) post(url string, payload any) answer {
	c.e.t.Helper()
	return c.send(url, c.sign(url, encode(payload), c.kid == "", nil))
}

func encode(payload any) []byte {
	switch p := payload.(type) {
	case []byte:
		return p
	case nil:
		return nil
	}
	b, _ := json.Marshal(payload)
	return b
}

func (c *client) register() answer {
	c.e.t.Helper()
	a := c.post(c.base+"/new-account", map[string]any{"termsOfServiceAgreed": true, "contact": []string{"mailto:ops@example.internal"}})
	if a.status == http.StatusCreated || a.status == http.StatusOK {
		c.kid = a.header.Get("Location")
	}
	return a
}

// eab is an external account binding of c's key with EAB key kid/mac.
func (c *client) eab(kid string, mac []byte, url string) json.RawMessage {
	c.e.t.Helper()
	jwk, _ := jose.JSONWebKey{Key: c.key.Public()}.MarshalJSON()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: mac},
		&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"kid": kid, "url": url}})
	if err != nil {
		c.e.t.Fatal(err)
	}
	jws, err := signer.Sign(jwk)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return json.RawMessage(jws.FullSerialize())
}

// addEAB stores an EAB key of profile and returns its id and MAC key.
func (e *env) addEAB(profileID string) (string, []byte) {
	e.t.Helper()
	k, err := NewEABKey(eabSecret, profileID, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.AddACMEEABKey(context.Background(), k.Record); err != nil {
		e.t.Fatal(err)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(k.MACKey)
	return k.Record.KeyID, mac
}

func wantProblem(t *testing.T, what string, a answer, status int, typ string) {
	t.Helper()
	if a.status != status || a.problemType() != typ {
		t.Errorf("%s: %d %s, want %d %s", what, a.status, a.raw, status, typ)
	}
}

// csrFor is a CSR for names (DNS) with a fresh key, base64url DER.
func csrFor(t *testing.T, cn string, names ...string) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(der), key
}

func list(a answer, k string) []string {
	var out []string
	v, _ := a.body[k].([]any)
	for _, s := range v {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

// order makes an order for names and returns its answer.
func (c *client) order(names ...string) answer {
	var ids []map[string]string
	for _, n := range names {
		typ := "dns"
		if strings.Count(n, ".") == 3 && !strings.ContainsAny(n, "abcdefghijklmnopqrstuvwxyz") {
			typ = "ip"
		}
		ids = append(ids, map[string]string{"type": typ, "value": n})
	}
	return c.post(c.base+"/new-order", map[string]any{"identifiers": ids})
}

// challengeURL is the URL of the challenge of typ in the authorization.
func challengeURL(t *testing.T, authz answer, typ string) string {
	t.Helper()
	cs, _ := authz.body["challenges"].([]any)
	for _, c := range cs {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["url"].(string)
		}
	}
	t.Fatalf("authorization offers no %s: %s", typ, authz.raw)
	return ""
}
