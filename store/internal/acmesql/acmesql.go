// Package acmesql is the ACME part of the store contract (store.ACME,
// DESIGN §17) written once, in the SQL that SQLite and PostgreSQL both
// speak. A backend hands it a way to run one durable write (a savepoint of
// its group commit) and a connection for reads; the tables are each
// backend's own migration (the same columns in both). Queries use "?"
// placeholders; the PostgreSQL adapter numbers them.
//
// Every state change is a conditional UPDATE (the expected status in its
// WHERE clause), so two requests — or two nodes — never both move one
// object: the one that loses gets record.ErrACMEStateChanged.
package acmesql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store/internal/contract"
)

// Tx runs statements: inside one write of a backend's writer, or on its
// pool for reads.
type Tx interface {
	// Exec runs a statement and returns the rows it changed. A unique
	// constraint violation is an error wrapping ErrUnique.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// QueryRow calls fn with the function that scans the query's first
	// row; no row is an error wrapping record.ErrNotFound.
	QueryRow(ctx context.Context, query string, args []any, fn func(scan func(dest ...any) error) error) error
	// Query calls each for every row, with the function that scans it.
	Query(ctx context.Context, query string, args []any, each func(scan func(dest ...any) error) error) error
}

// ErrUnique is what a Tx wraps a unique constraint violation in.
var ErrUnique = errors.New("unique constraint violated")

// Backend is what a store gives this package.
type Backend struct {
	// Write runs fn as one durable write: all of it or, if fn fails,
	// none of it.
	Write func(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// Read runs reads.
	Read Tx
}

// Store implements store.ACME over a Backend.
type Store struct{ b Backend }

// New returns the ACME store of a backend.
func New(b Backend) *Store { return &Store{b: b} }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Slices of strings and of identifier pairs: Marshal cannot fail.
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	return string(b)
}

