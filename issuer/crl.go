package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pkid/pkid/record"
)

// Defaults of CRLConfig (DESIGN.md §13).
const (
	DefaultCRLValidity = 7 * 24 * time.Hour
	DefaultCRLMaxDelay = 10 * time.Second
)

// CRLConfig says how long a CRL is valid and how soon after a revocation
// a new one is made.
type CRLConfig struct {
	Validity time.Duration // nextUpdate = thisUpdate + Validity; default 7d
	MaxDelay time.Duration // a revocation is on a CRL within this; default 10s
}

// CRLLinter lints a DER CRL and returns the lints that failed.
type CRLLinter interface {
	LintCRL(ctx context.Context, der []byte) ([]string, error)
}

// PublishedCRL is a CA's current CRL, as the public listener serves it.
type PublishedCRL struct {
	CA                     string
	Number                 int64
	ThisUpdate, NextUpdate time.Time
	DER                    []byte
	Entries                int
}

// crlSignatureAlgorithm is what a CA key signs its CRLs with: the hash
// that matches the key's strength (SHA-256 for RSA and P-256).
func crlSignatureAlgorithm(ca *CA) x509.SignatureAlgorithm {
	switch k := ca.cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return x509.ECDSAWithSHA384
		case elliptic.P521():
			return x509.ECDSAWithSHA512
		}
		return x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		return x509.SHA256WithRSA
	}
	return x509.UnknownSignatureAlgorithm
}

// crlOrder is a CRL ready to be signed: the number is chosen by signCRL.
type crlOrder struct {
	ca                     *CA
	entries                []x509.RevocationListEntry
	thisUpdate, nextUpdate time.Time
	lint                   func(ctx context.Context, der []byte) ([]string, error)
}

// signCRL runs the pipeline of DESIGN.md §5 for a CRL: reserve the next
// CRL number with the hash of the exact TBS (durable), lint that TBS,
// sign it with the CA key in the token, verify, finalize with the audit
// entry. A number, once reserved, is never used again.
func (s *Service) signCRL(ctx context.Context, o *crlOrder) (*record.CRL, error) {
	if o.ca.signer == nil {
		return nil, errNoKey
	}
	li, err := s.prepareCA(o.ca)
	if err != nil {
		return nil, err
	}
	var rec record.CRL
	var lintDER []byte
	var lintCRL *x509.RevocationList
	for attempt := 0; ; attempt++ {
		last, err := s.store.LastCRLNumber(ctx, o.ca.name)
		if err != nil {
			return nil, fmt.Errorf("reading the last CRL number: %w", err)
		}
		tpl := &x509.RevocationList{Number: big.NewInt(last + 1), ThisUpdate: o.thisUpdate, NextUpdate: o.nextUpdate,
			RevokedCertificateEntries: o.entries, SignatureAlgorithm: crlSignatureAlgorithm(o.ca)}
		if lintDER, err = x509.CreateRevocationList(s.rand, tpl, li.cert, li.key); err != nil {
			return nil, fmt.Errorf("building the lint copy of the CRL: %w", err)
		}
		if lintCRL, err = x509.ParseRevocationList(lintDER); err != nil {
			return nil, fmt.Errorf("parsing the lint copy of the CRL: %w", err)
		}
		rec = record.CRL{CA: o.ca.name, Number: last + 1, ThisUpdate: o.thisUpdate, NextUpdate: o.nextUpdate,
			TBSHash: sha256Hex(lintCRL.RawTBSRevocationList), Status: record.StatusPending, Node: s.node, CreatedAt: s.clock.Now().UTC()}
		err = s.store.ReserveCRL(ctx, &rec)
		if err == nil {
			break
		}
		// A reservation whose answer was lost is not left to
		// ResolveUnfinished: if it did not commit, the next CRL takes the
		// same number, and aborting "that number" later would abort it.
		if !errors.Is(err, record.ErrCRLNumberUsed) || attempt == 2 {
			return nil, fmt.Errorf("reserving CRL number %d: %w", rec.Number, err)
		}
	}
	ev := record.AuditEvent{Time: rec.CreatedAt, Identity: "pkid", CA: o.ca.name, CRLNumber: rec.Number}
	abort := func(reason string, cause error) error {
		ab := abortEvent(ev, OutcomeError, reason)
		if err := s.store.AbortCRL(context.WithoutCancel(ctx), o.ca.name, rec.Number, ab); err != nil {
			s.leaveCRL(&rec, ab)
			return errors.Join(cause, err)
		}
		return cause
	}
	failed, err := o.lint(ctx, lintDER)
	if err != nil {
		return nil, abort("lint error", fmt.Errorf("linting CRL %d: %w", rec.Number, err))
	}
	if len(failed) > 0 {
		for _, l := range failed {
			s.observer.ObserveLintFailure(l)
		}
		msg := "CRL failed pre-issuance lint: " + strings.Join(failed, ", ")
		return nil, abort(msg, errors.New(msg))
	}
	der, err := s.sign(o.ca, lintDER, lintCRL.RawTBSRevocationList, lintCRL.SignatureAlgorithm)
	if err != nil {
		return nil, abort("signing failed", fmt.Errorf("signing CRL %d: %w", rec.Number, err))
	}
	if err := verifySigned(der, lintCRL.RawTBSRevocationList, lintCRL.SignatureAlgorithm, o.ca.cert); err != nil {
		return nil, abort("verification failed: "+err.Error(), err)
	}
	ev.Action, ev.Outcome, ev.DERHash = record.ActionCRL, OutcomeIssued, sha256Hex(der)
	if err := s.store.FinalizeCRL(context.WithoutCancel(ctx), o.ca.name, rec.Number, der, ev); err != nil {
		s.leaveCRL(&rec, abortEvent(ev, OutcomeError, unfinishedReason)) // its derSha256 says what the key signed
		return nil, fmt.Errorf("finalizing CRL %d: %w", rec.Number, err)
	}
	rec.Status, rec.DER = record.StatusIssued, der
	return &rec, nil
}

