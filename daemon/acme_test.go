package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The acme: section is checked at start-up like the rest, every problem
// at once; host overrides take loopback addresses only.
func TestLoadConfigChecksACMESettings(t *testing.T) {
	p := writeConfig(t, `
acme:
  httpPort: 70000
  resolvers: ["dns.example.internal:53"]
  hostOverrides: {a.example.internal: 10.0.0.1, b.example.internal: not-an-ip, c.example.internal: 127.0.0.1}
profiles:
  - id: b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e
    name: web
    ca: root
    acme: {enabled: true, challenges: [http-01, carrier-pigeon], externalAccountRequired: true}
    allowedIdentities: ["cn:x"]
    policy: {altNames: {dns_name: {allowed: ["*.example.internal"]}}, signatureAlgorithms: ["*"], keyAlgorithms: ["*"], maxValidity: 1d}
`)
	_, err := LoadConfig(p)
	if err == nil {
		t.Fatal("LoadConfig accepted a broken acme section")
	}
	for _, want := range []string{
		"acme.httpPort: 70000 is not a TCP port", `acme.resolvers: "dns.example.internal:53" is not IP:port`,
		"acme.hostOverrides: a.example.internal points at 10.0.0.1, which is not a loopback address",
		`acme.hostOverrides: b.example.internal: "not-an-ip" is not an IP address`,
		`acme.challenges: unknown challenge type "carrier-pigeon"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "c.example.internal") {
		t.Errorf("a loopback override was refused:\n%v", err)
	}
}

func TestReadEABSecret(t *testing.T) {
	dir := t.TempDir()
	short, long := filepath.Join(dir, "short"), filepath.Join(dir, "long")
	os.WriteFile(short, []byte("too short"), 0o600)
	os.WriteFile(long, []byte(strings.Repeat("k", 32)), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	for _, c := range []struct {
		file     string
		required bool
		want     string // "" ok
		none     bool   // no secret and no error
	}{
		{"", false, "", true},
		{"", true, "no EAB secret", false},
		{short, true, "at least 32 are needed", false},
		{long, true, "", false},
		{filepath.Join(dir, "missing"), false, "reading the EAB secret", false},
	} {
		cfg := &Config{acme: acmeSettings{eabKeyFile: c.file, eabRequired: c.required}}
		secret, err := cfg.readEABSecret()
		switch {
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c, err, c.want)
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c, err)
		case c.want == "" && c.none != (secret == nil):
			t.Errorf("%+v: secret %q", c, secret)
		}
	}
	// The systemd credential is the fallback.
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	os.WriteFile(filepath.Join(dir, CredentialEABKeyName), []byte(strings.Repeat("c", 40)), 0o600)
	if secret, err := (&Config{}).readEABSecret(); err != nil || len(secret) != 40 {
		t.Errorf("credential: %q, %v", secret, err)
	}
}
