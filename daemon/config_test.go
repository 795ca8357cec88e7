package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
)

// Every config file the project ships decodes strictly and validates.
func TestShippedConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped configs found: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "prometheus.yml") || strings.Contains(f, "alerts") {
			continue
		}
		if _, err := LoadConfig(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pkid.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	p := writeConfig(t, `
listen: "nonsense"
colour: blue
tls: {certificate: a.pem}
database: pkid.db
hsm: {module: /x.so, tokenLabel: t, pin: "123456", maxSessions: 1}
cas:
  - {name: root, certificate: root.pem, parent: nowhere}
  - {name: root, certificate: root2.pem}
profiles:
  - id: not-a-uuid
    name: Web Server
    ca: missing
    backdate: 1h
    defaults: {keyUsages: [flying]}
    policy: {keyAlgorithms: [RSA_1024], maxValidity: 90x}
  - id: b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e
    name: web
    ca: root
    allowedIdentities: ["*"]
    policy: {signatureAlgorithms: ["*"], keyAlgorithms: ["*"], maxValidity: 1d}
`)
	_, err := LoadConfig(p)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("LoadConfig = %v, want *ConfigError", err)
	}
	for _, want := range []string{
		"hsm.pin: the PIN must never be in the config file", "field colour not found", "field pin not found",
		`listen: "nonsense" is not host:port`, "tls.key: required", "tls.clientCAs: required", "hsm.maxSessions",
		`cas[1].name: "root" is used twice`, `cas[0].parent: no CA named "nowhere"`,
		`"not-a-uuid" is not a UUID`, `"Web Server" must be`, `no CA named "missing"`, "backdate: 1h is more than",
		`unknown key usage "flying"`, `"RSA_1024" matches none`, "signatureAlgorithms: none allowed", "maxValidity",
		"allowedIdentities: empty", `CA "root" has no keyLabel`, "audit.keyLabel: required",
		`allowedIdentities[0]: "*" has no identity type`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}

func TestLoadConfigResolvesRelativePaths(t *testing.T) {
	p := writeConfig(t, `
tls: {certificate: tls/s.pem, key: /abs/k.pem, clientCAs: tls/ca.pem}
database: pkid.db
hsm: {module: /m.so, tokenLabel: t, pinFile: pin, environment: {SOFTHSM2_CONF: softhsm2.conf}}
audit: {keyLabel: a, publicKey: audit/key.pem}
cas: [{name: root, certificate: ca/root.pem, keyLabel: k}]
profiles:
  - {id: b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e, name: web, ca: root, allowedIdentities: ["cn:*"],
     defaults: {extendedKeyUsages: [client_auth]}, policy: {signatureAlgorithms: ["*"], keyAlgorithms: ["*"], maxValidity: 1d}}
`)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if cfg.tls.Certificate != filepath.Join(dir, "tls/s.pem") || cfg.tls.Key != "/abs/k.pem" ||
		cfg.database != filepath.Join(dir, "pkid.db") || cfg.hsm.PINFile != filepath.Join(dir, "pin") ||
		cfg.cas[0].Certificate != filepath.Join(dir, "ca/root.pem") || cfg.hsm.Environment["SOFTHSM2_CONF"] != filepath.Join(dir, "softhsm2.conf") ||
		cfg.audit.PublicKey != filepath.Join(dir, "audit/key.pem") {
		t.Errorf("paths not resolved: %+v", cfg)
	}
	if cfg.listen != DefaultListen || cfg.metricsListen != DefaultMetricsListen || cfg.limits.maxPerIdentity != 32 ||
		cfg.limits.bodyReadTimeout != 10*time.Second {
		t.Errorf("defaults not filled: %q %q %+v", cfg.listen, cfg.metricsListen, cfg.limits)
	}
}

