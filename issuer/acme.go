package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// ACME challenge types a profile may offer (RFC 8555 §8.3, §8.4; RFC 8737).
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ChallengeTypes lists every challenge type, the default offer.
var ChallengeTypes = []string{ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01}

// ACMEConfig is a profile's ACME server as written in the config file
// (DESIGN §17).
type ACMEConfig struct {
	Enabled bool `yaml:"enabled"`
	// Challenges the server offers; default all of ChallengeTypes.
	Challenges []string `yaml:"challenges"`
	// ExternalAccountRequired: new accounts must carry an external
	// account binding made by `pkid acme eab add` (RFC 8555 §7.3.4).
	ExternalAccountRequired bool `yaml:"externalAccountRequired"`
	// Validity of the certificates when the order names no window; ms
	// grammar; default the policy's maxValidity.
	Validity string `yaml:"validity"`
}

// acmeSettings is ACMEConfig validated.
type acmeSettings struct {
	enabled     bool
	challenges  []string
	eabRequired bool
	validity    time.Duration
}

// parseACME validates a profile's ACME settings against its policy (nil
// when the policy itself is invalid).
func parseACME(cfg ACMEConfig, pol *policy.Policy, add func(string, ...any)) acmeSettings {
	s := acmeSettings{enabled: cfg.Enabled, eabRequired: cfg.ExternalAccountRequired, challenges: cfg.Challenges}
	if !cfg.Enabled {
		if len(cfg.Challenges) > 0 || cfg.ExternalAccountRequired || cfg.Validity != "" {
			add("acme: settings given but enabled is false; set enabled: true or remove them")
		}
		return acmeSettings{}
	}
	if len(s.challenges) == 0 {
		s.challenges = ChallengeTypes
	}
	seen := map[string]bool{}
	for _, c := range s.challenges {
		switch {
		case !policy.IsOneOf(ChallengeTypes, c):
			add("acme.challenges: unknown challenge type %q (want %s)", c, strings.Join(ChallengeTypes, ", "))
		case seen[c]:
			add("acme.challenges: %s is listed twice", c)
		}
		seen[c] = true
	}
	if pol == nil {
		return s
	}
	s.validity = pol.MaxValidity()
	if cfg.Validity != "" {
		d, err := policy.ParseDuration(cfg.Validity)
		switch {
		case err != nil:
			add("acme.validity: %v", err)
		case d > pol.MaxValidity():
			add("acme.validity: %s is more than the policy's maxValidity", cfg.Validity)
		default:
			s.validity = d
		}
	}
	// ACME identifiers are DNS names and IP addresses (RFC 8555 §9.7.7,
	// RFC 8738): a policy that allows neither can never issue by ACME.
	if !pol.AllowsSANType(policy.SANDNS) && !pol.AllowsSANType(policy.SANIP) {
		add("acme.enabled: the policy allows no dns_name or ip_address SAN, so no ACME order could ever be issued")
	}
	return s
}

// ACMEProfile describes a profile's ACME server to the ACME edge.
type ACMEProfile struct {
	ID, Name, Slug          string
	Challenges              []string
	ExternalAccountRequired bool
}

// ACMEProfile returns the profile with slug if it serves ACME.
func (i *Issuer) ACMEProfile(slug string) (ACMEProfile, bool) {
	for _, p := range i.ordered {
		if p.slug == slug && p.acme.enabled {
			return ACMEProfile{ID: p.id, Name: p.name, Slug: p.slug, Challenges: p.acme.challenges,
				ExternalAccountRequired: p.acme.eabRequired}, true
		}
	}
	return ACMEProfile{}, false
}

// ErrBadCSR marks (as the Cause of a KindBadRequest *Error) a refusal of
// the CSR itself, which ACME answers as badCSR (RFC 8555 §7.4).
var ErrBadCSR = errors.New("the CSR is unacceptable")

// ErrBadRevocationReason marks a revocation reason pkid does not accept.
var ErrBadRevocationReason = errors.New("unsupported revocation reason")

