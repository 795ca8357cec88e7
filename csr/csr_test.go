package csr_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/pkid/pkid/csr"
	"github.com/pkid/pkid/goodkey"
)

func TestParseGood(t *testing.T) {
	keys := newPolicy(t)
	ec := ecTestKey(t, elliptic.P256())
	rsaKey := rsaTestKey(t)
	spiffe, _ := url.Parse("spiffe://example.internal/ns/web")

	cases := []struct {
		name string
		der  []byte
		key  crypto.PublicKey
		want csr.Request // DER, PublicKey filled in below
	}{
		{
			name: "EC P-256 with every SAN type, KU, EKU and basicConstraints",
			der: createCSR(t, &x509.CertificateRequest{
				Subject:        pkix.Name{CommonName: "web.example.internal"},
				DNSNames:       []string{"web.example.internal", "API.example.internal"},
				EmailAddresses: []string{"ops@example.internal"},
				IPAddresses:    []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("fd00::1"), net.ParseIP("10.0.0.2")},
				URIs:           []*url.URL{spiffe},
				ExtraExtensions: []pkix.Extension{
					rawExt(oidKU, keyUsageBits(t, 0, 2)),
					ext(t, oidEKU, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}, {1, 3, 6, 1, 5, 5, 7, 3, 1}}),
					ext(t, oidBC, struct {
						IsCA bool `asn1:"optional"`
					}{}),
				},
			}, ec),
			key: &ec.PublicKey,
			want: csr.Request{
				KeyAlgorithm: "EC_prime256v1",
				CommonName:   "web.example.internal",
				// crypto/x509 writes DNS, e-mail, IP, URI in that order.
				AltNames: []csr.AltName{
					{Type: "dns_name", Value: "web.example.internal"},
					{Type: "dns_name", Value: "API.example.internal"},
					{Type: "email", Value: "ops@example.internal"},
					{Type: "ip_address", Value: "10.0.0.1"},
					{Type: "ip_address", Value: "fd00::1"},
					// 16 bytes, IPv4-mapped: net.IP renders it as IPv4.
					{Type: "ip_address", Value: "10.0.0.2"},
					{Type: "uri", Value: "spiffe://example.internal/ns/web"},
				},
				KeyUsages:    []string{"digital_signature", "key_encipherment"},
				ExtKeyUsages: []string{"client_auth", "server_auth"},
			},
		},
		{
			name: "RSA 2048, SANs in the CSR's own order, raw URI, every KU bit and EKU",
			der: createCSR(t, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "svc.example.internal"},
				ExtraExtensions: []pkix.Extension{
					rawExt(oidSAN, sanValue(t,
						generalName{tag: 6, bytes: []byte("SPIFFE://Example.Internal/ns/%7eweb")},
						generalName{tag: 2, bytes: []byte("b.svc.example.internal")},
						generalName{tag: 7, bytes: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
						generalName{tag: 1, bytes: []byte("a@example.internal")},
						generalName{tag: 2, bytes: []byte("a.svc.example.internal")},
					)),
					rawExt(oidKU, keyUsageBits(t, 8, 7, 6, 5, 4, 3, 2, 1, 0)),
					ext(t, oidEKU, []asn1.ObjectIdentifier{
						{1, 3, 6, 1, 5, 5, 7, 3, 1}, {1, 3, 6, 1, 5, 5, 7, 3, 2}, {1, 3, 6, 1, 5, 5, 7, 3, 3},
						{1, 3, 6, 1, 5, 5, 7, 3, 4}, {1, 3, 6, 1, 5, 5, 7, 3, 9}, {1, 3, 6, 1, 5, 5, 7, 3, 8},
						{1, 3, 6, 1, 5, 5, 7, 3, 1}, // a duplicate, dropped
					}),
				},
			}, rsaKey),
			key: &rsaKey.PublicKey,
			want: csr.Request{
				KeyAlgorithm: "RSA_2048",
				CommonName:   "svc.example.internal",
				AltNames: []csr.AltName{
					// url.URL.String() would give "spiffe://Example.Internal/ns/%7eweb";
					// the client's bytes are kept for canonicalization to judge.
					{Type: "uri", Value: "SPIFFE://Example.Internal/ns/%7eweb"},
					{Type: "dns_name", Value: "b.svc.example.internal"},
					{Type: "ip_address", Value: "2001:db8::1"},
					{Type: "email", Value: "a@example.internal"},
					{Type: "dns_name", Value: "a.svc.example.internal"},
				},
				KeyUsages: []string{"digital_signature", "non_repudiation", "key_encipherment", "data_encipherment",
					"key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"},
				ExtKeyUsages: []string{"server_auth", "client_auth", "code_signing", "email_protection", "ocsp_signing", "time_stamping"},
			},
		},
		{
			name: "P-384, CN only, no extensions",
			der:  createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "only-cn"}}, ecTestKey(t, elliptic.P384())),
			want: csr.Request{KeyAlgorithm: "EC_secp384r1", CommonName: "only-cn"},
		},
		{
			name: "P-521, empty subject, one SAN",
			der:  createCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.example.internal"}, SignatureAlgorithm: x509.ECDSAWithSHA512}, ecTestKey(t, elliptic.P521())),
			want: csr.Request{KeyAlgorithm: "EC_secp521r1", AltNames: []csr.AltName{{Type: "dns_name", Value: "x.example.internal"}}},
		},
		{
			name: "RSA-PSS signature",
			der: createCSR(t, &x509.CertificateRequest{
				Subject:            pkix.Name{CommonName: "pss"},
				SignatureAlgorithm: x509.SHA256WithRSAPSS,
			}, rsaKey),
			key:  &rsaKey.PublicKey,
			want: csr.Request{KeyAlgorithm: "RSA_2048", CommonName: "pss"},
		},
		{
			name: "empty extensionRequest, by hand",
			der:  handCSR(t, ec, handSpec{subject: name(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "hand"}), attributes: []asn1.RawValue{extensionRequest(t)}}),
			key:  &ec.PublicKey,
			want: csr.Request{KeyAlgorithm: "EC_prime256v1", CommonName: "hand"},
		},
		{
			name: "CN of exactly 100 characters, multi-byte",
			der:  createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: strings.Repeat("é", 100)}}, ec),
			key:  &ec.PublicKey,
			want: csr.Request{KeyAlgorithm: "EC_prime256v1", CommonName: strings.Repeat("é", 100)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := csr.Parse(pemOf(tc.der), keys)
			if err != nil {
				t.Fatalf("Parse refused a good CSR: %v", err)
			}
			if !bytes.Equal(got.DER, tc.der) {
				t.Error("DER is not the CSR as received")
			}
			if tc.key != nil {
				if k, ok := got.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(tc.key) {
					t.Errorf("PublicKey = %v, want the signer's", got.PublicKey)
				}
			}
			want := tc.want
			want.DER, want.PublicKey = got.DER, got.PublicKey
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestParseAcceptsPEMForms(t *testing.T) {
	keys := newPolicy(t)
	der := createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "forms"}}, ecTestKey(t, elliptic.P256()))
	plain := pemOf(der)
	cases := map[string]string{
		"plain":                   plain,
		"surrounding whitespace":  "\n\t  " + plain + "\n\n  ",
		"CRLF line ends":          strings.ReplaceAll(plain, "\n", "\r\n"),
		"NEW CERTIFICATE REQUEST": strings.ReplaceAll(plain, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
		"no final newline":        strings.TrimSpace(plain),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := csr.Parse(text, keys)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.CommonName != "forms" || !bytes.Equal(got.DER, der) {
				t.Errorf("Parse = %+v", got)
			}
		})
	}
}

