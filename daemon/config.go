package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	yaml "go.yaml.in/yaml/v3"

	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/auth"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
)

// Defaults for settings the config file may omit.
const (
	DefaultListen        = "127.0.0.1:8443"
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultPINEnv        = "PKID_HSM_PIN"
	DefaultNodeTimeout   = time.Minute
	CredentialPINName    = "hsm-pin" // file name under $CREDENTIALS_DIRECTORY
)

// ConfigFile is the config file as decoded, before validation. NewConfig
// turns it into a Config.
type ConfigFile struct {
	Listen        string     `yaml:"listen"`
	MetricsListen string     `yaml:"metricsListen"`
	PublicListen  string     `yaml:"publicListen"` // optional: CRLs, CA certificates, OCSP over plain HTTP
	CRL           CRLConfig  `yaml:"crl"`
	OCSP          OCSPConfig `yaml:"ocsp"`
	MetricsTLS    *TLSConfig `yaml:"metricsTLS"`   // optional: TLS (mTLS with clientCAs) for scrapers
	MetricsPprof  bool       `yaml:"metricsPprof"` // serve /debug/pprof/profile on the metrics listener (off by default)
	TLS           TLSConfig  `yaml:"tls"`
	Database      string     `yaml:"database"` // a SQLite file, or postgres://… (DESIGN.md §16)
	// DatabasePasswordFile holds PostgreSQL's password (else the systemd
	// credential database-password, if there is one): never in the DSN.
	DatabasePasswordFile string                 `yaml:"databasePasswordFile"`
	DatabaseMaxConns     int                    `yaml:"databaseMaxConns"` // PostgreSQL pool size; default 10
	NodeName             string                 `yaml:"nodeName"`         // default: the host name (DESIGN.md §16)
	NodeTimeout          string                 `yaml:"nodeTimeout"`      // default 1m: a node silent this long is taken for stopped
	HSM                  HSMConfig              `yaml:"hsm"`
	Audit                AuditConfig            `yaml:"audit"`
	CAs                  []CAConfig             `yaml:"cas"`
	Profiles             []issuer.ProfileConfig `yaml:"profiles"`
	Limits               LimitsConfig           `yaml:"limits"`
	// Infisical's v1 surface (DESIGN.md §15).
	MachineIdentities []auth.MachineConfig `yaml:"machineIdentities"`
	AccessTokens      AccessTokensConfig   `yaml:"accessTokens"`
	Project           ProjectConfig        `yaml:"project"`
	Applications      []ApplicationConfig  `yaml:"applications"`
	ACME              ACMEConfig           `yaml:"acme"` // DESIGN.md §17
}

// AccessTokensConfig says where the key that signs machine identities'
// access tokens is (read like the PIN: a file, else the systemd credential
// access-token-key; every node must have the same key) and how logins are
// rate-limited.
type AccessTokensConfig struct {
	KeyFile            string `yaml:"keyFile"`
	PerClientPerMinute int    `yaml:"loginsPerClientPerMinute"`
	PerSourcePerMinute int    `yaml:"loginsPerSourcePerMinute"`
	Burst              int    `yaml:"loginBurst"`
}

// ProjectConfig is the one project pkid presents to Infisical's clients.
type ProjectConfig struct {
	ID   string `yaml:"id"`
	Slug string `yaml:"slug"`
	Name string `yaml:"name"`
}

// ApplicationConfig groups profiles (by name) for Infisical's v2 agent
// configs.
type ApplicationConfig struct {
	ID       string   `yaml:"id"`
	Name     string   `yaml:"name"`
	Profiles []string `yaml:"profiles"`
}

// CredentialTokenKeyName is the systemd credential holding the access-token key.
const CredentialTokenKeyName = "access-token-key"

// LimitsConfig bounds what one client can make the API listener hold.
// Durations use the ms grammar; zero values take the defaults.
type LimitsConfig struct {
	MaxBodyBytes             int64  `yaml:"maxBodyBytes"`             // default 65536
	MaxHeaderBytes           int    `yaml:"maxHeaderBytes"`           // default 16384
	ReadHeaderTimeout        string `yaml:"readHeaderTimeout"`        // default 10s
	ReadTimeout              string `yaml:"readTimeout"`              // default 30s
	WriteTimeout             string `yaml:"writeTimeout"`             // default 2m
	IdleTimeout              string `yaml:"idleTimeout"`              // default 2m
	BodyReadTimeout          string `yaml:"bodyReadTimeout"`          // default 10s: the whole body must arrive within it
	MaxConcurrentRequests    int    `yaml:"maxConcurrentRequests"`    // default 256
	MaxConcurrentPerIdentity int    `yaml:"maxConcurrentPerIdentity"` // default 32
	DatabaseBusyTimeout      string `yaml:"databaseBusyTimeout"`      // default 5s: how long a write waits for a lock held elsewhere
}

