package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// DNS names: preferred name syntax (RFC 1034 §3.5, relaxed by RFC 1123 §2.1
// to allow a leading digit), internationalized by IDNA 2008 (RFC 5890–5893).
// Every DNS name pkid handles — dns_name SANs, host-like common names, e-mail
// domains, URI hosts — goes through canonicalDNS, so that one name has one
// spelling: ADMIN.example.internal and admin.example.internal are the same
// name (RFC 4343) and must meet the same policy.

const (
	// maxDNSName is the longest name in text form: 255 octets on the wire
	// (RFC 1035 §2.3.4) less the length octet of the first label and the
	// root label.
	maxDNSName = 253
	// maxDNSLabel is RFC 1035 §2.3.4's limit on a label.
	maxDNSLabel = 63
	// acePrefix marks an A-label (RFC 5890 §2.3.2.1).
	acePrefix = "xn--"
)

// idnaProfile maps and converts U-labels to A-labels: the UTS #46 lookup
// mapping (case and width folding, NFC) that RFC 5891 §5.2 leaves to the
// application, non-transitional so that ß and ς stay themselves as IDNA 2008
// says, with the ContextJ rules (RFC 5892 Appendix A) and the Bidi rule
// (RFC 5893). The mapping is safe here because only its result — the
// canonical A-label — is ever matched, encoded or stored. The hyphen rules
// are pkid's own (checkLDH, checkULabel): the library's would also refuse
// ASCII labels such as "r3---sn-x", which DNS allows. It is immutable after
// construction.
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.BidiRule(), idna.CheckHyphens(false))

// errDNS builds the client-facing error for a refused DNS name.
func errDNS(format string, a ...any) error {
	return fmt.Errorf("Invalid DNS name: "+format, a...)
}

// canonicalDNS returns the canonical form of a DNS name: lower case, every
// non-ASCII label replaced by its A-label, every A-label verified. With
// wildcard set, the leftmost label may be exactly `*` (RFC 6125 §6.4.3) when
// at least two labels follow it, so that a wildcard never covers a whole
// top-level domain. The last label may not be all digits: that is an IP
// address (RFC 3696 §2), which belongs in an ip_address SAN.
func canonicalDNS(name string, wildcard bool) (string, error) {
	if name == "" {
		return "", errDNS("empty name")
	}
	if strings.HasSuffix(name, ".") {
		// A SAN holds a name "in preferred name syntax", never the absolute
		// form with the root label (RFC 5280 §4.2.1.6).
		return "", errDNS("a trailing dot is not allowed")
	}
	labels := strings.Split(name, ".")
	star := false
	if labels[0] == "*" && wildcard {
		if len(labels) < 3 {
			return "", errDNS("a wildcard needs at least two labels after it")
		}
		star, labels = true, labels[1:]
	}
	idn := false
	for i, label := range labels {
		canon, err := canonicalLabel(label)
		if err != nil {
			return "", err
		}
		labels[i] = canon
		idn = idn || strings.HasPrefix(canon, acePrefix)
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", errDNS("an IP address belongs in an ip_address SAN")
	}
	out := strings.Join(labels, ".")
	if idn {
		// The Bidi rule constrains every label of a name that has one
		// right-to-left label (RFC 5893 §1.4), so it is checked on the whole
		// name once each label is known to be valid.
		if _, err := idnaProfile.ToUnicode(out); err != nil {
			return "", errDNS("not a valid internationalized name (RFC 5893)")
		}
	}
	if star {
		out = "*." + out
	}
	if len(out) > maxDNSName {
		return "", errDNS("longer than %d characters", maxDNSName)
	}
	return out, nil
}

// canonicalLabel returns one label in canonical form: an ASCII label lower
// cased, a non-ASCII label converted to its A-label.
func canonicalLabel(label string) (string, error) {
	if label == "" {
		return "", errDNS("empty label")
	}
	if isASCII(label) {
		l := strings.ToLower(label)
		if err := checkLDH(l); err != nil {
			return "", err
		}
		if strings.HasPrefix(l, acePrefix) {
			if err := checkALabel(l); err != nil {
				return "", errDNS("%q is not a valid A-label: %v", l, err)
			}
		}
		return l, nil
	}
	if !utf8.ValidString(label) {
		return "", errDNS("not valid UTF-8")
	}
	a, err := idnaProfile.ToASCII(label)
	if err != nil || a == "" {
		return "", errDNS("label %q has no IDNA 2008 A-label", label)
	}
	if strings.Contains(a, ".") {
		// UTS #46 maps U+3002 and its kin to '.'; a request says where its
		// labels end with '.', so such a label is refused rather than split.
		return "", errDNS("label %q contains a label separator", label)
	}
	if err := checkLDH(a); err != nil {
		return "", err
	}
	if strings.HasPrefix(a, acePrefix) {
		if err := checkALabel(a); err != nil {
			return "", errDNS("label %q is not valid: %v", label, err)
		}
	}
	return a, nil
}

// checkLDH checks an ASCII label: 1..63 letters, digits and hyphens, neither
// starting nor ending with a hyphen (RFC 1034 §3.5, RFC 1123 §2.1).
func checkLDH(label string) error {
	if len(label) == 0 {
		return errDNS("empty label")
	}
	if len(label) > maxDNSLabel {
		return errDNS("a label is longer than %d characters", maxDNSLabel)
	}
	for i := 0; i < len(label); i++ {
		if !isLDH(label[i]) {
			return errDNS("only letters, digits and hyphens are allowed in a label")
		}
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return errDNS("a label may not start or end with a hyphen")
	}
	return nil
}

