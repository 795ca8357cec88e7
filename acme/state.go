package acme

import (
	"time"

	"github.com/pkid/pkid/record"
)

// The state machine of RFC 8555 §7.1.6. The store keeps the decisions —
// a challenge or an order moved to processing, valid or invalid, an
// authorization valid, invalid or deactivated — and what follows from them
// and the clock is derived here when an object is read, on every node
// alike: an order whose authorizations are all valid is ready, anything
// past its expiry is expired (an order: invalid), and work that was
// started but never finished (the node doing it stopped) is invalid once
// processingTimeout has passed.
//
//	challenge:     pending → processing → valid | invalid
//	authorization: pending → valid | invalid | deactivated; valid → deactivated; → expired
//	order:         pending → ready (derived) → processing → valid | invalid;
//	               processing → pending again when the CSR is refused (the client may
//	               finalize again); pending → invalid when an authorization fails
const (
	// NonceLifetime is how long a nonce is good for.
	NonceLifetime = 15 * time.Minute
	// orderLifetime bounds an order and its authorizations.
	orderLifetime = 7 * 24 * time.Hour
	// processingTimeout is how long a validation or a finalize may stay
	// processing before it counts as lost.
	processingTimeout = 2 * time.Minute
)

// stale reports processing work that was lost.
func stale(status string, since, now time.Time) bool {
	return status == record.ACMEProcessing && now.Sub(since) > processingTimeout
}

// challengeStatus is a challenge's status as of now.
func challengeStatus(c record.ACMEChallenge, now time.Time) string {
	if stale(c.Status, c.UpdatedAt, now) {
		return record.ACMEInvalid
	}
	return c.Status
}

// authzStatus is an authorization's status as of now.
func authzStatus(az *record.ACMEAuthorization, now time.Time) string {
	switch az.Status {
	case record.ACMEPending:
		if !now.Before(az.Expires) {
			return record.ACMEExpired
		}
		for _, c := range az.Challenges {
			if challengeStatus(c, now) == record.ACMEInvalid {
				return record.ACMEInvalid // a validation that was lost
			}
		}
	case record.ACMEValid:
		if !now.Before(az.Expires) {
			return record.ACMEExpired
		}
	}
	return az.Status
}

// orderStatus is an order's status as of now, given its authorizations'
// statuses as of now.
func orderStatus(o *record.ACMEOrder, authzs []string, now time.Time) string {
	switch o.Status {
	case record.ACMEPending:
		if !now.Before(o.Expires) {
			return record.ACMEInvalid
		}
		ready := len(authzs) > 0
		for _, s := range authzs {
			switch s {
			case record.ACMEValid:
			case record.ACMEPending:
				ready = false
			default:
				return record.ACMEInvalid
			}
		}
		if ready {
			return record.ACMEReady
		}
	case record.ACMEProcessing:
		if stale(o.Status, o.UpdatedAt, now) {
			return record.ACMEInvalid
		}
	}
	return o.Status
}
