package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sanCase is a ParseSAN case: want is the canonical value, "" for a refusal.
type sanCase struct {
	name, typ, raw, want string
}

var sanCases = []sanCase{
	// DNS names
	{"dns", SANDNS, "api.example.internal", "api.example.internal"},
	{"dns single label", SANDNS, "localhost", "localhost"},
	{"dns wildcard", SANDNS, "*.example.internal", "*.example.internal"},
	{"dns wildcard too broad", SANDNS, "*.internal", ""},
	{"dns lone star", SANDNS, "*", ""},
	{"dns inner wildcard", SANDNS, "a.*.example.internal", ""},
	{"dns partial wildcard", SANDNS, "a*.example.internal", ""},
	{"dns underscore", SANDNS, "a_b.example.internal", ""},
	{"dns leading hyphen", SANDNS, "-a.example.internal", ""},
	{"dns trailing hyphen", SANDNS, "a-.example.internal", ""},
	{"dns reserved hyphens kept", SANDNS, "r3---sn-x.example.internal", "r3---sn-x.example.internal"},
	{"dns empty label", SANDNS, "a..example.internal", ""},
	{"dns leading dot", SANDNS, ".example.internal", ""},
	{"dns empty", SANDNS, "", ""},
	{"dns trailing dot", SANDNS, "a.example.internal.", ""},
	{"dns only a dot", SANDNS, ".", ""},
	{"dns label too long", SANDNS, strings.Repeat("a", 64) + ".internal", ""},
	{"dns label of 63", SANDNS, strings.Repeat("a", 63) + ".internal", strings.Repeat("a", 63) + ".internal"},
	{"dns name too long", SANDNS, strings.Repeat("a.", 127) + "internal", ""},
	{"dns that is an IP literal", SANDNS, "10.0.0.1", ""},
	{"dns numeric tld", SANDNS, "1.2.3", ""},
	{"dns numeric label inside", SANDNS, "1.example.internal", "1.example.internal"},
	{"dns with space", SANDNS, "a b.internal", ""},
	{"dns mixed case", SANDNS, "ADMIN.Example.Internal", "admin.example.internal"},
	{"dns U-label to A-label", SANDNS, "bücher.example", "xn--bcher-kva.example"},
	{"dns upper-case U-label", SANDNS, "BÜCHER.example", "xn--bcher-kva.example"},
	{"dns A-label", SANDNS, "xn--bcher-kva.example", "xn--bcher-kva.example"},
	{"dns upper-case A-label", SANDNS, "XN--BCHER-KVA.example", "xn--bcher-kva.example"},
	{"dns wildcard over an IDN", SANDNS, "*.bücher.example", "*.xn--bcher-kva.example"},
	{"dns invalid punycode", SANDNS, "xn--zz.example", ""},
	{"dns punycode of ASCII", SANDNS, "xn--a.example", ""},
	{"dns empty punycode", SANDNS, "xn--.example", ""},
	{"dns punycode of an emoji", SANDNS, "xn--ls8h.example", ""},
	{"dns emoji", SANDNS, "\U0001F4A9.example", ""},
	{"dns IDNA 2008 keeps sharp s", SANDNS, "straße.example", "xn--strae-oqa.example"},
	{"dns full-width letters", SANDNS, "ＡＤＭＩＮ.example.internal", "admin.example.internal"},
	{"dns soft hyphen is ignored", SANDNS, "ad\u00admin.example.internal", "admin.example.internal"},
	{"dns ideographic full stop", SANDNS, "admin\u3002example.internal", ""},
	{"dns U-label with leading hyphen", SANDNS, "-ü.example", ""},
	{"dns bidi violation", SANDNS, "a\u05d0.example", ""},
	{"dns RTL label with digit-first label", SANDNS, "\u05d0\u05d1.1a.example", ""},
	{"dns invalid UTF-8", SANDNS, "a\xff.example", ""},

	// IP addresses
	{"ipv4", SANIP, "10.1.2.3", "10.1.2.3"},
	{"ipv6", SANIP, "2001:db8::1", "2001:db8::1"},
	{"ipv6 upper case", SANIP, "2001:DB8::1", "2001:db8::1"},
	{"ipv6 uncompressed loopback", SANIP, "0:0:0:0:0:0:0:1", "::1"},
	{"ipv4-mapped", SANIP, "::ffff:10.0.0.1", "10.0.0.1"},
	{"ipv4-mapped in hex", SANIP, "::FFFF:7f00:1", "127.0.0.1"},
	{"ipv6 zone", SANIP, "fe80::1%eth0", ""},
	{"ipv6 numeric zone", SANIP, "fe80::1%1", ""},
	{"ip bad octet", SANIP, "10.1.2.256", ""},
	{"ip leading zero", SANIP, "010.1.2.3", ""},
	{"ip short form", SANIP, "127.1", ""},
	{"ip is a name", SANIP, "example.internal", ""},
	{"ip with space", SANIP, " 10.0.0.1", ""},
	{"ip prefix", SANIP, "10.0.0.0/8", ""},

	// e-mail addresses
	{"email", SANEmail, "ops@example.internal", "ops@example.internal"},
	{"email domain lower-cased, local kept", SANEmail, "Ops.Team@EXAMPLE.internal", "Ops.Team@example.internal"},
	{"email atext", SANEmail, "a+b!#$%&'*/=?^_`{|}~-c@example.internal", "a+b!#$%&'*/=?^_`{|}~-c@example.internal"},
	{"email IDN domain", SANEmail, "ops@bücher.example", "ops@xn--bcher-kva.example"},
	{"email display name", SANEmail, "Ops <ops@example.internal>", ""},
	{"email no domain", SANEmail, "ops@", ""},
	{"email no local part", SANEmail, "@example.internal", ""},
	{"email bad domain", SANEmail, "ops@exa_mple", ""},
	{"email no at", SANEmail, "ops", ""},
	{"email two ats", SANEmail, "a@b@example.internal", ""},
	{"email leading dot", SANEmail, ".ops@example.internal", ""},
	{"email trailing dot", SANEmail, "ops.@example.internal", ""},
	{"email doubled dot", SANEmail, "o..ps@example.internal", ""},
	{"email quoted local part", SANEmail, `"ops"@example.internal`, ""},
	{"email non-ASCII local part", SANEmail, "öps@example.internal", ""},
	{"email address literal", SANEmail, "ops@[10.0.0.1]", ""},
	{"email wildcard domain", SANEmail, "ops@*.example.internal", ""},
	{"email trailing dot in domain", SANEmail, "ops@example.internal.", ""},
	{"email local part too long", SANEmail, strings.Repeat("a", 65) + "@example.internal", ""},
	{"email local part of 64", SANEmail, strings.Repeat("a", 64) + "@example.internal", strings.Repeat("a", 64) + "@example.internal"},

	// URIs
	{"uri spiffe", SANURI, "spiffe://example.internal/svc/a", "spiffe://example.internal/svc/a"},
	{"uri scheme and host lower-cased, path kept", SANURI, "SPIFFE://Example.Internal/svc/A", "spiffe://example.internal/svc/A"},
	{"uri https", SANURI, "https://example.internal/x", "https://example.internal/x"},
	{"uri urn namespace lower-cased, the rest kept", SANURI, "URN:X-Corp:Admin", "urn:x-corp:Admin"},
	{"uri empty segment kept outside http(s)", SANURI, "ldap://example.internal//x", "ldap://example.internal//x"},
	{"uri without path", SANURI, "https://example.internal", "https://example.internal/"},
	{"uri http without path", SANURI, "HTTP://Example.internal", "http://example.internal/"},
	{"uri default https port dropped", SANURI, "https://admin.example.internal:443/x", "https://admin.example.internal/x"},
	{"uri default https port with leading zero dropped", SANURI, "https://admin.example.internal:0443/x", "https://admin.example.internal/x"},
	{"uri default http port dropped", SANURI, "http://admin.example.internal:80/x", "http://admin.example.internal/x"},
	{"uri default port and empty path", SANURI, "HTTPS://Admin.example.internal:443", "https://admin.example.internal/"},
	{"uri other scheme's default port kept", SANURI, "https://admin.example.internal:80/x", "https://admin.example.internal:80/x"},
	{"uri http's default port kept for https", SANURI, "http://admin.example.internal:443/x", "http://admin.example.internal:443/x"},
	{"uri default port of an IPv6 host", SANURI, "https://[2001:db8::1]:443", "https://[2001:db8::1]/"},
	{"uri empty path kept for other schemes", SANURI, "ldap://example.internal", "ldap://example.internal"},
	{"uri unknown scheme keeps its port", SANURI, "ldaps://example.internal:636", "ldaps://example.internal:636"},
	{"uri https without authority", SANURI, "https:admin.example.internal/x", ""},
	{"uri http without authority", SANURI, "http:/admin.example.internal/x", ""},
	{"uri query", SANURI, "https://example.internal/x?y=1", ""},
	{"uri empty query", SANURI, "https://example.internal/x?", ""},
	{"uri fragment", SANURI, "https://example.internal/x#top", ""},
	{"uri empty fragment", SANURI, "https://example.internal/x#", ""},
	{"uri urn", SANURI, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
	{"uri urn scheme and namespace lower-cased", SANURI, "URN:UUID:6E8BC430-9C3A-11D9-9669-0800200C9A66", "urn:uuid:6E8BC430-9C3A-11D9-9669-0800200C9A66"},
	{"uri mailto", SANURI, "mailto:ops@example.internal", "mailto:ops@example.internal"},
	{"uri scheme only", SANURI, "urn:", ""},
	{"uri relative", SANURI, "/just/a/path", ""},
	{"uri no scheme", SANURI, "example.internal", ""},
	{"uri bad scheme", SANURI, "1http://example.internal/", ""},
	{"uri space", SANURI, "https://a b", ""},
	{"uri userinfo", SANURI, "https://user@example.internal/", ""},
	{"uri userinfo with password", SANURI, "https://user:pw@example.internal/", ""},
	{"uri empty host", SANURI, "https:///path", ""},
	{"uri dot-dot segment", SANURI, "https://example.internal/a/../b", ""},
	{"uri dot segment", SANURI, "https://example.internal/a/./b", ""},
	{"uri trailing dot segment", SANURI, "https://example.internal/a/.", ""},
	{"uri encoded dot-dot", SANURI, "https://example.internal/a/%2e%2e/b", ""},
	{"uri mixed-case encoded dot-dot", SANURI, "https://example.internal/a/%2E%2e/b", ""},
	{"uri encoded dot then dot", SANURI, "https://example.internal/a/%2E./b", ""},
	{"uri dot then encoded dot", SANURI, "https://example.internal/a/.%2e/b", ""},
	{"uri encoded dot", SANURI, "https://example.internal/a/%2e/b", ""},
	{"uri dot-dot behind an encoded slash", SANURI, "https://example.internal/a/..%2Fb", ""},
	{"uri dots inside a segment are fine", SANURI, "https://example.internal/a/..b/c.", "https://example.internal/a/..b/c."},
	{"uri unreserved escapes decoded", SANURI, "https://example.internal/%7Euser/%41%62%2D%5f", "https://example.internal/~user/Ab-_"},
	{"uri other escapes upper-cased", SANURI, "https://example.internal/a%2fb%c3%bc", "https://example.internal/a%2Fb%C3%BC"},
	{"uri bad escape", SANURI, "https://example.internal/%zz", ""},
	{"uri truncated escape", SANURI, "https://example.internal/a%2", ""},
	{"uri character outside pchar", SANURI, "https://example.internal/a<b", ""},
	{"uri non-ASCII path", SANURI, "https://example.internal/ü", ""},
	{"uri port kept", SANURI, "https://EXAMPLE.internal:8443/x", "https://example.internal:8443/x"},
	{"uri port leading zeros", SANURI, "https://example.internal:08443/x", "https://example.internal:8443/x"},
	{"uri port zero", SANURI, "https://example.internal:0/", ""},
	{"uri port too big", SANURI, "https://example.internal:65536/", ""},
	{"uri empty port", SANURI, "https://example.internal:/", ""},
	{"uri IPv6 host", SANURI, "https://[2001:DB8::1]:8443/x", "https://[2001:db8::1]:8443/x"},
	{"uri IPv4-mapped host", SANURI, "https://[::FFFF:127.0.0.1]/x", "https://127.0.0.1/x"},
	{"uri IPv6 zone", SANURI, "https://[fe80::1%25eth0]/", ""},
	{"uri IPvFuture", SANURI, "https://[v1.x]/", ""},
	{"uri IPv4 host", SANURI, "https://10.0.0.1/x", "https://10.0.0.1/x"},
	{"uri IPv4 host with leading zero", SANURI, "https://010.0.0.1/", ""},
	{"uri IDN host", SANURI, "https://bücher.example/x", "https://xn--bcher-kva.example/x"},
	{"uri percent-encoded host", SANURI, "https://%41dmin.example.internal/", "https://admin.example.internal/"},
	{"uri host with trailing dot", SANURI, "https://example.internal./", ""},
	{"uri host with underscore", SANURI, "https://a_b.example.internal/", ""},
	{"spiffe without path", SANURI, "spiffe://example.internal", "spiffe://example.internal"},
	{"spiffe trailing slash", SANURI, "spiffe://example.internal/", ""},
	{"spiffe empty segment", SANURI, "spiffe://example.internal//a", ""},
	{"spiffe port", SANURI, "spiffe://example.internal:443/a", ""},
	{"spiffe userinfo", SANURI, "spiffe://user@example.internal/a", ""},
	{"spiffe underscore in trust domain", SANURI, "spiffe://ex_ample.internal/a", "spiffe://ex_ample.internal/a"},
	{"spiffe empty trust-domain label", SANURI, "spiffe://example..internal/a", ""},
	{"spiffe no trust domain", SANURI, "spiffe:///a", ""},
	{"spiffe opaque", SANURI, "spiffe:example.internal/a", ""},
	{"spiffe IP literal", SANURI, "spiffe://[::1]/a", ""},
	{"spiffe non-ASCII trust domain", SANURI, "spiffe://bücher.example/a", ""},
	{"spiffe bad path character", SANURI, "spiffe://example.internal/a+b", ""},
	{"spiffe encoded slash", SANURI, "spiffe://example.internal/a%2Fb", ""},
	{"spiffe unreserved escape decoded", SANURI, "spiffe://example.internal/%61dmin", "spiffe://example.internal/admin"},
	{"spiffe dot-dot", SANURI, "spiffe://example.internal/ns/team-a/../team-b/x", ""},
	{"spiffe encoded dot-dot", SANURI, "spiffe://example.internal/ns/team-a/%2E%2E/team-b/x", ""},
	{"spiffe at the length limit", SANURI, "spiffe://example.internal/" + strings.Repeat("a", 2048-len("spiffe://example.internal/")), "spiffe://example.internal/" + strings.Repeat("a", 2048-len("spiffe://example.internal/"))},
	{"spiffe too long", SANURI, "spiffe://example.internal/" + strings.Repeat("a", 2049-len("spiffe://example.internal/")), ""},

	{"unknown type", "x400", "anything", ""},
}

func TestParseSAN(t *testing.T) {
	for _, c := range sanCases {
		s, err := ParseSAN(c.typ, c.raw)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%s: ParseSAN(%s, %q) = %q, want a refusal", c.name, c.typ, c.raw, s.Value())
		case c.want != "" && err != nil:
			t.Errorf("%s: ParseSAN(%s, %q): %v", c.name, c.typ, c.raw, err)
		case c.want != "" && (s.Value() != c.want || s.Type() != c.typ):
			t.Errorf("%s: ParseSAN(%s, %q) = %s %q, want %q", c.name, c.typ, c.raw, s.Type(), s.Value(), c.want)
		}
	}
}