// TLSConfig names a listener's TLS material.
type TLSConfig struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
	ClientCAs   string `yaml:"clientCAs"`
	// AllowIssuedClientCertificates lets the client CA bundle contain (or
	// be an ancestor of) one of pkid's own issuing CAs, which makes every
	// certificate pkid issues a client identity. Off unless meant.
	AllowIssuedClientCertificates bool `yaml:"allowIssuedClientCertificates"`
}

// HSMConfig selects the PKCS#11 token. The PIN is never here: it comes
// from pinFile, the environment variable pinEnv, or the systemd credential
// hsm-pin.
type HSMConfig struct {
	Module          string            `yaml:"module"`
	TokenLabel      string            `yaml:"tokenLabel"`
	PINFile         string            `yaml:"pinFile"`
	PINEnv          string            `yaml:"pinEnv"`
	MaxSessions     int               `yaml:"maxSessions"`
	PoolWaitTimeout string            `yaml:"poolWaitTimeout"`
	Environment     map[string]string `yaml:"environment"` // e.g. SOFTHSM2_CONF
}

// CRLConfig says how long CRLs are valid and how soon after a revocation
// a new one is made (ms grammar; defaults 7d and 10s).
type CRLConfig struct {
	Validity string `yaml:"validity"`
	MaxDelay string `yaml:"maxDelay"`
}

// OCSPConfig says how long OCSP answers and responder certificates live
// (ms grammar; defaults 12h and 30d).
type OCSPConfig struct {
	Validity          string `yaml:"validity"`
	ResponderValidity string `yaml:"responderValidity"`
}

// AuditConfig names the audit key that signs checkpoints of the audit
// chain (DESIGN.md §6): its label in the token and its public key, which
// `pkid audit verify` checks signatures with.
type AuditConfig struct {
	KeyLabel  string `yaml:"keyLabel"`
	PublicKey string `yaml:"publicKey"`
}

// CAConfig is one CA: its certificate, its key in the token (absent for a
// chain-only CA such as an offline root) and its parent.
type CAConfig struct {
	Name                   string   `yaml:"name"`
	Certificate            string   `yaml:"certificate"`
	KeyLabel               string   `yaml:"keyLabel"`
	Parent                 string   `yaml:"parent"`
	CRLURLs                []string `yaml:"crlURLs"`
	IssuingCertificateURLs []string `yaml:"issuingCertificateURLs"`
	OCSPURLs               []string `yaml:"ocspURLs"`
	PolicyOIDs             []string `yaml:"policyOIDs"`
	// OCSPKeyLabel names the key of the CA's delegated OCSP responder in
	// the token (pkid ca create-ocsp-key); pkid certifies it itself.
	OCSPKeyLabel string `yaml:"ocspKeyLabel"`
}

// limits is LimitsConfig with defaults applied.
type limits struct {
	maxBodyBytes                                              int64
	maxHeaderBytes, maxConcurrent, maxPerIdentity             int
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	bodyReadTimeout, databaseBusyTimeout                      time.Duration
}

// Config is a validated configuration: every path resolved, every default
// applied, every profile built. Only NewConfig makes one.
type Config struct {
	path          string
	listen        string
	metricsListen string
	publicListen  string
	crl           issuer.CRLConfig
	ocsp          issuer.OCSPConfig
	metricsTLS    *TLSConfig
	metricsPprof  bool
	tls           TLSConfig
	database      string
	postgres      bool // database is a PostgreSQL DSN
	dbPassword    string
	dbMaxConns    int
	nodeName      string
	nodeTimeout   time.Duration
	hsm           HSMConfig
	poolWait      time.Duration
	audit         AuditConfig
	cas           []CAConfig
	profiles      []*issuer.Profile
	profileFiles  []issuer.ProfileConfig
	limits        limits
	machineFiles  []auth.MachineConfig
	machines      *auth.Machines // nil: no machine identities
	tokens        AccessTokensConfig
	catalog       api.Catalog
	acme          acmeSettings
	warnings      []string
}

