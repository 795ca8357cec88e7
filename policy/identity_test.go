package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

// clientCert signs a client certificate template with a throw-away key and
// parses it back, as the TLS stack hands it over.
func clientCert(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.NotBefore, tmpl.NotAfter = time.Unix(0, 0), time.Unix(3600, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func uris(t *testing.T, raw ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// sanExtension encodes a SAN extension holding these URIs verbatim, for
// certificates crypto/x509 would not build.
func sanExtension(t *testing.T, raw ...string) pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, r := range raw {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(r)})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: der}
}

func TestIdentityFromCertificate(t *testing.T) {
	cases := []struct {
		name string
		tmpl *x509.Certificate
		want string // the identity, or "" for an error
		err  error  // a specific error, if any
	}{
		{"one URI SAN", &x509.Certificate{URIs: uris(t, "spiffe://example.internal/demo-client"), DNSNames: []string{"a.example.internal"},
			Subject: pkix.Name{CommonName: "demo"}}, "uri:spiffe://example.internal/demo-client", nil},
		{"URI canonicalized", &x509.Certificate{URIs: uris(t, "SPIFFE://Example.Internal/%61pp")}, "uri:spiffe://example.internal/app", nil},
		{"URI failing the URI rules", &x509.Certificate{URIs: uris(t, "spiffe://example.internal/a/../admin")}, "", nil},
		{"URI with a query", &x509.Certificate{URIs: uris(t, "https://example.internal/?as=admin")}, "", nil},
		{"two URI SANs", &x509.Certificate{URIs: uris(t, "spiffe://example.internal/a", "spiffe://example.internal/b")}, "", ErrAmbiguousIdentity},
		{"two URI SANs that are one canonically", &x509.Certificate{URIs: uris(t, "spiffe://example.internal/a", "SPIFFE://example.internal/a")}, "", ErrAmbiguousIdentity},
		{"first DNS SAN", &x509.Certificate{DNSNames: []string{"Web.Svc.Example.internal", "b.example.internal"}, Subject: pkix.Name{CommonName: "x"}},
			"dns:web.svc.example.internal", nil},
		{"wildcard DNS SAN", &x509.Certificate{DNSNames: []string{"*.svc.example.internal"}}, "", nil},
		{"host-like subject CN lower-cased", &x509.Certificate{Subject: pkix.Name{CommonName: "Demo-Client"}}, "cn:demo-client", nil},
		{"host-name subject CN lower-cased", &x509.Certificate{Subject: pkix.Name{CommonName: "Web.Example.Internal"}}, "cn:web.example.internal", nil},
		{"non-ASCII subject CN as given", &x509.Certificate{Subject: pkix.Name{CommonName: "Bücher.example"}}, "cn:Bücher.example", nil},
		{"free-text subject CN as given", &x509.Certificate{Subject: pkix.Name{CommonName: "Demo Client"}}, "cn:Demo Client", nil},
		{"subject CN that is no valid host name as given", &x509.Certificate{Subject: pkix.Name{CommonName: "Client-"}}, "cn:Client-", nil},
		{"IPv4 subject CN as given", &x509.Certificate{Subject: pkix.Name{CommonName: "10.0.0.1"}}, "cn:10.0.0.1", nil},
		{"a CN that reads like a SPIFFE ID is only a CN", &x509.Certificate{Subject: pkix.Name{CommonName: "spiffe://example.internal/demo-client"}},
			"cn:spiffe://example.internal/demo-client", nil},
		{"nothing", &x509.Certificate{Subject: pkix.Name{Organization: []string{"pkid"}}}, "", ErrNoIdentity},
		{"raw URI text is what counts", &x509.Certificate{ExtraExtensions: []pkix.Extension{sanExtension(t, "https://example.internal/%7Eapp")}},
			"uri:https://example.internal/~app", nil},
	}
	for _, c := range cases {
		id, err := IdentityFromCertificate(clientCert(t, c.tmpl))
		switch {
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%s: IdentityFromCertificate = %q, %v; want %v", c.name, id, err, c.err)
		case c.want == "" && err == nil:
			t.Errorf("%s: IdentityFromCertificate = %q, want an error", c.name, id)
		case c.want != "" && (err != nil || id.String() != c.want):
			t.Errorf("%s: IdentityFromCertificate = %q, %v; want %q", c.name, id, err, c.want)
		}
	}
	if _, err := IdentityFromCertificate(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("nil certificate: %v", err)
	}
	// A certificate assembled in memory has no raw extension to read.
	id, err := IdentityFromCertificate(&x509.Certificate{URIs: uris(t, "spiffe://example.internal/mem")})
	if err != nil || id.String() != "uri:spiffe://example.internal/mem" {
		t.Errorf("in-memory certificate: %q, %v", id, err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	for _, s := range []string{"uri:spiffe://example.internal/demo-client", "dns:web.svc.example.internal", "cn:Demo Client",
		"cn:spiffe://example.internal/x", "machine:ci-agent", "uri:urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"} {
		id, err := ParseIdentity(s)
		if err != nil || id.String() != s {
			t.Errorf("ParseIdentity(%q) = %q, %v", s, id, err)
			continue
		}
		again, err := ParseIdentity(id.String())
		if err != nil || again != id {
			t.Errorf("ParseIdentity(%q) is not a fixed point: %q, %v", s, again, err)
		}
		if kind, value, _ := strings.Cut(s, ":"); id.Kind() != kind || id.Value() != value || id.IsZero() {
			t.Errorf("ParseIdentity(%q): kind %q value %q", s, id.Kind(), id.Value())
		}
	}
	canon := map[string]string{
		"uri:SPIFFE://Example.internal/a":       "uri:spiffe://example.internal/a",
		"uri:HTTPS://Example.internal:443":      "uri:https://example.internal/",
		"dns:WEB.example.internal":              "dns:web.example.internal",
		"cn:Demo-Client":                        "cn:demo-client",
		"cn:WEB.Example.internal":               "cn:web.example.internal",
		"cn:Client-":                            "cn:Client-",
		"cn:Demo Client":                        "cn:Demo Client",
		"cn:spiffe://Example.internal/demo-app": "cn:spiffe://Example.internal/demo-app",
	}
	for in, want := range canon {
		if id, err := ParseIdentity(in); err != nil || id.String() != want {
			t.Errorf("ParseIdentity(%q) = %q, %v; want %q", in, id, err, want)
		}
	}
	for _, bad := range []string{"", "spiffe://example.internal/a", "uri:", "uri:spiffe://example.internal/a/", "dns:a..b", "dns:*.example.internal",
		"machine:CI", "machine:-ci", "x509:foo", "URI:spiffe://example.internal/a"} {
		if id, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) = %q, want an error", bad, id)
		}
	}
	if (Identity{}).String() != "" || !(Identity{}).IsZero() || (Identity{}).Kind() != "" {
		t.Errorf("the zero Identity is not empty")
	}
}

