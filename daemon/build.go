package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/acme"
	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/auth"
	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/linter"
	"github.com/pkid/pkid/metrics"
	"github.com/pkid/pkid/public"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/postgres"
	"github.com/pkid/pkid/store/sqlite"
)

// expiryWarning is how close to expiry a CA certificate draws a warning.
const expiryWarning = 30 * 24 * time.Hour

// resources live as long as the process: a reload cannot change them.
type resources struct {
	token     *hsm.Token
	store     store.Store
	service   *issuer.Service
	crls      *issuer.CRLPublisher
	ocsp      *issuer.OCSPResponder
	limiter   *issuer.RateLimiter
	admission *api.Admission
	logins    *auth.LoginLimiter // machine identities' login limits: a reload resets no bucket
	auditKey  crypto.PublicKey
	acme      *acme.Runtime // ACME rate limits and challenge validations in flight
}

// storeCloseTimeout bounds how long closing waits for the store's writer:
// a hung disk must not keep a stopping daemon alive.
const storeCloseTimeout = 10 * time.Second

// Close releases the store (committing what was submitted) and then the token.
func (r *resources) Close() error {
	var errs []error
	if r.acme != nil { // validations write to the store: stop them first
		ctx, cancel := context.WithTimeout(context.Background(), storeCloseTimeout)
		errs = append(errs, r.acme.Close(ctx))
		cancel()
	}
	if r.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeCloseTimeout)
		errs = append(errs, r.store.Close(ctx))
		cancel()
	}
	if r.token != nil {
		errs = append(errs, closeTokenWithin(r.token, tokenCloseTimeout))
	}
	return errors.Join(errs...)
}

// tokenCloseTimeout bounds closing the token: closing waits for every
// session lent out, and one stuck in a call to a hung HSM never comes
// back. The process then exits with the token open; its sessions end with
// it (C_Finalize is never called under a call in flight).
const tokenCloseTimeout = 5 * time.Second

func closeTokenWithin(tok interface{ Close() error }, within time.Duration) error {
	done, err := returnsWithin(within, tok.Close)
	if !done {
		return fmt.Errorf("the token did not close within %s: a call is still inside it; exiting leaves it to the process's end", within)
	}
	return err
}

// returnsWithin runs fn and waits at most within for it: done is false if
// fn is still running then (it goes on, and its result is dropped).
func returnsWithin(within time.Duration, fn func() error) (done bool, err error) {
	result := make(chan error, 1)
	go func() { result <- fn() }()
	select {
	case err := <-result:
		return true, err
	case <-time.After(within):
		return false, nil
	}
}

// openToken sets the module's environment, reads the PIN and opens the token.
func openToken(h HSMConfig, poolWait time.Duration, log *slog.Logger) (*hsm.Token, error) {
	for k, v := range h.Environment {
		if err := os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("hsm.environment.%s: %w", k, err)
		}
	}
	pin, err := h.ReadPIN()
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	return hsm.Open(hsm.Config{Module: h.Module, TokenLabel: h.TokenLabel, PIN: pin,
		MaxSessions: h.MaxSessions, PoolWaitTimeout: poolWait, Logger: log})
}

// openStore opens the configured database. onCommit and onAudit, if not
// nil, are the store's OnCommit and OnAudit.
func openStore(ctx context.Context, cfg *Config, onCommit func(time.Duration, int), onAudit func(int64)) (store.Store, error) {
	if cfg.postgres {
		password, err := cfg.readDatabasePassword()
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		db, err := postgres.Open(ctx, cfg.database, postgres.Options{Password: password, OnCommit: onCommit, OnAudit: onAudit,
			ApplicationName: applicationName(cfg.nodeName), MaxConns: cfg.dbMaxConns, WriteTimeout: cfg.limits.databaseBusyTimeout})
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		return db, nil
	}
	db, err := sqlite.Open(ctx, cfg.database, sqlite.Options{OnCommit: onCommit, OnAudit: onAudit, BusyTimeout: cfg.limits.databaseBusyTimeout})
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return db, nil
}

// applicationName names a node's PostgreSQL connections: "pkid/<node>",
// cut to the 63 bytes the server keeps (node names are ASCII), so that
// what pg_stat_activity shows is exactly this string.
func applicationName(node string) string {
	name := "pkid/" + node
	return name[:min(len(name), 63)]
}

