package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// Request is a schema-valid issuance request (the API has already checked
// types, enums, value syntax and the ttl grammar).
type Request struct {
	ProfileID            string
	CommonName           string // "" when absent
	TTL                  time.Duration
	KeyUsages            []string // nil: the profile's defaults
	ExtKeyUsages         []string // nil: the profile's defaults
	NotBefore            *time.Time
	NotAfter             *time.Time
	AltNames             []policy.SAN
	SignatureAlgorithm   string
	KeyAlgorithm         string
	RemoveRootsFromChain bool
}

// Result is what the client receives, PEM strings trimmed.
type Result struct {
	Certificate          string
	IssuingCACertificate string
	CertificateChain     string
	PrivateKey           string
	SerialNumber         string
	CertificateID        string
}

// CA is an issuing (or chain-only) certificate authority. Signer is nil for
// a CA whose key pkid does not hold (e.g. an offline root): such a CA only
// appears in chains.
type CA struct {
	Name                  string
	Certificate           *x509.Certificate
	Parents               []*x509.Certificate // issuer of Certificate first, root last
	Signer                crypto.Signer
	CRLURLs               []string
	IssuingCertificateURL []string
	OCSPURLs              []string
	// PolicyOIDs go into every leaf's certificatePolicies extension, which
	// the Baseline Requirements (7.1.2.3) require for server_auth leaves.
	// Empty means anyPolicy (RFC 5280 §4.2.1.4).
	PolicyOIDs []x509.OID
}

func (ca *CA) policies() []x509.OID {
	if len(ca.PolicyOIDs) > 0 {
		return ca.PolicyOIDs
	}
	anyPolicy, _ := x509.OIDFromInts([]uint64{2, 5, 29, 32, 0})
	return []x509.OID{anyPolicy}
}

// RateLimit is a token bucket per identity and profile: PerMinute tokens
// refill each minute up to Burst. PerMinute 0 means unlimited.
type RateLimit struct {
	PerMinute int
	Burst     int
}

// Profile is a validated certificate profile.
type Profile struct {
	ID                  string
	Name                string
	CA                  *CA
	Policy              *policy.Policy
	DefaultKeyUsages    []string
	DefaultExtKeyUsages []string
	AllowedIdentities   []string // patterns
	Backdate            time.Duration
	RateLimit           RateLimit
	LintExclusions      []string // on top of the linter's defaults
}

// Store keeps records and the audit log. Every method returns only once its
// write is durable.
type Store interface {
	// Reserve durably inserts rec with status pending. It returns an error
	// wrapping ErrDuplicateSerial when the serial is taken.
	Reserve(ctx context.Context, rec *record.Record) error
	// Finalize marks the record issued with its DER and appends the audit
	// event, in one transaction.
	Finalize(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Abort marks a pending record aborted (der, if any, is kept for
	// forensics) and appends the audit event, in one transaction.
	Abort(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Refuse appends the audit event of a refused request.
	Refuse(ctx context.Context, ev record.AuditEvent) error
}

// Linter lints a DER certificate for a profile and returns the names of the
// lints that reported an error, warning or fatal result.
type Linter interface {
	Lint(ctx context.Context, profile string, der []byte) (failed []string, err error)
}

// Observer is told about each signature and each lint failure. The
// metrics package implements it; NopObserver is the default.
type Observer interface {
	ObserveSign(ca string, d time.Duration, err error)
	ObserveLintFailure(lint string)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) ObserveSign(string, time.Duration, error) {}
func (NopObserver) ObserveLintFailure(string)                {}

// Clock tells the time; tests inject a fixed one.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }
