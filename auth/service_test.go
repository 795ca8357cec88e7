package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// harness is a Service over testConfigs with a fake clock.
type harness struct {
	clock   *fakeClock
	rev     *memRevocations
	signer  *Signer
	limiter *LoginLimiter
	svc     *Service
}

func newHarness(t testing.TB, limits LoginLimits) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(), rev: newMemRevocations()}
	var err error
	if h.signer, err = NewSigner(testKey, h.clock.Now); err != nil {
		t.Fatal(err)
	}
	if h.limiter, err = NewLoginLimiter(limits, h.clock.Now); err != nil {
		t.Fatal(err)
	}
	h.svc = NewService(mustMachines(t, testConfigs()), h.signer, h.rev, h.limiter)
	return h
}

// reload swaps in a new Machines the way the daemon does on SIGHUP: a new
// Service, the same signer, store and limiter.
func (h *harness) reload(t testing.TB, cfgs []MachineConfig) {
	t.Helper()
	h.svc = NewService(mustMachines(t, cfgs), h.signer, h.rev, h.limiter)
}

func (h *harness) login(t testing.TB, id, secret string) *Token {
	t.Helper()
	tok, err := h.svc.Login(context.Background(), id, secret, "192.0.2.10:40000")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return tok
}

// mint starts a lineage for a configured machine without a login, so that
// token tests do not pay for argon2.
func (h *harness) mint(t testing.TB, name string) *Token {
	t.Helper()
	m := h.svc.machines.byName[name]
	if m == nil {
		t.Fatalf("no machine %q", name)
	}
	tok, err := h.svc.issue(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claimsOf decodes a token's payload without checking it.
func claimsOf(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// craft signs arbitrary claims and header fields with key and method: the
// forger's tool.
func craft(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims are the claims Login would put in a token for ci-agent now.
func (h *harness) goodClaims() jwt.MapClaims {
	now := h.clock.Now().Unix()
	return jwt.MapClaims{
		"sub": ciName, "iss": "pkid", "aud": "pkid", "jti": "AAAAAAAAAAAAAAAAAAAAAA",
		"iat": now, "exp": now + 600, "auth_time": now, "pkid_max_exp": now + 1800,
		"pkid_cred": h.svc.machines.byName[ciName].credential,
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func tokenReason(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

func TestNewSigner(t *testing.T) {
	if _, err := NewSigner(make([]byte, 31), nil); err == nil {
		t.Error("a 31-byte key was accepted")
	}
	key := append([]byte(nil), testKey...)
	s, err := NewSigner(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff // the caller zeroes or reuses its buffer
	again, _ := NewSigner(testKey, nil)
	other, _ := NewSigner(otherKey, nil)
	if s.KeyID() != again.KeyID() {
		t.Error("the signer did not keep its own copy of the key, or KeyID is not stable")
	}
	if s.KeyID() == other.KeyID() {
		t.Error("two keys share a KeyID")
	}
	if strings.Contains(s.KeyID(), string(testKey)) {
		t.Error("KeyID shows the key")
	}
}

func TestLogin(t *testing.T) {
	h := newHarness(t, LoginLimits{})
	tok := h.login(t, ciID, ciSecret)
	if tok.ExpiresIn != 600 || tok.AccessTokenMaxTTL != 1800 || tok.TokenType != "Bearer" || tok.Machine != ciName {
		t.Errorf("Login = %+v, want expiresIn 600, accessTokenMaxTTL 1800, Bearer, %s", tok, ciName)
	}
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "accessToken,accessTokenMaxTTL,expiresIn,tokenType" {
		t.Errorf("JSON fields %s, want Infisical's accessToken, expiresIn, accessTokenMaxTTL, tokenType", got)
	}

	c := claimsOf(t, tok.AccessToken)
	now := float64(testEpoch.Unix())
	for k, want := range map[string]any{
		"sub": ciName, "iss": "pkid", "aud": "pkid",
		"iat": now, "exp": now + 600, "auth_time": now, "pkid_max_exp": now + 1800,
	} {
		if c[k] != want {
			t.Errorf("claim %s = %v, want %v", k, c[k], want)
		}
	}
	if jti, _ := c["jti"].(string); len(jti) != 22 {
		t.Errorf("jti %q: want 128 random bits in base64url", jti)
	}
	if other := claimsOf(t, h.mint(t, ciName).AccessToken); other["jti"] == c["jti"] {
		t.Error("two logins share a jti")
	}

	got, err := h.svc.Authenticate(context.Background(), tok.AccessToken)
	if err != nil || got != ciName {
		t.Errorf("Authenticate = %q, %v; want %s", got, err, ciName)
	}
	// Default TTLs and the upper-case spelling of the client id.
	tf, err := h.svc.Login(context.Background(), strings.ToUpper(tfID), tfSecret, "[2001:db8::1]:5000")
	if err != nil {
		t.Fatal(err)
	}
	if tf.ExpiresIn != 7200 || tf.AccessTokenMaxTTL != 86400 {
		t.Errorf("terraform: expiresIn %d, max %d; want 7200, 86400", tf.ExpiresIn, tf.AccessTokenMaxTTL)
	}
}

// TestLoginFailuresAreIdentical: an unknown client id and a wrong secret
// give the same error, and none names what was sent.
func TestLoginFailuresAreIdentical(t *testing.T) {
	h := newHarness(t, LoginLimits{PerClientPerMinute: 1000, PerSourcePerMinute: 1000, Burst: 1000})
	tests := []struct{ name, id, secret string }{
		{"unknown client id", "6f1c5b1e-0000-4000-8000-0000000000ff", ciSecret},
		{"wrong secret", ciID, tfSecret},
		{"another machine's secret", tfID, ciSecret},
		{"empty secret", ciID, ""},
		{"secret with a trailing newline", ciID, ciSecret + "\n"},
		{"malformed client id", "ci-agent", ciSecret},
		{"empty client id", "", ciSecret},
		{"the secret hash as the secret", ciID, ciHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := h.svc.Login(context.Background(), tc.id, tc.secret, "192.0.2.1:1")
			if tok != nil || err != ErrInvalidCredentials {
				t.Fatalf("Login = %v, %v; want exactly ErrInvalidCredentials", tok, err)
			}
			for _, leak := range []string{tc.id, tc.secret} {
				if leak != "" && strings.Contains(err.Error(), leak) {
					t.Errorf("error %q contains %q", err, leak)
				}
			}
		})
	}
}

// TestLoginUnknownIDCostsAVerification: without the decoy, an unknown id
// would answer in microseconds and a wrong secret in tens of milliseconds.
func TestLoginUnknownIDCostsAVerification(t *testing.T) {
	if testing.Short() {
		t.Skip("times argon2")
	}
	h := newHarness(t, LoginLimits{PerClientPerMinute: 1000, PerSourcePerMinute: 1000, Burst: 1000})
	measure := func(id string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			if _, err := h.svc.Login(context.Background(), id, "wrong", "192.0.2.1:1"); err != ErrInvalidCredentials {
				t.Fatalf("Login = %v", err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure(ciID), measure("6f1c5b1e-0000-4000-8000-0000000000ff")
	t.Logf("wrong secret %v, unknown id %v", known, unknown)
	if unknown < known/4 {
		t.Errorf("an unknown id answers in %v, a wrong secret in %v: timing tells them apart", unknown, known)
	}
}

func TestLoginRateLimited(t *testing.T) {
	ctx := context.Background()
	t.Run("per client id: failed and successful attempts count", func(t *testing.T) {
		h := newHarness(t, LoginLimits{PerClientPerMinute: 2, PerSourcePerMinute: 1000, Burst: 2})
		if _, err := h.svc.Login(ctx, ciID, "wrong", "192.0.2.1:1"); err != ErrInvalidCredentials {
			t.Fatal(err)
		}
		h.login(t, ciID, ciSecret)
		_, err := h.svc.Login(ctx, ciID, ciSecret, "192.0.2.2:1")
		var rl *RateLimitError
		if !errors.As(err, &rl) || rl.RetryAfter != 30*time.Second || rl.Scope != "client" {
			t.Fatalf("third login = %v, want a client rate limit with RetryAfter 30s", err)
		}
		if strings.Contains(err.Error(), ciID) || strings.Contains(err.Error(), ciSecret) {
			t.Errorf("rate-limit error %q names the client", err)
		}
		h.clock.Advance(30 * time.Second)
		h.login(t, ciID, ciSecret)
	})
	t.Run("per source address: across client ids", func(t *testing.T) {
		h := newHarness(t, LoginLimits{PerClientPerMinute: 1000, PerSourcePerMinute: 2, Burst: 2})
		for _, id := range []string{ciID, "6f1c5b1e-0000-4000-8000-0000000000ff"} {
			if _, err := h.svc.Login(ctx, id, "wrong", "192.0.2.1:1"); err != ErrInvalidCredentials {
				t.Fatal(err)
			}
		}
		_, err := h.svc.Login(ctx, tfID, tfSecret, "192.0.2.1:2")
		if !errors.Is(err, ErrRateLimited) {
			t.Fatalf("third login from one address = %v, want ErrRateLimited", err)
		}
		if _, err := h.svc.Login(ctx, tfID, tfSecret, "192.0.2.2:2"); err != nil {
			t.Fatalf("login from another address = %v", err)
		}
	})
	t.Run("limits survive a reload", func(t *testing.T) {
		h := newHarness(t, LoginLimits{PerClientPerMinute: 1, PerSourcePerMinute: 1000, Burst: 1})
		h.login(t, ciID, ciSecret)
		h.reload(t, testConfigs())
		if _, err := h.svc.Login(ctx, ciID, ciSecret, "192.0.2.1:1"); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("login after a reload = %v, want still rate limited", err)
		}
	})
	t.Run("a cancelled context while waiting for a verification slot", func(t *testing.T) {
		h := newHarness(t, LoginLimits{Concurrency: 1})
		if err := h.limiter.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		defer h.limiter.release()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := h.svc.Login(cctx, ciID, ciSecret, "192.0.2.1:1"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Login = %v, want context.Canceled", err)
		}
	})
}

// TestAuthenticateRefuses: every way a Bearer credential can be wrong gives
// ErrInvalidToken, with a reason for the log that names no token.
func TestAuthenticateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		bearer func(t *testing.T, h *harness) string
		reason string
	}{
		{"empty", func(*testing.T, *harness) string { return "" }, "empty"},
		{"garbage", func(*testing.T, *harness) string { return "hello" }, "malformed"},
		{"unlisted static token", func(*testing.T, *harness) string { return unlistedStatic }, "malformed"},
		{"static token with a trailing newline", func(*testing.T, *harness) string { return tfStatic + "\n" }, "malformed"},
		{"the static token's hash", func(*testing.T, *harness) string { return tfStaticHash }, "malformed"},
		{"Bearer prefix left on", func(t *testing.T, h *harness) string { return "Bearer " + h.mint(t, ciName).AccessToken }, "malformed"},
		{"expired", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			h.clock.Advance(10 * time.Minute)
			return tok
		}, "expired"},
		{"tampered signature", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			i := strings.LastIndexByte(tok, '.') + 5
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:]
		}, "bad signature"},
		{"tampered payload: another subject", func(t *testing.T, h *harness) string {
			parts := strings.Split(h.mint(t, ciName).AccessToken, ".")
			c := claimsOf(t, strings.Join(parts, "."))
			c["sub"] = tfName
			b, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(b)
			return strings.Join(parts, ".")
		}, "bad signature"},
		{"tampered payload: later exp", func(t *testing.T, h *harness) string {
			parts := strings.Split(h.mint(t, ciName).AccessToken, ".")
			c := claimsOf(t, strings.Join(parts, "."))
			c["exp"] = c["exp"].(float64) + 3600
			b, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(b)
			return strings.Join(parts, ".")
		}, "bad signature"},
		{"signature stripped", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, "bad signature"},
		{"padded base64", func(t *testing.T, h *harness) string {
			parts := strings.Split(h.mint(t, ciName).AccessToken, ".")
			return parts[0] + "." + parts[1] + "." + parts[2] + "="
		}, "malformed"},
		{"wrong audience", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "aud", "infisical"))
		}, "wrong audience"},
		{"no audience", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "aud", nil))
		}, "missing a required claim"},
		{"audience as an array", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "aud", []string{"pkid"}))
		}, "malformed"},
		{"wrong issuer", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "iss", "infisical"))
		}, "wrong issuer"},
		{"alg none", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims())
		}, "bad signature or algorithm"},
		{"alg HS512 with the right key", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS512, testKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims())
		}, "bad signature or algorithm"},
		{"unknown alg", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XS256","kid":"` + h.signer.KeyID() + `","typ":"JWT"}`))
			return hdr + tok[strings.IndexByte(tok, '.'):]
		}, "unverifiable"},
		{"signed by another node's key", func(t *testing.T, h *harness) string {
			other, err := NewSigner(otherKey, h.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			svc := NewService(h.svc.machines, other, h.rev, h.limiter)
			tok, err := svc.issue(svc.machines.byName[ciName])
			if err != nil {
				t.Fatal(err)
			}
			return tok.AccessToken
		}, "signed by another key"},
		{"another key under this key's kid", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, otherKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims())
		}, "bad signature"},
		{"no kid", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, nil, h.goodClaims())
		}, "signed by another key"},
		{"no jti", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "jti", nil))
		}, "no token id"},
		{"no exp", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "exp", nil))
		}, "missing a required claim"},
		{"no max-TTL deadline", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "pkid_max_exp", nil))
		}, "missing iat, auth_time or pkid_max_exp"},
		{"exp past the max-TTL deadline", func(t *testing.T, h *harness) string {
			c := h.goodClaims()
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(c, "exp", c["pkid_max_exp"].(int64)+1))
		}, "after its max-TTL deadline"},
		{"issued in the future", func(t *testing.T, h *harness) string {
			c := h.goodClaims()
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(c, "iat", c["iat"].(int64)+60))
		}, "issued in the future"},
		{"no subject", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "sub", nil))
		}, "no subject"},
		{"claims of the wrong type", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "exp", "tomorrow"))
		}, "malformed"},
		{"revoked", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			if err := h.svc.Revoke(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			return tok
		}, "revoked"},
		{"machine removed from the config after issuing", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			h.reload(t, testConfigs()[1:])
			return tok
		}, `machine "ci-agent" is no longer configured`},
		{"machine's secret rotated in the config", func(t *testing.T, h *harness) string {
			tok := h.mint(t, ciName).AccessToken
			cfgs := testConfigs()
			cfgs[0].ClientSecretHash = tfHash
			h.reload(t, cfgs)
			return tok
		}, "client id or secret changed"},
		{"unknown machine in a well-signed token", func(t *testing.T, h *harness) string {
			return craft(t, jwt.SigningMethodHS256, testKey, map[string]any{"kid": h.signer.KeyID()}, with(h.goodClaims(), "sub", "intruder"))
		}, `machine "intruder" is no longer configured`},
		{"too long", func(t *testing.T, h *harness) string {
			return h.mint(t, ciName).AccessToken + strings.Repeat("A", maxTokenBytes)
		}, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, LoginLimits{})
			bearer := tc.bearer(t, h)
			name, err := h.svc.Authenticate(context.Background(), bearer)
			if err == nil {
				t.Fatalf("Authenticate accepted it as %q", name)
			}
			if !errors.Is(err, ErrInvalidToken) || err.Error() != ErrInvalidToken.Error() {
				t.Fatalf("Authenticate = %v, want ErrInvalidToken and its message alone", err)
			}
			if r := tokenReason(err); !strings.Contains(r, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", r, tc.reason)
			}
			if len(bearer) > 8 && strings.Contains(tokenReason(err), bearer) {
				t.Errorf("reason repeats the bearer")
			}
		})
	}
}

