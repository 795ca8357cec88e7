// Package metrics exposes pkid's Prometheus metrics on a private registry.
// It satisfies the observer seams that the issuer and the API declare
// without importing them. Every label value is bounded: profile and CA
// names come from the config and anything else is reported as "unknown";
// every configured profile × outcome and every error counter starts at 0 so
// that rates and alerts work before the first event.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "pkid"

// Unknown is the label value for anything not in the config.
const Unknown = "unknown"

// LoginOutcomes are the outcomes of a machine-identity login.
var LoginOutcomes = []string{"success", "invalid", "rate_limited", "error"}

// Outcomes of an issuance request (the issuer's vocabulary).
var Outcomes = []string{"issued", "invalid", "unauthorized", "forbidden", "not_found", "policy_violation", "rate_limited", "unavailable", "error"}

// Options describe the build and the initial config.
type Options struct {
	Version, Commit, GoVersion string
	Profiles                   []string
	CAs                        []string
	Routes                     []string
	SessionLimit               int
	RevocationReasons          []string // the reasons a revocation may carry (the issuer's vocabulary)
	OCSPStatuses               []string // the statuses of OCSP answers (the issuer's vocabulary)
	RejectReasons              []string // why a client identity is refused (the API's vocabulary)
	// The ACME server's vocabularies (DESIGN §17).
	ACMEOrderOutcomes, ACMEChallengeTypes, ACMEValidationOutcomes []string
}

// Metrics holds every collector of pkid.
type Metrics struct {
	registry *prometheus.Registry

	issuance         *prometheus.CounterVec
	issuanceDuration *prometheus.HistogramVec
	signDuration     *prometheus.HistogramVec
	hsmErrors        *prometheus.CounterVec
	hsmUp            prometheus.Gauge
	sessionsInUse    prometheus.Gauge
	sessionsLimit    prometheus.Gauge
	notAfter         *prometheus.GaugeVec
	pending          prometheus.Gauge
	httpRequests     *prometheus.CounterVec
	httpInFlight     prometheus.Gauge
	httpDuration     *prometheus.HistogramVec
	lintFailures     *prometheus.CounterVec
	commitDuration   prometheus.Histogram
	commitGroupSize  prometheus.Histogram
	identityRejected *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	recovered        prometheus.Counter
	checkpoint       prometheus.Gauge
	revocations      *prometheus.CounterVec
	crlNumber        *prometheus.GaugeVec
	crlNextUpdate    *prometheus.GaugeVec
	crlThisUpdate    *prometheus.GaugeVec
	crlErrors        *prometheus.CounterVec
	ocspResponses    *prometheus.CounterVec
	logins           *prometheus.CounterVec
	ocspResponder    *prometheus.GaugeVec
	acme             *acmeMetrics

	reasons      []string
	ocspStatuses []string

	mu       sync.RWMutex
	profiles map[string]bool
	cas      map[string]bool
	routes   map[string]bool
}

func name(sub, n string) string { return prometheus.BuildFQName(namespace, sub, n) }

