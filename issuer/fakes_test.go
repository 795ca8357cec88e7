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
	mu           sync.Mutex
	records      map[string]*record.Certificate
	audit        []record.AuditEvent
	checkpoints  []record.Checkpoint
	crls         []*record.CRL
	failReserve  error
	lostReserve  error // Reserve commits, then answers this (an answer lost with the connection)
	failFinal    error
	failAbort    error
	failFinalCRL error
	failRefuse   error
	dupSerials   int // Reserve reports a duplicate serial this many times
}

func newMemStore() *memStore { return &memStore{records: map[string]*record.Certificate{}} }

func (s *memStore) Reserve(_ context.Context, c *record.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failReserve != nil {
		return s.failReserve
	}
	if s.dupSerials > 0 {
		s.dupSerials--
		return record.ErrDuplicateSerial
	}
	cp := *c
	s.records[c.ID] = &cp
	return s.lostReserve
}

func (s *memStore) transition(id, status string, der []byte, ev record.AuditEvent) error {
	r, ok := s.records[id]
	if !ok {
		return record.ErrNotFound
	}
	if r.Status != record.StatusPending {
		return record.ErrNotPending
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
	if s.failAbort != nil {
		return s.failAbort
	}
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

func (s *memStore) AuditHead(context.Context) (int64, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.audit)), "head", nil
}

func (s *memStore) LatestCheckpoint(context.Context) (*record.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.checkpoints) == 0 {
		return nil, record.ErrNotFound
	}
	cp := s.checkpoints[len(s.checkpoints)-1]
	return &cp, nil
}

func (s *memStore) AddCheckpoint(_ context.Context, cp record.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints = append(s.checkpoints, cp)
	return nil
}

func (s *memStore) Revoke(_ context.Context, id string, at time.Time, reason string, ev record.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	switch {
	case !ok:
		return record.ErrNotFound
	case r.Status == record.StatusRevoked:
		return record.ErrAlreadyRevoked
	case r.Status != record.StatusIssued:
		return record.ErrNotRevocable
	}
	r.Status, r.RevokedAt, r.RevocationReason = record.StatusRevoked, at, reason
	s.audit = append(s.audit, ev)
	return nil
}

func (s *memStore) find(match func(*record.Certificate) bool) (*record.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		if match(r) {
			cp := *r
			return &cp, nil
		}
	}
	return nil, record.ErrNotFound
}

func (s *memStore) Certificate(_ context.Context, id string) (*record.Certificate, error) {
	return s.find(func(r *record.Certificate) bool { return r.ID == id })
}

func (s *memStore) CertificateBySerial(_ context.Context, serial string) (*record.Certificate, error) {
	return s.find(func(r *record.Certificate) bool { return r.Serial == serial })
}

func (s *memStore) CertificateByRequestID(_ context.Context, id string) (*record.Certificate, error) {
	return s.find(func(r *record.Certificate) bool { return r.CertificateRequestID == id })
}

// crlRows lists ca's CRL rows, reserved, aborted and issued, by number.
func (s *memStore) crlRows(ca string) map[int64][]record.CRL {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64][]record.CRL{}
	for _, c := range s.crls {
		if c.CA == ca {
			out[c.Number] = append(out[c.Number], *c)
		}
	}
	return out
}

func (s *memStore) crlCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.crls {
		if c.Status == record.StatusIssued {
			n++
		}
	}
	return n
}

// revocationCount is the store's RevocationCount, for the pollers.
func (s *memStore) revocationCount(_ context.Context, ca string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.records {
		if r.CA == ca && r.Status == record.StatusRevoked {
			n++
		}
	}
	return n, nil
}

