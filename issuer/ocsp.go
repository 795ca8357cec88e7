package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/time/rate"

	"github.com/pkid/pkid/record"
)

// Defaults of OCSPConfig (DESIGN.md §14).
const (
	DefaultOCSPValidity      = 12 * time.Hour
	DefaultResponderValidity = 30 * 24 * time.Hour
)

// OCSPResponderProfile is the profile name of the responder certificates
// pkid issues itself; the linter keeps a registry under the same name.
const OCSPResponderProfile = "ocsp-responder"

// OCSP answer statuses, as logged and counted.
const (
	OCSPGood         = "good"
	OCSPRevoked      = "revoked"
	OCSPUnknown      = "unknown"
	OCSPUnauthorized = "unauthorized"
	OCSPMalformed    = "malformed"
	OCSPTryLater     = "try_later"
)

// OCSPStatuses lists every status, so counters can start at zero.
var OCSPStatuses = []string{OCSPGood, OCSPRevoked, OCSPUnknown, OCSPUnauthorized, OCSPMalformed, OCSPTryLater}

// OCSPConfig says how long answers and responder certificates live.
type OCSPConfig struct {
	Validity          time.Duration // nextUpdate = thisUpdate + Validity; default 12h
	ResponderValidity time.Duration // default 30d; renewed at one third left
	// Shared says other nodes write to the store (PostgreSQL): every
	// answer then reads its record, so that a revocation made on another
	// node is answered revoked by this one at once, not after the next
	// poll of the revocation counts (up to a second). Alone, only
	// `pkid revoke` from the shell writes behind this process's back.
	Shared bool
}

// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying parties need not
// check the responder certificate's revocation.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// unknownPerSecond bounds how many "unknown" answers a CA signs per second:
// they cannot be pre-signed (each names the serial asked for), so random
// serials must not turn into token signatures without limit. Past it the
// answer is the unsigned tryLater (RFC 6960 §2.3).
const unknownPerSecond = 50

// OCSPAnswer is a DER OCSP response and what the edge needs to serve it.
type OCSPAnswer struct {
	DER                    []byte
	Status                 string
	ThisUpdate, NextUpdate time.Time // zero for unsigned error answers
}

// responder is one CA's delegated OCSP responder: its key in the token and
// the certificate pkid issued for that key.
type responder struct {
	ca      *CA
	key     crypto.Signer
	cert    *x509.Certificate
	unknown *rate.Limiter
	// issuer hashes of the CA, by hash algorithm, as requests name it
	nameHash, keyHash map[crypto.Hash][]byte
}

type cacheKey struct {
	ca, serial string
	hash       crypto.Hash
}

// OCSPResponder answers OCSP requests for the CAs it has responders for
// (DESIGN.md §14): pre-signed answers from memory, refreshed at half-life
// and at once when a certificate is revoked. It outlives reloads.
type OCSPResponder struct {
	service *Service
	cfg     OCSPConfig
	log     *slog.Logger
	wake    chan struct{}
	retry   time.Duration // uncertifiedRetry, shorter in tests

	mu         sync.RWMutex
	responders map[string]*responder // by CA name
	lint       Linter
	cache      map[cacheKey]*OCSPAnswer
	stale      map[cacheKey]bool // revoked here since signed: re-sign at once
	// A cached answer is served without reading its record only while
	// verified[key] equals its CA's epoch, which moves on with every
	// revocation seen here or counted in the store (made by another node
	// or by pkid revoke): then each answer is checked against its record
	// once more, and re-signed only if the status changed.
	epoch    map[string]uint64
	verified map[cacheKey]uint64
	counts   map[string]int64 // CA → revocations the store had at the last poll
	fullDue  bool             // the next wake-up refreshes everything (new responders)
}

// revocationPoll is how often the store's revocation counts are read.
const revocationPoll = time.Second

// NewOCSPResponder returns a responder wired to s, so that every
// revocation s records refreshes that certificate's answer.
func NewOCSPResponder(s *Service, cfg OCSPConfig, log *slog.Logger) *OCSPResponder {
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultOCSPValidity
	}
	if cfg.ResponderValidity <= 0 {
		cfg.ResponderValidity = DefaultResponderValidity
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &OCSPResponder{service: s, cfg: cfg, log: log, wake: make(chan struct{}, 1), retry: uncertifiedRetry,
		responders: map[string]*responder{}, cache: map[cacheKey]*OCSPAnswer{}, stale: map[cacheKey]bool{},
		epoch: map[string]uint64{}, verified: map[cacheKey]uint64{}, counts: map[string]int64{}}
	s.onRevoke = append(s.onRevoke, o.revoked)
	return o
}

