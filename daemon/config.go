package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	yaml "go.yaml.in/yaml/v3"

	"github.com/pkid/pkid/policy"
)

// Defaults for settings the config file may omit.
const (
	DefaultListen        = "127.0.0.1:8443"
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultPINEnv        = "PKID_HSM_PIN"
	CredentialPINName    = "hsm-pin" // file name under $CREDENTIALS_DIRECTORY
	maxBackdate          = 10 * time.Minute
)

// ConfigFile is the config file as decoded, before validation.
type ConfigFile struct {
	Listen        string        `yaml:"listen"`
	MetricsListen string        `yaml:"metricsListen"`
	MetricsTLS    *TLSConfig    `yaml:"metricsTLS"`   // optional: TLS (mTLS with clientCAs) for scrapers
	MetricsPprof  bool          `yaml:"metricsPprof"` // serve /debug/pprof/profile on the metrics listener (off by default)
	TLS           TLSConfig     `yaml:"tls"`
	Database      string        `yaml:"database"`
	HSM           HSMConfig     `yaml:"hsm"`
	CAs           []CAConfig    `yaml:"cas"`
	Profiles      []ProfileFile `yaml:"profiles"`
	Limits        LimitsConfig  `yaml:"limits"`
}

// LimitsConfig bounds what one client can make the API listener hold.
// Durations use the ms grammar; zero values take the defaults.
type LimitsConfig struct {
	MaxBodyBytes          int64  `yaml:"maxBodyBytes"`          // default 65536
	MaxHeaderBytes        int    `yaml:"maxHeaderBytes"`        // default 16384
	ReadHeaderTimeout     string `yaml:"readHeaderTimeout"`     // default 10s
	ReadTimeout           string `yaml:"readTimeout"`           // default 30s
	WriteTimeout          string `yaml:"writeTimeout"`          // default 2m
	IdleTimeout           string `yaml:"idleTimeout"`           // default 2m
	MaxConcurrentRequests int    `yaml:"maxConcurrentRequests"` // default 256
	DatabaseBusyTimeout   string `yaml:"databaseBusyTimeout"`   // default 5s: how long a write waits for a lock held elsewhere
}

// limits is LimitsConfig with defaults applied.
type limits struct {
	maxBodyBytes                                              int64
	maxHeaderBytes, maxConcurrent                             int
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	databaseBusyTimeout                                       time.Duration
}

func (c *ConfigFile) limits() limits {
	l := c.Limits
	d := func(s string, def time.Duration) time.Duration {
		if v, err := policy.ParseDuration(s); err == nil {
			return v
		}
		return def
	}
	out := limits{maxBodyBytes: l.MaxBodyBytes, maxHeaderBytes: l.MaxHeaderBytes, maxConcurrent: l.MaxConcurrentRequests,
		readHeaderTimeout: d(l.ReadHeaderTimeout, 10*time.Second), readTimeout: d(l.ReadTimeout, 30*time.Second),
		writeTimeout: d(l.WriteTimeout, 2*time.Minute), idleTimeout: d(l.IdleTimeout, 2*time.Minute),
		databaseBusyTimeout: d(l.DatabaseBusyTimeout, 5*time.Second)}
	if out.maxBodyBytes == 0 {
		out.maxBodyBytes = 64 << 10
	}
	if out.maxHeaderBytes == 0 {
		out.maxHeaderBytes = 16 << 10
	}
	if out.maxConcurrent == 0 {
		out.maxConcurrent = 256
	}
	return out
}

// TLSConfig names the API listener's TLS material.
type TLSConfig struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
	ClientCAs   string `yaml:"clientCAs"`
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
}

// ProfileFile is one profile as written in the config file.
type ProfileFile struct {
	ID                string          `yaml:"id"`
	Name              string          `yaml:"name"`
	CA                string          `yaml:"ca"`
	Backdate          string          `yaml:"backdate"`
	Defaults          ProfileDefaults `yaml:"defaults"`
	Policy            policy.Rules    `yaml:"policy"`
	AllowedIdentities []string        `yaml:"allowedIdentities"`
	RateLimit         RateLimitFile   `yaml:"rateLimit"`
	LintExclusions    []string        `yaml:"lintExclusions"`
}

// ProfileDefaults apply when a request leaves usages out.
type ProfileDefaults struct {
	KeyUsages         []string `yaml:"keyUsages"`
	ExtendedKeyUsages []string `yaml:"extendedKeyUsages"`
}

