package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pkid/pkid/acme/validate"
)

// validateAll answers every challenge of the order and waits for the
// validations to finish (an event, not a sleep).
func (c *client) validateAll(t *testing.T, order answer, typ string) {
	t.Helper()
	for _, az := range list(order, "authorizations") {
		authz := c.post(az, nil)
		if a := c.post(challengeURL(t, authz, typ), map[string]any{}); a.status != 200 || a.header.Get("Link") == "" {
			t.Fatalf("challenge: %d %s", a.status, a.raw)
		}
	}
	c.e.runtime.Wait()
}

func parseChain(t *testing.T, pemText string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(pemText); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// The whole order: pending → (challenges) ready → a CSR that names too
// much is refused and the order stays ready → valid with a certificate
// the account downloads as a PEM chain.
func TestOrderLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client("web")
	if a := c.register(); a.status != http.StatusCreated {
		t.Fatal(a.status)
	}
	o := c.order("www.example.internal", "127.0.0.1", "*.wild.example.internal")
	if o.status != http.StatusCreated || o.str("status") != "pending" || len(list(o, "authorizations")) != 3 {
		t.Fatalf("new-order: %d %s", o.status, o.raw)
	}
	orderURL := o.header.Get("Location")
	// A wildcard offers dns-01 only; an IP address no dns-01.
	for k, want := range []string{"http-01,tls-alpn-01,dns-01", "http-01,tls-alpn-01", "dns-01"} {
		authz := c.post(list(o, "authorizations")[k], nil)
		var types []string
		for _, ch := range authz.body["challenges"].([]any) {
			types = append(types, ch.(map[string]any)["type"].(string))
		}
		if strings.Join(types, ",") != want {
			t.Errorf("authorization %d offers %v, want %s", k, types, want)
		}
		if k == 2 && (authz.body["wildcard"] != true || authz.body["identifier"].(map[string]any)["value"] != "wild.example.internal") {
			t.Errorf("wildcard authorization: %s", authz.raw)
		}
	}
	csr, _ := csrFor(t, "", "www.example.internal", "*.wild.example.internal")
	wantProblem(t, "finalize while pending", c.post(o.str("finalize"), map[string]string{"csr": csr}), 403, "orderNotReady")

	for k, typ := range []string{"http-01", "tls-alpn-01", "dns-01"} {
		authz := c.post(list(o, "authorizations")[k], nil)
		c.post(challengeURL(t, authz, typ), map[string]any{})
	}
	e.runtime.Wait()
	for _, seen := range e.fake.seen {
		if seen.KeyAuthorization != seen.Token+"."+strings.TrimPrefix(c.thumbprint(t), "") {
			t.Errorf("key authorization %q is not token.thumbprint", seen.KeyAuthorization)
		}
	}
	if got := c.post(orderURL, nil); got.str("status") != "ready" {
		t.Fatalf("order after its challenges: %s", got.raw)
	}
	// A challenge answered twice is not validated twice.
	before := len(e.fake.seen)
	authz := c.post(list(o, "authorizations")[0], nil)
	if a := c.post(challengeURL(t, authz, "http-01"), map[string]any{}); a.str("status") != "valid" {
		t.Errorf("a valid challenge posted again: %s", a.raw)
	}
	e.runtime.Wait()
	if len(e.fake.seen) != before {
		t.Error("a valid challenge was validated again")
	}

	wantProblem(t, "CSR naming one name too few", c.post(o.str("finalize"), map[string]string{"csr": csr}), 400, "badCSR")
	wantProblem(t, "CSR that is not base64url", c.post(o.str("finalize"), map[string]string{"csr": "%%%"}), 400, "badCSR")
	if got := c.post(orderURL, nil); got.str("status") != "ready" {
		t.Errorf("a refused CSR left the order %s, want ready", got.str("status"))
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "www.example.internal"},
		DNSNames: []string{"www.example.internal", "*.wild.example.internal"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	done := c.post(o.str("finalize"), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(der)})
	if done.status != 200 || done.str("status") != "valid" || done.str("certificate") == "" {
		t.Fatalf("finalize: %d %s", done.status, done.raw)
	}
	wantProblem(t, "finalize twice", c.post(o.str("finalize"), map[string]string{"csr": csr}), 403, "orderNotReady")

	cert := c.post(done.str("certificate"), nil)
	if cert.status != 200 || cert.header.Get("Content-Type") != "application/pem-certificate-chain" {
		t.Fatalf("certificate: %d %s %s", cert.status, cert.header.Get("Content-Type"), cert.raw)
	}
	chain := parseChain(t, string(cert.raw))
	if len(chain) != 2 || chain[0].CheckSignatureFrom(e.caCert) != nil || !chain[1].Equal(e.caCert) {
		t.Fatalf("chain of %d certificates does not verify to the CA", len(chain))
	}
	leaf := chain[0]
	if strings.Join(leaf.DNSNames, ",") != "www.example.internal,*.wild.example.internal" || len(leaf.IPAddresses) != 1 ||
		!leaf.PublicKey.(crypto.PublicKey).(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Errorf("leaf names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// Only the ordering account sees it, and only by POST-as-GET.
	stranger := e.client("web")
	stranger.register()
	wantProblem(t, "another account's certificate", stranger.post(done.str("certificate"), nil), 403, "unauthorized")
	wantProblem(t, "another account's order", stranger.post(orderURL, nil), 403, "unauthorized")
	wantProblem(t, "certificate by POST with a payload", c.post(done.str("certificate"), map[string]any{}), 400, "malformed")

	acct := c.post(c.kid, nil)
	orders := c.post(acct.str("orders"), nil)
	if got := list(orders, "orders"); len(got) != 1 || got[0] != orderURL {
		t.Errorf("orders list %v, want the one order", got)
	}
	if e.metrics.get("order web created") != 1 || e.metrics.get("order web valid") != 1 || e.metrics.get("validation dns-01 valid") != 1 {
		t.Errorf("metrics %v", e.metrics.counts)
	}
}

func (c *client) thumbprint(t *testing.T) string {
	t.Helper()
	tp, err := thumbprint(&jose.JSONWebKey{Key: c.key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// A failed challenge fails its authorization and the order, whose error
// says why; nothing can finalize it.
func TestFailedChallengeInvalidatesOrder(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.result = func(c validate.Challenge) error {
		return &validate.Failure{Type: "incorrectResponse", Detail: "http-01 for " + c.Value + ": wrong answer"}
	}
	c := e.client("web")
	c.register()
	o := c.order("www.example.internal", "mail.example.internal")
	authz := c.post(list(o, "authorizations")[0], nil)
	c.post(challengeURL(t, authz, "http-01"), map[string]any{})
	e.runtime.Wait()
	authz = c.post(list(o, "authorizations")[0], nil)
	ch := authz.body["challenges"].([]any)[0].(map[string]any)
	chErr, _ := ch["error"].(map[string]any)
	if authz.str("status") != "invalid" || ch["status"] != "invalid" || chErr["type"] != errorNS+"incorrectResponse" {
		t.Errorf("authorization after a failed challenge: %s", authz.raw)
	}
	got := c.post(o.header.Get("Location"), nil)
	oErr, _ := got.body["error"].(map[string]any)
	if got.str("status") != "invalid" || !strings.Contains(oErr["detail"].(string), "wrong answer") {
		t.Errorf("order after a failed challenge: %s", got.raw)
	}
	// Another challenge of a failed authorization is not validated.
	before := len(e.fake.seen)
	if a := c.post(challengeURL(t, authz, "dns-01"), map[string]any{}); a.str("status") != "pending" {
		t.Errorf("another challenge of an invalid authorization: %s", a.raw)
	}
	e.runtime.Wait()
	if len(e.fake.seen) != before {
		t.Error("a challenge of an invalid authorization was validated")
	}
	csr, _ := csrFor(t, "", "www.example.internal", "mail.example.internal")
	wantProblem(t, "finalize an invalid order", c.post(o.str("finalize"), map[string]string{"csr": csr}), 403, "orderNotReady")
	if e.metrics.get("order web invalid") != 1 || e.metrics.get("validation http-01 invalid") != 1 {
		t.Errorf("metrics %v", e.metrics.counts)
	}
}

func TestRejectedIdentifiers(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client("web")
	c.register()
	wantProblem(t, "denied name", c.order("admin.example.internal"), 400, "rejectedIdentifier")
	wantProblem(t, "name outside the policy", c.order("www.example.com"), 400, "rejectedIdentifier")
	wantProblem(t, "wildcard covering a denied name", c.order("*.example.internal", "www.example.internal"), 400, "rejectedIdentifier")
	wantProblem(t, "IP outside the policy", c.order("10.9.9.9"), 400, "rejectedIdentifier")
	wantProblem(t, "email identifier", c.post(c.base+"/new-order", map[string]any{"identifiers": []map[string]string{{"type": "email", "value": "a@example.internal"}}}), 400, "unsupportedIdentifier")
	wantProblem(t, "syntax", c.order("a..example.internal"), 400, "malformed")
	wantProblem(t, "no identifiers", c.post(c.base+"/new-order", map[string]any{"identifiers": []any{}}), 400, "malformed")
	wantProblem(t, "notAfter in the past", c.post(c.base+"/new-order", map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "a.example.internal"}},
		"notAfter": "2001-01-01T00:00:00Z"}), 400, "malformed")
	h := e.client("http-only")
	h.register()
	wantProblem(t, "wildcard without dns-01", h.order("*.example.internal"), 400, "rejectedIdentifier")
	if n := e.metrics.get("order web rejected"); n != 8 {
		t.Errorf("%d rejected orders counted, want 8", n)
	}
	// Upper case is the same name: canonical values.
	if a := c.order("WWW.Example.Internal"); a.status != 201 || !strings.Contains(string(a.raw), `"value":"www.example.internal"`) {
		t.Errorf("upper-case identifier: %d %s", a.status, a.raw)
	}
}

// Challenge answers that hang or redirect elsewhere fail the challenge
// with a problem document; no connection leaves for another host or port.
func TestHostileChallengeResponses(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var elsewhere atomic.Int32
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			conn, err := other.Accept()
			if err != nil {
				return
			}
			elsewhere.Add(1)
			conn.Close()
		}
	}()
	otherPort := other.Addr().(*net.TCPAddr).Port
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.SplitN(r.Host, ".", 2)[0] {
		case "hang":
			<-release
		case "redirect":
			http.Redirect(w, r, "http://elsewhere.example.internal:"+strconv.Itoa(otherPort)+"/", http.StatusFound)
		case "big":
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	loop := netip.MustParseAddr("127.0.0.1")
	v, err := validate.New(validate.Config{HTTPPort: l.Addr().(*net.TCPAddr).Port, Timeout: 300 * time.Millisecond,
		HostOverrides: map[string]netip.Addr{"hang.example.internal": loop, "redirect.example.internal": loop,
			"big.example.internal": loop, "elsewhere.example.internal": loop}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, v)
	c := e.client("web")
	c.register()
	for name, want := range map[string]string{"hang": "connection", "redirect": "incorrectResponse", "big": "incorrectResponse"} {
		o := c.order(name + ".example.internal")
		c.validateAll(t, o, "http-01")
		authz := c.post(list(o, "authorizations")[0], nil)
		ch := authz.body["challenges"].([]any)[0].(map[string]any)
		chErr, _ := ch["error"].(map[string]any)
		if ch["status"] != "invalid" || chErr["type"] != errorNS+want {
			t.Errorf("%s: challenge %v, want invalid with %s", name, ch, want)
		}
		if got := c.post(o.header.Get("Location"), nil); got.str("status") != "invalid" {
			t.Errorf("%s: order %s", name, got.str("status"))
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d connections to a host other than the identifier's", n)
	}
}

func TestKeyChangeAndDeactivation(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client("web")
	c.register()
	keyChange := c.base + "/key-change"
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inner := func(key crypto.Signer, account string, oldKey crypto.PublicKey, url string) json.RawMessage {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
			&jose.SignerOptions{EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{"url": url}})
		if err != nil {
			t.Fatal(err)
		}
		j, _ := s.Sign(encode(map[string]any{"account": account, "oldKey": jose.JSONWebKey{Key: oldKey}}))
		return json.RawMessage(j.FullSerialize())
	}
	taken := e.client("web")
	taken.register()
	wantProblem(t, "rollover to another account's key", c.post(keyChange, inner(taken.key, c.kid, c.key.Public(), keyChange)), 409, "malformed")
	wantProblem(t, "inner JWS for another URL", c.post(keyChange, inner(newKey, c.kid, c.key.Public(), c.base+"/new-order")), 403, "unauthorized")
	wantProblem(t, "wrong oldKey", c.post(keyChange, inner(newKey, c.kid, newKey.Public(), keyChange)), 403, "unauthorized")
	wantProblem(t, "another account", c.post(keyChange, inner(newKey, taken.kid, c.key.Public(), keyChange)), 403, "unauthorized")
	if a := c.post(keyChange, inner(newKey, c.kid, c.key.Public(), keyChange)); a.status != 200 {
		t.Fatalf("key change: %d %s", a.status, a.raw)
	}
	wantProblem(t, "the old key after the rollover", c.post(c.kid, nil), 400, "malformed")
	c.key = newKey
	if a := c.order("www.example.internal"); a.status != 201 {
		t.Errorf("new-order with the new key: %d %s", a.status, a.raw)
	}
	if a := c.post(c.kid, map[string]any{"contact": []string{"mailto:new@example.internal"}}); a.status != 200 || !strings.Contains(string(a.raw), "new@example.internal") {
		t.Errorf("contact update: %d %s", a.status, a.raw)
	}
	wantProblem(t, "update of another account", c.post(taken.kid, map[string]any{"status": "deactivated"}), 403, "unauthorized")
	if a := c.post(c.kid, map[string]any{"status": "deactivated"}); a.status != 200 || a.str("status") != "deactivated" {
		t.Fatalf("deactivate: %d %s", a.status, a.raw)
	}
	wantProblem(t, "request of a deactivated account", c.order("www.example.internal"), 403, "unauthorized")
	c.kid = ""
	wantProblem(t, "new-account with a deactivated account's key", c.post(c.base+"/new-account", map[string]any{}), 403, "unauthorized")
}

func TestRevokeCert(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client("web")
	c.register()
	issue := func() (*x509.Certificate, crypto.Signer) {
		o := c.order("www.example.internal")
		c.validateAll(t, o, "http-01")
		csr, key := csrFor(t, "", "www.example.internal")
		done := c.post(o.str("finalize"), map[string]string{"csr": csr})
		chain := parseChain(t, string(c.post(done.str("certificate"), nil).raw))
		return chain[0], key
	}
	revoke := func(by *client, cert *x509.Certificate, reason int) answer {
		return by.post(by.base+"/revoke-cert", map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw), "reason": reason})
	}
	cert, key := issue()
	stranger := e.client("web")
	stranger.register()
	wantProblem(t, "another account", revoke(stranger, cert, 1), 403, "unauthorized")
	wantProblem(t, "certificateHold", revoke(c, cert, 6), 400, "badRevocationReason")
	wantProblem(t, "garbage", c.post(c.base+"/revoke-cert", map[string]any{"certificate": "AAAA"}), 400, "malformed")
	if a := revoke(c, cert, 4); a.status != 200 {
		t.Fatalf("revoke by the account: %d %s", a.status, a.raw)
	}
	wantProblem(t, "revoke twice", revoke(c, cert, 4), 400, "alreadyRevoked")
	rec, err := e.store.CertificateBySerial(t.Context(), strings.ToLower(cert.SerialNumber.Text(16)))
	if err != nil || rec.Status != "revoked" || rec.RevocationReason != "SUPERSEDED" {
		t.Errorf("record after revocation: %+v, %v", rec, err)
	}
	// The certificate's own key revokes it, with no account (jwk).
	cert, key = issue()
	holder := &client{e: e, base: c.base, key: key, alg: jose.ES256}
	if a := revoke(holder, cert, 1); a.status != 200 {
		t.Errorf("revoke by the certificate's key: %d %s", a.status, a.raw)
	}
	cert, _ = issue()
	wrong := &client{e: e, base: c.base, key: key, alg: jose.ES256}
	wantProblem(t, "a key that is not the certificate's", revoke(wrong, cert, 1), 403, "unauthorized")
}
