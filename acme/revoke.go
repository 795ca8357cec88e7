package acme

import (
	"context"
	"encoding/base64"
	"net/http"

	"github.com/pkid/pkid/issuer"
)

// revoke serves revoke-cert (RFC 8555 §7.6), signed by the account that
// ordered the certificate (kid) or by the certificate's own key (jwk).
// The revocation is the issuer's: one store transaction with its audit
// entry, then the CRL and the OCSP answers follow.
func (s *Server) revoke(ctx context.Context, x *exchange, req *request, _ []string) (*reply, *problem) {
	var in struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if p := decodePayload(req.payload, &in); p != nil {
		return nil, p
	}
	der, err := base64.RawURLEncoding.DecodeString(in.Certificate)
	if err != nil || len(der) == 0 {
		return nil, malformed("certificate is not base64url-encoded DER")
	}
	rr := issuer.ACMERevokeRequest{ProfileID: x.profile.ID, Certificate: der}
	if in.Reason != nil {
		rr.Reason = *in.Reason
	}
	if req.account == nil {
		rr.KeyHolder = req.jwk.Key
		x.identity = "acme:key-" + req.keyID
	}
	meta, p := x.meta()
	if p != nil {
		return nil, p
	}
	rec, err := s.cfg.Issuer.RevokeACME(ctx, meta, rr)
	if err != nil {
		return nil, fromIssuer(err)
	}
	x.serial = rec.Serial
	return &reply{status: http.StatusOK}, nil
}