// The error text is shown to the client: it says what is wrong with the value.
func TestParseSANErrors(t *testing.T) {
	cases := []struct{ name, typ, raw, want string }{
		{"dns trailing dot", SANDNS, "a.example.", "Invalid DNS name: a trailing dot is not allowed"},
		{"dns empty label", SANDNS, "a..example", "Invalid DNS name: empty label"},
		{"dns invalid A-label", SANDNS, "xn--zz.example", `Invalid DNS name: "xn--zz" is not a valid A-label`},
		{"dns IP", SANDNS, "10.0.0.1", "Invalid DNS name: an IP address belongs in an ip_address SAN"},
		{"ip zone", SANIP, "fe80::1%eth0", "Invalid IP address: a zone is not allowed"},
		{"ip", SANIP, "x", "Invalid IP address"},
		{"email", SANEmail, "a..b@example.internal", "Invalid email address: the local part may not"},
		{"uri query", SANURI, "https://x.internal/?", "Invalid URI: a query or a fragment is not allowed"},
		{"uri userinfo", SANURI, "https://u@x.internal/", "Invalid URI: userinfo is not allowed"},
		{"uri dot-dot", SANURI, "https://x.internal/%2e%2E", "Invalid URI: a path with '.' or '..' segments is not allowed"},
		{"spiffe", SANURI, "spiffe://td/a/", "Invalid URI: a SPIFFE ID path has no empty segment"},
		{"https without authority", SANURI, "https:x.internal/a", "Invalid URI: an https URI needs an authority"},
		{"https empty segment", SANURI, "https://x.internal//secret", "Invalid URI: an empty path segment ('//') is not allowed in an https URI"},
		{"http empty segment at the end", SANURI, "http://x.internal/a//", "Invalid URI: an empty path segment ('//') is not allowed in an http URI"},
		{"https encoded slash making an empty segment", SANURI, "https://x.internal/a%2F/b", "Invalid URI: an empty path segment ('//') is not allowed in an https URI"},
		{"type", "x400", "a", "Invalid SAN type"},
	}
	for _, c := range cases {
		_, err := ParseSAN(c.typ, c.raw)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: ParseSAN(%s, %q) = %v, want an error starting %q", c.name, c.typ, c.raw, err, c.want)
		}
	}
}

