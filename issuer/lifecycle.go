package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/csr"
	"github.com/pkid/pkid/goodkey"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// SignRequest is a schema-valid request to sign a client's CSR (DESIGN.md §11).
type SignRequest struct {
	ProfileID            string
	CSR                  string // PEM, as sent
	TTL                  time.Duration
	NotBefore            *time.Time
	NotAfter             *time.Time
	SignatureAlgorithm   string // "": the profile's first allowed algorithm that fits the CA
	RemoveRootsFromChain bool
	ApplicationID        string
}

// Sign answers sign-certificate: the same profile lookup, authorization,
// rate limit, policy, lint, pipeline, record (which keeps the CSR) and
// audit entry as Issue, for a key the client holds.
func (i *Issuer) Sign(ctx context.Context, meta Meta, req SignRequest) (*Result, error) {
	p, err := i.authorize(ctx, meta, req.ProfileID, "sign-cert")
	if err != nil {
		return nil, err
	}
	in, c, err := i.csrInput(p, req)
	if err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	return i.signCSR(ctx, meta, p, in, c, req.ApplicationID, req.RemoveRootsFromChain)
}

// signCSR plans the certificate of a verified CSR (policy and CA checks)
// and has the pipeline sign it.
func (i *Issuer) signCSR(ctx context.Context, meta Meta, p *Profile, in planInput, c *csr.Request, applicationID string, removeRoots bool) (*Result, error) {
	pl, err := i.plan(p, in)
	if err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, unavailable("request cancelled", err)
	}
	rec, err := i.sign(ctx, meta, pl, c.PublicKey, c.DER, lineage{requester: meta.Identity.String(), applicationID: applicationID})
	if err != nil {
		return nil, err
	}
	return i.result(pl.ca, rec, removeRoots), nil
}

// csrInput verifies the CSR (its form, self-signature, key and requested
// extensions) and turns what may be taken from it into canonical values.
func (i *Issuer) csrInput(p *Profile, req SignRequest) (planInput, *csr.Request, error) {
	c, err := csr.Parse(req.CSR, i.keys)
	if err != nil {
		var ce *csr.Error
		if errors.As(err, &ce) {
			return planInput{}, nil, badCSR("Invalid CSR: %s", ce.Reason)
		}
		return planInput{}, nil, internal(err)
	}
	in := planInput{keyUsages: c.KeyUsages, extKeyUsages: c.ExtKeyUsages, ttl: req.TTL,
		notBefore: req.NotBefore, notAfter: req.NotAfter, keyAlgorithm: c.KeyAlgorithm}
	_, in.ecLeaf = c.PublicKey.(*ecdsa.PublicKey)
	if c.CommonName != "" {
		if in.commonName, err = policy.ParseCommonName(c.CommonName); err != nil {
			return planInput{}, nil, badCSR("Invalid CSR: its common name %q: %v", c.CommonName, err)
		}
	}
	for _, a := range c.AltNames {
		s, err := policy.ParseSAN(a.Type, a.Value)
		if err != nil {
			return planInput{}, nil, badCSR("Invalid CSR: its %s SAN %q: %v", a.Type, a.Value, err)
		}
		in.altNames = append(in.altNames, s)
	}
	in.signatureAlgorithm = req.SignatureAlgorithm
	if in.signatureAlgorithm == "" {
		if in.signatureAlgorithm = i.defaultSignatureAlgorithm(p); in.signatureAlgorithm == "" {
			return planInput{}, nil, Errorf(KindBadRequest, "The profile allows no signature algorithm that CA %s can sign with", p.caName)
		}
	}
	return in, c, nil
}

// defaultSignatureAlgorithm is the profile's first allowed signature
// algorithm that its CA's key can make, or "".
func (i *Issuer) defaultSignatureAlgorithm(p *Profile) string {
	family := signatureFamily(i.cas[p.caName].cert.PublicKey)
	for _, a := range p.policy.AllowedSignatureAlgorithms() {
		if strings.HasPrefix(a, family+"-") {
			return a
		}
	}
	return ""
}

// info describes p for the edge.
func (i *Issuer) info(p *Profile) ProfileInfo {
	keyAlg := ""
	for _, a := range p.policy.AllowedKeyAlgorithms() {
		if keyAlg == "" || a == "EC_prime256v1" {
			keyAlg = a
		}
	}
	return ProfileInfo{ID: p.id, Name: p.name, Slug: p.slug, CAName: p.caName, SignatureAlgorithm: i.defaultSignatureAlgorithm(p),
		KeyAlgorithm: keyAlg, MaxValidity: p.policy.MaxValidity()}
}

