package hsm

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/pkid/pkid/softhsm"
)

// faults is a fault-injecting PKCS#11 layer over the real SoftHSM2
// backend: each queue holds errors the next calls of that step return.
type faults struct {
	mu       sync.Mutex
	open     []error
	find     []error
	sign     []error
	gate     chan struct{} // when set, open waits for it
	opened   atomic.Int32
	reused   atomic.Int32 // calls that reached a backend after it was closed
	swapKeys string       // when set, every label finds this label's key instead
}

func (f *faults) pop(q *[]error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(*q) == 0 {
		return nil
	}
	err := (*q)[0]
	*q = (*q)[1:]
	return err
}

func (f *faults) inject(q *[]error, errs ...error) {
	f.mu.Lock()
	*q = append(*q, errs...)
	f.mu.Unlock()
}

type faultyBackend struct {
	backend
	f      *faults
	closed atomic.Bool
}

func (b *faultyBackend) use() {
	if b.closed.Load() {
		b.f.reused.Add(1)
	}
}

func (b *faultyBackend) FindKeyPairs(id, label []byte) ([]crypto11.Signer, error) {
	b.use()
	if err := b.f.pop(&b.f.find); err != nil {
		return nil, err
	}
	b.f.mu.Lock()
	if b.f.swapKeys != "" {
		label = []byte(b.f.swapKeys)
	}
	b.f.mu.Unlock()
	pairs, err := b.backend.FindKeyPairs(id, label)
	for k, p := range pairs {
		pairs[k] = &faultySigner{Signer: p, b: b}
	}
	return pairs, err
}

func (b *faultyBackend) Close() error {
	b.closed.Store(true)
	return b.backend.Close()
}

type faultySigner struct {
	crypto11.Signer
	b *faultyBackend
}

func (s *faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.b.use()
	if err := s.b.f.pop(&s.b.f.sign); err != nil {
		return nil, err
	}
	return s.Signer.Sign(r, digest, opts)
}

// GetAttributes must reach the real crypto11 key, not the wrapper.
func (b *faultyBackend) GetAttributes(key interface{}, attrs []crypto11.AttributeType) (crypto11.AttributeSet, error) {
	b.use()
	if s, ok := key.(*faultySigner); ok {
		key = s.Signer
	}
	return b.backend.GetAttributes(key, attrs)
}

