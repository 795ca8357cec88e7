package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestDirectoryAndNonces(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodGet, e.dir("eab")+"/directory", nil)
	a := e.do(req)
	if a.status != 200 || a.str("newAccount") != e.dir("eab")+"/new-account" || a.str("keyChange") != e.dir("eab")+"/key-change" {
		t.Fatalf("directory: %d %s", a.status, a.raw)
	}
	if meta, _ := a.body["meta"].(map[string]any); meta["externalAccountRequired"] != true {
		t.Errorf("directory meta %v, want externalAccountRequired", a.body["meta"])
	}
	seen := map[string]bool{}
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(m, e.dir("web")+"/new-nonce", nil)
		a := e.do(req)
		n := a.header.Get("Replay-Nonce")
		want := map[string]int{http.MethodHead: 200, http.MethodGet: 204}[m]
		if a.status != want || !validNonce(n) || seen[n] || a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s new-nonce: %d nonce %q cache %q", m, a.status, n, a.header.Get("Cache-Control"))
		}
		seen[n] = true
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/acme/nope/directory", 404},
		{http.MethodGet, "/acme/web/unknown", 404},
		{http.MethodGet, "/acme/web/new-order", 405},
		{http.MethodPost, "/acme/web/directory", 405},
		{http.MethodDelete, "/acme/web/new-nonce", 405},
	} {
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		if a := e.do(req); a.status != c.status || a.problemType() != "malformed" {
			t.Errorf("%s %s: %d %s", c.method, c.path, a.status, a.raw)
		}
	}
}