// nullable stores an empty problem as NULL.
func nullable(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// times decodes pairs of (text, destination); "" is the zero time.
func times(pairs ...any) error {
	for k := 0; k+1 < len(pairs); k += 2 {
		text, dest := pairs[k].(string), pairs[k+1].(*time.Time)
		*dest = time.Time{}
		if text == "" {
			continue
		}
		var err error
		if *dest, err = time.Parse(time.RFC3339Nano, text); err != nil {
			return fmt.Errorf("decoding time %q: %w", text, err)
		}
	}
	return nil
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// AddACMEEABKey stores a new external account binding key.
func (s *Store) AddACMEEABKey(ctx context.Context, k *record.ACMEEABKey) error {
	if k.KeyID == "" || k.ProfileID == "" || len(k.KeyHash) != 64 || k.CreatedAt.IsZero() || k.AccountID != "" {
		return fmt.Errorf("adding EAB key %q: incomplete, or bound already", k.KeyID)
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO acme_eab_keys (kid, profile_id, key_hash, account_id, created_at, bound_at)
			VALUES (?, ?, ?, '', ?, '')`, k.KeyID, k.ProfileID, k.KeyHash, contract.OptionalTime(k.CreatedAt))
		if err != nil {
			return fmt.Errorf("adding EAB key %s: %w", k.KeyID, err)
		}
		return nil
	})
}

// ACMEEABKey returns the key with keyID.
func (s *Store) ACMEEABKey(ctx context.Context, keyID string) (*record.ACMEEABKey, error) {
	var k record.ACMEEABKey
	var created, bound string
	if err := s.b.Read.QueryRow(ctx, `SELECT kid, profile_id, key_hash, account_id, created_at, bound_at
		FROM acme_eab_keys WHERE kid = ?`, []any{keyID}, into(&k.KeyID, &k.ProfileID, &k.KeyHash, &k.AccountID, &created, &bound)); err != nil {
		return nil, fmt.Errorf("EAB key %s: %w", keyID, err)
	}
	if err := times(created, &k.CreatedAt, bound, &k.BoundAt); err != nil {
		return nil, fmt.Errorf("EAB key %s: %w", keyID, err)
	}
	return &k, nil
}

const accountColumns = `id, profile_id, key_id, jwk, contacts, status, eab_kid, created_at, updated_at`

// Table is one table of the ACME state as both backends lay it out, for
// a copy of a whole store (store/migrate).
type Table struct {
	Name    string
	Columns string // in the order of the copy
	OrderBy string
}

// ColumnNames are t's columns, one name each.
func (t Table) ColumnNames() []string {
	names := strings.Split(t.Columns, ",")
	for k, n := range names {
		names[k] = strings.TrimSpace(n)
	}
	return names
}

// Tables are the ACME tables a store copy carries, each after those it
// references. Nonces are not copied: they live minutes, and a client
// asks for a new one when refused.
var Tables = []Table{
	{"acme_eab_keys", "kid, profile_id, key_hash, account_id, created_at, bound_at", "kid"},
	{"acme_accounts", accountColumns, "id"},
	{"acme_orders", orderColumns, "id"},
	{"acme_authorizations", authzColumns, "id"},
	{"acme_challenges", "authz_id, position, type, token, status, validated_at, problem, updated_at", "authz_id, position"},
}

func scanAccount(scan func(dest ...any) error) (*record.ACMEAccount, error) {
	var a record.ACMEAccount
	var jwk, contacts, created, updated string
	if err := scan(&a.ID, &a.ProfileID, &a.KeyID, &jwk, &contacts, &a.Status, &a.EABKeyID, &created, &updated); err != nil {
		return nil, err
	}
	a.Key = []byte(jwk)
	if err := json.Unmarshal([]byte(contacts), &a.Contacts); err != nil {
		return nil, fmt.Errorf("account %s: decoding contacts: %w", a.ID, err)
	}
	if err := times(created, &a.CreatedAt, updated, &a.UpdatedAt); err != nil {
		return nil, fmt.Errorf("account %s: %w", a.ID, err)
	}
	return &a, nil
}

func (s *Store) accountWhere(ctx context.Context, what, where string, args ...any) (*record.ACMEAccount, error) {
	var a *record.ACMEAccount
	err := s.b.Read.QueryRow(ctx, `SELECT `+accountColumns+` FROM acme_accounts WHERE `+where, args, func(scan func(...any) error) error {
		var err error
		a, err = scanAccount(scan)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ACME account %s: %w", what, err)
	}
	return a, nil
}

// CreateACMEAccount stores a new account, binding its EAB key if it names
// one.
func (s *Store) CreateACMEAccount(ctx context.Context, a *record.ACMEAccount) error {
	if a.ID == "" || a.ProfileID == "" || a.KeyID == "" || len(a.Key) == 0 || a.Status != record.ACMEValid || a.CreatedAt.IsZero() {
		return fmt.Errorf("creating ACME account %q: incomplete", a.ID)
	}
	contacts := a.Contacts
	if contacts == nil {
		contacts = []string{}
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		if a.EABKeyID != "" {
			n, err := tx.Exec(ctx, `UPDATE acme_eab_keys SET account_id = ?, bound_at = ?
				WHERE kid = ? AND profile_id = ? AND account_id = ''`, a.ID, contract.OptionalTime(a.CreatedAt), a.EABKeyID, a.ProfileID)
			if err != nil {
				return fmt.Errorf("binding EAB key %s: %w", a.EABKeyID, err)
			}
			if n == 0 {
				var kid string
				err := tx.QueryRow(ctx, `SELECT kid FROM acme_eab_keys WHERE kid = ?`, []any{a.EABKeyID}, into(&kid))
				if errors.Is(err, record.ErrNotFound) {
					return fmt.Errorf("binding EAB key %s: %w", a.EABKeyID, record.ErrNotFound)
				}
				if err != nil {
					return fmt.Errorf("binding EAB key %s: %w", a.EABKeyID, err)
				}
				return fmt.Errorf("binding EAB key %s: %w", a.EABKeyID, record.ErrEABKeyUsed)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO acme_accounts (`+accountColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.ProfileID, a.KeyID, string(a.Key), jsonText(contacts), a.Status, a.EABKeyID,
			contract.OptionalTime(a.CreatedAt), contract.OptionalTime(a.CreatedAt))
		if errors.Is(err, ErrUnique) {
			return fmt.Errorf("creating ACME account %s: %w", a.ID, record.ErrACMEKeyInUse)
		}
		if err != nil {
			return fmt.Errorf("creating ACME account %s: %w", a.ID, err)
		}
		return nil
	})
}

// ACMEAccount returns the account with id.
func (s *Store) ACMEAccount(ctx context.Context, id string) (*record.ACMEAccount, error) {
	return s.accountWhere(ctx, id, `id = ?`, id)
}

// ACMEAccountByKey returns the profile's account with the key keyID.
func (s *Store) ACMEAccountByKey(ctx context.Context, profileID, keyID string) (*record.ACMEAccount, error) {
	return s.accountWhere(ctx, "with key "+keyID, `profile_id = ? AND key_id = ?`, profileID, keyID)
}

// changed tells a conditional update that changed nothing apart: the row
// is missing (record.ErrNotFound) or in another state.
func changed(ctx context.Context, tx Tx, what, table, id string) error {
	var got string
	if err := tx.QueryRow(ctx, `SELECT id FROM `+table+` WHERE id = ?`, []any{id}, into(&got)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, record.ErrACMEStateChanged)
}

// UpdateACMEAccount replaces a valid account's contacts and status.
func (s *Store) UpdateACMEAccount(ctx context.Context, id string, contacts []string, status string, at time.Time) error {
	if !oneOf(status, record.ACMEValid, record.ACMEDeactivated) {
		return fmt.Errorf("updating ACME account %s: status %q", id, status)
	}
	if contacts == nil {
		contacts = []string{}
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE acme_accounts SET contacts = ?, status = ?, updated_at = ? WHERE id = ? AND status = 'valid'`,
			jsonText(contacts), status, contract.OptionalTime(at), id)
		if err != nil {
			return fmt.Errorf("updating ACME account %s: %w", id, err)
		}
		if n == 0 {
			return changed(ctx, tx, "updating ACME account "+id, "acme_accounts", id)
		}
		return nil
	})
}

// ChangeACMEAccountKey replaces a valid account's key oldKeyID.
func (s *Store) ChangeACMEAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, key []byte, at time.Time) error {
	if newKeyID == "" || len(key) == 0 {
		return fmt.Errorf("changing the key of ACME account %s: no new key", id)
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE acme_accounts SET key_id = ?, jwk = ?, updated_at = ?
			WHERE id = ? AND key_id = ? AND status = 'valid'`, newKeyID, string(key), contract.OptionalTime(at), id, oldKeyID)
		if errors.Is(err, ErrUnique) {
			return fmt.Errorf("changing the key of ACME account %s: %w", id, record.ErrACMEKeyInUse)
		}
		if err != nil {
			return fmt.Errorf("changing the key of ACME account %s: %w", id, err)
		}
		if n == 0 {
			return changed(ctx, tx, "changing the key of ACME account "+id, "acme_accounts", id)
		}
		return nil
	})
}

var (
	orderStatuses     = []string{record.ACMEPending, record.ACMEProcessing, record.ACMEValid, record.ACMEInvalid}
	authzStatuses     = []string{record.ACMEPending, record.ACMEValid, record.ACMEInvalid, record.ACMEDeactivated}
	challengeStatuses = []string{record.ACMEPending, record.ACMEProcessing, record.ACMEValid, record.ACMEInvalid}
)