// RateLimitFile is a per-identity token bucket.
type RateLimitFile struct {
	PerMinute int `yaml:"perMinute"`
	Burst     int `yaml:"burst"`
}

// ConfigError lists every problem found in a config file.
type ConfigError struct {
	Path     string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("config %s: %d problem(s):\n  - %s", e.Path, len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

var profileNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadConfig reads and strictly decodes path (unknown fields are errors),
// resolves relative paths against the file's directory, fills defaults and
// checks everything that needs no token or database. All problems are
// reported at once as a *ConfigError.
func LoadConfig(path string) (*ConfigFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parseConfig(raw, path)
}

// parseConfig decodes and checks raw as the config file at path.
func parseConfig(raw []byte, path string) (*ConfigFile, error) {
	var problems []string
	if pinInConfig(raw) {
		problems = append(problems, "hsm.pin: the PIN must never be in the config file; use hsm.pinFile, hsm.pinEnv or the systemd credential "+CredentialPINName)
	}
	var cfg ConfigFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			problems = append(problems, te.Errors...)
		} else {
			return nil, &ConfigError{Path: path, Problems: append(problems, err.Error())}
		}
	}
	cfg.resolvePaths(filepath.Dir(path))
	cfg.fillDefaults()
	problems = append(problems, cfg.validate()...)
	if len(problems) > 0 {
		return nil, &ConfigError{Path: path, Problems: problems}
	}
	return &cfg, nil
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

func (c *ConfigFile) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.TLS.Certificate)
	abs(&c.TLS.Key)
	abs(&c.TLS.ClientCAs)
	if c.MetricsTLS != nil {
		abs(&c.MetricsTLS.Certificate)
		abs(&c.MetricsTLS.Key)
		abs(&c.MetricsTLS.ClientCAs)
	}
	abs(&c.Database)
	abs(&c.HSM.PINFile)
	for k := range c.CAs {
		abs(&c.CAs[k].Certificate)
	}
	// Module configuration files named in the environment (SOFTHSM2_CONF
	// and the like: variables ending in _CONF) are paths too.
	for k, v := range c.HSM.Environment {
		if strings.HasSuffix(k, "_CONF") && v != "" && !filepath.IsAbs(v) {
			c.HSM.Environment[k] = filepath.Join(dir, v)
		}
	}
}

func (c *ConfigFile) fillDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MetricsListen == "" {
		c.MetricsListen = DefaultMetricsListen
	}
	if c.HSM.PINEnv == "" {
		c.HSM.PINEnv = DefaultPINEnv
	}
}

