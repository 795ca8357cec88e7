// Package hsm is pkid's PKCS#11 seam: it opens a token through crypto11
// with a bounded session pool, finds CA signing keys, checks that each key
// is held the way DESIGN.md §4 requires, and creates new CA keys inside the
// token. No private key material ever crosses this package's boundary: CA
// keys are only reachable as crypto.Signer.
package hsm

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Config selects a token and how to talk to it.
type Config struct {
	Module          string        // path of the PKCS#11 library
	TokenLabel      string        // token to use
	PIN             string        // user PIN; read from a file, env or credential by the caller
	MaxSessions     int           // session pool bound; 0 means 8
	PoolWaitTimeout time.Duration // how long a signer waits for a session; 0 means 5s
}

// Token is an open, logged-in PKCS#11 token.
type Token struct {
	ctx *crypto11.Context
}

// Open loads the module, finds the token and logs in.
func Open(cfg Config) (*Token, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" {
		return nil, errors.New("hsm: module and token label are required")
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 8
	}
	if cfg.PoolWaitTimeout == 0 {
		cfg.PoolWaitTimeout = 5 * time.Second
	}
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            cfg.Module,
		TokenLabel:      cfg.TokenLabel,
		Pin:             cfg.PIN,
		MaxSessions:     cfg.MaxSessions,
		PoolWaitTimeout: cfg.PoolWaitTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: opening token %q with %s: %w", cfg.TokenLabel, cfg.Module, err)
	}
	return &Token{ctx: ctx}, nil
}

// Close logs out and closes every session.
func (t *Token) Close() error {
	if err := t.ctx.Close(); err != nil {
		return fmt.Errorf("hsm: closing token: %w", err)
	}
	return nil
}

// ErrKeyNotFound is returned when no key pair carries the label.
var ErrKeyNotFound = errors.New("no key pair with that label in the token")

// Signer returns the CA key pair labelled label as a crypto.Signer.
func (t *Token) Signer(label string) (crypto.Signer, error) {
	s, err := t.find(label)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("hsm: key %q: %w", label, ErrKeyNotFound)
	}
	return s, nil
}

// find returns the one key pair labelled label, nil if there is none, and
// an error if the label is ambiguous: a CA key must be unmistakable.
func (t *Token) find(label string) (crypto.Signer, error) {
	pairs, err := t.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("hsm: finding key %q: %w", label, err)
	}
	switch len(pairs) {
	case 0:
		return nil, nil
	case 1:
		return pairs[0], nil
	}
	return nil, fmt.Errorf("hsm: %d key pairs are labelled %q; a CA key label must be unique", len(pairs), label)
}

// KeyType names the CA key types pkid creates.
type KeyType string

const (
	KeyECP256  KeyType = "ec-p256"
	KeyECP384  KeyType = "ec-p384"
	KeyECP521  KeyType = "ec-p521"
	KeyRSA2048 KeyType = "rsa-2048"
	KeyRSA3072 KeyType = "rsa-3072"
	KeyRSA4096 KeyType = "rsa-4096"
)

// KeyTypes lists the supported key types.
var KeyTypes = []KeyType{KeyECP256, KeyECP384, KeyECP521, KeyRSA2048, KeyRSA3072, KeyRSA4096}

// GenerateCAKey creates a key pair inside the token with an explicit
// template: token object, private, sensitive, never extractable, able to
// sign and to do nothing else (PKCS#11 v2.40 §4.9). It refuses to create a
// second key under an existing label.
func (t *Token) GenerateCAKey(label string, kt KeyType) (crypto.Signer, error) {
	if existing, err := t.find(label); err != nil {
		return nil, err
	} else if existing != nil {
		return nil, fmt.Errorf("hsm: a key labelled %q already exists in the token", label)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("hsm: key id: %w", err)
	}
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("hsm: public template: %w", err)
	}
	priv, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("hsm: private template: %w", err)
	}
	for typ, v := range map[uint]bool{
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_WRAP: false,
	} {
		pub[typ] = pkcs11.NewAttribute(typ, v)
	}
	for typ, v := range map[uint]bool{
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true,
		pkcs11.CKA_EXTRACTABLE: false, pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: false,
		pkcs11.CKA_UNWRAP: false, pkcs11.CKA_DERIVE: false,
	} {
		priv[typ] = pkcs11.NewAttribute(typ, v)
	}
	var s crypto.Signer
	switch kt {
	case KeyECP256:
		s, err = t.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	case KeyECP384:
		s, err = t.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
	case KeyECP521:
		s, err = t.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P521())
	case KeyRSA2048:
		s, err = t.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 2048)
	case KeyRSA3072:
		s, err = t.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 3072)
	case KeyRSA4096:
		s, err = t.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 4096)
	default:
		return nil, fmt.Errorf("hsm: unknown key type %q", kt)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: generating %s key %q: %w", kt, label, err)
	}
	return s, nil
}

// Probe proves the token answers: it reads an attribute of the key
// labelled label, which takes a session from the pool and a round trip.
func (t *Token) Probe(label string) error {
	s, err := t.Signer(label)
	if err != nil {
		return err
	}
	if _, err := t.ctx.GetAttribute(s, pkcs11.CKA_SIGN); err != nil {
		return fmt.Errorf("hsm: probing key %q: %w", label, err)
	}
	return nil
}
