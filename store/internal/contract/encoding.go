package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
)

// Both stores keep times and lists as text, in the same encoding, so that
// `pkid store migrate` copies values as they are and the two backends
// order and compare them alike.

// timeLayout writes every fractional digit, so that text order is time
// order (RFC 3339Nano trims trailing zeros, and "…:00Z" > "…:00.5Z").
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// TimeText is t in UTC in the stores' fixed-width layout.
func TimeText(t time.Time) string { return t.UTC().Format(timeLayout) }

// OptionalTime is TimeText, or "" for the zero time, so that a record that
// was never revoked has no revocation time rather than year 1.
func OptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return TimeText(t)
}

// ParseTime decodes TimeText's and OptionalTime's text ("" is the zero
// time); RFC3339Nano also reads schema version 1's trimmed layout.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("decoding time %q: %w", s, err)
	}
	return t, nil
}

// JSONText is s as a JSON array; a nil slice is [].
func JSONText[T any](s []T) string {
	if s == nil {
		s = []T{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		// Slices of strings and of string pairs: json.Marshal cannot fail.
		panic(fmt.Sprintf("encoding %T: %v", s, err))
	}
	return string(b)
}

// CertificateColumns are the certificates table's columns in the order
// ScanCertificate reads them.
const CertificateColumns = `id, serial, profile_id, profile, ca, issuer_hash, identity, request_id, certificate_request_id,
	application_id, common_name, alt_names, key_usages, ext_key_usages, signature_algorithm, key_algorithm,
	not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der, revoked_at, revocation_reason,
	node, created_at, updated_at`

// ScanCertificate reads a row of CertificateColumns with scan (a row's or
// a result set's Scan) and decodes its lists and times. A Scan error is
// returned as it is.
func ScanCertificate(scan func(dest ...any) error) (*record.Certificate, error) {
	var c record.Certificate
	var alt, ku, eku []byte
	var nb, na, revoked, created, updated string
	if err := scan(&c.ID, &c.Serial, &c.ProfileID, &c.Profile, &c.CA, &c.IssuerHash, &c.Identity, &c.RequestID,
		&c.CertificateRequestID, &c.ApplicationID, &c.CommonName, &alt, &ku, &eku, &c.SignatureAlgorithm,
		&c.KeyAlgorithm, &nb, &na, &c.TBSHash, &c.CSR, &c.CSRHash, &c.Renews, &c.Status, &c.DER, &revoked,
		&c.RevocationReason, &c.Node, &created, &updated); err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range []struct {
		text []byte
		into any
	}{{alt, &c.AltNames}, {ku, &c.KeyUsages}, {eku, &c.ExtKeyUsages}} {
		if err := json.Unmarshal(f.text, f.into); err != nil {
			errs = append(errs, fmt.Errorf("decoding column: %w", err))
		}
	}
	var err error
	for _, t := range []struct {
		text string
		into *time.Time
	}{{nb, &c.NotBefore}, {na, &c.NotAfter}, {revoked, &c.RevokedAt}, {created, &c.CreatedAt}, {updated, &c.UpdatedAt}} {
		if *t.into, err = ParseTime(t.text); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("certificate record %s: %w", c.ID, err)
	}
	return &c, nil
}
