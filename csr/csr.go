package csr

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pkid/pkid/goodkey"
)

// Limits of DESIGN.md §11 and §1.
const (
	// MaxPEMChars is the longest CSR text accepted, after trimming.
	MaxPEMChars = 4096
	// MaxCommonNameChars is the longest subject CN accepted, as for the
	// commonName of the JSON API.
	MaxCommonNameChars = 100
)

// Request is a verified CSR, reduced to what pkid may take from it
// (DESIGN.md §11). Values are the CSR's raw strings; the caller
// canonicalizes them (policy.ParseSAN / ParseCommonName) before policy and
// signing.
type Request struct {
	DER          []byte // the CSR as received (DER), for the record
	PublicKey    crypto.PublicKey
	KeyAlgorithm string // pkid's API name (goodkey.KeyAlgorithm)
	CommonName   string // "" when the subject has none
	// AltNames are the subjectAltName entries in CSR order, with Type
	// "dns_name", "ip_address", "email" or "uri".
	AltNames []AltName
	// KeyUsages are pkid's names (digital_signature, …) in bit order; nil
	// when not requested.
	KeyUsages []string
	// ExtKeyUsages are pkid's names (client_auth, server_auth,
	// code_signing, email_protection, ocsp_signing, time_stamping) in CSR
	// order, duplicates dropped; nil when not requested.
	ExtKeyUsages []string
}

// AltName is one requested subject alternative name.
type AltName struct{ Type, Value string }

// AltName types, as the JSON API names them (DESIGN.md §1).
const (
	AltNameDNS   = "dns_name"
	AltNameIP    = "ip_address"
	AltNameEmail = "email"
	AltNameURI   = "uri"
)

// Error is a refusal of a CSR: the client's fault, answered 400. Its text is
// safe to send to the client and names the problem.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func refuse(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// Parse verifies the PEM-encoded CSR pemText and returns what pkid may take
// from it, in the order of checks the package documentation lists. A
// refusal is an [*Error]; any other error means keys is unusable (a
// programming error, not the client's).
func Parse(pemText string, keys *goodkey.Policy) (*Request, error) {
	if keys == nil {
		return nil, errors.New("csr: Parse needs a key policy")
	}

	// 1. PEM.
	der, err := decodePEM(pemText)
	if err != nil {
		return nil, err
	}

	// 2. DER. encoding/asn1 already refuses most non-DER encodings
	// (non-minimal lengths and integers, indefinite lengths); the outer
	// structure is parsed again here so that trailing bytes get a plain
	// refusal and the re-encoding check covers what asn1 lets through.
	var outer asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &outer); err == nil && len(rest) > 0 {
		return nil, refuse("CSR has %d bytes of data after its DER encoding", len(rest))
	}
	c, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuse("CSR is not a valid PKCS #10 request: %v", err)
	}
	tbs, err := parseStructure(der)
	if err != nil {
		return nil, err
	}

	// 3. Signature. CheckSignature refuses MD5 (and MD2) itself, as an
	// InsecureAlgorithmError; it still verifies SHA-1 for CSRs, which pkid
	// then refuses by name. A CSR's self-signature proves possession of the
	// private key (RFC 2986 §3); a forged one must never pass.
	if c.PublicKey == nil {
		return nil, refuse("CSR public key algorithm is not supported")
	}
	if err := c.CheckSignature(); err != nil {
		var insecure x509.InsecureAlgorithmError
		switch {
		case errors.As(err, &insecure):
			return nil, refuse("CSR is signed with %s, which is not accepted", c.SignatureAlgorithm)
		case errors.Is(err, x509.ErrUnsupportedAlgorithm):
			return nil, refuse("CSR signature algorithm is not supported")
		default:
			return nil, refuse("CSR signature does not verify")
		}
	}
	if weakSignature(c.SignatureAlgorithm) {
		return nil, refuse("CSR is signed with %s, which is not accepted", c.SignatureAlgorithm)
	}

	// 4. Key.
	if err := keys.Check(c.PublicKey); err != nil {
		var weak *goodkey.WeakKeyError
		if errors.As(err, &weak) {
			return nil, refuse("%s", weak.Reason)
		}
		return nil, fmt.Errorf("csr: checking the CSR's key: %w", err)
	}
	algorithm, err := goodkey.KeyAlgorithm(c.PublicKey)
	if err != nil {
		// Check accepts only keys KeyAlgorithm names, so this is a
		// disagreement inside pkid, not the client's fault.
		return nil, fmt.Errorf("csr: naming the CSR's key algorithm: %w", err)
	}

	// 5. Subject.
	cn, err := parseSubject(c.RawSubject)
	if err != nil {
		return nil, err
	}

	// 6 and 7. Attributes and the extensions they request.
	req := &Request{
		DER:          bytes.Clone(der),
		PublicKey:    c.PublicKey,
		KeyAlgorithm: algorithm,
		CommonName:   cn,
	}
	if err := parseAttributes(tbs.Attributes, req); err != nil {
		return nil, err
	}
	return req, nil
}

// decodePEM returns the DER of the single CSR block of text. It counts
// "-----BEGIN " markers itself rather than relying on pem.Decode, which
// skips text before a block and, when a block is malformed, goes on to the
// next one — either would let something other than the one block through.
func decodePEM(text string) ([]byte, error) {
	trimmed := strings.TrimSpace(text)
	if utf8.RuneCountInString(trimmed) > MaxPEMChars {
		return nil, refuse("CSR is longer than %d characters", MaxPEMChars)
	}
	if trimmed == "" {
		return nil, refuse("CSR is empty")
	}
	switch n := strings.Count(trimmed, "-----BEGIN "); {
	case n == 0:
		return nil, refuse("CSR contains no PEM block")
	case n > 1:
		return nil, refuse("CSR contains %d PEM blocks; exactly one is accepted", n)
	}
	if !strings.HasPrefix(trimmed, "-----BEGIN ") {
		return nil, refuse("CSR has text before its PEM block")
	}
	block, rest := pem.Decode([]byte(trimmed))
	if block == nil {
		return nil, refuse("CSR PEM block is malformed")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, refuse("CSR has text after its PEM block")
	}
	// RFC 7468 §7: "CERTIFICATE REQUEST"; "NEW CERTIFICATE REQUEST" is
	// what older tools (Netscape, Microsoft) wrote and is still met.
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, refuse("CSR PEM block is of type %q, not CERTIFICATE REQUEST", block.Type)
	}
	// RFC 7468 has no headers; RFC 1421 headers mean encryption or
	// another format.
	if len(block.Headers) > 0 {
		return nil, refuse("CSR PEM block has headers")
	}
	return block.Bytes, nil
}

// weakSignature reports the CSR signature algorithms pkid refuses by name:
// those built on MD2, MD5 or SHA-1, which have practical chosen-prefix
// collisions (RFC 6151; Leurent and Peyrin, "SHA-1 is a Shambles", 2020),
// so a signature made with them no longer proves what the signer signed.
// Every other algorithm crypto/x509 verifies uses SHA-2 or Ed25519, and
// goodkey then refuses any key that is not RSA or ECDSA.
func weakSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}