// ProfileInfo describes the profile with id.
func (i *Issuer) ProfileInfo(id string) (ProfileInfo, bool) {
	p, ok := i.profiles[strings.ToLower(id)]
	if !ok {
		return ProfileInfo{}, false
	}
	return i.info(p), true
}

// ProfileFor finds a profile by id or slug for meta, which must be allowed
// to use it or manage it: 404 for none, 403 for someone else's.
func (i *Issuer) ProfileFor(ctx context.Context, meta Meta, idOrSlug string) (ProfileInfo, error) {
	p := i.profiles[strings.ToLower(idOrSlug)]
	for _, q := range i.ordered {
		if p == nil && q.slug == idOrSlug {
			p = q
		}
	}
	if p == nil {
		return ProfileInfo{}, i.refuse(ctx, meta, "unknown", Errorf(KindNotFound, "Certificate profile not found"))
	}
	if !p.MayIssue(meta.Identity) && !p.Manages(meta.Identity) {
		e := Errorf(KindForbidden, "You are not allowed to read certificate-profiles")
		e.Details = map[string]string{"identity": meta.Identity.String(), "profileId": p.id, "profile": p.name}
		return ProfileInfo{}, i.refuse(ctx, meta, p.name, e)
	}
	return i.info(p), nil
}

// Status of a certificate as the API reports it (DESIGN.md §12).
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Certificate is a stored certificate as the look-up routes answer it.
type Certificate struct {
	Record *record.Certificate
	Status string // active, revoked or expired
	CA     *CA    // nil when the CA is no longer configured
}

// Lookup finds the certificate with serial (lowercase hex) or, when
// byID, with that certificate id; only its requester and the profile's
// managers may read it.
func (i *Issuer) Lookup(ctx context.Context, meta Meta, key string, byID bool) (*Certificate, error) {
	rec, err := i.find(ctx, key, byID)
	if err != nil {
		return nil, err
	}
	if err := i.mayManage(ctx, meta, rec, "read"); err != nil {
		return nil, err
	}
	return i.view(rec), nil
}

func (i *Issuer) view(rec *record.Certificate) *Certificate {
	c := &Certificate{Record: rec, Status: StatusActive, CA: i.cas[rec.CA]}
	switch {
	case rec.Status == record.StatusRevoked:
		c.Status = StatusRevoked
	case !i.clock.Now().Before(rec.NotAfter):
		c.Status = StatusExpired
	}
	return c
}

// ByRequestID finds the certificate a certificateRequestId was answered
// with; the same authorization as Lookup.
func (i *Issuer) ByRequestID(ctx context.Context, meta Meta, requestID string) (*Certificate, error) {
	rec, err := i.service.store.CertificateByRequestID(ctx, strings.ToLower(requestID))
	if err != nil {
		return nil, lookupError(err, "Certificate request not found")
	}
	if rec.Status != record.StatusIssued && rec.Status != record.StatusRevoked {
		return nil, Errorf(KindNotFound, "Certificate request not found")
	}
	if err := i.mayManage(ctx, meta, rec, "read"); err != nil {
		return nil, err
	}
	return i.view(rec), nil
}

func (i *Issuer) find(ctx context.Context, key string, byID bool) (*record.Certificate, error) {
	var rec *record.Certificate
	var err error
	if byID {
		rec, err = i.service.store.Certificate(ctx, strings.ToLower(key))
	} else {
		rec, err = i.service.store.CertificateBySerial(ctx, key)
	}
	if err != nil {
		return nil, lookupError(err, "Certificate not found")
	}
	// Pending and aborted rows are intents, not certificates.
	if rec.Status != record.StatusIssued && rec.Status != record.StatusRevoked {
		return nil, Errorf(KindNotFound, "Certificate not found")
	}
	return rec, nil
}

func lookupError(err error, notFound string) error {
	if errors.Is(err, record.ErrNotFound) {
		return Errorf(KindNotFound, "%s", notFound)
	}
	return storeUnavailable(err)
}

// mayManage allows the certificate's requester and its profile's managers.
func (i *Issuer) mayManage(ctx context.Context, meta Meta, rec *record.Certificate, action string) error {
	if isRequester(rec, meta.Identity) {
		return nil
	}
	if p := i.profiles[rec.ProfileID]; p != nil && p.Manages(meta.Identity) {
		return nil
	}
	return i.refuse(ctx, meta, rec.Profile, forbidden(meta, rec, action))
}

