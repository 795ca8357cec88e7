package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/mux"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

// Routes of the API.
const (
	IssuePath = "/api/v3/pki/certificates/issue-certificate"
)

// Defaults for the limits a Config may leave zero.
const (
	DefaultMaxBodyBytes    = 64 << 10 // a real request is under 4 KiB
	DefaultBodyReadTimeout = 10 * time.Second
)

// Issuer is what the API needs from the issuance core.
type Issuer interface {
	Admit(ctx context.Context, meta issuer.Meta) error
	Issue(ctx context.Context, meta issuer.Meta, req issuer.IssueRequest) (*issuer.Result, error)
	Sign(ctx context.Context, meta issuer.Meta, req issuer.SignRequest) (*issuer.Result, error)
	Lookup(ctx context.Context, meta issuer.Meta, key string, byID bool) (*issuer.Certificate, error)
	Renew(ctx context.Context, meta issuer.Meta, certificateID string, removeRoots bool) (*issuer.Result, error)
	Revoke(ctx context.Context, meta issuer.Meta, key string, byID bool, reason string) (*record.Certificate, error)
	ByRequestID(ctx context.Context, meta issuer.Meta, requestID string) (*issuer.Certificate, error)
	// ProfileInfo describes a profile by id, for defaults; ProfileFor finds
	// one by id or slug that meta may use or manage (404, 403 otherwise).
	ProfileInfo(id string) (issuer.ProfileInfo, bool)
	ProfileFor(ctx context.Context, meta issuer.Meta, idOrSlug string) (issuer.ProfileInfo, error)
	ProfileName(id string) string
}

// Metrics is what the API reports; the metrics package satisfies it.
type Metrics interface {
	ObserveIssuance(profile, outcome string, d time.Duration)
	ObserveHTTP(route string, code int, d time.Duration)
	ObserveIdentityRejected(reason string)
	ObserveLogin(outcome string)
	RequestStarted()
	RequestDone()
}

type nopMetrics struct{}

func (nopMetrics) ObserveIssuance(string, string, time.Duration) {}
func (nopMetrics) ObserveHTTP(string, int, time.Duration)        {}
func (nopMetrics) ObserveIdentityRejected(string)                {}
func (nopMetrics) ObserveLogin(string)                           {}
func (nopMetrics) RequestStarted()                               {}
func (nopMetrics) RequestDone()                                  {}

// Route labels for metrics: the route template, or "unknown".
const routeUnknown = "unknown"

// Config wires the handler of one configuration generation.
type Config struct {
	Issuer          Issuer
	Admission       *Admission // outlives reloads; nil: unlimited
	Logger          *slog.Logger
	Metrics         Metrics          // default: reports nothing
	Now             func() time.Time // default time.Now
	MaxBodyBytes    int64            // default DefaultMaxBodyBytes
	BodyReadTimeout time.Duration    // default DefaultBodyReadTimeout
	Machines        MachineAuth      // nil: no machine identities (Bearer tokens refused)
	Catalog         Catalog          // the v1 look-ups' project and applications
}

type handler struct {
	cfg Config
}

// issueResponse is the 200 body; key order is part of the contract.
type issueResponse struct {
	Certificate          string `json:"certificate"`
	IssuingCACertificate string `json:"issuingCaCertificate"`
	CertificateChain     string `json:"certificateChain"`
	PrivateKey           string `json:"privateKey"`
	SerialNumber         string `json:"serialNumber"`
	CertificateID        string `json:"certificateId"`
}

// Routes lists every route template the API serves, as its metrics label
// them (anything else is "unknown").
func Routes() []string {
	return []string{IssuePath, SignPath, RenewPath, LegacySignPath, CertificatePath, BodyPath, RevokePath,
		ProjectPath, ProfileBySlugPath, ApplicationPath, AppProfilesPath,
		V1CreatePath, V1RequestPath, V1CertificatePath, V1BodyPath, V1BundlePath, V1RenewPath, V1RevokePath,
		LoginPath, TokenRenewPath, TokenRevokePath, StatusPath}
}

