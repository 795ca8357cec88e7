package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestCheckConfigAcceptsTheDemo(t *testing.T) {
	out, errOut, code := s.pkid(t, "check-config", "--config", s.path("pkid.yaml"))
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("check-config exit %d\n%s%s", code, out, errOut)
	}
}

// Each broken variant of the demo config is refused at start-up with a
// message naming the problem.
func TestCheckConfigRefuses(t *testing.T) {
	base, err := os.ReadFile(s.path("pkid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		edit    func(string) string
		mention []string
	}{
		{"PIN in the config", func(c string) string {
			return strings.Replace(c, "  pinFile: hsm-pin\n", "  pinFile: hsm-pin\n  pin: \"1234\"\n", 1)
		}, []string{"hsm.pin", "must never be in the config file"}},
		{"unknown field, reported with every other problem", func(c string) string {
			c = strings.Replace(c, "listen:", "listne: x\nlisten:", 1)
			return strings.Replace(c, "maxValidity: 24h", "maxValidity: forever", 1)
		}, []string{"field listne not found", "maxValidity"}},
		{"CA key that is not the certificate's", func(c string) string {
			return strings.Replace(c, "keyLabel: pkid-ec-issuing", "keyLabel: pkid-root", 1)
		}, []string{"CA ec-issuing", "public key", "does not match"}},
		{"the mTLS CA key as an issuing CA's", func(c string) string {
			return strings.Replace(c, "keyLabel: pkid-ec-issuing", "keyLabel: pkid-tls-ca", 1)
		}, []string{"CA ec-issuing", `key "pkid-tls-ca": role is mTLS CA key, must be CA, audit or OCSP key`}},
		{"CA key missing from the token", func(c string) string {
			return strings.Replace(c, "keyLabel: pkid-rsa-issuing", "keyLabel: nope", 1)
		}, []string{"CA rsa-issuing", "no key pair"}},
		{"chain that does not link", func(c string) string {
			return strings.Replace(c, "certificate: ca/rsa-issuing.pem", "certificate: tls/ca.pem", 1)
		}, []string{"CA rsa-issuing", "not signed by parent root"}},
		{"profile that can never issue", func(c string) string {
			return strings.Replace(c, "signatureAlgorithms: [ECDSA-SHA256]", "signatureAlgorithms: [RSA-SHA256]", 1)
		}, []string{"prod-clients can never issue"}},
		{"profile whose own defaults fail lint", func(c string) string {
			return strings.Replace(c, "extendedKeyUsages: [client_auth]\n    policy:", "extendedKeyUsages: [client_auth, server_auth]\n    policy:", 1)
		}, []string{"prod-clients"}},
		{"client CA bundle that trusts pkid's own root", func(c string) string {
			return strings.Replace(c, "clientCAs: tls/ca.pem", "clientCAs: ca/root.pem", 1)
		}, []string{"tls.clientCAs", "pkid Demo Root CA", "every certificate pkid issues would be a client identity", "allowIssuedClientCertificates"}},
		{"untyped identity", func(c string) string {
			return strings.Replace(c, `allowedIdentities: ["uri:spiffe://example.internal/demo-client", "machine:demo-agent"]`, `allowedIdentities: ["spiffe://example.internal/demo-client", "machine:demo-agent"]`, 1)
		}, []string{`write "uri:spiffe://example.internal/demo-client"`}},
		{"a profile whose certificates could carry no EKU", func(c string) string {
			return strings.Replace(c, "      extendedKeyUsages: [server_auth]\n", "      extendedKeyUsages: []\n", 1)
		}, []string{"web-server", "could carry no EKU"}},
		{"audit key that is not the configured public key", func(c string) string {
			return strings.Replace(c, "keyLabel: pkid-audit", "keyLabel: pkid-ec-issuing", 1)
		}, []string{"audit key", "does not match"}},
		{"duplicate profile id", func(c string) string {
			return strings.Replace(c, "13646ca2-2a8e-4d37-aa4e-641fc7771122", "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e", 1)
		}, []string{"is used twice"}},
	}
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			variant := s.path("variant-" + string(rune('a'+k)) + ".yaml")
			if err := os.WriteFile(variant, []byte(c.edit(string(base))), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(variant)
			out, errOut, code := s.pkid(t, "check-config", "--config", variant)
			if code == 0 {
				t.Fatalf("check-config accepted a broken config:\n%s", out)
			}
			for _, m := range c.mention {
				if !strings.Contains(errOut, m) {
					t.Errorf("output lacks %q:\n%s", m, errOut)
				}
			}
			if strings.Contains(errOut+out, strings.TrimSpace(readFile(t, s.path("hsm-pin")))) {
				t.Error("the PIN appears in check-config's output")
			}
		})
	}
}

