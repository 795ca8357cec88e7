package sqlite

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
)

// at is the n-th millisecond of the tests' timeline.
func at(n int) time.Time {
	return time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
}

func hexHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// newCert is a valid reservation, distinct for each n.
func newCert(n int) *record.Certificate {
	return &record.Certificate{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Serial: fmt.Sprintf("4%039x", n),
		ProfileID: "11111111-0000-4000-8000-000000000001", Profile: "web-server", CA: "ec-issuing",
		IssuerHash: hexHash("ca"), Identity: "uri:spiffe://example.internal/demo-client", RequestID: "req-x",
		CertificateRequestID: fmt.Sprintf("22222222-0000-4000-8000-%012d", n),
		CommonName:           "a.example.internal", AltNames: []record.AltName{{Type: "dns_name", Value: "a.example.internal"}},
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
		NotBefore: at(n), NotAfter: at(n).Add(time.Hour), TBSHash: hexHash(fmt.Sprint("tbs", n)), CreatedAt: at(n),
	}
}

func issued(n int) record.AuditEvent {
	return record.AuditEvent{Time: at(n), Action: record.ActionIssued, Identity: "client", Profile: "web-server", Outcome: "issued"}
}

func refused(n int) record.AuditEvent {
	return record.AuditEvent{Time: at(n), Action: record.ActionRefused, Identity: "client", Profile: "web-server", Outcome: "forbidden"}
}