// NewHandler returns the API's router.
func NewHandler(cfg Config) http.Handler {
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.BodyReadTimeout == 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Admission == nil {
		cfg.Admission = NewAdmission(0, 0)
	}
	h := &handler{cfg: cfg}
	r := mux.NewRouter()
	for _, rt := range []struct {
		path, method string
		kind         routeKind
		fn           func(http.ResponseWriter, *http.Request, *logLine, *call) *httpError
	}{
		{IssuePath, http.MethodPost, issuing, h.issue},
		{SignPath, http.MethodPost, issuing, h.sign},
		{RenewPath, http.MethodPost, issuing | optionalBody, h.renew(true)},
		{LegacySignPath, http.MethodPost, issuing, h.legacySign},
		{CertificatePath, http.MethodGet, noBody, h.lookup},
		{BodyPath, http.MethodGet, noBody, h.body},
		{RevokePath, http.MethodPost, 0, h.revoke(false)},
		{ProjectPath, http.MethodGet, noBody, h.project},
		{ProfileBySlugPath, http.MethodGet, noBody, h.profileBySlug},
		{ApplicationPath, http.MethodGet, noBody, h.applicationByName},
		{AppProfilesPath, http.MethodGet, noBody, h.applicationProfiles},
		{V1CreatePath, http.MethodPost, issuing, h.v1Create},
		{V1RequestPath, http.MethodGet, noBody, h.v1Request}, // before {certificateId}/…: the same shape
		{V1CertificatePath, http.MethodGet, noBody, h.v1Get},
		{V1BodyPath, http.MethodGet, noBody, h.v1Body},
		{V1BundlePath, http.MethodGet, noBody, h.v1Body},
		{V1RenewPath, http.MethodPost, issuing | optionalBody, h.renew(false)},
		{V1RevokePath, http.MethodPost, 0, h.revoke(true)},
	} {
		r.Handle(rt.path, h.wrap(rt.path, h.guarded(rt.kind, rt.fn))).Methods(rt.method)
	}
	// Logging in takes no identity: it makes one. The global slots still
	// bound it, and the auth service rate-limits per client and source.
	r.Handle(LoginPath, h.wrap(LoginPath, h.unguarded(h.login))).Methods(http.MethodPost)
	r.Handle(TokenRenewPath, h.wrap(TokenRenewPath, h.unguarded(h.tokenRenew))).Methods(http.MethodPost)
	r.Handle(TokenRevokePath, h.wrap(TokenRevokePath, h.unguarded(h.tokenRevoke))).Methods(http.MethodPost)
	r.Handle(StatusPath, h.wrap(StatusPath, h.status)).Methods(http.MethodGet)
	r.MethodNotAllowedHandler = h.wrap(routeUnknown, func(w http.ResponseWriter, r *http.Request, l *logLine) {
		l.status = newError(http.StatusMethodNotAllowed, "MethodNotAllowed", issuer.OutcomeInvalid,
			fmt.Sprintf("Method %s is not allowed on this route", r.Method)).write(w, l.reqID)
	})
	r.NotFoundHandler = h.wrap(routeUnknown, func(w http.ResponseWriter, r *http.Request, l *logLine) {
		l.status = newError(http.StatusNotFound, "NotFound", issuer.OutcomeNotFound, "Route not found").write(w, l.reqID)
	})
	return r
}

// logLine is filled in by a handler and written once per request.
type logLine struct {
	reqID    string
	identity string
	profile  string
	outcome  string
	serial   string
	status   int
	cause    error
	start    time.Time
}

// wrap gives every request an id (also in X-Request-Id), one structured
// log line, and a 500 envelope instead of a crash if a handler panics.
func (h *handler) wrap(route string, fn func(http.ResponseWriter, *http.Request, *logLine)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &logLine{reqID: newRequestID(), start: time.Now()}
		w.Header().Set("X-Request-Id", l.reqID)
		h.cfg.Metrics.RequestStarted()
		defer h.cfg.Metrics.RequestDone()
		defer func() {
			if p := recover(); p != nil {
				e := internalError(fmt.Errorf("panic: %v", p))
				l.cause, l.outcome = e.cause, e.outcome
				l.status = e.write(w, l.reqID)
			}
			attrs := []any{
				"reqId", l.reqID, "method", r.Method, "path", r.URL.Path, "status", l.status,
				"identity", l.identity, "profile", l.profile, "outcome", l.outcome, "serial", l.serial,
				"duration", time.Since(l.start).Round(time.Microsecond).String(),
			}
			level := slog.LevelInfo
			if l.cause != nil {
				attrs = append(attrs, "error", l.cause.Error())
				if l.status >= 500 {
					level = slog.LevelError
				}
			}
			h.cfg.Logger.Log(r.Context(), level, "request", attrs...)
			h.cfg.Metrics.ObserveHTTP(route, l.status, time.Since(l.start))
		}()
		fn(w, r, l)
	})
}

// call is one admitted request: who asks, and the body they sent.
type call struct {
	meta issuer.Meta
	body []byte
}

// routeKind says what guarded does around a route.
type routeKind int

const (
	issuing      routeKind = 1 << iota // counted in pkid_issuance_requests_total
	noBody                             // a GET: no body is read
	optionalBody                       // an empty body needs no Content-Type
)

// guarded runs the admission of DESIGN.md §8 before fn, in this order:
// the TLS identity (401) → may it use or manage any profile (else 403,
// without reading the body) → its concurrency cap → the body, read under
// its own deadline (415, 413, 408) → a global slot (503). fn then does the
// checks of §1. Every outcome of an issuing route is counted.
func (h *handler) guarded(kind routeKind, fn func(http.ResponseWriter, *http.Request, *logLine, *call) *httpError) func(http.ResponseWriter, *http.Request, *logLine) {
	return func(w http.ResponseWriter, r *http.Request, l *logLine) {
		l.profile = "unknown"
		if e := h.admitted(w, r, l, kind, fn); e != nil {
			l.outcome, l.cause = e.outcome, e.cause
			l.status = e.write(w, l.reqID)
		}
		if kind&issuing != 0 {
			h.cfg.Metrics.ObserveIssuance(l.profile, l.outcome, time.Since(l.start))
		}
	}
}