func badCSR(format string, a ...any) *Error {
	e := Errorf(KindBadRequest, format, a...)
	e.Cause = ErrBadCSR
	return e
}

// acmeProfile finds an ACME-enabled profile by id for an ACME account.
func (i *Issuer) acmeProfile(ctx context.Context, meta Meta, profileID string) (*Profile, error) {
	p := i.profiles[strings.ToLower(profileID)]
	if p == nil || !p.acme.enabled {
		return nil, i.refuse(ctx, meta, "unknown", Errorf(KindNotFound, "Certificate profile not found"))
	}
	if meta.Identity.Kind() != "acme" {
		e := Errorf(KindForbidden, "Only ACME accounts may use the ACME entry points")
		e.Details = map[string]string{"identity": meta.Identity.String(), "profile": p.name}
		return nil, i.refuse(ctx, meta, p.name, e)
	}
	return p, nil
}

// CheckACMEIdentifiers judges a new order's identifiers by the profile's
// policy (DESIGN §17): KindPolicy, every violation in one message. The
// whole policy is applied again at finalize.
func (i *Issuer) CheckACMEIdentifiers(ctx context.Context, meta Meta, profileID string, identifiers []policy.SAN) error {
	p, err := i.acmeProfile(ctx, meta, profileID)
	if err != nil {
		return err
	}
	if v := p.policy.EvaluateNames(identifiers); len(v) > 0 {
		return i.refuse(ctx, meta, p.name, &Error{Kind: KindPolicy,
			Message: "Certificate request validation failed: " + strings.Join(v, ", "),
			Details: map[string][]string{"violations": v}})
	}
	return nil
}

// ACMERequest is an ACME finalize: the order's CSR and identifiers.
type ACMERequest struct {
	ProfileID   string
	CSR         []byte       // DER, as the client sent it
	Identifiers []policy.SAN // the order's, canonical
	NotBefore   *time.Time   // the order's, when it named them
	NotAfter    *time.Time
}

// SignACME signs an ACME order's CSR. The profile must serve ACME, which
// admits its ACME accounts in place of allowedIdentities; everything
// else is Sign's: the rate limit (per account), the CSR checks, the whole
// policy, the lint, the pipeline, the record and the audit entry. The CSR
// must name exactly the order's identifiers (RFC 8555 §7.4), in its SANs
// or, for one of them, its CN.
func (i *Issuer) SignACME(ctx context.Context, meta Meta, req ACMERequest) (*Result, error) {
	p, err := i.acmeProfile(ctx, meta, req.ProfileID)
	if err != nil {
		return nil, err
	}
	if wait, ok := i.limiter.allow(p, meta.Identity.String()); !ok {
		e := Errorf(KindRateLimited, "Rate limit exceeded. Please try again in %d seconds", secondsCeil(wait))
		e.RetryAfter = wait
		return nil, e
	}
	in, c, err := i.csrInput(p, SignRequest{ProfileID: p.id, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR})),
		TTL: p.acme.validity, NotBefore: req.NotBefore, NotAfter: req.NotAfter})
	if err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	if in.altNames, err = sameNames(in, req.Identifiers); err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	return i.signCSR(ctx, meta, p, in, c, "", true)
}

// sameNames checks that the CSR names exactly the order's identifiers —
// each in a SAN, or the CN as the one SAN-less name — and returns the SANs
// the certificate gets: the identifiers, in the order's order.
func sameNames(in planInput, identifiers []policy.SAN) ([]policy.SAN, error) {
	want := map[policy.SAN]bool{}
	for _, s := range identifiers {
		want[s] = true
	}
	names := append([]policy.SAN(nil), in.altNames...)
	if !in.commonName.IsZero() {
		typ := policy.SANDNS
		if !in.commonName.IsHostName() {
			typ = policy.SANIP
		}
		cn, err := policy.ParseSAN(typ, in.commonName.String())
		if err != nil || !want[cn] {
			return nil, badCSR("Invalid CSR: its common name %q is not one of the order's identifiers", in.commonName.String())
		}
		names = append(names, cn)
	}
	names = policy.UniqueSANs(names)
	var extra []string
	for _, s := range names {
		if !want[s] {
			extra = append(extra, s.Value())
		}
	}
	if len(extra) > 0 || len(names) != len(want) {
		return nil, badCSR("Invalid CSR: it must name exactly the order's identifiers (%s); it names %s",
			sanList(identifiers), sanList(names))
	}
	return identifiers, nil
}