// isRequester reports whether id asked for rec. The record keeps the
// requester as it was canonicalized when it was made; canonicalizing it
// again by today's rules keeps an owner the owner of certificates recorded
// before a rule changed (a default port dropped, a host-like CN lower-cased).
func isRequester(rec *record.Certificate, id policy.Identity) bool {
	return rec.Identity == id.String() || requesterNow(rec) == id.String()
}

// requesterNow is rec's requester canonicalized by today's rules, or as
// stored when it no longer parses.
func requesterNow(rec *record.Certificate) string {
	if then, err := policy.ParseIdentity(rec.Identity); err == nil {
		return then.String()
	}
	return rec.Identity
}

// forbidden is the 403 for an action on rec that meta may not take.
func forbidden(meta Meta, rec *record.Certificate, action string) *Error {
	e := Errorf(KindForbidden, "You are not allowed to %s this certificate", action)
	e.Details = map[string]string{"identity": meta.Identity.String(), "certificateId": rec.ID}
	return e
}

// Renew issues a new certificate like the one with certificateID: the
// same profile, whose current policy is evaluated again, the same subject,
// SANs, usages and lifetime, a new key and serial; its record links to the
// one it renews (DESIGN.md §12). Only certificates whose key pkid made can
// be renewed: pkid never held the key of a CSR.
func (i *Issuer) Renew(ctx context.Context, meta Meta, certificateID string, removeRoots bool) (*Result, error) {
	old, err := i.find(ctx, certificateID, true)
	if err != nil {
		return nil, err
	}
	p := i.profiles[old.ProfileID]
	if p == nil {
		if err := i.mayManage(ctx, meta, old, "renew"); err != nil {
			return nil, err
		}
		return nil, i.refuse(ctx, meta, old.Profile, Errorf(KindBadRequest, "The certificate's profile is no longer configured"))
	}
	// A manager renews any certificate of the profile; its requester only
	// while the profile still lets it issue (DESIGN.md §2).
	if !p.Manages(meta.Identity) && (!isRequester(old, meta.Identity) || !p.MayIssue(meta.Identity)) {
		return nil, i.refuse(ctx, meta, p.name, forbidden(meta, old, "renew"))
	}
	switch {
	case len(old.CSR) > 0:
		return nil, i.refuse(ctx, meta, p.name, Errorf(KindBadRequest, "Certificate was signed from a CSR; renew it by signing a new CSR, since pkid never held its key"))
	case old.Status == record.StatusRevoked:
		return nil, i.refuse(ctx, meta, p.name, Errorf(KindBadRequest, "A revoked certificate cannot be renewed"))
	}
	if wait, ok := i.limiter.allow(p, meta.Identity.String()); !ok {
		e := Errorf(KindRateLimited, "Rate limit exceeded. Please try again in %d seconds", secondsCeil(wait))
		e.RetryAfter = wait
		return nil, e
	}
	in := planInput{keyUsages: old.KeyUsages, extKeyUsages: old.ExtKeyUsages, ttl: old.NotAfter.Sub(old.NotBefore),
		signatureAlgorithm: old.SignatureAlgorithm, keyAlgorithm: old.KeyAlgorithm, ecLeaf: strings.HasPrefix(old.KeyAlgorithm, "EC_")}
	if old.CommonName != "" {
		if in.commonName, err = policy.ParseCommonName(old.CommonName); err != nil {
			return nil, internal(fmt.Errorf("stored common name %q: %w", old.CommonName, err))
		}
	}
	for _, a := range old.AltNames {
		s, err := policy.ParseSAN(a.Type, a.Value)
		if err != nil {
			return nil, internal(fmt.Errorf("stored %s SAN %q: %w", a.Type, a.Value, err))
		}
		in.altNames = append(in.altNames, s)
	}
	pl, err := i.plan(p, in)
	if err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	leafKey, err := GenerateLeafKey(i.rand, old.KeyAlgorithm)
	if err != nil {
		return nil, internal(fmt.Errorf("generating leaf key: %w", err))
	}
	keyDER, err := marshalKey(leafKey)
	if err != nil {
		return nil, internal(err)
	}
	// The renewal stays the requester's; the audit entry names who renewed.
	rec, err := i.sign(ctx, meta, pl, leafKey.Public(), nil, lineage{requester: requesterNow(old), renews: old.ID, applicationID: old.ApplicationID})
	if err != nil {
		return nil, err
	}
	res := i.result(pl.ca, rec, removeRoots)
	res.PrivateKey = pemString("PRIVATE KEY", keyDER)
	return res, nil
}

