// Package linter runs zlint v3 over certificates before they are signed
// (DESIGN.md §1 "Lint"). Registries are filtered and listed once per
// profile at construction; Lint only parses the certificate and runs them.
package linter

import (
	"context"
	"fmt"
	"maps"
	"sort"

	zx509 "github.com/zmap/zcrypto/x509"
	_ "github.com/zmap/zlint/v3" // registers every lint in lint.GlobalRegistry
	"github.com/zmap/zlint/v3/lint"
)

// DefaultExclusions are the lints that only make sense for publicly-trusted
// certificates, excluded for a private PKI (DESIGN.md §1):
var DefaultExclusions = []string{
	// No OCSP, CRL or AIA unless the CA is configured with them.
	"e_sub_cert_aia_missing",
	"e_sub_cert_aia_does_not_contain_ocsp_url",
	"w_sub_cert_aia_does_not_contain_issuing_ca_url",
	"w_sub_cert_aia_contains_internal_names",
	"e_missing_crl_distrib_point",
	// Internal names and addresses are the point of a private PKI.
	"e_dnsname_not_valid_tld",
	"e_ext_san_contains_reserved_ip",
	"e_subject_contains_reserved_ip",
	// The API's own fields: subject key identifier and common name.
	"w_ext_subject_key_identifier_not_recommended_subscriber",
	"w_subject_common_name_included",
}

// Linter holds, per profile, a registry for RFC 5280 lints and one that adds
// the CA/Browser Forum Baseline Requirements for server_auth certificates;
// and one registry for CRLs.
type Linter struct {
	registries map[string]registries
	crls       crlLints
}

// crlLints are zlint's CRL lints from RFC 5280 and the community sources.
// The CA/B Forum's CRL lints are left out: they restrict reason codes to
// the public-TLS subset (no aACompromise, no cACompromise in EE CRLs),
// and a private CA must be able to publish every revocation it made.
type crlLints struct {
	lints  []*lint.RevocationListLint
	config lint.Configuration
}

type registries struct {
	rfc5280    compiled
	withCABFBR compiled
}

// compiled is a filtered registry's certificate lints, listed once.
type compiled struct {
	lints  []*lint.CertificateLint
	config lint.Configuration
}

func compile(r lint.Registry) compiled {
	return compiled{lints: r.CertificateLints().Lints(), config: r.GetConfiguration()}
}

// OCSPResponderProfile names the registry that lints the delegated OCSP
// responder certificates pkid issues itself (DESIGN.md §14): RFC 5280 with
// the default exclusions.
const OCSPResponderProfile = "ocsp-responder"

// New builds the filtered registries. extra maps a profile name to the
// exclusions it adds to DefaultExclusions; an unknown lint name is an error.
// The OCSP responder registry is always there.
func New(extra map[string][]string) (*Linter, error) {
	if _, taken := extra[OCSPResponderProfile]; taken {
		return nil, fmt.Errorf("profile name %q is reserved for OCSP responder certificates", OCSPResponderProfile)
	}
	extra = maps.Clone(extra)
	if extra == nil {
		extra = map[string][]string{}
	}
	extra[OCSPResponderProfile] = nil
	l := &Linter{registries: map[string]registries{}}
	crl, err := filter(nil, lint.RFC5280, lint.Community)
	if err != nil {
		return nil, fmt.Errorf("CRL lint registry: %w", err)
	}
	l.crls = crlLints{lints: crl.RevocationListLints().Lints(), config: crl.GetConfiguration()}
	for profile, more := range extra {
		exclude := append(append([]string{}, DefaultExclusions...), more...)
		rfc, err := filter(exclude, lint.RFC5280)
		if err != nil {
			return nil, fmt.Errorf("lint registry for profile %s: %w", profile, err)
		}
		br, err := filter(exclude, lint.RFC5280, lint.CABFBaselineRequirements)
		if err != nil {
			return nil, fmt.Errorf("lint registry for profile %s: %w", profile, err)
		}
		l.registries[profile] = registries{rfc5280: compile(rfc), withCABFBR: compile(br)}
	}
	return l, nil
}

func filter(exclude []string, sources ...lint.LintSource) (lint.Registry, error) {
	return lint.GlobalRegistry().Filter(lint.FilterOptions{
		IncludeSources: sources,
		ExcludeNames:   exclude,
	})
}

// Lint returns the names of the lints that gave an error, warning or fatal
// result, sorted. ctx is accepted for the seam; zlint itself cannot be
// interrupted.
func (l *Linter) Lint(_ context.Context, profile string, der []byte) ([]string, error) {
	r, ok := l.registries[profile]
	if !ok {
		return nil, fmt.Errorf("no lint registry for profile %q", profile)
	}
	cert, err := zx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate for lint: %w", err)
	}
	reg := r.rfc5280
	for _, eku := range cert.ExtKeyUsage {
		if eku == zx509.ExtKeyUsageServerAuth {
			reg = r.withCABFBR
		}
	}
	// Each lint through zlint's own Execute (applicability, effective
	// dates, panics as Fatal); only the failures are kept.
	var failed []string
	for _, l := range reg.lints {
		switch l.Execute(cert, reg.config).Status {
		case lint.Warn, lint.Error, lint.Fatal:
			failed = append(failed, l.Name)
		}
	}
	sort.Strings(failed)
	return failed, nil
}

// LintCRL returns the names of the CRL lints that gave an error, warning or
// fatal result for the DER CRL, sorted.
func (l *Linter) LintCRL(_ context.Context, der []byte) ([]string, error) {
	crl, err := zx509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CRL for lint: %w", err)
	}
	var failed []string
	for _, rl := range l.crls.lints {
		switch rl.Execute(crl, l.crls.config).Status {
		case lint.Warn, lint.Error, lint.Fatal:
			failed = append(failed, rl.Name)
		}
	}
	sort.Strings(failed)
	return failed, nil
}
