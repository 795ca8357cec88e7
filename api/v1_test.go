package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// stubMachines knows one client (id "cid", secret "s3cret") and one token.
type stubMachines struct{ logins []string }

func (m *stubMachines) Login(_ context.Context, id, secret, source string) (AccessToken, error) {
	m.logins = append(m.logins, id+"@"+source)
	switch {
	case id == "flood":
		return AccessToken{}, &RateLimitedError{RetryAfter: 2 * time.Second}
	case id != "cid" || secret != "s3cret":
		return AccessToken{}, ErrInvalidCredentials
	}
	return AccessToken{Token: "tok", ExpiresIn: 7200, MaxTTL: 86400}, nil
}

func (m *stubMachines) Renew(_ context.Context, tok string) (AccessToken, error) {
	if tok != "tok" {
		return AccessToken{}, ErrInvalidToken
	}
	return AccessToken{Token: "tok2", ExpiresIn: 7200, MaxTTL: 86400}, nil
}

func (m *stubMachines) Revoke(_ context.Context, tok string) error {
	if tok != "tok" {
		return ErrInvalidToken
	}
	return nil
}

func (m *stubMachines) Authenticate(_ context.Context, bearer string) (string, error) {
	switch bearer {
	case "tok":
		return "demo-agent", nil
	case "store-down":
		return "", errors.New("database unavailable")
	}
	return "", ErrInvalidToken
}

func v1Handler(s *stubIssuer) (http.Handler, *stubMachines) {
	m := &stubMachines{}
	return NewHandler(Config{Issuer: s, Machines: m, Now: func() time.Time { return now },
		Catalog: Catalog{Project: Project{ID: "11111111-1111-4111-8111-111111111111", Slug: "pkid", Name: "pkid"},
			Applications: []Application{{ID: "22222222-2222-4222-8222-222222222222", Name: "web", ProfileIDs: []string{"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"}}}}}), m
}

func v1Do(t *testing.T, h http.Handler, method, path, ctype, body string, header ...string) reply {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	for k := 0; k+1 < len(header); k += 2 {
		r.Header.Set(header[k], header[k+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	rep := reply{status: w.Code, header: w.Header(), raw: w.Body.String()}
	json.Unmarshal(w.Body.Bytes(), &rep.body)
	return rep
}

// Universal-auth login, JSON and form-encoded; identical 401s for an
// unknown id and a wrong secret; 429 with Retry-After; nothing secret in
// an answer.
func TestLogin(t *testing.T) {
	h, m := v1Handler(&stubIssuer{})
	for _, c := range []struct{ name, ctype, body string }{
		{"json", "application/json", `{"clientId":"cid","clientSecret":"s3cret"}`},
		{"json with organizationSlug", "application/json", `{"clientId":"cid","clientSecret":"s3cret","organizationSlug":"x"}`},
		{"form", "application/x-www-form-urlencoded", `clientId=cid&clientSecret=s3cret`},
	} {
		rep := v1Do(t, h, http.MethodPost, LoginPath, c.ctype, c.body)
		if rep.status != 200 || rep.body["accessToken"] != "tok" || rep.body["expiresIn"] != float64(7200) ||
			rep.body["accessTokenMaxTTL"] != float64(86400) || rep.body["tokenType"] != "Bearer" ||
			!strings.HasPrefix(rep.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s", c.name, rep.status, rep.raw)
		}
	}
	unknown := v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"nobody","clientSecret":"s3cret"}`)
	wrong := v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"cid","clientSecret":"guess"}`)
	if unknown.status != 401 || wrong.status != 401 || unknown.body["message"] != wrong.body["message"] {
		t.Errorf("unknown id %d %s / wrong secret %d %s: want identical 401s", unknown.status, unknown.raw, wrong.status, wrong.raw)
	}
	if strings.Contains(wrong.raw, "guess") || strings.Contains(wrong.raw, "s3cret") {
		t.Error("a secret appears in the answer")
	}
	if rep := v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"flood","clientSecret":"x"}`); rep.status != 429 || rep.header.Get("Retry-After") != "2" {
		t.Errorf("rate-limited login: %d %v", rep.status, rep.header)
	}
	if rep := v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"cid"}`); rep.status != 422 {
		t.Errorf("missing secret: %d", rep.status)
	}
	if rep := v1Do(t, h, http.MethodPost, LoginPath, "application/x-www-form-urlencoded", `clientId=cid&clientSecret=a&clientSecret=b`); rep.status != 400 {
		t.Errorf("repeated form field: %d", rep.status)
	}
	if len(m.logins) == 0 || !strings.HasSuffix(m.logins[0], "@192.0.2.1") {
		t.Errorf("logins were not told the source address: %v", m.logins)
	}
	if rep := v1Do(t, h, http.MethodPost, TokenRenewPath, "application/json", `{"accessToken":"tok"}`); rep.status != 200 || rep.body["accessToken"] != "tok2" {
		t.Errorf("renew: %d %s", rep.status, rep.raw)
	}
	if rep := v1Do(t, h, http.MethodPost, TokenRevokePath, "application/json", `{"accessToken":"forged"}`); rep.status != 401 {
		t.Errorf("revoke of a forged token: %d", rep.status)
	}
}

