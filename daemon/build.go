package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/linter"
	"github.com/pkid/pkid/metrics"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/store"
)

// expiryWarning is how close to expiry a CA certificate draws a warning.
const expiryWarning = 30 * 24 * time.Hour

// resources live as long as the process: a reload cannot change them.
type resources struct {
	token *hsm.Token
	store *store.DB
}

// Close releases the store (committing what was submitted) and then the token.
func (r *resources) Close() error {
	var errs []error
	if r.store != nil {
		errs = append(errs, r.store.Close())
	}
	if r.token != nil {
		errs = append(errs, r.token.Close())
	}
	return errors.Join(errs...)
}

// openResources opens the token and the database named by cfg.
func openResources(ctx context.Context, cfg *ConfigFile, m *metrics.Metrics, log *slog.Logger) (*resources, error) {
	for k, v := range cfg.HSM.Environment {
		if err := os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("hsm.environment.%s: %w", k, err)
		}
	}
	pin, err := cfg.ReadPIN()
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	wait := 5 * time.Second
	if cfg.HSM.PoolWaitTimeout != "" {
		wait, _ = policy.ParseDuration(cfg.HSM.PoolWaitTimeout) // validated by LoadConfig
	}
	r := &resources{}
	r.token, err = hsm.Open(hsm.Config{Module: cfg.HSM.Module, TokenLabel: cfg.HSM.TokenLabel, PIN: pin,
		MaxSessions: cfg.HSM.MaxSessions, PoolWaitTimeout: wait, Logger: log})
	if err != nil {
		return nil, err
	}
	r.store, err = store.Open(ctx, cfg.Database, store.Options{OnCommit: m.ObserveCommit, BusyTimeout: cfg.limits().databaseBusyTimeout})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	return r, nil
}

// generation is everything built from one version of the config; a
// reload builds a new one and swaps it in whole.
type generation struct {
	cfg        *ConfigFile
	cas        []*issuer.CA
	issuer     *issuer.Issuer
	tls        *tls.Config
	tlsExpiry  time.Time
	handler    http.Handler
	probeLabel string // a CA key label the health probe reads
	warnings   []string
}

// buildGeneration checks everything DESIGN.md §4 requires before serving —
// every CA certificate chains to its parent, every CA key is in the token
// with the required attributes and matches its certificate, every profile
// can issue a certificate that passes lint — and reports all problems at once.
func buildGeneration(ctx context.Context, cfg *ConfigFile, res *resources, m *metrics.Metrics, log *slog.Logger) (*generation, error) {
	g := &generation{cfg: cfg}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	fail := func() (*generation, error) {
		return nil, &ConfigError{Path: "(checked against token and files)", Problems: problems}
	}

	var err error
	if g.tls, g.tlsExpiry, err = serverTLS(cfg.TLS); err != nil {
		add("tls: %v", err)
	}
	certs := map[string]*x509.Certificate{}
	for _, ca := range cfg.CAs {
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
	cas := map[string]*issuer.CA{}
	for _, cc := range cfg.CAs {
		ca, err := buildCA(res.token, cc, cfg.CAs, certs)
		if err != nil {
			add("CA %s: %v", cc.Name, err)
			continue
		}
		if ca.Signer != nil {
			ca.Signer = sessionCounter{Signer: ca.Signer, ca: ca.Name, m: m}
			if g.probeLabel == "" {
				g.probeLabel = cc.KeyLabel
			}
		}
		if left := time.Until(ca.Certificate.NotAfter); left < expiryWarning {
			g.warnings = append(g.warnings, fmt.Sprintf("CA %s: certificate expires %s (in %s)",
				ca.Name, ca.Certificate.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour)))
		}
		cas[cc.Name] = ca
		g.cas = append(g.cas, ca)
	}
	if len(problems) > 0 {
		return fail()
	}

	extra := map[string][]string{}
	var profiles []*issuer.Profile
	for _, pf := range cfg.Profiles {
		extra[pf.Name] = pf.LintExclusions
		profiles = append(profiles, buildProfile(pf, cas[pf.CA]))
	}
	lint, err := linter.New(extra)
	if err != nil {
		add("%v", err)
		return fail()
	}
	g.issuer, err = issuer.New(issuer.Config{Profiles: profiles, Store: res.store, Linter: lint, Observer: m})
	if err != nil {
		add("%v", err)
		return fail()
	}
	for _, p := range profiles {
		if err := g.issuer.CheckProfile(ctx, p); err != nil {
			add("%v", err)
		}
	}
	if len(problems) > 0 {
		return fail()
	}
	for _, w := range g.warnings {
		log.Warn("certificate expires soon", "warning", w)
	}
	lim := cfg.limits()
	g.handler = api.NewHandler(api.Config{Issuer: g.issuer, Logger: log, Metrics: m,
		MaxBodyBytes: lim.maxBodyBytes, MaxConcurrent: lim.maxConcurrent})
	return g, nil
}

