package issuer

import (
	"context"
	"testing"

	"github.com/pkid/pkid/linter"
)

// BenchmarkIssue runs the whole pipeline with the real linter and an
// in-memory store (software CA key): where the CPU goes, token aside.
func BenchmarkIssue(b *testing.B) {
	ca, _ := testCA(b, false)
	prof := testProfile(b, ca)
	l, err := linter.New(map[string][]string{prof.Name: nil})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := New(Config{Profiles: []*Profile{prof}, Store: newMemStore(), Linter: l})
	if err != nil {
		b.Fatal(err)
	}
	req := request()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := iss.Issue(context.Background(), meta, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueECLeafOnRSACA is the internal-services shape: EC leaf, RSA CA.
func BenchmarkIssueECLeafOnRSACA(b *testing.B) {
	ca, _ := testCA(b, true)
	ca.Signer = &countingSigner{Signer: ca.Signer.(*countingSigner).Signer}
	prof := testProfile(b, ca)
	l, err := linter.New(map[string][]string{prof.Name: nil})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := New(Config{Profiles: []*Profile{prof}, Store: newMemStore(), Linter: l})
	if err != nil {
		b.Fatal(err)
	}
	req := request(func(r *Request) { r.SignatureAlgorithm = "RSA-SHA256" })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := iss.Issue(context.Background(), meta, req); err != nil {
			b.Fatal(err)
		}
	}
}
