package daemon

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/policy"
)

// The key ceremony (`pkid ca …`) runs outside the daemon, before it serves:
// it generates keys inside the token and signs CA certificates and the mTLS
// material of the API listener. It is not the issuance pipeline — it never
// signs a certificate pkid serves to API clients — and it never holds a CA
// private key: every signature is made by the token.

// CASpec describes a CA certificate made by the ceremony.
type CASpec = ceremony.CASpec

// KeyType names the key types the ceremony creates (ec-p256, rsa-3072, …).
type KeyType = hsm.KeyType

// TokenParams select the token of a ceremony; the PIN comes from PINFile
// or the environment variable PKID_HSM_PIN.
type TokenParams struct {
	Module, TokenLabel, PINFile string
}

// Ceremony is an open token for key-ceremony commands.
type Ceremony struct {
	tok *hsm.Token
	now time.Time
}

// OpenCeremony opens and logs in to the token.
func OpenCeremony(p TokenParams) (*Ceremony, error) {
	pin, err := HSMConfig{PINFile: p.PINFile}.ReadPIN()
	if err != nil {
		return nil, err
	}
	tok, err := hsm.Open(hsm.Config{Module: p.Module, TokenLabel: p.TokenLabel, PIN: pin})
	if err != nil {
		return nil, err
	}
	return &Ceremony{tok: tok, now: time.Now()}, nil
}

// Close logs out of the token.
func (c *Ceremony) Close() error { return c.tok.Close() }

// ParseValidity parses a validity in the ms duration grammar (e.g. "10y").
func ParseValidity(s string) (time.Duration, error) { return policy.ParseDuration(s) }

// CreateRoot generates a CA key labelled label in the token and writes its
// self-signed certificate to out.
func (c *Ceremony) CreateRoot(label string, kt KeyType, spec CASpec, out string) (*x509.Certificate, error) {
	return c.selfSigned(c.tok.GenerateCAKey, label, kt, spec, out)
}

func (c *Ceremony) selfSigned(generate func(string, hsm.KeyType) (crypto.Signer, error), label string, kt KeyType,
	spec CASpec, out string) (*x509.Certificate, error) {
	if err := refuseExisting(out); err != nil {
		return nil, err
	}
	signer, err := generate(label, kt)
	if err != nil {
		return nil, err
	}
	cert, err := ceremony.SelfSigned(signer, spec, c.now)
	if err != nil {
		return nil, err
	}
	return cert, writeFile(out, ceremony.PEM(cert), 0o644)
}

// CreateMTLSCA generates the key of the mTLS CA — the CA that certifies
// only the API listener and its clients — and writes its self-signed
// certificate (path length 0) to out. Its key carries the mTLS marker:
// issue-tls signs with no other key, and the daemon accepts it as no CA,
// audit or OCSP key.
func (c *Ceremony) CreateMTLSCA(label string, kt KeyType, spec CASpec, out string) (*x509.Certificate, error) {
	spec.MaxPathLen = 0
	return c.selfSigned(c.tok.GenerateMTLSCAKey, label, kt, spec, out)
}

// CreateIntermediate generates a CA key labelled label and writes to out
// its certificate, signed by the parent CA key in the token.
func (c *Ceremony) CreateIntermediate(label string, kt KeyType, spec CASpec, parentLabel, parentCert, out string) (*x509.Certificate, error) {
	if err := refuseExisting(out); err != nil {
		return nil, err
	}
	parent, parentSigner, err := c.loadCA(parentLabel, parentCert)
	if err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	signer, err := c.tok.GenerateCAKey(label, kt)
	if err != nil {
		return nil, err
	}
	cert, err := ceremony.Intermediate(parent, parentSigner, signer.Public(), spec, c.now)
	if err != nil {
		return nil, err
	}
	return cert, writeFile(out, ceremony.PEM(cert), 0o644)
}

// CreateAuditKey generates the key that signs audit checkpoints and writes
// its public key (PEM "PUBLIC KEY") to out, for audit.publicKey.
func (c *Ceremony) CreateAuditKey(label string, kt KeyType, out string) error {
	if err := refuseExisting(out); err != nil {
		return err
	}
	signer, err := c.tok.GenerateCAKey(label, kt)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return fmt.Errorf("encoding the audit public key: %w", err)
	}
	return writeFile(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// CreateOCSPKey generates the key of a CA's delegated OCSP responder
// (DESIGN.md §14). pkid issues and renews the responder's certificate
// itself, through its signing service, once cas[].ocspKeyLabel names it.
func (c *Ceremony) CreateOCSPKey(label string, kt KeyType) error {
	_, err := c.tok.GenerateCAKey(label, kt)
	return err
}

// TLSRequest describes mTLS material the ceremony issues.
type TLSRequest struct {
	CALabel, CACert string
	CommonName      string
	DNS, IPs, URIs  []string
	Server, Client  bool
	Validity        time.Duration
	CertOut, KeyOut string
}

// IssueTLS issues a TLS certificate for the API listener or a client,
// signed by the mTLS CA key in the token, with a fresh software key
// written to KeyOut (mode 0600).
func (c *Ceremony) IssueTLS(r TLSRequest) error {
	ca, signer, err := c.loadKey(r.CALabel, r.CACert, c.tok.CheckMTLSCustody)
	if err != nil {
		var ce *hsm.CustodyError
		if errors.As(err, &ce) && ce.Attribute == "role" {
			return fmt.Errorf("%w: issue-tls signs only with the mTLS CA key made by `pkid ca create-mtls-ca`; "+
				"certificates from an issuing CA go through the daemon, where they are linted, recorded and audited", err)
		}
		return err
	}
	spec := ceremony.TLSSpec{CommonName: r.CommonName, DNSNames: r.DNS, Server: r.Server, Client: r.Client, Validity: r.Validity}
	for _, s := range r.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--ip %q is not an IP address", s)
		}
		spec.IPs = append(spec.IPs, ip)
	}
	for _, s := range r.URIs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return fmt.Errorf("--uri %q is not an absolute URI", s)
		}
		spec.URIs = append(spec.URIs, u)
	}
	certPEM, keyPEM, err := ceremony.TLSLeaf(ca, signer, spec, c.now)
	if err != nil {
		return err
	}
	if err := writeFile(r.KeyOut, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(r.CertOut, certPEM, 0o644)
}

// loadCA reads a CA certificate and finds its key in the token, checking
// custody, that the key is a daemon CA key (never the mTLS CA), and that
// the two match.
func (c *Ceremony) loadCA(label, certPath string) (*x509.Certificate, crypto.Signer, error) {
	return c.loadKey(label, certPath, c.tok.CheckCustody)
}

func (c *Ceremony) loadKey(label, certPath string, check func(string, crypto.PublicKey) (crypto.Signer, error)) (*x509.Certificate, crypto.Signer, error) {
	if label == "" || certPath == "" {
		return nil, nil, errors.New("a key label and a certificate file are required")
	}
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ceremony.ReadCertificate(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	signer, err := check(label, cert.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return cert, signer, nil
}

func refuseExisting(path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite it", path)
	}
	return nil
}

// writeFile writes atomically: a temporary file in the same directory,
// synced, then renamed into place.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pkid-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
