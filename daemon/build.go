package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/linter"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/store"
)

// Components are the running parts built from a config.
type Components struct {
	Config *ConfigFile
	Token  *hsm.Token
	Store  *store.DB
	Issuer *issuer.Issuer
	CAs    []*issuer.CA
	TLS    *tls.Config
}

// Close releases the store and then the token.
func (c *Components) Close() error {
	var errs []error
	if c.Store != nil {
		errs = append(errs, c.Store.Close())
	}
	if c.Token != nil {
		errs = append(errs, c.Token.Close())
	}
	return errors.Join(errs...)
}

// Build opens the token and the database and checks everything DESIGN.md
// §4 requires before serving: every CA certificate chains to its parent,
// every CA key is in the token with the required attributes and matches its
// certificate, and every profile can issue a certificate that passes lint.
// All problems are reported at once.
func Build(ctx context.Context, cfg *ConfigFile, log *slog.Logger) (*Components, error) {
	c := &Components{Config: cfg}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	fail := func() (*Components, error) {
		c.Close()
		return nil, &ConfigError{Path: "(checked against token and files)", Problems: problems}
	}

	tlsConf, err := serverTLS(cfg.TLS)
	if err != nil {
		add("tls: %v", err)
	}
	c.TLS = tlsConf

	certs := map[string]*x509.Certificate{}
	for _, ca := range cfg.CAs {
		pemBytes, err := os.ReadFile(ca.Certificate)
		if err != nil {
			add("CA %s: %v", ca.Name, err)
			continue
		}
		cert, err := ceremony.ReadCertificate(pemBytes)
		if err != nil {
			add("CA %s: %s: %v", ca.Name, ca.Certificate, err)
			continue
		}
		if !cert.IsCA || !cert.BasicConstraintsValid {
			add("CA %s: %s is not a CA certificate", ca.Name, ca.Certificate)
			continue
		}
		certs[ca.Name] = cert
	}
	if len(problems) > 0 {
		return fail()
	}

	for k, v := range cfg.HSM.Environment {
		if err := os.Setenv(k, v); err != nil {
			add("hsm.environment.%s: %v", k, err)
		}
	}
	pin, err := cfg.ReadPIN()
	if err != nil {
		add("hsm: %v", err)
		return fail()
	}
	wait := 5 * time.Second
	if cfg.HSM.PoolWaitTimeout != "" {
		wait, _ = policy.ParseDuration(cfg.HSM.PoolWaitTimeout)
	}
	c.Token, err = hsm.Open(hsm.Config{Module: cfg.HSM.Module, TokenLabel: cfg.HSM.TokenLabel, PIN: pin,
		MaxSessions: cfg.HSM.MaxSessions, PoolWaitTimeout: wait})
	if err != nil {
		add("%v", err)
		return fail()
	}

	cas := map[string]*issuer.CA{}
	for _, cc := range cfg.CAs {
		ca, err := buildCA(c.Token, cc, cfg.CAs, certs)
		if err != nil {
			add("CA %s: %v", cc.Name, err)
			continue
		}
		cas[cc.Name] = ca
		c.CAs = append(c.CAs, ca)
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
	c.Store, err = store.Open(ctx, cfg.Database)
	if err != nil {
		add("database: %v", err)
		return fail()
	}
	c.Issuer, err = issuer.New(issuer.Config{Profiles: profiles, Store: c.Store, Linter: lint})
	if err != nil {
		add("%v", err)
		return fail()
	}
	for _, p := range profiles {
		if err := c.Issuer.CheckProfile(ctx, p); err != nil {
			add("%v", err)
		}
	}
	for _, ca := range c.CAs {
		if left := time.Until(ca.Certificate.NotAfter); left < 30*24*time.Hour {
			log.Warn("CA certificate expires soon", "ca", ca.Name, "notAfter", ca.Certificate.NotAfter)
		}
	}
	if len(problems) > 0 {
		return fail()
	}
	return c, nil
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
// not carry.
func serverTLS(t TLSConfig) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	caPEM, err := os.ReadFile(t.ClientCAs)
	if err != nil {
		return nil, fmt.Errorf("client CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("client CA bundle %s holds no certificate", t.ClientCAs)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3 suites are all AEAD
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}, nil
}