// ConfigError lists every problem found in a config file.
type ConfigError struct {
	Path     string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("config %s: %d problem(s):\n  - %s", e.Path, len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// LoadConfig reads and strictly decodes path (unknown fields are errors)
// and validates it with NewConfig. All problems are reported at once as a
// *ConfigError.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parseConfig(raw, path)
}

// parseConfig decodes and checks raw as the config file at path.
func parseConfig(raw []byte, path string) (*Config, error) {
	var problems []string
	if pinInConfig(raw) {
		problems = append(problems, "hsm.pin: the PIN must never be in the config file; use hsm.pinFile, hsm.pinEnv or the systemd credential "+CredentialPINName)
	}
	var f ConfigFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &ConfigError{Path: path, Problems: append(problems, err.Error())}
		}
		problems = append(problems, te.Errors...)
	}
	cfg, err := NewConfig(&f, path)
	var ce *ConfigError
	if errors.As(err, &ce) {
		problems = append(problems, ce.Problems...)
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Path: path, Problems: problems}
	}
	return cfg, nil
}

// pinInConfig reports whether the hsm section carries a "pin" key.
func pinInConfig(raw []byte) bool {
	var doc struct {
		HSM map[string]any `yaml:"hsm"`
	}
	if yaml.Unmarshal(raw, &doc) != nil {
		return false
	}
	_, ok := doc.HSM["pin"]
	return ok
}

