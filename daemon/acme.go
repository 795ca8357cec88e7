package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkid/pkid/acme"
	"github.com/pkid/pkid/acme/validate"
	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/metrics"
)

// ACMEConfig is what every profile's ACME server shares (DESIGN §17); a
// profile enables its own with its acme: section.
type ACMEConfig struct {
	HTTPPort    int      `yaml:"httpPort"`    // http-01 connects here; default 80
	TLSALPNPort int      `yaml:"tlsALPNPort"` // tls-alpn-01 connects here; default 443
	Resolvers   []string `yaml:"resolvers"`   // IP:port of the DNS servers dns-01 asks; default the system's
	// HostOverrides point names at addresses without DNS, for tests; every
	// address must be loopback.
	HostOverrides map[string]string `yaml:"hostOverrides"`
	// EABKeyFile holds the secret the external account binding keys are
	// derived from (else the systemd credential acme-eab-key); the same
	// on every node, at least 32 bytes. Needed when a profile requires
	// external account binding.
	EABKeyFile string `yaml:"eabKeyFile"`
}

// CredentialEABKeyName is the systemd credential holding the EAB secret.
const CredentialEABKeyName = "acme-eab-key"

// acmeSettings is ACMEConfig validated.
type acmeSettings struct {
	validator   *validate.Validator
	eabKeyFile  string
	eabRequired bool // some profile requires external account binding
}

// newACMESettings checks the acme: section against the profiles.
func newACMESettings(f ACMEConfig, profiles []issuer.ProfileConfig, abs func(string) string, add func(string, ...any)) acmeSettings {
	s := acmeSettings{eabKeyFile: abs(f.EABKeyFile)}
	for _, p := range profiles {
		s.eabRequired = s.eabRequired || p.ACME.Enabled && p.ACME.ExternalAccountRequired
	}
	vc := validate.Config{HTTPPort: f.HTTPPort, TLSALPNPort: f.TLSALPNPort, Resolvers: f.Resolvers, HostOverrides: map[string]netip.Addr{}}
	for name, addr := range f.HostOverrides {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			add("acme.hostOverrides: %s: %q is not an IP address", name, addr)
			continue
		}
		vc.HostOverrides[name] = a
	}
	v, err := validate.New(vc)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add("acme.%s", line)
		}
	}
	s.validator = v
	return s
}

// readEABSecret reads the EAB secret: acme.eabKeyFile, else the systemd
// credential acme-eab-key; nil when neither exists and no profile
// requires external account binding.
func (c *Config) readEABSecret() ([]byte, error) {
	path := c.acme.eabKeyFile
	if path == "" {
		if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
			path = filepath.Join(dir, CredentialEABKeyName)
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				path = ""
			}
		}
	}
	if path == "" {
		if c.acme.eabRequired {
			return nil, fmt.Errorf("a profile requires external account binding, but there is no EAB secret: set acme.eabKeyFile or the systemd credential %s", CredentialEABKeyName)
		}
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the EAB secret: %w", err)
	}
	if len(b) < acme.MinEABSecretBytes {
		return nil, fmt.Errorf("the EAB secret %s has %d bytes; at least %d are needed", path, len(b), acme.MinEABSecretBytes)
	}
	return b, nil
}

// withACME puts the ACME servers of generation g's profiles in front of
// the API handler: /acme/… goes to them, everything else to the API.
func withACME(apiHandler http.Handler, cfg *Config, iss *issuer.Issuer, res *resources, m *metrics.Metrics, log *slog.Logger) (http.Handler, error) {
	secret, err := cfg.readEABSecret()
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	srv, err := acme.New(acme.Config{Issuer: iss, Store: res.store, Validator: cfg.acme.validator, Runtime: res.acme,
		EABSecret: secret, Logger: log, Metrics: m, MaxBodyBytes: cfg.limits.maxBodyBytes, BodyReadTimeout: cfg.limits.bodyReadTimeout})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, acme.PathPrefix) {
			srv.ServeHTTP(w, r)
			return
		}
		apiHandler.ServeHTTP(w, r)
	}), nil
}

// acmeMetricOptions are the ACME vocabularies the metrics label by.
func acmeMetricOptions(o *metrics.Options) {
	o.Routes = append(o.Routes, acme.Routes()...)
	o.ACMEOrderOutcomes, o.ACMEValidationOutcomes, o.ACMEChallengeTypes = acme.OrderOutcomes, acme.ValidationOutcomes, issuer.ChallengeTypes
}

// EABKey is a new external account binding key, shown once.
type EABKey struct {
	Profile, KeyID, MACKey string
}

// AddEABKey makes an external account binding key for the ACME server of
// profile (its name or slug) and stores its hash (`pkid acme eab add`).
// It creates the database if there is none yet, so that keys can be made
// before the first start.
func AddEABKey(ctx context.Context, configPath, profile string) (*EABKey, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	var found *issuer.ProfileConfig
	for k, p := range cfg.profileFiles {
		if p.Name == profile || p.Slug == profile {
			found = &cfg.profileFiles[k]
		}
	}
	switch {
	case found == nil:
		return nil, fmt.Errorf("%w: no profile named %q", ErrUsage, profile)
	case !found.ACME.Enabled:
		return nil, fmt.Errorf("%w: profile %s does not enable ACME (acme.enabled)", ErrUsage, profile)
	}
	secret, err := cfg.readEABSecret()
	if err == nil && secret == nil {
		err = fmt.Errorf("no EAB secret: set acme.eabKeyFile or the systemd credential %s", CredentialEABKeyName)
	}
	if err != nil {
		return nil, err
	}
	k, err := acme.NewEABKey(secret, strings.ToLower(found.ID), time.Now())
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	defer closeStore(st)
	if err := st.AddACMEEABKey(ctx, k.Record); err != nil {
		return nil, fmt.Errorf("storing the EAB key: %w", err)
	}
	return &EABKey{Profile: found.Name, KeyID: k.Record.KeyID, MACKey: k.MACKey}, nil
}