// checkALabel verifies an `xn--` label (lower case): it must decode to a
// valid U-label that encodes back to exactly the same A-label (RFC 5891
// §5.4), so that a name has a single ASCII spelling.
func checkALabel(a string) error {
	u, err := idnaProfile.ToUnicode(a)
	if err != nil {
		return errors.New("it does not decode to a valid U-label")
	}
	if err := checkULabel(u); err != nil {
		return err
	}
	if back, err := idnaProfile.ToASCII(u); err != nil || back != a {
		return errors.New("it is not the canonical encoding of its U-label")
	}
	return nil
}

// checkULabel applies RFC 5891 §4.2.3.1's hyphen restrictions to a U-label
// and keeps it to IDNA 2008's repertoire (see idna2008Rune).
func checkULabel(u string) error {
	r := []rune(u)
	if len(r) == 0 {
		return errors.New("empty U-label")
	}
	if r[0] == '-' || r[len(r)-1] == '-' {
		return errors.New("the U-label starts or ends with a hyphen")
	}
	if len(r) >= 4 && r[2] == '-' && r[3] == '-' {
		return errors.New("the U-label has hyphens in the third and fourth positions")
	}
	arabicIndic, extendedArabicIndic := false, false
	for _, c := range r {
		if !idna2008Rune(c) {
			return fmt.Errorf("%U is not allowed in a domain name by IDNA 2008 (RFC 5892)", c)
		}
		arabicIndic = arabicIndic || c >= 0x0660 && c <= 0x0669
		extendedArabicIndic = extendedArabicIndic || c >= 0x06F0 && c <= 0x06F9
	}
	if arabicIndic && extendedArabicIndic {
		return errors.New("the U-label mixes Arabic-Indic and extended Arabic-Indic digits (RFC 5892 Appendix A.8)")
	}
	return nil
}

// idna2008Rune reports whether c may appear in a U-label. The UTS #46
// tables of x/net/idna accept symbols such as emoji, which IDNA 2008
// disallows (they are "NV8" there, and the library does not implement that
// distinction), so pkid applies RFC 5892's derivation itself, by general
// category: letters (lower case, other, modifier), marks and decimal digits
// are PVALID (§2.1, §2.2), everything else — symbols, punctuation, spaces,
// controls, unassigned code points — is DISALLOWED, with the exceptions of
// §2.6 and the old Hangul Jamo of §2.9. ZWNJ and ZWJ pass: the library has
// already checked their ContextJ rules. The CONTEXTO punctuation (U+00B7,
// U+0375, U+05F3, U+05F4, U+30FB) is refused, which is stricter than RFC
// 5892 but never needed in a certificate for an internal PKI.
func idna2008Rune(c rune) bool {
	switch c {
	case 0x00DF, 0x03C2, 0x06FD, 0x06FE, 0x0F0B, 0x3007: // §2.6 PVALID exceptions
		return true
	case 0x0640, 0x07FA, 0x302E, 0x302F, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303B: // §2.6 DISALLOWED
		return false
	case 0x200C, 0x200D: // ZWNJ, ZWJ: CONTEXTJ, checked by the library
		return true
	}
	if c < utf8.RuneSelf {
		return isLDH(byte(c))
	}
	if c >= 0x1100 && c <= 0x11FF || c >= 0xA960 && c <= 0xA97F || c >= 0xD7B0 && c <= 0xD7FF {
		return false // §2.9 OldHangulJamo
	}
	return unicode.In(c, unicode.Ll, unicode.Lo, unicode.Lm, unicode.Mn, unicode.Mc, unicode.Nd)
}

// canonicalDNSPattern canonicalizes a DNS pattern: the labels without `*`
// as canonical labels (lower case, A-labels), the labels with `*` lower
// cased and limited to letters, digits and hyphens, runs of `*` collapsed
// (the same language). A pattern without `*` must be a valid name, since
// only a valid name could ever match it.
func canonicalDNSPattern(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty pattern")
	}
	if !strings.Contains(p, "*") {
		return canonicalDNS(p, false)
	}
	if strings.HasSuffix(p, ".") {
		return "", errDNS("a trailing dot is not allowed")
	}
	labels := strings.Split(p, ".")
	for i, label := range labels {
		if !strings.Contains(label, "*") {
			canon, err := canonicalLabel(label)
			if err != nil {
				return "", err
			}
			labels[i] = canon
			continue
		}
		l := strings.ToLower(label)
		for j := 0; j < len(l); j++ {
			if l[j] != '*' && !isLDH(l[j]) {
				return "", errDNS("a label with * may hold only letters, digits, hyphens and *")
			}
		}
		for strings.Contains(l, "**") {
			l = strings.ReplaceAll(l, "**", "*")
		}
		labels[i] = l
	}
	out := strings.Join(labels, ".")
	if len(out)-strings.Count(out, "*") > maxDNSName {
		return "", errDNS("longer than %d characters, it can never match", maxDNSName)
	}
	return out, nil
}

func isLDH(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
