package policy

import (
	"errors"
	"net/mail"
	"net/netip"
	"net/url"
	"strings"
)

// SAN is a subject alternative name with its declared type.
type SAN struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ValidateSANValue checks that value is valid for the declared SAN type:
// a DNS name with an optional leftmost `*` label, an IPv4 or IPv6 literal,
// an RFC 5322 addr-spec, or an absolute URI with a scheme. It returns an
// error whose text is safe to show to the client.
func ValidateSANValue(sanType, value string) error {
	switch sanType {
	case SANDNS:
		return ValidateDNSName(value, true)
	case SANIP:
		if _, err := netip.ParseAddr(value); err != nil || strings.Contains(value, "%") {
			return errors.New("Invalid IP address")
		}
		return nil
	case SANEmail:
		return validateEmail(value)
	case SANURI:
		return validateURI(value)
	default:
		return errors.New("Invalid SAN type")
	}
}

// ValidateDNSName checks a DNS name in preferred name syntax (RFC 1034
// §3.5, relaxed by RFC 1123 §2.1 to allow a leading digit): labels of 1..63
// letters, digits and hyphens, not starting or ending with a hyphen, at most
// 253 characters, no trailing dot. With wildcard set, the leftmost label may
// be exactly `*` (RFC 6125 §6.4.3) when at least two labels follow it.
// The last label may not be all digits.
func ValidateDNSName(name string, wildcard bool) error {
	invalid := errors.New("Invalid DNS name")
	if name == "" || len(name) > 253 {
		return invalid
	}
	labels := strings.Split(name, ".")
	for i, label := range labels {
		if i == 0 && label == "*" && wildcard {
			if len(labels) < 3 {
				return errors.New("Invalid DNS name: a wildcard needs at least two labels after it")
			}
			continue
		}
		if !validLabel(label) {
			return invalid
		}
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		// RFC 3696 §2: a top-level domain is never all-numeric; this is an
		// IP literal, which belongs in an ip_address SAN.
		return errors.New("Invalid DNS name: an IP address belongs in an ip_address SAN")
	}
	return nil
}

func validLabel(label string) bool {
	if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validateEmail accepts a bare addr-spec (no display name, no angle
// brackets) whose domain is a valid DNS name, as rfc822Name requires
// (RFC 5280 §4.2.1.6).
func validateEmail(value string) error {
	invalid := errors.New("Invalid email address")
	addr, err := mail.ParseAddress(value)
	if err != nil || addr.Address != value || addr.Name != "" {
		return invalid
	}
	at := strings.LastIndexByte(value, '@')
	if at <= 0 || ValidateDNSName(value[at+1:], false) != nil {
		return invalid
	}
	for i := 0; i < len(value); i++ {
		if value[i] < 0x21 || value[i] > 0x7e {
			return invalid // rfc822Name is an IA5String
		}
	}
	return nil
}

// validateURI accepts an absolute URI with a scheme (RFC 3986 §4.3), as the
// uniformResourceIdentifier GeneralName requires (RFC 5280 §4.2.1.6).
func validateURI(value string) error {
	invalid := errors.New("Invalid URI: an absolute URI with a scheme is required")
	for i := 0; i < len(value); i++ {
		if value[i] <= 0x20 || value[i] > 0x7e {
			return invalid // IA5String without spaces or controls
		}
	}
	u, err := url.Parse(value)
	if err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "" && u.Path == "") {
		return invalid
	}
	return nil
}