// Revocation reasons in Infisical's names and their RFC 5280 §5.3.1 codes.
// certificateHold is refused: pkid does not suspend (CA/B BR 4.9.13).
var revocationReasons = map[string]int{
	"UNSPECIFIED": 0, "KEY_COMPROMISE": 1, "CA_COMPROMISE": 2, "AFFILIATION_CHANGED": 3, "SUPERSEDED": 4,
	"CESSATION_OF_OPERATION": 5, "PRIVILEGE_WITHDRAWN": 9, "A_A_COMPROMISE": 10,
}

// RevocationReasons lists the reasons the API accepts, CERTIFICATE_HOLD
// included (it is then refused with a reason).
var RevocationReasons = []string{"UNSPECIFIED", "KEY_COMPROMISE", "CA_COMPROMISE", "AFFILIATION_CHANGED", "SUPERSEDED",
	"CESSATION_OF_OPERATION", "CERTIFICATE_HOLD", "PRIVILEGE_WITHDRAWN", "A_A_COMPROMISE"}

// ReasonName is the Infisical name of an RFC 5280 reason code.
func ReasonName(code int) string {
	for name, c := range revocationReasons {
		if c == code {
			return name
		}
	}
	return fmt.Sprintf("reason %d", code)
}

// ReasonCode checks a revocation reason and returns its RFC 5280 code.
func ReasonCode(reason string) (int, error) {
	if reason == "CERTIFICATE_HOLD" {
		return 0, Errorf(KindBadRequest, "CERTIFICATE_HOLD is not supported: pkid does not suspend certificates (CA/B Forum BR 4.9.13); revoke with another reason")
	}
	code, ok := revocationReasons[reason]
	if !ok {
		return 0, Errorf(KindBadRequest, "Unknown revocation reason %q", reason)
	}
	return code, nil
}

// Revoke revokes the certificate with serial (or, when byID, with that
// id): a status change and an audit entry in one transaction. Only its
// requester and the profile's managers may.
func (i *Issuer) Revoke(ctx context.Context, meta Meta, key string, byID bool, reason string) (*record.Certificate, error) {
	if _, err := ReasonCode(reason); err != nil {
		return nil, err
	}
	rec, err := i.find(ctx, key, byID)
	if err != nil {
		return nil, err
	}
	if err := i.mayManage(ctx, meta, rec, "revoke"); err != nil {
		return nil, err
	}
	at := i.clock.Now().UTC().Truncate(time.Second)
	ev := record.AuditEvent{Time: at, Action: record.ActionRevoked, RequestID: meta.RequestID, Identity: meta.Identity.String(),
		Profile: rec.Profile, Outcome: record.StatusRevoked, Reason: reason, CertificateID: rec.ID, Serial: rec.Serial, CA: rec.CA}
	return i.service.revoke(ctx, rec, at, reason, ev)
}

// revoke records a revocation and tells the CRL publisher.
func (s *Service) revoke(ctx context.Context, rec *record.Certificate, at time.Time, reason string, ev record.AuditEvent) (*record.Certificate, error) {
	err := s.store.Revoke(context.WithoutCancel(ctx), rec.ID, at, reason, ev)
	switch {
	case errors.Is(err, record.ErrAlreadyRevoked):
		e := Errorf(KindBadRequest, "Certificate already revoked")
		e.Cause = record.ErrAlreadyRevoked // ACME answers alreadyRevoked (RFC 8555 §7.6)
		return nil, e
	case errors.Is(err, record.ErrNotRevocable), errors.Is(err, record.ErrNotFound):
		return nil, Errorf(KindNotFound, "Certificate not found")
	case err != nil:
		return nil, storeUnavailable(err)
	}
	s.observer.ObserveRevocation(rec.CA, reason)
	for _, hook := range s.onRevoke {
		hook(rec.CA, rec.Serial)
	}
	out := *rec
	out.Status, out.RevokedAt, out.RevocationReason = record.StatusRevoked, at, reason
	return &out, nil
}

// keyPolicy is the good-key policy for CSR keys (Boulder's goodkey).
func keyPolicy() *goodkey.Policy {
	p, err := goodkey.NewPolicy(goodkey.Options{})
	if err != nil {
		panic(err) // the defaults are valid
	}
	return p
}

func marshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding leaf key: %w", err)
	}
	return der, nil
}