// OCSPKey is a CA's responder key in the token.
type OCSPKey struct {
	CA  *CA
	Key crypto.Signer
}

// SetResponders installs the responders of a configuration generation:
// for each CA with a responder key, a valid responder certificate — the
// newest stored one for that key if a third of its validity is left, else
// a new one issued through the signing service. lint lints responder
// certificates (registry OCSPResponderProfile).
func (o *OCSPResponder) SetResponders(ctx context.Context, keys []OCSPKey, lint Linter) error {
	o.mu.RLock()
	old := o.responders
	o.mu.RUnlock()
	next := map[string]*responder{}
	var errs []error
	for _, k := range keys {
		r := &responder{ca: k.CA, key: k.Key, unknown: rate.NewLimiter(unknownPerSecond, unknownPerSecond)}
		if prev := old[k.CA.name]; prev != nil && samePublicKey(prev.key.Public(), k.Key.Public()) &&
			bytes.Equal(prev.ca.cert.Raw, k.CA.cert.Raw) {
			r.cert, r.unknown = o.certOf(prev), prev.unknown
		}
		if err := r.hashes(); err != nil {
			errs = append(errs, fmt.Errorf("OCSP responder of %s: %w", k.CA.name, err))
			continue
		}
		next[k.CA.name] = r
	}
	o.mu.Lock()
	o.responders, o.lint = next, lint
	o.mu.Unlock()
	for _, r := range next {
		if c := o.certOf(r); c == nil || o.dueForRenewal(c) {
			if err := o.ensureCertificate(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("OCSP responder certificate of %s: %w", r.ca.name, err))
			}
		}
	}
	o.mu.Lock()
	o.fullDue = true
	o.mu.Unlock()
	o.kick()
	return errors.Join(errs...)
}

// hashes computes the CA's issuer name and key hashes for every hash a
// request may use (RFC 6960 §4.1.1 CertID).
func (r *responder) hashes() error {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(r.ca.cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return err
	}
	r.nameHash, r.keyHash = map[crypto.Hash][]byte{}, map[crypto.Hash][]byte{}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := h.New()
		d.Write(r.ca.cert.RawSubject)
		r.nameHash[h] = d.Sum(nil)
		d = h.New()
		d.Write(spki.PublicKey.RightAlign())
		r.keyHash[h] = d.Sum(nil)
	}
	return nil
}

func (o *OCSPResponder) dueForRenewal(c *x509.Certificate) bool {
	left := c.NotAfter.Sub(o.service.clock.Now())
	return left < c.NotAfter.Sub(c.NotBefore)/3
}