// New builds the collectors and registers them, with the Go and process
// collectors, on a private registry.
func New(o Options) *Metrics {
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		issuance: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("issuance", "requests_total"),
			Help: "Issuance requests by profile and outcome."}, []string{"profile", "outcome"}),
		issuanceDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name("issuance", "duration_seconds"),
			Help: "Time to answer an issuance request, by profile.", Buckets: latency}, []string{"profile"}),
		signDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name("hsm", "sign_duration_seconds"),
			Help: "Time the token took to sign a certificate, by CA.", Buckets: latency}, []string{"ca"}),
		hsmErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("hsm", "errors_total"),
			Help: "Signatures the token failed to make, by CA (not counting requests refused while it was down)."}, []string{"ca"}),
		hsmUp:         prometheus.NewGauge(prometheus.GaugeOpts{Name: name("hsm", "up"), Help: "1 when the token answered the last probe."}),
		sessionsInUse: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("hsm", "sessions_in_use"), Help: "Token sessions busy signing."}),
		sessionsLimit: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("hsm", "sessions_limit"), Help: "Size of the token session pool."}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("ca", "not_after_timestamp_seconds"),
			Help: `Expiry of each CA certificate (roots included) and of the API's own TLS certificate (ca="tls-server").`}, []string{"ca"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("", "pending_records"),
			Help: "Records reserved but neither issued nor aborted."}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("http", "requests_total"),
			Help: "HTTP requests by route template and status code."}, []string{"route", "code"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("http", "requests_in_flight"),
			Help: "API requests being served."}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name("http", "request_duration_seconds"),
			Help: "HTTP request duration by route template.", Buckets: latency}, []string{"route"}),
		lintFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("lint", "failures_total"),
			Help: "Certificates refused by a lint, by lint name."}, []string{"lint"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: name("db", "commit_duration_seconds"),
			Help: "Duration of a database group commit, fsync included.", Buckets: latency}),
		commitGroupSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: name("db", "commit_group_size"),
			Help: "Writes that shared one database commit.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}),
		identityRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("", "client_identities_rejected_total"),
			Help: "Requests refused for the client identity: no usable credential or an ambiguous one (401), or allowed on no profile (403)."}, []string{"reason"}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{Name: name("", "recovered_records_total"),
			Help: "Pending records left by an earlier run and resolved as aborted at start-up."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("config", "reloads_total"),
			Help: "Configuration reloads (SIGHUP) by result."}, []string{"result"}),
		checkpoint: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("audit", "checkpoint_timestamp_seconds"),
			Help: "Time of the newest signed checkpoint of the audit chain (0: none yet)."}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("", "revocations_total"),
			Help: "Certificates revoked, by issuing CA and reason."}, []string{"ca", "reason"}),
		crlNumber: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("crl", "number"),
			Help: "CRL number of each CA's current CRL."}, []string{"ca"}),
		crlNextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("crl", "next_update_timestamp_seconds"),
			Help: "nextUpdate of each CA's current CRL."}, []string{"ca"}),
		crlThisUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("crl", "this_update_timestamp_seconds"),
			Help: "thisUpdate of each CA's current CRL."}, []string{"ca"}),
		crlErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("crl", "errors_total"),
			Help: "CRLs that could not be made (the current one stays served), by CA."}, []string{"ca"}),
		ocspResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("ocsp", "responses_total"),
			Help: "OCSP answers by CA and status (unauthorized and malformed requests name no CA: ca=\"unknown\")."}, []string{"ca", "status"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("auth", "logins_total"),
			Help: "Machine-identity logins (universal auth) by outcome."}, []string{"outcome"}),
		ocspResponder: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("ocsp", "responder_not_after_timestamp_seconds"),
			Help: "Expiry of each CA's delegated OCSP responder certificate."}, []string{"ca"}),
	}
	m.acme = newACMEMetrics(o)
	m.ocspStatuses = o.OCSPStatuses
	m.reasons = o.RevocationReasons
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: name("", "build_info"), Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": o.Version, "commit": o.Commit, "goversion": o.GoVersion}})
	build.Set(1)
	m.registry.MustRegister(m.issuance, m.issuanceDuration, m.signDuration, m.hsmErrors, m.hsmUp, m.sessionsInUse,
		m.sessionsLimit, m.notAfter, m.pending, m.httpRequests, m.httpInFlight, m.httpDuration, m.lintFailures, m.commitDuration,
		m.commitGroupSize, m.identityRejected, m.reloads, m.recovered, m.checkpoint, m.revocations, m.crlNumber,
		m.crlNextUpdate, m.crlThisUpdate, m.crlErrors, m.ocspResponses, m.ocspResponder, m.logins, build,
		m.acme.orders, m.acme.validations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: namespace}))
	m.sessionsLimit.Set(float64(o.SessionLimit))
	for _, r := range o.RejectReasons {
		m.identityRejected.WithLabelValues(r)
	}
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	for _, o := range LoginOutcomes {
		m.logins.WithLabelValues(o)
	}
	m.routes = map[string]bool{}
	for _, r := range o.Routes {
		m.routes[r] = true
	}
	m.SetConfig(o.Profiles, o.CAs)
	return m
}

// SetConfig declares the configured profiles and CAs (at start and after a
// reload): their series start at zero, and only they are used as labels.
func (m *Metrics) SetConfig(profiles, cas []string) {
	pm, cm := map[string]bool{}, map[string]bool{}
	for _, st := range m.ocspStatuses {
		m.ocspResponses.WithLabelValues(Unknown, st)
		for _, c := range cas {
			m.ocspResponses.WithLabelValues(c, st)
		}
	}
	m.acme.start(profiles)
	for _, p := range append(profiles, Unknown) {
		pm[p] = true
		for _, o := range Outcomes {
			m.issuance.WithLabelValues(p, o)
		}
	}
	for _, c := range cas {
		cm[c] = true
		m.hsmErrors.WithLabelValues(c)
		m.crlErrors.WithLabelValues(c)
		for _, r := range m.reasons {
			m.revocations.WithLabelValues(c, r)
		}
	}
	m.mu.Lock()
	m.profiles, m.cas = pm, cm
	m.mu.Unlock()
}

