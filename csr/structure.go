package csr

import (
	"bytes"
	"encoding/asn1"
)

// certificationRequest is RFC 2986 §4.2's CertificationRequest, each part
// kept raw: crypto/x509 has already parsed it; this copy exists to check the
// encoding and to reach the attributes, which x509 only half exposes.
type certificationRequest struct {
	Info      asn1.RawValue // CertificationRequestInfo
	Algorithm asn1.RawValue // AlgorithmIdentifier
	Signature asn1.RawValue // BIT STRING
}

// certificationRequestInfo is RFC 2986 §4.1's CertificationRequestInfo.
// Attributes is "[0] IMPLICIT SET OF Attribute", read as crypto/x509 reads
// it.
type certificationRequestInfo struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes []asn1.RawValue `asn1:"tag:0"`
}

// parseStructure parses der, which crypto/x509 has accepted, into its
// CertificationRequestInfo and checks what x509 does not: that the outer
// SEQUENCE re-encodes to exactly der (DER is the only encoding RFC 2986 §4
// allows for what is signed and stored) and that the version is v1.
func parseStructure(der []byte) (*certificationRequestInfo, error) {
	var outer certificationRequest
	rest, err := asn1.Unmarshal(der, &outer)
	if err != nil {
		return nil, refuse("CSR is not a valid PKCS #10 request: %v", err)
	}
	if len(rest) > 0 {
		return nil, refuse("CSR has %d bytes of data after its DER encoding", len(rest))
	}
	again, err := asn1.Marshal(outer)
	if err != nil || !bytes.Equal(again, der) {
		return nil, refuse("CSR is not DER-encoded")
	}
	var info certificationRequestInfo
	rest, err = asn1.Unmarshal(outer.Info.FullBytes, &info)
	if err != nil {
		return nil, refuse("CSR is not a valid PKCS #10 request: %v", err)
	}
	if len(rest) > 0 {
		return nil, refuse("CSR request info has trailing data")
	}
	// RFC 2986 §4.1: version is 0 (v1) "for this version of the standard".
	if info.Version != 0 {
		return nil, refuse("CSR version %d is not 0 (v1)", info.Version)
	}
	return &info, nil
}