// openResources opens the token and, with open, the database, checks the
// audit key's custody, and builds the state that outlives reloads.
func openResources(ctx context.Context, cfg *Config, m *metrics.Metrics, log *slog.Logger, open func() (store.Store, error)) (*resources, error) {
	r := &resources{acme: acme.NewRuntime()}
	var err error
	if r.token, err = openToken(cfg.hsm, cfg.poolWait, log); err != nil {
		return nil, err
	}
	if r.store, err = open(); err != nil {
		r.Close()
		return nil, err
	}
	if r.auditKey, err = readPublicKey(cfg.audit.PublicKey); err != nil {
		r.Close()
		return nil, fmt.Errorf("audit.publicKey: %w", err)
	}
	signer, err := r.token.CheckCustody(cfg.audit.KeyLabel, r.auditKey)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("audit key: %w", err)
	}
	r.service, err = issuer.NewService(issuer.ServiceConfig{Store: r.store, Lister: lister{r.store}, Observer: m,
		AuditKey: sessionCounter{Signer: signer, ca: "audit", m: m}, Node: cfg.nodeName,
		// The store's lead lock and OCSP answers serve one node as well as
		// several: answers survive a restart instead of being signed again.
		Cluster: r.store})
	if err != nil {
		r.Close()
		return nil, err
	}
	r.crls = issuer.NewCRLPublisher(r.service, cfg.crl, log)
	r.ocsp = issuer.NewOCSPResponder(r.service, cfg.ocsp, log)
	r.limiter = issuer.NewRateLimiter(0, nil)
	r.admission = api.NewAdmission(cfg.limits.maxConcurrent, cfg.limits.maxPerIdentity)
	if r.logins, err = auth.NewLoginLimiter(auth.LoginLimits{PerClientPerMinute: cfg.tokens.PerClientPerMinute,
		PerSourcePerMinute: cfg.tokens.PerSourcePerMinute, Burst: cfg.tokens.Burst}, nil); err != nil {
		r.Close()
		return nil, fmt.Errorf("accessTokens: %w", err)
	}
	return r, nil
}

// lister adapts the store's listing to the issuer's CertificateLister.
type lister struct{ st store.Store }

func (l lister) ListCertificates(ctx context.Context, ca, profile, status string, fn func(*record.Certificate) error) error {
	return l.st.ListCertificates(ctx, store.Filter{CA: ca, Profile: profile, Status: status}, fn)
}

// readPublicKey reads a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) file.
func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY block", path)
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// generation is everything built from one version of the config; a
// reload builds a new one and swaps it in whole.
type generation struct {
	cfg        *Config
	cas        []*issuer.CA
	issuer     *issuer.Issuer
	linter     *linter.Linter
	tls        *tls.Config
	tlsExpiry  time.Time
	handler    http.Handler // the API
	public     http.Handler // CRLs, CA certificates and OCSP
	ocspKeys   []issuer.OCSPKey
	probeLabel string // a CA key label the health probe reads
	tokenKeyID string // the access-token key's id (safe to log; the same on every node that shares the key)
	warnings   []string
}