func faultyToken(t *testing.T) (*Token, *faults, crypto.Signer) {
	t.Helper()
	tt := softhsm.NewTestToken(t)
	real := opener(Config{Module: tt.Module, TokenLabel: tt.Label, PIN: tt.PIN, MaxSessions: 4, PoolWaitTimeout: time.Second})
	f := &faults{}
	open := func() (backend, error) {
		f.mu.Lock()
		gate := f.gate
		f.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if err := f.pop(&f.open); err != nil {
			return nil, err
		}
		b, err := real()
		if err != nil {
			return nil, err
		}
		f.opened.Add(1)
		return &faultyBackend{backend: b, f: f}, nil
	}
	tok, err := newToken(open, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok.backoffMin, tok.backoffMax = 5*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { tok.Close() })
	if _, err := tok.GenerateCAKey("ca", KeyECP256); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateCAKey("other", KeyECP256); err != nil {
		t.Fatal(err)
	}
	signer, err := tok.CheckCustody("ca", selfSigned(t, tok, "ca").PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return tok, f, signer
}

func sign(s crypto.Signer) error {
	d := sha256.Sum256([]byte("tbs"))
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	return err
}

// eventually waits until the signer works again.
func eventually(t *testing.T, s crypto.Signer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := sign(s)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token did not recover: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Permanent is the classification the circuit breaker rests on: every
// code that means the sessions or the login are gone re-opens the token;
// any other keeps it.
func TestPermanentClassification(t *testing.T) {
	for code, want := range map[uint]bool{
		pkcs11.CKR_SESSION_HANDLE_INVALID: true, pkcs11.CKR_SESSION_CLOSED: true, pkcs11.CKR_DEVICE_ERROR: true,
		pkcs11.CKR_DEVICE_REMOVED: true, pkcs11.CKR_TOKEN_NOT_PRESENT: true, pkcs11.CKR_USER_NOT_LOGGED_IN: true,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true, pkcs11.CKR_TOKEN_NOT_RECOGNIZED: true, pkcs11.CKR_SLOT_ID_INVALID: true,
		pkcs11.CKR_GENERAL_ERROR: true, pkcs11.CKR_KEY_HANDLE_INVALID: true, pkcs11.CKR_OBJECT_HANDLE_INVALID: true,
		pkcs11.CKR_FUNCTION_FAILED: false, pkcs11.CKR_DEVICE_MEMORY: false, pkcs11.CKR_HOST_MEMORY: false,
		pkcs11.CKR_PIN_INCORRECT: false, pkcs11.CKR_MECHANISM_INVALID: false,
	} {
		if got := Permanent(fmt.Errorf("wrapped: %w", pkcs11.Error(code))); got != want {
			t.Errorf("Permanent(0x%x) = %t, want %t", code, got, want)
		}
	}
	if Permanent(errors.New("not a PKCS#11 error")) {
		t.Error("a non-PKCS#11 error was classified permanent")
	}
}

// faultCase is one way the token can fail: the code a signature fails
// with, and optionally a step of the re-open that fails once more.
type faultCase struct {
	name    string
	code    uint   // the permanent error the signature returns
	reopen  string // "", "open" or "find": a re-open step that fails once
	reopens int32  // backends opened in all, the first included
}

// A permanent error takes the failed context out of service (never used
// again), makes every call fail fast while the token is down, and the token
// recovers by itself — also when the first re-open fails at opening or
// logging in (the opener's error) or at finding the CA key again. Each
// case tests something the others do not: every session-killing code the
// token returns for a signature, and each re-open step that can fail.
func TestPermanentFaultsRecover(t *testing.T) {
	cases := []faultCase{
		{"sign: CKR_SESSION_HANDLE_INVALID", pkcs11.CKR_SESSION_HANDLE_INVALID, "", 2},
		{"sign: CKR_SESSION_CLOSED", pkcs11.CKR_SESSION_CLOSED, "", 2},
		{"sign: CKR_DEVICE_ERROR", pkcs11.CKR_DEVICE_ERROR, "", 2},
		{"sign: CKR_DEVICE_REMOVED", pkcs11.CKR_DEVICE_REMOVED, "", 2},
		{"sign: CKR_TOKEN_NOT_PRESENT", pkcs11.CKR_TOKEN_NOT_PRESENT, "", 2},
		{"sign: CKR_USER_NOT_LOGGED_IN", pkcs11.CKR_USER_NOT_LOGGED_IN, "", 2},
		{"re-open fails opening or logging in", pkcs11.CKR_DEVICE_REMOVED, "open", 2},
		{"re-open fails finding the key", pkcs11.CKR_DEVICE_REMOVED, "find", 3}, // the re-open whose find failed was closed too
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, f, signer := faultyToken(t)
			if err := sign(signer); err != nil {
				t.Fatal(err)
			}
			switch c.reopen {
			case "open":
				f.inject(&f.open, fmt.Errorf("logging in: %w", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)))
			case "find":
				f.inject(&f.find, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT))
			}
			gate := make(chan struct{})
			f.mu.Lock()
			f.gate = gate
			f.mu.Unlock()
			trigger := pkcs11.Error(c.code)
			f.inject(&f.sign, trigger)

			if err := sign(signer); !errors.Is(err, trigger) {
				t.Fatalf("faulted Sign = %v, want %v", err, trigger)
			}
			// The circuit is open: no PKCS#11 call, an immediate ErrUnavailable.
			if err := sign(signer); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Sign while down = %v, want ErrUnavailable", err)
			}
			if err := tok.Probe("ca"); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Probe while down = %v", err)
			}
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(gate)
			eventually(t, signer)
			if err := tok.Probe("ca"); err != nil {
				t.Fatalf("Probe after recovery: %v", err)
			}
			if got := f.opened.Load(); got != c.reopens {
				t.Errorf("backends opened = %d, want %d", got, c.reopens)
			}
			if got := f.reused.Load(); got != 0 {
				t.Errorf("%d calls reached a closed context: a dead session was reused", got)
			}
		})
	}
}

