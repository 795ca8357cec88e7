package record

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Audit actions.
const (
	ActionIssued             = "issued"
	ActionRefused            = "refused"
	ActionAborted            = "aborted"
	ActionRecovered          = "recovered" // a pending certificate or CRL resolved at start-up
	ActionRevoked            = "revoked"
	ActionCRL                = "crl"
	ActionRefusalsSuppressed = "refusals-suppressed" // one summary entry for refusals beyond the per-identity cap
)

// GenesisHash is the "previous hash" of the first audit entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditEvent is one entry of the hash-chained audit log.
type AuditEvent struct {
	Time          time.Time `json:"time"`
	Action        string    `json:"action"`
	RequestID     string    `json:"reqId"`
	Identity      string    `json:"identity"`
	Profile       string    `json:"profile"`
	Outcome       string    `json:"outcome"`
	Reason        string    `json:"reason,omitempty"`
	CertificateID string    `json:"certificateId,omitempty"`
	Serial        string    `json:"serialNumber,omitempty"`
	DERHash       string    `json:"derSha256,omitempty"` // SHA-256 hex of the certificate or CRL DER (issued, crl)
	CA            string    `json:"ca,omitempty"`
	CRLNumber     int64     `json:"crlNumber,omitempty"`
	Count         int       `json:"count,omitempty"` // for refusals-suppressed summaries
}

// eventJSON is AuditEvent with the time already formatted, so that
// encoding cannot fail (time.Time's MarshalJSON refuses years beyond 9999)
// and an instant encodes the same whatever its location. For an ordinary
// UTC time it produces exactly what json.Marshal(AuditEvent) produced in
// the previous release, so old and new entries read alike.
type eventJSON struct {
	Time          string `json:"time"`
	Action        string `json:"action"`
	RequestID     string `json:"reqId"`
	Identity      string `json:"identity"`
	Profile       string `json:"profile"`
	Outcome       string `json:"outcome"`
	Reason        string `json:"reason,omitempty"`
	CertificateID string `json:"certificateId,omitempty"`
	Serial        string `json:"serialNumber,omitempty"`
	DERHash       string `json:"derSha256,omitempty"`
	CA            string `json:"ca,omitempty"`
	CRLNumber     int64  `json:"crlNumber,omitempty"`
	Count         int    `json:"count,omitempty"`
}

// EncodeEvent returns the JSON body of ev that is stored and hashed. It is
// deterministic: the same event gives the same bytes in every store, which
// is what lets one verifier check a chain written by any backend or node.
func EncodeEvent(ev AuditEvent) string {
	b, err := json.Marshal(eventJSON{
		Time: ev.Time.UTC().Format(time.RFC3339Nano), Action: ev.Action, RequestID: ev.RequestID,
		Identity: ev.Identity, Profile: ev.Profile, Outcome: ev.Outcome, Reason: ev.Reason,
		CertificateID: ev.CertificateID, Serial: ev.Serial, DERHash: ev.DERHash, CA: ev.CA,
		CRLNumber: ev.CRLNumber, Count: ev.Count,
	})
	if err != nil {
		// Only strings and integers: json.Marshal cannot fail on them.
		panic(fmt.Sprintf("record: encoding audit event: %v", err))
	}
	return string(b)
}

// DecodeEvent parses a stored audit body.
func DecodeEvent(body string) (AuditEvent, error) {
	var ev AuditEvent
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		return AuditEvent{}, fmt.Errorf("decoding audit event: %w", err)
	}
	return ev, nil
}

// ChainHash commits an entry to its position, its content and the previous
// entry's hash: hex(SHA-256(prev + "\n" + seq + "\n" + body)). A store must
// keep this construction: the chains written by earlier releases use it.
func ChainHash(prevHash string, seq int64, body string) string {
	sum := sha256.Sum256([]byte(prevHash + "\n" + strconv.FormatInt(seq, 10) + "\n" + body))
	return hex.EncodeToString(sum[:])
}

// Checkpoint anchors the audit chain: the entry it covers up to (inclusive)
// and that entry's hash, signed with the audit key in the token so that a
// rewritten or truncated chain no longer matches it (DESIGN §6).
type Checkpoint struct {
	Seq       int64
	Hash      string
	Time      time.Time
	KeyID     string // hex SHA-256 of the audit public key's SubjectPublicKeyInfo DER
	Signature []byte // over SignedMessage(), by the audit key in the token
}

// SignedMessage is what the audit key signs. The version line keeps the
// signature from being valid for any other pkid message.
func (c Checkpoint) SignedMessage() []byte {
	return []byte("pkid audit checkpoint v1\n" + strconv.FormatInt(c.Seq, 10) + "\n" + c.Hash + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano) + "\n")
}

// AuditKeyID returns the key id a checkpoint carries for pub: the hex
// SHA-256 of its SubjectPublicKeyInfo DER.
func AuditKeyID(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding audit public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}

// CheckpointHash returns the hash the audit key signs with: SHA-256 for
// ECDSA P-256 and for RSA (PKCS #1 v1.5), SHA-384 for ECDSA P-384 — each
// curve with the hash of its strength, as RFC 5480 §4 pairs them.
func CheckpointHash(pub crypto.PublicKey) (crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, nil
		case elliptic.P384():
			return crypto.SHA384, nil
		}
		return 0, fmt.Errorf("audit key: unsupported curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		return crypto.SHA256, nil
	}
	return 0, fmt.Errorf("audit key: unsupported key type %T", pub)
}

// CheckpointDigest returns the hash and digest of c's signed message for
// pub, ready for crypto.Signer.Sign.
func CheckpointDigest(pub crypto.PublicKey, c Checkpoint) (crypto.Hash, []byte, error) {
	h, err := CheckpointHash(pub)
	if err != nil {
		return 0, nil, err
	}
	w := h.New()
	w.Write(c.SignedMessage())
	return h, w.Sum(nil), nil
}

// ErrBadCheckpointSignature is returned by VerifyCheckpoint when the
// signature does not verify with the key.
var ErrBadCheckpointSignature = errors.New("checkpoint signature does not verify")

// VerifyCheckpoint checks c's signature with pub (ECDSA signatures are
// ASN.1 DER, as crypto.Signer returns them).
func VerifyCheckpoint(pub crypto.PublicKey, c Checkpoint) error {
	h, digest, err := CheckpointDigest(pub, c)
	if err != nil {
		return err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, c.Signature) {
			return ErrBadCheckpointSignature
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, h, digest, c.Signature); err != nil {
			return ErrBadCheckpointSignature
		}
	}
	return nil
}
