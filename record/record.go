// Package record holds the data that the issuance pipeline hands to a
// certificate store — certificate and CRL records, audit events and
// checkpoints — the sentinel errors every store returns, and the few pure
// functions (event encoding, the chain hash, the checkpoint message, the
// serial number spelling) on
// which every store and the verifier must agree byte for byte. It depends
// on no other pkid package, so that the issuer and the store
// implementations can share it without depending on each other.
package record

import (
	"errors"
	"strings"
	"time"
)

// Status of a certificate or CRL record.
const (
	StatusPending = "pending" // number or serial reserved; the token may or may not have signed
	StatusIssued  = "issued"  // signed, verified, recorded
	StatusAborted = "aborted" // refused or failed before a valid result was returned
	StatusRevoked = "revoked" // certificates only: issued, then revoked (RFC 5280 §5.3.1 reason kept)
)

// AltName is a subject alternative name with its declared type.
type AltName struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Certificate is the stored intent to issue and, once issued, the
// certificate. It holds what is about to be signed (TBSHash, IssuerHash,
// CSRHash) from the moment the serial is reserved, so that after a crash
// it is known exactly what the token may have signed (DESIGN §5). It never
// holds a private key.
type Certificate struct {
	ID                   string
	Serial               string // lowercase hex, as openssl prints it
	ProfileID            string // profile UUID
	Profile              string // profile name
	CA                   string // issuing CA name
	IssuerHash           string // hex SHA-256 of the issuing CA certificate DER
	Identity             string // typed requester identity, e.g. "uri:spiffe://example.internal/demo-client"
	RequestID            string // the API request id (req-…)
	CertificateRequestID string // UUID answered as certificateRequestId (Infisical v1/v3)
	ApplicationID        string // optional (Infisical v1)
	CommonName           string
	AltNames             []AltName // canonical values, in request order (the order round-trips)
	KeyUsages            []string  // in request order (round-trips)
	ExtKeyUsages         []string  // in request order (round-trips)
	SignatureAlgorithm   string
	KeyAlgorithm         string
	NotBefore            time.Time
	NotAfter             time.Time
	TBSHash              string // hex SHA-256 of the exact TBSCertificate about to be signed
	CSR                  []byte // the CSR DER when the key is the client's; nil when pkid generated it
	CSRHash              string // hex SHA-256 of CSR
	Renews               string // id of the certificate this one renews, or ""
	Status               string
	DER                  []byte
	// Node is the pkid node that reserved the serial (DESIGN §16): at
	// start-up a node resolves only its own pending rows and those of
	// nodes whose heartbeat stopped. Records made before nodes had names
	// have "".
	Node             string
	RevokedAt        time.Time // zero unless revoked
	RevocationReason string    // Infisical's names (KEY_COMPROMISE, …)
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// CRL is one certificate revocation list of one CA: reserved (its number
// and the hash of its TBS) before the token signs, then issued with its
// DER, through the same pipeline as a certificate (DESIGN §13).
type CRL struct {
	CA         string
	Number     int64 // the cRLNumber extension (RFC 5280 §5.2.3); never reused for the CA
	ThisUpdate time.Time
	NextUpdate time.Time
	TBSHash    string // hex SHA-256 of the exact TBSCertList about to be signed
	Status     string // pending, issued or aborted
	DER        []byte
	Node       string // the node that reserved the number; "" for CRLs made before nodes had names
	CreatedAt  time.Time
}

// OCSP certificate statuses a stored answer may give (RFC 6960 §2.2).
// "unknown" is never stored: it is what a responder says for a serial it
// has no record of.
const (
	OCSPGood    = "good"
	OCSPRevoked = "revoked"
)

// OCSPResponse is one pre-signed OCSP answer (DESIGN §14): made by the one
// node that holds the CA's lead and served by every node from the store,
// so that all nodes give the same answer for a serial.
type OCSPResponse struct {
	CA         string
	Serial     string // lowercase hex, as the certificate record has it
	Status     string // OCSPGood or OCSPRevoked
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte // the signed OCSPResponse (RFC 6960 §4.2.1)
}

// RevokedEntry is what a CRL needs of one revoked certificate.
type RevokedEntry struct {
	Serial    string
	RevokedAt time.Time
	Reason    string
	NotAfter  time.Time // so the CRL builder can drop it once a CRL issued after notAfter carried it
}

// Sentinel errors every store returns (wrapped with context), so that the
// issuer can map them to answers without knowing the backend.
var (
	// ErrDuplicateSerial: Reserve was given a serial that is already taken.
	ErrDuplicateSerial = errors.New("serial number already reserved")
	// ErrNotFound: no certificate, CRL or checkpoint matches.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyRevoked: Revoke of a certificate that is revoked.
	ErrAlreadyRevoked = errors.New("certificate already revoked")
	// ErrNotRevocable: Revoke of a certificate that was never issued
	// (pending or aborted).
	ErrNotRevocable = errors.New("certificate was never issued")
	// ErrNotPending: Finalize or Abort (of a certificate or CRL) that is no
	// longer pending — it was resolved already.
	ErrNotPending = errors.New("not pending")
	// ErrCRLNumberUsed: ReserveCRL of a number not greater than every
	// number ever reserved for the CA (RFC 5280 §5.2.3: monotonically
	// increasing, so never reused even after an abort).
	ErrCRLNumberUsed = errors.New("CRL number already used")
	// ErrInvalidCheckpoint: AddCheckpoint of a checkpoint that does not
	// name an existing entry by its hash, or is not beyond the latest one.
	ErrInvalidCheckpoint = errors.New("invalid audit checkpoint")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrUnavailable: the database could not be reached or did not answer
	// in time (a PostgreSQL server that is down or restarting). Nothing
	// was signed on its account; the caller answers 503 with Retry-After
	// and the store recovers by itself once the database is back.
	ErrUnavailable = errors.New("database unavailable")
)

// NormalizeSerial turns a serial number as people write it (hex, any case,
// with or without colons, leading zeros or not; at most 20 octets, RFC 5280
// §4.1.2.2) into the form records keep: lowercase hex without leading
// zeros. Every path that takes a serial (API look-up and revocation, the
// command line) uses it, so one serial has one spelling.
func NormalizeSerial(s string) (string, bool) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if s == "" || len(s) > 40 {
		return "", false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return "", false
		}
	}
	if s = strings.TrimLeft(s, "0"); s == "" {
		s = "0"
	}
	return s, true
}
