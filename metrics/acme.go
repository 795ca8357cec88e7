package metrics

import "github.com/prometheus/client_golang/prometheus"

// acmeMetrics are the ACME server's counters (DESIGN §17). Their label
// values are the vocabularies passed in Options; anything else is counted
// as "unknown".
type acmeMetrics struct {
	orders      *prometheus.CounterVec
	validations *prometheus.CounterVec
	outcomes    map[string]bool // order outcomes
	types       map[string]bool // challenge types
	results     map[string]bool // validation outcomes
}

func newACMEMetrics(o Options) *acmeMetrics {
	a := &acmeMetrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("acme", "orders_total"),
			Help: "ACME orders by profile and outcome: created, rejected at new-order, valid (a certificate was issued) or invalid."},
			[]string{"profile", "outcome"}),
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("acme", "challenge_validations_total"),
			Help: "ACME challenge validations by challenge type and outcome."}, []string{"type", "outcome"}),
		outcomes: set(o.ACMEOrderOutcomes), types: set(o.ACMEChallengeTypes), results: set(o.ACMEValidationOutcomes),
	}
	for _, t := range o.ACMEChallengeTypes {
		for _, r := range o.ACMEValidationOutcomes {
			a.validations.WithLabelValues(t, r)
		}
	}
	return a
}

func set(values []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range values {
		m[v] = true
	}
	return m
}

func known(m map[string]bool, v string) string {
	if m[v] {
		return v
	}
	return Unknown
}

// start makes every profile × order outcome series exist at zero.
func (a *acmeMetrics) start(profiles []string) {
	for _, p := range append(profiles, Unknown) {
		for o := range a.outcomes {
			a.orders.WithLabelValues(p, o)
		}
	}
}

// ObserveACMEOrder counts an ACME order's outcome (the ACME server's seam).
func (m *Metrics) ObserveACMEOrder(profile, outcome string) {
	m.acme.orders.WithLabelValues(m.bound(m.profiles, profile), known(m.acme.outcomes, outcome)).Inc()
}

// ObserveACMEValidation counts one challenge validation.
func (m *Metrics) ObserveACMEValidation(challenge, outcome string) {
	m.acme.validations.WithLabelValues(known(m.acme.types, challenge), known(m.acme.results, outcome)).Inc()
}
