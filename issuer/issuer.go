package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pkid/pkid/goodkey"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// Config wires an Issuer for one configuration generation.
type Config struct {
	Profiles []*Profile
	CAs      []*CA
	Service  *Service     // required; outlives the generation
	Linter   Linter       // required
	Limiter  *RateLimiter // outlives the generation; nil: a private one
	Clock    Clock        // default SystemClock
	Rand     io.Reader    // default crypto/rand
}

// Issuer answers certificate requests for one configuration generation:
// it looks up the profile, authorizes the identity, applies the rate limit,
// evaluates the policy and the CA's constraints and hands what passed to
// the signing service.
type Issuer struct {
	profiles map[string]*Profile // by id
	ordered  []*Profile
	cas      map[string]*CA
	service  *Service
	linter   Linter
	limiter  *RateLimiter
	keys     *goodkey.Policy
	clock    Clock
	rand     io.Reader
}

// New binds every profile to its CA and prepares each CA's lint key.
func New(cfg Config) (*Issuer, error) {
	if cfg.Service == nil || cfg.Linter == nil {
		return nil, errors.New("issuer: a signing service and a linter are required")
	}
	i := &Issuer{profiles: map[string]*Profile{}, cas: map[string]*CA{}, service: cfg.Service,
		linter: cfg.Linter, limiter: cfg.Limiter, keys: keyPolicy(), clock: cfg.Clock, rand: cfg.Rand}
	if i.clock == nil {
		i.clock = SystemClock{}
	}
	if i.rand == nil {
		i.rand = rand.Reader
	}
	if i.limiter == nil {
		i.limiter = NewRateLimiter(0, i.clock)
	}
	for _, ca := range cfg.CAs {
		if _, dup := i.cas[ca.name]; dup {
			return nil, fmt.Errorf("issuer: CA %s is configured twice", ca.name)
		}
		i.cas[ca.name] = ca
	}
	var problems []error
	slugs := map[string]bool{}
	for _, p := range cfg.Profiles {
		ca := i.cas[p.caName]
		switch {
		case i.profiles[p.id] != nil:
			problems = append(problems, fmt.Errorf("profile %s: id %s is used twice", p.name, p.id))
		case slugs[p.slug]:
			problems = append(problems, fmt.Errorf("profile %s: slug %q is used twice", p.name, p.slug))
		case ca == nil:
			problems = append(problems, fmt.Errorf("profile %s: no CA named %q", p.name, p.caName))
		case !ca.CanSign():
			problems = append(problems, fmt.Errorf("profile %s: CA %q has no key in the token, so it cannot sign", p.name, p.caName))
		default:
			if _, err := i.service.prepareCA(ca); err != nil {
				problems = append(problems, fmt.Errorf("profile %s: %w", p.name, err))
				continue
			}
			i.profiles[p.id] = p
			i.ordered = append(i.ordered, p)
			slugs[p.slug] = true
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return i, nil
}

// Profiles lists the profiles in configuration order.
func (i *Issuer) Profiles() []*Profile { return i.ordered }

// ProfileName returns the configured name of a profile id, or "unknown".
// Metrics and logs use it so labels stay bounded.
func (i *Issuer) ProfileName(id string) string {
	if p, ok := i.profiles[strings.ToLower(id)]; ok {
		return p.name
	}
	return "unknown"
}

// Admits reports whether id may issue with, or manages, at least one
// profile. An identity that may do nothing is refused before its request
// body is read (DESIGN.md §2, §8).
func (i *Issuer) Admits(id policy.Identity) bool {
	for _, p := range i.ordered {
		if p.MayIssue(id) || p.Manages(id) {
			return true
		}
	}
	return false
}

// Admit returns nil when the caller may use some profile, else a
// KindForbidden error after auditing the refusal (within the cap).
func (i *Issuer) Admit(ctx context.Context, meta Meta) error {
	if i.Admits(meta.Identity) {
		return nil
	}
	e := Errorf(KindForbidden, "You are not allowed to use any certificate profile")
	e.Details = map[string]string{"identity": meta.Identity.String()}
	return i.refuse(ctx, meta, "unknown", e)
}

// Issue answers issue-certificate: a certificate for a key pkid generates.
func (i *Issuer) Issue(ctx context.Context, meta Meta, req IssueRequest) (*Result, error) {
	// 1. validate → authorize → policy → build the to-be-signed template.
	p, err := i.authorize(ctx, meta, req.ProfileID, "issue-cert")
	if err != nil {
		return nil, err
	}
	pl, err := i.plan(p, planInput{
		commonName: req.CommonName, altNames: req.AltNames, keyUsages: req.KeyUsages, extKeyUsages: req.ExtKeyUsages,
		ttl: req.TTL, notBefore: req.NotBefore, notAfter: req.NotAfter,
		signatureAlgorithm: req.SignatureAlgorithm, keyAlgorithm: req.KeyAlgorithm,
		ecLeaf: strings.HasPrefix(req.KeyAlgorithm, "EC_"),
	})
	if err != nil {
		return nil, i.refuse(ctx, meta, p.name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, unavailable("request cancelled", err)
	}
	leafKey, err := GenerateLeafKey(i.rand, req.KeyAlgorithm)
	if err != nil {
		return nil, internal(fmt.Errorf("generating leaf key: %w", err))
	}
	// Encoded now, so nothing can fail between finalizing and answering.
	keyDER, err := marshalKey(leafKey)
	if err != nil {
		return nil, internal(err)
	}
	rec, err := i.sign(ctx, meta, pl, leafKey.Public(), nil, lineage{requester: meta.Identity.String(), applicationID: req.ApplicationID})
	if err != nil {
		return nil, err
	}
	res := i.result(pl.ca, rec, req.RemoveRootsFromChain)
	res.PrivateKey = pemString("PRIVATE KEY", keyDER)
	return res, nil
}

// authorize finds the profile and checks that meta's identity may use it
// for action, then applies its rate limit (DESIGN.md §1's order of checks).
func (i *Issuer) authorize(ctx context.Context, meta Meta, profileID, action string) (*Profile, error) {
	p, ok := i.profiles[strings.ToLower(profileID)]
	if !ok {
		return nil, i.refuse(ctx, meta, "unknown", Errorf(KindNotFound, "Certificate profile not found"))
	}
	if !p.MayIssue(meta.Identity) {
		e := Errorf(KindForbidden, "You are not allowed to %s on certificate-profiles", action)
		e.Details = map[string]string{"identity": meta.Identity.String(), "profileId": p.id, "profile": p.name}
		return nil, i.refuse(ctx, meta, p.name, e)
	}
	if wait, ok := i.limiter.allow(p, meta.Identity.String()); !ok {
		e := Errorf(KindRateLimited, "Rate limit exceeded. Please try again in %d seconds", secondsCeil(wait))
		e.RetryAfter = wait
		return nil, e // counted, not audited: a flood must not grow the audit log
	}
	return p, nil
}

// lineage is what a new record carries besides its plan: whom the
// certificate belongs to, which one it renews and its Infisical application.
type lineage struct {
	// requester is the typed identity the record names as its owner. It is
	// the caller's for an issuance and the renewed record's for a renewal,
	// so a manager's renewal does not take the certificate from the service
	// that requested it (DESIGN.md §12: requester or managers). The audit
	// entry names the caller either way: who acted.
	requester     string
	renews        string // id of the renewed certificate; "" for an issuance
	applicationID string
}

// sign builds the template of pl for pub and has the signing service run
// the pipeline. csr is the client's CSR (nil when pkid made the key).
func (i *Issuer) sign(ctx context.Context, meta Meta, pl *plan, pub crypto.PublicKey, csr []byte, lin lineage) (*record.Certificate, error) {
	template, err := pl.template(pub)
	if err != nil {
		return nil, internal(err)
	}
	id, err := uuid.NewRandomFromReader(i.rand)
	if err != nil {
		return nil, internal(fmt.Errorf("generating certificate id: %w", err))
	}
	reqID, err := uuid.NewRandomFromReader(i.rand)
	if err != nil {
		return nil, internal(fmt.Errorf("generating certificate request id: %w", err))
	}
	alt := make([]record.AltName, len(pl.altNames))
	for k, s := range pl.altNames {
		alt[k] = record.AltName{Type: s.Type(), Value: s.Value()}
	}
	now := i.clock.Now().UTC()
	rec := record.Certificate{
		ID: id.String(), ProfileID: pl.profile.id, Profile: pl.profile.name, CA: pl.ca.name,
		IssuerHash: pl.ca.issuerHash, Identity: lin.requester, RequestID: meta.RequestID,
		CertificateRequestID: reqID.String(), CommonName: pl.commonName.String(), AltNames: alt,
		KeyUsages: pl.keyUsages, ExtKeyUsages: pl.extKeyUsages,
		SignatureAlgorithm: pl.sigAlg, KeyAlgorithm: pl.keyAlg,
		NotBefore: template.NotBefore, NotAfter: template.NotAfter,
		Renews: lin.renews, ApplicationID: lin.applicationID, CreatedAt: now, UpdatedAt: now,
	}
	if csr != nil {
		rec.CSR, rec.CSRHash = csr, sha256Hex(csr)
	}
	profileName := pl.profile.name
	return i.service.issueCertificate(ctx, &certificateOrder{
		ca: pl.ca, template: template, leafPub: pub, rec: rec,
		lint: func(ctx context.Context, der []byte) ([]string, error) {
			return i.linter.Lint(ctx, profileName, der)
		},
		event: record.AuditEvent{Time: now, RequestID: meta.RequestID, Identity: meta.Identity.String(), Profile: profileName},
	})
}

func (i *Issuer) result(ca *CA, rec *record.Certificate, removeRoots bool) *Result {
	return &Result{
		Certificate:          pemString("CERTIFICATE", rec.DER),
		IssuingCACertificate: pemString("CERTIFICATE", ca.cert.Raw),
		CertificateChain:     ca.Chain(removeRoots),
		SerialNumber:         rec.Serial,
		CertificateID:        rec.ID,
		CertificateRequestID: rec.CertificateRequestID,
		Profile:              rec.Profile,
	}
}

// refuse records a refusal in the audit log (within the per-identity cap)
// and returns it. Internal errors are not refusals.
func (i *Issuer) refuse(ctx context.Context, meta Meta, profile string, err error) error {
	e := AsError(err)
	if e.Kind == KindInternal || e.Kind == KindUnavailable {
		return e
	}
	ev := record.AuditEvent{
		Time: i.clock.Now().UTC(), Action: record.ActionRefused, RequestID: meta.RequestID,
		Identity: meta.Identity.String(), Profile: profile, Outcome: e.Kind.Outcome(), Reason: e.Message,
	}
	if serr := i.service.refuse(ctx, ev); serr != nil {
		return serr
	}
	return e
}

func secondsCeil(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func pemString(typ string, der []byte) string {
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}