// crlEntries turns the CA's revocations into CRL entries. An expired
// certificate stays until one CRL issued after its notAfter has carried
// it (DESIGN.md §13): it is dropped once the previous CRL was issued after
// the certificate expired.
func crlEntries(revoked []record.RevokedEntry, previousThisUpdate time.Time) ([]x509.RevocationListEntry, error) {
	out := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		if !previousThisUpdate.IsZero() && r.NotAfter.Before(previousThisUpdate) {
			continue
		}
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("revoked serial %q is not hex", r.Serial)
		}
		code, ok := revocationReasons[r.Reason]
		if !ok {
			code = 0 // an unknown stored reason is published as unspecified rather than not at all
		}
		// RFC 5280 §5.3.1: no reasonCode for unspecified; ReasonCode 0 is omitted.
		out = append(out, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt.UTC(), ReasonCode: code})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].SerialNumber.Cmp(out[b].SerialNumber) < 0 })
	return out, nil
}

// CRLPublisher makes and holds the current CRL of every CA with a key: at
// start, within MaxDelay of a revocation, and whenever half of the current
// one's validity has passed. CRLs are served from memory, so issuance
// never waits on one being made. It outlives reloads.
type CRLPublisher struct {
	service *Service
	cfg     CRLConfig
	log     *slog.Logger
	wake    chan struct{}

	mu      sync.Mutex
	cas     map[string]*CA
	lint    CRLLinter
	current map[string]*PublishedCRL
	events  map[string]uint64        // CA → revocations recorded by this process
	covered map[string]uint64        // CA → events the current CRL was built after
	counted map[string]int64         // CA → revocations in the store when the current CRL was built
	took    map[string]time.Duration // CA → how long its last CRL took to make
	warned  map[string]time.Time     // CA → when a slow build was last reported
	// leads holds, with a Cluster, the CAs whose CRLs this node makes: a
	// lead is kept until Run ends (or the node dies and the database
	// lets it go), so that one node makes them and the others adopt them.
	leads map[string]func()
}

// NewCRLPublisher returns a publisher wired to s, so that every revocation
// s records wakes it.
func NewCRLPublisher(s *Service, cfg CRLConfig, log *slog.Logger) *CRLPublisher {
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultCRLValidity
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultCRLMaxDelay
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &CRLPublisher{service: s, cfg: cfg, log: log, wake: make(chan struct{}, 1), cas: map[string]*CA{},
		current: map[string]*PublishedCRL{}, events: map[string]uint64{}, covered: map[string]uint64{}, counted: map[string]int64{},
		took: map[string]time.Duration{}, warned: map[string]time.Time{}, leads: map[string]func(){}}
	s.onRevoke = append(s.onRevoke, func(ca, _ string) { p.revoked(ca) })
	return p
}

// SetCAs hands the publisher the CAs and CRL linter of a configuration
// generation: every CA with a key gets a CRL.
func (p *CRLPublisher) SetCAs(cas []*CA, lint CRLLinter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cas = map[string]*CA{}
	for _, ca := range cas {
		if ca.CanSign() {
			p.cas[ca.name] = ca
		}
	}
	p.lint = lint
	p.kick()
}

// Current is ca's current CRL.
func (p *CRLPublisher) Current(ca string) (*PublishedCRL, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.current[ca]
	return c, ok
}

