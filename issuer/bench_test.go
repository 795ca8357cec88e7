package issuer

import (
	"context"
	"testing"

	"github.com/pkid/pkid/linter"
)

// benchIssue runs the whole pipeline with the real linter and an
// in-memory store (software CA key): where the CPU goes, token aside.
func benchIssue(b *testing.B, rsaCA bool, change ...func(*IssueRequest)) {
	ca, _ := testCA(b, rsaCA)
	prof := testProfile(b)
	l, err := linter.New(map[string][]string{prof.Name(): nil})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := NewService(ServiceConfig{Store: newMemStore()})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := New(Config{Profiles: []*Profile{prof}, CAs: []*CA{ca}, Service: svc, Linter: l})
	if err != nil {
		b.Fatal(err)
	}
	meta, req := metaFor(b, "uri:spiffe://test/client"), request(b, change...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := iss.Issue(context.Background(), meta, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue is the web-server shape: EC leaf on an EC P-256 CA.
func BenchmarkIssue(b *testing.B) { benchIssue(b, false) }

// BenchmarkIssueECLeafOnRSACA is the internal-services shape: EC leaf, RSA CA.
func BenchmarkIssueECLeafOnRSACA(b *testing.B) {
	benchIssue(b, true, func(r *IssueRequest) { r.SignatureAlgorithm = "RSA-SHA256" })
}
