package issuer

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/policy"
)

// planInput is what every request path (issue, CSR, renewal) hands to the
// planner: canonical names, usages as asked (empty: the profile's
// defaults), the window as asked, the algorithms.
type planInput struct {
	commonName         policy.CommonName
	altNames           []policy.SAN
	keyUsages          []string
	extKeyUsages       []string
	ttl                time.Duration
	notBefore          *time.Time
	notAfter           *time.Time
	signatureAlgorithm string
	keyAlgorithm       string
	ecLeaf             bool // the leaf key is EC (RFC 5480 §3 forbids keyEncipherment)
}

// plan is a request that passed policy and CA checks, with everything the
// template needs decided.
type plan struct {
	profile      *Profile
	ca           *CA
	commonName   policy.CommonName
	altNames     []policy.SAN
	keyUsages    []string
	extKeyUsages []string
	notBefore    time.Time
	notAfter     time.Time
	sigAlg       string
	keyAlg       string
}

// plan applies defaults, computes the validity window and checks the
// request against the policy (KindPolicy, every violation in one message)
// and then against the CA (KindBadRequest).
func (i *Issuer) plan(p *Profile, in planInput) (*plan, error) {
	ca := i.cas[p.caName]
	altNames := policy.UniqueSANs(in.altNames)
	if in.commonName.IsZero() && len(altNames) == 0 {
		return nil, Errorf(KindBadRequest, "A certificate needs a commonName or at least one altName")
	}
	pl := &plan{profile: p, ca: ca, commonName: in.commonName, altNames: altNames,
		sigAlg: in.signatureAlgorithm, keyAlg: in.keyAlgorithm}
	pl.keyUsages = in.keyUsages
	if len(pl.keyUsages) == 0 {
		for _, u := range p.defaultKeyUsages {
			if in.ecLeaf && u == policy.UsageKeyEncipherment {
				continue // RFC 5480 §3: never keyEncipherment for an EC key
			}
			pl.keyUsages = append(pl.keyUsages, u)
		}
	}
	pl.extKeyUsages = in.extKeyUsages
	if len(pl.extKeyUsages) == 0 {
		pl.extKeyUsages = p.defaultExtKeyUsages
	}

	now := i.clock.Now().UTC().Truncate(time.Second)
	earliest := now.Add(-p.backdate)
	if in.notBefore != nil && in.notBefore.Before(earliest) {
		return nil, Errorf(KindBadRequest, "notBefore %s is earlier than the profile allows (now minus a backdate of %s)",
			in.notBefore.UTC().Format(time.RFC3339), p.backdate)
	}
	switch {
	case in.notBefore != nil:
		pl.notBefore = in.notBefore.UTC()
	case in.notAfter != nil:
		// The backdate is an allowance: it shrinks so that the lifetime,
		// backdate included, never exceeds the ttl (DESIGN.md §3).
		pl.notBefore = maxTime(earliest, in.notAfter.UTC().Add(-in.ttl))
	default:
		pl.notBefore = earliest
	}
	pl.notAfter = pl.notBefore.Add(in.ttl)
	if in.notAfter != nil {
		pl.notAfter = in.notAfter.UTC()
	}
	if pl.notAfter.Sub(pl.notBefore) > in.ttl {
		return nil, Errorf(KindBadRequest, "The validity period from notBefore to notAfter must not exceed ttl")
	}

	violations := p.policy.Evaluate(policy.Candidate{
		CommonName:         pl.commonName,
		AltNames:           pl.altNames,
		KeyUsages:          pl.keyUsages,
		ExtKeyUsages:       pl.extKeyUsages,
		SignatureAlgorithm: pl.sigAlg,
		KeyAlgorithm:       pl.keyAlg,
		Lifetime:           pl.notAfter.Sub(pl.notBefore),
		ExplicitWindow:     in.notAfter != nil,
	})
	if in.ecLeaf && policy.IsOneOf(pl.keyUsages, policy.UsageKeyEncipherment) {
		violations = append(violations, "key_encipherment cannot be used with an EC key (RFC 5480 section 3)")
	}
	if len(violations) > 0 {
		return nil, &Error{
			Kind:    KindPolicy,
			Message: "Certificate request validation failed: " + strings.Join(violations, ", "),
			Details: map[string][]string{"violations": violations},
		}
	}
	if err := checkCA(ca, pl.sigAlg, now, pl.notBefore, pl.notAfter); err != nil {
		return nil, err
	}
	return pl, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkCA refuses requests the issuing CA cannot serve: an expired or not
// yet valid CA, a window outside the CA's (not clamped), a signature
// algorithm of the wrong family.
func checkCA(ca *CA, sigAlg string, now, notBefore, notAfter time.Time) error {
	cert := ca.cert
	switch {
	case now.After(cert.NotAfter):
		return Errorf(KindBadRequest, "CA is expired")
	case now.Before(cert.NotBefore):
		return Errorf(KindBadRequest, "CA is not active")
	case !notBefore.Before(notAfter):
		return Errorf(KindBadRequest, "notBefore date is after notAfter date")
	case notBefore.Before(cert.NotBefore):
		return Errorf(KindBadRequest, "notBefore date is before CA certificate's notBefore date")
	case notAfter.After(cert.NotAfter):
		return Errorf(KindBadRequest, "notAfter date is after CA certificate's notAfter date")
	}
	family := signatureFamily(cert.PublicKey)
	if !strings.HasPrefix(sigAlg, family+"-") {
		return Errorf(KindBadRequest,
			"Requested signature algorithm %s is not compatible with CA key algorithm %s. CA can only sign with %s-based signature algorithms.",
			sigAlg, KeyAlgorithmOf(cert.PublicKey), family)
	}
	return nil
}

// template builds the to-be-signed certificate for the leaf public key;
// the signing service sets its serial.
func (pl *plan) template(leafPub crypto.PublicKey) (*x509.Certificate, error) {
	ski, err := subjectKeyID(leafPub)
	if err != nil {
		return nil, err
	}
	ca := pl.ca
	t := &x509.Certificate{
		Subject:               subjectFor(pl.commonName),
		NotBefore:             pl.notBefore,
		NotAfter:              pl.notAfter,
		SignatureAlgorithm:    signatureAlgorithms[pl.sigAlg],
		BasicConstraintsValid: true, // cA=false, critical (RFC 5280 §4.2.1.9)
		SubjectKeyId:          ski,
		CRLDistributionPoints: ca.crlURLs,
		IssuingCertificateURL: ca.aiaURLs,
		OCSPServer:            ca.ocspURLs,
		Policies:              ca.policies,
	}
	for _, u := range pl.keyUsages {
		t.KeyUsage |= keyUsageBits[u]
	}
	for _, u := range pl.extKeyUsages {
		t.ExtKeyUsage = append(t.ExtKeyUsage, extKeyUsages[u])
	}
	if err := applyAltNames(t, pl.altNames); err != nil {
		return nil, fmt.Errorf("building SANs: %w", err)
	}
	return t, nil
}

// subjectFor is CN=<commonName> or the empty name.
func subjectFor(cn policy.CommonName) pkix.Name {
	if cn.IsZero() {
		return pkix.Name{}
	}
	return pkix.Name{CommonName: cn.String()}
}
