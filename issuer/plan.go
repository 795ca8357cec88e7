package issuer

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pkid/pkid/policy"
)

// plan is a request that passed policy and CA checks, with everything the
// template needs decided.
type plan struct {
	profile      *Profile
	req          Request
	keyUsages    []string
	extKeyUsages []string
	notBefore    time.Time
	notAfter     time.Time
}

// plan applies defaults, computes the validity window and checks the
// request against the policy (KindPolicy, every violation in one message)
// and then against the CA (KindBadRequest).
func (i *Issuer) plan(p *Profile, req Request) (*plan, error) {
	if req.CommonName == "" && len(req.AltNames) == 0 {
		return nil, Errorf(KindBadRequest, "A certificate needs a commonName or at least one altName")
	}
	ecLeaf := strings.HasPrefix(req.KeyAlgorithm, "EC_")
	pl := &plan{profile: p, req: req}
	pl.keyUsages = req.KeyUsages
	if len(pl.keyUsages) == 0 {
		for _, u := range p.DefaultKeyUsages {
			// RFC 5480 §3: keyEncipherment must not be asserted for an EC key.
			if ecLeaf && u == policy.UsageKeyEncipherment {
				continue
			}
			pl.keyUsages = append(pl.keyUsages, u)
		}
	}
	pl.extKeyUsages = req.ExtKeyUsages
	if len(pl.extKeyUsages) == 0 {
		pl.extKeyUsages = p.DefaultExtKeyUsages
	}

	now := i.clock.Now().UTC().Truncate(time.Second)
	pl.notBefore = now.Add(-p.Backdate)
	if req.NotBefore != nil {
		pl.notBefore = req.NotBefore.UTC()
	}
	pl.notAfter = pl.notBefore.Add(req.TTL)
	if req.NotAfter != nil {
		pl.notAfter = req.NotAfter.UTC()
	}

	violations := p.Policy.Evaluate(policy.Candidate{
		CommonName:         req.CommonName,
		AltNames:           req.AltNames,
		KeyUsages:          pl.keyUsages,
		ExtKeyUsages:       pl.extKeyUsages,
		SignatureAlgorithm: req.SignatureAlgorithm,
		KeyAlgorithm:       req.KeyAlgorithm,
		Lifetime:           pl.notAfter.Sub(pl.notBefore),
		ExplicitWindow:     req.NotAfter != nil,
	})
	if ecLeaf && policy.IsOneOf(pl.keyUsages, policy.UsageKeyEncipherment) {
		violations = append(violations, "key_encipherment cannot be used with an EC key (RFC 5480 section 3)")
	}
	if len(violations) > 0 {
		return nil, &Error{
			Kind:    KindPolicy,
			Message: "Certificate request validation failed: " + strings.Join(violations, ", "),
			Details: map[string][]string{"violations": violations},
		}
	}
	if err := checkCA(p.CA, req.SignatureAlgorithm, now, pl.notBefore, pl.notAfter); err != nil {
		return nil, err
	}
	return pl, nil
}

// checkCA refuses requests the issuing CA cannot serve: an expired or not
// yet valid CA, a window outside the CA's (not clamped), a signature
// algorithm of the wrong family.
func checkCA(ca *CA, sigAlg string, now, notBefore, notAfter time.Time) error {
	cert := ca.Certificate
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

// template builds the to-be-signed certificate for the leaf public key,
// with a fresh serial from r.
func (pl *plan) template(r io.Reader, leafPub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := newSerial(r)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(leafPub)
	if err != nil {
		return nil, err
	}
	ca := pl.profile.CA
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subjectFor(pl.req.CommonName),
		NotBefore:             pl.notBefore,
		NotAfter:              pl.notAfter,
		SignatureAlgorithm:    signatureAlgorithms[pl.req.SignatureAlgorithm],
		BasicConstraintsValid: true, // cA=false, critical (RFC 5280 §4.2.1.9)
		SubjectKeyId:          ski,
		CRLDistributionPoints: ca.CRLURLs,
		IssuingCertificateURL: ca.IssuingCertificateURL,
		OCSPServer:            ca.OCSPURLs,
		Policies:              ca.policies(),
	}
	for _, u := range pl.keyUsages {
		t.KeyUsage |= keyUsageBits[u]
	}
	for _, u := range pl.extKeyUsages {
		t.ExtKeyUsage = append(t.ExtKeyUsage, extKeyUsages[u])
	}
	if err := applyAltNames(t, pl.req.AltNames); err != nil {
		return nil, fmt.Errorf("building SANs: %w", err)
	}
	return t, nil
}
