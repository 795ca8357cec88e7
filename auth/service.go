package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minExpiresIn is the shortest expiresIn pkid ever answers: Infisical's CLI
// agent exits on 30 s or less ("does not support refresh of tokens with 30
// seconds or less ttl"), whereas a refused renewal makes it log in again.
const minExpiresIn = 30 * time.Second

// Revocations is what the service needs to refuse revoked tokens; the store
// implements it. Revocation is by jti, which a token keeps across renewals,
// so revoking any token of a lineage revokes them all.
type Revocations interface {
	// RevokeToken records jti as revoked. expiresAt is the latest moment
	// any token with that jti can expire (its max-TTL deadline); the
	// record may be dropped after it.
	RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error
	// TokenRevoked reports whether jti has been revoked.
	TokenRevoked(ctx context.Context, jti string) (bool, error)
}

// Token is the answer to a login or a renewal, in Infisical's shape.
type Token struct {
	AccessToken string `json:"accessToken"`
	// ExpiresIn is the token's remaining life in seconds (> 30).
	ExpiresIn int `json:"expiresIn"`
	// AccessTokenMaxTTL is the lineage's max TTL in seconds, counted from
	// the login as Infisical counts it: the agent adds it to the time it
	// logged in, and keeps that time across renewals.
	AccessTokenMaxTTL int    `json:"accessTokenMaxTTL"`
	TokenType         string `json:"tokenType"` // "Bearer"
	// Machine is the identity's name, for the log and metrics; not sent.
	Machine string `json:"-"`
}

// Service ties machine identities, the signer, the revocation store and the
// login limits together: login, renew, revoke, authenticate. It is safe for
// concurrent use. A reload builds a new Service with the new Machines and the
// same Signer, Revocations and LoginLimiter.
type Service struct {
	machines *Machines
	signer   *Signer
	rev      Revocations
	limiter  *LoginLimiter
}

// NewService returns a Service. Every argument is required; nil is a
// programming error and panics here rather than on the first request.
func NewService(m *Machines, s *Signer, rev Revocations, limiter *LoginLimiter) *Service {
	if m == nil || s == nil || rev == nil || limiter == nil {
		panic("auth.NewService: nil Machines, Signer, Revocations or LoginLimiter")
	}
	return &Service{machines: m, signer: s, rev: rev, limiter: limiter}
}

// Login is universal auth: it checks clientSecret against the client id's
// configured hash and returns a new access token. source is the client's
// address (http.Request.RemoteAddr will do) for the per-source limit.
//
// Every attempt, good or bad, counts against both limits before any secret
// is verified, so a flood costs no argon2. An unknown client id is verified
// against a decoy hash of the usual cost and fails with the same
// ErrInvalidCredentials as a wrong secret.
func (s *Service) Login(ctx context.Context, clientID, clientSecret, source string) (*Token, error) {
	if err := s.limiter.admit(clientID, source); err != nil {
		return nil, err
	}
	if err := s.limiter.acquire(ctx); err != nil {
		return nil, err
	}
	m := s.machines.lookupClient(clientID)
	h := s.machines.decoy
	if m != nil {
		h = m.hash
	}
	ok := h.verify(clientSecret)
	s.limiter.release()
	if m == nil || !ok {
		return nil, ErrInvalidCredentials
	}
	return s.issue(m)
}

// issue starts a new lineage for m: a fresh jti, the login time, and the
// max-TTL deadline counted from it.
func (s *Service) issue(m *machine) (*Token, error) {
	jti, err := newJTI()
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	t0 := s.signer.now().Truncate(time.Second)
	c := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   m.name,
			ID:        jti,
			IssuedAt:  jwt.NewNumericDate(t0),
			ExpiresAt: jwt.NewNumericDate(t0.Add(m.ttl)),
		},
		AuthTime:   jwt.NewNumericDate(t0),
		MaxExp:     jwt.NewNumericDate(t0.Add(m.maxTTL)),
		Credential: m.credential,
	}
	signed, err := s.signer.sign(c)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return &Token{
		AccessToken:       signed,
		ExpiresIn:         seconds(m.ttl),
		AccessTokenMaxTTL: seconds(m.maxTTL),
		TokenType:         "Bearer",
		Machine:           m.name,
	}, nil
}