func TestSANAccessors(t *testing.T) {
	ip := san(SANIP, "::ffff:127.0.0.1")
	if ip.IP() != netip.MustParseAddr("127.0.0.1") || !ip.IP().Is4() {
		t.Errorf("IP() = %v, want the unmapped IPv4 address", ip.IP())
	}
	if ip.URI() != nil || ip.IsWildcard() {
		t.Errorf("an ip_address SAN has a URI or is a wildcard")
	}
	u := san(SANURI, "HTTPS://Example.internal/a%2fb")
	got := u.URI()
	if got == nil || got.String() != u.Value() || u.Value() != "https://example.internal/a%2Fb" {
		t.Fatalf("URI() = %v, Value() = %q", got, u.Value())
	}
	got.Path = "/changed"
	if u.URI().String() != u.Value() {
		t.Errorf("URI() is not a fresh copy")
	}
	if u.IP().IsValid() {
		t.Errorf("a uri SAN has an IP")
	}
	if !san(SANDNS, "*.example.internal").IsWildcard() || san(SANDNS, "a.example.internal").IsWildcard() {
		t.Errorf("IsWildcard is wrong")
	}
}

func TestUniqueSANs(t *testing.T) {
	in := []SAN{
		san(SANDNS, "ADMIN.example.internal"), san(SANIP, "10.0.0.1"), san(SANDNS, "admin.example.internal"),
		san(SANIP, "::ffff:10.0.0.1"), san(SANDNS, "b.example.internal"), san(SANURI, "spiffe://Example.internal/a"),
		san(SANURI, "spiffe://example.internal/a"),
	}
	want := []SAN{san(SANDNS, "admin.example.internal"), san(SANIP, "10.0.0.1"), san(SANDNS, "b.example.internal"),
		san(SANURI, "spiffe://example.internal/a")}
	got := UniqueSANs(in)
	if len(got) != len(want) {
		t.Fatalf("UniqueSANs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("UniqueSANs[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	// The same value under two types is two SANs.
	if n := len(UniqueSANs([]SAN{san(SANDNS, "a.internal"), san(SANEmail, "a@a.internal")})); n != 2 {
		t.Errorf("different types collapsed: %d", n)
	}
}

// maxFuzzSeed keeps the long table cases out of the fuzz seeds: the fuzzer
// minimizes every new input it derives from them, which for inputs of
// thousands of bytes stalls it for most of a short run.
const maxFuzzSeed = 256

// Whatever ParseSAN accepts is a fixed point of it, and survives being
// encoded into a certificate by crypto/x509 and parsed back unchanged: the
// certificate holds exactly Value().
func FuzzParseSAN(f *testing.F) {
	for _, c := range sanCases {
		if len(c.raw) <= maxFuzzSeed {
			f.Add(c.raw)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, typ := range SANTypeNames {
			s, err := ParseSAN(typ, raw)
			if err != nil {
				continue
			}
			v := s.Value()
			for i := 0; i < len(v); i++ {
				if v[i] <= 0x20 || v[i] >= 0x7f {
					t.Fatalf("ParseSAN(%s, %q) = %q: not printable ASCII", typ, raw, v)
				}
			}
			again, err := ParseSAN(typ, v)
			if err != nil || again != s {
				t.Fatalf("ParseSAN(%s, %q) = %q, but ParseSAN of that = %q, %v", typ, raw, v, again.Value(), err)
			}
			if got := roundTrip(t, key, s); got != v {
				t.Fatalf("ParseSAN(%s, %q) = %q, but the certificate holds %q", typ, raw, v, got)
			}
		}
	})
}

// roundTrip encodes s into a certificate signed by key and returns the SAN
// the parsed certificate holds.
func roundTrip(t *testing.T, key *ecdsa.PrivateKey, s SAN) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Unix(0, 0), NotAfter: time.Unix(3600, 0),
	}
	switch s.Type() {
	case SANDNS:
		tmpl.DNSNames = []string{s.Value()}
	case SANIP:
		tmpl.IPAddresses = []net.IP{s.IP().AsSlice()}
	case SANEmail:
		tmpl.EmailAddresses = []string{s.Value()}
	case SANURI:
		tmpl.URIs = []*url.URL{s.URI()}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("encoding %s %q: %v", s.Type(), s.Value(), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing the certificate for %s %q: %v", s.Type(), s.Value(), err)
	}
	switch s.Type() {
	case SANDNS:
		return cert.DNSNames[0]
	case SANIP:
		a, _ := netip.AddrFromSlice(cert.IPAddresses[0])
		return a.String()
	case SANEmail:
		return cert.EmailAddresses[0]
	default:
		return cert.URIs[0].String()
	}
}
