package csr

import "strconv"

// The tables below name OIDs in refusals, so that a client reads "O" or
// "challengePassword" rather than a dotted number. They are functions over
// string constants, so there is no package-level state to mutate.

// subjectAttributeName gives the usual short name of a subject attribute:
// RFC 4514 §3's keywords, then the names OpenSSL prints for the rest; the
// dotted OID when there is none.
func subjectAttributeName(oid string) string {
	switch oid {
	case "2.5.4.3":
		return "CN"
	case "2.5.4.4":
		return "SN"
	case "2.5.4.5":
		return "serialNumber"
	case "2.5.4.6":
		return "C"
	case "2.5.4.7":
		return "L"
	case "2.5.4.8":
		return "ST"
	case "2.5.4.9":
		return "STREET"
	case "2.5.4.10":
		return "O"
	case "2.5.4.11":
		return "OU"
	case "2.5.4.12":
		return "title"
	case "2.5.4.13":
		return "description"
	case "2.5.4.15":
		return "businessCategory"
	case "2.5.4.17":
		return "postalCode"
	case "2.5.4.41":
		return "name"
	case "2.5.4.42":
		return "GN"
	case "2.5.4.43":
		return "initials"
	case "2.5.4.44":
		return "generationQualifier"
	case "2.5.4.46":
		return "dnQualifier"
	case "2.5.4.65":
		return "pseudonym"
	case "2.5.4.97":
		return "organizationIdentifier"
	case "0.9.2342.19200300.100.1.1":
		return "UID"
	case "0.9.2342.19200300.100.1.25":
		return "DC"
	case "1.2.840.113549.1.9.1":
		return "emailAddress"
	case "1.3.6.1.4.1.311.60.2.1.1":
		return "jurisdictionL"
	case "1.3.6.1.4.1.311.60.2.1.2":
		return "jurisdictionST"
	case "1.3.6.1.4.1.311.60.2.1.3":
		return "jurisdictionC"
	}
	return oid
}

// label is "name (oid)" when the OID has a name, else the OID.
func label(oid, name string) string {
	if name == "" {
		return oid
	}
	return oid + " (" + name + ")"
}

// attributeName names PKCS #9 (RFC 2985 §5.4) and common vendor CSR
// attributes.
func attributeName(oid string) string {
	switch oid {
	case oidExtensionRequest:
		return "extensionRequest"
	case "1.2.840.113549.1.9.2":
		return "unstructuredName"
	case "1.2.840.113549.1.9.7":
		return "challengePassword"
	case "1.2.840.113549.1.9.8":
		return "unstructuredAddress"
	case "1.2.840.113549.1.9.9":
		return "extendedCertificateAttributes"
	case "1.3.6.1.4.1.311.2.1.14":
		return "msExtReq"
	case "1.3.6.1.4.1.311.13.2.3":
		return "msOSVersion"
	case "1.3.6.1.4.1.311.13.2.2":
		return "msEnrollmentCSP"
	case "1.3.6.1.4.1.311.21.20":
		return "msRequestClientInfo"
	}
	return ""
}