func TestAuthenticateAccepts(t *testing.T) {
	h := newHarness(t, LoginLimits{})
	tok := h.mint(t, ciName).AccessToken
	tests := []struct {
		name, bearer, machine string
		advance               time.Duration
	}{
		{"fresh access token", tok, ciName, 0},
		{"a second before exp", tok, ciName, 10*time.Minute - time.Second},
		{"static token", tfStatic, tfName, 0},
		{"static token, much later (no expiry)", tfStatic, tfName, 365 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.clock.Advance(tc.advance)
			got, err := h.svc.Authenticate(context.Background(), tc.bearer)
			if err != nil || got != tc.machine {
				t.Errorf("Authenticate = %q, %v; want %q", got, err, tc.machine)
			}
		})
	}
	t.Run("static token removed from the config", func(t *testing.T) {
		cfgs := testConfigs()
		cfgs[1].StaticTokens = nil
		h.reload(t, cfgs)
		if _, err := h.svc.Authenticate(context.Background(), tfStatic); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Authenticate = %v, want ErrInvalidToken", err)
		}
	})
}

func TestAuthenticateStoreFailure(t *testing.T) {
	h := newHarness(t, LoginLimits{})
	tok := h.mint(t, ciName).AccessToken
	storeDown := errors.New("database is locked")
	h.rev.err = storeDown
	_, err := h.svc.Authenticate(context.Background(), tok)
	if !errors.Is(err, storeDown) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Authenticate = %v, want the store's error (a 503), not ErrInvalidToken (a 401)", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Error("the error contains the token")
	}
	// A static token needs no store.
	if got, err := h.svc.Authenticate(context.Background(), tfStatic); err != nil || got != tfName {
		t.Errorf("static token with the store down = %q, %v", got, err)
	}
	// Nothing unauthenticated reaches the store.
	h.rev.err = nil
	before := h.rev.checks
	_, _ = h.svc.Authenticate(context.Background(), craft(t, jwt.SigningMethodHS256, otherKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims()))
	if h.rev.checks != before {
		t.Error("a forged token reached the revocation store")
	}
}