func TestReadPINSources(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("file-pin\n"), 0o600)
	credDir := filepath.Join(dir, "creds")
	os.Mkdir(credDir, 0o700)
	os.WriteFile(filepath.Join(credDir, CredentialPINName), []byte("cred-pin"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)

	cfg := &Config{hsm: HSMConfig{PINEnv: "PKID_TEST_PIN"}}
	t.Setenv("PKID_TEST_PIN", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := cfg.hsm.ReadPIN(); err == nil {
		t.Error("no source configured, but a PIN was read")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	if pin, _ := cfg.hsm.ReadPIN(); pin != "cred-pin" {
		t.Errorf("credential: %q", pin)
	}
	t.Setenv("PKID_TEST_PIN", "env-pin")
	if pin, _ := cfg.hsm.ReadPIN(); pin != "env-pin" {
		t.Errorf("env beats credential: %q", pin)
	}
	cfg.hsm.PINFile = pinFile
	if pin, _ := cfg.hsm.ReadPIN(); pin != "file-pin" {
		t.Errorf("file beats env: %q", pin)
	}
	cfg.hsm.PINFile = empty
	if _, err := cfg.hsm.ReadPIN(); err == nil {
		t.Error("an empty PIN file was accepted")
	}
}

// PostgreSQL's password: databasePasswordFile, else the systemd credential
// database-password, else none (peer or certificate authentication).
func TestReadDatabasePasswordSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "db-password")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	credDir := filepath.Join(dir, "creds")
	os.Mkdir(credDir, 0o700)

	cfg := &Config{}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if pw, err := cfg.readDatabasePassword(); err != nil || pw != "" {
		t.Errorf("no source: %q, %v; want none", pw, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	if pw, err := cfg.readDatabasePassword(); err != nil || pw != "" {
		t.Errorf("a credentials directory without the credential: %q, %v; want none", pw, err)
	}
	os.WriteFile(filepath.Join(credDir, CredentialDatabasePassword), []byte("from-credential\r\n"), 0o600)
	if pw, err := cfg.readDatabasePassword(); err != nil || pw != "from-credential" {
		t.Errorf("credential: %q, %v", pw, err)
	}
	cfg.dbPassword = file
	if pw, err := cfg.readDatabasePassword(); err != nil || pw != "from-file" {
		t.Errorf("the file beats the credential: %q, %v", pw, err)
	}
	cfg.dbPassword = filepath.Join(dir, "missing")
	if _, err := cfg.readDatabasePassword(); err == nil || strings.Contains(err.Error(), "from-") {
		t.Errorf("a missing password file: %v", err)
	}
}

// Any byte string decodes to a checked config or to a *ConfigError; never
// a panic, never an unchecked config.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{"", "listen: x", "profiles: [{id: 1}]", "hsm: {pin: 1}", "cas: [{name: a, parent: a}]"} {
		f.Add([]byte(seed))
	}
	if b, err := os.ReadFile("../configs/pkid.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := parseConfig(raw, "/fuzz/pkid.yaml")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a ConfigError with problems: %v", err)
			}
			return
		}
		if len(cfg.profiles) == 0 || cfg.hsm.Module == "" || cfg.database == "" || cfg.audit.KeyLabel == "" {
			t.Fatalf("an incomplete config was accepted: %+v", cfg)
		}
	})
}

// The v1 surface's settings are checked at start-up like the rest: node
// name, machine identities, access-token limits, project and applications.
func TestLoadConfigChecksV1Settings(t *testing.T) {
	p := writeConfig(t, `
nodeName: "node one"
nodeTimeout: 2s
machineIdentities:
  - {name: demo-agent, clientId: not-a-uuid, clientSecretHash: nope}
accessTokens: {loginsPerClientPerMinute: -1}
project: {id: 42, slug: Not_A_Slug}
applications:
  - {id: 3b0ad0e6-8c16-4a3e-9d32-4d7b4b0b8a51, name: web, profiles: [nowhere]}
  - {id: 3b0ad0e6-8c16-4a3e-9d32-4d7b4b0b8a51, name: web}
`)
	_, err := LoadConfig(p)
	if err == nil {
		t.Fatal("LoadConfig accepted a broken v1 section")
	}
	for _, want := range []string{
		`nodeName: "node one" must be`, "nodeTimeout: 2s is below the 10s floor", "machineIdentities: ",
		"accessTokens: login limits must not be negative", `project.id: "42" is not a UUID`,
		`project.slug: "Not_A_Slug" must be`, `applications[0].profiles: no profile named "nowhere"`,
		"applications[1]: a unique name and id are required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}

// The node name defaults to the host name, which DESIGN.md §16 names.
func TestNodeNameDefaultsToHostName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	cfg, err := LoadConfig("../configs/pkid.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.nodeName != host || cfg.nodeTimeout != DefaultNodeTimeout {
		t.Errorf("node %q timeout %s, want %q %s", cfg.nodeName, cfg.nodeTimeout, host, DefaultNodeTimeout)
	}
}

// A profile naming a machine identity nobody configured, or a pattern that
// is matched in another form than written, loads with a warning.
func TestConfigWarnsAboutIdentityPatterns(t *testing.T) {
	cfg, err := LoadConfig("../configs/pkid.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &ConfigFile{Profiles: append([]issuer.ProfileConfig(nil), cfg.profileFiles...)}
	f.Profiles[0].AllowedIdentities = []string{"machine:nobody", "machine:ci-*", "URI:spiffe://Example.Internal/x", "cn:Demo-Client", "cn:Demo*"}
	got := strings.Join(unknownMachines(f.Profiles, nil), "\n")
	if !strings.Contains(got, `profiles[0].allowedIdentities[0]: no machine identity named "nobody"`) || strings.Contains(got, "ci-*") {
		t.Errorf("unknown machines: %s", got)
	}
	p, err := issuer.NewProfile(f.Profiles[0])
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(w, "allowedIdentities[2]") || !strings.Contains(w, "canonical") {
		t.Errorf("no warning for a rewritten identity pattern: %q", w)
	}
	for _, want := range []string{`allowedIdentities[3]: "cn:Demo-Client" is matched as "cn:demo-client" (canonical form)`,
		`allowedIdentities[4]: "cn:Demo*" is matched as "cn:demo*" for host names, as written for other common names`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %s:\n%s", want, w)
		}
	}
}

// A node's connections are named pkid/<node> within PostgreSQL's 63 bytes.
func TestApplicationName(t *testing.T) {
	if got := applicationName("node-a"); got != "pkid/node-a" {
		t.Errorf("applicationName(node-a) = %q", got)
	}
	long := strings.Repeat("n", 64) // the longest node name config allows
	if got := applicationName(long); len(got) != 63 || got != ("pkid/" + long)[:63] {
		t.Errorf("a 64-character node name gives %q (%d bytes)", got, len(got))
	}
}
