package issuer

import (
	"context"
	"time"

	"github.com/pkid/pkid/policy"
)

// IssueRequest is a schema-valid request for a certificate with a key pkid
// generates. Names are already canonical values: they cannot be built
// otherwise.
type IssueRequest struct {
	ProfileID            string
	CommonName           policy.CommonName // zero when absent
	TTL                  time.Duration
	KeyUsages            []string // empty: the profile's defaults
	ExtKeyUsages         []string // empty: the profile's defaults
	NotBefore            *time.Time
	NotAfter             *time.Time
	AltNames             []policy.SAN
	SignatureAlgorithm   string
	KeyAlgorithm         string
	RemoveRootsFromChain bool
	ApplicationID        string // Infisical v1's applicationId, kept in the record
}

// ProfileInfo describes a profile to the edge: names and the defaults a
// request that names no algorithm or ttl gets.
type ProfileInfo struct {
	ID, Name, Slug, CAName string
	SignatureAlgorithm     string // the first allowed one the CA can sign with
	KeyAlgorithm           string // the first allowed one, EC_prime256v1 when allowed
	MaxValidity            time.Duration
}

// Result is what the client receives, PEM strings trimmed.
type Result struct {
	Certificate          string
	IssuingCACertificate string
	CertificateChain     string
	PrivateKey           string // "" when the key is the client's (CSR)
	SerialNumber         string
	CertificateID        string
	CertificateRequestID string
	Profile              string // the profile's name, for the log and metrics
}

// Meta identifies the caller of one request.
type Meta struct {
	RequestID string
	Identity  policy.Identity
}

// Linter lints DER certificates and CRLs and returns the names of the lints
// that reported an error, warning or fatal result. Certificates are linted
// with the registry of the named profile.
type Linter interface {
	Lint(ctx context.Context, profile string, der []byte) (failed []string, err error)
}

// Observer is told about each signature, lint failure, revocation and
// CRL. The metrics package implements it; NopObserver is the default.
type Observer interface {
	ObserveSign(ca string, d time.Duration, err error)
	ObserveLintFailure(lint string)
	ObserveRevocation(ca, reason string)
	ObserveCRL(ca string, number int64, thisUpdate, nextUpdate time.Time)
	ObserveCRLError(ca string)
	ObserveOCSP(ca, status string)
	ObserveOCSPResponder(ca string, notAfter time.Time)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) ObserveSign(string, time.Duration, error)       {}
func (NopObserver) ObserveLintFailure(string)                      {}
func (NopObserver) ObserveRevocation(string, string)               {}
func (NopObserver) ObserveCRL(string, int64, time.Time, time.Time) {}
func (NopObserver) ObserveCRLError(string)                         {}
func (NopObserver) ObserveOCSP(string, string)                     {}
func (NopObserver) ObserveOCSPResponder(string, time.Time)         {}

// Clock tells the time; tests inject a fixed one.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }
