package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
)

// Nonces (RFC 8555 §6.5) are random and kept in the store, not derived
// from a key: every node of a cluster accepts the ones any node gave out,
// each exactly once (the store deletes a nonce as it accepts it), until
// it expires (NonceLifetime).

// nonceBytes of randomness: 128 bits, base64url without padding.
const nonceBytes = 16

func newNonce() (string, error) {
	b := make([]byte, nonceBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// validNonce is the syntax check before the store is asked: pkid's
// nonces are 22 base64url characters.
func validNonce(n string) bool {
	if len(n) != 22 {
		return false
	}
	for _, c := range n {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// consumeNonce accepts nonce once and, in the same store write, stores
// the fresh nonce this exchange answers with.
func (x *exchange) consumeNonce(ctx context.Context, nonce string) *problem {
	now := x.s.now()
	ok, err := x.s.cfg.Store.UseACMENonce(ctx, nonce, x.nonce, now.Add(NonceLifetime), now)
	if err != nil {
		return storeProblem(err, "Nonce")
	}
	x.nonceStored = true
	if !ok {
		return newProblem(http.StatusBadRequest, probBadNonce, "The nonce was used already, has expired, or was never given out")
	}
	return nil
}

// storeFreshNonce stores the exchange's fresh nonce if consumeNonce did
// not; false when the store could not take it (the answer then carries
// none).
func (x *exchange) storeFreshNonce(ctx context.Context) bool {
	if x.nonceStored {
		return true
	}
	now := x.s.now()
	if _, err := x.s.cfg.Store.UseACMENonce(ctx, "", x.nonce, now.Add(NonceLifetime), now); err != nil {
		x.cause = err
		return false
	}
	x.nonceStored = true
	return true
}
