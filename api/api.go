package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/pkid/pkid/issuer"
)

// IssuePath is the one endpoint pkid serves.
const IssuePath = "/api/v3/pki/certificates/issue-certificate"

// DefaultMaxBodyBytes bounds a request body; a real request is under 4 KiB.
const DefaultMaxBodyBytes = 64 << 10

// Issuer is what the API needs from the issuance pipeline.
type Issuer interface {
	Issue(ctx context.Context, meta issuer.Meta, req issuer.Request) (*issuer.Result, error)
	ProfileName(id string) string
}

// Metrics is what the API reports; the metrics package satisfies it.
type Metrics interface {
	ObserveIssuance(profile, outcome string, d time.Duration)
	ObserveHTTP(route string, code int, d time.Duration)
	ObserveIdentityRejected(reason string)
}

type nopMetrics struct{}

func (nopMetrics) ObserveIssuance(string, string, time.Duration) {}
func (nopMetrics) ObserveHTTP(string, int, time.Duration)        {}
func (nopMetrics) ObserveIdentityRejected(string)                {}

// Route labels for metrics: the route template, or "unknown".
const routeUnknown = "unknown"

// Config wires the handler.
type Config struct {
	Issuer       Issuer
	Logger       *slog.Logger
	Metrics      Metrics          // default: reports nothing
	Now          func() time.Time // default time.Now
	MaxBodyBytes int64            // default DefaultMaxBodyBytes
	// MaxConcurrent bounds requests being served at once; past it a
	// request is answered 503 at once (with Retry-After) instead of
	// queueing behind the token. 0 means unlimited.
	MaxConcurrent int
}

type handler struct {
	cfg   Config
	slots chan struct{} // nil when unlimited
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &handler{cfg: cfg}
	if cfg.MaxConcurrent > 0 {
		h.slots = make(chan struct{}, cfg.MaxConcurrent)
	}
	r := mux.NewRouter()
	r.Handle(IssuePath, h.wrap(IssuePath, h.issue)).Methods(http.MethodPost)
	r.MethodNotAllowedHandler = h.wrap(IssuePath, func(w http.ResponseWriter, r *http.Request, l *logLine) {
		l.status = writeEnvelope(w, l.reqID, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("Method %s is not allowed on this route", r.Method))
	})
	r.NotFoundHandler = h.wrap(routeUnknown, func(w http.ResponseWriter, r *http.Request, l *logLine) {
		l.status = writeEnvelope(w, l.reqID, http.StatusNotFound, "NotFound", "Route not found")
	})
	return r
}

func writeEnvelope(w http.ResponseWriter, reqID string, status int, name, msg string) int {
	writeJSON(w, status, errorBody{ReqID: reqID, StatusCode: status, Message: msg, Error: name})
	return status
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
}

// wrap gives every request an id (also in X-Request-Id), one structured
// log line, and a 500 envelope instead of a crash if a handler panics.
func (h *handler) wrap(route string, fn func(http.ResponseWriter, *http.Request, *logLine)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		l := &logLine{reqID: newRequestID()}
		w.Header().Set("X-Request-Id", l.reqID)
		defer func() {
			if p := recover(); p != nil {
				l.cause = fmt.Errorf("panic: %v", p)
				l.status = writeError(w, l.reqID, &issuer.Error{Kind: issuer.KindInternal})
				l.outcome = issuer.OutcomeError
			}
			attrs := []any{
				"reqId", l.reqID, "method", r.Method, "path", r.URL.Path, "status", l.status,
				"identity", l.identity, "profile", l.profile, "outcome", l.outcome, "serial", l.serial,
				"duration", time.Since(start).Round(time.Microsecond).String(),
			}
			level := slog.LevelInfo
			if l.cause != nil {
				attrs = append(attrs, "error", l.cause.Error())
				if l.status >= 500 {
					level = slog.LevelError
				}
			}
			h.cfg.Logger.Log(r.Context(), level, "request", attrs...)
			h.cfg.Metrics.ObserveHTTP(route, l.status, time.Since(start))
		}()
		fn(w, r, l)
	})
}

// issue serves POST issue-certificate. Order of checks (DESIGN.md §1):
// authentication → body/schema → (issuer) profile → authorization → rate
// limit → policy and CA checks → issue.
func (h *handler) issue(w http.ResponseWriter, r *http.Request, l *logLine) {
	start := time.Now()
	l.profile = "unknown"
	fail := func(e *issuer.Error) {
		l.outcome = e.Kind.Outcome()
		l.cause = e.Cause
		l.status = writeError(w, l.reqID, e)
		h.cfg.Metrics.ObserveIssuance(l.profile, l.outcome, time.Since(start))
		switch e.Kind {
		case issuer.KindUnauthenticated:
			h.cfg.Metrics.ObserveIdentityRejected("no_certificate")
		case issuer.KindForbidden:
			h.cfg.Metrics.ObserveIdentityRejected("not_allowed")
		}
	}

	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		default:
			fail(&issuer.Error{Kind: issuer.KindUnavailable, Message: "Too many requests in progress; retry shortly", RetryAfter: time.Second})
			return
		}
	}
	l.identity = Identity(r.TLS)
	if l.identity == "" {
		fail(issuer.Errorf(issuer.KindUnauthenticated, "A verified client certificate with an identity is required"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(issuer.Errorf(issuer.KindUnsupportedMedia, "Content-Type must be application/json"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(issuer.Errorf(issuer.KindTooLarge, "Request body is larger than %d bytes", h.cfg.MaxBodyBytes))
		} else {
			fail(issuer.Errorf(issuer.KindMalformed, "Request body could not be read"))
		}
		return
	}
	req, err := decodeRequest(body, h.cfg.Now())
	if err != nil {
		fail(issuer.AsError(err))
		return
	}
	l.profile = h.cfg.Issuer.ProfileName(req.ProfileID)
	res, err := h.cfg.Issuer.Issue(r.Context(), issuer.Meta{RequestID: l.reqID, Identity: l.identity}, req)
	if err != nil {
		fail(issuer.AsError(err))
		return
	}
	l.outcome, l.serial, l.status = issuer.OutcomeIssued, res.SerialNumber, http.StatusOK
	writeJSON(w, http.StatusOK, issueResponse{
		Certificate:          res.Certificate,
		IssuingCACertificate: res.IssuingCACertificate,
		CertificateChain:     res.CertificateChain,
		PrivateKey:           res.PrivateKey,
		SerialNumber:         res.SerialNumber,
		CertificateID:        res.CertificateID,
	})
	h.cfg.Metrics.ObserveIssuance(l.profile, l.outcome, time.Since(start))
}
