package issuer

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// CAParams describe one certificate authority as the daemon loaded it.
type CAParams struct {
	Name        string
	Certificate *x509.Certificate
	// Parents are the issuer of Certificate first, the root last; each
	// link must verify (the daemon checks it; NewCA checks it again).
	Parents []*x509.Certificate
	// Signer is the CA key in the token; nil for a CA whose key pkid does
	// not hold (an offline root), which then only appears in chains.
	Signer                 crypto.Signer
	CRLURLs                []string
	IssuingCertificateURLs []string
	OCSPURLs               []string
	// PolicyOIDs go into every leaf's certificatePolicies extension, which
	// the Baseline Requirements (7.1.2.3) require for server_auth leaves.
	// Empty means anyPolicy (RFC 5280 §4.2.1.4).
	PolicyOIDs []x509.OID
}

// CA is a validated certificate authority. Build it with NewCA.
type CA struct {
	name       string
	cert       *x509.Certificate
	parents    []*x509.Certificate
	signer     crypto.Signer
	crlURLs    []string
	aiaURLs    []string
	ocspURLs   []string
	policies   []x509.OID
	issuerHash string
}

var anyPolicy = mustOID(2, 5, 29, 32, 0)

func mustOID(arcs ...uint64) x509.OID {
	oid, err := x509.OIDFromInts(arcs)
	if err != nil {
		panic(err)
	}
	return oid
}

// NewCA checks p and returns the CA: a CA certificate, parents that each
// sign the one below, and a signer (if any) whose public key is the
// certificate's.
func NewCA(p CAParams) (*CA, error) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if p.Name == "" {
		add("a name is required")
	}
	if p.Certificate == nil {
		return nil, fmt.Errorf("CA %s: a certificate is required", p.Name)
	}
	if !p.Certificate.IsCA || !p.Certificate.BasicConstraintsValid {
		add("its certificate is not a CA certificate")
	}
	child := p.Certificate
	for _, parent := range p.Parents {
		if err := child.CheckSignatureFrom(parent); err != nil {
			add("certificate %q is not signed by %q: %v", child.Subject.CommonName, parent.Subject.CommonName, err)
		}
		child = parent
	}
	if !bytes.Equal(child.RawIssuer, child.RawSubject) || child.CheckSignatureFrom(child) != nil {
		add("the chain ends at %q, which is not a self-signed root; configure its parent", child.Subject.CommonName)
	}
	if p.Signer != nil && !samePublicKey(p.Signer.Public(), p.Certificate.PublicKey) {
		add("the key in the token does not match the CA certificate")
	}
	if p.Signer != nil && signatureFamily(p.Certificate.PublicKey) == "" {
		add("unsupported CA key type %T", p.Certificate.PublicKey)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("CA %s: %s", p.Name, strings.Join(problems, "; "))
	}
	sum := sha256.Sum256(p.Certificate.Raw)
	ca := &CA{name: p.Name, cert: p.Certificate, parents: p.Parents, signer: p.Signer,
		crlURLs: p.CRLURLs, aiaURLs: p.IssuingCertificateURLs, ocspURLs: p.OCSPURLs,
		policies: p.PolicyOIDs, issuerHash: hex.EncodeToString(sum[:])}
	if len(ca.policies) == 0 {
		ca.policies = []x509.OID{anyPolicy}
	}
	return ca, nil
}

// Name is the CA's configured name.
func (ca *CA) Name() string { return ca.name }

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CanSign reports whether pkid holds the CA's key.
func (ca *CA) CanSign() bool { return ca.signer != nil }

// IssuerHash is the hex SHA-256 of the CA certificate DER, as records keep it.
func (ca *CA) IssuerHash() string { return ca.issuerHash }

// Lineage is the CA certificate followed by its parents up to the root.
func (ca *CA) Lineage() []*x509.Certificate {
	return append([]*x509.Certificate{ca.cert}, ca.parents...)
}

// Chain is the CA certificate, then its parents up to the root, as PEM
// joined by a newline; removeRoot drops a self-signed last element.
func (ca *CA) Chain(removeRoot bool) string {
	chain := ca.Lineage()
	if removeRoot {
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) {
			chain = chain[:len(chain)-1]
		}
	}
	parts := make([]string, len(chain))
	for k, c := range chain {
		parts[k] = pemString("CERTIFICATE", c.Raw)
	}
	return strings.Join(parts, "\n")
}

// errNoKey is returned when asked to sign with a chain-only CA.
var errNoKey = errors.New("pkid does not hold this CA's key")

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
