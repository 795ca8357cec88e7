package policy

import (
	"strings"
	"testing"
)

func TestParseCommonName(t *testing.T) {
	cases := []struct {
		name, raw, want string // want "" for a refusal
		host, wildcard  bool
	}{
		{"host name", "api.example.internal", "api.example.internal", true, false},
		{"host name mixed case", "ADMIN.Example.internal", "admin.example.internal", true, false},
		{"wildcard", "*.Example.internal", "*.example.internal", true, true},
		{"single label", "Demo-Client", "demo-client", true, false},
		{"A-label", "XN--BCHER-KVA.example", "xn--bcher-kva.example", true, false},
		{"invalid A-label", "xn--zz.example", "", false, false},
		{"free text kept", "Demo Client", "Demo Client", false, false},
		{"e-mail-like kept", "Ops@Example.internal", "Ops@Example.internal", false, false},
		{"backslash kept", `DOMAIN\user`, `DOMAIN\user`, false, false},
		{"IPv4 kept", "10.0.0.1", "10.0.0.1", false, false},
		{"zero-padded IPv4", "010.0.0.1", "", false, false},
		{"short IPv4", "127.1", "", false, false},
		{"dotted digits", "1.2.3", "", false, false},
		{"empty label", "a..example.internal", "", false, false},
		{"trailing dot", "admin.example.internal.", "", false, false},
		{"leading hyphen", "-admin.example.internal", "", false, false},
		{"label too long", strings.Repeat("a", 64) + ".internal", "", false, false},
		{"wildcard too broad", "*.internal", "", false, false},
		{"wildcard of free text", "*.Demo Client", "", false, false},
		{"wildcard over an IP", "*.10.0.0.1", "", false, false},
		{"inner star", "a.*.example.internal", "", false, false},
		{"partial star", "a*.example.internal", "", false, false},
		{"star in free text", "Demo * Client", "", false, false},
		{"underscore", "a_b.example.internal", "", false, false},
		{"non-ASCII", "bücher.example", "", false, false},
		{"empty", "", "", false, false},
		{"100 characters", "Demo " + strings.Repeat("a", 95), "Demo " + strings.Repeat("a", 95), false, false},
		{"host-like but not a host name", strings.Repeat("a", 64), "", false, false},
		{"101 characters", strings.Repeat("a", 101), "", false, false},
	}
	for _, c := range cases {
		got, err := ParseCommonName(c.raw)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%s: ParseCommonName(%q) = %q, want a refusal", c.name, c.raw, got)
		case c.want != "" && err != nil:
			t.Errorf("%s: ParseCommonName(%q): %v", c.name, c.raw, err)
		case c.want != "" && (got.String() != c.want || got.IsHostName() != c.host || got.IsWildcard() != c.wildcard || got.IsZero()):
			t.Errorf("%s: ParseCommonName(%q) = %q host=%t wildcard=%t, want %q host=%t wildcard=%t",
				c.name, c.raw, got, got.IsHostName(), got.IsWildcard(), c.want, c.host, c.wildcard)
		}
	}
	if (CommonName{}).String() != "" || !(CommonName{}).IsZero() {
		t.Errorf("the zero CommonName is not empty")
	}
}

func TestParseCommonNameErrors(t *testing.T) {
	for raw, want := range map[string]string{
		"a_b":                 "Invalid pattern: only alphanumeric characters, spaces, *, ., @, -, and \\ are allowed.",
		"a.*.b":               "A wildcard is only allowed as a leading '*.' label",
		"a..example.internal": "Invalid common name: Invalid DNS name: empty label",
		"":                    "Invalid common name: it must be 1 to 100 characters long",
	} {
		if _, err := ParseCommonName(raw); err == nil || err.Error() != want {
			t.Errorf("ParseCommonName(%q) = %v, want %q", raw, err, want)
		}
	}
}

// Whatever ParseCommonName accepts is a fixed point of it.
func FuzzParseCommonName(f *testing.F) {
	for _, s := range []string{"api.example.internal", "*.Example.internal", "Demo Client", "10.0.0.1", "XN--BCHER-KVA.example", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseCommonName(raw)
		if err != nil {
			return
		}
		again, err := ParseCommonName(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseCommonName(%q) = %q, but ParseCommonName of that = %q, %v", raw, c, again, err)
		}
		if c.IsHostName() {
			if _, err := ParseSAN(SANDNS, c.String()); err != nil {
				t.Fatalf("host-like CN %q is not a valid dns_name: %v", c, err)
			}
		}
	})
}