// A Bearer token makes the request machine:<name>; a bad one is 401 and
// never reaches the issuer.
func TestBearerIdentity(t *testing.T) {
	s := &stubIssuer{}
	h, _ := v1Handler(s)
	rep := v1Do(t, h, http.MethodPost, IssuePath, "application/json", validBody, "Authorization", "Bearer tok")
	if rep.status != 200 {
		t.Fatalf("Bearer issue: %d %s", rep.status, rep.raw)
	}
	for _, bad := range []string{"Bearer forged", "Basic dG9r", "Bearer "} {
		if rep := v1Do(t, h, http.MethodPost, IssuePath, "application/json", validBody, "Authorization", bad); rep.status != 401 {
			t.Errorf("%q: %d", bad, rep.status)
		}
	}
	if rep := v1Do(t, h, http.MethodGet, StatusPath, "", ""); rep.status != 200 || rep.body["message"] != "Ok" {
		t.Errorf("status: %d %s", rep.status, rep.raw)
	}
	// Not knowing whether a token is revoked is pkid's failure: 503 with
	// Retry-After, no internals, and nothing reaches the issuer.
	admits := s.admits
	rep = v1Do(t, h, http.MethodPost, IssuePath, "application/json", validBody, "Authorization", "Bearer store-down")
	if rep.status != 503 || rep.header.Get("Retry-After") == "" || strings.Contains(rep.raw, "database") {
		t.Errorf("revocation check failed: %d %q %s", rep.status, rep.header.Get("Retry-After"), rep.raw)
	}
	if s.admits != admits {
		t.Errorf("the issuer was asked %d times about an unchecked token", s.admits-admits)
	}
}

// The look-ups the clients make first.
func TestV1LookUps(t *testing.T) {
	h, _ := v1Handler(&stubIssuer{})
	auth := []string{"Authorization", "Bearer tok"}
	cases := []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/projects/slug/pkid", 200, `"slug":"pkid"`},
		{"/api/v1/projects/slug/other", 404, "Project not found"},
		{"/api/v1/cert-manager/certificate-profiles/slug/web-server?projectId=11111111-1111-4111-8111-111111111111", 200, `"certificateProfile":{"id":"b59e644e`},
		{"/api/v1/cert-manager/certificate-profiles/slug/web-server?projectId=other", 404, "not found"},
		{"/api/v1/cert-manager/certificate-profiles/slug/nope", 404, "not found"},
		{"/api/v1/cert-manager/applications/by-name/web", 200, `"application":{"id":"22222222`},
		{"/api/v1/cert-manager/applications/22222222-2222-4222-8222-222222222222/profiles", 200, `"profileSlug":"web-server"`},
	}
	for _, c := range cases {
		rep := v1Do(t, h, http.MethodGet, c.path, "", "", auth...)
		if rep.status != c.status || !strings.Contains(rep.raw, c.want) {
			t.Errorf("%s: %d %s", c.path, rep.status, rep.raw)
		}
	}
}

