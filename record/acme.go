package record

import (
	"errors"
	"time"
)

// The ACME server's objects (RFC 8555 §7.1, DESIGN §17) as a store keeps
// them. They are not evidence: the certificate records and the audit log
// are, and an ACME certificate has both like any other. These are the
// protocol's state — who holds which account key, what an order asked
// for, which challenges passed — shared through the store so that every
// node of a cluster answers alike.

// Statuses of ACME objects (RFC 8555 §7.1.6). A store keeps only the
// statuses that are decisions; "ready" and "expired" are derived from the
// authorizations and the clock when an object is read.
const (
	ACMEPending     = "pending"
	ACMEReady       = "ready"
	ACMEProcessing  = "processing"
	ACMEValid       = "valid"
	ACMEInvalid     = "invalid"
	ACMEDeactivated = "deactivated"
	ACMEExpired     = "expired"
)

// ACMEAccount is one ACME account of one profile's directory.
type ACMEAccount struct {
	ID        string
	ProfileID string
	// KeyID is the RFC 7638 SHA-256 thumbprint (base64url) of the
	// account's public key: unique per profile, so one key is one account.
	KeyID    string
	Key      []byte // the public key as a JWK (JSON)
	Contacts []string
	Status   string // ACMEValid or ACMEDeactivated
	// EABKeyID is the external account binding key the account was
	// created with (RFC 8555 §7.3.4), or "".
	EABKeyID  string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ACMEEABKey is an external account binding key. The store keeps only a
// hash of its MAC key: the MAC key itself is derived from a secret the
// daemon holds, so a copy of the database cannot bind accounts.
type ACMEEABKey struct {
	KeyID     string
	ProfileID string
	KeyHash   string    // hex SHA-256 of the MAC key
	AccountID string    // "" until an account binds it; a key binds one account, once
	CreatedAt time.Time // when pkid acme eab add made it
	BoundAt   time.Time // zero until bound
}

// ACMEIdentifier is an order's identifier (RFC 8555 §9.7.7: "dns", and
// RFC 8738: "ip"), its value canonical (DESIGN §3).
type ACMEIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ACMEOrder is one order. Status is what was decided — pending,
// processing, valid or invalid; a pending order whose authorizations are
// all valid reads as ready.
type ACMEOrder struct {
	ID               string
	AccountID        string
	ProfileID        string
	Status           string
	Identifiers      []ACMEIdentifier
	AuthorizationIDs []string
	NotBefore        time.Time // zero: not requested
	NotAfter         time.Time // zero: not requested
	Expires          time.Time
	Problem          []byte // the problem document (JSON) that made it invalid; nil otherwise
	CertificateID    string // the certificate record once valid
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// ACMEAuthorization is the authorization of one identifier of one order
// (pkid does not reuse authorizations across orders).
type ACMEAuthorization struct {
	ID         string
	OrderID    string
	AccountID  string
	ProfileID  string
	Identifier ACMEIdentifier // for a wildcard, the name without "*."
	Wildcard   bool
	Status     string // pending, valid, invalid or deactivated
	Expires    time.Time
	Challenges []ACMEChallenge // in the order they were offered
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ACMEChallenge is one challenge of an authorization, named by its type.
type ACMEChallenge struct {
	Type      string // http-01, dns-01 or tls-alpn-01
	Token     string
	Status    string // pending, processing, valid or invalid
	Validated time.Time
	Problem   []byte // the problem document (JSON) of a failed validation
	UpdatedAt time.Time
}

// Errors of the ACME part of a store (wrapped with context).
var (
	// ErrACMEKeyInUse: another account of the profile has that key.
	ErrACMEKeyInUse = errors.New("an ACME account with this key exists")
	// ErrEABKeyUsed: the external account binding key is bound already,
	// or belongs to another profile.
	ErrEABKeyUsed = errors.New("external account binding key already used")
	// ErrACMEStateChanged: a conditional update found the object no longer
	// in the state it expected (another request or node moved it first).
	ErrACMEStateChanged = errors.New("ACME object changed state")
)