// Every way a JWS can be wrong is a problem document with its own type,
// and none costs more than a 4xx.
func TestJWSVerification(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client("web")
	if a := c.register(); a.status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	order := c.base + "/new-order"
	good := func() []byte {
		return encode(map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "a.example.internal"}}})
	}
	tamper := func(body []byte, field string, change func(string) string) []byte {
		var f map[string]string
		json.Unmarshal(body, &f)
		f[field] = change(f[field])
		b, _ := json.Marshal(f)
		return b
	}
	other := e.client("web")
	other.kid = c.kid // signs with another key under c's account
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	weak := e.client("web")
	weak.key, weak.alg = rsaKey, jose.RS256
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	es512 := e.client("web")
	es512.key, es512.alg = p521, jose.ES512
	otherDir := e.client("http-only")
	if a := otherDir.register(); a.status != http.StatusCreated {
		t.Fatal(a.status)
	}
	reused := c.sign(order, good(), false, nil)
	if a := c.send(order, reused); a.status != http.StatusCreated {
		t.Fatalf("a good new-order: %d %s", a.status, a.raw)
	}

	for _, tc := range []struct {
		name   string
		body   func() []byte
		url    string
		status int
		typ    string
	}{
		{"bad signature", func() []byte {
			return tamper(c.sign(order, good(), false, nil), "signature", func(s string) string { return "AAAA" + s[4:] })
		}, order, 400, "malformed"},
		{"payload swapped after signing", func() []byte {
			return tamper(c.sign(order, good(), false, nil), "payload", func(string) string { return base64.RawURLEncoding.EncodeToString([]byte(`{"identifiers":[]}`)) })
		}, order, 400, "malformed"},
		{"wrong url", func() []byte { return c.sign(c.base+"/new-account", good(), false, nil) }, order, 403, "unauthorized"},
		{"url of another host", func() []byte {
			return c.sign(strings.Replace(order, "127.0.0.1", "localhost", 1), good(), false, nil)
		}, order, 403, "unauthorized"},
		{"reused nonce", func() []byte { return reused }, order, 400, "badNonce"},
		{"invented nonce", func() []byte {
			return c.sign(order, good(), false, map[jose.HeaderKey]any{"nonce": "AAAAAAAAAAAAAAAAAAAAAA"})
		}, order, 400, "badNonce"},
		{"no nonce", func() []byte { return c.sign(order, good(), false, map[jose.HeaderKey]any{"nonce": nil}) }, order, 400, "badNonce"},
		{"unknown kid", func() []byte {
			x := *c
			x.kid = c.base + "/acct/00000000-0000-4000-8000-000000000000"
			return x.sign(order, good(), false, nil)
		}, order, 400, "accountDoesNotExist"},
		{"kid of another directory", func() []byte {
			x := *otherDir
			x.kid = strings.Replace(otherDir.kid, "/http-only/", "/web/", 1)
			return x.sign(order, good(), false, nil)
		}, order, 400, "accountDoesNotExist"},
		{"kid that is not an account URL", func() []byte { x := *c; x.kid = "1"; return x.sign(order, good(), false, nil) }, order, 400, "accountDoesNotExist"},
		{"another key under the account's kid", func() []byte { return other.sign(order, good(), false, nil) }, order, 400, "malformed"},
		{"jwk on new-order", func() []byte { return c.sign(order, good(), true, nil) }, order, 400, "malformed"},
		{"kid on new-account", func() []byte { return c.sign(c.base+"/new-account", encode(map[string]any{}), false, nil) }, c.base + "/new-account", 400, "malformed"},
		{"jwk and kid", func() []byte { return c.sign(order, good(), true, map[jose.HeaderKey]any{"kid": c.kid}) }, order, 400, "malformed"},
		{"RSA key below 2048 bits", func() []byte { return weak.sign(weak.base+"/new-account", encode(map[string]any{}), true, nil) }, c.base + "/new-account", 400, "badPublicKey"},
		{"ES512", func() []byte { return es512.sign(es512.base+"/new-account", encode(map[string]any{}), true, nil) }, c.base + "/new-account", 400, "badSignatureAlgorithm"},
		{"HS256 outside an EAB", func() []byte {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: bytes.Repeat([]byte{1}, 32)},
				&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"url": order, "nonce": c.nonce(), "kid": c.kid}})
			j, _ := s.Sign(good())
			return []byte(j.FullSerialize())
		}, order, 400, "badSignatureAlgorithm"},
		{"compact serialization", func() []byte {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: c.key, KeyID: c.kid}},
				&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"url": order, "nonce": c.nonce()}})
			j, _ := s.Sign(good())
			compact, _ := j.CompactSerialize()
			return []byte(compact)
		}, order, 400, "malformed"},
		{"unprotected header", func() []byte {
			var f map[string]any
			json.Unmarshal(c.sign(order, good(), false, nil), &f)
			f["header"] = map[string]string{"kid": "x"}
			b, _ := json.Marshal(f)
			return b
		}, order, 400, "malformed"},
		{"not JSON", func() []byte { return []byte("{") }, order, 400, "malformed"},
		{"empty body", func() []byte { return nil }, order, 400, "malformed"},
		{"oversized body", func() []byte { return bytes.Repeat([]byte("a"), 9<<10) }, order, 413, "malformed"},
	} {
		a := c.send(tc.url, tc.body())
		wantProblem(t, tc.name, a, tc.status, tc.typ)
		if tc.typ == "badSignatureAlgorithm" && !strings.Contains(string(a.raw), `"algorithms":["ES256","ES384","RS256","EdDSA"]`) {
			t.Errorf("%s: %s does not list the accepted algorithms", tc.name, a.raw)
		}
	}
	// The wrong media type.
	req, _ := http.NewRequest(http.MethodPost, order, bytes.NewReader(c.sign(order, good(), false, nil)))
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, "Content-Type application/json", e.do(req), 415, "malformed")
	// After all that, the account still works.
	if a := c.order("b.example.internal"); a.status != http.StatusCreated {
		t.Errorf("new-order after the refusals: %d %s", a.status, a.raw)
	}
}

func TestExternalAccountBinding(t *testing.T) {
	e := newEnv(t, nil)
	kid, mac := e.addEAB(eabID)
	otherKid, otherMAC := e.addEAB(webID)
	newAccount := e.dir("eab") + "/new-account"
	attempt := func(c *client, eab json.RawMessage) answer {
		payload := map[string]any{"termsOfServiceAgreed": true}
		if eab != nil {
			payload["externalAccountBinding"] = eab
		}
		return c.post(newAccount, payload)
	}
	c := e.client("eab")
	stranger := e.client("eab")
	wantProblem(t, "no binding", attempt(c, nil), 400, "externalAccountRequired")
	wantProblem(t, "wrong MAC key", attempt(c, c.eab(kid, bytes.Repeat([]byte{9}, 32), newAccount)), 403, "unauthorized")
	wantProblem(t, "unknown kid", attempt(c, c.eab("unknown", mac, newAccount)), 403, "unauthorized")
	wantProblem(t, "key of another profile", attempt(c, c.eab(otherKid, otherMAC, newAccount)), 403, "unauthorized")
	wantProblem(t, "binding of another account key", attempt(c, stranger.eab(kid, mac, newAccount)), 400, "malformed")
	wantProblem(t, "binding for another URL", attempt(c, c.eab(kid, mac, e.dir("web")+"/new-account")), 403, "unauthorized")
	wantProblem(t, "binding that is not a JWS", attempt(c, json.RawMessage(`"x"`)), 400, "malformed")

	a := attempt(c, c.eab(kid, mac, newAccount))
	if a.status != http.StatusCreated || a.str("status") != "valid" || a.header.Get("Location") == "" {
		t.Fatalf("a good binding: %d %s", a.status, a.raw)
	}
	// The same key again finds its account; the EAB key binds no second one.
	if again := attempt(c, nil); again.status != http.StatusOK || again.header.Get("Location") != a.header.Get("Location") {
		t.Errorf("the account's key again: %d %s", again.status, again.raw)
	}
	wantProblem(t, "a used EAB key", attempt(stranger, stranger.eab(kid, mac, newAccount)), 403, "unauthorized")
	// A profile that does not require EAB takes accounts without one.
	if a := e.client("web").register(); a.status != http.StatusCreated {
		t.Errorf("new-account without EAB where none is required: %d %s", a.status, a.raw)
	}
	// onlyReturnExisting for a key with no account.
	wantProblem(t, "onlyReturnExisting", stranger.post(newAccount, map[string]any{"onlyReturnExisting": true}), 400, "accountDoesNotExist")
	// A contact that is not mailto.
	wantProblem(t, "tel contact", e.client("web").post(e.dir("web")+"/new-account", map[string]any{"contact": []string{"tel:+123"}}), 400, "unsupportedContact")
	wantProblem(t, "two addresses", e.client("web").post(e.dir("web")+"/new-account", map[string]any{"contact": []string{"mailto:a@x.example,b@x.example"}}), 400, "invalidContact")
}

func TestEABKeyDerivation(t *testing.T) {
	k, err := NewEABKey(eabSecret, webID, t0)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(k.MACKey)
	if len(mac) != 32 || keyHash(mac) != k.Record.KeyHash || strings.Contains(k.Record.KeyHash, k.MACKey) {
		t.Errorf("EAB key %+v: the record must hold the MAC key's hash only", k.Record)
	}
	if string(macKey(eabSecret, eabID, k.Record.KeyID)) == string(mac) {
		t.Error("one key id derives the same MAC key for two profiles")
	}
	if string(macKey(bytes.Repeat([]byte{8}, 32), webID, k.Record.KeyID)) == string(mac) {
		t.Error("two secrets derive the same MAC key")
	}
	if _, err := NewEABKey([]byte("short"), webID, t0); err == nil {
		t.Error("a 5-byte EAB secret was taken")
	}
}

// An EAB key id or MAC key is pasted after a client's option (certbot's
// --eab-kid/--eab-hmac-key, lego's --kid/--hmac): one that began with "-"
// would be taken for an option, and a base64url string begins with it one
// time in 64. Of 2000 keys, none does.
func TestEABKeysNeverLookLikeOptions(t *testing.T) {
	for k := 0; k < 2000; k++ {
		key, err := NewEABKey(eabSecret, webID, t0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(key.Record.KeyID, "-") || strings.HasPrefix(key.MACKey, "-") {
			t.Fatalf("key %d: id %q, MAC key %q: a client would take it for an option", k, key.Record.KeyID, key.MACKey)
		}
	}
}
