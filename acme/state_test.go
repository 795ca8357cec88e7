package acme

import (
	"testing"
	"time"

	"github.com/pkid/pkid/record"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestChallengeAndAuthorizationStatus(t *testing.T) {
	az := func(status string, chall ...record.ACMEChallenge) *record.ACMEAuthorization {
		return &record.ACMEAuthorization{Status: status, Expires: t0.Add(time.Hour), Challenges: chall}
	}
	processing := record.ACMEChallenge{Status: record.ACMEProcessing, UpdatedAt: t0}
	for _, c := range []struct {
		name string
		az   *record.ACMEAuthorization
		at   time.Time
		want string
	}{
		{"pending", az(record.ACMEPending, record.ACMEChallenge{Status: record.ACMEPending}), t0, record.ACMEPending},
		{"validating", az(record.ACMEPending, processing), t0.Add(processingTimeout), record.ACMEPending},
		{"validation lost", az(record.ACMEPending, processing), t0.Add(processingTimeout + time.Second), record.ACMEInvalid},
		{"pending past expiry", az(record.ACMEPending), t0.Add(time.Hour), record.ACMEExpired},
		{"valid", az(record.ACMEValid), t0, record.ACMEValid},
		{"valid past expiry", az(record.ACMEValid), t0.Add(2 * time.Hour), record.ACMEExpired},
		{"invalid stays", az(record.ACMEInvalid), t0.Add(2 * time.Hour), record.ACMEInvalid},
		{"deactivated stays", az(record.ACMEDeactivated), t0, record.ACMEDeactivated},
	} {
		if got := authzStatus(c.az, c.at); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if got := challengeStatus(processing, t0.Add(time.Hour)); got != record.ACMEInvalid {
		t.Errorf("a stale processing challenge reads %s", got)
	}
}

// The order state machine of RFC 8555 §7.1.6, from stored decisions.
func TestOrderStatus(t *testing.T) {
	order := func(status string, updated time.Time) *record.ACMEOrder {
		return &record.ACMEOrder{Status: status, Expires: t0.Add(time.Hour), UpdatedAt: updated}
	}
	v, p, i, d, e := record.ACMEValid, record.ACMEPending, record.ACMEInvalid, record.ACMEDeactivated, record.ACMEExpired
	for _, c := range []struct {
		name   string
		o      *record.ACMEOrder
		authzs []string
		at     time.Time
		want   string
	}{
		{"waiting for its authorizations", order(p, t0), []string{v, p}, t0, record.ACMEPending},
		{"every authorization valid", order(p, t0), []string{v, v}, t0, record.ACMEReady},
		{"one authorization failed", order(p, t0), []string{v, i}, t0, record.ACMEInvalid},
		{"one deactivated", order(p, t0), []string{p, d}, t0, record.ACMEInvalid},
		{"one expired", order(p, t0), []string{v, e}, t0, record.ACMEInvalid},
		{"past its expiry", order(p, t0), []string{v, v}, t0.Add(time.Hour), record.ACMEInvalid},
		{"no authorizations is never ready", order(p, t0), nil, t0, record.ACMEPending},
		{"finalizing", order(record.ACMEProcessing, t0), []string{v}, t0.Add(time.Minute), record.ACMEProcessing},
		{"finalize lost", order(record.ACMEProcessing, t0), []string{v}, t0.Add(processingTimeout + time.Second), record.ACMEInvalid},
		{"valid stays valid past expiry", order(v, t0), []string{e}, t0.Add(2 * time.Hour), record.ACMEValid},
		{"invalid stays", order(i, t0), []string{v}, t0, record.ACMEInvalid},
	} {
		if got := orderStatus(c.o, c.authzs, c.at); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