func TestRenew(t *testing.T) {
	ctx := context.Background()
	// ci-agent: TTL 10m, max TTL 30m; logged in at testEpoch.
	type step struct {
		at            time.Duration // since the login
		wantExpiresIn int           // 0: want ErrRenewBeyondMax
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"extends by the TTL", []step{{7 * time.Minute, 600}}},
		{"renewal of a renewal", []step{{7 * time.Minute, 600}, {14 * time.Minute, 600}}},
		{"clamped to the max TTL", []step{{7 * time.Minute, 600}, {14 * time.Minute, 600}, {22 * time.Minute, 480}}},
		{"refused once at the max TTL", []step{{7 * time.Minute, 600}, {14 * time.Minute, 600}, {22 * time.Minute, 480}, {25 * time.Minute, 0}}},
		{"refused at the deadline however late", []step{{7 * time.Minute, 600}, {14 * time.Minute, 600}, {21 * time.Minute, 540}, {29*time.Minute + 59*time.Second, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, LoginLimits{})
			first := h.mint(t, ciName)
			firstClaims := claimsOf(t, first.AccessToken)
			tok := first.AccessToken
			elapsed := time.Duration(0)
			for i, s := range tc.steps {
				h.clock.Advance(s.at - elapsed)
				elapsed = s.at
				got, err := h.svc.Renew(ctx, tok)
				if s.wantExpiresIn == 0 {
					if !errors.Is(err, ErrRenewBeyondMax) {
						t.Fatalf("step %d: Renew = %+v, %v; want ErrRenewBeyondMax", i, got, err)
					}
					// The token it was asked to renew still works.
					if _, err := h.svc.Authenticate(ctx, tok); err != nil {
						t.Errorf("step %d: the unrenewed token stopped working: %v", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: Renew: %v", i, err)
				}
				if got.ExpiresIn != s.wantExpiresIn || got.AccessTokenMaxTTL != 1800 || got.TokenType != "Bearer" {
					t.Errorf("step %d: Renew = expiresIn %d, max %d; want %d, 1800", i, got.ExpiresIn, got.AccessTokenMaxTTL, s.wantExpiresIn)
				}
				c := claimsOf(t, got.AccessToken)
				now := float64(h.clock.Now().Unix())
				if c["jti"] != firstClaims["jti"] || c["auth_time"] != firstClaims["auth_time"] || c["pkid_max_exp"] != firstClaims["pkid_max_exp"] {
					t.Errorf("step %d: renewal left the lineage: %v", i, c)
				}
				if c["exp"] != now+float64(s.wantExpiresIn) || c["iat"] != now {
					t.Errorf("step %d: exp %v iat %v, want %v %v", i, c["exp"], c["iat"], now+float64(s.wantExpiresIn), now)
				}
				if c["exp"].(float64) > firstClaims["pkid_max_exp"].(float64) {
					t.Errorf("step %d: renewed past the max TTL", i)
				}
				if _, err := h.svc.Authenticate(ctx, got.AccessToken); err != nil {
					t.Errorf("step %d: the renewed token does not authenticate: %v", i, err)
				}
				tok = got.AccessToken
			}
		})
	}

	t.Run("an expired token is not renewed", func(t *testing.T) {
		h := newHarness(t, LoginLimits{})
		tok := h.mint(t, ciName).AccessToken
		h.clock.Advance(10 * time.Minute)
		if _, err := h.svc.Renew(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Renew = %v, want ErrInvalidToken", err)
		}
	})
	t.Run("a static token is not renewed", func(t *testing.T) {
		h := newHarness(t, LoginLimits{})
		if _, err := h.svc.Renew(ctx, tfStatic); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Renew = %v, want ErrInvalidToken", err)
		}
	})
	t.Run("a max TTL lowered at a reload applies", func(t *testing.T) {
		h := newHarness(t, LoginLimits{})
		tok := h.mint(t, ciName).AccessToken
		cfgs := testConfigs()
		cfgs[0].AccessTokenMaxTTL = "12m"
		h.reload(t, cfgs)
		h.clock.Advance(5 * time.Minute)
		got, err := h.svc.Renew(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got.ExpiresIn != 7*60 || got.AccessTokenMaxTTL != 12*60 {
			t.Errorf("Renew = expiresIn %d, max %d; want 420, 720", got.ExpiresIn, got.AccessTokenMaxTTL)
		}
	})
	// A deadline that falls just after the token's exp — here because the
	// max TTL was lowered to 610 s — would leave a renewal of seconds, on
	// which Infisical's agent exits; Renew refuses it instead.
	for _, tc := range []struct {
		name          string
		at            time.Duration
		wantExpiresIn int
	}{
		{"31 s left is still a renewal", 9*time.Minute + 39*time.Second, 31},
		{"30 s left is refused", 9*time.Minute + 40*time.Second, 0},
		{"20 s left is refused", 9*time.Minute + 50*time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, LoginLimits{})
			tok := h.mint(t, ciName).AccessToken
			cfgs := testConfigs()
			cfgs[0].AccessTokenMaxTTL = "610s"
			h.reload(t, cfgs)
			h.clock.Advance(tc.at)
			got, err := h.svc.Renew(ctx, tok)
			if tc.wantExpiresIn == 0 {
				if !errors.Is(err, ErrRenewBeyondMax) {
					t.Errorf("Renew = %+v, %v; want ErrRenewBeyondMax", got, err)
				}
				return
			}
			if err != nil || got.ExpiresIn != tc.wantExpiresIn {
				t.Errorf("Renew = %+v, %v; want expiresIn %d", got, err, tc.wantExpiresIn)
			}
		})
	}
	t.Run("revoking the renewed token revokes the original", func(t *testing.T) {
		h := newHarness(t, LoginLimits{})
		old := h.mint(t, ciName).AccessToken
		h.clock.Advance(time.Minute)
		renewed, err := h.svc.Renew(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.svc.Revoke(ctx, renewed.AccessToken); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{"original": old, "renewed": renewed.AccessToken} {
			if _, err := h.svc.Authenticate(ctx, tok); tokenReason(err) != "revoked" {
				t.Errorf("%s token after revocation: %v, want revoked", name, err)
			}
			if _, err := h.svc.Renew(ctx, tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("renewing the %s token after revocation: %v, want ErrInvalidToken", name, err)
			}
		}
	})
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, LoginLimits{})
	tok := h.mint(t, ciName).AccessToken
	if err := h.svc.Revoke(ctx, tok); err != nil {
		t.Fatal(err)
	}
	jti := claimsOf(t, tok)["jti"].(string)
	if got, want := h.rev.revoked[jti], testEpoch.Add(30*time.Minute); !got.Equal(want) {
		t.Errorf("revocation kept until %v, want the max-TTL deadline %v", got, want)
	}
	if err := h.svc.Revoke(ctx, tok); err != nil {
		t.Errorf("revoking again = %v, want success", err)
	}
	tests := []struct {
		name, token string
	}{
		{"a static token", tfStatic},
		{"garbage", "x.y.z"},
		{"a forged token", craft(t, jwt.SigningMethodHS256, otherKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.svc.Revoke(ctx, tc.token); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Revoke = %v, want ErrInvalidToken", err)
			}
		})
	}
	t.Run("the store fails", func(t *testing.T) {
		other := h.mint(t, tfName).AccessToken
		storeDown := errors.New("disk full")
		h.rev.err = storeDown
		defer func() { h.rev.err = nil }()
		if err := h.svc.Revoke(ctx, other); !errors.Is(err, storeDown) {
			t.Errorf("Revoke = %v, want the store's error", err)
		}
	})
}
