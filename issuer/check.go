package issuer

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// CheckProfile proves at start-up that a profile can issue: it builds a
// sample request from the profile's own policy and defaults, runs the
// policy and CA checks, and lints the sample certificate (signed by the
// throw-away key, never by the CA). Nothing is stored or signed.
func (i *Issuer) CheckProfile(ctx context.Context, p *Profile) error {
	family := signatureFamily(p.CA.Certificate.PublicKey)
	var sigAlg string
	for _, a := range p.Policy.AllowedSignatureAlgorithms() {
		if strings.HasPrefix(a, family+"-") {
			sigAlg = a
			break
		}
	}
	if sigAlg == "" {
		return fmt.Errorf("profile %s can never issue: none of its signature algorithms %v fits CA %s (%s key)",
			p.Name, p.Policy.AllowedSignatureAlgorithms(), p.CA.Name, family)
	}
	keyAlgs := p.Policy.AllowedKeyAlgorithms()
	keyAlg := keyAlgs[0]
	for _, a := range keyAlgs { // EC keys are quick to generate
		if strings.HasPrefix(a, "EC_") {
			keyAlg = a
			break
		}
	}
	cn, sans := p.Policy.Sample()
	req := Request{
		ProfileID: p.ID, CommonName: cn, AltNames: sans,
		TTL:                min(time.Hour, p.Policy.MaxValidity()),
		SignatureAlgorithm: sigAlg, KeyAlgorithm: keyAlg,
	}
	pl, err := i.plan(p, req)
	if err != nil {
		return fmt.Errorf("profile %s: a sample request (%s) is refused: %s", p.Name, describe(req), AsError(err).Message)
	}
	key, err := GenerateLeafKey(i.rand, keyAlg)
	if err != nil {
		return err
	}
	t, err := pl.template(i.rand, key.Public())
	if err != nil {
		return fmt.Errorf("profile %s: %w", p.Name, err)
	}
	li := i.lintIssuers[p.CA]
	der, err := x509.CreateCertificate(i.rand, t, li.cert, key.Public(), li.key)
	if err != nil {
		return fmt.Errorf("profile %s: building sample certificate: %w", p.Name, err)
	}
	failed, err := i.linter.Lint(ctx, p.Name, der)
	if err != nil {
		return fmt.Errorf("profile %s: linting sample certificate: %w", p.Name, err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("profile %s: its own defaults fail lints %s (sample %s)", p.Name, strings.Join(failed, ", "), describe(req))
	}
	return nil
}

func describe(r Request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "commonName=%q", r.CommonName)
	for _, s := range r.AltNames {
		fmt.Fprintf(&b, " %s=%q", s.Type, s.Value)
	}
	fmt.Fprintf(&b, " %s %s", r.KeyAlgorithm, r.SignatureAlgorithm)
	return b.String()
}
