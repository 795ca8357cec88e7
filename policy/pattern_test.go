package policy

import (
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		name, pattern, value string
		want                 bool
	}{
		{"exact", "example.internal", "example.internal", true},
		{"exact differs", "example.internal", "example.internal.evil", false},
		{"case-sensitive", "Example.internal", "example.internal", false},
		{"star prefix", "*.example.internal", "a.example.internal", true},
		{"star crosses dots", "*.example.internal", "a.b.example.internal", true},
		{"star needs the dot", "*.example.internal", "example.internal", false},
		{"star matches a literal star", "*.example.internal", "*.example.internal", true},
		{"suffix trick", "*.example.internal", "evil.com.example.internal.evil", false},
		{"star suffix", "10.*", "10.1.2.3", true},
		{"star empty run", "a*b", "ab", true},
		{"two stars", "spiffe://*/ns/*", "spiffe://td/ns/x", true},
		{"lone star", "*", "", true},
		{"empty pattern", "", "x", false},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.value); got != c.want {
			t.Errorf("%s: Match(%q, %q) = %t, want %t", c.name, c.pattern, c.value, got, c.want)
		}
	}
}

// The matcher agrees with the regular expression Infisical builds (every
// `*` → `.*`, everything else escaped, anchored).
func FuzzMatchAgreesWithRegexp(f *testing.F) {
	f.Add("*.example.internal", "a.example.internal")
	f.Add("a*b*c", "aXbYc")
	f.Add("**", "")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		if len(pattern) > 64 || len(value) > 256 {
			return
		}
		parts := strings.Split(pattern, "*")
		for k := range parts {
			parts[k] = regexp.QuoteMeta(parts[k])
		}
		re, err := regexp.Compile("^(?s:" + strings.Join(parts, ".*") + ")$")
		if err != nil {
			return
		}
		if got, want := Match(pattern, value), re.MatchString(value); got != want {
			t.Fatalf("Match(%q, %q) = %t, regexp says %t", pattern, value, got, want)
		}
	})
}
