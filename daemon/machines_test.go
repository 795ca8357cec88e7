package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/api"
	"github.com/pkid/pkid/auth"
)

// Every auth error kind reaches the API as the kind it answers; a store
// failure stays what it is (the API answers it 503), and a token's reason
// survives for the log without the token.
func TestAPIAuthError(t *testing.T) {
	storeDown := errors.New("database unavailable")
	for _, c := range []struct {
		in   error
		want error
	}{
		{auth.ErrInvalidCredentials, api.ErrInvalidCredentials},
		{auth.ErrRenewBeyondMax, api.ErrRenewBeyondMax},
		{&auth.TokenError{Reason: "revoked"}, api.ErrInvalidToken},
		{auth.ErrInvalidToken, api.ErrInvalidToken},
		{storeDown, storeDown},
	} {
		if got := apiAuthError(c.in); !errors.Is(got, c.want) {
			t.Errorf("apiAuthError(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := apiAuthError(&auth.TokenError{Reason: "revoked"}); !strings.Contains(got.Error(), "revoked") {
		t.Errorf("the reason is lost: %v", got)
	}
	var rl *api.RateLimitedError
	if got := apiAuthError(&auth.RateLimitError{RetryAfter: 3 * time.Second}); !errors.As(got, &rl) || rl.RetryAfter != 3*time.Second {
		t.Errorf("rate limit: %v", got)
	}
	if apiAuthError(nil) != nil {
		t.Error("nil is not nil")
	}
}