// refusal is one CSR Parse must refuse, with the exact message (or, where
// the message comes from crypto/x509, its pkid prefix).
type refusal struct {
	name   string
	text   string
	want   string
	prefix bool
}

func TestParseRefusals(t *testing.T) {
	keys := newPolicy(t)
	ec := ecTestKey(t, elliptic.P256())
	rsaKey := rsaTestKey(t)
	good := createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "good"}}, ec)
	goodPEM := pemOf(good)
	certPEM := "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
	withExt := func(exts ...pkix.Extension) string {
		return pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, ExtraExtensions: exts}, ec))
	}
	withSubject := func(atvs ...pkix.AttributeTypeAndValue) string {
		return pemOf(createCSR(t, &x509.CertificateRequest{RawSubject: name(t, atvs...)}, ec))
	}
	withAttributes := func(attrs ...asn1.RawValue) string {
		return pemOf(handCSR(t, ec, handSpec{subject: name(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "x"}), attributes: attrs}))
	}
	flipLast := func(der []byte) []byte {
		b := bytes.Clone(der)
		b[len(b)-1] ^= 0x01
		return b
	}
	long := createCSR(t, &x509.CertificateRequest{DNSNames: manyNames(120)}, ec)
	if len(pemOf(long)) <= csr.MaxPEMChars {
		t.Fatalf("the long CSR is only %d characters", len(pemOf(long)))
	}
	attrValue := func(s string) []byte { return mustMarshal(t, s) }

	cases := []refusal{
		// 1. PEM
		{name: "empty", text: "", want: "CSR is empty"},
		{name: "whitespace", text: " \n\t ", want: "CSR is empty"},
		{name: "too long", text: pemOf(long), want: "CSR is longer than 4096 characters"},
		{name: "too long garbage", text: strings.Repeat("A", 4097), want: "CSR is longer than 4096 characters"},
		{name: "4096 characters after trimming is not too long", text: "  " + strings.Repeat("A", 4096) + "\n", want: "CSR contains no PEM block"},
		{name: "no PEM", text: "hello", want: "CSR contains no PEM block"},
		{name: "DER pasted as text", text: string(good), want: "CSR contains no PEM block"},
		{name: "two CSR blocks", text: goodPEM + goodPEM, want: "CSR contains 2 PEM blocks; exactly one is accepted"},
		{name: "CSR and certificate", text: goodPEM + certPEM, want: "CSR contains 2 PEM blocks; exactly one is accepted"},
		{name: "malformed block before a good one", text: "-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n" + goodPEM, want: "CSR contains 2 PEM blocks; exactly one is accepted"},
		{name: "certificate", text: certPEM, want: `CSR PEM block is of type "CERTIFICATE", not CERTIFICATE REQUEST`},
		{name: "private key", text: strings.ReplaceAll(goodPEM, "CERTIFICATE REQUEST", "PRIVATE KEY"), want: `CSR PEM block is of type "PRIVATE KEY", not CERTIFICATE REQUEST`},
		{name: "text before", text: "my csr:\n" + goodPEM, want: "CSR has text before its PEM block"},
		{name: "text after", text: goodPEM + "thanks\n", want: "CSR has text after its PEM block"},
		{name: "bad base64", text: "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n", want: "CSR PEM block is malformed"},
		{name: "no END line", text: strings.Split(goodPEM, "-----END")[0], want: "CSR PEM block is malformed"},
		{name: "mismatched END line", text: strings.ReplaceAll(goodPEM, "END CERTIFICATE REQUEST", "END CERTIFICATE"), want: "CSR PEM block is malformed"},
		{name: "headers", text: strings.Replace(goodPEM, "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1), want: "CSR PEM block has headers"},

		// 2. DER
		{name: "not DER", text: pemOf([]byte("hello")), want: "CSR is not a valid PKCS #10 request: ", prefix: true},
		{name: "a certificate's DER", text: pemOf(selfSigned(t)), want: "CSR is not a valid PKCS #10 request: ", prefix: true},
		{name: "trailing data", text: pemOf(append(bytes.Clone(good), 0x05, 0x00)), want: "CSR has 2 bytes of data after its DER encoding"},
		{name: "version 2", text: pemOf(handCSR(t, ec, handSpec{version: 1})), want: "CSR version 1 is not 0 (v1)"},
		{name: "duplicate extension", text: withExt(rawExt(oidKU, keyUsageBits(t, 0)), rawExt(oidKU, keyUsageBits(t, 0))),
			want: "CSR is not a valid PKCS #10 request: x509: certificate request contains duplicate requested extensions"},
		{name: "IP SAN of 5 bytes", text: withExt(rawExt(oidSAN, sanValue(t, generalName{tag: 7, bytes: []byte{1, 2, 3, 4, 5}}))),
			want: "CSR is not a valid PKCS #10 request: x509: cannot parse IP address of length 5"},

		// 3. Signature
		{name: "flipped signature byte (EC)", text: pemOf(flipLast(good)), want: "CSR signature does not verify"},
		{name: "flipped signature byte (RSA)", text: pemOf(flipLast(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, rsaKey))), want: "CSR signature does not verify"},
		{name: "signed by another key", text: pemOf(handCSR(t, ec, handSpec{signer: ecTestKey(t, elliptic.P256())})), want: "CSR signature does not verify"},
		{name: "SHA1-RSA", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, SignatureAlgorithm: x509.SHA1WithRSA}, rsaKey)),
			want: "CSR is signed with SHA1-RSA, which is not accepted"},
		{name: "ECDSA-SHA1", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, SignatureAlgorithm: x509.ECDSAWithSHA1}, ec)),
			want: "CSR is signed with ECDSA-SHA1, which is not accepted"},
		// CreateCertificateRequest refuses MD5, so this one is built by hand.
		{name: "MD5-RSA", text: pemOf(handCSR(t, rsaKey, handSpec{sigAlg: oidMD5WithRSA, hash: crypto.MD5})),
			want: "CSR is signed with MD5-RSA, which is not accepted"},
		{name: "SHA1-RSA by hand", text: pemOf(handCSR(t, rsaKey, handSpec{sigAlg: oidSHA1WithRSA, hash: crypto.SHA1})),
			want: "CSR is signed with SHA1-RSA, which is not accepted"},
		{name: "unknown signature algorithm", text: pemOf(handCSR(t, rsaKey, handSpec{sigAlg: asn1.ObjectIdentifier{1, 2, 3, 4}, hash: crypto.SHA256})),
			want: "CSR signature algorithm is not supported"},

		// 4. Key (goodkey's own vectors are moduli without private keys, so
		// no CSR can be signed with them; goodkey tests them directly, and
		// these cases show that csr passes goodkey's refusal through).
		{name: "RSA exponent 3", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, rsaExponent3Key(t))),
			want: "RSA public exponent 3 is not 65537"},
		{name: "P-224", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, ecTestKey(t, elliptic.P224()))),
			want: "EC curve P-224 is not P-256, P-384 or P-521"},
		{name: "Ed25519", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, ed25519Key(t))),
			want: "unsupported key type ed25519.PublicKey"},

		// 5. Subject
		{name: "O", text: withSubject(pkix.AttributeTypeAndValue{Type: oidCN, Value: "x"}, pkix.AttributeTypeAndValue{Type: oidO, Value: "Example"}),
			want: "CSR subject attribute O is not accepted: only CN is taken from the subject"},
		{name: "C before CN", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x", Country: []string{"DE"}}}, ec)),
			want: "CSR subject attribute C is not accepted: only CN is taken from the subject"},
		{name: "OU", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{OrganizationalUnit: []string{"ops"}}}, ec)),
			want: "CSR subject attribute OU is not accepted: only CN is taken from the subject"},
		{name: "L", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{Locality: []string{"Berlin"}}}, ec)),
			want: "CSR subject attribute L is not accepted: only CN is taken from the subject"},
		{name: "ST", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{Province: []string{"BE"}}}, ec)),
			want: "CSR subject attribute ST is not accepted: only CN is taken from the subject"},
		{name: "serialNumber", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: "42"}}, ec)),
			want: "CSR subject attribute serialNumber is not accepted: only CN is taken from the subject"},
		{name: "emailAddress", text: withSubject(pkix.AttributeTypeAndValue{Type: oidEmailAddress, Value: "a@example.internal"}),
			want: "CSR subject attribute emailAddress is not accepted: only CN is taken from the subject"},
		{name: "unknown attribute", text: withSubject(pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: "v"}),
			want: "CSR subject attribute 1.2.3.4 is not accepted: only CN is taken from the subject"},
		{name: "CN and O in one RDN", text: pemOf(createCSR(t, &x509.CertificateRequest{RawSubject: mustMarshal(t, pkix.RDNSequence{{
			{Type: oidCN, Value: "x"}, {Type: oidO, Value: "Example"}}})}, ec)),
			want: "CSR subject attribute O is not accepted: only CN is taken from the subject"},
		{name: "two CNs", text: withSubject(pkix.AttributeTypeAndValue{Type: oidCN, Value: "a"}, pkix.AttributeTypeAndValue{Type: oidCN, Value: "b"}),
			want: "CSR subject has 2 CN attributes; at most one is accepted"},
		{name: "CN of 101 characters", text: pemOf(createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: strings.Repeat("a", 101)}}, ec)),
			want: "CSR subject CN is longer than 100 characters"},
		{name: "empty CN", text: withSubject(pkix.AttributeTypeAndValue{Type: oidCN, Value: ""}),
			want: "CSR subject CN is empty"},
		{name: "CN not a string", text: withSubject(pkix.AttributeTypeAndValue{Type: oidCN, Value: 42}),
			want: "CSR subject CN is not a string"},

		// 6. Requested extensions
		{name: "CA:true", text: withExt(ext(t, oidBC, struct{ IsCA bool }{true})), want: "CSR asks for a CA certificate"},
		{name: "CA:true with a path length", text: withExt(ext(t, oidBC, struct {
			IsCA    bool
			PathLen int
		}{true, 0})), want: "CSR asks for a CA certificate"},
		{name: "path length without CA", text: withExt(ext(t, oidBC, struct {
			PathLen int
		}{1})), want: "CSR basicConstraints has a pathLenConstraint without cA"},
		{name: "unknown extension", text: withExt(ext(t, asn1.ObjectIdentifier{1, 2, 3, 4}, asn1.NullRawValue)),
			want: "CSR requests extension 1.2.3.4, which is not accepted"},
		{name: "subjectKeyIdentifier", text: withExt(ext(t, oidSKI, []byte{1, 2, 3})),
			want: "CSR requests extension 2.5.29.14 (subjectKeyIdentifier), which is not accepted"},
		{name: "unknown EKU", text: withExt(ext(t, oidEKU, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}, {1, 2, 3, 4}})),
			want: "CSR asks for extended key usage 1.2.3.4, which is not accepted"},
		{name: "anyExtendedKeyUsage", text: withExt(ext(t, oidEKU, []asn1.ObjectIdentifier{{2, 5, 29, 37, 0}})),
			want: "CSR asks for extended key usage 2.5.29.37.0 (anyExtendedKeyUsage), which is not accepted"},
		{name: "empty EKU", text: withExt(ext(t, oidEKU, []asn1.ObjectIdentifier{})), want: "CSR extKeyUsage extension is empty"},
		{name: "malformed EKU", text: withExt(ext(t, oidEKU, 7)), want: "CSR extKeyUsage extension is malformed"},
		{name: "no KU bit", text: withExt(rawExt(oidKU, mustMarshal(t, asn1.BitString{Bytes: []byte{0}, BitLength: 1}))), want: "CSR keyUsage extension has no bit set"},
		{name: "KU bit 9", text: withExt(rawExt(oidKU, keyUsageBits(t, 0, 9))), want: "CSR keyUsage has bit 9 set, which RFC 5280 does not define"},
		{name: "malformed KU", text: withExt(ext(t, oidKU, "digitalSignature")), want: "CSR keyUsage extension is malformed"},
		{name: "otherName SAN", text: withExt(rawExt(oidSAN, sanValue(t,
			generalName{tag: 2, bytes: []byte("ok.example.internal")},
			generalName{tag: 0, compound: true, bytes: otherNameUPN(t, "admin@example.internal")}))),
			want: "CSR subjectAltName of type otherName is not accepted: only dNSName, iPAddress, rfc822Name and uniformResourceIdentifier are"},
		{name: "directoryName SAN", text: withExt(rawExt(oidSAN, sanValue(t,
			generalName{tag: 4, compound: true, bytes: name(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "x"})}))),
			want: "CSR subjectAltName of type directoryName is not accepted: only dNSName, iPAddress, rfc822Name and uniformResourceIdentifier are"},
		{name: "registeredID SAN", text: withExt(rawExt(oidSAN, sanValue(t, generalName{tag: 8, bytes: []byte{0x2a, 0x03}}))),
			want: "CSR subjectAltName of type registeredID is not accepted: only dNSName, iPAddress, rfc822Name and uniformResourceIdentifier are"},
		{name: "empty SAN extension", text: withExt(rawExt(oidSAN, sanValue(t))), want: "CSR subjectAltName extension is empty"},
		{name: "empty dNSName", text: withExt(rawExt(oidSAN, sanValue(t, generalName{tag: 2}))), want: "CSR subjectAltName dNSName is empty"},
		{name: "two extensionRequest attributes", text: withAttributes(extensionRequest(t), extensionRequest(t)),
			want: "CSR has more than one extensionRequest attribute"},
		{name: "extensionRequest with two values", text: withAttributes(attribute(t, oidExtensionRequest, mustMarshal(t, []pkix.Extension{}), mustMarshal(t, []pkix.Extension{}))),
			want: "CSR extensionRequest attribute has 2 values; it must have one"},
		{name: "extensionRequest not extensions", text: withAttributes(attribute(t, oidExtensionRequest, mustMarshal(t, 5))),
			want: "CSR is not a valid PKCS #10 request: ", prefix: true},
		{name: "attribute without values", text: withAttributes(attribute(t, oidChallengePassword)),
			want: "CSR has a malformed attribute"},

		// 7. Other attributes
		{name: "challengePassword", text: withAttributes(attribute(t, oidChallengePassword, attrValue("secret"))),
			want: "CSR attribute 1.2.840.113549.1.9.7 (challengePassword) is not accepted: only extensionRequest is"},
		{name: "challengePassword after extensionRequest", text: withAttributes(extensionRequest(t), attribute(t, oidChallengePassword, attrValue("secret"))),
			want: "CSR attribute 1.2.840.113549.1.9.7 (challengePassword) is not accepted: only extensionRequest is"},
		{name: "unknown attribute", text: withAttributes(attribute(t, asn1.ObjectIdentifier{1, 2, 3, 4}, attrValue("v"))),
			want: "CSR attribute 1.2.3.4 is not accepted: only extensionRequest is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertRefused(t, tc, keys)
		})
	}
}

