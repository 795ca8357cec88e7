package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func request(t *testing.T, s Issuer, method, path, body string) reply {
	t.Helper()
	h := NewHandler(Config{Issuer: s, Now: func() time.Time { return now }})
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.TLS = tlsState("spiffe://example.internal/demo-client")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	rep := reply{status: w.Code, header: w.Header(), raw: w.Body.String()}
	json.Unmarshal(w.Body.Bytes(), &rep.body)
	return rep
}

// Serial numbers in paths are hex, any case, with or without colons
// (DESIGN.md §12); anything else is 422 at the field.
func TestSerialInPath(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/pki/certificates/4A:7B:00:01":                "4a7b0001",
		"/api/v1/pki/certificates/004a7b":                     "4a7b",
		"/api/v1/pki/certificates/4a7b0001/certificate":       "4a7b0001",
		"/api/v1/pki/certificates/zz":                         "422",
		"/api/v1/pki/certificates/" + strings.Repeat("a", 41): "422",
	} {
		s := &stubIssuer{}
		rep := request(t, s, http.MethodGet, path, "")
		if want == "422" {
			if rep.status != 422 || !reflect.DeepEqual(issuePaths(rep), []string{"invalid_string@serialNumber"}) {
				t.Errorf("%s: %d %s", path, rep.status, rep.raw)
			}
			continue
		}
		if rep.status != 200 || len(s.keys) != 1 || s.keys[0] != want {
			t.Errorf("%s: %d %s, looked up %v, want %s", path, rep.status, rep.raw, s.keys, want)
		}
	}
}

func TestLookupAnswer(t *testing.T) {
	rep := request(t, &stubIssuer{}, http.MethodGet, "/api/v1/pki/certificates/4a7b", "")
	c, _ := rep.body["certificate"].(map[string]any)
	if rep.status != 200 || c["altNames"] != "a.example.internal, 10.0.0.1" || c["status"] != "active" ||
		c["revokedAt"] != nil || c["notAfter"] != "2026-11-30T13:00:00Z" {
		t.Errorf("%d %s", rep.status, rep.raw)
	}
	for _, k := range []string{"id", "serialNumber", "commonName", "altNames", "status", "notBefore", "notAfter", "revokedAt",
		"revocationReason", "keyUsages", "extendedKeyUsages", "keyAlgorithm", "signatureAlgorithm", "profileId", "caName"} {
		if _, ok := c[k]; !ok {
			t.Errorf("look-up answer lacks %s: %s", k, rep.raw)
		}
	}
}

func TestRevokeDecoding(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"good", `{"revocationReason":"KEY_COMPROMISE"}`, 200, "revoke 4a7b KEY_COMPROMISE"},
		{"hold reaches the core, which refuses it", `{"revocationReason":"CERTIFICATE_HOLD"}`, 200, "revoke 4a7b CERTIFICATE_HOLD"},
		{"unknown reason", `{"revocationReason":"BORED"}`, 422, "invalid_enum_value@revocationReason"},
		{"missing reason", `{}`, 422, "invalid_type@revocationReason"},
		{"extra field", `{"revocationReason":"SUPERSEDED","why":"x"}`, 422, "unrecognized_keys@"},
	}
	for _, c := range cases {
		s := &stubIssuer{}
		rep := request(t, s, http.MethodPost, "/api/v1/pki/certificates/4A7B/revoke", c.body)
		if rep.status != c.status {
			t.Errorf("%s: %d %s", c.name, rep.status, rep.raw)
			continue
		}
		if c.status == 200 {
			if len(s.keys) != 1 || s.keys[0] != c.want || rep.body["message"] != "Successfully revoked certificate" || rep.body["revokedAt"] != "2026-11-30T12:00:00Z" {
				t.Errorf("%s: %v %s", c.name, s.keys, rep.raw)
			}
		} else if got := issuePaths(rep); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: issues %v, want %s", c.name, got, c.want)
		}
	}
}