func TestMachineIdentity(t *testing.T) {
	for name, ok := range map[string]bool{
		"ci-agent": true, "demo-agent": true, "a": true, "0.b_c-d": true, strings.Repeat("a", 63): true,
		"": false, "-ci": false, ".ci": false, "_ci": false, "CI": false, "ci agent": false, "ci:agent": false, strings.Repeat("a", 64): false,
	} {
		id, err := MachineIdentity(name)
		if (err == nil) != ok || ok && id.String() != "machine:"+name {
			t.Errorf("MachineIdentity(%q) = %q, %v; want ok=%t", name, id, err, ok)
		}
	}
}

func TestIdentityPattern(t *testing.T) {
	ids := map[string]Identity{}
	for _, s := range []string{"uri:spiffe://example.internal/ns/web/a", "uri:spiffe://example.internal.evil/ns/web/a",
		"dns:a.svc.example.internal", "dns:svc.example.internal", "cn:demo-client", "cn:Demo-Client", "cn:Demo Client", "cn:Client-",
		"cn:spiffe://example.internal/ns/web/a", "machine:ci-agent", "machine:ci-agent-2",
		"uri:https://api.example.internal:443", "uri:https://api.example.internal:8443/x"} {
		id, err := ParseIdentity(s)
		if err != nil {
			t.Fatal(err)
		}
		ids[s] = id
	}
	cases := []struct {
		pattern string
		matches []string
	}{
		{"uri:spiffe://example.internal/ns/web/*", []string{"uri:spiffe://example.internal/ns/web/a"}},
		{"uri:SPIFFE://Example.internal/ns/web/*", []string{"uri:spiffe://example.internal/ns/web/a"}},
		{"uri:*", []string{"uri:spiffe://example.internal/ns/web/a", "uri:spiffe://example.internal.evil/ns/web/a", "uri:https://api.example.internal:443"}},
		{"uri:https://api.example.internal", []string{"uri:https://api.example.internal:443"}},
		{"uri:https://api.example.internal:8443/*", []string{"uri:https://api.example.internal:8443/x"}},
		{"dns:*.svc.example.internal", []string{"dns:a.svc.example.internal"}},
		{"DNS:*.SVC.example.internal", []string{"dns:a.svc.example.internal"}},
		{"cn:demo-client", []string{"cn:demo-client", "cn:Demo-Client"}},
		{"cn:DEMO-Client", []string{"cn:demo-client", "cn:Demo-Client"}},
		{"cn:Demo*", []string{"cn:demo-client", "cn:Demo-Client", "cn:Demo Client"}},
		{"cn:demo*", []string{"cn:demo-client", "cn:Demo-Client"}},
		{"cn:Demo Client", []string{"cn:Demo Client"}},
		{"cn:Client-", []string{"cn:Client-"}},
		{"cn:client-", nil},
		{"cn:*", []string{"cn:demo-client", "cn:Demo-Client", "cn:Demo Client", "cn:Client-", "cn:spiffe://example.internal/ns/web/a"}},
		{"cn:spiffe://example.internal/ns/web/*", []string{"cn:spiffe://example.internal/ns/web/a"}},
		{"machine:ci-agent", []string{"machine:ci-agent"}},
		{"machine:ci-*", []string{"machine:ci-agent", "machine:ci-agent-2"}},
	}
	for _, c := range cases {
		p, err := ParseIdentityPattern(c.pattern)
		if err != nil {
			t.Errorf("ParseIdentityPattern(%q): %v", c.pattern, err)
			continue
		}
		for s, id := range ids {
			want := IsOneOf(c.matches, s)
			if got := p.Match(id); got != want {
				t.Errorf("%q.Match(%q) = %t, want %t", c.pattern, s, got, want)
			}
		}
		if p.Match(Identity{}) {
			t.Errorf("%q matches the zero identity", c.pattern)
		}
	}
	if (IdentityPattern{}).Match(ids["cn:demo-client"]) {
		t.Errorf("the zero pattern matches")
	}
}

