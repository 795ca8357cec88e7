package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/pkid/pkid/issuer"
)

// errorBody is Infisical's error envelope; key order is part of the contract.
type errorBody struct {
	ReqID      string `json:"reqId"`
	StatusCode int    `json:"statusCode"`
	Message    any    `json:"message"`
	Error      string `json:"error"`
	Details    any    `json:"details,omitempty"`
}

// issue is one schema violation, in zod's vocabulary (DESIGN.md §1: 422).
type issue struct {
	Code       string   `json:"code"`
	Message    string   `json:"message"`
	Path       []any    `json:"path"`
	Expected   string   `json:"expected,omitempty"`
	Received   string   `json:"received,omitempty"`
	Validation string   `json:"validation,omitempty"`
	Options    []string `json:"options,omitempty"`
	Keys       []string `json:"keys,omitempty"`
	Minimum    *int     `json:"minimum,omitempty"`
	Maximum    *int     `json:"maximum,omitempty"`
	Type       string   `json:"type,omitempty"`
	Inclusive  *bool    `json:"inclusive,omitempty"`
	Exact      *bool    `json:"exact,omitempty"`
}

// httpError is a refusal ready to send: status, Infisical's error name, a
// message safe for the client, and what the log line and metrics need.
type httpError struct {
	status     int
	name       string
	message    any // string, or []issue for 422
	details    any
	retryAfter time.Duration
	outcome    string
	cause      error // for the log line only
}

func newError(status int, name, outcome, msg string) *httpError {
	return &httpError{status: status, name: name, message: msg, outcome: outcome}
}

func malformed(msg string) *httpError {
	return newError(http.StatusBadRequest, "BadRequest", issuer.OutcomeInvalid, msg)
}

func validation(issues []issue) *httpError {
	return &httpError{status: http.StatusUnprocessableEntity, name: "ValidationFailure", message: issues, outcome: issuer.OutcomeInvalid}
}

func unauthenticated(msg string) *httpError {
	return newError(http.StatusUnauthorized, "UnauthorizedError", issuer.OutcomeUnauthorized, msg)
}

func internalError(cause error) *httpError {
	e := newError(http.StatusInternalServerError, "InternalServerError", issuer.OutcomeError, "Something went wrong")
	e.cause = cause
	return e
}

// fromIssuer is the one map from the core's error kinds to HTTP. Internal
// errors say only "Something went wrong"; their cause goes to the log line.
func fromIssuer(err error) *httpError {
	e := issuer.AsError(err)
	var h *httpError
	switch e.Kind {
	case issuer.KindPolicy, issuer.KindBadRequest:
		h = newError(http.StatusBadRequest, "BadRequest", e.Kind.Outcome(), e.Message)
	case issuer.KindForbidden:
		h = newError(http.StatusForbidden, "PermissionDenied", e.Kind.Outcome(), e.Message)
	case issuer.KindNotFound:
		h = newError(http.StatusNotFound, "NotFound", e.Kind.Outcome(), e.Message)
	case issuer.KindRateLimited:
		h = newError(http.StatusTooManyRequests, "RateLimitExceeded", e.Kind.Outcome(), e.Message)
	case issuer.KindUnavailable:
		h = newError(http.StatusServiceUnavailable, "ServiceUnavailable", e.Kind.Outcome(), e.Message)
	default:
		return internalError(err)
	}
	h.details, h.retryAfter, h.cause = e.Details, e.RetryAfter, e.Cause
	return h
}

// write sends e as the envelope and returns its status.
func (e *httpError) write(w http.ResponseWriter, reqID string) int {
	body := errorBody{ReqID: reqID, StatusCode: e.status, Message: e.message, Error: e.name, Details: e.details}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, e.status, body)
	return e.status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"statusCode":500,"message":"Something went wrong","error":"InternalServerError"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