func TestSignDecoding(t *testing.T) {
	const csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"
	good := `{"profileId":"B59E644E-E2EE-4DEC-871E-2AC6F5AC2F0E","csr":"  ` + strings.ReplaceAll(csr, "\n", `\n`) + `\n","ttl":"1d"}`
	s := &stubIssuer{}
	rep := request(t, s, http.MethodPost, SignPath, good)
	if rep.status != 200 || s.signed == nil || s.signed.CSR != csr || s.signed.ProfileID != "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e" {
		t.Fatalf("%d %s %+v", rep.status, rep.raw, s.signed)
	}
	if _, has := rep.body["privateKey"]; has {
		t.Error("a CSR signature answered a private key")
	}
	for name, c := range map[string]struct{ body, want string }{
		"empty csr":   {`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":" ","ttl":"1d"}`, "too_small@csr"},
		"long csr":    {`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":"` + strings.Repeat("A", 4097) + `","ttl":"1d"}`, "too_big@csr"},
		"key field":   {`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":"x","ttl":"1d","keyAlgorithm":"RSA_2048"}`, "unrecognized_keys@"},
		"bad sig alg": {`{"profileId":"b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e","csr":"x","ttl":"1d","signatureAlgorithm":"MD5"}`, "invalid_enum_value@signatureAlgorithm"},
	} {
		rep := request(t, &stubIssuer{}, http.MethodPost, SignPath, c.body)
		if got := issuePaths(rep); rep.status != 422 || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: %d %v, want %s", name, rep.status, got, c.want)
		}
	}
}

func TestRenewRoute(t *testing.T) {
	s := &stubIssuer{}
	rep := request(t, s, http.MethodPost, "/api/v3/pki/certificates/6434D7CA-1979-40B6-A381-A48F97D7B39C/renew", `{"removeRootsFromChain":true}`)
	if rep.status != 200 || rep.body["certificateRequestId"] == nil || rep.body["privateKey"] != "K" ||
		len(s.keys) != 1 || s.keys[0] != "renew 6434d7ca-1979-40b6-a381-a48f97d7b39c true" {
		t.Errorf("%d %s %v", rep.status, rep.raw, s.keys)
	}
	// No body at all is a renewal with the defaults.
	s = &stubIssuer{}
	if rep := request(t, s, http.MethodPost, "/api/v3/pki/certificates/6434d7ca-1979-40b6-a381-a48f97d7b39c/renew", ""); rep.status != 200 ||
		s.keys[0] != "renew 6434d7ca-1979-40b6-a381-a48f97d7b39c false" {
		t.Errorf("renew without a body: %d %s", rep.status, rep.raw)
	}
	if rep := request(t, &stubIssuer{}, http.MethodPost, "/api/v3/pki/certificates/not-a-uuid/renew", ""); rep.status != 422 {
		t.Errorf("renew of a malformed id: %d %s", rep.status, rep.raw)
	}
}

// issuanceRecorder keeps what the handler counts.
type issuanceRecorder struct {
	nopMetrics
	mu     sync.Mutex
	counts []string
}

func (m *issuanceRecorder) ObserveIssuance(profile, outcome string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts = append(m.counts, profile+" "+outcome)
}

// A renewal is counted under the profile of the certificate it renews, on
// both routes, not under "unknown" (DESIGN.md §7 keeps that for unknown
// profiles).
func TestRenewalIsCountedUnderItsProfile(t *testing.T) {
	for _, path := range []string{"/api/v3/pki/certificates/6434d7ca-1979-40b6-a381-a48f97d7b39c/renew",
		"/api/v1/cert-manager/certificates/6434d7ca-1979-40b6-a381-a48f97d7b39c/renew"} {
		m := &issuanceRecorder{}
		h := NewHandler(Config{Issuer: &stubIssuer{}, Metrics: m, Now: func() time.Time { return now }})
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(""))
		r.TLS = tlsState("spiffe://example.internal/demo-client")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || len(m.counts) != 1 || m.counts[0] != "web-server issued" {
			t.Errorf("%s: %d, counted %v", path, w.Code, m.counts)
		}
	}
}