// ensureCertificate gives r a responder certificate: the newest stored one
// for its key that is not due for renewal, else a new one.
func (o *OCSPResponder) ensureCertificate(ctx context.Context, r *responder) error {
	var found *x509.Certificate
	if o.service.lister == nil {
		return errors.New("the signing service has no certificate lister")
	}
	err := o.service.lister.ListCertificates(ctx, r.ca.name, OCSPResponderProfile, record.StatusIssued, func(rec *record.Certificate) error {
		c, err := x509.ParseCertificate(rec.DER)
		if err != nil || !samePublicKey(c.PublicKey, r.key.Public()) || c.CheckSignatureFrom(r.ca.cert) != nil {
			return nil
		}
		if found == nil || c.NotAfter.After(found.NotAfter) {
			found = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	if found != nil && !o.dueForRenewal(found) {
		o.setCertificate(r, found)
		return nil
	}
	c, err := o.issueCertificate(ctx, r)
	if err != nil {
		return err
	}
	o.setCertificate(r, c)
	o.log.Info("issued OCSP responder certificate", "ca", r.ca.name, "serial", hex.EncodeToString(c.SerialNumber.Bytes()),
		"notAfter", c.NotAfter.Format(time.RFC3339))
	return nil
}

// certOf is r's responder certificate, nil until one is issued; renewals
// replace it under o.mu.
func (o *OCSPResponder) certOf(r *responder) *x509.Certificate {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return r.cert
}

func (o *OCSPResponder) setCertificate(r *responder, c *x509.Certificate) {
	o.mu.Lock()
	r.cert = c
	o.mu.Unlock()
	o.service.observer.ObserveOCSPResponder(r.ca.name, c.NotAfter)
}

// issueCertificate has the signing service issue a delegated responder
// certificate for r's key (RFC 6960 §4.2.2.2): EKU ocspSigning and
// id-pkix-ocsp-nocheck, linted, recorded and audited like any certificate.
func (o *OCSPResponder) issueCertificate(ctx context.Context, r *responder) (*x509.Certificate, error) {
	now := o.service.clock.Now().UTC().Truncate(time.Second)
	notAfter := now.Add(o.cfg.ResponderValidity)
	if notAfter.After(r.ca.cert.NotAfter) {
		notAfter = r.ca.cert.NotAfter
	}
	ski, err := subjectKeyID(r.key.Public())
	if err != nil {
		return nil, err
	}
	sigAlg := crlSignatureAlgorithm(r.ca)
	t := &x509.Certificate{
		Subject:               pkix.Name{CommonName: r.ca.cert.Subject.CommonName + " OCSP Responder"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		SignatureAlgorithm:    sigAlg,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
	id, err := uuid.NewRandomFromReader(o.service.rand)
	if err != nil {
		return nil, err
	}
	sigName := ""
	for name, a := range signatureAlgorithms {
		if a == sigAlg {
			sigName = name
		}
	}
	o.mu.RLock()
	lint := o.lint
	o.mu.RUnlock()
	rec, err := o.service.issueCertificate(ctx, &certificateOrder{ca: r.ca, template: t, leafPub: r.key.Public(),
		rec: record.Certificate{ID: id.String(), Profile: OCSPResponderProfile, CA: r.ca.name, IssuerHash: r.ca.issuerHash,
			Identity: "pkid", CommonName: t.Subject.CommonName, KeyUsages: []string{"digital_signature"},
			ExtKeyUsages: []string{"ocsp_signing"}, SignatureAlgorithm: sigName, KeyAlgorithm: KeyAlgorithmOf(r.key.Public()),
			NotBefore: t.NotBefore, NotAfter: t.NotAfter, CreatedAt: now, UpdatedAt: now},
		lint: func(ctx context.Context, der []byte) ([]string, error) {
			return lint.Lint(ctx, OCSPResponderProfile, der)
		},
		event: record.AuditEvent{Time: now, Identity: "pkid", Profile: OCSPResponderProfile},
	})
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(rec.DER)
}

func (o *OCSPResponder) revoked(ca, serial string) {
	o.mu.Lock()
	o.epoch[ca]++
	for k := range o.cache {
		if k.ca == ca && k.serial == serial {
			o.stale[k] = true
		}
	}
	o.mu.Unlock()
	o.kick()
}

func (o *OCSPResponder) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Respond answers one DER OCSP request (DESIGN.md §14): good, revoked (time
// and reason) or unknown, signed by the CA's responder; unauthorized for a
// CA pkid does not answer for; tryLater for one whose responder certificate
// could not be issued yet (the refresh loop retries); malformedRequest for
// what does not parse. A request nonce is ignored (RFC 5019 §2.2.1).
//
// What the answer says is read from the certificate's record on every
// request, so a revocation made anywhere — another node, `pkid revoke` —
// is never answered good from a cache; the signature is what is cached.
func (o *OCSPResponder) Respond(ctx context.Context, raw []byte) OCSPAnswer {
	req, err := ocsp.ParseRequest(raw)
	if err != nil || req.SerialNumber == nil || req.SerialNumber.Sign() < 0 {
		return o.unsigned(ocsp.MalformedRequestErrorResponse, OCSPMalformed, "")
	}
	r := o.responderFor(req)
	if r == nil {
		return o.unsigned(ocsp.UnauthorizedErrorResponse, OCSPUnauthorized, "")
	}
	if o.certOf(r) == nil { // pkid serves this CA; its responder certificate is still to be issued
		return o.unsigned(ocsp.TryLaterErrorResponse, OCSPTryLater, r.ca.name)
	}
	key := cacheKey{ca: r.ca.name, serial: hex.EncodeToString(req.SerialNumber.Bytes()), hash: req.HashAlgorithm}
	if req.SerialNumber.Sign() == 0 {
		key.serial = "0"
	}
	now := o.service.clock.Now()
	o.mu.RLock()
	cached, ep := o.cache[key], o.epoch[key.ca]
	checked := cached != nil && o.verified[key] == ep && !o.stale[key]
	o.mu.RUnlock()
	if checked && !o.cfg.Shared && now.Before(cached.ThisUpdate.Add(o.cfg.Validity/2)) {
		return o.served(r, cached) // nothing was revoked since its record was read
	}
	want, err := o.stateOf(ctx, r, key.serial, now)
	if err != nil {
		o.log.Error("reading the record an OCSP answer needs failed", "ca", r.ca.name, "serial", key.serial, "error", err)
		if cached != nil && now.Before(cached.ThisUpdate.Add(o.cfg.Validity/2)) {
			return o.served(r, cached) // the store is away: what was true less than half a validity ago
		}
		return o.unsigned(ocsp.TryLaterErrorResponse, OCSPTryLater, r.ca.name)
	}
	if o.fresh(cached, want, now) {
		o.mu.Lock()
		o.verified[key] = ep
		o.mu.Unlock()
		return o.served(r, cached)
	}
	if a := o.stored(ctx, r, key, want, now, ep); a != nil {
		return o.served(r, a)
	}
	a, err := o.sign(ctx, r, key, req.SerialNumber, want, ep)
	if err != nil {
		o.log.Error("signing an OCSP answer failed", "ca", r.ca.name, "serial", key.serial, "error", err)
		return o.unsigned(ocsp.TryLaterErrorResponse, OCSPTryLater, r.ca.name)
	}
	return o.served(r, a)
}

func (o *OCSPResponder) served(r *responder, a *OCSPAnswer) OCSPAnswer {
	o.service.observer.ObserveOCSP(r.ca.name, a.Status)
	return *a
}

// answerState is what a serial's answer must say now, from its record.
type answerState struct {
	status    string // OCSPGood, OCSPRevoked or OCSPUnknown
	revokedAt time.Time
	reason    int
}

func (o *OCSPResponder) stateOf(ctx context.Context, r *responder, serial string, now time.Time) (answerState, error) {
	rec, err := o.service.store.CertificateBySerial(ctx, serial)
	if errors.Is(err, record.ErrNotFound) {
		return answerState{status: OCSPUnknown}, nil
	}
	if err != nil {
		return answerState{}, fmt.Errorf("looking up serial %s: %w", serial, err)
	}
	return stateFromRecord(rec, r.ca.name, now), nil
}

func stateFromRecord(rec *record.Certificate, ca string, now time.Time) answerState {
	switch {
	case rec.CA != ca:
	case rec.Status == record.StatusRevoked:
		code, _ := ReasonCode(rec.RevocationReason)
		return answerState{status: OCSPRevoked, revokedAt: rec.RevokedAt.UTC(), reason: code}
	case rec.Status == record.StatusIssued && now.Before(rec.NotAfter):
		return answerState{status: OCSPGood}
	}
	return answerState{status: OCSPUnknown}
}

// fresh reports whether a says what want says and is not past half-life.
func (o *OCSPResponder) fresh(a *OCSPAnswer, want answerState, now time.Time) bool {
	return a != nil && a.Status == want.status && now.Before(a.ThisUpdate.Add(o.cfg.Validity/2))
}

// stored returns the answer another node made for key, if the store holds
// a fresh one that says what want says (only with a Cluster: nodes share
// the SHA-1 answers RFC 5019 clients ask for).
func (o *OCSPResponder) stored(ctx context.Context, r *responder, key cacheKey, want answerState, now time.Time, ep uint64) *OCSPAnswer {
	c := o.service.cluster
	if c == nil || want.status == OCSPUnknown || key.hash != crypto.SHA1 {
		return nil
	}
	rs, err := c.OCSPResponse(ctx, r.ca.name, key.serial)
	if err != nil {
		if !errors.Is(err, record.ErrNotFound) {
			o.log.Warn("reading a stored OCSP answer failed", "ca", r.ca.name, "serial", key.serial, "error", err)
		}
		return nil
	}
	a := &OCSPAnswer{DER: rs.DER, Status: rs.Status, ThisUpdate: rs.ThisUpdate, NextUpdate: rs.NextUpdate}
	if !o.fresh(a, want, now) {
		return nil
	}
	o.mu.Lock()
	o.cache[key], o.verified[key] = a, ep
	o.mu.Unlock()
	return a
}

// errNotLeader: another node is making this CA's OCSP answers right now.
var errNotLeader = errors.New("another node is making this CA's OCSP answers")

// leadWait bounds how long an on-demand answer waits for the OCSP lead
// (held at most for one pre-signing batch) before answering tryLater.
const leadWait = 250 * time.Millisecond

// leadSoon takes the CA's OCSP lead, waiting up to leadWait for a holder
// to release it.
func (o *OCSPResponder) leadSoon(ctx context.Context, c Cluster, ca string) (func(), error) {
	deadline := time.NewTimer(leadWait)
	defer deadline.Stop()
	retry := time.NewTicker(leadWait / 10)
	defer retry.Stop()
	for {
		release, ok, err := c.Lead(ctx, "ocsp:"+ca)
		if err != nil {
			return nil, fmt.Errorf("taking the OCSP lead: %w", err)
		}
		if ok {
			return release, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, errNotLeader
		case <-retry.C:
		}
	}
}

// sign makes the answer want says for serial. With a Cluster, a good or
// revoked answer is made only under the CA's lead and stored for every
// node; unknown answers name the serial asked for, are never stored, and
// are rate-limited instead (random serials must not become signatures
// without bound).
func (o *OCSPResponder) sign(ctx context.Context, r *responder, key cacheKey, serial *big.Int, want answerState, ep uint64) (*OCSPAnswer, error) {
	if want.status == OCSPUnknown {
		if !r.unknown.Allow() {
			return nil, errors.New("too many unknown serials asked for; answering tryLater")
		}
		return o.signAnswer(r, key, serial, want, ep)
	}
	c := o.service.cluster
	if c == nil {
		return o.signAnswer(r, key, serial, want, ep)
	}
	release, err := o.leadSoon(ctx, c, r.ca.name)
	if err != nil {
		return nil, err
	}
	defer release()
	a, err := o.signAnswer(r, key, serial, want, ep)
	if err != nil {
		return nil, err
	}
	if key.hash == crypto.SHA1 {
		if err := c.PutOCSPResponses(ctx, []record.OCSPResponse{storedForm(key, a)}); err != nil {
			o.log.Warn("storing an OCSP answer failed; the other nodes will make their own", "ca", r.ca.name, "serial", key.serial, "error", err)
		}
	}
	return a, nil
}

func storedForm(key cacheKey, a *OCSPAnswer) record.OCSPResponse {
	return record.OCSPResponse{CA: key.ca, Serial: key.serial, Status: a.Status, ThisUpdate: a.ThisUpdate, NextUpdate: a.NextUpdate, DER: a.DER}
}

// signAnswer has r's key sign the answer and caches it (unknown answers
// are not cached: they would let random serials fill the cache).
func (o *OCSPResponder) signAnswer(r *responder, key cacheKey, serial *big.Int, want answerState, ep uint64) (*OCSPAnswer, error) {
	cert := o.certOf(r)
	if cert == nil {
		return nil, errors.New("the responder certificate is not issued yet")
	}
	now := o.service.clock.Now().UTC().Truncate(time.Second)
	tpl := ocsp.Response{Status: ocsp.Unknown, SerialNumber: serial, ThisUpdate: now, NextUpdate: now.Add(o.cfg.Validity),
		IssuerHash: key.hash, Certificate: cert}
	switch want.status {
	case OCSPGood:
		tpl.Status = ocsp.Good
	case OCSPRevoked:
		tpl.Status, tpl.RevokedAt, tpl.RevocationReason = ocsp.Revoked, want.revokedAt, want.reason
	}
	der, err := o.service.signOCSP(r, cert, tpl)
	if err != nil {
		return nil, err
	}
	a := &OCSPAnswer{DER: der, Status: want.status, ThisUpdate: tpl.ThisUpdate, NextUpdate: tpl.NextUpdate}
	o.mu.Lock()
	delete(o.stale, key)
	if want.status != OCSPUnknown {
		o.cache[key], o.verified[key] = a, ep
	} else {
		delete(o.cache, key)
		delete(o.verified, key)
	}
	o.mu.Unlock()
	return a, nil
}

func (o *OCSPResponder) unsigned(der []byte, status, ca string) OCSPAnswer {
	o.service.observer.ObserveOCSP(ca, status)
	return OCSPAnswer{DER: der, Status: status}
}

// responderFor finds the responder of the CA the request's CertID names,
// one with a responder certificate first (two CA certificates with one
// subject and key, a CA re-issued on its key, share a CertID).
func (o *OCSPResponder) responderFor(req *ocsp.Request) *responder {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var found *responder
	for _, r := range o.responders {
		if bytes.Equal(r.nameHash[req.HashAlgorithm], req.IssuerNameHash) &&
			bytes.Equal(r.keyHash[req.HashAlgorithm], req.IssuerKeyHash) {
			if r.cert != nil {
				return r
			}
			found = r
		}
	}
	return found
}

// signOCSP has a responder key in the token sign an OCSP answer and checks
// it the way a relying party will: the responder certificate chains to the
// CA and the signature verifies with it.
func (s *Service) signOCSP(r *responder, cert *x509.Certificate, tpl ocsp.Response) ([]byte, error) {
	start := s.clock.Now()
	der, err := ocsp.CreateResponse(r.ca.cert, cert, tpl, r.key)
	s.observer.ObserveSign(r.ca.name, s.clock.Now().Sub(start), err)
	if err != nil {
		return nil, fmt.Errorf("signing the OCSP answer: %w", err)
	}
	if _, err := ocsp.ParseResponse(der, r.ca.cert); err != nil {
		return nil, fmt.Errorf("the signed OCSP answer does not verify: %w", err)
	}
	return der, nil
}

// dueAnswer is a pre-signing job: a serial and what its answer must say.
type dueAnswer struct {
	key    cacheKey
	serial *big.Int
	want   answerState
	ep     uint64 // the CA's epoch before its record was read
}

// presignBatch is how many answers one hold of the OCSP lead signs: the
// other nodes' on-demand answers wait at most one batch.
const presignBatch = 100

// dueAnswers lists the certificates of r's CA whose SHA-1 answer (what
// RFC 5019 clients ask for) is missing, stale or past half-life — here or,
// with a Cluster, in the store: every unexpired issued or revoked
// certificate but the responder certificates.
func (o *OCSPResponder) dueAnswers(ctx context.Context, r *responder, now time.Time) ([]dueAnswer, error) {
	if o.service.lister == nil {
		return nil, errors.New("the signing service has no certificate lister")
	}
	var due []dueAnswer
	o.mu.RLock()
	ep := o.epoch[r.ca.name]
	o.mu.RUnlock()
	for _, status := range []string{record.StatusIssued, record.StatusRevoked} {
		err := o.service.lister.ListCertificates(ctx, r.ca.name, "", status, func(rec *record.Certificate) error {
			if rec.Profile == OCSPResponderProfile || !now.Before(rec.NotAfter) {
				return nil
			}
			k := cacheKey{ca: r.ca.name, serial: rec.Serial, hash: crypto.SHA1}
			want := stateFromRecord(rec, r.ca.name, now)
			o.mu.RLock()
			a, stale := o.cache[k], o.stale[k]
			o.mu.RUnlock()
			if stale || !o.fresh(a, want, now) {
				if n, ok := new(big.Int).SetString(rec.Serial, 16); ok {
					due = append(due, dueAnswer{key: k, serial: n, want: want, ep: ep})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if o.service.cluster == nil {
		return due, nil
	}
	kept := due[:0]
	for _, d := range due { // another node may have made them already
		if o.stored(ctx, r, d.key, d.want, now, d.ep) == nil {
			kept = append(kept, d)
		}
	}
	return kept, nil
}

// presign signs due answers in batches and returns how many it signed;
// with a Cluster, each batch under the CA's OCSP lead and stored for every
// node. A node that cannot take the lead leaves the work to the node that
// has it.
func (o *OCSPResponder) presign(ctx context.Context, r *responder, due []dueAnswer) (signed int) {
	c := o.service.cluster
	for start := 0; start < len(due) && ctx.Err() == nil; start += presignBatch {
		release := func() {}
		if c != nil {
			rel, ok, err := c.Lead(ctx, "ocsp:"+r.ca.name)
			if err != nil {
				o.log.Warn("taking the OCSP lead failed", "ca", r.ca.name, "error", err)
			}
			if err != nil || !ok {
				return signed
			}
			release = rel
		}
		var put []record.OCSPResponse
		for _, d := range due[start:min(start+presignBatch, len(due))] {
			a, err := o.signAnswer(r, d.key, d.serial, d.want, d.ep)
			if err != nil {
				o.log.Error("pre-signing an OCSP answer failed", "ca", r.ca.name, "serial", d.key.serial, "error", err)
				continue
			}
			put = append(put, storedForm(d.key, a))
			signed++
		}
		if c != nil && len(put) > 0 {
			if err := c.PutOCSPResponses(ctx, put); err != nil {
				o.log.Warn("storing pre-signed OCSP answers failed", "ca", r.ca.name, "count", len(put), "error", err)
			}
		}
		release()
	}
	return signed
}

// Run pre-signs and refreshes answers until ctx ends: every issued or
// revoked certificate of every CA gets an answer, each is re-signed once
// half its validity has passed (and at once after a revocation here), each
// responder certificate is renewed when a third of its validity is left,
// and counter (the store's revocation counts) is polled every second so
// that revocations made elsewhere send cached answers back to their records.
func (o *OCSPResponder) Run(ctx context.Context, counter RevocationCounter) {
	refreshEvery := max(o.cfg.Validity/48, time.Second)
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	poll := time.NewTicker(revocationPoll)
	defer poll.Stop()
	o.takeFullDue() // the first pass covers responders set before Run
	o.refreshLogged(ctx, true)
	backoff := o.retry
	var retry <-chan time.Time
	for {
		if retry == nil { // armed once, not again at every poll
			retry = o.retryUncertified(backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			o.refreshLogged(ctx, false)
		case <-retry:
			if o.certifyMissing(ctx) {
				o.refreshLogged(ctx, false) // its answers, now that it can sign them
				backoff = o.retry
			} else {
				backoff = min(2*backoff, refreshEvery)
			}
			retry = nil
		case <-poll.C:
			o.pollRevocations(ctx, counter)
		case <-o.wake:
			if o.takeFullDue() {
				o.refreshLogged(ctx, true)
			} else {
				o.refreshStale(ctx)
			}
		}
	}
}

// uncertifiedRetry is how soon the responder certificate of a CA that has
// none (its requests get tryLater meanwhile) is tried again, rather than at
// the next tick, a 48th of the answers' validity away; each failure doubles
// the wait, up to that tick.
const uncertifiedRetry = 10 * time.Second

// uncertified lists the responders that have no certificate yet.
func (o *OCSPResponder) uncertified() []*responder {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var missing []*responder
	for _, r := range o.responders {
		if r.cert == nil {
			missing = append(missing, r)
		}
	}
	return missing
}

// retryUncertified fires after wait while a responder has no certificate;
// nil (never) otherwise.
func (o *OCSPResponder) retryUncertified(wait time.Duration) <-chan time.Time {
	if len(o.uncertified()) == 0 {
		return nil
	}
	return time.After(wait)
}

// certifyMissing tries to issue the responder certificates that are
// missing, and reports whether any now exists.
func (o *OCSPResponder) certifyMissing(ctx context.Context) bool {
	issued := false
	for _, r := range o.uncertified() {
		if err := o.ensureCertificate(ctx, r); err != nil {
			o.log.Error("issuing the OCSP responder certificate failed; its CA's requests get tryLater", "ca", r.ca.name, "error", err)
			continue
		}
		issued = true
	}
	return issued
}

// takeFullDue reports whether new responders wait for a full pass, and
// clears the flag.
func (o *OCSPResponder) takeFullDue() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	full := o.fullDue
	o.fullDue = false
	return full
}

// refreshLogged runs one refresh pass and logs what it signed: always after
// a pass over new responders (start-up and reload: the operator sees when
// every answer is ready), after a periodic pass only if it signed anything.
func (o *OCSPResponder) refreshLogged(ctx context.Context, full bool) {
	start := time.Now()
	signed := o.refresh(ctx)
	if ctx.Err() != nil || (!full && signed == 0) {
		return
	}
	o.mu.RLock()
	cas := len(o.responders)
	o.mu.RUnlock()
	o.log.Info("OCSP answers pre-signed", "cas", cas, "signed", signed, "took", time.Since(start).Round(time.Millisecond).String())
}

// pollRevocations moves a CA's epoch on when its revocation count changed.
func (o *OCSPResponder) pollRevocations(ctx context.Context, counter RevocationCounter) {
	if counter == nil {
		return
	}
	o.mu.RLock()
	cas := make([]string, 0, len(o.responders))
	for name := range o.responders {
		cas = append(cas, name)
	}
	o.mu.RUnlock()
	for _, ca := range cas {
		n, err := counter(ctx, ca)
		if err != nil {
			continue // the probe reports a store that is away
		}
		o.mu.Lock()
		if prev, seen := o.counts[ca]; !seen || prev != n {
			o.counts[ca] = n
			o.epoch[ca]++
		}
		o.mu.Unlock()
	}
}

// refreshStale re-signs only the answers of certificates revoked here
// since they were signed: a revocation must not cost a pass over every
// record.
func (o *OCSPResponder) refreshStale(ctx context.Context) {
	o.mu.RLock()
	keys := make([]cacheKey, 0, len(o.stale))
	for k := range o.stale {
		keys = append(keys, k)
	}
	o.mu.RUnlock()
	now := o.service.clock.Now()
	for _, k := range keys {
		o.mu.RLock()
		r, ep := o.responders[k.ca], o.epoch[k.ca]
		o.mu.RUnlock()
		if r == nil || ctx.Err() != nil {
			continue
		}
		n, _ := new(big.Int).SetString(k.serial, 16)
		want, err := o.stateOf(ctx, r, k.serial, now)
		if err == nil {
			_, err = o.sign(ctx, r, k, n, want, ep)
		}
		if err != nil {
			o.log.Error("re-signing a revoked certificate's OCSP answer failed", "ca", k.ca, "serial", k.serial, "error", err)
		}
	}
}

// refresh renews due responder certificates and signs every due answer;
// it returns how many answers it signed.
func (o *OCSPResponder) refresh(ctx context.Context) (signed int) {
	o.mu.RLock()
	rs := make([]*responder, 0, len(o.responders))
	for _, r := range o.responders {
		rs = append(rs, r)
	}
	o.mu.RUnlock()
	now := o.service.clock.Now()
	for _, r := range rs {
		if ctx.Err() != nil {
			return signed
		}
		if c := o.certOf(r); c == nil || o.dueForRenewal(c) {
			if err := o.ensureCertificate(ctx, r); err != nil {
				o.log.Error("renewing the OCSP responder certificate failed", "ca", r.ca.name, "error", err)
				continue
			}
		}
		due, err := o.dueAnswers(ctx, r, now)
		if err != nil {
			o.log.Error("listing certificates to pre-sign OCSP answers failed", "ca", r.ca.name, "error", err)
			continue
		}
		signed += o.presign(ctx, r, due)
		// Answers for other hash algorithms were made on demand; re-sign the
		// stale ones the same way.
		o.mu.RLock()
		var other []cacheKey
		for k, a := range o.cache {
			if k.ca == r.ca.name && k.hash != crypto.SHA1 && (o.stale[k] || !now.Before(a.ThisUpdate.Add(o.cfg.Validity/2))) {
				other = append(other, k)
			}
		}
		o.mu.RUnlock()
		for _, k := range other {
			n, _ := new(big.Int).SetString(k.serial, 16)
			o.mu.RLock()
			ep := o.epoch[k.ca]
			o.mu.RUnlock()
			want, err := o.stateOf(ctx, r, k.serial, now)
			if err == nil {
				_, err = o.sign(ctx, r, k, n, want, ep)
			}
			if err == nil {
				signed++
			} else if !errors.Is(err, errNotLeader) {
				o.log.Error("refreshing an OCSP answer failed", "ca", r.ca.name, "serial", k.serial, "error", err)
			}
		}
	}
	return signed
}
