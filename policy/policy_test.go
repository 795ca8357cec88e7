package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// webServer mirrors the demo's web-server profile.
func webServer(t *testing.T) *Policy {
	t.Helper()
	p, err := New(Rules{
		CommonName: &NameRule{Allowed: []string{"example.internal", "*.example.internal"}},
		AltNames: map[string]*NameRule{
			SANDNS: {Allowed: []string{"example.internal", "*.example.internal"}},
			SANIP:  {Allowed: []string{"10.*", "127.0.0.1"}},
		},
		KeyUsages:           &NameRule{Allowed: []string{"digital_signature", "key_encipherment"}},
		ExtendedKeyUsages:   &NameRule{Allowed: []string{"server_auth", "client_auth"}},
		SignatureAlgorithms: []string{"ECDSA-*"},
		KeyAlgorithms:       []string{"*"},
		MaxValidity:         "90d",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// san parses a SAN value the test knows to be valid.
func san(typ, value string) SAN {
	s, err := ParseSAN(typ, value)
	if err != nil {
		panic(fmt.Sprintf("ParseSAN(%s, %q): %v", typ, value, err))
	}
	return s
}

// cn parses a common name the test knows to be valid.
func cn(value string) CommonName {
	c, err := ParseCommonName(value)
	if err != nil {
		panic(fmt.Sprintf("ParseCommonName(%q): %v", value, err))
	}
	return c
}

func good() Candidate {
	return Candidate{
		CommonName: cn("a.example.internal"), AltNames: []SAN{san(SANDNS, "a.example.internal"), san(SANIP, "10.0.0.1")},
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1", Lifetime: 24 * time.Hour,
	}
}

func TestEvaluateWebServer(t *testing.T) {
	p := webServer(t)
	cases := []struct {
		name   string
		change func(*Candidate)
		want   []string
	}{
		{"allowed", func(*Candidate) {}, nil},
		{"no common name is fine", func(c *Candidate) { c.CommonName = CommonName{} }, nil},
		{"cn outside patterns", func(c *Candidate) { c.CommonName = cn("evil.com") },
			[]string{"common_name value 'evil.com' does not match allowed patterns: example.internal, *.example.internal"}},
		{"dns outside patterns", func(c *Candidate) { c.AltNames = []SAN{san(SANDNS, "evil.com")} },
			[]string{"dns_name SAN value 'evil.com' does not match allowed patterns: example.internal, *.example.internal"}},
		{"ip not allowed", func(c *Candidate) { c.AltNames = []SAN{san(SANIP, "192.168.0.1")} },
			[]string{"ip_address SAN value '192.168.0.1' does not match allowed patterns: 10.*, 127.0.0.1"}},
		{"san type without a rule", func(c *Candidate) { c.AltNames = []SAN{san(SANEmail, "a@example.internal")} },
			[]string{"email SAN value 'a@example.internal' is not allowed by template policy (not defined in template)"}},
		{"key usage not allowed", func(c *Candidate) { c.KeyUsages = []string{"digital_signature", "crl_sign"} },
			[]string{"Invalid key usages: crl_sign"}},
		{"eku not allowed", func(c *Candidate) { c.ExtKeyUsages = []string{"code_signing"} },
			[]string{"Invalid extended key usages: code_signing"}},
		{"signature algorithm", func(c *Candidate) { c.SignatureAlgorithm = "RSA-SHA256" },
			[]string{"Signature algorithm 'RSA-SHA256' is not allowed by template policy"}},
		{"too long", func(c *Candidate) { c.Lifetime = 91 * 24 * time.Hour },
			[]string{"Requested validity period exceeds maximum allowed duration"}},
		{"too long, explicit window", func(c *Candidate) { c.Lifetime = 91 * 24 * time.Hour; c.ExplicitWindow = true },
			[]string{"Requested validity period (notBefore to notAfter) exceeds maximum allowed duration of 90d"}},
		{"exactly the maximum", func(c *Candidate) { c.Lifetime = 90 * 24 * time.Hour }, nil},
		{"every violation at once", func(c *Candidate) {
			c.CommonName, c.SignatureAlgorithm, c.Lifetime = cn("x"), "RSA-SHA512", 365*24*time.Hour
		}, []string{
			"common_name value 'x' does not match allowed patterns: example.internal, *.example.internal",
			"Signature algorithm 'RSA-SHA512' is not allowed by template policy",
			"Requested validity period exceeds maximum allowed duration",
		}},
	}
	for _, c := range cases {
		cand := good()
		c.change(&cand)
		if got := p.Evaluate(cand); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
}

func TestEvaluateRequiredAndDenied(t *testing.T) {
	p, err := New(Rules{
		CommonName:          &NameRule{Required: []string{"*.prod.example.internal"}, Denied: []string{"admin.prod.example.internal"}},
		AltNames:            map[string]*NameRule{SANURI: {Required: []string{"spiffe://example.internal/*"}, Denied: []string{"spiffe://example.internal/root"}}},
		KeyUsages:           &NameRule{Required: []string{"digital_signature"}, Denied: []string{"key_cert_sign"}},
		ExtendedKeyUsages:   &NameRule{Required: []string{"client_auth"}, Denied: []string{"server_auth"}},
		SignatureAlgorithms: []string{"ECDSA-SHA256"},
		KeyAlgorithms:       []string{"EC_prime256v1"},
		MaxValidity:         "24h",
	})
	if err != nil {
		t.Fatal(err)
	}
	base := func() Candidate {
		return Candidate{CommonName: cn("a.prod.example.internal"), AltNames: []SAN{san(SANURI, "spiffe://example.internal/a")},
			KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"client_auth"},
			SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1", Lifetime: time.Hour}
	}
	cases := []struct {
		name   string
		change func(*Candidate)
		want   []string
	}{
		{"allowed", func(*Candidate) {}, nil},
		{"cn missing", func(c *Candidate) { c.CommonName = CommonName{} }, []string{"Missing required common_name attribute"}},
		{"cn not required pattern", func(c *Candidate) { c.CommonName = cn("a.dev.example.internal") },
			[]string{"common_name value 'a.dev.example.internal' does not match any required patterns: *.prod.example.internal"}},
		{"cn denied", func(c *Candidate) { c.CommonName = cn("admin.prod.example.internal") },
			[]string{"common_name value 'admin.prod.example.internal' is denied by template policy"}},
		{"required san missing", func(c *Candidate) { c.AltNames = nil },
			[]string{"Required uri SAN matching pattern 'spiffe://example.internal/*' not found in request"}},
		{"denied san", func(c *Candidate) {
			c.AltNames = append(c.AltNames, san(SANURI, "spiffe://example.internal/root"))
		}, []string{"uri SAN matching denied pattern 'spiffe://example.internal/root' found in request"}},
		{"required key usage missing", func(c *Candidate) { c.KeyUsages = nil },
			[]string{"Missing required key usages: digital_signature"}},
		{"denied key usage", func(c *Candidate) { c.KeyUsages = []string{"digital_signature", "key_cert_sign"} },
			[]string{"Denied key usages found in request: key_cert_sign"}},
		{"required eku missing, denied eku present", func(c *Candidate) { c.ExtKeyUsages = []string{"server_auth"} },
			[]string{"Missing required extended key usages: client_auth", "Denied extended key usages found in request: server_auth"}},
		{"key algorithm", func(c *Candidate) { c.KeyAlgorithm = "RSA_2048" },
			[]string{"Key algorithm 'RSA_2048' is not allowed by template policy"}},
	}
	for _, c := range cases {
		cand := base()
		c.change(&cand)
		if got := p.Evaluate(cand); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
}

func TestEvaluateAbsentSections(t *testing.T) {
	p, err := New(Rules{SignatureAlgorithms: []string{"*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	got := p.Evaluate(Candidate{CommonName: cn("x"), AltNames: []SAN{san(SANDNS, "x.internal")}, KeyUsages: []string{"digital_signature"},
		ExtKeyUsages: []string{"client_auth"}, SignatureAlgorithm: "RSA-SHA256", KeyAlgorithm: "RSA_2048", Lifetime: time.Hour})
	want := []string{
		"common_name is not allowed by template policy (no subject policies defined)",
		"dns_name SAN value 'x.internal' is not allowed by template policy (no SAN policies defined)",
		"Key usages are not allowed by template policy (not defined in template)",
		"Extended key usages are not allowed by template policy (not defined in template)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(Rules{
		AltNames:            map[string]*NameRule{"x400": {}},
		KeyUsages:           &NameRule{Allowed: []string{"sign_everything"}, Required: []string{"crl_sign"}, Denied: []string{"crl_sign"}},
		SignatureAlgorithms: []string{"MD5-RSA"},
		MaxValidity:         "forever",
	})
	if err == nil {
		t.Fatal("New accepted a broken policy")
	}
	for _, want := range []string{"unknown SAN type \"x400\"", "\"sign_everything\" matches none", "required \"crl_sign\" is also denied",
		"\"MD5-RSA\" matches none", "keyAlgorithms: none allowed", "maxValidity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestSampleSatisfiesThePolicy(t *testing.T) {
	p := webServer(t)
	name, sans := p.Sample()
	if name.String() != "example.internal" || len(sans) != 1 || sans[0] != san(SANDNS, "example.internal") {
		t.Fatalf("Sample = %q, %v", name, sans)
	}
	c := good()
	c.CommonName, c.AltNames = name, sans
	if v := p.Evaluate(c); len(v) != 0 {
		t.Fatalf("the sample violates its own policy: %v", v)
	}
}

// The demo's three profiles (DESIGN §10) each produce a sample their own
// policy allows.
func TestDemoProfilesSample(t *testing.T) {
	cases := []struct {
		name    string
		rules   Rules
		ekus    []string
		wantCN  string
		wantSAN []SAN
	}{
		{"web-server", Rules{
			CommonName: &NameRule{Allowed: []string{"example.internal", "*.example.internal"}},
			AltNames: map[string]*NameRule{
				SANDNS: {Allowed: []string{"example.internal", "*.example.internal"}},
				SANIP:  {Allowed: []string{"10.*", "127.0.0.1"}},
			},
			KeyUsages:           &NameRule{Allowed: []string{"digital_signature", "key_encipherment"}},
			ExtendedKeyUsages:   &NameRule{Allowed: []string{"server_auth", "client_auth"}},
			SignatureAlgorithms: []string{"ECDSA-*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "90d",
		}, []string{"server_auth"}, "example.internal", []SAN{san(SANDNS, "example.internal")}},
		{"internal-services", Rules{
			CommonName: &NameRule{Allowed: []string{"*.svc.example.internal"}},
			AltNames: map[string]*NameRule{
				SANDNS:   {Allowed: []string{"*.svc.example.internal"}},
				SANURI:   {Allowed: []string{"spiffe://example.internal/*"}},
				SANEmail: {Allowed: []string{"*@example.internal"}},
			},
			KeyUsages:           &NameRule{Allowed: []string{"*"}, Denied: []string{"key_cert_sign", "crl_sign"}},
			ExtendedKeyUsages:   &NameRule{Allowed: []string{"*"}},
			SignatureAlgorithms: []string{"RSA-*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "365d",
		}, []string{"server_auth", "client_auth"}, "sample.svc.example.internal", []SAN{san(SANDNS, "sample.svc.example.internal")}},
		{"prod-clients", Rules{
			CommonName:          &NameRule{Required: []string{"*.prod.example.internal"}},
			KeyUsages:           &NameRule{Allowed: []string{"digital_signature"}},
			ExtendedKeyUsages:   &NameRule{Required: []string{"client_auth"}, Denied: []string{"server_auth"}},
			SignatureAlgorithms: []string{"ECDSA-SHA256"}, KeyAlgorithms: []string{"EC_prime256v1"}, MaxValidity: "24h",
		}, []string{"client_auth"}, "sample.prod.example.internal", nil},
	}
	for _, c := range cases {
		p, err := New(c.rules)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if w := p.Warnings(); len(w) != 0 {
			t.Errorf("%s: warnings %q", c.name, w)
		}
		name, sans := p.Sample()
		if name.String() != c.wantCN || !reflect.DeepEqual(sans, c.wantSAN) {
			t.Errorf("%s: Sample = %q, %v; want %q, %v", c.name, name, sans, c.wantCN, c.wantSAN)
		}
		cand := Candidate{CommonName: name, AltNames: sans, KeyUsages: []string{"digital_signature"}, ExtKeyUsages: c.ekus,
			SignatureAlgorithm: p.AllowedSignatureAlgorithms()[0], KeyAlgorithm: p.AllowedKeyAlgorithms()[0], Lifetime: time.Hour}
		if v := p.Evaluate(cand); len(v) != 0 {
			t.Errorf("%s: the sample violates its own policy: %q", c.name, v)
		}
	}
}