// buildGeneration checks everything DESIGN.md §4 requires before serving —
// every CA certificate chains to its parent, every CA key is in the token
// with the required attributes and matches its certificate, every profile
// can issue a certificate that passes lint, the client CA bundle does not
// trust pkid's own issuing CAs — and reports all problems at once.
func buildGeneration(ctx context.Context, cfg *Config, res *resources, m *metrics.Metrics, log *slog.Logger) (*generation, error) {
	g := &generation{cfg: cfg, warnings: append([]string(nil), cfg.warnings...)}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	fail := func() (*generation, error) {
		return nil, &ConfigError{Path: cfg.path + " (checked against the token and files)", Problems: problems}
	}

	var clientCAs []*x509.Certificate
	var err error
	if g.tls, g.tlsExpiry, clientCAs, err = serverTLS(cfg.tls); err != nil {
		add("tls: %v", err)
	}
	certs := map[string]*x509.Certificate{}
	for _, ca := range cfg.cas {
		cert, err := readCACertificate(ca.Certificate)
		if err != nil {
			add("CA %s: %v", ca.Name, err)
			continue
		}
		certs[ca.Name] = cert
	}
	if len(problems) > 0 {
		return fail()
	}
	for _, cc := range cfg.cas {
		ca, err := buildCA(res.token, cc, cfg.cas, certs, m)
		if err != nil {
			add("CA %s: %v", cc.Name, err)
			continue
		}
		if ca.CanSign() && g.probeLabel == "" {
			g.probeLabel = cc.KeyLabel
		}
		if left := time.Until(ca.Certificate().NotAfter); left < expiryWarning {
			g.warnings = append(g.warnings, fmt.Sprintf("CA %s: certificate expires %s (in %s)",
				ca.Name(), ca.Certificate().NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour)))
		}
		if cc.OCSPKeyLabel != "" {
			key, err := res.token.CheckCustody(cc.OCSPKeyLabel, nil)
			if err != nil {
				add("CA %s: OCSP responder key: %v", cc.Name, err)
			} else {
				g.ocspKeys = append(g.ocspKeys, issuer.OCSPKey{CA: ca, Key: sessionCounter{Signer: key, ca: cc.Name, m: m}})
			}
		}
		if ca.CanSign() && !cfg.tls.AllowIssuedClientCertificates {
			if c := trustedIssuingCA(clientCAs, ca); c != nil {
				add("tls.clientCAs: the bundle trusts %q, which is (or is an ancestor of) pkid's issuing CA %s, so every certificate pkid issues would be a client identity; use a separate mTLS CA, or set tls.allowIssuedClientCertificates: true if that is meant",
					c.Subject.CommonName, ca.Name())
			}
		}
		g.cas = append(g.cas, ca)
	}
	if len(problems) > 0 {
		return fail()
	}

	extra := map[string][]string{}
	for _, p := range cfg.profiles {
		extra[p.Name()] = p.LintExclusions()
	}
	lint, err := linter.New(extra)
	if err != nil {
		add("%v", err)
		return fail()
	}
	g.linter = lint
	g.issuer, err = issuer.New(issuer.Config{Profiles: cfg.profiles, CAs: g.cas, Service: res.service, Linter: lint, Limiter: res.limiter})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add("%s", line)
		}
		return fail()
	}
	for _, p := range g.issuer.Profiles() {
		if err := g.issuer.CheckProfile(ctx, p); err != nil {
			add("%v", err)
		}
	}
	if len(problems) > 0 {
		return fail()
	}
	var machines api.MachineAuth
	if cfg.machines != nil {
		key, err := cfg.readTokenKey()
		if err == nil {
			var signer *auth.Signer
			if signer, err = auth.NewSigner(key, nil); err == nil {
				machines = machineAuth{auth.NewService(cfg.machines, signer, res.store, res.logins)}
				g.tokenKeyID = signer.KeyID()
			}
		}
		if err != nil {
			add("accessTokens: %v", err)
			return fail()
		}
	}
	for _, w := range g.warnings {
		log.Warn("configuration warning", "warning", w)
	}
	g.handler = api.NewHandler(api.Config{Issuer: g.issuer, Admission: res.admission, Logger: log, Metrics: m,
		MaxBodyBytes: cfg.limits.maxBodyBytes, BodyReadTimeout: cfg.limits.bodyReadTimeout,
		Machines: machines, Catalog: cfg.catalog})
	if g.handler, err = withACME(g.handler, cfg, g.issuer, res, m, log); err != nil {
		add("%v", err)
		return fail()
	}
	g.public = public.NewHandler(public.Config{CRLs: res.crls, OCSP: res.ocsp, CAs: g.cas, Logger: log, Metrics: m})
	return g, nil
}

// trustedIssuingCA returns the bundle certificate that makes ca's leaves
// client identities: ca itself, one of its parents, or a CA below it.
func trustedIssuingCA(bundle []*x509.Certificate, ca *issuer.CA) *x509.Certificate {
	lineage := ca.Lineage()
	for _, b := range bundle {
		for _, c := range lineage {
			if bytes.Equal(b.Raw, c.Raw) || (bytes.Equal(b.RawSubject, c.RawSubject) && bytes.Equal(b.SubjectKeyId, c.SubjectKeyId)) {
				return b
			}
		}
		if b.CheckSignatureFrom(ca.Certificate()) == nil {
			return b
		}
	}
	return nil
}

func (g *generation) profileNames() []string {
	names := make([]string, 0, len(g.cfg.profiles))
	for _, p := range g.cfg.profiles {
		names = append(names, p.Name())
	}
	return names
}

func (g *generation) caNames() []string {
	names := make([]string, len(g.cas))
	for k, ca := range g.cas {
		names[k] = ca.Name()
	}
	return names
}

