// Package hsm is pkid's PKCS#11 seam: it opens a token through crypto11
// with a bounded session pool, finds CA signing keys, checks that each key
// is held the way DESIGN.md §4 requires, and creates new CA keys inside the
// token. No private key material ever crosses this package's boundary: CA
// keys are only reachable as crypto.Signer.
//
// A Token heals itself. An error that means the sessions or the login are
// gone (Permanent) closes the whole crypto11 context — so no dead session
// is ever handed out again, whatever crypto11's pool would do (its issue
// #142) — and a background loop re-opens the token, logs in, re-finds every
// CA key and checks it is still the same key, backing off exponentially.
// Meanwhile every operation fails at once with ErrUnavailable: the circuit
// is open, callers answer 503, and nothing waits on a dead token.
package hsm

import (
	"crypto"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
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
	Logger          *slog.Logger  // recoveries are logged here; nil discards
}

// backend is the part of crypto11 pkid uses. It is the seam where tests
// inject PKCS#11 faults.
type backend interface {
	FindKeyPairs(id, label []byte) ([]crypto11.Signer, error)
	GetAttributes(key interface{}, attributes []crypto11.AttributeType) (crypto11.AttributeSet, error)
	GenerateECDSAKeyPairWithAttributes(public, private crypto11.AttributeSet, curve elliptic.Curve) (crypto11.Signer, error)
	GenerateRSAKeyPairWithAttributes(public, private crypto11.AttributeSet, bits int) (crypto11.SignerDecrypter, error)
	Close() error
}

// Back-off between attempts to re-open a failed token.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
)

// ErrUnavailable is returned while the token is failed and being re-opened.
var ErrUnavailable = errors.New("hsm: token unavailable")

// Token is an open, logged-in PKCS#11 token that re-opens itself after
// permanent errors.
type Token struct {
	open       func() (backend, error)
	log        *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration

	mu     sync.RWMutex
	b      backend                     // nil while failed
	cause  error                       // why it is failed
	keys   map[string]crypto11.Signer  // found on b
	want   map[string]crypto.PublicKey // CA keys to find again after a re-open
	closed bool
	stop   chan struct{}
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
	return newToken(opener(cfg), cfg.Logger)
}

// opener opens and logs in to the configured token with crypto11.
func opener(cfg Config) func() (backend, error) {
	return func() (backend, error) {
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
		return ctx, nil
	}
}

func newToken(open func() (backend, error), log *slog.Logger) (*Token, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := open()
	if err != nil {
		return nil, err
	}
	return &Token{open: open, log: log, backoffMin: backoffMin, backoffMax: backoffMax, b: b,
		keys: map[string]crypto11.Signer{}, want: map[string]crypto.PublicKey{}, stop: make(chan struct{})}, nil
}

// Close logs out and closes every session; a re-open in progress stops.
func (t *Token) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.stop)
	b := t.b
	t.b = nil
	t.mu.Unlock()
	if b != nil {
		if err := b.Close(); err != nil {
			return fmt.Errorf("hsm: closing token: %w", err)
		}
	}
	return nil
}