func (p *CRLPublisher) revoked(ca string) {
	p.mu.Lock()
	p.events[ca]++
	p.mu.Unlock()
	p.kick()
}

func (p *CRLPublisher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// RevocationCounter tells how many revocations a CA has in the store, so
// that revocations made elsewhere (`pkid revoke`, another node) reach the
// CRL within MaxDelay too.
type RevocationCounter func(ctx context.Context, ca string) (int64, error)

// Run keeps every CA's CRL current until ctx ends. After a revocation it
// waits a fraction of MaxDelay, so that a burst of revocations shares one
// CRL.
func (p *CRLPublisher) Run(ctx context.Context, counter RevocationCounter) {
	poll := time.NewTicker(max(p.cfg.MaxDelay/2, 10*time.Millisecond))
	defer poll.Stop()
	defer p.releaseLeads()
	for {
		p.refreshDue(ctx, counter)
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-p.wake:
			select {
			case <-time.After(p.batchWait()):
			case <-ctx.Done():
				return
			}
		}
	}
}

// slowCRLWarnEvery spaces the warnings about a CA's slow CRL builds: under
// steady revocations a large CRL is rebuilt every few seconds.
const slowCRLWarnEvery = 10 * time.Minute

// batchWait is how long a revocation waits for others to share its CRL: a
// quarter of MaxDelay (at most 1 s), shorter once the slowest CA's last
// CRL took more than half of MaxDelay to make, so that wait and build
// together stay within three quarters of it while a build fits at all.
func (p *CRLPublisher) batchWait() time.Duration {
	p.mu.Lock()
	var slowest time.Duration
	for name := range p.cas { // a CA a reload removed no longer counts
		slowest = max(slowest, p.took[name])
	}
	p.mu.Unlock()
	return max(0, min(p.cfg.MaxDelay/4, time.Second, p.cfg.MaxDelay*3/4-slowest))
}

// refreshDue makes a CRL for each CA that has none, whose current one is
// past half-life, or that owes a revocation. With a Cluster (DESIGN.md
// §16) only the node holding a CA's lead makes its CRLs; every node adopts
// the newest one in the store.
func (p *CRLPublisher) refreshDue(ctx context.Context, counter RevocationCounter) {
	p.mu.Lock()
	cas := make([]*CA, 0, len(p.cas))
	for _, ca := range p.cas {
		cas = append(cas, ca)
	}
	p.mu.Unlock()
	for _, ca := range cas {
		if ctx.Err() != nil {
			return
		}
		if c := p.service.cluster; c != nil {
			if err := p.adopt(ctx, ca.name); err != nil {
				p.log.Warn("reading the CA's latest CRL failed", "ca", ca.name, "error", err)
			}
			if !p.lead(ctx, c, ca.name) {
				continue
			}
		}
		if !p.due(ca.name, p.count(ctx, ca.name, counter)) {
			continue
		}
		if _, err := p.Refresh(ctx, ca.name, counter); err != nil {
			p.service.observer.ObserveCRLError(ca.name)
			p.log.Error("making a CRL failed; the current one stays served", "ca", ca.name, "error", err)
		}
	}
}

// Publish does one round at once (the daemon's, before it reports ready):
// afterwards every CA with a key has a CRL to serve, its own or adopted.
func (p *CRLPublisher) Publish(ctx context.Context, counter RevocationCounter) {
	p.refreshDue(ctx, counter)
}

// lead reports whether this node makes ca's CRLs, taking the lead if no
// node has it.
func (p *CRLPublisher) lead(ctx context.Context, c Cluster, ca string) bool {
	p.mu.Lock()
	release := p.leads[ca]
	p.mu.Unlock()
	if release != nil {
		still, err := c.StillLeads(ctx, "crl:"+ca)
		if err != nil {
			return false // not knowing, make nothing this round
		}
		if still {
			return true
		}
		release()
		p.mu.Lock()
		delete(p.leads, ca)
		p.mu.Unlock()
		p.log.Warn("lost this CA's CRL lead with its database connection", "ca", ca)
	}
	rel, ok, err := c.Lead(ctx, "crl:"+ca)
	if err != nil || !ok {
		return false
	}
	p.mu.Lock()
	p.leads[ca] = rel
	p.mu.Unlock()
	p.log.Info("making this CA's CRLs on this node", "ca", ca)
	return true
}

// releaseLeads lets another node make the CRLs (when Run ends).
func (p *CRLPublisher) releaseLeads() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ca, release := range p.leads {
		release()
		delete(p.leads, ca)
	}
}

// count reads the CA's revocation count in the store, -1 if unknown.
func (p *CRLPublisher) count(ctx context.Context, ca string, counter RevocationCounter) int64 {
	if counter == nil {
		return -1
	}
	n, err := counter(ctx, ca)
	if err != nil {
		return -1
	}
	return n
}

