package csr

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
)

// OIDs of the one CSR attribute and the four requested extensions pkid
// takes (RFC 2985 §5.4.2, RFC 5280 §4.2.1).
const (
	oidExtensionRequest = "1.2.840.113549.1.9.14"
	oidSubjectAltName   = "2.5.29.17"
	oidKeyUsage         = "2.5.29.15"
	oidExtKeyUsage      = "2.5.29.37"
	oidBasicConstraints = "2.5.29.19"
)

// attribute is RFC 2986 §4.1's Attribute: a type and a SET OF values.
type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// parseAttributes reads the CSR's attributes into req: first the
// extensions of the extensionRequest attribute, then a refusal of any other
// attribute. crypto/x509 skips attributes that do not parse and reads only
// the first value of extensionRequest; pkid refuses both instead.
func parseAttributes(raws []asn1.RawValue, req *Request) error {
	var extensionRequest *attribute
	var others []string
	for _, raw := range raws {
		var a attribute
		rest, err := asn1.Unmarshal(raw.FullBytes, &a)
		if err != nil || len(rest) > 0 || len(a.Values) == 0 {
			return refuse("CSR has a malformed attribute")
		}
		oid := a.Type.String()
		if oid != oidExtensionRequest {
			others = append(others, label(oid, attributeName(oid)))
			continue
		}
		if extensionRequest != nil {
			return refuse("CSR has more than one extensionRequest attribute")
		}
		extensionRequest = &a
	}
	if extensionRequest != nil {
		// RFC 2985 §5.4.2: extensionRequest is SINGLE VALUE.
		if len(extensionRequest.Values) != 1 {
			return refuse("CSR extensionRequest attribute has %d values; it must have one", len(extensionRequest.Values))
		}
		if err := parseExtensions(extensionRequest.Values[0].FullBytes, req); err != nil {
			return err
		}
	}
	if len(others) > 0 {
		return refuse("CSR attribute %s is not accepted: only extensionRequest is", others[0])
	}
	return nil
}

// parseExtensions reads the requested extensions (an X.509 Extensions
// SEQUENCE) into req. Criticality is ignored: pkid sets it itself (§1).
func parseExtensions(der []byte, req *Request) error {
	var exts []pkix.Extension
	rest, err := asn1.Unmarshal(der, &exts)
	if err != nil || len(rest) > 0 {
		return refuse("CSR extensionRequest attribute is malformed")
	}
	seen := make(map[string]bool, len(exts))
	for _, ext := range exts {
		oid := ext.Id.String()
		name := extensionName(oid)
		// RFC 5280 §4.2: "A certificate MUST NOT include more than one
		// instance of a particular extension"; a request for two is
		// ambiguous.
		if seen[oid] {
			return refuse("CSR requests extension %s twice", label(oid, name))
		}
		seen[oid] = true
		switch oid {
		case oidSubjectAltName:
			if req.AltNames, err = parseSAN(ext.Value); err != nil {
				return err
			}
		case oidKeyUsage:
			if req.KeyUsages, err = parseKeyUsage(ext.Value); err != nil {
				return err
			}
		case oidExtKeyUsage:
			if req.ExtKeyUsages, err = parseExtKeyUsage(ext.Value); err != nil {
				return err
			}
		case oidBasicConstraints:
			if err := checkBasicConstraints(ext.Value); err != nil {
				return err
			}
		default:
			return refuse("CSR requests extension %s, which is not accepted", label(oid, name))
		}
	}
	return nil
}