// Renew returns a token of the same lineage with a fresh expiry: the same
// jti, login time and max-TTL deadline, exp = now + the machine's current
// TTL, never past the deadline. The deadline itself can only shrink: it is
// also capped by the login time plus the machine's current max TTL, so
// lowering accessTokenMaxTTL at a reload applies to live tokens.
//
// The old token stays valid until its own exp (it is the same grant); a
// revocation of either revokes both. When the deadline leaves nothing to
// extend, or would leave a token of 30 s or less, Renew refuses with
// ErrRenewBeyondMax and the client must log in again.
func (s *Service) Renew(ctx context.Context, accessToken string) (*Token, error) {
	c, m, _, err := s.checkAccessToken(ctx, accessToken)
	if err != nil {
		return nil, err
	}
	t0 := s.signer.now().Truncate(time.Second)
	deadline := c.MaxExp.Time
	if d := c.AuthTime.Add(m.maxTTL); d.Before(deadline) {
		deadline = d
	}
	exp := t0.Add(m.ttl)
	if exp.After(deadline) {
		exp = deadline
	}
	if !deadline.After(c.ExpiresAt.Time) || exp.Sub(t0) <= minExpiresIn {
		return nil, ErrRenewBeyondMax
	}
	c.IssuedAt = jwt.NewNumericDate(t0)
	c.ExpiresAt = jwt.NewNumericDate(exp)
	c.MaxExp = jwt.NewNumericDate(deadline)
	signed, err := s.signer.sign(*c)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	return &Token{
		AccessToken:       signed,
		ExpiresIn:         seconds(exp.Sub(t0)),
		AccessTokenMaxTTL: seconds(deadline.Sub(c.AuthTime.Time)),
		TokenType:         "Bearer",
		Machine:           m.name,
	}, nil
}

// Revoke revokes a valid access token and, since they share its jti, every
// token renewed from the same login. Revoking a revoked token succeeds (the
// client's intent holds). A static token cannot be revoked here: it is
// removed from the config.
func (s *Service) Revoke(ctx context.Context, accessToken string) error {
	c, _, revoked, err := s.checkAccessToken(ctx, accessToken)
	if revoked {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.rev.RevokeToken(ctx, c.ID, c.MaxExp.Time); err != nil {
		return fmt.Errorf("revoking an access token: %w", err)
	}
	return nil
}

// Authenticate checks a Bearer credential (the text after "Bearer "): a
// static token whose SHA-256 is configured, or an access token (signature,
// iss, aud, exp, the machine still configured with the credentials that
// logged in, not revoked). It returns the machine name; the caller makes it
// policy.MachineIdentity(name). A failure is ErrInvalidToken (a *TokenError
// with the reason), or a wrapped store error when revocation could not be
// checked.
func (s *Service) Authenticate(ctx context.Context, bearer string) (machine string, err error) {
	if bearer == "" {
		return "", invalidToken("empty")
	}
	// Static tokens first, in constant time; an access token is never a
	// configured static token, so the order changes no answer.
	if len(bearer) <= maxTokenBytes {
		if name, ok := s.machines.staticMachine(sha256.Sum256([]byte(bearer))); ok {
			return name, nil
		}
	}
	_, m, _, err := s.checkAccessToken(ctx, bearer)
	if err != nil {
		return "", err
	}
	return m.name, nil
}

// checkAccessToken verifies an access token and that its machine is still
// configured with the credentials it logged in with, then asks the store
// whether it is revoked — last, so that nothing unauthenticated reaches the
// store. An authentic, live, revoked token gives revoked = true along with
// its ErrInvalidToken, which Revoke takes as already done.
func (s *Service) checkAccessToken(ctx context.Context, token string) (c *accessClaims, m *machine, revoked bool, err error) {
	if c, err = s.signer.verify(token); err != nil {
		return nil, nil, false, err
	}
	if m = s.machines.byName[c.Subject]; m == nil {
		return nil, nil, false, invalidToken("machine %q is no longer configured", c.Subject)
	}
	if c.Credential != m.credential {
		return nil, nil, false, invalidToken("machine %q's client id or secret changed since the login", c.Subject)
	}
	if revoked, err = s.rev.TokenRevoked(ctx, c.ID); err != nil {
		return nil, nil, false, fmt.Errorf("checking whether an access token is revoked: %w", err)
	}
	if revoked {
		return nil, nil, true, invalidToken("revoked")
	}
	return c, m, false, nil
}

// seconds is d in whole seconds.
func seconds(d time.Duration) int { return int(d / time.Second) }