func validateOrder(o *record.ACMEOrder, authzs []*record.ACMEAuthorization) error {
	if o.ID == "" || o.AccountID == "" || o.ProfileID == "" || o.Status != record.ACMEPending || len(o.Identifiers) == 0 ||
		o.Expires.IsZero() || o.CreatedAt.IsZero() || len(authzs) != len(o.AuthorizationIDs) {
		return fmt.Errorf("creating ACME order %q: incomplete", o.ID)
	}
	for k, az := range authzs {
		if az.ID != o.AuthorizationIDs[k] || az.OrderID != o.ID || az.Status != record.ACMEPending || len(az.Challenges) == 0 || az.Expires.IsZero() {
			return fmt.Errorf("creating ACME order %s: authorization %d (%q) does not belong to it or is incomplete", o.ID, k, az.ID)
		}
		for _, c := range az.Challenges {
			if c.Type == "" || c.Token == "" || c.Status != record.ACMEPending {
				return fmt.Errorf("creating ACME order %s: authorization %s: incomplete challenge %q", o.ID, az.ID, c.Type)
			}
		}
	}
	return nil
}

// CreateACMEOrder stores an order and its authorizations and challenges.
func (s *Store) CreateACMEOrder(ctx context.Context, o *record.ACMEOrder, authzs []*record.ACMEAuthorization) error {
	if err := validateOrder(o, authzs); err != nil {
		return err
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO acme_orders (`+orderColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			o.ID, o.AccountID, o.ProfileID, o.Status, jsonText(o.Identifiers), jsonText(o.AuthorizationIDs),
			contract.OptionalTime(o.NotBefore), contract.OptionalTime(o.NotAfter), contract.OptionalTime(o.Expires), nullable(o.Problem), o.CertificateID,
			contract.OptionalTime(o.CreatedAt), contract.OptionalTime(o.CreatedAt)); err != nil {
			return fmt.Errorf("creating ACME order %s: %w", o.ID, err)
		}
		for _, az := range authzs {
			wildcard := 0
			if az.Wildcard {
				wildcard = 1
			}
			if _, err := tx.Exec(ctx, `INSERT INTO acme_authorizations (`+authzColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				az.ID, az.OrderID, az.AccountID, az.ProfileID, az.Identifier.Type, az.Identifier.Value, wildcard,
				az.Status, contract.OptionalTime(az.Expires), contract.OptionalTime(o.CreatedAt), contract.OptionalTime(o.CreatedAt)); err != nil {
				return fmt.Errorf("creating ACME authorization %s: %w", az.ID, err)
			}
			for k, c := range az.Challenges {
				if _, err := tx.Exec(ctx, `INSERT INTO acme_challenges (authz_id, position, type, token, status, validated_at, problem, updated_at)
					VALUES (?, ?, ?, ?, ?, '', NULL, ?)`, az.ID, k, c.Type, c.Token, c.Status, contract.OptionalTime(o.CreatedAt)); err != nil {
					return fmt.Errorf("creating ACME challenge %s of %s: %w", c.Type, az.ID, err)
				}
			}
		}
		return nil
	})
}

const orderColumns = `id, account_id, profile_id, status, identifiers, authorizations, not_before, not_after, expires_at,
	problem, certificate_id, created_at, updated_at`

func scanOrder(scan func(dest ...any) error) (*record.ACMEOrder, error) {
	var o record.ACMEOrder
	var ids, authzs, nb, na, exp, created, updated string
	if err := scan(&o.ID, &o.AccountID, &o.ProfileID, &o.Status, &ids, &authzs, &nb, &na, &exp, &o.Problem,
		&o.CertificateID, &created, &updated); err != nil {
		return nil, err
	}
	if err := errors.Join(json.Unmarshal([]byte(ids), &o.Identifiers), json.Unmarshal([]byte(authzs), &o.AuthorizationIDs)); err != nil {
		return nil, fmt.Errorf("order %s: %w", o.ID, err)
	}
	if err := times(nb, &o.NotBefore, na, &o.NotAfter, exp, &o.Expires, created, &o.CreatedAt, updated, &o.UpdatedAt); err != nil {
		return nil, fmt.Errorf("order %s: %w", o.ID, err)
	}
	return &o, nil
}

// into scans a row into dest.
func into(dest ...any) func(scan func(...any) error) error {
	return func(scan func(...any) error) error { return scan(dest...) }
}

// ACMEOrder returns the order with id.
func (s *Store) ACMEOrder(ctx context.Context, id string) (*record.ACMEOrder, error) {
	var o *record.ACMEOrder
	err := s.b.Read.QueryRow(ctx, `SELECT `+orderColumns+` FROM acme_orders WHERE id = ?`, []any{id}, func(scan func(...any) error) error {
		var err error
		o, err = scanOrder(scan)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ACME order %s: %w", id, err)
	}
	return o, nil
}

// ACMEOrders calls fn for the account's newest orders.
func (s *Store) ACMEOrders(ctx context.Context, accountID string, limit int, fn func(*record.ACMEOrder) error) error {
	var cbErr error
	err := s.b.Read.Query(ctx, `SELECT `+orderColumns+` FROM acme_orders WHERE account_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`,
		[]any{accountID, limit}, func(scan func(...any) error) error {
			o, err := scanOrder(scan)
			if err != nil {
				return err
			}
			if err := fn(o); err != nil {
				cbErr = err
				return err
			}
			return nil
		})
	if cbErr != nil {
		return cbErr
	}
	if err != nil {
		return fmt.Errorf("listing the orders of ACME account %s: %w", accountID, err)
	}
	return nil
}

// UpdateACMEOrder moves an order from from to to.
func (s *Store) UpdateACMEOrder(ctx context.Context, id, from, to, certificateID string, problem []byte, at time.Time) error {
	if !oneOf(from, orderStatuses...) || !oneOf(to, orderStatuses...) {
		return fmt.Errorf("updating ACME order %s: status %q to %q", id, from, to)
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE acme_orders SET status = ?, certificate_id = ?, problem = ?, updated_at = ? WHERE id = ? AND status = ?`,
			to, certificateID, nullable(problem), contract.OptionalTime(at), id, from)
		if err != nil {
			return fmt.Errorf("updating ACME order %s: %w", id, err)
		}
		if n == 0 {
			return changed(ctx, tx, "updating ACME order "+id, "acme_orders", id)
		}
		return nil
	})
}

