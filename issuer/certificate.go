package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 and SHA-512 for crypto.Hash.New
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"

	"github.com/pkid/pkid/policy"
)

var keyUsageBits = map[string]x509.KeyUsage{
	"digital_signature": x509.KeyUsageDigitalSignature,
	"key_encipherment":  x509.KeyUsageKeyEncipherment,
	"non_repudiation":   x509.KeyUsageContentCommitment,
	"data_encipherment": x509.KeyUsageDataEncipherment,
	"key_agreement":     x509.KeyUsageKeyAgreement,
	"key_cert_sign":     x509.KeyUsageCertSign,
	"crl_sign":          x509.KeyUsageCRLSign,
	"encipher_only":     x509.KeyUsageEncipherOnly,
	"decipher_only":     x509.KeyUsageDecipherOnly,
}

var extKeyUsages = map[string]x509.ExtKeyUsage{
	"client_auth":      x509.ExtKeyUsageClientAuth,
	"server_auth":      x509.ExtKeyUsageServerAuth,
	"code_signing":     x509.ExtKeyUsageCodeSigning,
	"email_protection": x509.ExtKeyUsageEmailProtection,
	"ocsp_signing":     x509.ExtKeyUsageOCSPSigning,
	"time_stamping":    x509.ExtKeyUsageTimeStamping,
}

var signatureAlgorithms = map[string]x509.SignatureAlgorithm{
	"RSA-SHA256":   x509.SHA256WithRSA,
	"RSA-SHA384":   x509.SHA384WithRSA,
	"RSA-SHA512":   x509.SHA512WithRSA,
	"ECDSA-SHA256": x509.ECDSAWithSHA256,
	"ECDSA-SHA384": x509.ECDSAWithSHA384,
	"ECDSA-SHA512": x509.ECDSAWithSHA512,
}

// GenerateLeafKey creates a software key for the API key algorithm name.
// RSA keys use e = 65537 (crypto/rsa's fixed exponent).
func GenerateLeafKey(r io.Reader, keyAlgorithm string) (crypto.Signer, error) {
	switch keyAlgorithm {
	case "RSA_2048":
		return rsa.GenerateKey(r, 2048)
	case "RSA_3072":
		return rsa.GenerateKey(r, 3072)
	case "RSA_4096":
		return rsa.GenerateKey(r, 4096)
	case "EC_prime256v1":
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case "EC_secp384r1":
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case "EC_secp521r1":
		return ecdsa.GenerateKey(elliptic.P521(), r)
	}
	return nil, fmt.Errorf("unknown key algorithm %q", keyAlgorithm)
}

// KeyAlgorithmOf names a public key in the API's vocabulary ("EC_prime256v1",
// "RSA_3072", ...); other sizes are reported as RSA_<bits>.
func KeyAlgorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA_%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "EC_prime256v1"
		case elliptic.P384():
			return "EC_secp384r1"
		case elliptic.P521():
			return "EC_secp521r1"
		}
		return "EC_" + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

// signatureFamily is "RSA" or "ECDSA" for a CA public key, "" for others.
func signatureFamily(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	}
	return ""
}

// throwawayRSABits is the size of the throw-away key for RSA CAs. The TBS
// does not depend on the signing key's size (the signature algorithm
// identifier names only the hash, RFC 4055 §5), so a 2048-bit key yields
// the CA's exact TBS while costing a fraction of a 3072- or 4096-bit one
// per certificate and at every start, reload and check-config.
const throwawayRSABits = 2048

// newThrowawayKey creates a software key of the same type as pub (same
// curve for EC), for signing the pre-issuance lint copy.
func newThrowawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, min(k.N.BitLen(), throwawayRSABits))
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	}
	return nil, fmt.Errorf("unsupported CA key type %T", pub)
}

// newSerial returns a positive 20-octet serial with 158 random bits: the top
// bit is cleared so the DER INTEGER needs no sign octet (RFC 5280 §4.1.2.2
// allows at most 20 octets) and the next bit is set so every serial has the
// same length.
func newSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 20)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("reading random serial: %w", err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// subjectKeyID is the RFC 7093 §2 method 1 key identifier: the leftmost 160
// bits of the SHA-256 hash of the subjectPublicKey BIT STRING.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decoding public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// applyAltNames adds the canonical SANs to the template: the certificate
// encodes exactly the values the policy matched and the record keeps.
func applyAltNames(t *x509.Certificate, sans []policy.SAN) error {
	for _, s := range sans {
		switch s.Type() {
		case policy.SANDNS:
			t.DNSNames = append(t.DNSNames, s.Value())
		case policy.SANIP:
			t.IPAddresses = append(t.IPAddresses, net.IP(s.IP().AsSlice()))
		case policy.SANEmail:
			t.EmailAddresses = append(t.EmailAddresses, s.Value())
		case policy.SANURI:
			t.URIs = append(t.URIs, s.URI())
		default:
			return fmt.Errorf("unknown SAN type %q", s.Type())
		}
	}
	return nil
}

// hashes maps the signature algorithms pkid uses to their digests.
var hashes = map[x509.SignatureAlgorithm]crypto.Hash{
	x509.SHA256WithRSA: crypto.SHA256, x509.SHA384WithRSA: crypto.SHA384, x509.SHA512WithRSA: crypto.SHA512,
	x509.ECDSAWithSHA256: crypto.SHA256, x509.ECDSAWithSHA384: crypto.SHA384, x509.ECDSAWithSHA512: crypto.SHA512,
}

// signedASN1 is the outer structure shared by certificates (RFC 5280
// §4.1) and CRLs (§5.1): the to-be-signed bytes, the algorithm, the
// signature.
type signedASN1 struct {
	TBS       asn1.RawValue
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

// signTBS has signer sign tbs — the exact bytes that were linted, taken
// from signedCopy, the lint copy signed by a throw-away key — and returns
// the structure reassembled from that TBS, the same signatureAlgorithm and
// the new signature. Nothing is re-encoded between the lint and the
// signature (Boulder's prepare-then-issue).
func signTBS(r io.Reader, signer crypto.Signer, signedCopy, tbs []byte, alg x509.SignatureAlgorithm) ([]byte, error) {
	h, ok := hashes[alg]
	if !ok {
		return nil, fmt.Errorf("unsupported signature algorithm %v", alg)
	}
	var outer signedASN1
	if rest, err := asn1.Unmarshal(signedCopy, &outer); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("decoding the lint copy: %v", err)
	}
	if !bytes.Equal(outer.TBS.FullBytes, tbs) {
		return nil, errors.New("the lint copy does not hold the TBS to sign")
	}
	d := h.New()
	d.Write(tbs)
	sig, err := signer.Sign(r, d.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	outer.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	der, err := asn1.Marshal(outer)
	if err != nil {
		return nil, fmt.Errorf("encoding the signed structure: %w", err)
	}
	return der, nil
}

// verifySigned checks the assembled structure: its TBS is byte for byte
// the linted one, and its signature verifies with the CA certificate's
// public key (not the key the token says it used).
func verifySigned(der, tbs []byte, alg x509.SignatureAlgorithm, ca *x509.Certificate) error {
	var outer signedASN1
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) > 0 {
		return fmt.Errorf("decoding the signed structure: %v", err)
	}
	if !bytes.Equal(outer.TBS.FullBytes, tbs) {
		return errors.New("signed TBS differs from the linted TBS")
	}
	if err := ca.CheckSignature(alg, outer.TBS.FullBytes, outer.Signature.RightAlign()); err != nil {
		return fmt.Errorf("signature does not verify with the CA certificate: %w", err)
	}
	return nil
}
