package policy

import (
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestValidateSANValue(t *testing.T) {
	cases := []struct {
		name, typ, value string
		ok               bool
	}{
		{"dns", SANDNS, "api.example.internal", true},
		{"dns single label", SANDNS, "localhost", true},
		{"dns wildcard", SANDNS, "*.example.internal", true},
		{"dns wildcard too broad", SANDNS, "*.internal", false},
		{"dns inner wildcard", SANDNS, "a.*.example.internal", false},
		{"dns partial wildcard", SANDNS, "a*.example.internal", false},
		{"dns underscore", SANDNS, "a_b.example.internal", false},
		{"dns leading hyphen", SANDNS, "-a.example.internal", false},
		{"dns empty label", SANDNS, "a..example.internal", false},
		{"dns trailing dot", SANDNS, "a.example.internal.", false},
		{"dns label too long", SANDNS, strings.Repeat("a", 64) + ".internal", false},
		{"dns that is an IP literal", SANDNS, "10.0.0.1", false},
		{"dns numeric label inside", SANDNS, "1.example.internal", true},
		{"dns with space", SANDNS, "a b.internal", false},
		{"dns unicode", SANDNS, "bücher.example", false},
		{"ipv4", SANIP, "10.1.2.3", true},
		{"ipv6", SANIP, "2001:db8::1", true},
		{"ipv6 zone", SANIP, "fe80::1%eth0", false},
		{"ip bad octet", SANIP, "10.1.2.256", false},
		{"ip is a name", SANIP, "example.internal", false},
		{"email", SANEmail, "ops@example.internal", true},
		{"email display name", SANEmail, "Ops <ops@example.internal>", false},
		{"email no domain", SANEmail, "ops@", false},
		{"email bad domain", SANEmail, "ops@exa_mple", false},
		{"email no at", SANEmail, "ops", false},
		{"uri spiffe", SANURI, "spiffe://example.internal/svc/a", true},
		{"uri https", SANURI, "https://example.internal/x?y=1", true},
		{"uri urn", SANURI, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", true},
		{"uri relative", SANURI, "/just/a/path", false},
		{"uri no scheme", SANURI, "example.internal", false},
		{"uri space", SANURI, "https://a b", false},
		{"unknown type", "x400", "anything", false},
	}
	for _, c := range cases {
		err := ValidateSANValue(c.typ, c.value)
		if (err == nil) != c.ok {
			t.Errorf("%s: ValidateSANValue(%s, %q) = %v, want ok=%t", c.name, c.typ, c.value, err, c.ok)
		}
	}
}

// Whatever ValidateSANValue accepts can be encoded in a certificate: IPs
// parse, URIs are absolute, e-mail addresses have a DNS domain, DNS names
// are printable ASCII labels.
func FuzzValidateSANValue(f *testing.F) {
	for _, s := range []string{"a.example.internal", "*.example.internal", "10.0.0.1", "::1", "a@b.internal", "spiffe://td/x", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, typ := range SANTypeNames {
			if ValidateSANValue(typ, v) != nil {
				continue
			}
			switch typ {
			case SANIP:
				if net.ParseIP(v) == nil {
					t.Fatalf("accepted IP %q does not parse", v)
				}
			case SANURI:
				if u, err := url.Parse(v); err != nil || u.Scheme == "" {
					t.Fatalf("accepted URI %q is not absolute", v)
				}
			case SANEmail, SANDNS:
				for i := 0; i < len(v); i++ {
					if v[i] <= 0x20 || v[i] >= 0x7f {
						t.Fatalf("accepted %s %q has a non-printable byte", typ, v)
					}
				}
			}
		}
	})
}