// POST /api/v1/cert-manager/certificates as the clients send it.
func TestV1Create(t *testing.T) {
	auth := []string{"Authorization", "Bearer tok"}
	s := &stubIssuer{}
	h, _ := v1Handler(s)
	// The CLI agent's body: removeRootsFromChain inside attributes.
	rep := v1Do(t, h, http.MethodPost, V1CreatePath, "application/json", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e",
		"attributes":{"ttl":"2d","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1","commonName":"api.example.internal",
		"keyUsages":["digital_signature","key_encipherment"],"extendedKeyUsages":["server_auth"],
		"altNames":[{"type":"dns_name","value":"www.example.internal"}],"removeRootsFromChain":true}}`, auth...)
	c, _ := rep.body["certificate"].(map[string]any)
	if rep.status != 200 || c["certificateId"] == nil || c["privateKey"] != "K" || rep.body["status"] != "issued" {
		t.Fatalf("create: %d %s", rep.status, rep.raw)
	}
	if got := s.issued(); !got.RemoveRootsFromChain || got.TTL != 48*time.Hour || got.CommonName.String() != "api.example.internal" ||
		len(got.KeyUsages) != 2 || got.KeyUsages[1] != "key_encipherment" {
		t.Errorf("decoded %+v", got)
	}
	// Terraform's: no algorithms or ttl → the profile's defaults; empty subject fields accepted.
	s = &stubIssuer{}
	h, _ = v1Handler(s)
	rep = v1Do(t, h, http.MethodPost, V1CreatePath, "application/json", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e",
		"applicationId":"22222222-2222-4222-8222-222222222222","attributes":{"commonName":"tf.example.internal","organization":"",
		"altNames":[{"type":"dns_name","value":"tf.example.internal"}]}}`, auth...)
	if got := s.issued(); rep.status != 200 || got.KeyAlgorithm != "EC_prime256v1" || got.SignatureAlgorithm != "ECDSA-SHA256" ||
		got.TTL != 90*24*time.Hour || got.ApplicationID != "22222222-2222-4222-8222-222222222222" {
		t.Errorf("defaults: %d %s %+v", rep.status, rep.raw, got)
	}
	for name, body := range map[string]string{
		"an organization":    `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","attributes":{"commonName":"a.example.internal","organization":"Example"}}`,
		"a csr with names":   `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":"x","attributes":{"commonName":"a.example.internal"}}`,
		"an unknown field":   `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","priority":1}`,
		"a bad attribute":    `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","attributes":{"keyUsages":["sign_everything"]}}`,
		"a bad application":  `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","applicationId":"app-1"}`,
		"attributes not obj": `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","attributes":[]}`,
	} {
		if rep := v1Do(t, h, http.MethodPost, V1CreatePath, "application/json", body, auth...); rep.status != 422 {
			t.Errorf("%s: %d %s", name, rep.status, rep.raw)
		}
	}
	// With a csr it signs.
	s = &stubIssuer{}
	h, _ = v1Handler(s)
	rep = v1Do(t, h, http.MethodPost, V1CreatePath, "application/json", `{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e",
		"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----","attributes":{"ttl":"1d","removeRootsFromChain":false}}`, auth...)
	if rep.status != 200 || s.signed == nil || s.signed.TTL != 24*time.Hour {
		t.Errorf("create with a csr: %d %s %+v", rep.status, rep.raw, s.signed)
	}
}

// GET …/{id}: usages and altNames in request order, times RFC 3339, the
// status the CLI agent renews on.
func TestV1Get(t *testing.T) {
	h, _ := v1Handler(&stubIssuer{})
	rep := v1Do(t, h, http.MethodGet, "/api/v1/cert-manager/certificates/6434d7ca-1979-40b6-a381-a48f97d7b39c", "", "", "Authorization", "Bearer tok")
	c, _ := rep.body["certificate"].(map[string]any)
	alt, _ := c["altNames"].([]any)
	if rep.status != 200 || c["status"] != "active" || c["notAfter"] != "2026-11-30T13:00:00Z" || len(alt) != 2 ||
		alt[0].(map[string]any)["value"] != "a.example.internal" || c["revokedAt"] != nil {
		t.Errorf("%d %s", rep.status, rep.raw)
	}
	// The renewal answer carries no certificateRequestId: the agent then
	// writes the new key at once instead of polling for it.
	rep = v1Do(t, h, http.MethodPost, "/api/v1/cert-manager/certificates/6434d7ca-1979-40b6-a381-a48f97d7b39c/renew", "application/json",
		`{"removeRootsFromChain":true}`, "Authorization", "Bearer tok")
	if rep.status != 200 || rep.body["privateKey"] != "K" || rep.body["certificateRequestId"] != "" {
		t.Errorf("v1 renew: %d %s", rep.status, rep.raw)
	}
	if rep := v1Do(t, h, http.MethodGet, "/api/v1/cert-manager/certificates/4a7b", "", "", "Authorization", "Bearer tok"); rep.status != 422 {
		t.Errorf("a serial where an id belongs: %d (Terraform reads 404 and 422 as gone)", rep.status)
	}
}

