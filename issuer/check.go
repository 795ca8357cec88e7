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
	ca := i.cas[p.caName]
	family := signatureFamily(ca.cert.PublicKey)
	var sigAlg string
	for _, a := range p.policy.AllowedSignatureAlgorithms() {
		if strings.HasPrefix(a, family+"-") {
			sigAlg = a
			break
		}
	}
	if sigAlg == "" {
		return fmt.Errorf("profile %s can never issue: none of its signature algorithms %v fits CA %s (%s key)",
			p.name, p.policy.AllowedSignatureAlgorithms(), ca.name, family)
	}
	keyAlgs := p.policy.AllowedKeyAlgorithms()
	keyAlg := keyAlgs[0]
	for _, a := range keyAlgs { // EC keys are quick to generate
		if strings.HasPrefix(a, "EC_") {
			keyAlg = a
			break
		}
	}
	cn, sans := p.policy.Sample()
	in := planInput{commonName: cn, altNames: sans, ttl: min(time.Hour, p.policy.MaxValidity()),
		signatureAlgorithm: sigAlg, keyAlgorithm: keyAlg, ecLeaf: strings.HasPrefix(keyAlg, "EC_")}
	pl, err := i.plan(p, in)
	if err != nil {
		return fmt.Errorf("profile %s: a sample request (%s) is refused: %s", p.name, describe(in), AsError(err).Message)
	}
	key, err := GenerateLeafKey(i.rand, keyAlg)
	if err != nil {
		return err
	}
	t, err := pl.template(key.Public())
	if err != nil {
		return fmt.Errorf("profile %s: %w", p.name, err)
	}
	if t.SerialNumber, err = newSerial(i.rand); err != nil {
		return err
	}
	li, err := i.service.prepareCA(ca)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(i.rand, t, li.cert, key.Public(), li.key)
	if err != nil {
		return fmt.Errorf("profile %s: building sample certificate: %w", p.name, err)
	}
	failed, err := i.linter.Lint(ctx, p.name, der)
	if err != nil {
		return fmt.Errorf("profile %s: linting sample certificate: %w", p.name, err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("profile %s: its own defaults fail lints %s (sample %s)", p.name, strings.Join(failed, ", "), describe(in))
	}
	return nil
}

func describe(in planInput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "commonName=%q", in.commonName.String())
	for _, s := range in.altNames {
		fmt.Fprintf(&b, " %s=%q", s.Type(), s.Value())
	}
	fmt.Fprintf(&b, " %s %s", in.keyAlgorithm, in.signatureAlgorithm)
	return b.String()
}
