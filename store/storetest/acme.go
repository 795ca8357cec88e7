package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
)

const acmeProfile = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"

func (f *fixture) eabKey(profile string) *record.ACMEEABKey {
	n := f.next()
	return &record.ACMEEABKey{KeyID: fmt.Sprintf("kid-%d", n), ProfileID: profile, KeyHash: hexHash(fmt.Sprintf("mac-%d", n)), CreatedAt: at(n)}
}

func (f *fixture) account(eab string) *record.ACMEAccount {
	n := f.next()
	return &record.ACMEAccount{ID: fmt.Sprintf("acct-%d", n), ProfileID: acmeProfile, KeyID: fmt.Sprintf("thumb-%d", n),
		Key: []byte(fmt.Sprintf(`{"kty":"EC","n":%d}`, n)), Contacts: []string{"mailto:ops@example.internal"},
		Status: record.ACMEValid, EABKeyID: eab, CreatedAt: at(n), UpdatedAt: at(n)}
}

func (f *fixture) createAccount(a *record.ACMEAccount) {
	f.t.Helper()
	if err := f.s().CreateACMEAccount(f.ctx, a); err != nil {
		f.t.Fatalf("CreateACMEAccount %s: %v", a.ID, err)
	}
}

// order builds an order of account with one authorization per name, each
// offering http-01 and dns-01.
func (f *fixture) order(account string, names ...string) (*record.ACMEOrder, []*record.ACMEAuthorization) {
	n := f.next()
	o := &record.ACMEOrder{ID: fmt.Sprintf("order-%d", n), AccountID: account, ProfileID: acmeProfile, Status: record.ACMEPending,
		NotAfter: at(n).Add(48 * time.Hour), Expires: at(n).Add(7 * 24 * time.Hour), CreatedAt: at(n), UpdatedAt: at(n)}
	var authzs []*record.ACMEAuthorization
	for k, name := range names {
		id := fmt.Sprintf("authz-%d-%d", n, k)
		o.Identifiers = append(o.Identifiers, record.ACMEIdentifier{Type: "dns", Value: name})
		o.AuthorizationIDs = append(o.AuthorizationIDs, id)
		authzs = append(authzs, &record.ACMEAuthorization{ID: id, OrderID: o.ID, AccountID: account, ProfileID: acmeProfile,
			Identifier: record.ACMEIdentifier{Type: "dns", Value: name}, Wildcard: k == 1, Status: record.ACMEPending,
			Expires: o.Expires, CreatedAt: o.CreatedAt, UpdatedAt: o.CreatedAt,
			Challenges: []record.ACMEChallenge{
				{Type: "http-01", Token: fmt.Sprintf("tok-%d-%d-h", n, k), Status: record.ACMEPending, UpdatedAt: o.CreatedAt},
				{Type: "dns-01", Token: fmt.Sprintf("tok-%d-%d-d", n, k), Status: record.ACMEPending, UpdatedAt: o.CreatedAt},
			}})
	}
	return o, authzs
}

