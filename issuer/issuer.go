package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// retryAfterUnavailable is the Retry-After given while the token or the
// store is unusable.
const retryAfterUnavailable = 5 * time.Second

// Config wires an Issuer. Profiles, Store and Linter are required.
type Config struct {
	Profiles []*Profile
	Store    Store
	Linter   Linter
	Observer Observer  // default NopObserver
	Clock    Clock     // default SystemClock
	Rand     io.Reader // default crypto/rand
}

// Issuer runs the issuance pipeline. It is safe for concurrent use.
type Issuer struct {
	profiles    map[string]*Profile
	lintIssuers map[*CA]*lintIssuer
	store       Store
	linter      Linter
	observer    Observer
	clock       Clock
	rand        io.Reader
	limiter     *limiter
}

// lintIssuer stands in for a CA when signing the lint copy: the same
// certificate fields (subject, key identifier) with a throw-away key of the
// same type, so the TBS it produces is byte-for-byte the one the real CA
// key will sign.
type lintIssuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// New validates the wiring and prepares one throw-away lint key per CA.
func New(cfg Config) (*Issuer, error) {
	if cfg.Store == nil || cfg.Linter == nil {
		return nil, errors.New("issuer: store and linter are required")
	}
	i := &Issuer{
		profiles:    make(map[string]*Profile, len(cfg.Profiles)),
		lintIssuers: map[*CA]*lintIssuer{},
		store:       cfg.Store,
		linter:      cfg.Linter,
		observer:    cfg.Observer,
		clock:       cfg.Clock,
		rand:        cfg.Rand,
	}
	if i.observer == nil {
		i.observer = NopObserver{}
	}
	if i.clock == nil {
		i.clock = SystemClock{}
	}
	if i.rand == nil {
		i.rand = rand.Reader
	}
	i.limiter = newLimiter(i.clock)
	for _, p := range cfg.Profiles {
		if _, dup := i.profiles[p.ID]; dup {
			return nil, fmt.Errorf("issuer: duplicate profile id %s", p.ID)
		}
		if p.CA == nil || p.CA.Signer == nil || p.Policy == nil {
			return nil, fmt.Errorf("issuer: profile %s needs a CA with a signing key and a policy", p.Name)
		}
		i.profiles[p.ID] = p
		if _, ok := i.lintIssuers[p.CA]; ok {
			continue
		}
		key, err := newThrowawayKey(p.CA.Certificate.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("issuer: lint key for CA %s: %w", p.CA.Name, err)
		}
		stand := *p.CA.Certificate
		stand.PublicKey = key.Public()
		i.lintIssuers[p.CA] = &lintIssuer{cert: &stand, key: key}
	}
	return i, nil
}

// ProfileName returns the configured name of a profile id, or "unknown".
// Metrics and logs use it so labels stay bounded.
func (i *Issuer) ProfileName(id string) string {
	if p, ok := i.profiles[id]; ok {
		return p.Name
	}
	return "unknown"
}

// Meta identifies the caller of one request.
type Meta struct {
	RequestID string
	Identity  string
}