func (c *ConfigFile) validate() []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	for name, addr := range map[string]string{"listen": c.Listen, "metricsListen": c.MetricsListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s: %q is not host:port", name, addr)
		}
	}
	for name, v := range map[string]string{"tls.certificate": c.TLS.Certificate, "tls.key": c.TLS.Key,
		"tls.clientCAs": c.TLS.ClientCAs, "database": c.Database, "hsm.module": c.HSM.Module, "hsm.tokenLabel": c.HSM.TokenLabel} {
		if v == "" {
			add("%s: required", name)
		}
	}
	if c.MetricsTLS != nil && (c.MetricsTLS.Certificate == "" || c.MetricsTLS.Key == "") {
		add("metricsTLS: certificate and key are required when metricsTLS is set")
	}
	if c.Listen == c.MetricsListen {
		add("listen and metricsListen are both %s", c.Listen)
	}
	for name, v := range map[string]string{"limits.readHeaderTimeout": c.Limits.ReadHeaderTimeout, "limits.readTimeout": c.Limits.ReadTimeout,
		"limits.writeTimeout": c.Limits.WriteTimeout, "limits.idleTimeout": c.Limits.IdleTimeout,
		"limits.databaseBusyTimeout": c.Limits.DatabaseBusyTimeout} {
		if v != "" {
			if _, err := policy.ParseDuration(v); err != nil {
				add("%s: %v", name, err)
			}
		}
	}
	if c.Limits.MaxBodyBytes < 0 || c.Limits.MaxHeaderBytes < 0 || c.Limits.MaxConcurrentRequests < 0 {
		add("limits: sizes and counts must not be negative")
	}
	if c.HSM.MaxSessions < 0 || c.HSM.MaxSessions == 1 {
		add("hsm.maxSessions: %d; use 0 for the default or at least 2", c.HSM.MaxSessions)
	}
	if c.HSM.PoolWaitTimeout != "" {
		if _, err := policy.ParseDuration(c.HSM.PoolWaitTimeout); err != nil {
			add("hsm.poolWaitTimeout: %v", err)
		}
	}

	cas := map[string]*CAConfig{}
	for k := range c.CAs {
		ca := &c.CAs[k]
		switch {
		case ca.Name == "":
			add("cas[%d].name: required", k)
		case cas[ca.Name] != nil:
			add("cas[%d].name: %q is used twice", k, ca.Name)
		default:
			cas[ca.Name] = ca
		}
		if ca.Certificate == "" {
			add("cas[%d].certificate: required", k)
		}
	}
	for k, ca := range c.CAs {
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

	ids, names := map[string]bool{}, map[string]bool{}
	for k, pf := range c.Profiles {
		where := fmt.Sprintf("profiles[%d]", k)
		if pf.Name != "" {
			where = fmt.Sprintf("profiles[%d] (%s)", k, pf.Name)
		}
		if _, err := uuid.Parse(pf.ID); err != nil || len(pf.ID) != 36 {
			add("%s.id: %q is not a UUID", where, pf.ID)
		} else if ids[strings.ToLower(pf.ID)] {
			add("%s.id: %s is used twice", where, pf.ID)
		}
		ids[strings.ToLower(pf.ID)] = true
		if !profileNamePattern.MatchString(pf.Name) {
			add("%s.name: %q must be 1-63 of a-z, 0-9, '-', '_' (it is a metric label)", where, pf.Name)
		} else if names[pf.Name] {
			add("%s.name: %q is used twice", where, pf.Name)
		}
		names[pf.Name] = true
		if ca := cas[pf.CA]; ca == nil {
			add("%s.ca: no CA named %q", where, pf.CA)
		} else if ca.KeyLabel == "" {
			add("%s.ca: CA %q has no keyLabel, so it cannot sign", where, pf.CA)
		}
		if pf.Backdate != "" {
			if d, err := policy.ParseDuration(pf.Backdate); err != nil {
				add("%s.backdate: %v", where, err)
			} else if d > maxBackdate {
				add("%s.backdate: %s is more than %s", where, pf.Backdate, maxBackdate)
			}
		}
		for _, u := range pf.Defaults.KeyUsages {
			if !policy.IsOneOf(policy.KeyUsageNames, u) {
				add("%s.defaults.keyUsages: unknown key usage %q", where, u)
			}
		}
		for _, u := range pf.Defaults.ExtendedKeyUsages {
			if !policy.IsOneOf(policy.ExtKeyUsageNames, u) {
				add("%s.defaults.extendedKeyUsages: unknown extended key usage %q", where, u)
			}
		}
		if _, err := policy.New(pf.Policy); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				add("%s.policy.%s", where, line)
			}
		}
		if len(pf.AllowedIdentities) == 0 {
			add("%s.allowedIdentities: empty, so no client could ever use the profile", where)
		}
		if pf.RateLimit.PerMinute < 0 || pf.RateLimit.Burst < 0 {
			add("%s.rateLimit: must not be negative", where)
		}
	}
	if len(c.Profiles) == 0 {
		add("profiles: none configured")
	}
	return p
}

// ReadPIN returns the token PIN from, in order: hsm.pinFile, the
// environment variable hsm.pinEnv, or $CREDENTIALS_DIRECTORY/hsm-pin
// (systemd LoadCredential). Surrounding whitespace is trimmed.
func (c *ConfigFile) ReadPIN() (string, error) {
	if c.HSM.PINFile != "" {
		return readPINFile(c.HSM.PINFile)
	}
	if v := os.Getenv(c.HSM.PINEnv); v != "" {
		return strings.TrimSpace(v), nil
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		return readPINFile(filepath.Join(dir, CredentialPINName))
	}
	return "", fmt.Errorf("no token PIN: set hsm.pinFile, the environment variable %s, or the systemd credential %s", c.HSM.PINEnv, CredentialPINName)
}

func readPINFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading PIN file: %w", err)
	}
	pin := strings.TrimSpace(string(b))
	if pin == "" {
		return "", fmt.Errorf("PIN file %s is empty", path)
	}
	return pin, nil
}
