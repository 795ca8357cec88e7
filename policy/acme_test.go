package policy

import (
	"strings"
	"testing"
)

func TestACMEIdentity(t *testing.T) {
	for name, ok := range map[string]bool{
		"3f2b7c1e-8d4a-4e6f-9a0b-1c2d3e4f5a6b": true, "key-NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs": true,
		"": false, "a b": false, "a/b": false, "a:b": false, strings.Repeat("a", 129): false,
	} {
		id, err := ACMEIdentity(name)
		if (err == nil) != ok {
			t.Errorf("ACMEIdentity(%q) = %q, %v; want ok=%t", name, id, err, ok)
			continue
		}
		if !ok {
			continue
		}
		if id.Kind() != "acme" || id.String() != "acme:"+name {
			t.Errorf("ACMEIdentity(%q) = %q", name, id)
		}
		if back, err := ParseIdentity(id.String()); err != nil || back != id {
			t.Errorf("ParseIdentity(%q) = %q, %v", id, back, err)
		}
	}
	// No profile lists an ACME account, and nothing else matches one.
	if _, err := ParseIdentityPattern("acme:*"); err == nil || !strings.Contains(err.Error(), "acme.enabled") {
		t.Errorf("ParseIdentityPattern(acme:*) = %v, want a refusal naming acme.enabled", err)
	}
	id, _ := ACMEIdentity("abc")
	for _, pat := range []string{"cn:*", "machine:*", "dns:*", "uri:*"} {
		if p, err := ParseIdentityPattern(pat); err == nil && p.Match(id) {
			t.Errorf("%s matches %s", pat, id)
		}
	}
}

func TestEvaluateNames(t *testing.T) {
	p, err := New(Rules{
		AltNames: map[string]*NameRule{
			SANDNS: {Allowed: []string{"*.example.internal"}, Denied: []string{"admin.example.internal"}},
			SANIP:  {Allowed: []string{"127.0.0.1"}},
		},
		KeyUsages:           &NameRule{Allowed: []string{"digital_signature"}},
		ExtendedKeyUsages:   &NameRule{Allowed: []string{"server_auth"}},
		SignatureAlgorithms: []string{"ECDSA-*"},
		KeyAlgorithms:       []string{"EC_prime256v1"},
		MaxValidity:         "90d",
	})
	if err != nil {
		t.Fatal(err)
	}
	san := func(typ, v string) SAN {
		s, err := ParseSAN(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if v := p.EvaluateNames([]SAN{san(SANDNS, "www.example.internal"), san(SANIP, "127.0.0.1"), san(SANDNS, "WWW.example.internal")}); len(v) != 0 {
		t.Errorf("allowed names refused: %v", v)
	}
	v := p.EvaluateNames([]SAN{san(SANDNS, "admin.example.internal"), san(SANDNS, "*.example.internal"), san(SANDNS, "www.example.com")})
	if len(v) != 3 {
		t.Fatalf("violations = %q, want the denied name, the wildcard covering it and the foreign name", v)
	}
	for k, want := range []string{"admin.example.internal", "covers names denied", "www.example.com"} {
		if !strings.Contains(v[k], want) {
			t.Errorf("violation %d = %q, want it to mention %q", k, v[k], want)
		}
	}
}