// NewConfig validates f, read from the file at path (relative paths are
// relative to its directory), and returns the Config or a *ConfigError
// naming every problem. It checks everything that needs no token and no
// database.
func NewConfig(f *ConfigFile, path string) (*Config, error) {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	dir := filepath.Dir(path)
	abs := func(s string) string {
		if s != "" && !filepath.IsAbs(s) {
			return filepath.Join(dir, s)
		}
		return s
	}
	c := &Config{path: path, listen: f.Listen, metricsListen: f.MetricsListen, publicListen: f.PublicListen, metricsPprof: f.MetricsPprof,
		tls: f.TLS, database: f.Database, hsm: f.HSM, audit: f.Audit, profileFiles: f.Profiles}
	if c.listen == "" {
		c.listen = DefaultListen
	}
	c.postgres = strings.HasPrefix(f.Database, "postgres://") || strings.HasPrefix(f.Database, "postgresql://")
	c.dbPassword, c.dbMaxConns = abs(f.DatabasePasswordFile), f.DatabaseMaxConns
	if !c.postgres {
		c.database = abs(f.Database)
		if f.DatabasePasswordFile != "" || f.DatabaseMaxConns != 0 {
			add("databasePasswordFile, databaseMaxConns: only for a postgres:// database")
		}
	}
	if f.DatabaseMaxConns < 0 {
		add("databaseMaxConns: %d is negative", f.DatabaseMaxConns)
	}
	c.nodeName, c.nodeTimeout = f.NodeName, duration("nodeTimeout", f.NodeTimeout, DefaultNodeTimeout, add)
	if c.nodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			add("nodeName: not set and the host name is unknown: %v", err)
		}
		c.nodeName = host
	}
	if !nodeNamePattern.MatchString(c.nodeName) {
		add("nodeName: %q must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'", c.nodeName)
	}
	if c.nodeTimeout < 10*time.Second {
		add("nodeTimeout: %s is below the 10s floor (heartbeats are sent every quarter of it)", c.nodeTimeout)
	}
	if c.metricsListen == "" {
		c.metricsListen = DefaultMetricsListen
	}
	c.tls.Certificate, c.tls.Key, c.tls.ClientCAs = abs(f.TLS.Certificate), abs(f.TLS.Key), abs(f.TLS.ClientCAs)
	if f.MetricsTLS != nil {
		m := *f.MetricsTLS
		m.Certificate, m.Key, m.ClientCAs = abs(m.Certificate), abs(m.Key), abs(m.ClientCAs)
		c.metricsTLS = &m
		if m.Certificate == "" || m.Key == "" {
			add("metricsTLS: certificate and key are required when metricsTLS is set")
		}
	}
	c.hsm.PINFile = abs(f.HSM.PINFile)
	if c.hsm.PINEnv == "" {
		c.hsm.PINEnv = DefaultPINEnv
	}
	// Module configuration files named in the environment (SOFTHSM2_CONF
	// and the like: variables ending in _CONF) are paths too.
	c.hsm.Environment = map[string]string{}
	for k, v := range f.HSM.Environment {
		if strings.HasSuffix(k, "_CONF") {
			v = abs(v)
		}
		c.hsm.Environment[k] = v
	}
	c.audit.PublicKey = abs(f.Audit.PublicKey)

	addrs := map[string]string{"listen": c.listen, "metricsListen": c.metricsListen}
	if c.publicListen != "" {
		addrs["publicListen"] = c.publicListen
	}
	byAddr := map[string]string{}
	for _, name := range []string{"listen", "metricsListen", "publicListen"} {
		addr, ok := addrs[name]
		if !ok {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s: %q is not host:port", name, addr)
		}
		if other, dup := byAddr[addr]; dup {
			add("%s and %s are both %s", other, name, addr)
		}
		byAddr[addr] = name
	}
	c.crl = issuer.CRLConfig{
		Validity: duration("crl.validity", f.CRL.Validity, issuer.DefaultCRLValidity, add),
		MaxDelay: duration("crl.maxDelay", f.CRL.MaxDelay, issuer.DefaultCRLMaxDelay, add),
	}
	c.ocsp = issuer.OCSPConfig{
		Validity:          duration("ocsp.validity", f.OCSP.Validity, issuer.DefaultOCSPValidity, add),
		ResponderValidity: duration("ocsp.responderValidity", f.OCSP.ResponderValidity, issuer.DefaultResponderValidity, add),
		Shared:            strings.HasPrefix(f.Database, "postgres://") || strings.HasPrefix(f.Database, "postgresql://"),
	}
	if c.ocsp.ResponderValidity < 3*c.ocsp.Validity {
		add("ocsp.responderValidity (%s) must be at least three times ocsp.validity (%s): answers must not outlive their responder", c.ocsp.ResponderValidity, c.ocsp.Validity)
	}
	if c.crl.MaxDelay >= c.crl.Validity/2 {
		add("crl.maxDelay (%s) must be well under half of crl.validity (%s)", c.crl.MaxDelay, c.crl.Validity)
	}
	for name, v := range map[string]string{"tls.certificate": c.tls.Certificate, "tls.key": c.tls.Key,
		"tls.clientCAs": c.tls.ClientCAs, "database": c.database, "hsm.module": c.hsm.Module, "hsm.tokenLabel": c.hsm.TokenLabel,
		"audit.keyLabel": c.audit.KeyLabel, "audit.publicKey": c.audit.PublicKey} {
		if v == "" {
			add("%s: required", name)
		}
	}
	c.limits = newLimits(f.Limits, add)
	if c.hsm.MaxSessions < 0 || c.hsm.MaxSessions == 1 {
		add("hsm.maxSessions: %d; use 0 for the default or at least 2", c.hsm.MaxSessions)
	}
	c.poolWait = duration("hsm.poolWaitTimeout", f.HSM.PoolWaitTimeout, 5*time.Second, add)

	c.cas = make([]CAConfig, len(f.CAs))
	cas := map[string]*CAConfig{}
	for k, ca := range f.CAs {
		ca.Certificate = abs(ca.Certificate)
		c.cas[k] = ca
		switch {
		case ca.Name == "":
			add("cas[%d].name: required", k)
		case cas[ca.Name] != nil:
			add("cas[%d].name: %q is used twice", k, ca.Name)
		default:
			cas[ca.Name] = &c.cas[k]
		}
		if ca.Certificate == "" {
			add("cas[%d].certificate: required", k)
		}
		for _, s := range ca.PolicyOIDs {
			if _, err := parseOID(s); err != nil {
				add("cas[%d].policyOIDs: %v", k, err)
			}
		}
		if ca.OCSPKeyLabel != "" && ca.KeyLabel == "" {
			add("cas[%d].ocspKeyLabel: CA %q has no keyLabel, so it cannot certify an OCSP responder", k, ca.Name)
		}
	}
	for k, ca := range c.cas {
		if ca.Parent != "" && cas[ca.Parent] == nil {
			add("cas[%d].parent: no CA named %q", k, ca.Parent)
		}
		seen := map[string]bool{}
		for at := cas[ca.Name]; at != nil && at.Parent != ""; at = cas[at.Parent] {
			if seen[at.Name] {
				add("cas[%d]: the parent chain of %q loops", k, ca.Name)
				break
			}
			seen[at.Name] = true
		}
	}

	for k, pf := range f.Profiles {
		where := fmt.Sprintf("profiles[%d]", k)
		if pf.Name != "" {
			where = fmt.Sprintf("profiles[%d] (%s)", k, pf.Name)
		}
		prof, err := issuer.NewProfile(pf)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				add("%s.%s", where, line)
			}
		} else {
			c.profiles = append(c.profiles, prof)
			for _, w := range prof.Warnings() {
				c.warnings = append(c.warnings, where+"."+w)
			}
		}
		if ca := cas[pf.CA]; pf.CA != "" && ca == nil {
			add("%s.ca: no CA named %q", where, pf.CA)
		} else if ca != nil && ca.KeyLabel == "" {
			add("%s.ca: CA %q has no keyLabel, so it cannot sign", where, pf.CA)
		}
	}
	if len(f.Profiles) == 0 {
		add("profiles: none configured")
	}
	c.machineFiles, c.tokens = f.MachineIdentities, f.AccessTokens
	c.tokens.KeyFile = abs(f.AccessTokens.KeyFile)
	if len(f.MachineIdentities) > 0 {
		m, err := auth.NewMachines(f.MachineIdentities)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				add("machineIdentities: %s", line)
			}
		}
		c.machines = m
	}
	if f.AccessTokens.PerClientPerMinute < 0 || f.AccessTokens.PerSourcePerMinute < 0 || f.AccessTokens.Burst < 0 {
		add("accessTokens: login limits must not be negative")
	}
	c.catalog = newCatalog(f, c.profiles, add)
	c.warnings = append(c.warnings, unknownMachines(f.Profiles, c.machines)...)
	c.acme = newACMESettings(f.ACME, f.Profiles, abs, add)
	if len(p) > 0 {
		return nil, &ConfigError{Path: path, Problems: p}
	}
	return c, nil
}