// Permanent reports whether err means the token's sessions or login are
// gone (PKCS#11 v2.40 §5.1), so the context must be re-opened rather than
// the operation retried on the same sessions.
func Permanent(err error) bool {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch uint(rv) {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// current returns the backend in use, or ErrUnavailable.
func (t *Token) current() (backend, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.b == nil {
		if t.closed {
			return nil, fmt.Errorf("%w: closed", ErrUnavailable)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, t.cause)
	}
	return t.b, nil
}

// failed reports err from an operation on b; a permanent error takes b out
// of service and starts the re-open loop (once per backend).
func (t *Token) failed(b backend, err error) {
	if !Permanent(err) {
		return
	}
	t.mu.Lock()
	if t.b != b || t.closed {
		t.mu.Unlock()
		return
	}
	t.b, t.keys, t.cause = nil, nil, err
	t.mu.Unlock()
	t.log.Error("token failed; closing every session and re-opening it", "error", err)
	go t.reopen(b)
}

// reopen closes the failed backend and opens a new one, with back-off,
// until it has found every CA key again or the token is closed.
func (t *Token) reopen(old backend) {
	if err := old.Close(); err != nil {
		t.log.Warn("closing the failed token context", "error", err)
	}
	delay := t.backoffMin
	for attempt := 1; ; attempt++ {
		b, err := t.open()
		var keys map[string]crypto11.Signer
		if err == nil {
			if keys, err = t.refind(b); err != nil {
				b.Close()
			}
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			if err == nil {
				b.Close()
			}
			return
		}
		if err == nil {
			t.b, t.keys, t.cause = b, keys, nil
			t.mu.Unlock()
			t.log.Info("token re-opened", "attempts", attempt)
			return
		}
		t.cause = err
		t.mu.Unlock()
		t.log.Warn("re-opening the token failed", "error", err, "attempt", attempt, "retryIn", delay.String())
		select {
		case <-time.After(delay):
		case <-t.stop:
			return
		}
		delay = min(2*delay, t.backoffMax)
	}
}

// refind finds every registered CA key on b and checks it is the same key.
func (t *Token) refind(b backend) (map[string]crypto11.Signer, error) {
	t.mu.RLock()
	want := make(map[string]crypto.PublicKey, len(t.want))
	for l, p := range t.want {
		want[l] = p
	}
	t.mu.RUnlock()
	keys := map[string]crypto11.Signer{}
	for label, pub := range want {
		s, err := findOne(b, label)
		if err != nil {
			return nil, err
		}
		if s == nil {
			return nil, fmt.Errorf("hsm: key %q: %w", label, ErrKeyNotFound)
		}
		if !samePublicKey(s.Public(), pub) {
			return nil, fmt.Errorf("hsm: key %q is no longer the key pkid started with", label)
		}
		keys[label] = s
	}
	return keys, nil
}

// ErrKeyNotFound is returned when no key pair carries the label.
var ErrKeyNotFound = errors.New("no key pair with that label in the token")

// findOne returns the one key pair labelled label, nil if there is none, and
// an error if the label is ambiguous: a CA key must be unmistakable.
func findOne(b backend, label string) (crypto11.Signer, error) {
	pairs, err := b.FindKeyPairs(nil, []byte(label))
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

// key returns the token's key labelled label on the current backend.
func (t *Token) key(label string) (crypto11.Signer, backend, error) {
	b, err := t.current()
	if err != nil {
		return nil, nil, err
	}
	t.mu.RLock()
	s := t.keys[label]
	t.mu.RUnlock()
	if s != nil {
		return s, b, nil
	}
	s, err = findOne(b, label)
	if err != nil {
		t.failed(b, err)
		return nil, nil, err
	}
	if s == nil {
		return nil, nil, fmt.Errorf("hsm: key %q: %w", label, ErrKeyNotFound)
	}
	t.mu.Lock()
	if t.b == b {
		t.keys[label] = s
	}
	t.mu.Unlock()
	return s, b, nil
}

// Signer returns the key pair labelled label as a crypto.Signer that keeps
// working across re-opens of the token.
func (t *Token) Signer(label string) (crypto.Signer, error) {
	s, _, err := t.key(label)
	if err != nil {
		return nil, err
	}
	return &tokenKey{t: t, label: label, pub: s.Public()}, nil
}

// tokenKey is a CA key by label: each signature uses the token's current
// sessions, and a permanent error takes the token out of service.
type tokenKey struct {
	t     *Token
	label string
	pub   crypto.PublicKey
}

func (k *tokenKey) Public() crypto.PublicKey { return k.pub }

func (k *tokenKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s, b, err := k.t.key(k.label)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(r, digest, opts)
	if err != nil {
		k.t.failed(b, err)
		return nil, fmt.Errorf("hsm: signing with %q: %w", k.label, err)
	}
	return sig, nil
}

// Probe proves the token answers: it reads an attribute of the key
// labelled label, which takes a session from the pool and a round trip.
func (t *Token) Probe(label string) error {
	s, b, err := t.key(label)
	if err != nil {
		return err
	}
	if _, err := b.GetAttributes(s, []crypto11.AttributeType{pkcs11.CKA_SIGN}); err != nil {
		t.failed(b, err)
		return fmt.Errorf("hsm: probing key %q: %w", label, err)
	}
	return nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
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

// GenerateCAKey creates a key pair inside the token with an explicit
// template: token object, private, sensitive, never extractable, able to
// sign and to do nothing else (PKCS#11 v2.40 §4.9). It refuses to create a
// second key under an existing label. The key serves the daemon: a CA,
// the audit key or an OCSP responder.
func (t *Token) GenerateCAKey(label string, kt KeyType) (crypto.Signer, error) {
	return t.generate(label, kt, RoleDaemon)
}

// GenerateMTLSCAKey creates, with the same template, the key of the CA
// that certifies only the API listener and its clients (mTLS material).
// Its CKA_ID carries the mTLS marker, so that the ceremony's issue-tls
// signs with no other key and the daemon refuses it as a CA key.
func (t *Token) GenerateMTLSCAKey(label string, kt KeyType) (crypto.Signer, error) {
	return t.generate(label, kt, RoleMTLSCA)
}

func (t *Token) generate(label string, kt KeyType, role KeyRole) (crypto.Signer, error) {
	b, err := t.current()
	if err != nil {
		return nil, err
	}
	if existing, err := findOne(b, label); err != nil {
		return nil, err
	} else if existing != nil {
		return nil, fmt.Errorf("hsm: a key labelled %q already exists in the token", label)
	}
	id, err := newKeyID(role)
	if err != nil {
		return nil, err
	}
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("hsm: public template: %w", err)
	}
	priv, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("hsm: private template: %w", err)
	}
	// CKA_MODIFIABLE false: no one with the PIN can later change the
	// attributes — among them the CKA_ID that carries the key's role.
	for typ, v := range map[uint]bool{
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_WRAP: false,
		pkcs11.CKA_MODIFIABLE: false,
	} {
		pub[typ] = pkcs11.NewAttribute(typ, v)
	}
	for typ, v := range map[uint]bool{
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true,
		pkcs11.CKA_EXTRACTABLE: false, pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: false,
		pkcs11.CKA_UNWRAP: false, pkcs11.CKA_DERIVE: false, pkcs11.CKA_MODIFIABLE: false,
	} {
		priv[typ] = pkcs11.NewAttribute(typ, v)
	}
	switch kt {
	case KeyECP256:
		_, err = b.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	case KeyECP384:
		_, err = b.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
	case KeyECP521:
		_, err = b.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P521())
	case KeyRSA2048:
		_, err = b.GenerateRSAKeyPairWithAttributes(pub, priv, 2048)
	case KeyRSA3072:
		_, err = b.GenerateRSAKeyPairWithAttributes(pub, priv, 3072)
	case KeyRSA4096:
		_, err = b.GenerateRSAKeyPairWithAttributes(pub, priv, 4096)
	default:
		return nil, fmt.Errorf("hsm: unknown key type %q", kt)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: generating %s key %q: %w", kt, label, err)
	}
	return t.Signer(label)
}