const authzColumns = `id, order_id, account_id, profile_id, identifier_type, identifier_value, wildcard, status, expires_at,
	created_at, updated_at`

// ACMEAuthorization returns the authorization with id and its challenges.
func (s *Store) ACMEAuthorization(ctx context.Context, id string) (*record.ACMEAuthorization, error) {
	var az record.ACMEAuthorization
	var wildcard int
	var exp, created, updated string
	if err := s.b.Read.QueryRow(ctx, `SELECT `+authzColumns+` FROM acme_authorizations WHERE id = ?`, []any{id},
		into(&az.ID, &az.OrderID, &az.AccountID, &az.ProfileID, &az.Identifier.Type, &az.Identifier.Value, &wildcard,
			&az.Status, &exp, &created, &updated)); err != nil {
		return nil, fmt.Errorf("ACME authorization %s: %w", id, err)
	}
	az.Wildcard = wildcard != 0
	if err := times(exp, &az.Expires, created, &az.CreatedAt, updated, &az.UpdatedAt); err != nil {
		return nil, fmt.Errorf("ACME authorization %s: %w", id, err)
	}
	err := s.b.Read.Query(ctx, `SELECT type, token, status, validated_at, problem, updated_at FROM acme_challenges
		WHERE authz_id = ? ORDER BY position`, []any{id}, func(scan func(...any) error) error {
		var c record.ACMEChallenge
		var validated, updated string
		if err := scan(&c.Type, &c.Token, &c.Status, &validated, &c.Problem, &updated); err != nil {
			return err
		}
		if err := times(validated, &c.Validated, updated, &c.UpdatedAt); err != nil {
			return err
		}
		az.Challenges = append(az.Challenges, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("challenges of ACME authorization %s: %w", id, err)
	}
	return &az, nil
}

// UpdateACMEAuthorization moves an authorization from from to to.
func (s *Store) UpdateACMEAuthorization(ctx context.Context, id, from, to string, at time.Time) error {
	if !oneOf(from, authzStatuses...) || !oneOf(to, authzStatuses...) {
		return fmt.Errorf("updating ACME authorization %s: status %q to %q", id, from, to)
	}
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE acme_authorizations SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
			to, contract.OptionalTime(at), id, from)
		if err != nil {
			return fmt.Errorf("updating ACME authorization %s: %w", id, err)
		}
		if n == 0 {
			return changed(ctx, tx, "updating ACME authorization "+id, "acme_authorizations", id)
		}
		return nil
	})
}