func TestParseIdentityPatternCanonical(t *testing.T) {
	cases := []struct {
		in, want string
		changed  bool
	}{
		{"uri:spiffe://example.internal/ns/web/*", "uri:spiffe://example.internal/ns/web/*", false},
		{"uri:SPIFFE://EXAMPLE.internal/ns/web/*", "uri:spiffe://example.internal/ns/web/*", true},
		{"URI:spiffe://example.internal/a", "uri:spiffe://example.internal/a", true},
		{"dns:*.SVC.example.internal", "dns:*.svc.example.internal", true},
		{"uri:https://Example.internal:443", "uri:https://example.internal/", true},
		{"cn:Demo Client", "cn:Demo Client", false},
		{"cn:Demo-Client", "cn:demo-client", true},
		{"CN:demo-client", "cn:demo-client", true},
		{"cn:Demo*", "cn:Demo*", true},
		{"cn:demo-*", "cn:demo-*", false},
		{"cn:Client-", "cn:Client-", false},
		{"machine:ci-agent", "machine:ci-agent", false},
	}
	for _, c := range cases {
		p, err := ParseIdentityPattern(c.in)
		if err != nil || p.String() != c.want || p.Changed() != c.changed {
			t.Errorf("ParseIdentityPattern(%q) = %q changed=%t, %v; want %q changed=%t", c.in, p, p.Changed(), err, c.want, c.changed)
		}
	}
	for in, want := range map[string]string{
		"cn:Demo-Client": `"cn:demo-client" (canonical form)`,
		"cn:Demo*":       `"cn:demo*" for host names, as written for other common names`,
	} {
		if p, err := ParseIdentityPattern(in); err != nil || p.MatchedAs() != want {
			t.Errorf("ParseIdentityPattern(%q).MatchedAs() = %q, %v; want %q", in, p.MatchedAs(), err, want)
		}
	}
}

func TestParseIdentityPatternErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"spiffe://example.internal/demo-client", `"spiffe://example.internal/demo-client" has no identity type; write "uri:spiffe://example.internal/demo-client"`},
		{"*.svc.example.internal", `"*.svc.example.internal" has no identity type; write "dns:*.svc.example.internal"`},
		{"demo-client", `"demo-client" has no identity type; write "cn:demo-client"`},
		{"Demo Client", `"Demo Client" has no identity type; write "cn:Demo Client"`},
		{"urn:uuid:1", `"urn:uuid:1" has no identity type; write "cn:urn:uuid:1"`},
		{"uri:", `identity pattern "uri:": empty value`},
		{"uri:https://example.internal/*?x", `identity pattern "uri:https://example.internal/*?x": Invalid URI: a query or a fragment is not allowed`},
		{"dns:a..b", `identity pattern "dns:a..b": Invalid DNS name: empty label`},
		{"machine:CI", `identity pattern "machine:CI": a machine name holds only`},
	}
	for _, c := range cases {
		_, err := ParseIdentityPattern(c.in)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ParseIdentityPattern(%q) = %v\nwant %q", c.in, err, c.want)
		}
	}
}
