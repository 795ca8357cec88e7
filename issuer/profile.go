package issuer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pkid/pkid/policy"
)

// MaxBackdate bounds a profile's backdate allowance (DESIGN.md §1: "at most
// a few minutes").
const MaxBackdate = 10 * time.Minute

// ProfileConfig is one profile as written in the config file.
type ProfileConfig struct {
	ID                string          `yaml:"id"`
	Name              string          `yaml:"name"`
	Slug              string          `yaml:"slug"` // default: the name
	CA                string          `yaml:"ca"`
	Backdate          string          `yaml:"backdate"`
	Defaults          DefaultsConfig  `yaml:"defaults"`
	Policy            policy.Rules    `yaml:"policy"`
	AllowedIdentities []string        `yaml:"allowedIdentities"`
	Managers          []string        `yaml:"managers"`
	RateLimit         RateLimitConfig `yaml:"rateLimit"`
	LintExclusions    []string        `yaml:"lintExclusions"`
	ACME              ACMEConfig      `yaml:"acme"` // DESIGN §17
}

// DefaultsConfig are the usages a certificate gets when its request names none.
type DefaultsConfig struct {
	KeyUsages         []string `yaml:"keyUsages"`
	ExtendedKeyUsages []string `yaml:"extendedKeyUsages"`
}

// RateLimitConfig is a token bucket per identity: perMinute tokens refill
// each minute up to burst (default perMinute). perMinute 0 means unlimited.
type RateLimitConfig struct {
	PerMinute int `yaml:"perMinute"`
	Burst     int `yaml:"burst"`
}

// Profile is a validated certificate profile. Build it with NewProfile.
type Profile struct {
	id, name, slug, caName string
	policy                 *policy.Policy
	defaultKeyUsages       []string
	defaultExtKeyUsages    []string
	allowed                []policy.IdentityPattern
	managers               []policy.IdentityPattern
	backdate               time.Duration
	rate                   RateLimitConfig
	lintExclusions         []string
	warnings               []string
	acme                   acmeSettings
}