// The legacy sign-certificate of cert-manager's issuer v0.1: its body
// signs; names beside the csr are refused rather than dropped.
func TestLegacySign(t *testing.T) {
	auth := []string{"Authorization", "Bearer tok"}
	s := &stubIssuer{}
	h, _ := v1Handler(s)
	csr := `"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"`
	rep := v1Do(t, h, http.MethodPost, LegacySignPath, "application/json", `{"caId":"web-server","csr":`+csr+`,"ttl":"172800s"}`, auth...)
	if rep.status != 200 || s.signed == nil || s.signed.TTL != 48*time.Hour {
		t.Fatalf("v0.1.3's body: %d %s %+v", rep.status, rep.raw, s.signed)
	}
	for name, c := range map[string]struct{ body, path, message string }{
		"a commonName": {`{"caId":"web-server","csr":` + csr + `,"ttl":"1d","commonName":"other.example.internal"}`,
			"commonName", "With a csr, commonName comes from the CSR"},
		"altNames": {`{"certificateTemplateId":"web-server","csr":` + csr + `,"ttl":"1d","altNames":"a.example.internal"}`,
			"altNames", "With a csr, altNames comes from the CSR"},
	} {
		s.signed = nil
		rep := v1Do(t, h, http.MethodPost, LegacySignPath, "application/json", c.body, auth...)
		issues, _ := rep.body["message"].([]any)
		if rep.status != 422 || s.signed != nil || jsonString(issues) != `[{"code":"custom","message":"`+c.message+`","path":["`+c.path+`"]}]` {
			t.Errorf("%s: %d %s", name, rep.status, rep.raw)
		}
	}
	// Empty values, as some clients send them, are no names.
	s.signed = nil
	if rep := v1Do(t, h, http.MethodPost, LegacySignPath, "application/json",
		`{"caId":"web-server","csr":`+csr+`,"ttl":"1d","commonName":"","altNames":""}`, auth...); rep.status != 200 || s.signed == nil {
		t.Errorf("empty names: %d %s", rep.status, rep.raw)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The request log names the client only by a UUID-shaped clientId: a
// client that swapped its fields sends its secret as the clientId.
func TestLoginLogsNoSecretAsClientID(t *testing.T) {
	var logged strings.Builder
	m := &stubMachines{}
	h := NewHandler(Config{Issuer: &stubIssuer{}, Machines: m, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	const id = "9F1C2B3A-4D5E-4F60-8A7B-1C2D3E4F5A6B"
	v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"`+id+`","clientSecret":"s3cret"}`)
	v1Do(t, h, http.MethodPost, LoginPath, "application/json", `{"clientId":"0123456789abcdefswappedsecret","clientSecret":"`+id+`"}`)
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines:\n%s", len(lines), logged.String())
	}
	if !strings.Contains(lines[0], `"identity":"client:`+strings.ToLower(id)+`"`) {
		t.Errorf("a UUID clientId is not logged canonically: %s", lines[0])
	}
	if strings.Contains(lines[1], "swappedsecret") || strings.Contains(lines[1], "0123456789") ||
		!strings.Contains(lines[1], `"identity":"client:(not a UUID)"`) {
		t.Errorf("a clientId that is no UUID is logged: %s", lines[1])
	}
}

// No body makes the v1 create or the login answer anything but a 2xx or a
// 4xx with Infisical's error envelope: never a 5xx, never a panic.
func FuzzV1Bodies(f *testing.F) {
	f.Add([]byte(`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","applicationId":"22222222-2222-4222-8222-222222222222",` +
		`"removeRootsFromChain":true,"attributes":{"ttl":"1d","commonName":"a.example.internal","keyAlgorithm":"EC_prime256v1"}}`))
	f.Add([]byte(`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----"}`))
	f.Add([]byte(`{"clientId":"cid","clientSecret":"s3cret"}`))
	f.Add([]byte(`{"attributes":[],"metadata":{"k":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _ := v1Handler(&stubIssuer{})
		for _, c := range []struct{ path, ctype string }{
			{V1CreatePath, "application/json"}, {LoginPath, "application/json"}, {LoginPath, "application/x-www-form-urlencoded"},
		} {
			rep := v1Do(t, h, http.MethodPost, c.path, c.ctype, string(body), "Authorization", "Bearer tok")
			switch {
			case rep.status >= 500:
				t.Fatalf("%s: %d %s", c.path, rep.status, rep.raw)
			case rep.status >= 400 && (rep.body["message"] == nil || rep.body["statusCode"] != float64(rep.status)):
				t.Fatalf("%s: %d without the error envelope: %s", c.path, rep.status, rep.raw)
			}
		}
	})
}