func wantDeep(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// sameInstant compares times as instants (a store returns them in UTC).
func sameInstant(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// Accounts round-trip; one key is one account per profile; an EAB key
// binds one account, of its own profile, once; updates and key changes
// are conditional.
func testACMEAccounts(t *testing.T, f *fixture) {
	s := f.s()
	k := f.eabKey(acmeProfile)
	if err := s.AddACMEEABKey(f.ctx, k); err != nil {
		t.Fatalf("AddACMEEABKey: %v", err)
	}
	got, err := s.ACMEEABKey(f.ctx, k.KeyID)
	if err != nil {
		t.Fatalf("ACMEEABKey: %v", err)
	}
	wantDeep(t, "EAB key", [3]string{got.KeyID, got.ProfileID, got.KeyHash}, [3]string{k.KeyID, k.ProfileID, k.KeyHash})
	if got.AccountID != "" || !got.BoundAt.IsZero() {
		t.Errorf("a new EAB key is bound: %+v", got)
	}
	wantErr(t, "ACMEEABKey(unknown)", func() error { _, err := s.ACMEEABKey(f.ctx, "nope"); return err }(), record.ErrNotFound)

	a := f.account(k.KeyID)
	f.createAccount(a)
	back, err := s.ACMEAccount(f.ctx, a.ID)
	if err != nil {
		t.Fatalf("ACMEAccount: %v", err)
	}
	wantDeep(t, "account", [6]any{back.ID, back.ProfileID, back.KeyID, string(back.Key), back.Status, back.EABKeyID},
		[6]any{a.ID, a.ProfileID, a.KeyID, string(a.Key), a.Status, a.EABKeyID})
	wantDeep(t, "contacts", back.Contacts, a.Contacts)
	sameInstant(t, "CreatedAt", back.CreatedAt, a.CreatedAt)
	if byKey, err := s.ACMEAccountByKey(f.ctx, acmeProfile, a.KeyID); err != nil || byKey.ID != a.ID {
		t.Errorf("ACMEAccountByKey = %v, %v", byKey, err)
	}
	wantErr(t, "ACMEAccountByKey(other profile)", func() error { _, err := s.ACMEAccountByKey(f.ctx, "other", a.KeyID); return err }(), record.ErrNotFound)
	if bound, err := s.ACMEEABKey(f.ctx, k.KeyID); err != nil || bound.AccountID != a.ID || bound.BoundAt.IsZero() {
		t.Errorf("EAB key after binding = %+v, %v", bound, err)
	}

	// The key is used: a second account with it binds nothing.
	again := f.account(k.KeyID)
	wantErr(t, "CreateACMEAccount(used EAB key)", s.CreateACMEAccount(f.ctx, again), record.ErrEABKeyUsed)
	wantErr(t, "ACMEAccount(refused)", func() error { _, err := s.ACMEAccount(f.ctx, again.ID); return err }(), record.ErrNotFound)
	wantErr(t, "CreateACMEAccount(unknown EAB key)", s.CreateACMEAccount(f.ctx, f.account("missing")), record.ErrNotFound)
	other := f.eabKey("another-profile")
	if err := s.AddACMEEABKey(f.ctx, other); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CreateACMEAccount(EAB key of another profile)", s.CreateACMEAccount(f.ctx, f.account(other.KeyID)), record.ErrEABKeyUsed)
	if k, _ := s.ACMEEABKey(f.ctx, other.KeyID); k.AccountID != "" {
		t.Errorf("a refused account bound EAB key %s", other.KeyID)
	}
	sameKey := f.account("")
	sameKey.KeyID = a.KeyID
	wantErr(t, "CreateACMEAccount(same key)", s.CreateACMEAccount(f.ctx, sameKey), record.ErrACMEKeyInUse)

	// Key change: conditional on the old key, refused onto a key in use.
	b := f.account("")
	f.createAccount(b)
	wantErr(t, "ChangeACMEAccountKey(onto a key in use)", s.ChangeACMEAccountKey(f.ctx, b.ID, b.KeyID, a.KeyID, []byte(`{}`), f.now()), record.ErrACMEKeyInUse)
	wantErr(t, "ChangeACMEAccountKey(stale old key)", s.ChangeACMEAccountKey(f.ctx, b.ID, "stale", "fresh", []byte(`{}`), f.now()), record.ErrACMEStateChanged)
	if err := s.ChangeACMEAccountKey(f.ctx, b.ID, b.KeyID, "new-thumb", []byte(`{"new":1}`), f.now()); err != nil {
		t.Fatalf("ChangeACMEAccountKey: %v", err)
	}
	if got, err := s.ACMEAccountByKey(f.ctx, acmeProfile, "new-thumb"); err != nil || got.ID != b.ID || string(got.Key) != `{"new":1}` {
		t.Errorf("after the key change: %+v, %v", got, err)
	}
	wantErr(t, "ACMEAccountByKey(old key)", func() error { _, err := s.ACMEAccountByKey(f.ctx, acmeProfile, b.KeyID); return err }(), record.ErrNotFound)

	// Contacts and deactivation; a deactivated account changes no more.
	if err := s.UpdateACMEAccount(f.ctx, b.ID, nil, record.ACMEValid, f.now()); err != nil {
		t.Fatalf("UpdateACMEAccount: %v", err)
	}
	if got, _ := s.ACMEAccount(f.ctx, b.ID); len(got.Contacts) != 0 {
		t.Errorf("contacts after clearing = %v", got.Contacts)
	}
	if err := s.UpdateACMEAccount(f.ctx, b.ID, []string{"mailto:x@example.internal"}, record.ACMEDeactivated, f.now()); err != nil {
		t.Fatalf("deactivating: %v", err)
	}
	wantErr(t, "UpdateACMEAccount(deactivated)", s.UpdateACMEAccount(f.ctx, b.ID, nil, record.ACMEValid, f.now()), record.ErrACMEStateChanged)
	wantErr(t, "ChangeACMEAccountKey(deactivated)", s.ChangeACMEAccountKey(f.ctx, b.ID, "new-thumb", "newer", []byte(`{}`), f.now()), record.ErrACMEStateChanged)
	wantErr(t, "UpdateACMEAccount(unknown)", s.UpdateACMEAccount(f.ctx, "nope", nil, record.ACMEValid, f.now()), record.ErrNotFound)
}

// Orders, authorizations and challenges round-trip and move only from the
// state a caller expects; a challenge moves its authorization with it.
func testACMEOrders(t *testing.T, f *fixture) {
	s := f.s()
	a := f.account("")
	f.createAccount(a)
	o, authzs := f.order(a.ID, "a.example.internal", "b.example.internal")
	if err := s.CreateACMEOrder(f.ctx, o, authzs); err != nil {
		t.Fatalf("CreateACMEOrder: %v", err)
	}
	got, err := s.ACMEOrder(f.ctx, o.ID)
	if err != nil {
		t.Fatalf("ACMEOrder: %v", err)
	}
	wantDeep(t, "identifiers", got.Identifiers, o.Identifiers)
	wantDeep(t, "authorization ids", got.AuthorizationIDs, o.AuthorizationIDs)
	sameInstant(t, "NotAfter", got.NotAfter, o.NotAfter)
	sameInstant(t, "Expires", got.Expires, o.Expires)
	if !got.NotBefore.IsZero() || got.Status != record.ACMEPending || got.Problem != nil || got.CertificateID != "" {
		t.Errorf("new order = %+v", got)
	}
	az, err := s.ACMEAuthorization(f.ctx, authzs[1].ID)
	if err != nil {
		t.Fatalf("ACMEAuthorization: %v", err)
	}
	if az.Identifier != authzs[1].Identifier || !az.Wildcard || az.OrderID != o.ID || len(az.Challenges) != 2 ||
		az.Challenges[0].Type != "http-01" || az.Challenges[1].Token != authzs[1].Challenges[1].Token {
		t.Errorf("authorization = %+v", az)
	}
	wantErr(t, "ACMEOrder(unknown)", func() error { _, err := s.ACMEOrder(f.ctx, "nope"); return err }(), record.ErrNotFound)
	wantErr(t, "ACMEAuthorization(unknown)", func() error { _, err := s.ACMEAuthorization(f.ctx, "nope"); return err }(), record.ErrNotFound)
	dup, dupAuthz := f.order(a.ID, "c.example.internal")
	dupAuthz[0].ID, dup.AuthorizationIDs[0] = authzs[0].ID, authzs[0].ID
	if err := s.CreateACMEOrder(f.ctx, dup, dupAuthz); err == nil {
		t.Error("CreateACMEOrder reused an authorization id")
	}
	wantErr(t, "ACMEOrder(half-created)", func() error { _, err := s.ACMEOrder(f.ctx, dup.ID); return err }(), record.ErrNotFound)

	// pending → processing → valid, with the authorization.
	h := authzs[0].Challenges[0]
	h.Status, h.UpdatedAt = record.ACMEProcessing, f.now()
	if err := s.UpdateACMEChallenge(f.ctx, authzs[0].ID, "http-01", record.ACMEPending, h, ""); err != nil {
		t.Fatalf("challenge to processing: %v", err)
	}
	wantErr(t, "UpdateACMEChallenge(stale from)", s.UpdateACMEChallenge(f.ctx, authzs[0].ID, "http-01", record.ACMEPending, h, ""), record.ErrACMEStateChanged)
	wantErr(t, "UpdateACMEChallenge(unknown)", s.UpdateACMEChallenge(f.ctx, authzs[0].ID, "tls-alpn-01", record.ACMEPending, h, ""), record.ErrNotFound)
	h.Status, h.Validated, h.UpdatedAt = record.ACMEValid, f.now(), f.now()
	if err := s.UpdateACMEChallenge(f.ctx, authzs[0].ID, "http-01", record.ACMEProcessing, h, record.ACMEValid); err != nil {
		t.Fatalf("challenge to valid: %v", err)
	}
	az, _ = s.ACMEAuthorization(f.ctx, authzs[0].ID)
	if az.Status != record.ACMEValid || az.Challenges[0].Status != record.ACMEValid {
		t.Errorf("after validation: %+v", az)
	}
	sameInstant(t, "Validated", az.Challenges[0].Validated, h.Validated)
	// The authorization is no longer pending: its other challenge stays.
	d := authzs[0].Challenges[1]
	d.Status = record.ACMEProcessing
	wantErr(t, "UpdateACMEChallenge(authorization valid)", s.UpdateACMEChallenge(f.ctx, authzs[0].ID, "dns-01", record.ACMEPending, d, ""), record.ErrACMEStateChanged)

	// A failed challenge keeps its problem and fails the authorization.
	problem := []byte(`{"type":"urn:ietf:params:acme:error:incorrectResponse","detail":"no"}`)
	bad := authzs[1].Challenges[1]
	bad.Status, bad.Problem, bad.UpdatedAt = record.ACMEInvalid, problem, f.now()
	if err := s.UpdateACMEChallenge(f.ctx, authzs[1].ID, "dns-01", record.ACMEPending, bad, record.ACMEInvalid); err != nil {
		t.Fatalf("challenge to invalid: %v", err)
	}
	az, _ = s.ACMEAuthorization(f.ctx, authzs[1].ID)
	if az.Status != record.ACMEInvalid || string(az.Challenges[1].Problem) != string(problem) || az.Challenges[0].Problem != nil {
		t.Errorf("after a failed validation: %+v", az)
	}
	wantErr(t, "UpdateACMEAuthorization(stale)", s.UpdateACMEAuthorization(f.ctx, authzs[1].ID, record.ACMEPending, record.ACMEDeactivated, f.now()), record.ErrACMEStateChanged)
	if err := s.UpdateACMEAuthorization(f.ctx, authzs[1].ID, record.ACMEInvalid, record.ACMEDeactivated, f.now()); err != nil {
		t.Errorf("UpdateACMEAuthorization: %v", err)
	}

	// The order: processing, back to pending (a refused CSR), then valid.
	for _, step := range []struct{ from, to, cert string }{
		{record.ACMEPending, record.ACMEProcessing, ""},
		{record.ACMEProcessing, record.ACMEPending, ""},
		{record.ACMEPending, record.ACMEProcessing, ""},
		{record.ACMEProcessing, record.ACMEValid, "cert-1"},
	} {
		if err := s.UpdateACMEOrder(f.ctx, o.ID, step.from, step.to, step.cert, nil, f.now()); err != nil {
			t.Fatalf("order %s → %s: %v", step.from, step.to, err)
		}
	}
	wantErr(t, "UpdateACMEOrder(stale)", s.UpdateACMEOrder(f.ctx, o.ID, record.ACMEProcessing, record.ACMEInvalid, "", problem, f.now()), record.ErrACMEStateChanged)
	wantErr(t, "UpdateACMEOrder(unknown)", s.UpdateACMEOrder(f.ctx, "nope", record.ACMEPending, record.ACMEInvalid, "", nil, f.now()), record.ErrNotFound)
	if got, _ := s.ACMEOrder(f.ctx, o.ID); got.Status != record.ACMEValid || got.CertificateID != "cert-1" {
		t.Errorf("final order = %+v", got)
	}

	// Listing: newest first, bounded, this account's only.
	o2, az2 := f.order(a.ID, "d.example.internal")
	if err := s.CreateACMEOrder(f.ctx, o2, az2); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateACMEOrder(f.ctx, o2.ID, record.ACMEPending, record.ACMEInvalid, "", problem, f.now()); err != nil {
		t.Fatal(err)
	}
	b := f.account("")
	f.createAccount(b)
	o3, az3 := f.order(b.ID, "e.example.internal")
	if err := s.CreateACMEOrder(f.ctx, o3, az3); err != nil {
		t.Fatal(err)
	}
	var listed []string
	var problems []string
	collect := func(o *record.ACMEOrder) error {
		listed, problems = append(listed, o.ID), append(problems, string(o.Problem))
		return nil
	}
	if err := s.ACMEOrders(f.ctx, a.ID, 10, collect); err != nil {
		t.Fatal(err)
	}
	wantDeep(t, "orders of the account", listed, []string{o2.ID, o.ID})
	wantDeep(t, "their problems", problems, []string{string(problem), ""})
	listed = nil
	if err := s.ACMEOrders(f.ctx, a.ID, 1, collect); err != nil || len(listed) != 1 {
		t.Errorf("limit 1 listed %v, %v", listed, err)
	}
	stop := errors.New("stop")
	if err := s.ACMEOrders(f.ctx, a.ID, 10, func(*record.ACMEOrder) error { return stop }); err != stop {
		t.Errorf("ACMEOrders returned %v, want the callback's error", err)
	}
}

// A nonce is good once, until it expires; concurrent uses of one nonce
// let exactly one through.
func testACMENonces(t *testing.T, f *fixture) {
	s := f.s()
	now := f.now()
	use := func(consume, issue string, expires, at time.Time) bool {
		t.Helper()
		ok, err := s.UseACMENonce(f.ctx, consume, issue, expires, at)
		if err != nil {
			t.Fatalf("UseACMENonce(%q, %q): %v", consume, issue, err)
		}
		return ok
	}
	if !use("", "n1", now.Add(time.Hour), now) {
		t.Error("issuing without consuming is not ok")
	}
	if use("never-issued", "n2", now.Add(time.Hour), now) {
		t.Error("a nonce pkid never gave out was accepted")
	}
	if !use("n1", "n3", now.Add(time.Hour), now) {
		t.Error("a fresh nonce was refused")
	}
	if use("n1", "", time.Time{}, now) {
		t.Error("a nonce was accepted twice")
	}
	if !use("n2", "", time.Time{}, now) {
		t.Error("the nonce issued alongside a refusal was refused")
	}
	use("", "short", now.Add(time.Minute), now)
	if use("short", "", time.Time{}, now.Add(2*time.Minute)) {
		t.Error("an expired nonce was accepted")
	}
	if _, err := s.UseACMENonce(f.ctx, "", "stale", now, now); err == nil {
		t.Error("a nonce that expires at once was stored")
	}

	use("", "race", now.Add(time.Hour), now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseACMENonce(f.ctx, "race", "", time.Time{}, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("one nonce was accepted %d times by concurrent requests", accepted)
	}
}

// Concurrent moves of one challenge: exactly one wins, the others see
// ErrACMEStateChanged.
func testACMEConcurrentTransitions(t *testing.T, f *fixture) {
	s := f.s()
	a := f.account("")
	f.createAccount(a)
	o, authzs := f.order(a.ID, "a.example.internal")
	if err := s.CreateACMEOrder(f.ctx, o, authzs); err != nil {
		t.Fatal(err)
	}
	c := authzs[0].Challenges[0]
	c.Status, c.UpdatedAt = record.ACMEProcessing, f.now()
	var wg sync.WaitGroup
	results := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.UpdateACMEChallenge(f.ctx, authzs[0].ID, c.Type, record.ACMEPending, c, "")
		}()
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, record.ErrACMEStateChanged):
			t.Errorf("a losing move failed with %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent moves of one challenge succeeded, want 1", won)
	}
}
