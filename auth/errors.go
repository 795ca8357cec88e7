package auth

import (
	"errors"
	"fmt"
	"time"
)

// The error kinds the API maps to HTTP (401, 429, 400). No message carries a
// secret, a token, or a hint of which part of a credential was wrong.
var (
	// ErrInvalidCredentials is the one error for a failed login, whether
	// the client id is unknown or the secret is wrong.
	ErrInvalidCredentials = errors.New("invalid client credentials")
	// ErrRateLimited is what a *RateLimitError is (errors.Is); errors.As
	// gives the RetryAfter.
	ErrRateLimited = errors.New("too many login attempts")
	// ErrInvalidToken is the one error for a Bearer credential that does
	// not authenticate: expired, tampered, wrong audience or issuer,
	// revoked, unknown machine, not a token at all. errors.As to a
	// *TokenError gives the reason, for logs only.
	ErrInvalidToken = errors.New("invalid or expired access token")
	// ErrRenewBeyondMax is returned by Renew when the token's lineage has
	// reached its max TTL (or would leave a token of 30 s or less, on which
	// Infisical's agent exits): the client must log in again.
	ErrRenewBeyondMax = errors.New("access token has reached its max TTL; log in again")
)

// TokenError is an ErrInvalidToken with the reason it was refused. Error()
// is ErrInvalidToken's message alone, so that a caller that sends err.Error()
// to a client tells it nothing more; Reason is for the log.
type TokenError struct {
	Reason string
}

func (e *TokenError) Error() string { return ErrInvalidToken.Error() }

func (e *TokenError) Unwrap() error { return ErrInvalidToken }

func invalidToken(format string, a ...any) error {
	return &TokenError{Reason: fmt.Sprintf(format, a...)}
}

// RateLimitError is an ErrRateLimited with how long to wait.
type RateLimitError struct {
	// RetryAfter is how long until an attempt would be admitted by every
	// limit that refused this one, rounded up to a whole second (at least
	// one) so that it fits Retry-After as is.
	RetryAfter time.Duration
	// Scope is "client" (per client id), "source" (per source address) or
	// "client and source": for logs and metrics, not for the client.
	Scope string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v; retry after %d s", ErrRateLimited, int64(e.RetryAfter/time.Second))
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }
