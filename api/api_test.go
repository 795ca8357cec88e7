package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// stubIssuer records the request it was given and answers as told; it
// admits every identity but those in denied.
type stubIssuer struct {
	mu     sync.Mutex
	got    *issuer.IssueRequest
	signed *issuer.SignRequest
	keys   []string
	err    error
	denied map[string]bool
	admits int
}

func (s *stubIssuer) Admit(_ context.Context, m issuer.Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admits++
	if s.denied[m.Identity.String()] {
		return &issuer.Error{Kind: issuer.KindForbidden, Message: "You are not allowed to use any certificate profile",
			Details: map[string]string{"identity": m.Identity.String()}}
	}
	return nil
}

func (s *stubIssuer) Issue(_ context.Context, _ issuer.Meta, req issuer.IssueRequest) (*issuer.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = &req
	if s.err != nil {
		return nil, s.err
	}
	return &issuer.Result{Certificate: "C", IssuingCACertificate: "I", CertificateChain: "I", PrivateKey: "K",
		SerialNumber: "40ab", CertificateID: "6434d7ca-1979-40b6-a381-a48f97d7b39c"}, nil
}

func (s *stubIssuer) ProfileName(string) string { return "web-server" }

func (s *stubIssuer) Sign(_ context.Context, _ issuer.Meta, req issuer.SignRequest) (*issuer.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signed = &req
	if s.err != nil {
		return nil, s.err
	}
	return &issuer.Result{Certificate: "C", IssuingCACertificate: "I", CertificateChain: "I", SerialNumber: "40ab",
		CertificateID: "6434d7ca-1979-40b6-a381-a48f97d7b39c"}, nil
}

func (s *stubIssuer) Lookup(_ context.Context, _ issuer.Meta, key string, byID bool) (*issuer.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, key)
	if s.err != nil {
		return nil, s.err
	}
	rec := &record.Certificate{ID: "6434d7ca-1979-40b6-a381-a48f97d7b39c", Serial: key, CommonName: "a.example.internal",
		AltNames:  []record.AltName{{Type: "dns_name", Value: "a.example.internal"}, {Type: "ip_address", Value: "10.0.0.1"}},
		KeyUsages: []string{"digital_signature"}, NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{0x30, 0}, Profile: "web-server"}
	return &issuer.Certificate{Record: rec, Status: issuer.StatusActive}, nil
}

func (s *stubIssuer) Renew(_ context.Context, _ issuer.Meta, id string, removeRoots bool) (*issuer.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, fmt.Sprintf("renew %s %t", id, removeRoots))
	if s.err != nil {
		return nil, s.err
	}
	return &issuer.Result{Certificate: "C", IssuingCACertificate: "I", CertificateChain: "I", PrivateKey: "K", SerialNumber: "40ac",
		CertificateID: "7434d7ca-1979-40b6-a381-a48f97d7b39c", CertificateRequestID: "8434d7ca-1979-40b6-a381-a48f97d7b39c",
		Profile: "web-server"}, nil
}

func (s *stubIssuer) ByRequestID(ctx context.Context, m issuer.Meta, id string) (*issuer.Certificate, error) {
	return s.Lookup(ctx, m, id, true)
}

func (s *stubIssuer) ProfileInfo(id string) (issuer.ProfileInfo, bool) {
	return issuer.ProfileInfo{ID: id, Name: "web-server", Slug: "web-server", CAName: "ec-issuing", SignatureAlgorithm: "ECDSA-SHA256",
		KeyAlgorithm: "EC_prime256v1", MaxValidity: 90 * 24 * time.Hour}, true
}

func (s *stubIssuer) ProfileFor(_ context.Context, _ issuer.Meta, ref string) (issuer.ProfileInfo, error) {
	if ref != "web-server" && ref != "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e" {
		return issuer.ProfileInfo{}, issuer.Errorf(issuer.KindNotFound, "Certificate profile not found")
	}
	info, _ := s.ProfileInfo("b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e")
	return info, nil
}

func (s *stubIssuer) Revoke(_ context.Context, _ issuer.Meta, key string, byID bool, reason string) (*record.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, "revoke "+key+" "+reason)
	if s.err != nil {
		return nil, s.err
	}
	return &record.Certificate{Serial: key, RevokedAt: now, RevocationReason: reason}, nil
}