// A client CA bundle that trusts pkid's own CAs is accepted when the
// operator says so on purpose.
func TestCheckConfigAllowsIssuedClientCertificatesOnPurpose(t *testing.T) {
	c := strings.Replace(readFile(t, s.path("pkid.yaml")), "clientCAs: tls/ca.pem", "clientCAs: ca/root.pem\n  allowIssuedClientCertificates: true", 1)
	variant := s.path("variant-allow-issued.yaml")
	if err := os.WriteFile(variant, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(variant)
	if out, errOut, code := s.pkid(t, "check-config", "--config", variant); code != 0 {
		t.Fatalf("check-config: %d %s %s", code, out, errOut)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setup-demo.sh run again keeps the fixture (same CA certificates).
func TestSetupDemoIsIdempotent(t *testing.T) {
	before := readFile(t, s.path("ca", "root.pem"))
	out, _, code := runScript(t, "../softhsm/setup-demo.sh", s.dir)
	if code != 0 || !strings.Contains(out, "already set up") {
		t.Fatalf("second run: exit %d %s", code, out)
	}
	if readFile(t, s.path("ca", "root.pem")) != before {
		t.Error("the second run replaced the root CA")
	}
}

// A CA whose certificate expires within 30 days passes check-config with a
// warning naming it.
func TestCheckConfigWarnsAboutExpiringCA(t *testing.T) {
	cert := s.path("ca", "short-lived.pem")
	os.Remove(cert)
	create := exec.Command(s.bin, "ca", "create-intermediate", "--module", moduleFromConfig(t, s.dir), "--token-label", "pkid-demo",
		"--pin-file", s.path("hsm-pin"), "--label", "pkid-short-lived", "--key-type", "ec-p256", "--cn", "Short-lived CA",
		"--parent-label", "pkid-root", "--parent-cert", s.path("ca", "root.pem"), "--validity", "10d", "--out", cert)
	create.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.path("softhsm2.conf"))
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("create-intermediate: %v\n%s", err, out)
	}
	cfg := strings.Replace(readFile(t, s.path("pkid.yaml")), "profiles:\n",
		"  - name: short-lived\n    certificate: ca/short-lived.pem\n    keyLabel: pkid-short-lived\n    parent: root\nprofiles:\n", 1)
	variant := s.path("expiring.yaml")
	if err := os.WriteFile(variant, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(variant)
	out, errOut, code := s.pkid(t, "check-config", "--config", variant)
	if code != 0 || !strings.Contains(out, "warning: CA short-lived: certificate expires") {
		t.Fatalf("check-config: exit %d\n%s%s", code, out, errOut)
	}
}

// Patterns are canonicalized when the config loads, and check-config says
// which ones changed (DESIGN.md §3).
func TestCheckConfigWarnsAboutCanonicalizedPatterns(t *testing.T) {
	c := strings.Replace(readFile(t, s.path("pkid.yaml")), `allowed: [example.internal, "*.example.internal"]`,
		`allowed: [EXAMPLE.internal, "*.example.internal"]`, 1)
	variant := s.path("variant-upper.yaml")
	if err := os.WriteFile(variant, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(variant)
	out, errOut, code := s.pkid(t, "check-config", "--config", variant)
	if code != 0 || !strings.Contains(out, "warning:") || !strings.Contains(out, `"EXAMPLE.internal"`) || !strings.Contains(out, `"example.internal"`) {
		t.Errorf("check-config: %d\n%s\n%s", code, out, errOut)
	}
}