// due reports whether the CA needs a new CRL.
func (p *CRLPublisher) due(ca string, stored int64) bool {
	now := p.service.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.current[ca]
	owes := p.events[ca] != p.covered[ca] || (stored >= 0 && stored != p.counted[ca])
	return cur == nil || owes || now.Sub(cur.ThisUpdate) >= p.cfg.Validity/2
}

// adopt makes the store's newest CRL of ca the current one if another node
// made it after this one's.
func (p *CRLPublisher) adopt(ctx context.Context, ca string) error {
	p.mu.Lock()
	cur := p.current[ca]
	p.mu.Unlock()
	last, err := p.service.store.LastCRLNumber(ctx, ca)
	if err != nil || (cur != nil && last <= cur.Number) {
		return err // the cheap check: nothing newer was even reserved
	}
	rec, err := p.service.store.LatestCRL(ctx, ca)
	if errors.Is(err, record.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur != nil && rec.Number <= cur.Number {
		return nil
	}
	parsed, err := x509.ParseRevocationList(rec.DER)
	if err != nil {
		return fmt.Errorf("the stored CRL %d does not parse: %w", rec.Number, err)
	}
	pub := &PublishedCRL{CA: ca, Number: rec.Number, ThisUpdate: rec.ThisUpdate, NextUpdate: rec.NextUpdate, DER: rec.DER,
		Entries: len(parsed.RevokedCertificateEntries)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.current[ca]; c != nil && c.Number >= pub.Number {
		return nil
	}
	p.current[ca] = pub
	p.service.observer.ObserveCRL(ca, rec.Number, rec.ThisUpdate, rec.NextUpdate)
	return nil
}

// Refresh makes a new CRL for the named CA now and publishes it. What it
// covers is noted before the revocations are read, so a revocation that
// comes in meanwhile makes the next round make another.
func (p *CRLPublisher) Refresh(ctx context.Context, caName string, counter RevocationCounter) (*PublishedCRL, error) {
	p.mu.Lock()
	ca, lint, events := p.cas[caName], p.lint, p.events[caName]
	p.mu.Unlock()
	if ca == nil || lint == nil {
		return nil, fmt.Errorf("no CA %q with a key", caName)
	}
	started := time.Now() // the build's real duration, whatever the service's clock says
	thisUpdate := p.service.clock.Now().UTC().Truncate(time.Second)
	var count int64
	if counter != nil {
		n, err := counter(ctx, caName)
		if err != nil {
			return nil, fmt.Errorf("counting revocations: %w", err)
		}
		count = n
	}
	var revoked []record.RevokedEntry
	if err := p.service.store.Revoked(ctx, caName, func(e record.RevokedEntry) error {
		revoked = append(revoked, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}
	var previous time.Time
	if last, err := p.service.store.LatestCRL(ctx, caName); err == nil {
		previous = last.ThisUpdate
	} else if !errors.Is(err, record.ErrNotFound) {
		return nil, fmt.Errorf("reading the latest CRL: %w", err)
	}
	entries, err := crlEntries(revoked, previous)
	if err != nil {
		return nil, err
	}
	rec, err := p.service.signCRL(ctx, &crlOrder{ca: ca, entries: entries, thisUpdate: thisUpdate,
		nextUpdate: thisUpdate.Add(p.cfg.Validity), lint: lint.LintCRL})
	if err != nil {
		return nil, err
	}
	pub := &PublishedCRL{CA: caName, Number: rec.Number, ThisUpdate: rec.ThisUpdate, NextUpdate: rec.NextUpdate, DER: rec.DER, Entries: len(entries)}
	took := time.Since(started)
	p.mu.Lock()
	p.current[caName], p.covered[caName], p.counted[caName], p.took[caName] = pub, events, count, took
	slow := took > p.cfg.MaxDelay/2 && time.Since(p.warned[caName]) >= slowCRLWarnEvery
	if slow {
		p.warned[caName] = time.Now()
	}
	p.mu.Unlock()
	p.service.observer.ObserveCRL(caName, rec.Number, rec.ThisUpdate, rec.NextUpdate)
	p.log.Info("published CRL", "ca", caName, "number", rec.Number, "entries", len(entries),
		"nextUpdate", rec.NextUpdate.Format(time.RFC3339), "took", took.Round(time.Millisecond).String())
	if slow {
		p.log.Warn("making a CRL took more than half of crl.maxDelay: revocations may reach it later than crl.maxDelay; raise it",
			"ca", caName, "entries", len(entries), "took", took.Round(time.Millisecond).String(), "maxDelay", p.cfg.MaxDelay.String())
	}
	return pub, nil
}