func (m *Metrics) bound(set map[string]bool, v string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if set[v] {
		return v
	}
	return Unknown
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveIssuance counts one issuance request and its duration (the API's seam).
func (m *Metrics) ObserveIssuance(profile, outcome string, d time.Duration) {
	profile = m.bound(m.profiles, profile)
	m.issuance.WithLabelValues(profile, outcome).Inc()
	m.issuanceDuration.WithLabelValues(profile).Observe(d.Seconds())
}

// ObserveSign records the duration of one successful signature by a CA's
// token key (the issuer's seam); failures are counted by ObserveHSMError.
func (m *Metrics) ObserveSign(ca string, d time.Duration, err error) {
	if err == nil {
		m.signDuration.WithLabelValues(m.bound(m.cas, ca)).Observe(d.Seconds())
	}
}

// ObserveHSMError counts a signature the token failed to make.
func (m *Metrics) ObserveHSMError(ca string) {
	m.hsmErrors.WithLabelValues(m.bound(m.cas, ca)).Inc()
}

// ObserveLintFailure counts a certificate refused by a lint. Lint names
// come from zlint's fixed registry, so the label set is bounded.
func (m *Metrics) ObserveLintFailure(lint string) { m.lintFailures.WithLabelValues(lint).Inc() }

// RequestStarted and RequestDone track API requests being served.
func (m *Metrics) RequestStarted() { m.httpInFlight.Inc() }
func (m *Metrics) RequestDone()    { m.httpInFlight.Dec() }

// ObserveHTTP counts one HTTP request by route template and status code.
func (m *Metrics) ObserveHTTP(route string, code int, d time.Duration) {
	if !m.routes[route] {
		route = Unknown
	}
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// ObserveIdentityRejected counts a request refused for its client identity.
func (m *Metrics) ObserveIdentityRejected(reason string) {
	m.identityRejected.WithLabelValues(reason).Inc()
}

// ObserveCommit records one database group commit (the store's hook).
func (m *Metrics) ObserveCommit(d time.Duration, size int) {
	m.commitDuration.Observe(d.Seconds())
	m.commitGroupSize.Observe(float64(size))
}

// ObserveReload counts a configuration reload.
func (m *Metrics) ObserveReload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("failure").Inc()
	}
}

// SetHSMUp records the last token probe.
func (m *Metrics) SetHSMUp(up bool) {
	if up {
		m.hsmUp.Set(1)
	} else {
		m.hsmUp.Set(0)
	}
}

// SetPending records the number of pending records.
func (m *Metrics) SetPending(n int) { m.pending.Set(float64(n)) }

// SetNotAfter records a certificate's expiry.
func (m *Metrics) SetNotAfter(ca string, t time.Time) {
	m.notAfter.WithLabelValues(ca).Set(float64(t.Unix()))
}

// ResetNotAfter forgets every expiry (before a reload sets them again).
func (m *Metrics) ResetNotAfter() { m.notAfter.Reset() }

// SigningStarted and SigningDone track token sessions busy signing.
func (m *Metrics) SigningStarted() { m.sessionsInUse.Inc() }
func (m *Metrics) SigningDone()    { m.sessionsInUse.Dec() }

// ObserveRecovered counts pending records resolved at start-up.
func (m *Metrics) ObserveRecovered(n int) { m.recovered.Add(float64(n)) }

// SetAuditCheckpoint records the time of the newest audit checkpoint.
func (m *Metrics) SetAuditCheckpoint(t time.Time) { m.checkpoint.Set(float64(t.Unix())) }

// ObserveRevocation counts a revocation (the issuer's seam).
func (m *Metrics) ObserveRevocation(ca, reason string) {
	m.revocations.WithLabelValues(m.bound(m.cas, ca), reason).Inc()
}

// ObserveCRL records a CA's new current CRL.
func (m *Metrics) ObserveCRL(ca string, number int64, thisUpdate, nextUpdate time.Time) {
	ca = m.bound(m.cas, ca)
	m.crlNumber.WithLabelValues(ca).Set(float64(number))
	m.crlThisUpdate.WithLabelValues(ca).Set(float64(thisUpdate.Unix()))
	m.crlNextUpdate.WithLabelValues(ca).Set(float64(nextUpdate.Unix()))
}

// ObserveCRLError counts a CRL that could not be made.
func (m *Metrics) ObserveCRLError(ca string) { m.crlErrors.WithLabelValues(m.bound(m.cas, ca)).Inc() }

// ObserveOCSP counts one OCSP answer.
func (m *Metrics) ObserveOCSP(ca, status string) {
	m.ocspResponses.WithLabelValues(m.bound(m.cas, ca), status).Inc()
}

// ObserveOCSPResponder records a responder certificate's expiry.
func (m *Metrics) ObserveOCSPResponder(ca string, notAfter time.Time) {
	m.ocspResponder.WithLabelValues(m.bound(m.cas, ca)).Set(float64(notAfter.Unix()))
}

// ObserveLogin counts a machine-identity login by outcome.
func (m *Metrics) ObserveLogin(outcome string) {
	known := false
	for _, o := range LoginOutcomes {
		known = known || o == outcome
	}
	if !known {
		outcome = "error"
	}
	m.logins.WithLabelValues(outcome).Inc()
}
