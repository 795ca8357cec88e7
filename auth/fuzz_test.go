package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthenticate: no bearer string panics Authenticate, and none is
// accepted but the tokens this service issued and the configured static
// token — in particular no re-spelling of an issued token (padding, unused
// base64 bits, reordered or re-encoded parts). Every refusal is
// ErrInvalidToken with its message alone.
func FuzzAuthenticate(f *testing.F) {
	h := newHarness(f, LoginLimits{})
	// The fuzzing engine runs this setup in every worker process, and
	// passes inputs between them: the issued tokens must be the same in
	// each, so their jti is fixed rather than random.
	ci, tf := fixedToken(f, h, ciName, "fuzz-ci-agent-lineage"), fixedToken(f, h, tfName, "fuzz-terraform-lineage")
	h.clock.Advance(time.Minute)
	issued := map[string]string{ci: ciName, tf: tfName, tfStatic: tfName}

	parts := strings.Split(ci, ".")
	seeds := []string{
		ci, tf, tfStatic, unlistedStatic, "", ".", "..", "...", "a.b.c", "Bearer " + ci,
		ci + "=", parts[0] + "." + parts[1] + ".", parts[0] + ".." + parts[2],
		parts[1] + "." + parts[0] + "." + parts[2],
		"eyJhbGciOiJub25lIn0.e30.",
		craft(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims()),
		craft(f, jwt.SigningMethodHS256, otherKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims()),
		craft(f, jwt.SigningMethodHS512, testKey, map[string]any{"kid": h.signer.KeyID()}, h.goodClaims()),
		strings.ToUpper(ci), tfStatic + " ", strings.Repeat("A", maxTokenBytes+1),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bearer string) {
		machine, err := h.svc.Authenticate(context.Background(), bearer)
		if err == nil {
			want, ok := issued[bearer]
			if !ok {
				t.Fatalf("accepted a bearer that was never issued, as %q: %q", machine, bearer)
			}
			if machine != want {
				t.Fatalf("issued to %q, authenticated as %q", want, machine)
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) || err.Error() != ErrInvalidToken.Error() {
			t.Fatalf("Authenticate = %v, want ErrInvalidToken and its message alone", err)
		}
		if _, ok := issued[bearer]; ok {
			t.Fatalf("refused an issued bearer: %v (%s)", err, tokenReason(err))
		}
		if len(bearer) >= 16 && strings.Contains(tokenReason(err), bearer) {
			t.Fatalf("the reason repeats the bearer")
		}
	})
}

// fixedToken is what issue would sign for name at the harness's time, with
// a given jti.
func fixedToken(t testing.TB, h *harness, name, jti string) string {
	t.Helper()
	m := h.svc.machines.byName[name]
	now := h.clock.Now()
	tok, err := h.signer.sign(accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: m.name, ID: jti,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(m.ttl)),
		},
		AuthTime: jwt.NewNumericDate(now), MaxExp: jwt.NewNumericDate(now.Add(m.maxTTL)), Credential: m.credential,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