// Issue runs the pipeline of DESIGN.md §5 for one request.
func (i *Issuer) Issue(ctx context.Context, meta Meta, req Request) (*Result, error) {
	// 1. validate → authorize → policy → build the to-be-signed template.
	p, ok := i.profiles[req.ProfileID]
	if !ok {
		return nil, i.refuse(ctx, meta, "unknown", Errorf(KindNotFound, "Certificate profile not found"))
	}
	if !policy.MatchAny(p.AllowedIdentities, meta.Identity) {
		e := Errorf(KindForbidden, "You are not allowed to issue-cert on certificate-profiles")
		e.Details = map[string]string{"identity": meta.Identity, "profileId": p.ID, "profile": p.Name}
		return nil, i.refuse(ctx, meta, p.Name, e)
	}
	if wait, ok := i.limiter.allow(p, meta.Identity); !ok {
		e := Errorf(KindRateLimited, "Rate limit exceeded. Please try again in %d seconds", secondsCeil(wait))
		e.RetryAfter = wait
		return nil, e // counted, not audited: a flood must not grow the audit log
	}
	plan, err := i.plan(p, req)
	if err != nil {
		return nil, i.refuse(ctx, meta, p.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, unavailable("request cancelled", err)
	}
	leafKey, err := GenerateLeafKey(i.rand, req.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("generating leaf key: %w", err)
	}
	// Encoded now, so nothing can fail between finalizing and answering.
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return nil, fmt.Errorf("encoding leaf key: %w", err)
	}
	template, err := plan.template(i.rand, leafKey.Public())
	if err != nil {
		return nil, err
	}

	// 2. reserve the serial (status pending), durably.
	rec, err := i.reserve(ctx, meta, p, plan, template)
	if err != nil {
		return nil, err
	}
	abort := func(reason string, der []byte, cause *Error) error {
		ev := i.event(meta, p, "refused", cause.Kind.Outcome(), reason)
		ev.CertificateID, ev.Serial = rec.ID, rec.Serial
		if err := i.store.Abort(context.WithoutCancel(ctx), rec.ID, der, ev); err != nil {
			return unavailable("the certificate store is unavailable", err)
		}
		return cause
	}

	// 3. pre-issuance lint of the exact TBS, signed by a throw-away key.
	li := i.lintIssuers[p.CA]
	lintDER, err := x509.CreateCertificate(i.rand, template, li.cert, leafKey.Public(), li.key)
	if err != nil {
		return nil, abort("building lint copy", nil, &Error{Kind: KindInternal, Message: "Something went wrong", Cause: err})
	}
	failed, err := i.linter.Lint(ctx, p.Name, lintDER)
	if err != nil {
		return nil, abort("lint error", nil, &Error{Kind: KindInternal, Message: "Something went wrong", Cause: err})
	}
	if len(failed) > 0 {
		for _, l := range failed {
			i.observer.ObserveLintFailure(l)
		}
		msg := "Certificate failed pre-issuance lint: " + strings.Join(failed, ", ")
		return nil, abort(msg, nil, &Error{Kind: KindPolicy, Message: msg, Details: map[string][]string{"lints": failed}})
	}
	lintCert, err := x509.ParseCertificate(lintDER)
	if err != nil {
		return nil, abort("parsing lint copy", nil, &Error{Kind: KindInternal, Message: "Something went wrong", Cause: err})
	}

	// 4. sign exactly the linted TBS with the token, then verify the
	// signature with the CA certificate and that the TBS is the linted one.
	start := i.clock.Now()
	der, signErr := signTBS(i.rand, p.CA.Signer, lintDER, lintCert)
	i.observer.ObserveSign(p.CA.Name, i.clock.Now().Sub(start), signErr)
	if signErr != nil {
		return nil, abort("signing failed", nil, unavailable("the signing key is unavailable", signErr))
	}
	if err := verifySigned(der, lintCert, p.CA.Certificate); err != nil {
		return nil, abort("verification failed: "+err.Error(), der, &Error{Kind: KindInternal, Message: "Something went wrong", Cause: err})
	}

	// 5. finalize the record and append the audit entry, one durable
	// transaction. The client may have gone; the record must not be lost.
	ev := i.event(meta, p, "issued", OutcomeIssued, "")
	ev.CertificateID, ev.Serial = rec.ID, rec.Serial
	if err := i.store.Finalize(context.WithoutCancel(ctx), rec.ID, der, ev); err != nil {
		return nil, unavailable("the certificate store is unavailable", err)
	}

	// 6. respond.
	return &Result{
		Certificate:          pemString("CERTIFICATE", der),
		IssuingCACertificate: pemString("CERTIFICATE", p.CA.Certificate.Raw),
		CertificateChain:     chainPEM(p.CA, req.RemoveRootsFromChain),
		PrivateKey:           pemString("PRIVATE KEY", keyDER),
		SerialNumber:         rec.Serial,
		CertificateID:        rec.ID,
	}, nil
}

// reserve picks a serial and records the intent, retrying on the
// (astronomically unlikely) duplicate serial.
func (i *Issuer) reserve(ctx context.Context, meta Meta, p *Profile, pl *plan, t *x509.Certificate) (*record.Record, error) {
	id, err := uuid.NewRandomFromReader(i.rand)
	if err != nil {
		return nil, fmt.Errorf("generating certificate id: %w", err)
	}
	alt := make([]record.AltName, len(pl.req.AltNames))
	for k, s := range pl.req.AltNames {
		alt[k] = record.AltName{Type: s.Type, Value: s.Value}
	}
	rec := &record.Record{
		ID:                 id.String(),
		Profile:            p.Name,
		CA:                 p.CA.Name,
		Identity:           meta.Identity,
		RequestID:          meta.RequestID,
		CommonName:         pl.req.CommonName,
		AltNames:           alt,
		KeyUsages:          pl.keyUsages,
		ExtKeyUsages:       pl.extKeyUsages,
		SignatureAlgorithm: pl.req.SignatureAlgorithm,
		KeyAlgorithm:       pl.req.KeyAlgorithm,
		NotBefore:          t.NotBefore,
		NotAfter:           t.NotAfter,
		Status:             record.StatusPending,
		CreatedAt:          i.clock.Now().UTC(),
	}
	for attempt := 0; ; attempt++ {
		rec.Serial = hex.EncodeToString(t.SerialNumber.Bytes())
		err := i.store.Reserve(ctx, rec)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, record.ErrDuplicateSerial) || attempt == 2 {
			return nil, unavailable("the certificate store is unavailable", err)
		}
		if t.SerialNumber, err = newSerial(i.rand); err != nil {
			return nil, err
		}
	}
}

func (i *Issuer) event(meta Meta, p *Profile, action, outcome, reason string) record.AuditEvent {
	return record.AuditEvent{
		Time: i.clock.Now().UTC(), Action: action, RequestID: meta.RequestID,
		Identity: meta.Identity, Profile: p.Name, Outcome: outcome, Reason: reason,
	}
}

// refuse records a refusal in the audit log and returns the refusal. If
// the refusal cannot be recorded the client gets 503, not a silent gap.
func (i *Issuer) refuse(ctx context.Context, meta Meta, profile string, err error) error {
	e := AsError(err)
	if e.Kind == KindInternal {
		return e
	}
	ev := record.AuditEvent{
		Time: i.clock.Now().UTC(), Action: "refused", RequestID: meta.RequestID,
		Identity: meta.Identity, Profile: profile, Outcome: e.Kind.Outcome(), Reason: e.Message,
	}
	if serr := i.store.Refuse(ctx, ev); serr != nil {
		return unavailable("the certificate store is unavailable", serr)
	}
	return e
}

func unavailable(msg string, cause error) *Error {
	return &Error{Kind: KindUnavailable, Message: msg, RetryAfter: retryAfterUnavailable, Cause: cause}
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

// chainPEM is the issuing CA, then its parents up to the root, joined by a
// newline; never the leaf. removeRoot drops a self-signed last element.
func chainPEM(ca *CA, removeRoot bool) string {
	chain := append([]*x509.Certificate{ca.Certificate}, ca.Parents...)
	if removeRoot {
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) {
			chain = chain[:len(chain)-1]
		}
	}
	parts := make([]string, len(chain))
	for k, c := range chain {
		parts[k] = pemString("CERTIFICATE", c.Raw)
	}
	return strings.Join(parts, "\n")
}

// subjectFor is CN=<commonName> or the empty name.
func subjectFor(cn string) pkix.Name {
	if cn == "" {
		return pkix.Name{}
	}
	return pkix.Name{CommonName: cn}
}