// namePattern is what profile names and slugs must look like: they are
// metric labels and URL path segments.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// NewProfile validates cfg and returns the profile, or every problem found
// at once. It needs no token: the CA is bound by name when the Issuer is
// built.
func NewProfile(cfg ProfileConfig) (*Profile, error) {
	var problems []error
	add := func(format string, a ...any) { problems = append(problems, fmt.Errorf(format, a...)) }
	p := &Profile{name: cfg.Name, slug: cfg.Slug, caName: cfg.CA, lintExclusions: cfg.LintExclusions,
		defaultKeyUsages: cfg.Defaults.KeyUsages, defaultExtKeyUsages: cfg.Defaults.ExtendedKeyUsages, rate: cfg.RateLimit}

	if id, err := uuid.Parse(cfg.ID); err != nil || len(cfg.ID) != 36 {
		add("id: %q is not a UUID", cfg.ID)
	} else {
		p.id = id.String()
	}
	if !namePattern.MatchString(cfg.Name) {
		add("name: %q must be 1-63 of a-z, 0-9, '-', '_' (it is a metric label)", cfg.Name)
	}
	if p.slug == "" {
		p.slug = cfg.Name
	} else if !namePattern.MatchString(p.slug) {
		add("slug: %q must be 1-63 of a-z, 0-9, '-', '_' (it is a URL path segment)", p.slug)
	}
	if cfg.CA == "" {
		add("ca: required")
	}
	if cfg.Backdate != "" {
		if d, err := policy.ParseDuration(cfg.Backdate); err != nil {
			add("backdate: %v", err)
		} else if d > MaxBackdate {
			add("backdate: %s is more than %s", cfg.Backdate, MaxBackdate)
		} else {
			p.backdate = d
		}
	}
	for _, u := range cfg.Defaults.KeyUsages {
		if !policy.IsOneOf(policy.KeyUsageNames, u) {
			add("defaults.keyUsages: unknown key usage %q (want one of %s)", u, strings.Join(policy.KeyUsageNames, ", "))
		}
	}
	for _, u := range cfg.Defaults.ExtendedKeyUsages {
		if !policy.IsOneOf(policy.ExtKeyUsageNames, u) {
			add("defaults.extendedKeyUsages: unknown extended key usage %q (want one of %s)", u, strings.Join(policy.ExtKeyUsageNames, ", "))
		}
	}
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add("policy.%s", line)
		}
	} else {
		p.policy = pol
		for _, w := range pol.Warnings() {
			p.warnings = append(p.warnings, "policy."+w)
		}
		// RFC 5280 §4.2.1.12: without an EKU a certificate is valid for
		// any purpose, including signing code and OCSP answers.
		if len(cfg.Defaults.ExtendedKeyUsages) == 0 && !pol.RequiresExtKeyUsage() {
			add("defaults.extendedKeyUsages: empty and policy.extendedKeyUsages requires none, so a certificate could carry no EKU (valid for any purpose); name the default EKUs")
		}
	}
	p.acme = parseACME(cfg.ACME, p.policy, add)
	if len(cfg.AllowedIdentities) == 0 && !cfg.ACME.Enabled { // an ACME-only profile admits its accounts
		add("allowedIdentities: empty, so no client could ever use the profile")
	}
	p.allowed = parseIdentityPatterns("allowedIdentities", cfg.AllowedIdentities, add)
	p.managers = parseIdentityPatterns("managers", cfg.Managers, add)
	for _, list := range []struct {
		field string
		raw   []string
		got   []policy.IdentityPattern
	}{{"allowedIdentities", cfg.AllowedIdentities, p.allowed}, {"managers", cfg.Managers, p.managers}} {
		if len(list.got) != len(list.raw) {
			continue // a pattern failed: the problem is reported, the indexes no longer line up
		}
		for k, ip := range list.got {
			if ip.Changed() {
				p.warnings = append(p.warnings, fmt.Sprintf("%s[%d]: %q is matched as %s", list.field, k, list.raw[k], ip.MatchedAs()))
			}
		}
	}
	if cfg.RateLimit.PerMinute < 0 || cfg.RateLimit.Burst < 0 {
		add("rateLimit: must not be negative")
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return p, nil
}

func parseIdentityPatterns(field string, raw []string, add func(string, ...any)) []policy.IdentityPattern {
	var out []policy.IdentityPattern
	for k, s := range raw {
		ip, err := policy.ParseIdentityPattern(s)
		if err != nil {
			add("%s[%d]: %v", field, k, err)
			continue
		}
		out = append(out, ip)
	}
	return out
}

// ID is the profile's UUID (lower case).
func (p *Profile) ID() string { return p.id }

// Name is the profile's name, used as its metric label.
func (p *Profile) Name() string { return p.name }

// Slug names the profile in Infisical's v1 routes and ACME URLs.
func (p *Profile) Slug() string { return p.slug }

// CAName names the profile's issuing CA.
func (p *Profile) CAName() string { return p.caName }

// Warnings are the patterns the policy canonicalized (check-config shows them).
func (p *Profile) Warnings() []string { return p.warnings }

// LintExclusions are the lints this profile adds to the linter's defaults.
func (p *Profile) LintExclusions() []string { return p.lintExclusions }

// MayIssue reports whether id may issue with this profile.
func (p *Profile) MayIssue(id policy.Identity) bool { return matchesAny(p.allowed, id) }

// Manages reports whether id may read, renew and revoke any certificate
// of this profile.
func (p *Profile) Manages(id policy.Identity) bool { return matchesAny(p.managers, id) }

func matchesAny(patterns []policy.IdentityPattern, id policy.Identity) bool {
	for _, ip := range patterns {
		if ip.Match(id) {
			return true
		}
	}
	return false
}
