package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/pkid/pkid/record"
)

// signatureAlgorithms are the JWS algorithms pkid accepts from account
// and certificate keys (RFC 8555 §6.2 requires ES256 and EdDSA support;
// RS256 is what older clients use).
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.EdDSA}

// macAlgorithms sign an external account binding (RFC 8555 §7.3.4).
var macAlgorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

func algorithmNames(algs []jose.SignatureAlgorithm) []string {
	out := make([]string, len(algs))
	for k, a := range algs {
		out[k] = string(a)
	}
	return out
}

// RSA account keys must be at least this large, and at most go-jose's
// bound (which keeps a hostile modulus from costing much to verify).
const minRSABits = 2048

// flattened is the JWS serialization ACME uses, and only it (RFC 8555
// §6.2): no unprotected header, no multiple signatures.
type flattened struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// parseJWS parses one flattened JWS signed with one of algs and returns
// it with its protected header.
func parseJWS(raw []byte, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, jose.Header, *problem) {
	var f flattened
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || dec.More() {
		return nil, jose.Header{}, malformed("The request is not a JWS in flattened JSON serialization with only protected, payload and signature")
	}
	if f.Protected == "" || f.Signature == "" {
		return nil, jose.Header{}, malformed("The JWS has no protected header or no signature")
	}
	jws, err := jose.ParseSignedJSON(string(raw), algs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			p := newProblem(http.StatusBadRequest, probBadSignatureAlgorithm, "The JWS algorithm "+string(alg.Got)+" is not accepted")
			p.Algorithms = algorithmNames(algs)
			return nil, jose.Header{}, p
		}
		return nil, jose.Header{}, malformed("The JWS does not parse")
	}
	if len(jws.Signatures) != 1 {
		return nil, jose.Header{}, malformed("The JWS must carry exactly one signature")
	}
	return jws, jws.Signatures[0].Protected, nil
}

// urlHeader is the protected "url" header (RFC 8555 §6.4).
func urlHeader(h jose.Header) string {
	s, _ := h.ExtraHeaders["url"].(string)
	return s
}

// checkKey refuses keys pkid does not take as account keys.
func checkKey(k *jose.JSONWebKey) *problem {
	if k == nil || !k.Valid() || !k.IsPublic() {
		return newProblem(http.StatusBadRequest, probBadPublicKey, "The JWK is not a valid public key")
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return newProblem(http.StatusBadRequest, probBadPublicKey, "RSA keys must have at least 2048 bits")
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return newProblem(http.StatusBadRequest, probBadPublicKey, "Account keys are RSA, ECDSA or Ed25519 public keys")
	}
	return nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint, base64url.
func thumbprint(k *jose.JSONWebKey) (string, error) {
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// request is a verified ACME POST: its payload, and who signed it.
type request struct {
	payload []byte
	// account is set for a request signed by an account (kid); jwk and
	// keyID for one signed by an embedded key.
	account *record.ACMEAccount
	jwk     *jose.JSONWebKey
	keyID   string // thumbprint of the signing key
	url     string
}

// postAsGet reports an empty payload (RFC 8555 §6.3).
func (r *request) postAsGet() bool { return len(r.payload) == 0 }

// keyUse says which key a route takes.
type keyUse int

const (
	byAccount keyUse = iota // kid only
	byJWK                   // jwk only (new-account)
	byEither                // revoke-cert
)

// verify checks an ACME POST (RFC 8555 §6.2–6.5) in this order: the JWS
// form and algorithm, the url header, the key (jwk or a known account's
// kid, as the route allows), the signature, and last the nonce, which it
// consumes while storing the response's fresh one. The nonce is checked
// last so that a request that fails on its own costs no nonce write.
func (x *exchange) verify(ctx context.Context, body []byte, use keyUse) (*request, *problem) {
	jws, h, p := parseJWS(body, signatureAlgorithms)
	if p != nil {
		return nil, p
	}
	req := &request{url: x.url}
	if got := urlHeader(h); got != x.url {
		return nil, unauthorized("The JWS url header " + quote(got) + " is not the request's URL " + x.url)
	}
	if !validNonce(h.Nonce) {
		return nil, newProblem(http.StatusBadRequest, probBadNonce, "The JWS has no valid nonce")
	}
	var key any
	switch {
	case h.JSONWebKey != nil && h.KeyID != "":
		return nil, malformed("The JWS must carry jwk or kid, not both")
	case h.JSONWebKey != nil:
		if use == byAccount {
			return nil, malformed("This request must be signed by an account (kid), not an embedded jwk")
		}
		if p := checkKey(h.JSONWebKey); p != nil {
			return nil, p
		}
		t, err := thumbprint(h.JSONWebKey)
		if err != nil {
			return nil, newProblem(http.StatusBadRequest, probBadPublicKey, "The JWK has no thumbprint")
		}
		req.jwk, req.keyID, key = h.JSONWebKey, t, h.JSONWebKey.Key
	case h.KeyID != "":
		if use == byJWK {
			return nil, malformed("This request must carry the account's key as jwk, not a kid")
		}
		acct, p := x.account(ctx, h.KeyID)
		if p != nil {
			return nil, p
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(acct.Key); err != nil {
			return nil, internalProblem(err)
		}
		req.account, req.keyID, key = acct, acct.KeyID, k.Key
	default:
		return nil, malformed("The JWS carries neither jwk nor kid")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, malformed("The JWS signature does not verify")
	}
	if p := x.consumeNonce(ctx, h.Nonce); p != nil {
		return nil, p
	}
	req.payload = payload
	return req, nil
}

// account finds the valid account a kid names: an account URL of this
// profile's directory.
func (x *exchange) account(ctx context.Context, kid string) (*record.ACMEAccount, *problem) {
	id, ok := strings.CutPrefix(kid, x.base+"/acct/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, newProblem(http.StatusBadRequest, probAccountDoesNotExist, "The kid is not an account URL of this directory")
	}
	acct, err := x.s.cfg.Store.ACMEAccount(ctx, id)
	if errors.Is(err, record.ErrNotFound) || err == nil && acct.ProfileID != x.profile.ID {
		return nil, newProblem(http.StatusBadRequest, probAccountDoesNotExist, "No such account")
	}
	if err != nil {
		return nil, storeProblem(err, "Account")
	}
	if acct.Status != record.ACMEValid {
		return nil, unauthorized("The account is " + acct.Status)
	}
	x.identity = "acme:" + acct.ID
	return acct, nil
}

// verifyInner checks a JWS nested in a payload (key rollover, RFC 8555
// §7.3.5; external account binding, §7.3.4): signed with one of algs, its
// url the outer request's, without a nonce. It returns the JWS and its
// header for the caller to verify with the right key.
func verifyInner(raw json.RawMessage, algs []jose.SignatureAlgorithm, url string) (*jose.JSONWebSignature, jose.Header, *problem) {
	jws, h, p := parseJWS(raw, algs)
	if p != nil {
		return nil, jose.Header{}, p
	}
	if urlHeader(h) != url {
		return nil, jose.Header{}, unauthorized("The inner JWS url header is not the request's URL")
	}
	if h.Nonce != "" {
		return nil, jose.Header{}, malformed("The inner JWS must not carry a nonce")
	}
	return jws, h, nil
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
