package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pkid/pkid/record"
)

// External account binding (RFC 8555 §7.3.4). An EAB key is a key id and
// a MAC key that an operator hands to one client (`pkid acme eab add`).
// The store keeps only the SHA-256 of the MAC key: the MAC key itself is
// derived from the daemon's EAB secret (acme.eabKeyFile, or the systemd
// credential acme-eab-key, the same on every node) and the key's profile
// and id, so a copy of the database cannot bind accounts, and a key made
// for one profile is no key for another.

// MinEABSecretBytes is the least EAB secret pkid accepts.
const MinEABSecretBytes = 32

// eabLabel separates this derivation from any other use of the secret.
const eabLabel = "pkid acme eab v1"

// macKey derives the MAC key of EAB key kid of profile.
func macKey(secret []byte, profileID, kid string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(eabLabel + "\x00" + profileID + "\x00" + kid))
	return m.Sum(nil)
}

func keyHash(mac []byte) string {
	sum := sha256.Sum256(mac)
	return hex.EncodeToString(sum[:])
}

// EABKey is a new external account binding key: the record to store and
// the MAC key to hand out once (base64url, as certbot's --eab-hmac-key and
// lego's --eab.hmac take it).
type EABKey struct {
	Record *record.ACMEEABKey
	MACKey string
}

// NewEABKey makes an EAB key for profileID from secret.
func NewEABKey(secret []byte, profileID string, now time.Time) (*EABKey, error) {
	if len(secret) < MinEABSecretBytes {
		return nil, fmt.Errorf("the EAB secret has %d bytes; at least %d are needed", len(secret), MinEABSecretBytes)
	}
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("making an EAB key id: %w", err)
		}
		kid := base64.RawURLEncoding.EncodeToString(b)
		mac := macKey(secret, profileID, kid)
		key := &EABKey{
			Record: &record.ACMEEABKey{KeyID: kid, ProfileID: profileID, KeyHash: keyHash(mac), CreatedAt: now.UTC()},
			MACKey: base64.RawURLEncoding.EncodeToString(mac),
		}
		// Both are pasted after a client's option (certbot's --eab-kid
		// and --eab-hmac-key): one beginning with "-", as base64url does
		// one time in 64, would be taken for an option. Drawing again
		// costs the id less than a tenth of a bit.
		if !strings.HasPrefix(key.Record.KeyID, "-") && !strings.HasPrefix(key.MACKey, "-") {
			return key, nil
		}
	}
}

// verifyEAB checks a new-account's externalAccountBinding: an HMAC JWS
// over the account's JWK, with the key id of an unbound EAB key of this
// profile, whose MAC key the secret derives. It returns that key id.
func (x *exchange) verifyEAB(ctx context.Context, raw json.RawMessage, account *jose.JSONWebKey) (string, *problem) {
	jws, h, p := verifyInner(raw, macAlgorithms, x.url)
	if p != nil {
		return "", p
	}
	refused := unauthorized("The external account binding is not valid for this directory, or was used already")
	if h.KeyID == "" || h.JSONWebKey != nil {
		return "", malformed("The external account binding must name its key by kid")
	}
	if x.s.cfg.EABSecret == nil {
		return "", refused
	}
	k, err := x.s.cfg.Store.ACMEEABKey(ctx, h.KeyID)
	switch {
	case errors.Is(err, record.ErrNotFound):
		return "", refused
	case err != nil:
		return "", storeProblem(err, "EAB key")
	case k.ProfileID != x.profile.ID || k.AccountID != "":
		return "", refused
	}
	mac := macKey(x.s.cfg.EABSecret, k.ProfileID, k.KeyID)
	if subtle.ConstantTimeCompare([]byte(keyHash(mac)), []byte(k.KeyHash)) != 1 {
		return "", refused // made with another secret
	}
	payload, err := jws.Verify(mac)
	if err != nil {
		return "", refused
	}
	var bound jose.JSONWebKey
	if err := bound.UnmarshalJSON(payload); err != nil {
		return "", malformed("The external account binding's payload is not a JWK")
	}
	want, err1 := thumbprint(account)
	got, err2 := thumbprint(&bound)
	if err1 != nil || err2 != nil || got != want {
		return "", newProblem(http.StatusBadRequest, probMalformed, "The external account binding binds another key than the account's")
	}
	return k.KeyID, nil
}