// A transient error is returned but keeps the sessions in service.
func TestTransientFaultKeepsTheContext(t *testing.T) {
	_, f, signer := faultyToken(t)
	for _, code := range []uint{pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY} {
		f.inject(&f.sign, pkcs11.Error(code))
		if err := sign(signer); err == nil {
			t.Fatal("injected fault not returned")
		}
		if err := sign(signer); err != nil {
			t.Fatalf("after a transient 0x%x: %v", code, err)
		}
	}
	if got := f.opened.Load(); got != 1 {
		t.Errorf("a transient error re-opened the token (%d opens)", got)
	}
}

// After a re-open the CA key must be the same key; a token that now holds
// another key under the label stays out of service.
func TestReopenRefusesASwappedKey(t *testing.T) {
	_, f, signer := faultyToken(t)
	f.mu.Lock()
	f.swapKeys = "other"
	f.mu.Unlock()
	f.inject(&f.sign, pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED))
	sign(signer)
	// Wait for a re-open to have found the swapped key and refused it.
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err = sign(signer); !strings.Contains(fmt.Sprint(err), "no longer the key"); err = sign(signer) {
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Sign with a swapped key = %v, want ErrUnavailable naming the swapped key", err)
		}
		runtime.Gosched()
	}
	f.mu.Lock()
	f.swapKeys = ""
	f.mu.Unlock()
	eventually(t, signer)
}

// Real SoftHSM2 faults, produced through a second PKCS#11 handle in the
// same process (login state and sessions belong to the process).
func TestRealSoftHSMFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault func(p *pkcs11.Ctx, slot uint, pin string) error
	}{
		{"all sessions closed under the pool (crypto11 #142)", func(p *pkcs11.Ctx, slot uint, _ string) error {
			return p.CloseAllSessions(slot)
		}},
		{"logged out", func(p *pkcs11.Ctx, slot uint, _ string) error {
			s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				return err
			}
			return p.Logout(s)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tt := softhsm.NewTestToken(t)
			tok, err := Open(Config{Module: tt.Module, TokenLabel: tt.Label, PIN: tt.PIN, MaxSessions: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer tok.Close()
			tok.backoffMin = 5 * time.Millisecond
			if _, err := tok.GenerateCAKey("ca", KeyECP256); err != nil {
				t.Fatal(err)
			}
			signer, err := tok.CheckCustody("ca", selfSigned(t, tok, "ca").PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			for k := 0; k < 4; k++ { // fill the pool with sessions
				if err := sign(signer); err != nil {
					t.Fatal(err)
				}
			}
			p := pkcs11.New(tt.Module)
			if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
				t.Fatal(err)
			}
			slots, err := p.GetSlotList(true)
			if err != nil || len(slots) == 0 {
				t.Fatalf("slots: %v %v", slots, err)
			}
			var slot uint
			for _, sl := range slots {
				if ti, err := p.GetTokenInfo(sl); err == nil && strings.TrimSpace(ti.Label) == tt.Label {
					slot = sl
				}
			}
			if err := c.fault(p, slot, tt.PIN); err != nil {
				t.Fatalf("producing the fault: %v", err)
			}
			err = sign(signer)
			if err == nil || !Permanent(err) {
				t.Fatalf("Sign after the fault = %v, want a permanent PKCS#11 error", err)
			}
			t.Logf("fault seen: %v", err)
			eventually(t, signer)
		})
	}
}
