package csr_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"testing"

	"github.com/pkid/pkid/goodkey"
)

// OIDs the tests build CSRs with.
var (
	oidCN                = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO                 = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidEmailAddress      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidExtensionRequest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidSAN               = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKU                = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidEKU               = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBC                = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSKI               = asn1.ObjectIdentifier{2, 5, 29, 14}

	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidMD5WithRSA      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidSHA1WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

func newPolicy(t testing.TB) *goodkey.Policy {
	t.Helper()
	p, err := goodkey.NewPolicy(goodkey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rsaTestKey loads the fixed RSA 2048 test key from testdata: generating one
// per run costs more than the rest of the tests together.
func rsaTestKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("testdata/rsa2048-test-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("testdata/rsa2048-test-key.pem: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// rsaExponent3Key is the test key's primes with e = 3 (the test key was
// chosen so that 3 is prime to φ(N)). It is the one weak key the tests can
// sign a CSR with: goodkey's other vectors are moduli without private keys,
// so they are tested in goodkey itself.
func rsaExponent3Key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k := rsaTestKey(t)
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(k.Primes[0], one), new(big.Int).Sub(k.Primes[1], one))
	d := new(big.Int).ModInverse(big.NewInt(3), phi)
	if d == nil {
		t.Fatal("3 is not prime to φ(N) of the test key")
	}
	k3 := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: k.N, E: 3}, D: d, Primes: k.Primes}
	k3.Precompute()
	if err := k3.Validate(); err != nil {
		t.Fatal(err)
	}
	return k3
}

func ecTestKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func createCSR(t testing.TB, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatalf("asn1.Marshal(%T): %v", v, err)
	}
	return b
}

func ext(t testing.TB, oid asn1.ObjectIdentifier, value any) pkix.Extension {
	t.Helper()
	return pkix.Extension{Id: oid, Value: mustMarshal(t, value)}
}

func rawExt(oid asn1.ObjectIdentifier, value []byte) pkix.Extension {
	return pkix.Extension{Id: oid, Value: value}
}

// generalName is one GeneralName: context tag and content.
type generalName struct {
	tag      int
	compound bool
	bytes    []byte
}

func sanValue(t testing.TB, names ...generalName) []byte {
	t.Helper()
	var raws []asn1.RawValue
	for _, n := range names {
		raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: n.tag, IsCompound: n.compound, Bytes: n.bytes})
	}
	if raws == nil {
		raws = []asn1.RawValue{}
	}
	return mustMarshal(t, raws)
}

// keyUsageBits encodes a keyUsage BIT STRING with the given bits set.
func keyUsageBits(t testing.TB, bits ...int) []byte {
	t.Helper()
	n := 0
	for _, b := range bits {
		n = max(n, b+1)
	}
	bs := asn1.BitString{Bytes: make([]byte, (n+7)/8), BitLength: n}
	for _, b := range bits {
		bs.Bytes[b/8] |= 0x80 >> (b % 8)
	}
	return mustMarshal(t, bs)
}

// name encodes an X.501 Name of single-valued RDNs.
func name(t testing.TB, atvs ...pkix.AttributeTypeAndValue) []byte {
	t.Helper()
	seq := pkix.RDNSequence{}
	for _, atv := range atvs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{atv})
	}
	return mustMarshal(t, seq)
}

type attributeValues struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// attribute encodes a CSR Attribute with the given already-encoded values.
func attribute(t testing.TB, oid asn1.ObjectIdentifier, values ...[]byte) asn1.RawValue {
	t.Helper()
	a := attributeValues{Type: oid, Values: []asn1.RawValue{}}
	for _, v := range values {
		a.Values = append(a.Values, asn1.RawValue{FullBytes: v})
	}
	return asn1.RawValue{FullBytes: mustMarshal(t, a)}
}

func extensionRequest(t testing.TB, exts ...pkix.Extension) asn1.RawValue {
	t.Helper()
	if exts == nil {
		exts = []pkix.Extension{}
	}
	return attribute(t, oidExtensionRequest, mustMarshal(t, exts))
}

// handSpec describes a CSR built without crypto/x509, for what
// CreateCertificateRequest cannot or will not produce.
type handSpec struct {
	version    int
	subject    []byte          // raw Name; nil is the empty Name
	attributes []asn1.RawValue // raw Attributes
	sigAlg     asn1.ObjectIdentifier
	hash       crypto.Hash
	signer     crypto.Signer // signs instead of key when set
}

type handInfo struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes []asn1.RawValue `asn1:"tag:0"`
}

type handRequest struct {
	Info      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

func handCSR(t testing.TB, key crypto.Signer, s handSpec) []byte {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	subject := s.subject
	if subject == nil {
		subject = mustMarshal(t, pkix.RDNSequence{})
	}
	attrs := s.attributes
	if attrs == nil {
		attrs = []asn1.RawValue{}
	}
	info := mustMarshal(t, handInfo{
		Version:    s.version,
		Subject:    asn1.RawValue{FullBytes: subject},
		PublicKey:  asn1.RawValue{FullBytes: spki},
		Attributes: attrs,
	})
	alg, hash := s.sigAlg, s.hash
	if alg == nil {
		alg, hash = oidSHA256WithRSA, crypto.SHA256
		if _, ok := key.(*ecdsa.PrivateKey); ok {
			alg = oidECDSAWithSHA256
		}
	}
	var digest []byte
	switch hash {
	case crypto.MD5:
		d := md5.Sum(info)
		digest = d[:]
	case crypto.SHA1:
		d := sha1.Sum(info)
		digest = d[:]
	default:
		d := sha256.Sum256(info)
		digest = d[:]
	}
	signer := key
	if s.signer != nil {
		signer = s.signer
	}
	sig, err := signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	ai := pkix.AlgorithmIdentifier{Algorithm: alg}
	if _, ok := key.(*rsa.PrivateKey); ok {
		ai.Parameters = asn1.NullRawValue
	}
	return mustMarshal(t, handRequest{
		Info:      asn1.RawValue{FullBytes: info},
		Algorithm: ai,
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}
