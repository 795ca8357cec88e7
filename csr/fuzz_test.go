package csr_test

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pkid/pkid/csr"
	"github.com/pkid/pkid/goodkey"
)

// FuzzParse feeds Parse arbitrary text, and the same bytes wrapped as a
// CERTIFICATE REQUEST PEM block so that mutations reach the DER parsers.
// Parse must never panic, must refuse only with a *csr.Error, and whatever
// it accepts must have a verifying signature, a good key and only the
// fields pkid takes — checked here independently, through crypto/x509.
// Seeds are in testdata/fuzz/FuzzParse: good EC and RSA CSRs (as PEM and as
// DER) and CSRs with a challengePassword, CA:true, a SHA-1 signature, a
// certificate, two blocks.
func FuzzParse(f *testing.F) {
	keys := newPolicy(f)
	f.Add("")
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n")
	f.Fuzz(func(t *testing.T, in string) {
		for _, text := range []string{in, pemOf([]byte(in))} {
			req, err := csr.Parse(text, keys)
			if err != nil {
				var e *csr.Error
				if !errors.As(err, &e) || e.Reason == "" {
					t.Fatalf("Parse refused with %v (%T), want a *csr.Error with a reason", err, err)
				}
				continue
			}
			checkAccepted(t, text, req, keys)
		}
	})
}

func checkAccepted(t *testing.T, text string, req *csr.Request, keys *goodkey.Policy) {
	t.Helper()
	if n := utf8.RuneCountInString(strings.TrimSpace(text)); n > csr.MaxPEMChars {
		t.Fatalf("accepted %d characters", n)
	}
	c, err := x509.ParseCertificateRequest(req.DER)
	if err != nil {
		t.Fatalf("accepted DER does not parse: %v", err)
	}
	if err := c.CheckSignature(); err != nil {
		t.Fatalf("accepted signature does not verify: %v", err)
	}
	switch c.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		t.Fatalf("accepted a %s signature", c.SignatureAlgorithm)
	}
	if err := keys.Check(c.PublicKey); err != nil {
		t.Fatalf("accepted a weak key: %v", err)
	}
	if k, ok := req.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(c.PublicKey) {
		t.Fatal("PublicKey is not the CSR's")
	}
	if alg, _ := goodkey.KeyAlgorithm(c.PublicKey); alg != req.KeyAlgorithm {
		t.Fatalf("KeyAlgorithm = %q, want %q", req.KeyAlgorithm, alg)
	}

	// Subject: at most one attribute, a CN, as Request has it.
	var subject pkix.RDNSequence
	if _, err := asn1.Unmarshal(c.RawSubject, &subject); err != nil {
		t.Fatal(err)
	}
	var cns []string
	for _, rdn := range subject {
		for _, atv := range rdn {
			if !atv.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) {
				t.Fatalf("accepted subject attribute %v", atv.Type)
			}
			s, _ := atv.Value.(string)
			cns = append(cns, s)
		}
	}
	switch {
	case len(cns) > 1:
		t.Fatalf("accepted %d CNs", len(cns))
	case len(cns) == 1 && cns[0] != req.CommonName, len(cns) == 0 && req.CommonName != "":
		t.Fatalf("CommonName = %q, subject has %q", req.CommonName, cns)
	case utf8.RuneCountInString(req.CommonName) > csr.MaxCommonNameChars || !utf8.ValidString(req.CommonName):
		t.Fatalf("accepted CN %q", req.CommonName)
	}

	// Attributes: only extensionRequest.
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []attributeValues `asn1:"tag:0"`
	}
	if _, err := asn1.Unmarshal(c.RawTBSCertificateRequest, &info); err != nil {
		t.Fatal(err)
	}
	for _, a := range info.Attributes {
		if !a.Type.Equal(oidExtensionRequest) {
			t.Fatalf("accepted attribute %v", a.Type)
		}
	}

	// Extensions: only the four, basicConstraints without cA.
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(oidSAN), e.Id.Equal(oidKU), e.Id.Equal(oidEKU):
		case e.Id.Equal(oidBC):
			var bc struct {
				IsCA bool `asn1:"optional"`
			}
			if _, err := asn1.Unmarshal(e.Value, &bc); err != nil || bc.IsCA {
				t.Fatalf("accepted basicConstraints %x", e.Value)
			}
		default:
			t.Fatalf("accepted extension %v", e.Id)
		}
	}

	// SANs agree with crypto/x509's reading, type by type.
	var dns, emails, ips, uris []string
	for _, n := range req.AltNames {
		if n.Value == "" {
			t.Fatalf("empty %s", n.Type)
		}
		switch n.Type {
		case csr.AltNameDNS:
			dns = append(dns, n.Value)
		case csr.AltNameEmail:
			emails = append(emails, n.Value)
		case csr.AltNameIP:
			ips = append(ips, n.Value)
		case csr.AltNameURI:
			uris = append(uris, n.Value)
		default:
			t.Fatalf("AltName type %q", n.Type)
		}
	}
	var wantIPs, wantURIs []string
	for _, ip := range c.IPAddresses {
		wantIPs = append(wantIPs, ip.String())
	}
	for _, u := range c.URIs {
		wantURIs = append(wantURIs, u.String())
	}
	if !slices.Equal(dns, c.DNSNames) || !slices.Equal(emails, c.EmailAddresses) || !slices.Equal(ips, wantIPs) || len(uris) != len(wantURIs) {
		t.Fatalf("AltNames %v disagree with crypto/x509's %v %v %v %v", req.AltNames, c.DNSNames, c.EmailAddresses, wantIPs, wantURIs)
	}

	for _, u := range req.KeyUsages {
		if !slices.Contains([]string{"digital_signature", "non_repudiation", "key_encipherment", "data_encipherment",
			"key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"}, u) {
			t.Fatalf("key usage %q", u)
		}
	}
	for _, u := range req.ExtKeyUsages {
		if !slices.Contains([]string{"client_auth", "server_auth", "code_signing", "email_protection", "ocsp_signing", "time_stamping"}, u) {
			t.Fatalf("extended key usage %q", u)
		}
	}
}

// TestSeedCorpus keeps the seed corpus meaningful: the good seeds must be
// accepted (directly or, for DER, once wrapped as PEM), so the fuzzer starts
// from inputs that reach checkAccepted, and the others refused.
func TestSeedCorpus(t *testing.T) {
	keys := newPolicy(t)
	entries, err := os.ReadDir("testdata/fuzz/FuzzParse")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/fuzz/FuzzParse", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			header, body, _ := strings.Cut(string(b), "\n")
			body = strings.TrimSpace(body)
			if header != "go test fuzz v1" || !strings.HasPrefix(body, "string(") || !strings.HasSuffix(body, ")") {
				t.Fatalf("not a corpus file: %q", b)
			}
			in, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(body, "string("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			text := in
			if strings.HasSuffix(e.Name(), "-der") {
				text = pemOf([]byte(in))
			}
			req, err := csr.Parse(text, keys)
			good := strings.Contains(e.Name(), "-ec-") || strings.Contains(e.Name(), "-rsa-") || strings.Contains(e.Name(), "new-csr")
			switch {
			case good && err != nil:
				t.Fatalf("good seed refused: %v", err)
			case good:
				checkAccepted(t, text, req, keys)
			case err == nil:
				t.Fatalf("bad seed accepted: %+v", req)
			}
		})
	}
}
