// Package contract holds what every store backend must do identically and
// that is not SQL: validating what is reserved, filling in and checking the
// audit event of each write, and verifying the audit log. Backends call it
// so that SQLite and PostgreSQL cannot drift apart on the rules the
// contract suite (store/storetest) checks.
package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
)

// DERHash is the hex SHA-256 of der, as derSha256 carries it.
func DERHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func isHex(s string, n int) bool {
	if n > 0 && len(s) != n || s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// ValidateCertificate checks a reservation before it is stored. The hashes
// of what is about to be signed are required because they are the point of
// reserving first: after a crash they say what the token may have signed
// (DESIGN §5). A CSR's hash is filled in when empty.
func ValidateCertificate(c *record.Certificate) error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("no id"))
	}
	if !isHex(c.Serial, 0) {
		// Look-ups compare the text, so one spelling only (DESIGN §12).
		errs = append(errs, fmt.Errorf("serial %q is not lowercase hex", c.Serial))
	}
	if c.CA == "" {
		errs = append(errs, errors.New("no CA"))
	}
	if !isHex(c.TBSHash, 64) {
		errs = append(errs, fmt.Errorf("TBS hash %q is not a hex SHA-256", c.TBSHash))
	}
	if !isHex(c.IssuerHash, 64) {
		errs = append(errs, fmt.Errorf("issuer hash %q is not a hex SHA-256", c.IssuerHash))
	}
	if c.CSR != nil {
		if c.CSRHash == "" {
			c.CSRHash = DERHash(c.CSR)
		} else if c.CSRHash != DERHash(c.CSR) {
			errs = append(errs, errors.New("CSR hash does not match the CSR"))
		}
	}
	if c.CreatedAt.IsZero() {
		errs = append(errs, errors.New("no creation time"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid certificate reservation %s: %w", c.ID, err)
	}
	return nil
}

// ValidateCRL checks a CRL reservation before it is stored (the number is
// the backend's to check: it needs the CA's history).
func ValidateCRL(c *record.CRL) error {
	var errs []error
	if c.CA == "" {
		errs = append(errs, errors.New("no CA"))
	}
	if !isHex(c.TBSHash, 64) {
		errs = append(errs, fmt.Errorf("TBS hash %q is not a hex SHA-256", c.TBSHash))
	}
	if c.ThisUpdate.IsZero() || !c.NextUpdate.After(c.ThisUpdate) {
		// RFC 5280 §5.1.2.5: nextUpdate is later than thisUpdate.
		errs = append(errs, errors.New("nextUpdate is not after thisUpdate"))
	}
	if c.CreatedAt.IsZero() {
		errs = append(errs, errors.New("no creation time"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid CRL reservation %s #%d: %w", c.CA, c.Number, err)
	}
	return nil
}

// fill sets *field to want when it is empty and refuses a different value,
// so an event cannot contradict the record it is written with.
func fill(name string, field *string, want string) error {
	switch *field {
	case "":
		*field = want
	case want:
	default:
		return fmt.Errorf("audit event %s %q does not match %q", name, *field, want)
	}
	return nil
}

func checkTime(ev record.AuditEvent) error {
	if ev.Time.IsZero() {
		return errors.New("audit event has no time")
	}
	return nil
}

// FinalizeEvent is the event Finalize appends for certificate id (serial)
// issued as der.
func FinalizeEvent(ev record.AuditEvent, id, serial string, der []byte) (record.AuditEvent, error) {
	if len(der) == 0 {
		return ev, errors.New("no certificate DER")
	}
	return ev, errors.Join(checkTime(ev), fill("action", &ev.Action, record.ActionIssued),
		fill("certificateId", &ev.CertificateID, id), fill("serialNumber", &ev.Serial, serial),
		fill("derSha256", &ev.DERHash, DERHash(der)))
}

// AbortEvent is the event Abort appends; its action is the caller's (a
// refusal after reservation, or aborted). A DER kept for forensics is
// hashed into it.
func AbortEvent(ev record.AuditEvent, id, serial string, der []byte) (record.AuditEvent, error) {
	errs := []error{checkTime(ev), fill("certificateId", &ev.CertificateID, id), fill("serialNumber", &ev.Serial, serial)}
	if ev.Action == "" || stateAction(ev.Action) {
		errs = append(errs, fmt.Errorf("audit event action %q cannot abort a certificate", ev.Action))
	}
	if der != nil {
		errs = append(errs, fill("derSha256", &ev.DERHash, DERHash(der)))
	}
	return ev, errors.Join(errs...)
}

// RevokeEvent is the event Revoke appends.
func RevokeEvent(ev record.AuditEvent, id, serial, ca string) (record.AuditEvent, error) {
	return ev, errors.Join(checkTime(ev), fill("action", &ev.Action, record.ActionRevoked),
		fill("certificateId", &ev.CertificateID, id), fill("serialNumber", &ev.Serial, serial), fill("ca", &ev.CA, ca))
}

// RefuseEvent checks the event Refuse appends: it may not claim an action
// that the verifier expects to find a record for.
func RefuseEvent(ev record.AuditEvent) (record.AuditEvent, error) {
	if ev.Action == "" || stateAction(ev.Action) {
		return ev, fmt.Errorf("audit event action %q cannot be appended alone", ev.Action)
	}
	return ev, checkTime(ev)
}

// CRLEvent is the event FinalizeCRL appends for CRL number of ca.
func CRLEvent(ev record.AuditEvent, ca string, number int64, der []byte) (record.AuditEvent, error) {
	if len(der) == 0 {
		return ev, errors.New("no CRL DER")
	}
	return ev, errors.Join(checkTime(ev), fill("action", &ev.Action, record.ActionCRL), fill("ca", &ev.CA, ca),
		fillNumber(&ev.CRLNumber, number), fill("derSha256", &ev.DERHash, DERHash(der)))
}

// AbortCRLEvent is the event AbortCRL appends.
func AbortCRLEvent(ev record.AuditEvent, ca string, number int64) (record.AuditEvent, error) {
	errs := []error{checkTime(ev), fill("ca", &ev.CA, ca), fillNumber(&ev.CRLNumber, number)}
	if ev.Action == "" || stateAction(ev.Action) {
		errs = append(errs, fmt.Errorf("audit event action %q cannot abort a CRL", ev.Action))
	}
	return ev, errors.Join(errs...)
}

// RecoveredCertificateEvent and RecoveredCRLEvent are the entries
// AbortPending appends.
func RecoveredCertificateEvent(c *record.Certificate, reason string, at time.Time) record.AuditEvent {
	return record.AuditEvent{Time: at, Action: record.ActionRecovered, RequestID: c.RequestID, Identity: c.Identity,
		Profile: c.Profile, Outcome: record.StatusAborted, Reason: reason, CertificateID: c.ID, Serial: c.Serial, CA: c.CA}
}

// RecoveredCRLEvent: see RecoveredCertificateEvent.
func RecoveredCRLEvent(ca string, number int64, reason string, at time.Time) record.AuditEvent {
	return record.AuditEvent{Time: at, Action: record.ActionRecovered, Outcome: record.StatusAborted, Reason: reason,
		CA: ca, CRLNumber: number}
}

func fillNumber(field *int64, want int64) error {
	switch *field {
	case 0:
		*field = want
	case want:
	default:
		return fmt.Errorf("audit event crlNumber %d does not match %d", *field, want)
	}
	return nil
}

// stateAction reports the actions the verifier cross-checks against
// records; only the write that makes the record so may append them.
func stateAction(a string) bool {
	switch a {
	case record.ActionIssued, record.ActionRevoked, record.ActionCRL, record.ActionRecovered:
		return true
	}
	return false
}

// ValidateOCSPResponses checks answers before they are stored: each names
// its certificate the way the records do, says good or revoked (unknown
// is never stored) and has a validity window and a signed body. A batch
// that names one certificate twice is refused, since which answer would
// win would depend on the backend.
func ValidateOCSPResponses(rs []record.OCSPResponse) error {
	var errs []error
	seen := make(map[[2]string]bool, len(rs))
	for k, r := range rs {
		var e []error
		if r.CA == "" {
			e = append(e, errors.New("no CA"))
		}
		if !isHex(r.Serial, 0) {
			e = append(e, fmt.Errorf("serial %q is not lowercase hex", r.Serial))
		}
		if r.Status != record.OCSPGood && r.Status != record.OCSPRevoked {
			e = append(e, fmt.Errorf("status %q is neither good nor revoked", r.Status))
		}
		if r.ThisUpdate.IsZero() || !r.NextUpdate.After(r.ThisUpdate) {
			// RFC 6960 §4.2.2.1: nextUpdate, when set, is after thisUpdate;
			// pkid always sets it (pre-signed answers expire).
			e = append(e, errors.New("nextUpdate is not after thisUpdate"))
		}
		if len(r.DER) == 0 {
			e = append(e, errors.New("no DER"))
		}
		key := [2]string{r.CA, r.Serial}
		if seen[key] {
			e = append(e, errors.New("given twice"))
		}
		seen[key] = true
		if err := errors.Join(e...); err != nil {
			errs = append(errs, fmt.Errorf("OCSP answer %d (%s %s): %w", k, r.CA, r.Serial, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid OCSP answers: %w", err)
	}
	return nil
}

// ValidateNode checks a node name for Heartbeat. "" is refused: it stands
// for the records made before nodes had names, which any node may resolve.
func ValidateNode(node string) error {
	if node == "" {
		return errors.New("a heartbeat needs a node name")
	}
	return nil
}

// ValidateToken checks a token revocation.
func ValidateToken(jti string, expiresAt time.Time) error {
	var errs []error
	if jti == "" {
		errs = append(errs, errors.New("no token id"))
	}
	if expiresAt.IsZero() {
		errs = append(errs, errors.New("no expiry"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid token revocation: %w", err)
	}
	return nil
}

// StaleBefore is the heartbeat time before which a node counts as gone for
// AbortPending: a heartbeat older than at − staleAfter.
func StaleBefore(at time.Time, staleAfter time.Duration) time.Time { return at.Add(-staleAfter) }

// ResolveVerb names the move of a pending row to status, for errors:
// "finalizing" (issued) or "aborting" (aborted).
func ResolveVerb(status string) string {
	if status == record.StatusIssued {
		return "finalizing"
	}
	return "aborting"
}

// ResolveCertificate checks that a certificate that is have may move to
// status (issued or aborted) — only a pending one may — and returns ev
// filled in for that move.
func ResolveCertificate(have, status string, ev record.AuditEvent, id, serial string, der []byte) (record.AuditEvent, error) {
	verb := ResolveVerb(status)
	if have != record.StatusPending {
		return ev, fmt.Errorf("%s certificate %s: it is %s: %w", verb, id, have, record.ErrNotPending)
	}
	var err error
	if status == record.StatusIssued {
		ev, err = FinalizeEvent(ev, id, serial, der)
	} else {
		ev, err = AbortEvent(ev, id, serial, der)
	}
	if err != nil {
		return ev, fmt.Errorf("%s certificate %s: %w", verb, id, err)
	}
	return ev, nil
}

// RevokeCertificate checks that a certificate that is have may be revoked
// — only an issued one may — and returns ev filled in for the revocation.
func RevokeCertificate(have string, ev record.AuditEvent, id, serial, ca string) (record.AuditEvent, error) {
	switch have {
	case record.StatusIssued:
	case record.StatusRevoked:
		return ev, fmt.Errorf("revoking certificate %s: %w", id, record.ErrAlreadyRevoked)
	default:
		return ev, fmt.Errorf("revoking certificate %s: it is %s: %w", id, have, record.ErrNotRevocable)
	}
	ev, err := RevokeEvent(ev, id, serial, ca)
	if err != nil {
		return ev, fmt.Errorf("revoking certificate %s: %w", id, err)
	}
	return ev, nil
}

// ResolveCRL checks that a CRL that is have may move to status (issued or
// aborted) — only a pending one may — and returns ev filled in for that
// move.
func ResolveCRL(have, status string, ev record.AuditEvent, ca string, number int64, der []byte) (record.AuditEvent, error) {
	verb := ResolveVerb(status)
	if have != record.StatusPending {
		return ev, fmt.Errorf("%s CRL %d of %s: it is %s: %w", verb, number, ca, have, record.ErrNotPending)
	}
	var err error
	if status == record.StatusIssued {
		ev, err = CRLEvent(ev, ca, number, der)
	} else {
		ev, err = AbortCRLEvent(ev, ca, number)
	}
	if err != nil {
		return ev, fmt.Errorf("%s CRL %d of %s: %w", verb, number, ca, err)
	}
	return ev, nil
}