func (h *handler) admitted(w http.ResponseWriter, r *http.Request, l *logLine, kind routeKind,
	fn func(http.ResponseWriter, *http.Request, *logLine, *call) *httpError) *httpError {
	var id policy.Identity
	var e *httpError
	var reason string
	if header := r.Header.Get("Authorization"); header != "" {
		id, e, reason = h.authenticateBearer(r, header)
	} else {
		id, e, reason = authenticate(r)
	}
	if e != nil {
		if reason != "" { // "": not a rejection, pkid could not check
			h.cfg.Metrics.ObserveIdentityRejected(reason)
		}
		return e
	}
	l.identity = id.String()
	c := &call{meta: issuer.Meta{RequestID: l.reqID, Identity: id}}
	if err := h.cfg.Issuer.Admit(r.Context(), c.meta); err != nil {
		h.cfg.Metrics.ObserveIdentityRejected(RejectNotAllowed)
		w.Header().Set("Connection", "close") // its unread body is not worth a connection
		return fromIssuer(err)
	}
	release, ok := h.cfg.Admission.acquireIdentity(l.identity)
	if !ok {
		e := newError(http.StatusTooManyRequests, "RateLimitExceeded", issuer.OutcomeRateLimited,
			"Too many requests of this identity are in progress; retry shortly")
		e.retryAfter = time.Second
		return e
	}
	defer release()
	if kind&noBody == 0 {
		body, e := h.readBody(w, r, kind&optionalBody != 0)
		if e != nil {
			return e
		}
		c.body = body
	}
	releaseSlot, ok := h.cfg.Admission.acquireSlot()
	if !ok {
		e := newError(http.StatusServiceUnavailable, "ServiceUnavailable", issuer.OutcomeUnavailable,
			"Too many requests in progress; retry shortly")
		e.retryAfter = time.Second
		return e
	}
	defer releaseSlot()
	return fn(w, r, l, c)
}

// unguarded runs fn under a global slot only (routes that take no identity).
func (h *handler) unguarded(fn func(http.ResponseWriter, *http.Request, *logLine)) func(http.ResponseWriter, *http.Request, *logLine) {
	return func(w http.ResponseWriter, r *http.Request, l *logLine) {
		release, ok := h.cfg.Admission.acquireSlot()
		if !ok {
			e := newError(http.StatusServiceUnavailable, "ServiceUnavailable", issuer.OutcomeUnavailable, "Too many requests in progress; retry shortly")
			e.retryAfter = time.Second
			l.outcome, l.status = e.outcome, e.write(w, l.reqID)
			return
		}
		defer release()
		fn(w, r, l)
	}
}

// readBody reads a JSON body within the size limit and the body-read
// deadline, so that a client dribbling its body cannot hold a slot. An
// optional body may be absent without a Content-Type.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, optional bool) ([]byte, *httpError) {
	if optional && r.ContentLength == 0 {
		return nil, nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, newError(http.StatusUnsupportedMediaType, "UnsupportedMediaType", issuer.OutcomeInvalid,
			"Content-Type must be application/json")
	}
	return h.readRaw(w, r)
}

// readRaw reads the body within the size limit and the body-read deadline.
func (h *handler) readRaw(w http.ResponseWriter, r *http.Request) ([]byte, *httpError) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.cfg.BodyReadTimeout)) // unsupported only by test recorders
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return body, nil
	case errors.As(err, &tooBig):
		return nil, newError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", issuer.OutcomeInvalid,
			fmt.Sprintf("Request body is larger than %d bytes", h.cfg.MaxBodyBytes))
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		return nil, newError(http.StatusRequestTimeout, "RequestTimeout", issuer.OutcomeInvalid,
			fmt.Sprintf("Request body was not received within %s", h.cfg.BodyReadTimeout))
	default:
		return nil, malformed("Request body could not be read")
	}
}

// issue serves POST issue-certificate; the checks after admission follow
// DESIGN.md §1: body/schema → (issuer) profile → authorization → rate
// limit → policy and CA checks → issue.
func (h *handler) issue(w http.ResponseWriter, r *http.Request, l *logLine, c *call) *httpError {
	req, e := decodeIssueRequest(c.body, h.cfg.Now())
	if e != nil {
		return e
	}
	l.profile = h.cfg.Issuer.ProfileName(req.ProfileID)
	res, err := h.cfg.Issuer.Issue(r.Context(), c.meta, req)
	if err != nil {
		return fromIssuer(err)
	}
	l.outcome, l.serial = issuer.OutcomeIssued, res.SerialNumber
	writeJSON(w, http.StatusOK, issueResponse{
		Certificate:          res.Certificate,
		IssuingCACertificate: res.IssuingCACertificate,
		CertificateChain:     res.CertificateChain,
		PrivateKey:           res.PrivateKey,
		SerialNumber:         res.SerialNumber,
		CertificateID:        res.CertificateID,
	})
	l.status = http.StatusOK
	return nil
}