// UpdateACMEChallenge moves a challenge of a pending authorization, and
// the authorization with it when authzStatus is set.
func (s *Store) UpdateACMEChallenge(ctx context.Context, authzID, typ, from string, c record.ACMEChallenge, authzStatus string) error {
	if !oneOf(from, challengeStatuses...) || !oneOf(c.Status, challengeStatuses...) || (authzStatus != "" && !oneOf(authzStatus, authzStatuses...)) {
		return fmt.Errorf("updating ACME challenge %s of %s: status %q to %q", typ, authzID, from, c.Status)
	}
	what := fmt.Sprintf("updating ACME challenge %s of %s", typ, authzID)
	return s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE acme_challenges SET status = ?, validated_at = ?, problem = ?, updated_at = ?
			WHERE authz_id = ? AND type = ? AND status = ?
			AND EXISTS (SELECT 1 FROM acme_authorizations WHERE id = ? AND status = 'pending')`,
			c.Status, contract.OptionalTime(c.Validated), nullable(c.Problem), contract.OptionalTime(c.UpdatedAt), authzID, typ, from, authzID)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if n == 0 {
			var got string
			if err := tx.QueryRow(ctx, `SELECT type FROM acme_challenges WHERE authz_id = ? AND type = ?`, []any{authzID, typ}, into(&got)); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return fmt.Errorf("%s: %w", what, record.ErrACMEStateChanged)
		}
		if authzStatus == "" {
			return nil
		}
		if n, err = tx.Exec(ctx, `UPDATE acme_authorizations SET status = ?, updated_at = ? WHERE id = ? AND status = 'pending'`,
			authzStatus, contract.OptionalTime(c.UpdatedAt), authzID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", what, record.ErrACMEStateChanged)
		}
		return nil
	})
}

// UseACMENonce consumes one nonce and stores another, in one write.
func (s *Store) UseACMENonce(ctx context.Context, consume, issue string, expires, now time.Time) (bool, error) {
	if issue != "" && !expires.After(now) {
		return false, fmt.Errorf("storing ACME nonce: it expires at %s, not after %s", expires, now)
	}
	ok := consume == ""
	err := s.b.Write(ctx, func(ctx context.Context, tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM acme_nonces WHERE expires_at < ?`, contract.OptionalTime(now)); err != nil {
			return fmt.Errorf("purging expired ACME nonces: %w", err)
		}
		if consume != "" {
			n, err := tx.Exec(ctx, `DELETE FROM acme_nonces WHERE nonce = ?`, consume)
			if err != nil {
				return fmt.Errorf("consuming an ACME nonce: %w", err)
			}
			ok = n == 1
		}
		if issue != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO acme_nonces (nonce, expires_at) VALUES (?, ?)`, issue, contract.OptionalTime(expires)); err != nil {
				return fmt.Errorf("storing an ACME nonce: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}
