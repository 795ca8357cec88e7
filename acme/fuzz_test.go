package acme

import (
	"testing"
)

// FuzzParseJWS: no request body makes the JWS parser panic, and whatever
// it refuses, it refuses with a 4xx problem document.
func FuzzParseJWS(f *testing.F) {
	for _, seed := range []string{
		`{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":"","signature":"AAAA"}`,
		`{"protected":"eyJhbGciOiJub25lIn0","payload":"e30","signature":""}`,
		`{"protected":"","payload":"","signature":"","header":{}}`,
		`{"signatures":[{"protected":"e30","signature":"AA"}],"payload":""}`,
		`eyJhbGciOiJFUzI1NiJ9.e30.AAAA`,
		`{"protected":"eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ","payload":"e30","signature":"AAAA"}`,
		`[]`, `null`, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, _, p := parseJWS(body, signatureAlgorithms); p != nil && (p.Status < 400 || p.Status >= 500) {
			t.Fatalf("refusal with status %d: %v", p.Status, p)
		}
		if _, _, p := parseJWS(body, macAlgorithms); p != nil && (p.Status < 400 || p.Status >= 500) {
			t.Fatalf("refusal with status %d: %v", p.Status, p)
		}
	})
}