func (g *generation) profileNames() []string {
	names := make([]string, len(g.cfg.Profiles))
	for k, p := range g.cfg.Profiles {
		names[k] = p.Name
	}
	return names
}

func (g *generation) caNames() []string {
	names := make([]string, len(g.cas))
	for k, ca := range g.cas {
		names[k] = ca.Name
	}
	return names
}

// publishExpiries sets pkid_ca_not_after_timestamp_seconds for every CA
// (roots included) and for the API's own TLS certificate.
func (g *generation) publishExpiries(m *metrics.Metrics) {
	m.ResetNotAfter()
	for _, ca := range g.cas {
		m.SetNotAfter(ca.Name, ca.Certificate.NotAfter)
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

// buildCA loads one CA: its chain up to the root (each link verified) and,
// when it has a key label, its signer after the custody check.
func buildCA(tok *hsm.Token, cc CAConfig, all []CAConfig, certs map[string]*x509.Certificate) (*issuer.CA, error) {
	byName := map[string]CAConfig{}
	for _, a := range all {
		byName[a.Name] = a
	}
	cert := certs[cc.Name]
	ca := &issuer.CA{Name: cc.Name, Certificate: cert, CRLURLs: cc.CRLURLs,
		IssuingCertificateURL: cc.IssuingCertificateURLs, OCSPURLs: cc.OCSPURLs}
	child := cert
	for at := cc; at.Parent != ""; at = byName[at.Parent] {
		parent := certs[at.Parent]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return nil, fmt.Errorf("certificate %q is not signed by parent %s: %w", child.Subject.CommonName, at.Parent, err)
		}
		ca.Parents = append(ca.Parents, parent)
		child = parent
	}
	if !bytes.Equal(child.RawIssuer, child.RawSubject) || child.CheckSignatureFrom(child) != nil {
		return nil, fmt.Errorf("the chain ends at %q, which is not a self-signed root; configure its parent", child.Subject.CommonName)
	}
	for _, s := range cc.PolicyOIDs {
		oid, err := parseOID(s)
		if err != nil {
			return nil, fmt.Errorf("policyOIDs: %w", err)
		}
		ca.PolicyOIDs = append(ca.PolicyOIDs, oid)
	}
	if cc.KeyLabel == "" {
		return ca, nil
	}
	signer, err := tok.CheckCustody(cc.KeyLabel, cert)
	if err != nil {
		return nil, err
	}
	ca.Signer = signer
	return ca, nil
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

func buildProfile(pf ProfileFile, ca *issuer.CA) *issuer.Profile {
	pol, _ := policy.New(pf.Policy) // validated by LoadConfig
	var backdate time.Duration
	if pf.Backdate != "" {
		backdate, _ = policy.ParseDuration(pf.Backdate)
	}
	return &issuer.Profile{
		ID: strings.ToLower(pf.ID), Name: pf.Name, CA: ca, Policy: pol,
		DefaultKeyUsages: pf.Defaults.KeyUsages, DefaultExtKeyUsages: pf.Defaults.ExtendedKeyUsages,
		AllowedIdentities: pf.AllowedIdentities, Backdate: backdate,
		RateLimit:      issuer.RateLimit{PerMinute: pf.RateLimit.PerMinute, Burst: pf.RateLimit.Burst},
		LintExclusions: pf.LintExclusions,
	}
}

// serverTLS is TLS 1.2+ with AEAD suites only. A client certificate is
// verified when presented (a bad one fails the handshake); a missing one is
// answered by the API with a 401 envelope, which a handshake failure could
// not carry. It also returns the server certificate's expiry.
func serverTLS(t TLSConfig) (*tls.Config, time.Time, error) {
	pair, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("server certificate: %w", err)
	}
	var pool *x509.CertPool
	if t.ClientCAs != "" {
		caPEM, err := os.ReadFile(t.ClientCAs)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("client CA bundle: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, time.Time{}, fmt.Errorf("client CA bundle %s holds no certificate", t.ClientCAs)
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
	return cfg, pair.Leaf.NotAfter, nil
}
