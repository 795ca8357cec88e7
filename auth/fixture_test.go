package auth

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Two machine identities as `pkid identity add` would write them, and two
// static tokens as `pkid identity token` would. The hashes were made by
// HashSecret from the secrets beside them (test credentials only).
const (
	ciName   = "ci-agent"
	ciID     = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
	ciSecret = "4f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	ciHash   = "$argon2id$v=19$m=19456,t=2,p=1$5XX5iU5rNh1LQFIA91KlrQ$s7F1u3Tab0ES0XZJl+bdNkeTDJ/xJkvb18n/6LODHOU"

	tfName   = "terraform"
	tfID     = "6f1c5b1e-0000-4000-8000-000000000001"
	tfSecret = "b7a6958473625140f1e2d3c4b5a69788b7a6958473625140f1e2d3c4b5a69788"
	tfHash   = "$argon2id$v=19$m=19456,t=2,p=1$B3XDyx42BqwAj2kdRbehUQ$ca9OQA0Hs9no8zD96qojjtScX4YQBMZiPQbCU+G8QRc"

	tfStatic     = "pkid_st_Vqc5X0iRXJws2bW82wr0feRQSBqix08rehmZ-GHJXSk"
	tfStaticHash = "b92a7aa0c4b9433e02d22858b47a4af99dbe93e1e30bf8fe629e3c14ef9b4b08"
	// unlistedStatic is a well-formed static token whose hash is not
	// configured anywhere.
	unlistedStatic     = "pkid_st_KQDa2a04AfLE9rPqJsfsAvptju2-Gw44QEruEBEw3VA"
	unlistedStaticHash = "23f6353dec48f8d815bfba4c03eeb72c79a3a588e14f1f5ed1fbb79dd63055c9"
)

// testKey is the access-token key of the tests; otherKey is another node's
// that does not share it.
var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

// testEpoch is the fake clock's start: a whole second, as the token times are.
var testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testConfigs() []MachineConfig {
	return []MachineConfig{
		{Name: ciName, ClientID: ciID, ClientSecretHash: ciHash, AccessTokenTTL: "10m", AccessTokenMaxTTL: "30m"},
		{Name: tfName, ClientID: tfID, ClientSecretHash: tfHash, StaticTokens: []string{tfStaticHash}},
	}
}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: testEpoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memRevocations is an in-memory Revocations; err, when set, is what every
// call fails with.
type memRevocations struct {
	mu      sync.Mutex
	revoked map[string]time.Time
	checks  int
	err     error
}

func newMemRevocations() *memRevocations {
	return &memRevocations{revoked: make(map[string]time.Time)}
}

func (r *memRevocations) RevokeToken(_ context.Context, jti string, expiresAt time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.revoked[jti] = expiresAt
	return nil
}

func (r *memRevocations) TokenRevoked(_ context.Context, jti string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks++
	if r.err != nil {
		return false, r.err
	}
	_, ok := r.revoked[jti]
	return ok, nil
}

func mustMachines(t testing.TB, cfgs []MachineConfig) *Machines {
	t.Helper()
	m, err := NewMachines(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
