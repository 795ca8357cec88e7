package store

import (
	"context"
	"time"

	"github.com/pkid/pkid/record"
)

// ACME is the part of the contract that holds the ACME server's state
// (DESIGN §17): accounts, external account binding keys, orders,
// authorizations with their challenges, and nonces. Every write is durable
// before it returns, like the rest of the store, and state changes are
// conditional (compare-and-set), so that nodes sharing a database never
// both move one object.
type ACME interface {
	// AddACMEEABKey stores a new external account binding key.
	AddACMEEABKey(ctx context.Context, k *record.ACMEEABKey) error
	// ACMEEABKey returns the key with keyID, or ErrNotFound.
	ACMEEABKey(ctx context.Context, keyID string) (*record.ACMEEABKey, error)

	// CreateACMEAccount stores a new account; when a.EABKeyID is set it
	// binds that key to the account in the same transaction
	// (ErrEABKeyUsed when it is bound or of another profile, ErrNotFound
	// when there is none). ErrACMEKeyInUse: the profile has an account
	// with that key.
	CreateACMEAccount(ctx context.Context, a *record.ACMEAccount) error
	// ACMEAccount and ACMEAccountByKey find an account, or ErrNotFound.
	ACMEAccount(ctx context.Context, id string) (*record.ACMEAccount, error)
	ACMEAccountByKey(ctx context.Context, profileID, keyID string) (*record.ACMEAccount, error)
	// UpdateACMEAccount replaces a valid account's contacts and status
	// (ErrACMEStateChanged when it is deactivated).
	UpdateACMEAccount(ctx context.Context, id string, contacts []string, status string, at time.Time) error
	// ChangeACMEAccountKey replaces a valid account's key if it is still
	// oldKeyID (else ErrACMEStateChanged); ErrACMEKeyInUse when another
	// account of the profile has the new key.
	ChangeACMEAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, key []byte, at time.Time) error

	// CreateACMEOrder stores an order and its authorizations (with their
	// challenges) in one transaction.
	CreateACMEOrder(ctx context.Context, o *record.ACMEOrder, authzs []*record.ACMEAuthorization) error
	// ACMEOrder returns the order with id, or ErrNotFound.
	ACMEOrder(ctx context.Context, id string) (*record.ACMEOrder, error)
	// ACMEOrders calls fn for the account's orders, newest first, at most
	// limit of them.
	ACMEOrders(ctx context.Context, accountID string, limit int, fn func(*record.ACMEOrder) error) error
	// UpdateACMEOrder moves an order from status from to status to, with
	// the certificate id or the problem document; ErrACMEStateChanged when
	// it is no longer in from.
	UpdateACMEOrder(ctx context.Context, id, from, to, certificateID string, problem []byte, at time.Time) error
	// ACMEAuthorization returns the authorization with id and its
	// challenges, or ErrNotFound.
	ACMEAuthorization(ctx context.Context, id string) (*record.ACMEAuthorization, error)
	// UpdateACMEAuthorization moves an authorization from from to to
	// (ErrACMEStateChanged when it is no longer in from).
	UpdateACMEAuthorization(ctx context.Context, id, from, to string, at time.Time) error
	// UpdateACMEChallenge moves challenge typ of authorization authzID
	// from status from to c.Status, with c's validation time and problem,
	// while the authorization is pending; with authzStatus set, it moves
	// the authorization to it in the same transaction. ErrACMEStateChanged
	// when the challenge is not in from or the authorization not pending.
	UpdateACMEChallenge(ctx context.Context, authzID, typ, from string, c record.ACMEChallenge, authzStatus string) error

	// UseACMENonce consumes nonce consume (if not "") and stores nonce
	// issue until expires, in one write; ok reports whether consume was
	// stored and unexpired at now (a nonce is good once, RFC 8555 §6.5).
	// Expired nonces are purged.
	UseACMENonce(ctx context.Context, consume, issue string, expires, now time.Time) (ok bool, err error)
}