func (s *memStore) Revoked(_ context.Context, ca string, fn func(record.RevokedEntry) error) error {
	s.mu.Lock()
	var out []record.RevokedEntry
	for _, r := range s.records {
		if r.CA == ca && r.Status == record.StatusRevoked {
			out = append(out, record.RevokedEntry{Serial: r.Serial, RevokedAt: r.RevokedAt, Reason: r.RevocationReason, NotAfter: r.NotAfter})
		}
	}
	s.mu.Unlock()
	for _, e := range out {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// The CRL steps fail on a cancelled context, as a database's would: the
// service must resolve a reserved number with a context of its own.
func (s *memStore) ReserveCRL(ctx context.Context, c *record.CRL) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.crls {
		if have.CA == c.CA && have.Number >= c.Number {
			return record.ErrCRLNumberUsed
		}
	}
	cp := *c
	s.crls = append(s.crls, &cp)
	return nil
}

func (s *memStore) resolveCRL(ctx context.Context, ca string, number int64, status string, der []byte, ev record.AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.crls {
		if c.CA == ca && c.Number == number && c.Status == record.StatusPending {
			c.Status, c.DER = status, der
			s.audit = append(s.audit, ev)
			return nil
		}
	}
	return record.ErrNotPending
}

func (s *memStore) FinalizeCRL(ctx context.Context, ca string, number int64, der []byte, ev record.AuditEvent) error {
	s.mu.Lock()
	fail := s.failFinalCRL
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.resolveCRL(ctx, ca, number, record.StatusIssued, der, ev)
}

func (s *memStore) AbortCRL(ctx context.Context, ca string, number int64, ev record.AuditEvent) error {
	return s.resolveCRL(ctx, ca, number, record.StatusAborted, nil, ev)
}

func (s *memStore) LatestCRL(_ context.Context, ca string) (*record.CRL, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *record.CRL
	for _, c := range s.crls {
		if c.CA == ca && c.Status == record.StatusIssued && (best == nil || c.Number > best.Number) {
			best = c
		}
	}
	if best == nil {
		return nil, record.ErrNotFound
	}
	cp := *best
	return &cp, nil
}

func (s *memStore) LastCRLNumber(_ context.Context, ca string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, c := range s.crls {
		if c.CA == ca && c.Number > n {
			n = c.Number
		}
	}
	return n, nil
}

// ListCertificates makes memStore the service's CertificateLister too.
func (s *memStore) ListCertificates(_ context.Context, ca, profile, status string, fn func(*record.Certificate) error) error {
	s.mu.Lock()
	var out []*record.Certificate
	for _, r := range s.records {
		if (ca == "" || r.CA == ca) && (profile == "" || r.Profile == profile) && (status == "" || r.Status == status) {
			cp := *r
			out = append(out, &cp)
		}
	}
	s.mu.Unlock()
	for _, r := range out {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) only(t *testing.T) *record.Certificate {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
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

// countingSigner wraps the CA key: it counts signatures and can fail, sign
// with a different key, or run onSign first (as a daemon stopping while
// the token signs would).
type countingSigner struct {
	crypto.Signer
	calls    int
	err      error
	impostor crypto.Signer
	onSign   func()
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls++
	if s.onSign != nil {
		s.onSign()
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.impostor != nil {
		return s.impostor.Sign(r, digest, opts)
	}
	return s.Signer.Sign(r, digest, opts)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

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
	ca, err := NewCA(CAParams{Name: "issuing", Certificate: issuing, Parents: []*x509.Certificate{root}, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	return ca, s
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

// profileConfig is the test profile's config; tests override one thing.
func profileConfig(change ...func(*ProfileConfig)) ProfileConfig {
	c := ProfileConfig{
		ID: profileID, Name: "web", CA: "issuing",
		AllowedIdentities: []string{"uri:spiffe://test/*"},
		Managers:          []string{"uri:spiffe://admins/ops"},
		Defaults: DefaultsConfig{KeyUsages: []string{"digital_signature", "key_encipherment"},
			ExtendedKeyUsages: []string{"server_auth"}},
		Policy: policy.Rules{
			CommonName: &policy.NameRule{Allowed: []string{"*.example.internal"}},
			AltNames: map[string]*policy.NameRule{
				policy.SANDNS: {Allowed: []string{"*.example.internal"}, Denied: []string{"admin.example.internal"}},
				policy.SANIP:  {Allowed: []string{"10.0.0.0/8"}, Denied: []string{"10.0.0.66"}},
			},
			KeyUsages:           &policy.NameRule{Allowed: []string{"digital_signature", "key_encipherment"}},
			ExtendedKeyUsages:   &policy.NameRule{Allowed: []string{"server_auth", "client_auth"}},
			SignatureAlgorithms: []string{"*"},
			KeyAlgorithms:       []string{"*"},
			MaxValidity:         "90d",
		},
	}
	for _, f := range change {
		f(&c)
	}
	return c
}

func testProfile(t testing.TB, change ...func(*ProfileConfig)) *Profile {
	t.Helper()
	p, err := NewProfile(profileConfig(change...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func san(t testing.TB, typ, value string) policy.SAN {
	t.Helper()
	s, err := policy.ParseSAN(typ, value)
	if err != nil {
		t.Fatalf("ParseSAN(%s, %q): %v", typ, value, err)
	}
	return s
}

func cn(t testing.TB, value string) policy.CommonName {
	t.Helper()
	c, err := policy.ParseCommonName(value)
	if err != nil {
		t.Fatalf("ParseCommonName(%q): %v", value, err)
	}
	return c
}

func identity(t testing.TB, s string) policy.Identity {
	t.Helper()
	id, err := policy.ParseIdentity(s)
	if err != nil {
		t.Fatalf("ParseIdentity(%q): %v", s, err)
	}
	return id
}

// request builds a valid request; tests override one thing.
func request(t testing.TB, change ...func(*IssueRequest)) IssueRequest {
	r := IssueRequest{
		ProfileID: profileID, CommonName: cn(t, "a.example.internal"), TTL: 24 * time.Hour,
		AltNames:           []policy.SAN{san(t, policy.SANDNS, "a.example.internal")},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
	}
	for _, c := range change {
		c(&r)
	}
	return r
}

func metaFor(t testing.TB, id string) Meta {
	return Meta{RequestID: "req-00000000000000", Identity: identity(t, id)}
}

type harness struct {
	iss     *Issuer
	service *Service
	store   *memStore
	lint    *fakeLinter
	signer  *countingSigner
	ca      *CA
	prof    *Profile
	clock   *fakeClock
	meta    Meta
}

func newHarness(t testing.TB, rsaCA bool, change ...func(*ProfileConfig)) *harness {
	t.Helper()
	ca, signer := testCA(t, rsaCA)
	h := &harness{store: newMemStore(), lint: &fakeLinter{}, signer: signer, ca: ca, clock: &fakeClock{t: testNow}}
	h.meta = metaFor(t, "uri:spiffe://test/client")
	h.prof = testProfile(t, change...)
	auditKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	svc, err := NewService(ServiceConfig{Store: h.store, Lister: h.store, Clock: h.clock, AuditKey: auditKey})
	if err != nil {
		t.Fatal(err)
	}
	h.service = svc
	iss, err := New(Config{Profiles: []*Profile{h.prof}, CAs: []*CA{ca}, Service: svc, Linter: h.lint,
		Clock: h.clock, Limiter: NewRateLimiter(0, h.clock)})
	if err != nil {
		t.Fatal(err)
	}
	h.iss = iss
	return h
}
