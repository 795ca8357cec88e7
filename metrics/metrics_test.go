package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLabelsAreBoundedAndStartAtZero(t *testing.T) {
	m := New(Options{Profiles: []string{"web-server"}, CAs: []string{"ec-issuing"}, Routes: []string{"/x"}})
	if got := testutil.ToFloat64(m.issuance.WithLabelValues("web-server", "error")); got != 0 {
		t.Errorf("error counter = %v before any error", got)
	}
	// Raw input never becomes a label.
	m.ObserveIssuance("'; DROP TABLE", "policy_violation", time.Millisecond)
	m.ObserveHSMError("attacker-ca")
	m.ObserveSign("ec-issuing", time.Millisecond, errors.New("CKR_DEVICE_ERROR"))
	if n := testutil.CollectAndCount(m.signDuration); n != 0 {
		t.Errorf("a failed signature was timed (%d series)", n)
	}
	m.ObserveHTTP("/../../etc/passwd", 404, time.Millisecond)
	if got := testutil.ToFloat64(m.issuance.WithLabelValues(Unknown, "policy_violation")); got != 1 {
		t.Errorf("unknown profile counted as %v under %q", got, Unknown)
	}
	if got := testutil.ToFloat64(m.hsmErrors.WithLabelValues(Unknown)); got != 1 {
		t.Errorf("unknown CA error counted as %v", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues(Unknown, "404")); got != 1 {
		t.Errorf("unknown route counted as %v", got)
	}
	// A reload adds series for new profiles and stops accepting removed ones.
	m.SetConfig([]string{"prod-clients"}, nil)
	m.ObserveIssuance("web-server", "issued", time.Millisecond)
	if got := testutil.ToFloat64(m.issuance.WithLabelValues(Unknown, "issued")); got != 1 {
		t.Errorf("a removed profile must count as unknown, got %v", got)
	}
	if n := testutil.CollectAndCount(m.issuance); n != 3*len(Outcomes) {
		t.Errorf("%d issuance series, want %d (web-server, prod-clients, unknown × outcomes)", n, 3*len(Outcomes))
	}
	if err := testutil.GatherAndCompare(m.registry, strings.NewReader(`
# HELP pkid_hsm_sessions_limit Size of the token session pool.
# TYPE pkid_hsm_sessions_limit gauge
pkid_hsm_sessions_limit 0
`), "pkid_hsm_sessions_limit"); err != nil {
		t.Error(err)
	}
}

func TestACMECountersAreBoundedAndStartAtZero(t *testing.T) {
	m := New(Options{Profiles: []string{"web-server"}, ACMEOrderOutcomes: []string{"created", "valid"},
		ACMEChallengeTypes: []string{"http-01"}, ACMEValidationOutcomes: []string{"valid", "invalid"}})
	if got := testutil.ToFloat64(m.acme.orders.WithLabelValues("web-server", "valid")); got != 0 {
		t.Errorf("orders{web-server,valid} = %v before any order", got)
	}
	if n := testutil.CollectAndCount(m.acme.validations); n != 2 {
		t.Errorf("%d validation series at start, want http-01 × 2 outcomes", n)
	}
	m.ObserveACMEOrder("web-server", "valid")
	m.ObserveACMEOrder("attacker", "'; DROP")
	m.ObserveACMEValidation("email-reply-00", "valid")
	if got := testutil.ToFloat64(m.acme.orders.WithLabelValues("web-server", "valid")); got != 1 {
		t.Errorf("orders{web-server,valid} = %v", got)
	}
	if got := testutil.ToFloat64(m.acme.orders.WithLabelValues(Unknown, Unknown)); got != 1 {
		t.Errorf("raw input became a label: unknown × unknown = %v", got)
	}
	if got := testutil.ToFloat64(m.acme.validations.WithLabelValues(Unknown, "valid")); got != 1 {
		t.Errorf("an unknown challenge type was not counted as unknown: %v", got)
	}
}