func (s *stubIssuer) issued() *issuer.IssueRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func certState(cert *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
}

func tlsState(uri string) *tls.ConnectionState {
	u, _ := url.Parse(uri)
	return certState(&x509.Certificate{URIs: []*url.URL{u}})
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, s Issuer, method, contentType, body string, authenticated bool) reply {
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
	got := s.issued()
	if got.ProfileID != "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e" || got.CommonName.String() != "*.example.internal" ||
		got.TTL != 30*24*time.Hour || !reflect.DeepEqual(got.KeyUsages, []string{"digital_signature"}) ||
		!reflect.DeepEqual(got.ExtKeyUsages, []string{"server_auth"}) || got.SignatureAlgorithm != "ECDSA-SHA256" ||
		got.KeyAlgorithm != "EC_prime256v1" || !got.RemoveRootsFromChain {
		t.Errorf("decoded %+v", got)
	}
	var sans []string
	for _, a := range got.AltNames {
		sans = append(sans, a.Type()+"="+a.Value())
	}
	if want := []string{"dns_name=*.example.internal", "ip_address=10.0.0.1"}; !reflect.DeepEqual(sans, want) {
		t.Errorf("altNames %q, want %q", sans, want)
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
			if s.issued() != nil {
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
	if got := s.issued(); got.NotBefore == nil || got.NotAfter.Sub(*got.NotBefore) != 2*time.Hour {
		t.Errorf("window not decoded: %+v", got)
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
	if s.issued() != nil {
		t.Error("a refused request reached the issuer")
	}
	h := NewHandler(Config{Issuer: s})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/api/v3/nothing", bytes.NewReader(nil)))
	if w.Code != 404 || !strings.Contains(w.Body.String(), `"error":"NotFound"`) {
		t.Errorf("unknown route: %d %s", w.Code, w.Body.String())
	}
}

// The typed identity of a client certificate (DESIGN.md §2), and the 401s.
func TestAuthenticate(t *testing.T) {
	u1, _ := url.Parse("spiffe://td/a")
	u2, _ := url.Parse("spiffe://td/b")
	cases := []struct {
		name   string
		state  *tls.ConnectionState
		want   string
		status int
	}{
		{"one URI SAN", certState(&x509.Certificate{URIs: []*url.URL{u1}, DNSNames: []string{"a.internal"}}), "uri:spiffe://td/a", 200},
		{"two URI SANs are ambiguous", certState(&x509.Certificate{URIs: []*url.URL{u1, u2}}), "", 401},
		{"then the first DNS SAN", certState(&x509.Certificate{DNSNames: []string{"A.internal", "b.internal"}}), "dns:a.internal", 200},
		{"then the CN", certState(&x509.Certificate{Subject: pkix.Name{CommonName: "svc"}}), "cn:svc", 200},
		{"a CN that spells a URI stays a CN", certState(&x509.Certificate{Subject: pkix.Name{CommonName: "spiffe://td/a"}}), "cn:spiffe://td/a", 200},
		{"nothing", certState(&x509.Certificate{}), "", 401},
		{"not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u1}}}}, "", 401},
		{"no certificate", nil, "", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, IssuePath, nil)
			r.TLS = c.state
			id, e, _ := authenticate(r)
			if c.status == 401 {
				if e == nil || e.status != 401 {
					t.Fatalf("authenticate = %v, %v; want 401", id, e)
				}
				return
			}
			if e != nil || id.String() != c.want {
				t.Errorf("authenticate = %q, %v; want %q", id.String(), e, c.want)
			}
		})
	}
}

// countingBody records whether the handler read the request body.
type countingBody struct {
	io.Reader
	read atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) { b.read.Store(true); return b.Reader.Read(p) }

// An identity allowed on no profile gets 403 before its body is read —
// even when the body is malformed or names an unknown profile (DESIGN.md §1
// order of checks, §8 admission).
func TestAdmissionBeforeBody(t *testing.T) {
	s := &stubIssuer{denied: map[string]bool{"uri:spiffe://example.internal/intruder": true}}
	h := NewHandler(Config{Issuer: s})
	for name, body := range map[string]string{"malformed": "{bad", "unknown profile": strings.Replace(validBody, "B59E644E", "00000000", 1)} {
		b := &countingBody{Reader: strings.NewReader(body)}
		r := httptest.NewRequest(http.MethodPost, IssuePath, b)
		r.Header.Set("Content-Type", "application/json")
		r.TLS = tlsState("spiffe://example.internal/intruder")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 403 || !strings.Contains(w.Body.String(), `"error":"PermissionDenied"`) ||
			!strings.Contains(w.Body.String(), "uri:spiffe://example.internal/intruder") {
			t.Errorf("%s: %d %s", name, w.Code, w.Body.String())
		}
		if b.read.Load() {
			t.Errorf("%s: the body of an identity allowed nowhere was read", name)
		}
	}
	if s.issued() != nil {
		t.Error("a refused identity reached the issuer")
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(`{"altNames":[{"type":"uri","value":"x:"}]}`))
	f.Add([]byte(`[[[[{}]]]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := decodeIssueRequest(body, now)
		if e == nil {
			if req.ProfileID == "" || req.TTL <= 0 || req.KeyAlgorithm == "" || req.SignatureAlgorithm == "" {
				t.Fatalf("accepted an incomplete request: %+v", req)
			}
			for _, s := range req.AltNames {
				if again, err := policy.ParseSAN(s.Type(), s.Value()); err != nil || again.Value() != s.Value() {
					t.Fatalf("accepted SAN %s %q is not canonical (%v)", s.Type(), s.Value(), err)
				}
			}
			return
		}
		if e.status != 400 && e.status != 422 {
			t.Fatalf("decode error with status %d: %#v", e.status, e)
		}
	})
}

type blockingIssuer struct {
	stubIssuer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingIssuer) Issue(ctx context.Context, m issuer.Meta, req issuer.IssueRequest) (*issuer.Result, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.stubIssuer.Issue(ctx, m, req)
}

func serve(h http.Handler, identity string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, IssuePath, strings.NewReader(validBody))
	r.Header.Set("Content-Type", "application/json")
	r.TLS = tlsState(identity)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Past the global slots a request is shed at once with 503 and
// Retry-After; past its identity's cap, with 429; other identities are
// still served. The slots outlive the handler (a reload builds a new one).
func TestConcurrencyLimits(t *testing.T) {
	const alice, bob, carol = "spiffe://example.internal/alice", "spiffe://example.internal/bob", "spiffe://example.internal/carol"
	b := &blockingIssuer{entered: make(chan struct{}), release: make(chan struct{})}
	adm := NewAdmission(2, 1)
	h := NewHandler(Config{Issuer: b, Admission: adm})
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- serve(h, alice) }()
	<-b.entered
	if w := serve(h, alice); w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("alice's second request: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
	second := make(chan *httptest.ResponseRecorder)
	reloaded := NewHandler(Config{Issuer: b, Admission: adm}) // as after SIGHUP
	go func() { second <- serve(reloaded, bob) }()
	<-b.entered
	if w := serve(reloaded, carol); w.Code != 503 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"error":"ServiceUnavailable"`) {
		t.Errorf("carol past the global slots: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
	close(b.release)
	for _, c := range []chan *httptest.ResponseRecorder{first, second} {
		if w := <-c; w.Code != 200 {
			t.Errorf("a held request: %d", w.Code)
		}
	}
	go func() { <-b.entered }()
	if w := serve(h, alice); w.Code != 200 {
		t.Errorf("after the first finished: %d", w.Code)
	}
}

// A client that dribbles its body is cut off at the body-read deadline
// with 408 and its slot is freed.
func TestBodyReadDeadline(t *testing.T) {
	s := &stubIssuer{}
	h := NewHandler(Config{Issuer: s, BodyReadTimeout: 200 * time.Millisecond, Admission: NewAdmission(1, 1)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.TLS = tlsState("spiffe://example.internal/slow")
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"profileId\":", IssuePath)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"error":"RequestTimeout"`) {
		t.Errorf("slow body: %d %s", resp.StatusCode, body)
	}
	// The slot and the identity's allowance are free again.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+IssuePath, strings.NewReader(validBody))
	req.Header.Set("Content-Type", "application/json")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after the slow client: %d", resp.StatusCode)
	}
}
