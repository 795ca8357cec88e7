package api

import (
	"crypto/rand"
	"errors"
	"net/http"

	"github.com/pkid/pkid/policy"
)

// Reasons a client identity is refused, as metrics label them.
const (
	RejectNoCredential = "no_certificate"
	RejectAmbiguous    = "ambiguous"
	RejectUnusable     = "unusable"
	RejectNotAllowed   = "not_allowed"
	RejectInvalidToken = "invalid_token"
)

// authenticate returns the request's typed identity from its verified
// client certificate (DESIGN.md §2): uri: for exactly one URI SAN, else
// dns:, else cn:. More than one URI SAN is ambiguous and refused.
func authenticate(r *http.Request) (policy.Identity, *httpError, string) {
	cs := r.TLS
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return policy.Identity{}, unauthenticated("A verified client certificate or a Bearer access token is required"), RejectNoCredential
	}
	id, err := policy.IdentityFromCertificate(cs.PeerCertificates[0])
	switch {
	case errors.Is(err, policy.ErrAmbiguousIdentity):
		return policy.Identity{}, unauthenticated("The client certificate's identity is ambiguous: it has more than one URI SAN"), RejectAmbiguous
	case err != nil:
		return policy.Identity{}, unauthenticated("The client certificate carries no usable identity"), RejectUnusable
	}
	return id, nil, ""
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newRequestID returns "req-" and 14 random alphanumerics, as Infisical's
// request ids look.
func newRequestID() string {
	b := make([]byte, 14)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	for k := range b {
		b[k] = idAlphabet[int(b[k])%len(idAlphabet)]
	}
	return "req-" + string(b)
}
