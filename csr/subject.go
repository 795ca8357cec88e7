package csr

import (
	"encoding/asn1"
	"unicode/utf8"
)

// attributeTypeAndValue, rdnSET and rdnSequence mirror X.501's Name
// (RFC 5280 §4.1.2.4) with the values kept raw, so that an attribute can be
// named even when its value is of a type crypto/x509 would not decode.
// encoding/asn1 reads a slice type whose name ends in SET as a SET OF.
type attributeTypeAndValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

type rdnSET []attributeTypeAndValue

type rdnSequence []rdnSET

const oidCommonName = "2.5.4.3"

// parseSubject returns the subject's CN, "" when it has none. pkid takes
// only the CN from a subject (DESIGN.md §11) and refuses every other
// attribute rather than issue a certificate without it unannounced.
func parseSubject(raw []byte) (string, error) {
	var name rdnSequence
	rest, err := asn1.Unmarshal(raw, &name)
	if err != nil || len(rest) > 0 {
		return "", refuse("CSR subject is malformed")
	}
	var cns []string
	for _, rdn := range name {
		if len(rdn) == 0 { // RFC 5280: SET SIZE (1..MAX)
			return "", refuse("CSR subject is malformed: it has an empty RDN")
		}
		for _, atv := range rdn {
			oid := atv.Type.String()
			if oid != oidCommonName {
				return "", refuse("CSR subject attribute %s is not accepted: only CN is taken from the subject",
					subjectAttributeName(oid))
			}
			// DirectoryString (RFC 5280 §4.1.2.4); encoding/asn1 decodes
			// its string types into a Go string.
			var cn string
			rest, err := asn1.Unmarshal(atv.Value.FullBytes, &cn)
			if err != nil || len(rest) > 0 {
				return "", refuse("CSR subject CN is not a string")
			}
			cns = append(cns, cn)
		}
	}
	switch {
	case len(cns) == 0:
		return "", nil
	case len(cns) > 1:
		return "", refuse("CSR subject has %d CN attributes; at most one is accepted", len(cns))
	}
	cn := cns[0]
	switch {
	case !utf8.ValidString(cn):
		// encoding/asn1 validates UTF8String and converts T61String and
		// BMPString, so this guards an invariant rather than a known input.
		return "", refuse("CSR subject CN is not valid UTF-8")
	case cn == "":
		return "", refuse("CSR subject CN is empty")
	case utf8.RuneCountInString(cn) > MaxCommonNameChars:
		return "", refuse("CSR subject CN is longer than %d characters", MaxCommonNameChars)
	}
	return cn, nil
}