// parseSAN reads GeneralNames (RFC 5280 §4.2.1.6) itself rather than take
// crypto/x509's parsed lists: those are split by type, so the CSR's order is
// lost, and URIs come back as url.URL values whose String() can differ from
// what the client sent. Each value here is the raw IA5String (or, for an IP
// address, net.IP's rendering of the raw octets). crypto/x509 has already
// parsed the same extension, so every URI here also parses as a url.URL.
func parseSAN(der []byte) ([]AltName, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, refuse("CSR subjectAltName extension is malformed")
	}
	var names []AltName
	for in := seq.Bytes; len(in) > 0; {
		var gn asn1.RawValue
		if in, err = asn1.Unmarshal(in, &gn); err != nil || gn.Class != asn1.ClassContextSpecific {
			return nil, refuse("CSR subjectAltName extension is malformed")
		}
		typ := generalNameType(gn.Tag)
		var name AltName
		switch gn.Tag {
		case 1, 2, 6: // rfc822Name, dNSName, uniformResourceIdentifier: IA5String
			if gn.IsCompound {
				return nil, refuse("CSR subjectAltName %s is malformed", typ)
			}
			if !isIA5(gn.Bytes) {
				return nil, refuse("CSR subjectAltName %s is not an IA5String", typ)
			}
			name = AltName{Type: ia5AltNameType(gn.Tag), Value: string(gn.Bytes)}
		case 7: // iPAddress: the address octets, 4 for IPv4, 16 for IPv6
			if gn.IsCompound {
				return nil, refuse("CSR subjectAltName %s is malformed", typ)
			}
			if len(gn.Bytes) != net.IPv4len && len(gn.Bytes) != net.IPv6len {
				return nil, refuse("CSR subjectAltName iPAddress has %d bytes; an IP address has 4 or 16", len(gn.Bytes))
			}
			name = AltName{Type: AltNameIP, Value: net.IP(gn.Bytes).String()}
		default:
			return nil, refuse("CSR subjectAltName of type %s is not accepted: only dNSName, iPAddress, rfc822Name and uniformResourceIdentifier are", typ)
		}
		if name.Value == "" {
			return nil, refuse("CSR subjectAltName %s is empty", typ)
		}
		names = append(names, name)
	}
	// RFC 5280 §4.2.1.6: GeneralNames is SIZE (1..MAX).
	if len(names) == 0 {
		return nil, refuse("CSR subjectAltName extension is empty")
	}
	return names, nil
}

// ia5AltNameType maps the IA5String GeneralName tags to the API's types.
func ia5AltNameType(tag int) string {
	switch tag {
	case 1:
		return AltNameEmail
	case 2:
		return AltNameDNS
	default: // 6
		return AltNameURI
	}
}

func isIA5(b []byte) bool {
	for _, c := range b {
		if c > 0x7f {
			return false
		}
	}
	return true
}

// parseKeyUsage reads the keyUsage BIT STRING (RFC 5280 §4.2.1.3) into
// pkid's names, in bit order.
func parseKeyUsage(der []byte) ([]string, error) {
	var bits asn1.BitString
	rest, err := asn1.Unmarshal(der, &bits)
	if err != nil || len(rest) > 0 {
		return nil, refuse("CSR keyUsage extension is malformed")
	}
	names := keyUsageNames()
	var usages []string
	for i := range bits.BitLength {
		if bits.At(i) == 0 {
			continue
		}
		if i >= len(names) {
			return nil, refuse("CSR keyUsage has bit %d set, which RFC 5280 does not define", i)
		}
		usages = append(usages, names[i])
	}
	// RFC 5280 §4.2.1.3: "at least one of the bits MUST be set to 1".
	if len(usages) == 0 {
		return nil, refuse("CSR keyUsage extension has no bit set")
	}
	return usages, nil
}

// parseExtKeyUsage reads the extKeyUsage SEQUENCE OF KeyPurposeId
// (RFC 5280 §4.2.1.12). Only the six purposes pkid's API names are taken;
// anyExtendedKeyUsage and every other purpose are refused by OID.
func parseExtKeyUsage(der []byte) ([]string, error) {
	var oids []asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(der, &oids)
	if err != nil || len(rest) > 0 {
		return nil, refuse("CSR extKeyUsage extension is malformed")
	}
	if len(oids) == 0 { // SIZE (1..MAX)
		return nil, refuse("CSR extKeyUsage extension is empty")
	}
	var usages []string
	seen := make(map[string]bool, len(oids))
	for _, o := range oids {
		oid := o.String()
		name, ok := extKeyUsage(oid)
		if !ok {
			return nil, refuse("CSR asks for extended key usage %s, which is not accepted", label(oid, extKeyUsageName(oid)))
		}
		if !seen[name] {
			seen[name] = true
			usages = append(usages, name)
		}
	}
	return usages, nil
}

// checkBasicConstraints accepts a requested basicConstraints only when it
// asks for what pkid issues anyway: cA false, no path length (RFC 5280
// §4.2.1.9 allows pathLenConstraint only with cA true).
func checkBasicConstraints(der []byte) error {
	var bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	rest, err := asn1.Unmarshal(der, &bc)
	if err != nil || len(rest) > 0 {
		return refuse("CSR basicConstraints extension is malformed")
	}
	if bc.IsCA {
		return refuse("CSR asks for a CA certificate")
	}
	if bc.MaxPathLen != -1 {
		return refuse("CSR basicConstraints has a pathLenConstraint without cA")
	}
	return nil
}
