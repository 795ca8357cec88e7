package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pkid/pkid/record"
)

// Store keeps records and the audit log. Every method returns only once its
// write is durable.
type Store interface {
	// Reserve durably inserts c with status pending; an error wrapping
	// record.ErrDuplicateSerial means the serial is taken.
	Reserve(ctx context.Context, c *record.Certificate) error
	// Finalize marks the record issued with its DER and appends ev, in one
	// transaction.
	Finalize(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Abort marks a pending record aborted (der, if any, is kept for
	// forensics) and appends ev, in one transaction.
	Abort(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Refuse appends the audit event of a refused request.
	Refuse(ctx context.Context, ev record.AuditEvent) error
	// Revoke marks an issued record revoked and appends ev, in one
	// transaction (record.ErrAlreadyRevoked, ErrNotRevocable, ErrNotFound).
	Revoke(ctx context.Context, id string, at time.Time, reason string, ev record.AuditEvent) error
	// Certificate, CertificateBySerial and CertificateByRequestID find a
	// record (record.ErrNotFound).
	Certificate(ctx context.Context, id string) (*record.Certificate, error)
	CertificateBySerial(ctx context.Context, serial string) (*record.Certificate, error)
	CertificateByRequestID(ctx context.Context, certificateRequestID string) (*record.Certificate, error)
	// Revoked lists every revoked certificate of a CA, expired ones too.
	Revoked(ctx context.Context, ca string, fn func(record.RevokedEntry) error) error
	// ReserveCRL durably inserts a pending CRL with its number and TBS hash
	// (record.ErrCRLNumberUsed unless the number was never used for the CA).
	ReserveCRL(ctx context.Context, c *record.CRL) error
	// FinalizeCRL and AbortCRL resolve a pending CRL with an audit entry.
	FinalizeCRL(ctx context.Context, ca string, number int64, der []byte, ev record.AuditEvent) error
	AbortCRL(ctx context.Context, ca string, number int64, ev record.AuditEvent) error
	// LatestCRL is a CA's newest issued CRL (record.ErrNotFound if none);
	// LastCRLNumber the highest number it ever reserved.
	LatestCRL(ctx context.Context, ca string) (*record.CRL, error)
	LastCRLNumber(ctx context.Context, ca string) (int64, error)
	// AuditHead is the newest audit entry's sequence number and hash.
	AuditHead(ctx context.Context) (seq int64, hash string, err error)
	// LatestCheckpoint is the newest signed checkpoint (record.ErrNotFound if none).
	LatestCheckpoint(ctx context.Context) (*record.Checkpoint, error)
	// AddCheckpoint stores a signed checkpoint of the chain.
	AddCheckpoint(ctx context.Context, cp record.Checkpoint) error
}

// Cluster is what nodes sharing one store need (DESIGN.md §16): a lock
// that lets one node at a time make a CA's CRLs and OCSP answers, and the
// stored answers every node serves. The store implements it.
type Cluster interface {
	// Lead takes the lock named task without waiting; ok is false when
	// another node holds it. release is safe to call more than once.
	Lead(ctx context.Context, task string) (release func(), ok bool, err error)
	// StillLeads reports whether a lead taken earlier is still held (it
	// is lost with its database connection).
	StillLeads(ctx context.Context, task string) (bool, error)
	PutOCSPResponses(ctx context.Context, rs []record.OCSPResponse) error
	OCSPResponse(ctx context.Context, ca, serial string) (*record.OCSPResponse, error)
}

// CertificateLister lists the records of a CA (of one profile and status
// when not ""), for the OCSP responder's pre-signing.
type CertificateLister interface {
	ListCertificates(ctx context.Context, ca, profile, status string, fn func(*record.Certificate) error) error
}

// ServiceConfig wires a Service. Store is required.
type ServiceConfig struct {
	Store    Store
	Lister   CertificateLister // needed by the OCSP responder
	Observer Observer          // default NopObserver
	Clock    Clock             // default SystemClock
	Rand     io.Reader         // default crypto/rand
	// AuditKey signs audit checkpoints (DESIGN.md §6); a key in the token.
	AuditKey crypto.Signer
	// Node names the pkid node in every reservation it makes (DESIGN.md
	// §16), so that recovery after a crash touches only its own rows.
	Node string
	// Cluster, when the store is shared with other nodes, makes CRLs and
	// OCSP answers one node's work at a time; nil: this node is alone.
	Cluster Cluster
}

// Service is the signing service of DESIGN.md §5: the only code in pkid
// that makes a token key sign. Every signature goes prepare → reserve →
// lint → sign → verify → finalize, so nothing is signed that was not
// recorded and linted first. It is built once and outlives reloads; the
// profiles and linters of each configuration generation are handed to it
// with every order.
type Service struct {
	store    Store
	lister   CertificateLister
	observer Observer
	clock    Clock
	rand     io.Reader
	auditKey crypto.Signer
	auditID  string
	node     string
	cluster  Cluster

	lintMu   sync.Mutex
	lintKeys map[string]*lintIssuer // by CA issuer hash
	refusals *refusalThrottle
	onRevoke []func(ca, serial string) // set by NewCRLPublisher and NewOCSPResponder, before serving

	unfinished unfinishedRows // reservations whose requests ended with their outcome unrecorded
}

// lintIssuer stands in for a CA when signing the lint copy: the same
// certificate fields (subject, key identifier) with a throw-away key of the
// same type, so the TBS it produces is byte for byte the one the real CA
// key will sign.
type lintIssuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewService validates the wiring.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("issuer: the signing service needs a store")
	}
	s := &Service{store: cfg.Store, lister: cfg.Lister, observer: cfg.Observer, clock: cfg.Clock, rand: cfg.Rand,
		auditKey: cfg.AuditKey, node: cfg.Node, cluster: cfg.Cluster, lintKeys: map[string]*lintIssuer{}, refusals: newRefusalThrottle()}
	if s.observer == nil {
		s.observer = NopObserver{}
	}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.auditKey != nil {
		id, err := record.AuditKeyID(s.auditKey.Public())
		if err != nil {
			return nil, fmt.Errorf("issuer: audit key: %w", err)
		}
		if _, err := record.CheckpointHash(s.auditKey.Public()); err != nil {
			return nil, fmt.Errorf("issuer: audit key: %w", err)
		}
		s.auditID = id
	}
	return s, nil
}

// prepareCA makes the throw-away lint key for ca (once per CA certificate,
// kept across reloads).
func (s *Service) prepareCA(ca *CA) (*lintIssuer, error) {
	s.lintMu.Lock()
	defer s.lintMu.Unlock()
	if li, ok := s.lintKeys[ca.issuerHash]; ok {
		return li, nil
	}
	key, err := newThrowawayKey(ca.cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("lint key for CA %s: %w", ca.name, err)
	}
	stand := *ca.cert
	stand.PublicKey = key.Public()
	li := &lintIssuer{cert: &stand, key: key}
	s.lintKeys[ca.issuerHash] = li
	return li, nil
}

// certificateOrder is a certificate ready to be signed: a complete template
// (its serial is chosen here), the record of what it is, and the lint that
// must pass.
type certificateOrder struct {
	ca       *CA
	template *x509.Certificate
	leafPub  crypto.PublicKey
	rec      record.Certificate // everything but serial, TBS hash and status
	lint     func(ctx context.Context, der []byte) ([]string, error)
	event    record.AuditEvent // who and why; action, outcome and ids are set here
}

// eventFor is the order's audit entry for its reservation rec.
func (o *certificateOrder) eventFor(rec *record.Certificate) record.AuditEvent {
	ev := o.event
	ev.CertificateID, ev.Serial, ev.CA = rec.ID, rec.Serial, o.ca.name
	return ev
}

// issueCertificate runs the pipeline for one certificate and returns its
// finalized record.
func (s *Service) issueCertificate(ctx context.Context, o *certificateOrder) (*record.Certificate, error) {
	if o.ca.signer == nil {
		return nil, internal(errNoKey)
	}
	li, err := s.prepareCA(o.ca)
	if err != nil {
		return nil, internal(err)
	}

	// 2. reserve the serial with the hash of the exact TBS, durably. The
	// lint copy is made first because it is what fixes the TBS bytes.
	rec := o.rec
	var lintDER []byte
	var lintCert *x509.Certificate
	for attempt := 0; ; attempt++ {
		if o.template.SerialNumber, err = newSerial(s.rand); err != nil {
			return nil, internal(err)
		}
		if lintDER, err = x509.CreateCertificate(s.rand, o.template, li.cert, o.leafPub, li.key); err != nil {
			return nil, internal(fmt.Errorf("building the lint copy: %w", err))
		}
		if lintCert, err = x509.ParseCertificate(lintDER); err != nil {
			return nil, internal(fmt.Errorf("parsing the lint copy: %w", err))
		}
		rec.Serial = hex.EncodeToString(o.template.SerialNumber.Bytes())
		rec.TBSHash = sha256Hex(lintCert.RawTBSCertificate)
		rec.Status, rec.Node = record.StatusPending, s.node
		err = s.store.Reserve(ctx, &rec)
		if err == nil {
			break
		}
		if errors.Is(err, record.ErrUnavailable) {
			// The database went away: the reservation may have committed
			// all the same (an answer lost with the connection). Its id is
			// this request's alone, so resolving "it" later can touch no
			// other row.
			s.leaveCertificate(&rec, nil, abortEvent(o.eventFor(&rec), OutcomeUnavailable, unfinishedReservationReason))
			return nil, storeUnavailable(err)
		}
		if !errors.Is(err, record.ErrDuplicateSerial) || attempt == 2 {
			return nil, storeUnavailable(err)
		}
	}
	ev := o.eventFor(&rec)
	abort := func(reason string, der []byte, cause *Error) error {
		ab := abortEvent(ev, cause.Kind.Outcome(), reason)
		if err := s.store.Abort(context.WithoutCancel(ctx), rec.ID, der, ab); err != nil {
			s.leaveCertificate(&rec, der, ab)
			return storeUnavailable(errors.Join(cause, err))
		}
		return cause
	}

	// 3. pre-issuance lint of the exact TBS.
	failed, err := o.lint(ctx, lintDER)
	if err != nil {
		return nil, abort("lint error", nil, internal(err))
	}
	if len(failed) > 0 {
		for _, l := range failed {
			s.observer.ObserveLintFailure(l)
		}
		msg := "Certificate failed pre-issuance lint: " + strings.Join(failed, ", ")
		return nil, abort(msg, nil, &Error{Kind: KindPolicy, Message: msg, Details: map[string][]string{"lints": failed}})
	}

	// 4. sign exactly the linted TBS with the token; verify the signature
	// with the CA certificate and that the TBS is the linted one.
	der, err := s.sign(o.ca, lintDER, lintCert.RawTBSCertificate, lintCert.SignatureAlgorithm)
	if err != nil {
		return nil, abort("signing failed", nil, unavailable("the signing key is unavailable", err))
	}
	if err := verifySigned(der, lintCert.RawTBSCertificate, lintCert.SignatureAlgorithm, o.ca.cert); err != nil {
		return nil, abort("verification failed: "+err.Error(), der, internal(err))
	}

	// 5. finalize the record and append the audit entry, one durable
	// transaction. The client may have gone; the record must not be lost.
	ev.Action, ev.Outcome, ev.DERHash = record.ActionIssued, OutcomeIssued, sha256Hex(der)
	if err := s.store.Finalize(context.WithoutCancel(ctx), rec.ID, der, ev); err != nil {
		s.leaveCertificate(&rec, der, abortEvent(ev, OutcomeUnavailable, unfinishedReason))
		return nil, storeUnavailable(err)
	}
	rec.Status, rec.DER = record.StatusIssued, der
	return &rec, nil
}

// sign has the CA's token key sign tbs (the TBS inside signedCopy, which
// carries the outer structure) and returns the reassembled DER.
func (s *Service) sign(ca *CA, signedCopy, tbs []byte, alg x509.SignatureAlgorithm) ([]byte, error) {
	start := s.clock.Now()
	der, err := signTBS(s.rand, ca.signer, signedCopy, tbs, alg)
	s.observer.ObserveSign(ca.name, s.clock.Now().Sub(start), err)
	return der, err
}

// refuse records a refusal in the audit log, within the per-identity cap.
// If the refusal cannot be recorded the client gets 503, not a silent gap.
func (s *Service) refuse(ctx context.Context, ev record.AuditEvent) error {
	write, owed := s.refusals.note(ev.Identity, ev.Profile, ev.Time)
	if owed != nil {
		if err := s.store.Refuse(ctx, suppressedEvent(*owed)); err != nil {
			return storeUnavailable(err)
		}
	}
	if !write {
		return nil
	}
	if err := s.store.Refuse(ctx, ev); err != nil {
		return storeUnavailable(err)
	}
	return nil
}

func suppressedEvent(o suppressedRefusals) record.AuditEvent {
	return record.AuditEvent{Time: o.start.Add(refusalWindow).UTC(), Action: record.ActionRefusalsSuppressed,
		Identity: o.identity, Profile: o.profile, Outcome: "suppressed", Count: o.count,
		Reason: fmt.Sprintf("%d more refusals of this identity in the minute from %s were counted but not written", o.count, o.start.UTC().Format(time.RFC3339))}
}

// FlushRefusals writes the summary entries owed for minutes that ended
// with suppressed refusals. The daemon calls it periodically.
func (s *Service) FlushRefusals(ctx context.Context) error {
	for _, o := range s.refusals.due(s.clock.Now()) {
		if err := s.store.Refuse(ctx, suppressedEvent(o)); err != nil {
			return fmt.Errorf("writing refusal summary: %w", err)
		}
	}
	return nil
}

// Checkpoint signs the audit chain's head with the audit key and stores
// the checkpoint, unless the newest checkpoint already covers it. It
// returns the new checkpoint, or nil when there was nothing new.
func (s *Service) Checkpoint(ctx context.Context) (*record.Checkpoint, error) {
	if s.auditKey == nil {
		return nil, errors.New("no audit key configured")
	}
	seq, hash, err := s.store.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the audit head: %w", err)
	}
	last, err := s.store.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, record.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the latest checkpoint: %w", err)
	case last.Seq >= seq:
		return nil, nil
	}
	if seq == 0 {
		return nil, nil
	}
	cp := record.Checkpoint{Seq: seq, Hash: hash, Time: s.clock.Now().UTC(), KeyID: s.auditID}
	h, digest, err := record.CheckpointDigest(s.auditKey.Public(), cp)
	if err != nil {
		return nil, err
	}
	if cp.Signature, err = s.auditKey.Sign(s.rand, digest, h); err != nil {
		return nil, fmt.Errorf("signing the checkpoint: %w", err)
	}
	if err := record.VerifyCheckpoint(s.auditKey.Public(), cp); err != nil {
		return nil, fmt.Errorf("the token's checkpoint signature does not verify: %w", err)
	}
	if err := s.store.AddCheckpoint(context.WithoutCancel(ctx), cp); err != nil {
		return nil, fmt.Errorf("storing the checkpoint: %w", err)
	}
	return &cp, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