func sanList(sans []policy.SAN) string {
	out := make([]string, len(sans))
	for k, s := range sans {
		out[k] = s.Value()
	}
	return strings.Join(out, ", ")
}

// ACMERevokeRequest is an ACME revocation (RFC 8555 §7.6).
type ACMERevokeRequest struct {
	ProfileID   string
	Certificate []byte // DER, as the client sent it
	Reason      int    // RFC 5280 §5.3.1 code
	// KeyHolder is the public key that signed the request when it was
	// signed by a key rather than an account: it must be the
	// certificate's own key. Nil: meta's account must be the requester.
	KeyHolder crypto.PublicKey
}

// RevokeACME revokes a certificate of the profile for the ACME account
// that ordered it, or for whoever proves to hold its key; the same store
// transaction, audit entry and CRL and OCSP follow-up as Revoke.
func (i *Issuer) RevokeACME(ctx context.Context, meta Meta, req ACMERevokeRequest) (*record.Certificate, error) {
	p, err := i.acmeProfile(ctx, meta, req.ProfileID)
	if err != nil {
		return nil, err
	}
	reason := ""
	for name, code := range revocationReasons {
		if code == req.Reason {
			reason = name
		}
	}
	if reason == "" {
		e := Errorf(KindBadRequest, "Revocation reason %d is not supported (pkid accepts 0-5, 9 and 10; it does not suspend, CA/B Forum BR 4.9.13)", req.Reason)
		e.Cause = ErrBadRevocationReason
		return nil, e
	}
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		return nil, Errorf(KindBadRequest, "The certificate to revoke does not parse")
	}
	rec, err := i.find(ctx, hex.EncodeToString(cert.SerialNumber.Bytes()), false)
	if err != nil {
		return nil, err
	}
	// The record, not the client's copy, says what was issued: a forged
	// certificate that borrows a serial revokes nothing.
	if !bytes.Equal(rec.DER, req.Certificate) || rec.ProfileID != p.id {
		return nil, Errorf(KindNotFound, "Certificate not found")
	}
	allowed := isRequester(rec, meta.Identity)
	if req.KeyHolder != nil {
		allowed = samePublicKey(req.KeyHolder, cert.PublicKey)
	}
	if !allowed {
		e := Errorf(KindForbidden, "You are not allowed to revoke this certificate")
		e.Details = map[string]string{"identity": meta.Identity.String(), "certificateId": rec.ID}
		return nil, i.refuse(ctx, meta, p.name, e)
	}
	at := i.clock.Now().UTC().Truncate(time.Second)
	ev := record.AuditEvent{Time: at, Action: record.ActionRevoked, RequestID: meta.RequestID, Identity: meta.Identity.String(),
		Profile: rec.Profile, Outcome: record.StatusRevoked, Reason: reason, CertificateID: rec.ID, Serial: rec.Serial, CA: rec.CA}
	return i.service.revoke(ctx, rec, at, reason, ev)
}

// ACMEChain is what an ACME certificate download answers
// (application/pem-certificate-chain): the leaf, then its chain without
// the root.
func (c *Certificate) ACMEChain() (string, error) {
	if c.CA == nil {
		return "", fmt.Errorf("the CA of certificate %s is no longer configured", c.Record.ID)
	}
	out := pemString("CERTIFICATE", c.Record.DER) + "\n"
	if chain := c.CA.Chain(true); chain != "" { // "" when the issuing CA is a root
		out += chain + "\n"
	}
	return out, nil
}
