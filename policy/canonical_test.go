package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// rulesWith returns a minimal valid Rules with the given name rules.
func rulesWith(cn *NameRule, alt map[string]*NameRule) Rules {
	return Rules{
		CommonName: cn, AltNames: alt,
		KeyUsages: &NameRule{Allowed: []string{"*"}}, ExtendedKeyUsages: &NameRule{Allowed: []string{"*"}},
		SignatureAlgorithms: []string{"*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d",
	}
}

func mustNew(t *testing.T, r Rules) *Policy {
	t.Helper()
	p, err := New(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// candidate is an otherwise allowed request with these names.
func candidate(name CommonName, sans ...SAN) Candidate {
	return Candidate{CommonName: name, AltNames: sans, SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1", Lifetime: time.Hour}
}

func TestNewCanonicalizesPatterns(t *testing.T) {
	p := mustNew(t, rulesWith(
		&NameRule{Allowed: []string{"API.Example.internal", "Demo Client", "*.svc.example.internal"}, Denied: []string{"ADMIN.svc.example.internal"}},
		map[string]*NameRule{
			SANDNS:   {Allowed: []string{"*.Bücher.example", "XN--BCHER-KVA.example", "a**b.example"}},
			SANIP:    {Allowed: []string{"::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "10.0.0.0/8", "FD00::/8", "::ffff:192.168.0.0/112", "10.*", "FE80::*"}},
			SANEmail: {Allowed: []string{"*@EXAMPLE.internal", "Ops@Bücher.example", "*"}},
			SANURI:   {Allowed: []string{"SPIFFE://Example.internal/ns/*", "https://*.Example.internal:08443/%7e*", "URN:uuid:*", "*"}},
		},
	))
	want := []string{
		`commonName.allowed: "API.Example.internal" is matched as "api.example.internal"`,
		`commonName.denied: "ADMIN.svc.example.internal" is matched as "admin.svc.example.internal"`,
		`altNames.dns_name.allowed: "*.Bücher.example" is matched as "*.xn--bcher-kva.example"`,
		`altNames.dns_name.allowed: "XN--BCHER-KVA.example" is matched as "xn--bcher-kva.example"`,
		`altNames.dns_name.allowed: "a**b.example" is matched as "a*b.example"`,
		`altNames.email.allowed: "*@EXAMPLE.internal" is matched as "*@example.internal"`,
		`altNames.email.allowed: "Ops@Bücher.example" is matched as "Ops@xn--bcher-kva.example"`,
		`altNames.ip_address.allowed: "::ffff:127.0.0.1" is matched as "127.0.0.1"`,
		`altNames.ip_address.allowed: "0:0:0:0:0:0:0:1" is matched as "::1"`,
		`altNames.ip_address.allowed: "FD00::/8" is matched as "fd00::/8"`,
		`altNames.ip_address.allowed: "::ffff:192.168.0.0/112" is matched as "192.168.0.0/16"`,
		`altNames.ip_address.allowed: "FE80::*" is matched as "fe80::*"`,
		`altNames.uri.allowed: "SPIFFE://Example.internal/ns/*" is matched as "spiffe://example.internal/ns/*"`,
		`altNames.uri.allowed: "https://*.Example.internal:08443/%7e*" is matched as "https://*.example.internal:8443/~*"`,
		`altNames.uri.allowed: "URN:uuid:*" is matched as "urn:uuid:*"`,
	}
	if got := p.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Warnings:\n got  %q\n want %q", got, want)
	}
	p.Warnings()[0] = "changed"
	if p.Warnings()[0] == "changed" {
		t.Errorf("Warnings returns the policy's own slice")
	}
}

func TestNewRefusesPatterns(t *testing.T) {
	cases := []struct {
		name string
		cn   *NameRule
		alt  map[string]*NameRule
		want string
	}{
		{"dns empty label", nil, map[string]*NameRule{SANDNS: {Allowed: []string{"a..example.internal"}}},
			`altNames.dns_name.allowed: "a..example.internal": Invalid DNS name: empty label`},
		{"dns trailing dot", nil, map[string]*NameRule{SANDNS: {Denied: []string{"admin.example.internal."}}},
			`altNames.dns_name.denied: "admin.example.internal.": Invalid DNS name: a trailing dot is not allowed`},
		{"dns underscore in a glob", nil, map[string]*NameRule{SANDNS: {Allowed: []string{"*_x.example.internal"}}},
			`altNames.dns_name.allowed: "*_x.example.internal": Invalid DNS name: a label with * may hold only`},
		{"dns invalid A-label", nil, map[string]*NameRule{SANDNS: {Required: []string{"*.xn--zz.example"}}},
			`altNames.dns_name.required: "*.xn--zz.example": Invalid DNS name: "xn--zz" is not a valid A-label`},
		{"empty pattern", nil, map[string]*NameRule{SANDNS: {Allowed: []string{""}}},
			`altNames.dns_name.allowed: "": empty pattern`},
		{"CIDR with host bits", nil, map[string]*NameRule{SANIP: {Allowed: []string{"10.0.0.1/8"}}},
			`altNames.ip_address.allowed: "10.0.0.1/8": Invalid CIDR prefix: host bits are set (the prefix is 10.0.0.0/8)`},
		{"IPv6 CIDR with host bits", nil, map[string]*NameRule{SANIP: {Denied: []string{"fd00::1/8"}}},
			`altNames.ip_address.denied: "fd00::1/8": Invalid CIDR prefix: host bits are set (the prefix is fd00::/8)`},
		{"CIDR too long", nil, map[string]*NameRule{SANIP: {Allowed: []string{"10.0.0.0/33"}}},
			`altNames.ip_address.allowed: "10.0.0.0/33": Invalid CIDR prefix`},
		{"IP zone", nil, map[string]*NameRule{SANIP: {Allowed: []string{"fe80::1%eth0"}}},
			`altNames.ip_address.allowed: "fe80::1%eth0": Invalid IP address: a zone is not allowed`},
		{"IP glob of a name", nil, map[string]*NameRule{SANIP: {Allowed: []string{"host*"}}},
			`altNames.ip_address.allowed: "host*": Invalid IP pattern`},
		{"email local part", nil, map[string]*NameRule{SANEmail: {Allowed: []string{"a..*@example.internal"}}},
			`altNames.email.allowed: "a..*@example.internal": Invalid email address: the local part may not`},
		{"email domain", nil, map[string]*NameRule{SANEmail: {Allowed: []string{"*@exa_mple.internal"}}},
			`altNames.email.allowed: "*@exa_mple.internal": Invalid email pattern: the domain is not valid`},
		{"uri query", nil, map[string]*NameRule{SANURI: {Allowed: []string{"https://example.internal/*?x"}}},
			`altNames.uri.allowed: "https://example.internal/*?x": Invalid URI: a query or a fragment is not allowed`},
		{"uri userinfo", nil, map[string]*NameRule{SANURI: {Allowed: []string{"https://*@example.internal/*"}}},
			`altNames.uri.allowed: "https://*@example.internal/*": Invalid URI: userinfo is not allowed`},
		{"uri dot-dot", nil, map[string]*NameRule{SANURI: {Denied: []string{"spiffe://example.internal/a/%2E%2E/*"}}},
			`altNames.uri.denied: "spiffe://example.internal/a/%2E%2E/*": Invalid URI: a path with '.' or '..' segments is not allowed`},
		{"spiffe trailing slash", nil, map[string]*NameRule{SANURI: {Allowed: []string{"spiffe://example.internal/"}}},
			`altNames.uri.allowed: "spiffe://example.internal/": Invalid URI: a SPIFFE ID path has no empty segment`},
		{"uri star in the scheme", nil, map[string]*NameRule{SANURI: {Allowed: []string{"*://example.internal/*"}}},
			`altNames.uri.allowed: "*://example.internal/*": Invalid URI: an absolute URI with a scheme is required`},
		{"uri star in the port", nil, map[string]*NameRule{SANURI: {Allowed: []string{"https://example.internal:*/"}}},
			`altNames.uri.allowed: "https://example.internal:*/": Invalid URI: the port must be a number`},
		{"uri https pattern without authority", nil, map[string]*NameRule{SANURI: {Denied: []string{"https:*"}}},
			`altNames.uri.denied: "https:*": Invalid URI: an https URI needs an authority`},
		{"required uri behind its default port is denied", nil, map[string]*NameRule{SANURI: {Required: []string{"https://admin.example.internal:443"}, Denied: []string{"https://admin.example.internal/*"}}},
			`altNames.uri: required "https://admin.example.internal/" is also denied`},
		{"required uri with a port is denied without one", nil, map[string]*NameRule{SANURI: {Required: []string{"https://admin.example.internal:8443/x"}, Denied: []string{"https://admin.example.internal/*"}}},
			`altNames.uri: required "https://admin.example.internal:8443/x" is also denied`},
		{"cn outside the alphabet", &NameRule{Allowed: []string{"a_b"}}, nil,
			`commonName.allowed: "a_b": it can never match a common name`},
		{"cn host pattern that is no host name", &NameRule{Denied: []string{"admin..example.internal"}}, nil,
			`commonName.denied: "admin..example.internal": Invalid DNS name: empty label`},
		{"required also denied", &NameRule{Required: []string{"ADMIN.example.internal"}, Denied: []string{"admin.example.internal"}}, nil,
			`commonName: required "ADMIN.example.internal" is also denied`},
		{"required address in a denied prefix", nil, map[string]*NameRule{SANIP: {Required: []string{"::ffff:10.1.2.3"}, Denied: []string{"10.0.0.0/8"}}},
			`altNames.ip_address: required "10.1.2.3" is also denied`},
	}
	for _, c := range cases {
		_, err := New(rulesWith(c.cn, c.alt))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v\nwant an error containing %q", c.name, err, c.want)
		}
	}
}

// The CN patterns that are no host names stay exact globs, and those of
// digits, dots and `*` match IPv4 CNs.
func TestNewKeepsNonHostCNPatterns(t *testing.T) {
	p := mustNew(t, rulesWith(&NameRule{Allowed: []string{"Demo *", "10.*", `DOMAIN\*`}}, nil))
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("warnings for patterns that did not change: %q", w)
	}
	for value, allowed := range map[string]bool{
		"Demo Client": true, "demo client": false, "10.0.0.1": true, "10.example.internal": true, `DOMAIN\ops`: true,
		"Demo.example.internal": false,
	} {
		if got := len(p.Evaluate(candidate(cn(value)))) == 0; got != allowed {
			t.Errorf("CN %q allowed = %t, want %t: %q", value, got, allowed, p.Evaluate(candidate(cn(value))))
		}
	}
}

func TestEvaluateCanonicalNames(t *testing.T) {
	p := mustNew(t, rulesWith(
		&NameRule{Allowed: []string{"*.example.internal", "Demo *"}, Denied: []string{"admin.example.internal", "a*.prod.example.internal"}},
		map[string]*NameRule{
			SANDNS: {Allowed: []string{"*.example.internal", "*.bücher.example"}, Denied: []string{"admin.example.internal", "*.prod.example.internal", "x*.dev.example.internal"}},
			SANIP:  {Allowed: []string{"10.0.0.0/8", "fd00::/8", "192.168.*", "*"}, Denied: []string{"127.0.0.1", "10.9.0.0/16", "::1"}},
			SANEmail: {Allowed: []string{"*@example.internal", "ops@*.example.internal", "*.bot"},
				Denied: []string{"root@*"}},
			SANURI: {Allowed: []string{"spiffe://example.internal/ns/team-a/*", "https://*.example.internal:8443/api/*", "urn:uuid:*"},
				Denied: []string{"spiffe://example.internal/ns/team-a/admin"}},
		},
	))
	cases := []struct {
		name string
		c    Candidate
		want []string
	}{
		{"upper-case denied CN", candidate(cn("ADMIN.example.internal")),
			[]string{"common_name value 'admin.example.internal' is denied by template policy"}},
		{"upper-case allowed CN", candidate(cn("API.Example.Internal")), nil},
		{"free-text CN", candidate(cn("Demo Client")), nil},
		{"upper-case denied dns_name", candidate(CommonName{}, san(SANDNS, "ADMIN.example.internal")),
			[]string{"dns_name SAN matching denied pattern 'admin.example.internal' found in request"}},
		{"IDN dns_name", candidate(CommonName{}, san(SANDNS, "www.BÜCHER.example")), nil},
		{"mapped IPv4 denied", candidate(CommonName{}, san(SANIP, "::ffff:127.0.0.1")),
			[]string{"ip_address SAN matching denied pattern '127.0.0.1' found in request"}},
		{"uncompressed IPv6 denied", candidate(CommonName{}, san(SANIP, "0:0:0:0:0:0:0:1")),
			[]string{"ip_address SAN matching denied pattern '::1' found in request"}},
		{"IPv4 in an allowed prefix", candidate(CommonName{}, san(SANIP, "10.1.2.3")), nil},
		{"IPv4 in a denied prefix", candidate(CommonName{}, san(SANIP, "10.9.1.1")),
			[]string{"ip_address SAN matching denied pattern '10.9.1.1' found in request"}},
		{"IPv6 in an allowed prefix", candidate(CommonName{}, san(SANIP, "FD12::1")), nil},
		{"IPv4 by glob", candidate(CommonName{}, san(SANIP, "192.168.1.1")), nil},
		{"email domain lower-cased", candidate(CommonName{}, san(SANEmail, "Ops@EXAMPLE.internal")), nil},
		{"email local part is case-sensitive", candidate(CommonName{}, san(SANEmail, "Ops@a.example.internal")),
			[]string{"email SAN value 'Ops@a.example.internal' does not match allowed patterns: *@example.internal, ops@*.example.internal, *.bot"}},
		{"email domain pattern", candidate(CommonName{}, san(SANEmail, "ops@a.example.internal")), nil},
		{"email whole-value glob", candidate(CommonName{}, san(SANEmail, "x@ci.bot")), nil},
		{"email denied", candidate(CommonName{}, san(SANEmail, "root@example.internal")),
			[]string{"email SAN matching denied pattern 'root@example.internal' found in request"}},
		{"email subdomain not the domain", candidate(CommonName{}, san(SANEmail, "x@evil.internal")),
			[]string{"email SAN value 'x@evil.internal' does not match allowed patterns: *@example.internal, ops@*.example.internal, *.bot"}},
		{"uri path crosses /", candidate(CommonName{}, san(SANURI, "spiffe://example.internal/ns/team-a/web/v1")), nil},
		{"uri upper-case host", candidate(CommonName{}, san(SANURI, "SPIFFE://EXAMPLE.internal/ns/team-a/x")), nil},
		{"uri denied by canonical value", candidate(CommonName{}, san(SANURI, "spiffe://example.internal/ns/team-a/%61dmin")),
			[]string{"uri SAN matching denied pattern 'spiffe://example.internal/ns/team-a/admin' found in request"}},
		{"uri other team", candidate(CommonName{}, san(SANURI, "spiffe://example.internal/ns/team-b/x")),
			[]string{"uri SAN value 'spiffe://example.internal/ns/team-b/x' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"uri host confusion", candidate(CommonName{}, san(SANURI, "spiffe://example.internal.evil/ns/team-a/x")),
			[]string{"uri SAN value 'spiffe://example.internal.evil/ns/team-a/x' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"uri port equal", candidate(CommonName{}, san(SANURI, "https://api.example.internal:8443/api/v1")), nil},
		{"uri port missing", candidate(CommonName{}, san(SANURI, "https://api.example.internal/api/v1")),
			[]string{"uri SAN value 'https://api.example.internal/api/v1' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"uri other port", candidate(CommonName{}, san(SANURI, "https://api.example.internal:9443/api/v1")),
			[]string{"uri SAN value 'https://api.example.internal:9443/api/v1' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"uri host glob cannot reach the path", candidate(CommonName{}, san(SANURI, "https://evil.internal:8443/x.example.internal:8443/api/v1")),
			[]string{"uri SAN value 'https://evil.internal:8443/x.example.internal:8443/api/v1' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"uri opaque", candidate(CommonName{}, san(SANURI, "URN:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")), nil},
		{"uri other opaque scheme", candidate(CommonName{}, san(SANURI, "urx:uuid:1")),
			[]string{"uri SAN value 'urx:uuid:1' does not match allowed patterns: spiffe://example.internal/ns/team-a/*, https://*.example.internal:8443/api/*, urn:uuid:*"}},
		{"wildcard covering a denied name", candidate(CommonName{}, san(SANDNS, "*.example.internal")),
			[]string{"dns_name SAN value '*.example.internal' covers names denied by template policy: admin.example.internal"}},
		{"wildcard below a denied wildcard", candidate(CommonName{}, san(SANDNS, "*.prod.example.internal")),
			[]string{"dns_name SAN matching denied pattern '*.prod.example.internal' found in request"}},
		{"wildcard above a denied wildcard, not covering", candidate(CommonName{}, san(SANDNS, "*.a.example.internal")), nil},
		{"wildcard covering a denied glob", candidate(CommonName{}, san(SANDNS, "*.dev.example.internal")),
			[]string{"dns_name SAN value '*.dev.example.internal' covers names denied by template policy: x*.dev.example.internal"}},
		{"wildcard CN covering a denied name", candidate(cn("*.example.internal")),
			[]string{"common_name value '*.example.internal' covers names denied by template policy: admin.example.internal"}},
		{"wildcard CN covering a denied glob", candidate(cn("*.prod.example.internal")),
			[]string{"common_name value '*.prod.example.internal' covers names denied by template policy: a*.prod.example.internal"}},
		{"wildcard CN not covering", candidate(cn("*.dev.example.internal")), nil},
	}
	for _, c := range cases {
		if got := p.Evaluate(c.c); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
}

// URI ports and empty paths (DESIGN §3, RFC 3986 §6.2.3): the default
// port and an empty http(s) path are canonicalized away in values and
// patterns alike; a value with another port is admitted only by a pattern
// naming that port (`*` admits port-less values only), and a deny pattern
// without a port denies the value whatever its port.
func TestEvaluateURIPortsAndPaths(t *testing.T) {
	star := mustNew(t, rulesWith(nil, map[string]*NameRule{SANURI: {
		Allowed: []string{"*"},
		Denied:  []string{"https://ADMIN.example.internal:443/*", "https://ops.example.internal:8443/*", "http://legacy.example.internal", "urn:x-corp:admin*"},
	}}))
	wantWarnings := []string{
		`altNames.uri.denied: "https://ADMIN.example.internal:443/*" is matched as "https://admin.example.internal/*"`,
		`altNames.uri.denied: "http://legacy.example.internal" is matched as "http://legacy.example.internal/"`,
	}
	if got := star.Warnings(); !reflect.DeepEqual(got, wantWarnings) {
		t.Errorf("Warnings:\n got  %q\n want %q", got, wantWarnings)
	}
	named := mustNew(t, rulesWith(nil, map[string]*NameRule{SANURI: {
		Allowed: []string{"https://*.example.internal:8443/*", "https://api.example.internal/*"},
		Denied:  []string{"https://api.example.internal:8443/admin/*"},
	}}))
	const namedAllowed = "https://*.example.internal:8443/*, https://api.example.internal/*"
	cases := []struct {
		name string
		p    *Policy
		uri  string
		want []string
	}{
		{"default port of a denied host", star, "https://admin.example.internal:443/x",
			[]string{"uri SAN matching denied pattern 'https://admin.example.internal/x' found in request"}},
		{"empty path of a denied host", star, "https://admin.example.internal",
			[]string{"uri SAN matching denied pattern 'https://admin.example.internal/' found in request"}},
		{"upper case, default port and empty path", star, "HTTPS://Admin.Example.Internal:0443",
			[]string{"uri SAN matching denied pattern 'https://admin.example.internal/' found in request"}},
		{"a deny without a port denies any port", star, "https://admin.example.internal:8443/x",
			[]string{"uri SAN matching denied pattern 'https://admin.example.internal:8443/x' found in request"}},
		{"a deny with a port denies that port", star, "https://ops.example.internal:8443/x",
			[]string{"uri SAN matching denied pattern 'https://ops.example.internal:8443/x' found in request"}},
		{"a deny with a port leaves the port-less value", star, "https://ops.example.internal/x", nil},
		{"a deny with a port leaves other ports, which star does not admit", star, "https://ops.example.internal:9443/x",
			[]string{"uri SAN value 'https://ops.example.internal:9443/x' does not match allowed patterns: *"}},
		{"a literal deny written without a path", star, "http://legacy.example.internal:80/",
			[]string{"uri SAN matching denied pattern 'http://legacy.example.internal/' found in request"}},
		{"star admits a port-less value", star, "https://www.example.internal/x", nil},
		{"star does not admit a port", star, "https://www.example.internal:8443/x",
			[]string{"uri SAN value 'https://www.example.internal:8443/x' does not match allowed patterns: *"}},
		{"star admits the default port, which is none", star, "https://www.example.internal:443/x", nil},
		{"star admits an opaque URI", star, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", nil},
		{"a URN namespace in another case", star, "urn:X-Corp:admin",
			[]string{"uri SAN matching denied pattern 'urn:x-corp:admin' found in request"}},
		{"a named port admits it", named, "https://web.example.internal:8443/x", nil},
		{"a port-less pattern admits the default port", named, "https://api.example.internal:443/v1", nil},
		{"a port-less pattern does not admit another port", named, "https://api.example.internal:9443/v1",
			[]string{"uri SAN value 'https://api.example.internal:9443/v1' does not match allowed patterns: " + namedAllowed}},
		{"a named port does not admit the port-less value", named, "https://web.example.internal/x",
			[]string{"uri SAN value 'https://web.example.internal/x' does not match allowed patterns: " + namedAllowed}},
		{"a deny with a port, allowed by another pattern", named, "https://api.example.internal:8443/admin/x",
			[]string{"uri SAN matching denied pattern 'https://api.example.internal:8443/admin/x' found in request"}},
	}
	for _, c := range cases {
		if got := c.p.Evaluate(candidate(CommonName{}, san(SANURI, c.uri))); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %q:\n got  %q\n want %q", c.name, c.uri, got, c.want)
		}
	}
}

// A CN glob that changed for host names still matches other CNs as written.
func TestNewWarnsAboutCNGlobs(t *testing.T) {
	p := mustNew(t, rulesWith(&NameRule{Allowed: []string{"Demo*"}}, nil))
	want := []string{`commonName.allowed: "Demo*" is matched as "demo*" for host names, as written for other common names`}
	if got := p.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Warnings = %q, want %q", got, want)
	}
	for _, value := range []string{"Demo Client", "Demo-Client", "demo.example.internal"} {
		if v := p.Evaluate(candidate(cn(value))); len(v) != 0 {
			t.Errorf("CN %q refused: %q", value, v)
		}
	}
}

// A SAN that did not come from ParseSAN is refused, never skipped.
func TestEvaluateRefusesUntypedSAN(t *testing.T) {
	p := mustNew(t, rulesWith(nil, map[string]*NameRule{SANDNS: {Allowed: []string{"*"}}}))
	want := []string{"SAN value '' of unknown type '' is not allowed by template policy"}
	if got := p.Evaluate(candidate(CommonName{}, SAN{})); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A denied *.prod.example.internal does not make *.example.internal
// refused: the wildcard covers one label, and no single label holds a dot.
func TestWildcardNotCoveringDeeperDenial(t *testing.T) {
	p := mustNew(t, rulesWith(nil, map[string]*NameRule{SANDNS: {Allowed: []string{"*"}, Denied: []string{"*.prod.example.internal"}}}))
	if v := p.Evaluate(candidate(CommonName{}, san(SANDNS, "*.example.internal"))); len(v) != 0 {
		t.Errorf("refused: %q", v)
	}
}

func TestEvaluateUnlistedSANsNameTheValue(t *testing.T) {
	none := mustNew(t, rulesWith(nil, nil))
	got := none.Evaluate(candidate(CommonName{}, san(SANDNS, "x.evil"), san(SANIP, "10.0.0.1")))
	want := []string{
		"dns_name SAN value 'x.evil' is not allowed by template policy (no SAN policies defined)",
		"ip_address SAN value '10.0.0.1' is not allowed by template policy (no SAN policies defined)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("no SAN rules:\n got  %q\n want %q", got, want)
	}
	dnsOnly := mustNew(t, rulesWith(nil, map[string]*NameRule{SANDNS: {Allowed: []string{"*"}}}))
	got = dnsOnly.Evaluate(candidate(CommonName{}, san(SANEmail, "a@x.evil"), san(SANEmail, "b@x.evil")))
	want = []string{
		"email SAN value 'a@x.evil' is not allowed by template policy (not defined in template)",
		"email SAN value 'b@x.evil' is not allowed by template policy (not defined in template)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("no email rule:\n got  %q\n want %q", got, want)
	}
}

func TestEvaluateLiteralOnlyEKUs(t *testing.T) {
	star := mustNew(t, Rules{
		ExtendedKeyUsages:   &NameRule{Allowed: []string{"*"}},
		KeyUsages:           &NameRule{Allowed: []string{"*"}, Denied: []string{"*_sign"}},
		SignatureAlgorithms: []string{"*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d",
	})
	named := mustNew(t, Rules{
		ExtendedKeyUsages:   &NameRule{Required: []string{"*"}, Allowed: []string{"ocsp_signing", "*_auth"}, Denied: []string{"time_*"}},
		SignatureAlgorithms: []string{"*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d",
	})
	cases := []struct {
		name string
		p    *Policy
		ekus []string
		kus  []string
		want []string
	}{
		{"star allows server_auth", star, []string{"server_auth", "client_auth", "email_protection"}, nil, nil},
		{"star never allows code_signing", star, []string{"code_signing"}, nil, []string{"Invalid extended key usages: code_signing"}},
		{"star never allows ocsp_signing or time_stamping", star, []string{"server_auth", "ocsp_signing", "time_stamping"}, nil,
			[]string{"Invalid extended key usages: ocsp_signing, time_stamping"}},
		{"denied star still matches", star, nil, []string{"digital_signature", "key_cert_sign", "crl_sign"}, []string{"Denied key usages found in request: key_cert_sign, crl_sign"}},
		{"named literally", named, []string{"server_auth", "ocsp_signing"}, nil, nil},
		{"an unnamed literal-only EKU", named, []string{"server_auth", "code_signing"}, nil, []string{"Invalid extended key usages: code_signing"}},
		{"required star is not met by literal-only EKUs", named, []string{"ocsp_signing"}, nil, []string{"Missing required extended key usages: *"}},
		{"denied glob matches a literal-only EKU", named, []string{"server_auth", "time_stamping"}, nil, []string{"Denied extended key usages found in request: time_stamping"}},
	}
	for _, c := range cases {
		cand := candidate(CommonName{})
		cand.ExtKeyUsages, cand.KeyUsages = c.ekus, c.kus
		if got := c.p.Evaluate(cand); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
	if star.RequiresExtKeyUsage() || !named.RequiresExtKeyUsage() {
		t.Errorf("RequiresExtKeyUsage: star %t, named %t", star.RequiresExtKeyUsage(), named.RequiresExtKeyUsage())
	}
	if mustNew(t, rulesWith(nil, nil)).RequiresExtKeyUsage() {
		t.Errorf("RequiresExtKeyUsage without a required entry")
	}
	_, err := New(Rules{ExtendedKeyUsages: &NameRule{Allowed: []string{"ocsp*"}}, SignatureAlgorithms: []string{"*"}, KeyAlgorithms: []string{"*"}, MaxValidity: "1d"})
	if err == nil || !strings.Contains(err.Error(), `extendedKeyUsages.allowed: "ocsp*" matches only usages that must be named literally`) {
		t.Errorf("New accepted an allowed pattern that can only match a literal-only EKU: %v", err)
	}
}

func TestSampleSatisfiesEveryKindOfPattern(t *testing.T) {
	cases := []struct {
		name    string
		cn      *NameRule
		alt     map[string]*NameRule
		wantCN  string
		wantSAN []string // type:value
	}{
		{"internal services",
			&NameRule{Allowed: []string{"*.svc.example.internal"}},
			map[string]*NameRule{
				SANDNS:   {Allowed: []string{"*.svc.example.internal"}},
				SANURI:   {Required: []string{"spiffe://example.internal/*"}},
				SANEmail: {Required: []string{"*@example.internal"}},
			},
			"sample.svc.example.internal",
			[]string{"email:sample@example.internal", "uri:spiffe://example.internal/sample", "dns_name:sample.svc.example.internal"}},
		{"addresses from prefixes and globs", nil,
			map[string]*NameRule{SANIP: {Required: []string{"10.0.0.0/8", "fd00::/8", "192.168.*", "10.9.9.9/32"}, Denied: []string{"10.0.0.1"}}},
			"",
			[]string{"ip_address:fd00::1", "ip_address:192.168.0.1", "ip_address:10.9.9.9"}},
		{"any URI, whole-value e-mail glob", nil,
			map[string]*NameRule{SANURI: {Required: []string{"*"}}, SANEmail: {Required: []string{"*"}}},
			"",
			[]string{"email:sample@example.internal", "uri:spiffe://example.internal/sample"}},
		{"CN not allowed as DNS SAN", &NameRule{Required: []string{"*.prod.example.internal"}, Denied: []string{"sample.prod.example.internal"}},
			map[string]*NameRule{SANDNS: {Allowed: []string{"example.internal"}}},
			"",
			[]string{"dns_name:example.internal"}},
		{"free-text CN", &NameRule{Allowed: []string{"Demo *"}}, nil, "Demo sample", nil},
	}
	for _, c := range cases {
		p := mustNew(t, rulesWith(c.cn, c.alt))
		name, sans := p.Sample()
		var got []string
		for _, s := range sans {
			got = append(got, s.Type()+":"+s.Value())
		}
		if name.String() != c.wantCN || !reflect.DeepEqual(got, c.wantSAN) {
			t.Errorf("%s: Sample = %q, %q; want %q, %q", c.name, name, got, c.wantCN, c.wantSAN)
		}
		if c.wantCN == "" && c.cn != nil && len(c.cn.Required) > 0 {
			continue // the policy cannot be met; Evaluate says so
		}
		if v := p.Evaluate(candidate(name, sans...)); len(v) != 0 {
			t.Errorf("%s: the sample violates its own policy: %q", c.name, v)
		}
	}
}

// Pattern canonicalization is a fixed point, and every canonical value is a
// valid pattern of its type that matches itself — so a config may always
// name exactly the value it means.
func FuzzSANPattern(f *testing.F) {
	for _, s := range []string{"*.Example.internal", "10.0.0.0/8", "::ffff:10.0.0.0/104", "10.*", "*@EXAMPLE.internal", "*",
		"SPIFFE://Example.internal/ns/*", "https://*.example.internal:08443/%7e*", "urn:uuid:*", "a**b.example"} {
		f.Add(s)
	}
	for _, c := range sanCases {
		if len(c.raw) <= maxFuzzSeed {
			f.Add(c.raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, typ := range SANTypeNames {
			if p, err := parseSANPattern(typ, raw); err == nil {
				again, err := parseSANPattern(typ, p.text)
				if err != nil || again.text != p.text {
					t.Fatalf("parseSANPattern(%s, %q) = %q, but parseSANPattern of that = %q, %v", typ, raw, p.text, again.text, err)
				}
			}
			v, err := ParseSAN(typ, raw)
			if err != nil {
				continue
			}
			p, err := parseSANPattern(typ, v.Value())
			if err != nil || !p.match(v, admitting) {
				t.Fatalf("the value %s %q is no pattern matching itself: %q, %v", typ, v.Value(), p.text, err)
			}
		}
	})
}
