package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// memStore is an in-memory Store whose steps can be made to fail.
type memStore struct {
	mu          sync.Mutex
	records     map[string]*record.Record
	audit       []record.AuditEvent
	failReserve error
	failFinal   error
	failRefuse  error
	dupSerials  int // Reserve reports a duplicate serial this many times
}

func newMemStore() *memStore { return &memStore{records: map[string]*record.Record{}} }

func (s *memStore) Reserve(_ context.Context, rec *record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failReserve != nil {
		return s.failReserve
	}
	if s.dupSerials > 0 {
		s.dupSerials--
		return record.ErrDuplicateSerial
	}
	cp := *rec
	s.records[rec.ID] = &cp
	return nil
}

func (s *memStore) transition(id, status string, der []byte, ev record.AuditEvent) error {
	r, ok := s.records[id]
	if !ok || r.Status != record.StatusPending {
		return errors.New("no pending record")
	}
	r.Status, r.DER = status, der
	s.audit = append(s.audit, ev)
	return nil
}

func (s *memStore) Finalize(_ context.Context, id string, der []byte, ev record.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFinal != nil {
		return s.failFinal
	}
	return s.transition(id, record.StatusIssued, der, ev)
}

func (s *memStore) Abort(_ context.Context, id string, der []byte, ev record.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transition(id, record.StatusAborted, der, ev)
}

func (s *memStore) Refuse(_ context.Context, ev record.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRefuse != nil {
		return s.failRefuse
	}
	s.audit = append(s.audit, ev)
	return nil
}

func (s *memStore) only(t *testing.T) *record.Record {
	t.Helper()
	if len(s.records) != 1 {
		t.Fatalf("store holds %d records, want 1", len(s.records))
	}
	for _, r := range s.records {
		return r
	}
	return nil
}

// fakeLinter fails the lints it is told to, or errors.
type fakeLinter struct {
	failed []string
	err    error
	calls  int
}

func (l *fakeLinter) Lint(context.Context, string, []byte) ([]string, error) {
	l.calls++
	return l.failed, l.err
}

// countingSigner wraps the CA key: it counts signatures and can fail or
// sign with a different key.
type countingSigner struct {
	crypto.Signer
	calls    int
	err      error
	impostor crypto.Signer
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	if s.impostor != nil {
		return s.impostor.Sign(r, digest, opts)
	}
	return s.Signer.Sign(r, digest, opts)
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// testCA is a root and an issuing CA with in-memory software keys. They
// exist only for unit tests of the pipeline; the daemon only ever signs
// with token keys.
func testCA(t testing.TB, rsaIssuing bool) (*CA, *countingSigner) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	root := mkCACert(t, "Test Root", rootKey.Public(), nil, rootKey)
	var key crypto.Signer
	if rsaIssuing {
		key, _ = rsa.GenerateKey(rand.Reader, 3072)
	} else {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	issuing := mkCACert(t, "Test Issuing", key.Public(), root, rootKey)
	s := &countingSigner{Signer: key}
	return &CA{Name: "issuing", Certificate: issuing, Parents: []*x509.Certificate{root}, Signer: s}, s
}

func mkCACert(t testing.TB, cn string, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(3 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if parent == nil {
		parent = tpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const profileID = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"

func testProfile(t testing.TB, ca *CA) *Profile {
	t.Helper()
	pol, err := policy.New(policy.Rules{
		CommonName: &policy.NameRule{Allowed: []string{"*.example.internal"}},
		AltNames: map[string]*policy.NameRule{
			policy.SANDNS: {Allowed: []string{"*.example.internal"}},
			policy.SANIP:  {Allowed: []string{"10.*"}},
		},
		KeyUsages:           &policy.NameRule{Allowed: []string{"digital_signature", "key_encipherment"}},
		ExtendedKeyUsages:   &policy.NameRule{Allowed: []string{"server_auth", "client_auth"}},
		SignatureAlgorithms: []string{"*"},
		KeyAlgorithms:       []string{"*"},
		MaxValidity:         "90d",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Profile{ID: profileID, Name: "web", CA: ca, Policy: pol, AllowedIdentities: []string{"spiffe://test/*"},
		DefaultKeyUsages: []string{"digital_signature", "key_encipherment"}, DefaultExtKeyUsages: []string{"server_auth"}}
}

// request builds a valid request; tests override one thing.
func request(change ...func(*Request)) Request {
	r := Request{
		ProfileID: profileID, CommonName: "a.example.internal", TTL: 24 * time.Hour,
		AltNames:           []policy.SAN{{Type: policy.SANDNS, Value: "a.example.internal"}},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
	}
	for _, c := range change {
		c(&r)
	}
	return r
}

var meta = Meta{RequestID: "req-00000000000000", Identity: "spiffe://test/client"}

type harness struct {
	iss    *Issuer
	store  *memStore
	lint   *fakeLinter
	signer *countingSigner
	ca     *CA
	prof   *Profile
}

func newHarness(t testing.TB, rsaCA bool) *harness {
	t.Helper()
	ca, signer := testCA(t, rsaCA)
	h := &harness{store: newMemStore(), lint: &fakeLinter{}, signer: signer, ca: ca}
	h.prof = testProfile(t, ca)
	iss, err := New(Config{Profiles: []*Profile{h.prof}, Store: h.store, Linter: h.lint, Clock: fixedClock{testNow}})
	if err != nil {
		t.Fatal(err)
	}
	h.iss = iss
	return h
}
