package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSigningKeyBytes is the shortest access-token key NewSigner accepts:
// RFC 7518 §3.2 requires an HS256 key of at least the hash's size.
const MinSigningKeyBytes = 32

// The fixed claims of every access token.
const (
	tokenIssuer   = "pkid"
	tokenAudience = "pkid"
	jtiBytes      = 16
	// maxTokenBytes bounds what is parsed: pkid's tokens are about 400
	// bytes, and nothing longer is worth base64- and JSON-decoding.
	maxTokenBytes = 4096
)

// accessClaims are the claims of a pkid access token. The private claims are
// named pkid_* so that they cannot collide with registered ones.
type accessClaims struct {
	jwt.RegisteredClaims
	// AuthTime is when the login that started this token's lineage
	// happened (the OpenID Connect claim of that name); renewal keeps it.
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	// MaxExp is the max-TTL deadline: no renewal of this lineage expires
	// after it.
	MaxExp *jwt.NumericDate `json:"pkid_max_exp,omitempty"`
	// Credential fingerprints the client id and secret hash the login used
	// (machine.credential).
	Credential string `json:"pkid_cred,omitempty"`
	// Audience shadows RegisteredClaims.Audience so that aud is the string
	// "pkid", as RFC 7519 §4.1.3 allows for a single audience, rather than
	// jwt's default one-element array: clients that read the token (some
	// do, clients.md §4) then see the plainest form.
	Audience string `json:"aud,omitempty"`
}

// GetAudience gives the validator the shadowing Audience.
func (c accessClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}

// Signer issues and checks access tokens: HS256 JWTs with a key shared by
// every node (read like the PIN: a file or a systemd credential), so that
// any node verifies any node's tokens.
type Signer struct {
	key   []byte
	kid   string
	clock func() time.Time
}

// NewSigner returns a Signer with its own copy of key. It refuses a key
// shorter than 32 bytes. clock is the time source (nil: time.Now).
func NewSigner(key []byte, clock func() time.Time) (*Signer, error) {
	if len(key) < MinSigningKeyBytes {
		return nil, fmt.Errorf("access-token signing key: %d bytes, want at least %d (e.g. head -c 32 /dev/urandom)", len(key), MinSigningKeyBytes)
	}
	if clock == nil {
		clock = time.Now
	}
	// The key id is a digest of the key under a label of its own, so that
	// it tells operators whether two nodes share a key (a token from a node
	// with another key is refused as "signed by another key") without
	// revealing anything about the key.
	sum := sha256.Sum256(append([]byte("pkid access-token key id\x00"), key...))
	return &Signer{
		key:   append([]byte(nil), key...),
		kid:   base64.RawURLEncoding.EncodeToString(sum[:9]),
		clock: clock,
	}, nil
}

// KeyID identifies the signing key (the JWT header's kid): the same on every
// node that shares the key. It is safe to log.
func (s *Signer) KeyID() string { return s.kid }

func (s *Signer) now() time.Time { return s.clock() }

// newJTI returns a random token id: 128 bits, unpadded base64url.
func newJTI() (string, error) {
	var b [jtiBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sign encodes and signs claims, with iss and aud set here so that no
// caller can get them wrong.
func (s *Signer) sign(c accessClaims) (string, error) {
	c.Issuer = tokenIssuer
	c.Audience = tokenAudience
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("signing an access token: %w", err)
	}
	return signed, nil
}

// verify checks a token's signature, algorithm, issuer, audience, iat and
// exp, and the presence and coherence of pkid's own claims. On failure the
// error is a *TokenError whose Reason says why (for logs), never what the
// token held.
func (s *Signer) verify(token string) (*accessClaims, error) {
	if len(token) > maxTokenBytes {
		return nil, invalidToken("longer than %d bytes", maxTokenBytes)
	}
	// A parser per call: jwt.Parser is cheap, and one shared between
	// goroutines would be shared mutable state.
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(tokenAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.clock),
		// One token, one spelling: without strict decoding, unused bits of
		// the last base64 character could vary and a different string would
		// carry the same signature.
		jwt.WithStrictDecoding(),
	)
	var c accessClaims
	_, err := p.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods has refused every other alg (none, RS*, ES*…)
		// already; checking again costs nothing and keeps an HMAC key from
		// ever being handed to another algorithm.
		if t.Method != jwt.SigningMethodHS256 {
			return nil, errUnexpectedAlg
		}
		if kid, ok := t.Header["kid"].(string); !ok || kid != s.kid {
			return nil, errOtherKey
		}
		return s.key, nil
	})
	if err != nil {
		return nil, &TokenError{Reason: jwtReason(err)}
	}
	switch {
	case c.Subject == "":
		return nil, invalidToken("no subject")
	case c.ID == "":
		return nil, invalidToken("no token id (jti)")
	case c.IssuedAt == nil || c.AuthTime == nil || c.MaxExp == nil:
		return nil, invalidToken("missing iat, auth_time or pkid_max_exp")
	case c.ExpiresAt.After(c.MaxExp.Time):
		return nil, invalidToken("expires after its max-TTL deadline")
	case c.AuthTime.After(c.IssuedAt.Time):
		return nil, invalidToken("issued before its login")
	}
	return &c, nil
}

var (
	errUnexpectedAlg = errors.New("unexpected signing algorithm")
	errOtherKey      = errors.New("signed by another key")
)

// jwtReason turns a jwt error into a fixed reason. jwt's own messages can
// quote decoded bytes of the token (a JSON syntax error names the offending
// character); these never do.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, errOtherKey):
		return "signed by another key (kid differs)"
	case errors.Is(err, errUnexpectedAlg):
		return "unexpected signing algorithm"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable (missing or unknown alg)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing a required claim"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "invalid claims"
	default:
		return "invalid"
	}
}
