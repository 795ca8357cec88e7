package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/auth"
)

// machineAuth adapts auth.Service to the API's MachineAuth: auth's error
// kinds become the API's, so that the api package knows nothing of how
// tokens are made, and auth nothing of HTTP. Any other error (the store
// could not say whether a token is revoked) passes through, and the API
// answers it 503.
type machineAuth struct{ svc *auth.Service }

func (m machineAuth) Login(ctx context.Context, clientID, clientSecret, source string) (api.AccessToken, error) {
	tok, err := m.svc.Login(ctx, clientID, clientSecret, source)
	if err != nil {
		return api.AccessToken{}, apiAuthError(err)
	}
	return api.AccessToken{Token: tok.AccessToken, ExpiresIn: tok.ExpiresIn, MaxTTL: tok.AccessTokenMaxTTL}, nil
}

func (m machineAuth) Renew(ctx context.Context, accessToken string) (api.AccessToken, error) {
	tok, err := m.svc.Renew(ctx, accessToken)
	if err != nil {
		return api.AccessToken{}, apiAuthError(err)
	}
	return api.AccessToken{Token: tok.AccessToken, ExpiresIn: tok.ExpiresIn, MaxTTL: tok.AccessTokenMaxTTL}, nil
}

func (m machineAuth) Revoke(ctx context.Context, accessToken string) error {
	return apiAuthError(m.svc.Revoke(ctx, accessToken))
}

func (m machineAuth) Authenticate(ctx context.Context, bearer string) (string, error) {
	name, err := m.svc.Authenticate(ctx, bearer)
	return name, apiAuthError(err)
}

// apiAuthError maps auth's error kinds to the API's, keeping the original
// (its reason is for the log) wrapped behind the API's kind.
func apiAuthError(err error) error {
	var rl *auth.RateLimitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rl):
		return &api.RateLimitedError{RetryAfter: rl.RetryAfter}
	case errors.Is(err, auth.ErrInvalidCredentials):
		return api.ErrInvalidCredentials
	case errors.Is(err, auth.ErrRenewBeyondMax):
		return api.ErrRenewBeyondMax
	case errors.Is(err, auth.ErrInvalidToken):
		var te *auth.TokenError
		if errors.As(err, &te) { // the reason goes to the log line, never to the client
			return fmt.Errorf("%w (%s)", api.ErrInvalidToken, te.Reason)
		}
		return api.ErrInvalidToken
	}
	return err
}
