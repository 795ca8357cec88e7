package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The replays below send what Infisical's own clients send (reference
// clients.md §2 and §5), in their order, over TLS without a client
// certificate and with a machine identity's Bearer token, as they do.

// Demo catalog (softhsm/setup-demo.sh).
const (
	demoProjectID   = "6e7c3d3a-52a4-4b8e-9d0c-2a6a4f2c1b11"
	demoProjectSlug = "pkid-demo"
	webServerID     = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"
	webAppID        = "0c4f7a52-8d21-4f51-a3f4-9a1b2c3d4e5f"
)

// agent is an Infisical client: it trusts pkid's server CA (SSL_CERT_FILE)
// and has no client certificate.
type agent struct {
	t      *testing.T
	addr   string
	http   *http.Client
	bearer string
}

func newAgent(t *testing.T, dir, addr string) *agent {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &agent{t: t, addr: addr, http: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
}

// do sends one request; body is JSON unless ctype says otherwise.
func (a *agent) do(method, path, ctype string, body any) reply {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "https://"+a.addr+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		if ctype == "" {
			ctype = "application/json"
		}
		req.Header.Set("Content-Type", ctype)
	}
	if a.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	out := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.t.Errorf("%s %s: Content-Type %q (Infisical's CLI reads anything else as empty)", method, path, ct)
	}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		a.t.Fatalf("%s %s: %d, not a JSON object: %q", method, path, resp.StatusCode, raw)
	}
	return out
}

func (a *agent) must(method, path string, body any) map[string]any {
	a.t.Helper()
	r := a.do(method, path, "", body)
	if r.status != http.StatusOK {
		a.t.Fatalf("%s %s: %d %s", method, path, r.status, r.raw)
	}
	return r.body
}

// credentials reads the demo machine identity's secrets from a fixture.
func credentials(t *testing.T, dir string) (clientID, secret, static string) {
	t.Helper()
	return readFile(t, filepath.Join(dir, "identity", "client-id")), readFile(t, filepath.Join(dir, "identity", "client-secret")),
		readFile(t, filepath.Join(dir, "identity", "static-token"))
}

// login is universal auth as go-sdk does it; it checks what the CLI agent
// needs of the answer (§6: expiresIn > 30, accessTokenMaxTTL ≥ expiresIn).
func (a *agent) login(clientID, secret string) {
	a.t.Helper()
	a.bearer = ""
	tok := a.must(http.MethodPost, "/api/v1/auth/universal-auth/login", map[string]string{"clientId": clientID, "clientSecret": secret})
	a.useToken(tok)
}

func (a *agent) useToken(tok map[string]any) {
	a.t.Helper()
	exp, _ := tok["expiresIn"].(float64)
	maxTTL, _ := tok["accessTokenMaxTTL"].(float64)
	at, _ := tok["accessToken"].(string)
	if exp <= 30 || maxTTL < exp || tok["tokenType"] != "Bearer" || strings.Count(at, ".") != 2 {
		a.t.Fatalf("token answer the CLI agent cannot use: %v", tok)
	}
	a.bearer = at
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// checkBundle checks an issued certificate object: it verifies up the
// chain to the demo root, the chain holds no leaf and (unless it keeps the
// root) no root, and a returned private key is the certificate's.
func checkBundle(t *testing.T, b map[string]any, keepRoot bool) *x509.Certificate {
	t.Helper()
	leaf, err := parseCert(b["certificate"].(string))
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	chain := parseChain(t, b["certificateChain"].(string))
	inter := x509.NewCertPool()
	for _, c := range chain {
		if c.Equal(leaf) {
			t.Error("certificateChain holds the leaf")
		}
		inter.AddCert(c)
	}
	if hasRoot := len(chain) > 0 && chain[len(chain)-1].Equal(s.root); hasRoot != keepRoot {
		t.Errorf("chain ends in the root: %v, want %v", hasRoot, keepRoot)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the certificate does not verify to the demo root: %v", err)
	}
	if k, _ := b["privateKey"].(string); k != "" {
		if _, err := tls.X509KeyPair([]byte(b["certificate"].(string)), []byte(k)); err != nil {
			t.Errorf("privateKey does not match the certificate: %v", err)
		}
	}
	for _, f := range []string{"certificate", "certificateChain", "privateKey"} {
		if v, _ := b[f].(string); v != strings.TrimSpace(v) {
			t.Errorf("%s is not trimmed (issuer v0.1.3 fails on a trailing blank line)", f)
		}
	}
	return leaf
}

// The CLI agent with a version: v1 config: login, project and profile by
// slug, issue with attributes, then its renewal cycle and token upkeep.
func TestCLIAgentV1Sequence(t *testing.T) {
	id, secret, _ := credentials(t, s.dir)
	a := newAgent(t, s.dir, s.addr)
	a.login(id, secret)

	proj := a.must(http.MethodGet, "/api/v1/projects/slug/"+demoProjectSlug, nil)
	if proj["id"] != demoProjectID || proj["slug"] != demoProjectSlug {
		t.Fatalf("project: %v", proj)
	}
	prof := asMap(a.must(http.MethodGet, "/api/v1/cert-manager/certificate-profiles/slug/web-server?projectId="+url.QueryEscape(demoProjectID), nil)["certificateProfile"])
	if prof["id"] != webServerID {
		t.Fatalf("profile by slug: %v", prof)
	}
	if r := a.do(http.MethodGet, "/api/v1/projects/slug/someone-elses", "", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown project: %d %s", r.status, r.raw)
	}

	created := a.must(http.MethodPost, "/api/v1/cert-manager/certificates", map[string]any{
		"profileId": prof["id"],
		// clients.md §5's body, with an RSA key: key_encipherment on an EC
		// key is refused (RFC 5480 §3), and the agent's sample asks for it.
		"attributes": map[string]any{"ttl": "2d", "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "RSA_2048",
			"commonName": "api.example.internal", "keyUsages": []string{"digital_signature", "key_encipherment"},
			"extendedKeyUsages": []string{"server_auth"},
			"altNames": []map[string]string{{"type": "dns_name", "value": "api.example.internal"},
				{"type": "dns_name", "value": "www.example.internal"}},
			"removeRootsFromChain": true}})
	if created["status"] != "issued" || created["certificateRequestId"] == "" {
		t.Fatalf("create: %v", created)
	}
	bundle := asMap(created["certificate"])
	leaf := checkBundle(t, bundle, false) // removeRootsFromChain inside attributes is honoured
	if leaf.Subject.CommonName != "api.example.internal" || strings.Join(leaf.DNSNames, ",") != "api.example.internal,www.example.internal" {
		t.Errorf("issued %q %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 47*time.Hour || life > 49*time.Hour {
		t.Errorf("ttl 2d gave %s", life)
	}
	certID := bundle["certificateId"].(string)

	// Monitoring: the agent renews only on status "active" and reads an
	// RFC 3339 notAfter.
	meta := asMap(a.must(http.MethodGet, "/api/v1/cert-manager/certificates/"+certID, nil)["certificate"])
	notAfter, err := time.Parse(time.RFC3339, meta["notAfter"].(string))
	if meta["status"] != "active" || err != nil || !notAfter.Equal(leaf.NotAfter) || meta["serialNumber"] != bundle["serialNumber"] {
		t.Errorf("metadata: %v (notAfter %v)", meta, err)
	}
	if got := strs(meta["keyUsages"]); strings.Join(got, ",") != "digital_signature,key_encipherment" {
		t.Errorf("keyUsages %v, want them as requested", got)
	}

	renewed := a.must(http.MethodPost, "/api/v1/cert-manager/certificates/"+certID+"/renew", map[string]any{"removeRootsFromChain": true})
	// An empty certificateRequestId tells the agent the renewal is done and
	// its flat answer is the certificate (pkid never issues asynchronously).
	if renewed["certificateRequestId"] != "" || renewed["certificateId"] == certID {
		t.Errorf("renew: certificateRequestId %q, certificateId %v", renewed["certificateRequestId"], renewed["certificateId"])
	}
	next := checkBundle(t, renewed, false)
	if next.SerialNumber.Cmp(leaf.SerialNumber) == 0 || next.Subject.CommonName != leaf.Subject.CommonName {
		t.Errorf("renewal: serial %x CN %q", next.SerialNumber, next.Subject.CommonName)
	}

	// The create's request id still answers: issued, with the certificate.
	req := a.must(http.MethodGet, "/api/v1/cert-manager/certificates/certificate-requests/"+created["certificateRequestId"].(string), nil)
	if req["status"] != "issued" || req["certificateId"] != certID || req["certificate"] != bundle["certificate"] {
		t.Errorf("certificate request: %v", req)
	}

	// Token upkeep: the renewed token works and keeps the lineage's max TTL.
	old := a.bearer
	a.bearer = ""
	a.useToken(a.must(http.MethodPost, "/api/v1/auth/token/renew", map[string]string{"accessToken": old}))
	a.must(http.MethodGet, "/api/v1/cert-manager/certificates/"+certID, nil)
}

// The CLI agent with a version: v2 config and a CSR: application by name,
// its profiles, then create with the CSR, keeping the root in the chain.
func TestCLIAgentV2SequenceWithCSR(t *testing.T) {
	id, secret, _ := credentials(t, s.dir)
	a := newAgent(t, s.dir, s.addr)
	a.login(id, secret)

	app := asMap(a.must(http.MethodGet, "/api/v1/cert-manager/applications/by-name/web", nil)["application"])
	if app["id"] != webAppID || app["name"] != "web" {
		t.Fatalf("application: %v", app)
	}
	var profileID string
	for _, p := range a.must(http.MethodGet, "/api/v1/cert-manager/applications/"+webAppID+"/profiles", nil)["profiles"].([]any) {
		if pm := asMap(p); pm["profileSlug"] == "web-server" && pm["applicationId"] == webAppID {
			profileID, _ = pm["profileId"].(string)
		}
	}
	if profileID != webServerID {
		t.Fatalf("the web application does not list web-server")
	}

	dir := t.TempDir()
	if out, err := openssl(t, dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "key.pem", "-out", "csr.pem", "-subj", "/CN=csr.example.internal",
		"-addext", "subjectAltName=DNS:csr.example.internal"); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	created := a.must(http.MethodPost, "/api/v1/cert-manager/certificates", map[string]any{
		"profileId": profileID, "applicationId": webAppID, "csr": readFile(t, filepath.Join(dir, "csr.pem")),
		"attributes": map[string]any{"ttl": "1d", "removeRootsFromChain": false}})
	bundle := asMap(created["certificate"])
	if bundle["privateKey"] != nil {
		t.Error("a CSR's certificate came back with a private key")
	}
	leaf := checkBundle(t, bundle, true)
	if _, err := tls.X509KeyPair([]byte(bundle["certificate"].(string)), []byte(readFile(t, filepath.Join(dir, "key.pem")))); err != nil {
		t.Errorf("the certificate is not for the CSR's key: %v", err)
	}
	if leaf.Subject.CommonName != "csr.example.internal" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
	meta := asMap(a.must(http.MethodGet, "/api/v1/cert-manager/certificates/"+bundle["certificateId"].(string), nil)["certificate"])
	if meta["applicationId"] != webAppID {
		t.Errorf("applicationId not recorded: %v", meta)
	}
}

// Terraform with token auth (a static token as the Bearer, no login):
// create, then the GET it repeats on every plan must echo the configuration
// as given — usages and alt names in request order — or terraform fails
// with "inconsistent result after apply".
func TestTerraformTokenAuthRoundTrip(t *testing.T) {
	_, _, static := credentials(t, s.dir)
	a := newAgent(t, s.dir, s.addr)
	a.bearer = static
	usages := []string{"key_encipherment", "digital_signature"} // not the canonical order
	ekus := []string{"client_auth", "server_auth"}
	alts := []map[string]string{{"type": "dns_name", "value": "tf-b.example.internal"}, {"type": "dns_name", "value": "tf-a.example.internal"}}
	created := a.must(http.MethodPost, "/api/v1/cert-manager/certificates", map[string]any{
		"profileId": "a1e5a186-5d12-4ffb-81c5-2e93d83a049f", "applicationId": webAppID,
		"attributes": map[string]any{"ttl": "30d", "commonName": "tf.svc.example.internal", "keyUsages": usages,
			"extendedKeyUsages": ekus, "altNames": []map[string]string{{"type": "dns_name", "value": "tf.svc.example.internal"}},
			"signatureAlgorithm": "RSA-SHA256", "keyAlgorithm": "RSA_2048"}})
	bundle := asMap(created["certificate"])
	if bundle["certificateId"] == "" || bundle["certificate"] == "" {
		t.Fatalf("terraform needs certificateId and certificate at once: %v", created)
	}
	checkBundle(t, bundle, true)
	path := "/api/v1/cert-manager/certificates/" + bundle["certificateId"].(string)
	first := a.must(http.MethodGet, path, nil)
	meta := asMap(first["certificate"])
	if got := strs(meta["keyUsages"]); strings.Join(got, ",") != strings.Join(usages, ",") {
		t.Errorf("keyUsages %v, want %v as configured", got, usages)
	}
	if got := strs(meta["extendedKeyUsages"]); strings.Join(got, ",") != strings.Join(ekus, ",") {
		t.Errorf("extendedKeyUsages %v, want %v as configured", got, ekus)
	}
	if meta["commonName"] != "tf.svc.example.internal" || meta["keyAlgorithm"] != "RSA_2048" || meta["signatureAlgorithm"] != "RSA-SHA256" {
		t.Errorf("metadata: %v", meta)
	}
	if again := a.must(http.MethodGet, path, nil); !bytes.Equal(mustJSON(t, again), mustJSON(t, first)) {
		t.Errorf("a refresh changed the answer:\n%v\n%v", first, again)
	}
	// Alt names keep their order too (a separate certificate: the profile
	// above wants the CN among them).
	c2 := asMap(a.must(http.MethodPost, "/api/v1/cert-manager/certificates", map[string]any{
		"profileId": webServerID, "applicationId": webAppID,
		"attributes": map[string]any{"ttl": "30d", "commonName": "tf-a.example.internal", "altNames": alts,
			"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}})["certificate"])
	m2 := asMap(a.must(http.MethodGet, "/api/v1/cert-manager/certificates/"+c2["certificateId"].(string), nil)["certificate"])
	var gotAlts []string
	for _, x := range m2["altNames"].([]any) {
		gotAlts = append(gotAlts, asMap(x)["value"].(string))
	}
	if strings.Join(gotAlts, ",") != "tf-b.example.internal,tf-a.example.internal" {
		t.Errorf("altNames %v, want them in request order", gotAlts)
	}
	// A gone certificate is 404, which terraform takes for "remove from state".
	if r := a.do(http.MethodGet, "/api/v1/cert-manager/certificates/00000000-0000-4000-8000-000000000000", "", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown certificate: %d %s", r.status, r.raw)
	}
}

// sampleValue is the value of one series in a Prometheus text exposition
// (-1 when it is absent).
func sampleValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cert-manager's Infisical issuer v0.1.3: a form-encoded login, the legacy
// sign-certificate with a caId and a seconds TTL, and /api/status. It reads
// only certificate and certificateChain, whose last entry it takes for ca.crt.
func TestIssuerV013Sequence(t *testing.T) {
	id, secret, _ := credentials(t, s.dir)
	a := newAgent(t, s.dir, s.addr)
	if r := a.do(http.MethodGet, "/api/status", "", nil); r.status != http.StatusOK {
		t.Fatalf("status: %d %s", r.status, r.raw)
	}
	form := url.Values{"clientId": {id}, "clientSecret": {secret}}.Encode()
	r := a.do(http.MethodPost, "/api/v1/auth/universal-auth/login", "application/x-www-form-urlencoded", form)
	if r.status != http.StatusOK {
		t.Fatalf("form login: %d %s", r.status, r.raw)
	}
	a.useToken(r.body)

	dir := t.TempDir()
	if out, err := openssl(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "csr.pem",
		"-subj", "/CN=issuer.svc.example.internal", "-addext", "subjectAltName=DNS:issuer.svc.example.internal"); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	signed := a.must(http.MethodPost, "/api/v1/pki/certificates/sign-certificate", map[string]any{
		"caId": "internal-services", "csr": readFile(t, filepath.Join(dir, "csr.pem")), "ttl": "172800s"})
	if _, isErr := signed["error"]; isErr {
		t.Fatalf("v0.1.3 reads any error field as failure: %v", signed)
	}
	leaf := checkBundle(t, signed, true)
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 47*time.Hour || life > 49*time.Hour {
		t.Errorf("ttl 172800s gave %s", life)
	}
}

// A machine identity allowed on exactly one profile (DESIGN.md §2, §15):
// its Bearer token issues there, and on another profile it is admitted
// (it may use one) but refused after the profile lookup — 403 with the
// identity and the profile in the details — on a v3 route and on v1 ones.
func TestMachineIdentityOnOneProfile(t *testing.T) {
	const name, internalServicesID = "narrow-agent", "a1e5a186-5d12-4ffb-81c5-2e93d83a049f"
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	stanza, errOut, code := s.pkid(t, "identity", "add", "--name", name, "--secret-file", secretFile)
	if code != 0 {
		t.Fatalf("pkid identity add: %d %s", code, errOut)
	}
	// The stanza pkid printed, as the identity's entry under machineIdentities.
	entry := stanza[strings.Index(stanza, "  - name: "+name):]
	var clientID string
	for _, line := range strings.Split(entry, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "clientId: "); ok {
			clientID = v
		}
	}
	d := newDaemon2(t, func(c string) string {
		edited := strings.Replace(c, "machineIdentities:\n", "machineIdentities:\n"+entry, 1)
		// The first profile, web-server, lists it; no other does.
		edited = strings.Replace(edited, `"machine:demo-agent"]`, `"machine:demo-agent", "machine:`+name+`"]`, 1)
		if strings.Count(edited, "machine:"+name) != 1 || !strings.Contains(edited, "  - name: "+name+"\n    clientId: "+clientID) {
			t.Fatalf("the demo config no longer has the shape this edit expects:\n%s", edited)
		}
		return edited
	})
	a := newAgent(t, d.dir, d.addr)
	a.login(clientID, readFile(t, secretFile))

	v3 := func(profileID, commonName, sigAlg string) reply {
		return a.do(http.MethodPost, "/api/v3/pki/certificates/issue-certificate", "", map[string]any{"profileId": profileID,
			"commonName": commonName, "ttl": "1h", "altNames": []map[string]string{{"type": "dns_name", "value": commonName}},
			"signatureAlgorithm": sigAlg, "keyAlgorithm": "EC_prime256v1"})
	}
	v1 := func(profileID, commonName, sigAlg string) reply {
		return a.do(http.MethodPost, "/api/v1/cert-manager/certificates", "", map[string]any{"profileId": profileID,
			"attributes": map[string]any{"commonName": commonName, "ttl": "1h", "signatureAlgorithm": sigAlg, "keyAlgorithm": "EC_prime256v1",
				"altNames": []map[string]string{{"type": "dns_name", "value": commonName}}}})
	}
	for route, send := range map[string]func(profileID, commonName, sigAlg string) reply{"v3 issue-certificate": v3, "v1 create": v1} {
		if r := send(webServerID, "narrow.example.internal", "ECDSA-SHA256"); r.status != http.StatusOK {
			t.Errorf("%s on its profile: %d %s", route, r.status, r.raw)
		}
		// A request internal-services' policy allows: only who sends it is wrong.
		r := send(internalServicesID, "narrow.svc.example.internal", "RSA-SHA256")
		if r.status != http.StatusForbidden || r.str("message") != "You are not allowed to issue-cert on certificate-profiles" {
			t.Errorf("%s on another profile: %d %q, want 403 naming the action", route, r.status, r.str("message"))
			continue
		}
		checkEnvelope(t, r, "PermissionDenied")
		if det := asMap(r.body["details"]); det["identity"] != "machine:"+name || det["profileId"] != internalServicesID || det["profile"] != "internal-services" {
			t.Errorf("%s: 403 details %v, want the identity and the profile", route, r.body["details"])
		}
	}
	// The v1 look-up the clients make first refuses it the same way.
	r := a.do(http.MethodGet, "/api/v1/cert-manager/certificate-profiles/slug/internal-services?projectId="+url.QueryEscape(demoProjectID), "", nil)
	if r.status != http.StatusForbidden || r.str("message") != "You are not allowed to read certificate-profiles" ||
		asMap(r.body["details"])["identity"] != "machine:"+name {
		t.Errorf("profile by slug on another profile: %d %q %v", r.status, r.str("message"), r.body["details"])
	}
}

// Machine credentials fail closed, alike, and leave no secret behind.
func TestMachineCredentialFailures(t *testing.T) {
	d := newDaemon2(t, func(c string) string {
		return strings.Replace(c, "accessTokens:\n", "accessTokens:\n  loginsPerClientPerMinute: 1\n  loginsPerSourcePerMinute: 600\n", 1)
	})
	id, secret, static := credentials(t, d.dir)
	a := newAgent(t, d.dir, d.addr)
	login := func(id, secret string) reply {
		return a.do(http.MethodPost, "/api/v1/auth/universal-auth/login", "", map[string]string{"clientId": id, "clientSecret": secret})
	}
	wrongSecret, unknownID := login(id, "not-the-secret"), login("00000000-0000-4000-8000-000000000001", secret)
	if wrongSecret.status != 401 || unknownID.status != 401 || wrongSecret.str("message") != unknownID.str("message") {
		t.Errorf("a wrong secret (%d %q) and an unknown id (%d %q) must be told apart by nothing",
			wrongSecret.status, wrongSecret.str("message"), unknownID.status, unknownID.str("message"))
	}

	a.useToken(login(id, secret).body)
	token := a.bearer
	issue := func() reply {
		return a.do(http.MethodPost, "/api/v1/cert-manager/certificates", "", map[string]any{"profileId": webServerID,
			"attributes": map[string]any{"ttl": "1d", "commonName": "m.example.internal",
				"altNames": []map[string]string{{"type": "dns_name", "value": "m.example.internal"}}}})
	}
	if r := issue(); r.status != 200 {
		t.Fatalf("issue with the access token: %d %s", r.status, r.raw)
	}
	parts := strings.Split(token, ".")
	for name, bad := range map[string]string{
		"tampered payload":   parts[0] + "." + parts[1] + "x." + parts[2],
		"tampered signature": parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"not a token":        "hello",
		"unsigned":           parts[0] + "." + parts[1] + ".",
	} {
		a.bearer = bad
		if r := issue(); r.status != 401 || r.str("message") != "Invalid or expired access token" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}

	// Revoking the token ends it on every route, and its renewal.
	a.bearer = ""
	if r := a.do(http.MethodPost, "/api/v1/auth/token/revoke", "", map[string]string{"accessToken": token}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	a.bearer = token
	if r := issue(); r.status != 401 {
		t.Errorf("a revoked token still issues: %d", r.status)
	}
	a.bearer = ""
	if r := a.do(http.MethodPost, "/api/v1/auth/token/renew", "", map[string]string{"accessToken": token}); r.status != 401 {
		t.Errorf("a revoked token renews: %d %s", r.status, r.raw)
	}
	// A static token still works (it is another credential).
	a.bearer = static
	if r := issue(); r.status != 200 {
		t.Errorf("static token: %d %s", r.status, r.raw)
	}

	// A login flood on one client id: 429 with Retry-After once its bucket
	// (burst 10, then one a minute) is empty; another client id from the
	// same source still gets an answer (the source refills 10 a second).
	a.bearer = ""
	var limited reply
	for i := 0; i < 20 && limited.status == 0; i++ {
		if r := login(id, "guess"); r.status == http.StatusTooManyRequests {
			limited = r
		} else if r.status != 401 {
			t.Fatalf("guess %d: %d %s", i, r.status, r.raw)
		}
	}
	if limited.status != http.StatusTooManyRequests || limited.header.Get("Retry-After") == "" {
		t.Fatalf("20 guesses were never limited")
	}
	if r := login("00000000-0000-4000-8000-000000000002", "x"); r.status != 401 {
		t.Errorf("another client id is limited too: %d", r.status)
	}
	_, metrics := httpGet(t, "http://"+d.metrics+"/metrics")
	for outcome, atLeast := range map[string]float64{"rate_limited": 1, "invalid": 3, "success": 1} {
		series := `pkid_auth_logins_total{outcome="` + outcome + `"}`
		if got := sampleValue(metrics, series); got < atLeast {
			t.Errorf("%s = %v, want at least %v", series, got, atLeast)
		}
	}
	assertNoSecrets(t, d.dir, d.logPath, [][]byte{[]byte(secret), []byte(static), []byte(token), []byte(parts[2])})
}

// The v1 routes no replay above reaches: a top-level removeRootsFromChain on
// create, …/bundle and …/certificate (the go-sdk and the Kubernetes issuer
// read the bundle), and revocation by certificate id, after which look-up
// says revoked, the CRL lists it and renewal is refused.
func TestV1BundleAndRevokeByID(t *testing.T) {
	_, _, static := credentials(t, s.dir)
	a := newAgent(t, s.dir, s.addr)
	a.bearer = static
	created := a.must(http.MethodPost, "/api/v1/cert-manager/certificates", map[string]any{
		"profileId": webServerID, "applicationId": webAppID, "removeRootsFromChain": true,
		"attributes": map[string]any{"ttl": "1d", "commonName": "bundle.example.internal",
			"altNames":           []map[string]string{{"type": "dns_name", "value": "bundle.example.internal"}},
			"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}})
	issued := asMap(created["certificate"])
	leaf := checkBundle(t, issued, false)
	id := issued["certificateId"].(string)
	path := "/api/v1/cert-manager/certificates/" + id

	for _, sub := range []string{"/bundle", "/certificate"} {
		body := a.must(http.MethodGet, path+sub, nil)
		if body["certificate"] != issued["certificate"] || body["serialNumber"] != issued["serialNumber"] {
			t.Errorf("%s: %v, want the issued certificate %s", sub, body, issued["serialNumber"])
		}
		if _, ok := body["privateKey"]; ok {
			t.Errorf("%s returns a privateKey, which pkid never keeps", sub)
		}
		checkBundle(t, body, true) // the full chain: removeRootsFromChain shaped only the create's answer
	}

	before, _, _ := fetchCRL(t, s.public, "ec-issuing")
	r := a.do(http.MethodPost, path+"/revoke", "", map[string]string{"revocationReason": "KEY_COMPROMISE"})
	revokedAt, _ := r.body["revokedAt"].(string)
	message, _ := r.body["message"].(string)
	if r.status != http.StatusOK || r.body["serialNumber"] != issued["serialNumber"] || message == "" {
		t.Fatalf("revoke by id: %d %s", r.status, r.raw)
	}
	if at, err := time.Parse(time.RFC3339, revokedAt); err != nil || time.Since(at) > time.Hour {
		t.Errorf("revoke by id: revokedAt %q is not the time of the revocation (%v)", revokedAt, err)
	}
	if meta := asMap(a.must(http.MethodGet, path, nil)["certificate"]); meta["status"] != "revoked" {
		t.Errorf("look-up after revocation: status %v", meta["status"])
	}
	waitCRLListing(t, s.public, "ec-issuing", before.Number.Int64(), leaf.SerialNumber.Text(16))
	if r := a.do(http.MethodPost, path+"/revoke", "", map[string]string{"revocationReason": "KEY_COMPROMISE"}); r.status != http.StatusBadRequest ||
		r.body["message"] != "Certificate already revoked" {
		t.Errorf("revoking again: %d %s", r.status, r.raw)
	}
	if r := a.do(http.MethodPost, path+"/renew", "", map[string]any{}); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.raw), "A revoked certificate cannot be renewed") {
		t.Errorf("renewing a revoked certificate: %d %s", r.status, r.raw)
	}
	if r := a.do(http.MethodGet, "/api/v1/cert-manager/certificates/00000000-0000-4000-8000-000000000000/bundle", "", nil); r.status != http.StatusNotFound {
		t.Errorf("bundle of an unknown certificate: %d %s", r.status, r.raw)
	}
}
