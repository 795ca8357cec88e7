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

func TestWildcardWitness(t *testing.T) {
	cases := []struct {
		name, pattern, suffix string
		covered               bool
	}{
		{"exact denied name", "admin.example.internal", "example.internal", true},
		{"denied name elsewhere", "admin.example.com", "example.internal", false},
		{"denied prefix glob", "a*.example.internal", "example.internal", true},
		{"denied suffix glob", "*-admin.example.internal", "example.internal", true},
		{"deeper denied glob", "*.prod.example.internal", "example.internal", false},
		{"deeper denied name", "admin.prod.example.internal", "example.internal", false},
		{"the wildcard's own suffix", "example.internal", "example.internal", false},
		{"star everything", "*", "example.internal", true},
		{"star crossing the dot", "admin*internal", "example.internal", true},
		{"glob needing a dot inside the label", "a.b*.example.internal", "example.internal", false},
		{"leading hyphen is no label", "-*.example.internal", "example.internal", false},
		{"trailing hyphen is no label", "*-.example.internal", "example.internal", false},
		{"inner hyphens are", "a--b.example.internal", "example.internal", true},
		{"label too long", strings.Repeat("a", 64) + ".example.internal", "example.internal", false},
		{"label of 63", strings.Repeat("a", 63) + ".example.internal", "example.internal", true},
		{"name too long", strings.Repeat("a", 60) + "." + strings.Repeat("b.", 95) + "internal", strings.Repeat("b.", 95) + "internal", false},
		{"empty label", "*..example.internal", "example.internal", false},
		{"pattern longer than any name", "x*" + strings.Repeat("y", 300), "example.internal", false},
	}
	for _, c := range cases {
		w, got := wildcardWitness(c.pattern, c.suffix)
		if got != c.covered {
			t.Errorf("%s: wildcardWitness(%q, %q) = %q, %t; want %t", c.name, c.pattern, c.suffix, w, got, c.covered)
			continue
		}
		if got {
			checkWitness(t, c.pattern, c.suffix, w)
		}
	}
}

// checkWitness checks that w is a name the wildcard *.suffix covers and the
// pattern matches.
func checkWitness(t *testing.T, pattern, suffix, w string) {
	t.Helper()
	label, ok := strings.CutSuffix(w, "."+suffix)
	if !ok || !Match(pattern, w) || checkLDH(label) != nil || len(w) > maxDNSName {
		t.Errorf("wildcardWitness(%q, %q) = %q, which is not a covered name the pattern matches", pattern, suffix, w)
	}
}

// The product search agrees with brute force on every pattern of up to five
// characters over {a, -, ., *}: the glob treats every character it does not
// name alike, so labels over {a, b, -} of up to seven characters (the
// pattern's literals plus a first and last non-hyphen) are enough to find a
// covered name whenever one exists.
func TestWildcardWitnessAgreesWithBruteForce(t *testing.T) {
	alphabet := []byte("a-.*")
	var patterns []string
	var grow func(string)
	grow = func(p string) {
		patterns = append(patterns, p)
		if len(p) < 5 {
			for _, c := range alphabet {
				grow(p + string(c))
			}
		}
	}
	grow("")
	var labels []string
	var spell func(string)
	spell = func(l string) {
		if checkLDH(l) == nil {
			labels = append(labels, l)
		}
		if len(l) < 7 {
			for _, c := range "ab-" {
				spell(l + string(c))
			}
		}
	}
	spell("")
	for _, suffix := range []string{"a", "a.a", "b-a"} {
		for _, p := range patterns {
			brute := false
			for _, l := range labels {
				if Match(p, l+"."+suffix) {
					brute = true
					break
				}
			}
			w, got := wildcardWitness(p, suffix)
			if got != brute {
				t.Fatalf("wildcardWitness(%q, %q) = %q, %t; brute force says %t", p, suffix, w, got, brute)
			}
			if got {
				checkWitness(t, p, suffix, w)
			}
		}
	}
}