// unknownMachines warns about profile patterns naming a machine identity
// that is not configured: a typo there fails closed, silently.
func unknownMachines(profiles []issuer.ProfileConfig, machines *auth.Machines) []string {
	var out []string
	for k, pf := range profiles {
		for field, raw := range map[string][]string{"allowedIdentities": pf.AllowedIdentities, "managers": pf.Managers} {
			for j, s := range raw {
				ip, err := policy.ParseIdentityPattern(s)
				name, isMachine := strings.CutPrefix(ip.String(), "machine:")
				if err != nil || !isMachine || strings.Contains(name, "*") {
					continue
				}
				if machines == nil || !machines.Has(name) {
					out = append(out, fmt.Sprintf("profiles[%d].%s[%d]: no machine identity named %q is configured", k, field, j, name))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// newCatalog checks the project and the applications the v1 look-ups
// answer (DESIGN.md §15).
func newCatalog(f *ConfigFile, profiles []*issuer.Profile, add func(string, ...any)) api.Catalog {
	var cat api.Catalog
	if f.Project != (ProjectConfig{}) {
		if _, err := uuid.Parse(f.Project.ID); err != nil || len(f.Project.ID) != 36 {
			add("project.id: %q is not a UUID", f.Project.ID)
		}
		if !slugPattern.MatchString(f.Project.Slug) {
			add("project.slug: %q must be 1-63 of a-z, 0-9, '-'", f.Project.Slug)
		}
		cat.Project = api.Project{ID: strings.ToLower(f.Project.ID), Slug: f.Project.Slug, Name: f.Project.Name}
		if cat.Project.Name == "" {
			cat.Project.Name = f.Project.Slug
		}
	}
	byName := map[string]string{}
	for _, p := range profiles {
		byName[p.Name()] = p.ID()
	}
	declared := map[string]bool{} // profiles in the file, built or not: a broken one is reported once, as itself
	for _, p := range f.Profiles {
		declared[p.Name] = true
	}
	seen := map[string]bool{}
	for k, a := range f.Applications {
		if _, err := uuid.Parse(a.ID); err != nil || len(a.ID) != 36 {
			add("applications[%d].id: %q is not a UUID", k, a.ID)
		}
		if a.Name == "" || seen[a.Name] || seen[strings.ToLower(a.ID)] {
			add("applications[%d]: a unique name and id are required", k)
		}
		seen[a.Name], seen[strings.ToLower(a.ID)] = true, true
		app := api.Application{ID: strings.ToLower(a.ID), Name: a.Name}
		for _, name := range a.Profiles {
			id, ok := byName[name]
			if !ok {
				if !declared[name] {
					add("applications[%d].profiles: no profile named %q", k, name)
				}
				continue
			}
			app.ProfileIDs = append(app.ProfileIDs, id)
		}
		cat.Applications = append(cat.Applications, app)
	}
	return cat
}

var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CredentialDatabasePassword is the systemd credential holding PostgreSQL's password.
const CredentialDatabasePassword = "database-password"

// readDatabasePassword reads PostgreSQL's password: databasePasswordFile,
// else the systemd credential database-password when it exists, else none
// (peer or certificate authentication). A trailing newline is dropped.
func (c *Config) readDatabasePassword() (string, error) {
	path := c.dbPassword
	if path == "" {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", nil
		}
		path = filepath.Join(dir, CredentialDatabasePassword)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the database password: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// readTokenKey reads the access-token signing key: accessTokens.keyFile,
// else the systemd credential access-token-key. The bytes are the key, as
// read (no trimming: every node must read the same bytes).
func (c *Config) readTokenKey() ([]byte, error) {
	path := c.tokens.KeyFile
	if path == "" {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Errorf("no access-token key: set accessTokens.keyFile or the systemd credential %s", CredentialTokenKeyName)
		}
		path = filepath.Join(dir, CredentialTokenKeyName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the access-token key: %w", err)
	}
	return b, nil
}

// duration parses an optional duration setting in the ms grammar.
func duration(name, s string, def time.Duration, add func(string, ...any)) time.Duration {
	if s == "" {
		return def
	}
	d, err := policy.ParseDuration(s)
	if err != nil {
		add("%s: %v", name, err)
		return def
	}
	return d
}

func newLimits(l LimitsConfig, add func(string, ...any)) limits {
	out := limits{maxBodyBytes: l.MaxBodyBytes, maxHeaderBytes: l.MaxHeaderBytes,
		maxConcurrent: l.MaxConcurrentRequests, maxPerIdentity: l.MaxConcurrentPerIdentity,
		readHeaderTimeout:   duration("limits.readHeaderTimeout", l.ReadHeaderTimeout, 10*time.Second, add),
		readTimeout:         duration("limits.readTimeout", l.ReadTimeout, 30*time.Second, add),
		writeTimeout:        duration("limits.writeTimeout", l.WriteTimeout, 2*time.Minute, add),
		idleTimeout:         duration("limits.idleTimeout", l.IdleTimeout, 2*time.Minute, add),
		bodyReadTimeout:     duration("limits.bodyReadTimeout", l.BodyReadTimeout, 10*time.Second, add),
		databaseBusyTimeout: duration("limits.databaseBusyTimeout", l.DatabaseBusyTimeout, 5*time.Second, add)}
	if l.MaxBodyBytes < 0 || l.MaxHeaderBytes < 0 || l.MaxConcurrentRequests < 0 || l.MaxConcurrentPerIdentity < 0 {
		add("limits: sizes and counts must not be negative")
	}
	if out.maxBodyBytes == 0 {
		out.maxBodyBytes = 64 << 10
	}
	if out.maxHeaderBytes == 0 {
		out.maxHeaderBytes = 16 << 10
	}
	if out.maxConcurrent == 0 {
		out.maxConcurrent = 256
	}
	if out.maxPerIdentity == 0 {
		out.maxPerIdentity = 32
	}
	return out
}

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// Warnings are what the operator should know but that does not stop pkid
// (patterns that were canonicalized).
func (c *Config) Warnings() []string { return c.warnings }

// ReadPIN returns the token PIN from, in order: hsm.pinFile, the
// environment variable hsm.pinEnv, or $CREDENTIALS_DIRECTORY/hsm-pin
// (systemd LoadCredential). Surrounding whitespace is trimmed.
func (h HSMConfig) ReadPIN() (string, error) {
	if h.PINFile != "" {
		return readSecretFile(h.PINFile)
	}
	env := h.PINEnv
	if env == "" {
		env = DefaultPINEnv
	}
	if v := os.Getenv(env); v != "" {
		return strings.TrimSpace(v), nil
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		return readSecretFile(filepath.Join(dir, CredentialPINName))
	}
	return "", fmt.Errorf("no token PIN: set hsm.pinFile, the environment variable %s, or the systemd credential %s", env, CredentialPINName)
}

// readSecretFile reads a PIN or key file; its content is never logged.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}