// publishExpiries sets pkid_ca_not_after_timestamp_seconds for every CA
// (roots included) and for the API's own TLS certificate.
func (g *generation) publishExpiries(m *metrics.Metrics) {
	m.ResetNotAfter()
	for _, ca := range g.cas {
		m.SetNotAfter(ca.Name(), ca.Certificate().NotAfter)
	}
	m.SetNotAfter("tls-server", g.tlsExpiry)
}

// sessionCounter counts token sessions busy signing and the signatures the
// token failed to make, without the hsm package knowing about metrics.
// A refusal while the token is down (hsm.ErrUnavailable) reached no token.
type sessionCounter struct {
	crypto.Signer
	ca string
	m  *metrics.Metrics
}

func (s sessionCounter) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.m.SigningStarted()
	defer s.m.SigningDone()
	sig, err := s.Signer.Sign(r, digest, opts)
	if err != nil && !errors.Is(err, hsm.ErrUnavailable) {
		s.m.ObserveHSMError(s.ca)
	}
	return sig, err
}

func readCACertificate(path string) (*x509.Certificate, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cert, err := ceremony.ReadCertificate(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%s is not a CA certificate", path)
	}
	return cert, nil
}

// buildCA loads one CA: its chain up to the root and, when it has a key
// label, its signer after the custody check.
func buildCA(tok *hsm.Token, cc CAConfig, all []CAConfig, certs map[string]*x509.Certificate, m *metrics.Metrics) (*issuer.CA, error) {
	byName := map[string]CAConfig{}
	for _, a := range all {
		byName[a.Name] = a
	}
	p := issuer.CAParams{Name: cc.Name, Certificate: certs[cc.Name], CRLURLs: cc.CRLURLs,
		IssuingCertificateURLs: cc.IssuingCertificateURLs, OCSPURLs: cc.OCSPURLs}
	// Each link first, named as configured: a chain that does not link is
	// the problem to report, whatever the key in the token says.
	child := p.Certificate
	for at := cc; at.Parent != ""; at = byName[at.Parent] {
		parent := certs[at.Parent]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return nil, fmt.Errorf("certificate %q is not signed by parent %s: %w", child.Subject.CommonName, at.Parent, err)
		}
		p.Parents = append(p.Parents, parent)
		child = parent
	}
	for _, s := range cc.PolicyOIDs {
		oid, _ := parseOID(s) // validated by NewConfig
		p.PolicyOIDs = append(p.PolicyOIDs, oid)
	}
	if cc.KeyLabel != "" {
		signer, err := tok.CheckCustody(cc.KeyLabel, p.Certificate.PublicKey)
		if err != nil {
			return nil, err
		}
		p.Signer = sessionCounter{Signer: signer, ca: cc.Name, m: m}
	}
	return issuer.NewCA(p)
}

func parseOID(s string) (x509.OID, error) {
	var arcs []uint64
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return x509.OID{}, fmt.Errorf("%q is not a dotted OID", s)
		}
		arcs = append(arcs, n)
	}
	oid, err := x509.OIDFromInts(arcs)
	if err != nil {
		return x509.OID{}, fmt.Errorf("%q: %w", s, err)
	}
	return oid, nil
}

// serverTLS is TLS 1.2+ with AEAD suites only. A client certificate is
// verified when presented (a bad one fails the handshake); a missing one is
// answered by the API with a 401 envelope, which a handshake failure could
// not carry. It also returns the server certificate's expiry and the
// client CA bundle.
func serverTLS(t TLSConfig) (*tls.Config, time.Time, []*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
	if err != nil {
		return nil, time.Time{}, nil, fmt.Errorf("server certificate: %w", err)
	}
	var pool *x509.CertPool
	var bundle []*x509.Certificate
	if t.ClientCAs != "" {
		caPEM, err := os.ReadFile(t.ClientCAs)
		if err != nil {
			return nil, time.Time{}, nil, fmt.Errorf("client CA bundle: %w", err)
		}
		pool = x509.NewCertPool()
		for rest := caPEM; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, time.Time{}, nil, fmt.Errorf("client CA bundle %s: %w", t.ClientCAs, err)
			}
			pool.AddCert(c)
			bundle = append(bundle, c)
		}
		if len(bundle) == 0 {
			return nil, time.Time{}, nil, fmt.Errorf("client CA bundle %s holds no certificate", t.ClientCAs)
		}
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3 suites are all AEAD
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
	if pool == nil {
		cfg.ClientAuth = tls.NoClientCert
	}
	return cfg, pair.Leaf.NotAfter, bundle, nil
}
