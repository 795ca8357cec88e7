// Package record holds the data types that the issuance pipeline hands to
// a certificate store: the record of one certificate and one audit event.
// It has no behaviour, so that the issuer and the store implementations can
// share it without depending on each other.
package record

import (
	"errors"
	"time"
)

// Status of a certificate record.
const (
	StatusPending = "pending" // serial reserved; the token may or may not have signed
	StatusIssued  = "issued"  // signed, verified, recorded
	StatusAborted = "aborted" // refused or failed before a valid certificate was returned
)

// AltName is a subject alternative name with its declared type.
type AltName struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Record is the stored intent to issue and, once issued, the certificate.
// It never holds a private key.
type Record struct {
	ID                 string
	Serial             string // lowercase hex, as openssl prints it
	Profile            string
	CA                 string
	Identity           string
	RequestID          string
	CommonName         string
	AltNames           []AltName
	KeyUsages          []string
	ExtKeyUsages       []string
	SignatureAlgorithm string
	KeyAlgorithm       string
	NotBefore          time.Time
	NotAfter           time.Time
	Status             string
	DER                []byte
	CreatedAt          time.Time
}

// AuditEvent is one entry of the hash-chained audit log.
type AuditEvent struct {
	Time          time.Time `json:"time"`
	Action        string    `json:"action"` // "issued" or "refused"
	RequestID     string    `json:"reqId"`
	Identity      string    `json:"identity"`
	Profile       string    `json:"profile"`
	Outcome       string    `json:"outcome"`
	Reason        string    `json:"reason,omitempty"`
	CertificateID string    `json:"certificateId,omitempty"`
	Serial        string    `json:"serialNumber,omitempty"`
}

// ErrDuplicateSerial is returned by a store's Reserve when the serial is
// already taken.
var ErrDuplicateSerial = errors.New("serial number already reserved")
