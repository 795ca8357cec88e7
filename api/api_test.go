package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
)

// stubIssuer records the request it was given and answers as told.
type stubIssuer struct {
	got *issuer.Request
	err error
}

func (s *stubIssuer) Issue(_ context.Context, _ issuer.Meta, req issuer.Request) (*issuer.Result, error) {
	s.got = &req
	if s.err != nil {
		return nil, s.err
	}
	return &issuer.Result{Certificate: "C", IssuingCACertificate: "I", CertificateChain: "I", PrivateKey: "K",
		SerialNumber: "40ab", CertificateID: "6434d7ca-1979-40b6-a381-a48f97d7b39c"}, nil
}

func (s *stubIssuer) ProfileName(string) string { return "web-server" }

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func tlsState(identity string) *tls.ConnectionState {
	u, _ := url.Parse(identity)
	cert := &x509.Certificate{URIs: []*url.URL{u}}
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, s *stubIssuer, method, contentType, body string, authenticated bool) reply {
	t.Helper()
	h := NewHandler(Config{Issuer: s, Now: func() time.Time { return now }})
	r := httptest.NewRequest(method, IssuePath, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if authenticated {
		r.TLS = tlsState("spiffe://example.internal/demo-client")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	rep := reply{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &rep.body); err != nil {
		t.Fatalf("response is not a JSON object: %q", w.Body.String())
	}
	return rep
}

const validBody = `{"profileId":"B59E644E-E2EE-4DEC-871E-2AC6F5AC2F0E","commonName":"*.example.internal","ttl":"30d",
 "keyUsages":["digital_signature","digital_signature"],"extendedKeyUsages":["server_auth"],
 "altNames":[{"type":"dns_name","value":"*.example.internal"},{"type":"ip_address","value":"10.0.0.1"}],
 "signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1","removeRootsFromChain":true}`

func TestDecodeValidRequest(t *testing.T) {
	s := &stubIssuer{}
	rep := do(t, s, http.MethodPost, "application/json; charset=utf-8", validBody, true)
	if rep.status != 200 {
		t.Fatalf("status %d: %s", rep.status, rep.raw)
	}
	want := issuer.Request{
		ProfileID: "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e", CommonName: "*.example.internal", TTL: 30 * 24 * time.Hour,
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		AltNames:           []policy.SAN{{Type: "dns_name", Value: "*.example.internal"}, {Type: "ip_address", Value: "10.0.0.1"}},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1", RemoveRootsFromChain: true,
	}
	if !reflect.DeepEqual(*s.got, want) {
		t.Errorf("decoded\n %+v\nwant\n %+v", *s.got, want)
	}
	// Keys in the contract's order.
	order := []string{"certificate", "issuingCaCertificate", "certificateChain", "privateKey", "serialNumber", "certificateId"}
	last := -1
	for _, k := range order {
		at := strings.Index(rep.raw, `"`+k+`"`)
		if at <= last {
			t.Fatalf("response keys out of order: %s", rep.raw)
		}
		last = at
	}
	if id := rep.header.Get("X-Request-Id"); len(id) != 18 || !strings.HasPrefix(id, "req-") {
		t.Errorf("X-Request-Id = %q", id)
	}
}

// issuePaths flattens the 422 issues to "code@path" strings.
func issuePaths(rep reply) []string {
	issues, _ := rep.body["message"].([]any)
	var out []string
	for _, raw := range issues {
		is := raw.(map[string]any)
		var parts []string
		for _, p := range is["path"].([]any) {
			b, _ := json.Marshal(p)
			parts = append(parts, strings.Trim(string(b), `"`))
		}
		out = append(out, is["code"].(string)+"@"+strings.Join(parts, "."))
	}
	return out
}

func TestValidationIssues(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string
	}{
		{"everything missing", `{}`, []string{"invalid_type@profileId", "invalid_type@ttl", "invalid_type@signatureAlgorithm", "invalid_type@keyAlgorithm"}},
		{"wrong types", `{"profileId":1,"commonName":null,"ttl":true,"keyUsages":"x","altNames":{},"signatureAlgorithm":[],"keyAlgorithm":{},"removeRootsFromChain":"yes"}`,
			[]string{"invalid_type@profileId", "invalid_type@commonName", "invalid_type@ttl", "invalid_type@keyUsages", "invalid_type@altNames",
				"invalid_type@signatureAlgorithm", "invalid_type@keyAlgorithm", "invalid_type@removeRootsFromChain"}},
		{"bad uuid, enums, unknown keys", `{"profileId":"x","ttl":"1h","signatureAlgorithm":"MD5","keyAlgorithm":"DSA","keyUsages":["fly"],"foo":1,"bar":2}`,
			[]string{"invalid_string@profileId", "invalid_enum_value@keyUsages.0", "invalid_enum_value@signatureAlgorithm", "invalid_enum_value@keyAlgorithm", "unrecognized_keys@"}},
		{"ttl empty and unparsable", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"  ","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"too_small@ttl"}},
		{"ttl zero", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"0d","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"custom@ttl"}},
		{"common name charset, length, wildcard", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","commonName":"a_b","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"invalid_string@commonName"}},
		{"inner wildcard", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","commonName":"a.*.b","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"custom@commonName"}},
		{"empty common name", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","commonName":"","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"too_small@commonName"}},
		{"long common name", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","commonName":"` + strings.Repeat("a", 101) + `","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}`,
			[]string{"too_big@commonName"}},
		{"alt names", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1",
			"altNames":[{"type":"dns_name","value":"a_b.internal"},{"type":"ip_address","value":"example.internal"},{"type":"email","value":""},
			{"type":"uri","value":"relative/path"},{"type":"x400","value":"v"},"str",{"type":"dns_name","value":"ok.internal","extra":1}]}`,
			[]string{"custom@altNames.0.value", "custom@altNames.1.value", "too_small@altNames.2.value", "custom@altNames.3.value",
				"invalid_enum_value@altNames.4.type", "invalid_type@altNames.5", "unrecognized_keys@altNames.6"}},
		{"dates", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1",
			"notBefore":"yesterday","notAfter":"2026-13-01T00:00:00Z"}`, []string{"invalid_string@notBefore", "invalid_string@notAfter"}},
		{"dates inverted", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1",
			"notBefore":"2026-12-02T00:00:00Z","notAfter":"2026-12-01T00:00:00Z"}`, []string{"custom@"}},
		{"window longer than ttl", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"1h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1",
			"notAfter":"2026-11-30T14:00:00Z"}`, []string{"custom@notAfter"}},
		{"top level array", `[]`, []string{"invalid_type@"}},
		{"top level null", `null`, []string{"invalid_type@"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &stubIssuer{}
			rep := do(t, s, http.MethodPost, "application/json", c.body, true)
			if rep.status != 422 || rep.body["error"] != "ValidationFailure" || rep.body["statusCode"] != float64(422) {
				t.Fatalf("status %d: %s", rep.status, rep.raw)
			}
			if got := issuePaths(rep); !reflect.DeepEqual(got, c.want) {
				t.Errorf("issues\n got  %q\n want %q", got, c.want)
			}
			if s.got != nil {
				t.Error("an invalid request reached the issuer")
			}
		})
	}
}

func TestWindowWithinTTLIsAccepted(t *testing.T) {
	s := &stubIssuer{}
	body := `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","ttl":"2h","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1",
		"commonName":"a.example.internal","notBefore":"2026-12-01T00:00:00Z","notAfter":"2026-12-01T02:00:00Z"}`
	if rep := do(t, s, http.MethodPost, "application/json", body, true); rep.status != 200 {
		t.Fatalf("status %d: %s", rep.status, rep.raw)
	}
	if s.got.NotBefore == nil || s.got.NotAfter.Sub(*s.got.NotBefore) != 2*time.Hour {
		t.Errorf("window not decoded: %+v", s.got)
	}
}

func TestMalformedBodies(t *testing.T) {
	for name, body := range map[string]string{
		"empty": "", "whitespace": "  \n", "syntax": `{"profileId":`, "trailing data": `{} {}`, "trailing junk": `{}x`,
		"duplicate key": `{"ttl":"1h","ttl":"2h"}`, "nested duplicate": `{"altNames":[{"type":"uri","type":"dns_name"}]}`,
		"deep nesting": strings.Repeat("[", 40) + strings.Repeat("]", 40), "invalid utf-8": "{\"commonName\":\"\xff\"}",
	} {
		rep := do(t, &stubIssuer{}, http.MethodPost, "application/json", body, true)
		if rep.status != 400 || rep.body["error"] != "BadRequest" {
			t.Errorf("%s: status %d %s", name, rep.status, rep.raw)
		}
	}
}

func TestStatusMapping(t *testing.T) {
	internal := errors.New("sqlite: disk I/O error at /var/lib/pkid/pkid.db")
	cases := []struct {
		name        string
		err         error
		status      int
		errName     string
		retryAfter  string
		wantMessage string
	}{
		{"not found", issuer.Errorf(issuer.KindNotFound, "Certificate profile not found"), 404, "NotFound", "", "Certificate profile not found"},
		{"forbidden", &issuer.Error{Kind: issuer.KindForbidden, Message: "no", Details: map[string]string{"identity": "x"}}, 403, "PermissionDenied", "", "no"},
		{"rate limited", &issuer.Error{Kind: issuer.KindRateLimited, Message: "slow down", RetryAfter: 1500 * time.Millisecond}, 429, "RateLimitExceeded", "2", "slow down"},
		{"policy", issuer.Errorf(issuer.KindPolicy, "Certificate request validation failed: x"), 400, "BadRequest", "", "Certificate request validation failed: x"},
		{"ca", issuer.Errorf(issuer.KindBadRequest, "CA is expired"), 400, "BadRequest", "", "CA is expired"},
		{"unavailable", &issuer.Error{Kind: issuer.KindUnavailable, Message: "the certificate store is unavailable", RetryAfter: 5 * time.Second, Cause: internal}, 503, "ServiceUnavailable", "5", "the certificate store is unavailable"},
		{"internal, typed", &issuer.Error{Kind: issuer.KindInternal, Message: "secret detail", Cause: internal}, 500, "InternalServerError", "", "Something went wrong"},
		{"internal, plain error", internal, 500, "InternalServerError", "", "Something went wrong"},
	}
	for _, c := range cases {
		rep := do(t, &stubIssuer{err: c.err}, http.MethodPost, "application/json", validBody, true)
		if rep.status != c.status || rep.body["error"] != c.errName || rep.body["message"] != c.wantMessage ||
			rep.body["statusCode"] != float64(c.status) || rep.header.Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: got %d %s Retry-After=%q", c.name, rep.status, rep.raw, rep.header.Get("Retry-After"))
		}
		if rep.body["reqId"] != rep.header.Get("X-Request-Id") {
			t.Errorf("%s: reqId in body and header differ", c.name)
		}
		if strings.Contains(rep.raw, "sqlite") || strings.Contains(rep.raw, "/var/lib") {
			t.Errorf("%s: internals leaked: %s", c.name, rep.raw)
		}
	}
}

func TestEdgeStatuses(t *testing.T) {
	s := &stubIssuer{}
	cases := []struct {
		name                string
		method, ctype, body string
		auth                bool
		status              int
		errName             string
	}{
		{"no client certificate, even with a bad body", "POST", "application/json", "{bad", false, 401, "UnauthorizedError"},
		{"not json", "POST", "text/plain", validBody, true, 415, "UnsupportedMediaType"},
		{"no content type", "POST", "", validBody, true, 415, "UnsupportedMediaType"},
		{"too large", "POST", "application/json", `{"commonName":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`, true, 413, "PayloadTooLarge"},
		{"wrong method", "GET", "", "", true, 405, "MethodNotAllowed"},
	}
	for _, c := range cases {
		rep := do(t, s, c.method, c.ctype, c.body, c.auth)
		if rep.status != c.status || rep.body["error"] != c.errName {
			t.Errorf("%s: %d %s", c.name, rep.status, rep.raw)
		}
	}
	if s.got != nil {
		t.Error("a refused request reached the issuer")
	}
	h := NewHandler(Config{Issuer: s})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/api/v3/nothing", bytes.NewReader(nil)))
	if w.Code != 404 || !strings.Contains(w.Body.String(), `"error":"NotFound"`) {
		t.Errorf("unknown route: %d %s", w.Code, w.Body.String())
	}
}

func TestIdentity(t *testing.T) {
	u, _ := url.Parse("spiffe://td/a")
	cases := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"uri first", &x509.Certificate{URIs: []*url.URL{u}, DNSNames: []string{"a.internal"}}, "spiffe://td/a"},
		{"then dns", &x509.Certificate{DNSNames: []string{"a.internal", "b.internal"}}, "a.internal"},
		{"then cn", &x509.Certificate{Subject: pkix.Name{CommonName: "svc"}}, "svc"},
		{"nothing", &x509.Certificate{}, ""},
	}
	for _, c := range cases {
		cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.cert}, VerifiedChains: [][]*x509.Certificate{{c.cert}}}
		if got := Identity(cs); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if Identity(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}) != "" {
		t.Error("an unverified certificate must give no identity")
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(`{"altNames":[{"type":"uri","value":"x:"}]}`))
	f.Add([]byte(`[[[[{}]]]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(body, now)
		if err == nil {
			if req.ProfileID == "" || req.TTL <= 0 || req.KeyAlgorithm == "" || req.SignatureAlgorithm == "" {
				t.Fatalf("accepted an incomplete request: %+v", req)
			}
			return
		}
		var e *issuer.Error
		if !errors.As(err, &e) || (e.Kind != issuer.KindMalformed && e.Kind != issuer.KindValidation) {
			t.Fatalf("decode error of the wrong kind: %#v", err)
		}
	})
}

type blockingIssuer struct {
	stubIssuer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingIssuer) Issue(ctx context.Context, m issuer.Meta, req issuer.Request) (*issuer.Result, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.stubIssuer.Issue(ctx, m, req)
}

// Past MaxConcurrent requests in flight, a request is shed at once with 503
// and Retry-After instead of queueing.
func TestConcurrencyLimitSheds(t *testing.T) {
	b := &blockingIssuer{entered: make(chan struct{}), release: make(chan struct{})}
	h := NewHandler(Config{Issuer: b, MaxConcurrent: 1})
	req := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, IssuePath, strings.NewReader(validBody))
		r.Header.Set("Content-Type", "application/json")
		r.TLS = tlsState("spiffe://example.internal/demo-client")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- req() }()
	<-b.entered
	w := req()
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"error":"ServiceUnavailable"`) {
		t.Errorf("second request: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
	close(b.release)
	if w := <-first; w.Code != 200 {
		t.Errorf("first request: %d", w.Code)
	}
	go func() { <-b.entered }()
	if w := req(); w.Code != 200 {
		t.Errorf("after the first finished: %d", w.Code)
	}
}