// extensionName names the certificate extensions a CSR might request.
func extensionName(oid string) string {
	switch oid {
	case oidSubjectAltName:
		return "subjectAltName"
	case oidKeyUsage:
		return "keyUsage"
	case oidExtKeyUsage:
		return "extKeyUsage"
	case oidBasicConstraints:
		return "basicConstraints"
	case "2.5.29.9":
		return "subjectDirectoryAttributes"
	case "2.5.29.14":
		return "subjectKeyIdentifier"
	case "2.5.29.18":
		return "issuerAltName"
	case "2.5.29.30":
		return "nameConstraints"
	case "2.5.29.31":
		return "cRLDistributionPoints"
	case "2.5.29.32":
		return "certificatePolicies"
	case "2.5.29.33":
		return "policyMappings"
	case "2.5.29.35":
		return "authorityKeyIdentifier"
	case "2.5.29.36":
		return "policyConstraints"
	case "2.5.29.46":
		return "freshestCRL"
	case "2.5.29.54":
		return "inhibitAnyPolicy"
	case "1.3.6.1.5.5.7.1.1":
		return "authorityInfoAccess"
	case "1.3.6.1.5.5.7.1.11":
		return "subjectInfoAccess"
	case "1.3.6.1.5.5.7.1.24":
		return "tlsFeature"
	case "1.3.6.1.5.5.7.48.1.5":
		return "ocspNoCheck"
	case "1.3.6.1.4.1.11129.2.4.2":
		return "signedCertificateTimestampList"
	case "1.3.6.1.4.1.11129.2.4.3":
		return "precertificatePoison"
	case "2.16.840.1.113730.1.1":
		return "nsCertType"
	case "2.16.840.1.113730.1.13":
		return "nsComment"
	case "1.3.6.1.4.1.311.20.2":
		return "msCertificateTemplateName"
	case "1.3.6.1.4.1.311.21.7":
		return "msCertificateTemplate"
	}
	return ""
}

// extKeyUsage maps the EKU purposes pkid issues (DESIGN.md §1) to its
// names; RFC 5280 §4.2.1.12 defines the OIDs.
func extKeyUsage(oid string) (string, bool) {
	switch oid {
	case "1.3.6.1.5.5.7.3.1":
		return "server_auth", true
	case "1.3.6.1.5.5.7.3.2":
		return "client_auth", true
	case "1.3.6.1.5.5.7.3.3":
		return "code_signing", true
	case "1.3.6.1.5.5.7.3.4":
		return "email_protection", true
	case "1.3.6.1.5.5.7.3.8":
		return "time_stamping", true
	case "1.3.6.1.5.5.7.3.9":
		return "ocsp_signing", true
	}
	return "", false
}

// extKeyUsageName names the EKU purposes pkid refuses, for the message.
func extKeyUsageName(oid string) string {
	switch oid {
	case "2.5.29.37.0":
		return "anyExtendedKeyUsage"
	case "1.3.6.1.5.5.7.3.5":
		return "ipsecEndSystem"
	case "1.3.6.1.5.5.7.3.6":
		return "ipsecTunnel"
	case "1.3.6.1.5.5.7.3.7":
		return "ipsecUser"
	case "1.3.6.1.5.5.7.3.17":
		return "ipsecIKE"
	case "1.3.6.1.4.1.311.10.3.3":
		return "msSGC"
	case "1.3.6.1.4.1.311.20.2.2":
		return "msSmartcardLogon"
	case "2.16.840.1.113730.4.1":
		return "nsSGC"
	}
	return ""
}

// keyUsageNames are pkid's names for the keyUsage bits, indexed by bit
// number (RFC 5280 §4.2.1.3).
func keyUsageNames() [9]string {
	return [9]string{
		"digital_signature", // 0 digitalSignature
		"non_repudiation",   // 1 nonRepudiation (contentCommitment)
		"key_encipherment",  // 2 keyEncipherment
		"data_encipherment", // 3 dataEncipherment
		"key_agreement",     // 4 keyAgreement
		"key_cert_sign",     // 5 keyCertSign
		"crl_sign",          // 6 cRLSign
		"encipher_only",     // 7 encipherOnly
		"decipher_only",     // 8 decipherOnly
	}
}

// generalNameType names the GeneralName CHOICE tags (RFC 5280 §4.2.1.6).
func generalNameType(tag int) string {
	switch tag {
	case 0:
		return "otherName"
	case 1:
		return "rfc822Name"
	case 2:
		return "dNSName"
	case 3:
		return "x400Address"
	case 4:
		return "directoryName"
	case 5:
		return "ediPartyName"
	case 6:
		return "uniformResourceIdentifier"
	case 7:
		return "iPAddress"
	case 8:
		return "registeredID"
	}
	return "[" + strconv.Itoa(tag) + "]"
}
