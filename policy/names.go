package policy

// The vocabularies of the API, in the order the published schema lists them.
// They are the single source for request validation, config validation and
// certificate construction.
var (
	KeyUsageNames = []string{
		"digital_signature", "key_encipherment", "non_repudiation", "data_encipherment",
		"key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
	}
	ExtKeyUsageNames = []string{
		"client_auth", "server_auth", "code_signing", "email_protection", "ocsp_signing", "time_stamping",
	}
	SignatureAlgorithmNames = []string{
		"RSA-SHA256", "RSA-SHA384", "RSA-SHA512", "ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512",
	}
	KeyAlgorithmNames = []string{
		"RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1",
	}
	SANTypeNames = []string{"dns_name", "ip_address", "email", "uri"}
)

// SAN types.
const (
	SANDNS   = "dns_name"
	SANIP    = "ip_address"
	SANEmail = "email"
	SANURI   = "uri"
)

// Usage names the issuer treats specially.
const (
	UsageKeyEncipherment = "key_encipherment"
	EKUServerAuth        = "server_auth"
)

// IsOneOf reports whether v is in names.
func IsOneOf(names []string, v string) bool {
	for _, n := range names {
		if n == v {
			return true
		}
	}
	return false
}