func assertRefused(t *testing.T, tc refusal, keys *goodkey.Policy) {
	t.Helper()
	got, err := csr.Parse(tc.text, keys)
	if err == nil {
		t.Fatalf("Parse accepted it: %+v", got)
	}
	var e *csr.Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse = %v (%T), want *csr.Error", err, err)
	}
	if e.Error() != e.Reason {
		t.Errorf("Error() = %q, Reason = %q", e.Error(), e.Reason)
	}
	if tc.prefix && !strings.HasPrefix(e.Reason, tc.want) || !tc.prefix && e.Reason != tc.want {
		t.Errorf("Parse = %q\n          want %q", e.Reason, tc.want)
	}
}

func TestParseNeedsAPolicy(t *testing.T) {
	der := createCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, ecTestKey(t, elliptic.P256()))
	_, err := csr.Parse(pemOf(der), nil)
	var e *csr.Error
	if err == nil || errors.As(err, &e) {
		t.Fatalf("Parse with no policy = %v, want an internal (non-*csr.Error) error", err)
	}
}

func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "host-" + strings.Repeat("x", i%7) + ".example.internal"
	}
	return names
}

func ed25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned returns a certificate's DER, to show Parse does not mistake
// one for a CSR.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	k := ecTestKey(t, elliptic.P256())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// otherNameUPN is the content of an otherName carrying a Microsoft UPN
// (1.3.6.1.4.1.311.20.2.3), the otherName most often met in CSRs.
func otherNameUPN(t *testing.T, upn string) []byte {
	t.Helper()
	oid := mustMarshal(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3})
	value := mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
		Bytes: mustMarshal(t, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(upn)})})
	return append(oid, value...)
}
