package integration

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// vector is one conformance case from testdata/conformance.
type vector struct {
	Name            string          `json:"name"`
	Client          string          `json:"client"` // client | intruder | none
	ContentType     *string         `json:"contentType"`
	Body            json.RawMessage `json:"body"`
	BodyText        string          `json:"bodyText"`
	Status          int             `json:"status"`
	Error           string          `json:"error"`
	Issues          []string        `json:"issues"`
	MessageContains []string        `json:"messageContains"`
}

func TestConformanceVectors(t *testing.T) {
	raw, err := os.ReadFile("../testdata/conformance/issue-certificate.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			body := []byte(v.BodyText)
			if v.Body != nil {
				body = v.Body
			}
			ct := "application/json"
			if v.ContentType != nil {
				ct = *v.ContentType
			}
			r := s.post(t, v.Client, ct, body)
			if r.status != v.Status {
				t.Fatalf("status %d, want %d: %s", r.status, v.Status, r.raw)
			}
			if r.status == 200 {
				s.checkIssued(t, r)
				return
			}
			checkEnvelope(t, r, v.Error)
			if v.Issues != nil {
				if got := issuePaths(t, r); !reflect.DeepEqual(got, v.Issues) {
					t.Errorf("issues\n got  %q\n want %q", got, v.Issues)
				}
			}
			for _, want := range v.MessageContains {
				if !strings.Contains(r.str("message"), want) {
					t.Errorf("message %q lacks %q", r.str("message"), want)
				}
			}
		})
	}
}

// checkEnvelope asserts Infisical's error envelope and the request id.
func checkEnvelope(t *testing.T, r reply, errName string) {
	t.Helper()
	if r.body["statusCode"] != float64(r.status) || r.str("error") != errName {
		t.Errorf("envelope %s, want statusCode %d error %s", r.raw, r.status, errName)
	}
	id := r.str("reqId")
	if len(id) != 18 || !strings.HasPrefix(id, "req-") || r.header.Get("X-Request-Id") != id {
		t.Errorf("reqId %q / X-Request-Id %q", id, r.header.Get("X-Request-Id"))
	}
	if _, ok := r.body["message"]; !ok {
		t.Error("envelope has no message")
	}
	if strings.Contains(string(r.raw), "sqlite") || strings.Contains(string(r.raw), "pkcs11") || strings.Contains(string(r.raw), s.dir) {
		t.Errorf("internals leaked: %s", r.raw)
	}
}

func issuePaths(t *testing.T, r reply) []string {
	t.Helper()
	issues, ok := r.body["message"].([]any)
	if !ok {
		t.Fatalf("422 message is not an issue array: %s", r.raw)
	}
	var out []string
	for _, raw := range issues {
		is := raw.(map[string]any)
		var parts []string
		for _, p := range is["path"].([]any) {
			b, _ := json.Marshal(p)
			parts = append(parts, strings.Trim(string(b), `"`))
		}
		if is["message"] == "" {
			t.Errorf("issue without message: %v", is)
		}
		out = append(out, is["code"].(string)+"@"+strings.Join(parts, "."))
	}
	return out
}

func TestOversizedBodyIs413AndDaemonKeepsServing(t *testing.T) {
	big := `{"commonName":"` + strings.Repeat("a", 100<<10) + `"}`
	r := s.post(t, "client", "application/json", []byte(big))
	if r.status != 413 {
		t.Fatalf("status %d: %.200s", r.status, r.raw)
	}
	checkEnvelope(t, r, "PayloadTooLarge")
	r = s.issue(t, map[string]any{"profileId": prodClients, "commonName": "after.prod.example.internal", "ttl": "1h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	s.checkIssued(t, r)
}
