// Package ceremony builds the certificates of a key ceremony: a self-signed
// root, an intermediate signed by its parent, and the TLS certificates the
// daemon and its clients use for mutual TLS. Every CA key involved is a
// crypto.Signer backed by the token; only TLS leaf keys are generated here,
// in software, and returned to be written to disk.
package ceremony

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// CASpec describes a CA certificate.
type CASpec struct {
	CommonName   string
	Organization string
	Validity     time.Duration
	// MaxPathLen limits the CAs below this one; -1 means unlimited.
	MaxPathLen int
}

func (s CASpec) template(now time.Time) (*x509.Certificate, error) {
	if s.CommonName == "" || s.Validity <= 0 {
		return nil, errors.New("a CA needs a common name and a positive validity")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: s.CommonName}
	if s.Organization != "" {
		subject.Organization = []string{s.Organization}
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:              now.Add(s.Validity).Truncate(time.Second),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// RFC 5280 §4.2.1.3: a CA signs certificates and CRLs.
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	switch {
	case s.MaxPathLen < 0:
		t.MaxPathLen = -1
	case s.MaxPathLen == 0:
		t.MaxPathLenZero = true
	default:
		t.MaxPathLen = s.MaxPathLen
	}
	return t, nil
}

// SelfSigned makes a root certificate for the token key signer.
func SelfSigned(signer crypto.Signer, spec CASpec, now time.Time) (*x509.Certificate, error) {
	t, err := spec.template(now)
	if err != nil {
		return nil, err
	}
	return create(t, t, signer.Public(), signer)
}

// Intermediate makes a CA certificate for pub, signed by the parent's token
// key. The child's validity is cut to end no later than the parent's.
func Intermediate(parent *x509.Certificate, parentSigner crypto.Signer, pub crypto.PublicKey, spec CASpec, now time.Time) (*x509.Certificate, error) {
	if !parent.IsCA {
		return nil, errors.New("the parent certificate is not a CA")
	}
	t, err := spec.template(now)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.After(parent.NotAfter) {
		t.NotAfter = parent.NotAfter
	}
	return create(t, parent, pub, parentSigner)
}

// TLSSpec describes a TLS leaf for the API listener or a client.
type TLSSpec struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL
	Server     bool
	Client     bool
	Validity   time.Duration
}

// TLSLeaf issues a TLS certificate with a fresh P-256 key, signed by the CA
// key in the token, and returns both as PEM (the key as PKCS#8).
func TLSLeaf(ca *x509.Certificate, caSigner crypto.Signer, spec TLSSpec, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating TLS key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.CommonName},
		NotBefore:             now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:              now.Add(spec.Validity).Truncate(time.Second),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
		URIs:                  spec.URIs,
	}
	if t.NotAfter.After(ca.NotAfter) {
		t.NotAfter = ca.NotAfter
	}
	if spec.Server {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	cert, err := create(t, ca, key.Public(), caSigner)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding TLS key: %w", err)
	}
	return PEM(cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func create(t, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", t.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(parent); err != nil && parent != t {
		return nil, fmt.Errorf("verifying new certificate: %w", err)
	}
	return cert, nil
}

func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ReadCertificate parses the first certificate of a PEM file's content.
func ReadCertificate(pemBytes []byte) (*x509.Certificate, error) {
	certs, err := ReadCertificates(pemBytes)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ReadCertificates parses every CERTIFICATE block; at least one is required.
func ReadCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}
