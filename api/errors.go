package api

import (
	"encoding/json"
	"net/http"
	"strconv"

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

// statusOf is the one map from error kind to HTTP status and error name.
func statusOf(k issuer.Kind) (int, string) {
	switch k {
	case issuer.KindMalformed, issuer.KindPolicy, issuer.KindBadRequest:
		return http.StatusBadRequest, "BadRequest"
	case issuer.KindUnauthenticated:
		return http.StatusUnauthorized, "UnauthorizedError"
	case issuer.KindForbidden:
		return http.StatusForbidden, "PermissionDenied"
	case issuer.KindNotFound:
		return http.StatusNotFound, "NotFound"
	case issuer.KindTooLarge:
		return http.StatusRequestEntityTooLarge, "PayloadTooLarge"
	case issuer.KindUnsupportedMedia:
		return http.StatusUnsupportedMediaType, "UnsupportedMediaType"
	case issuer.KindValidation:
		return http.StatusUnprocessableEntity, "ValidationFailure"
	case issuer.KindRateLimited:
		return http.StatusTooManyRequests, "RateLimitExceeded"
	case issuer.KindUnavailable:
		return http.StatusServiceUnavailable, "ServiceUnavailable"
	}
	return http.StatusInternalServerError, "InternalServerError"
}

// writeError sends e as the envelope. Internal errors say only "Something
// went wrong"; their cause is for the log line, never the client.
func writeError(w http.ResponseWriter, reqID string, e *issuer.Error) int {
	status, name := statusOf(e.Kind)
	body := errorBody{ReqID: reqID, StatusCode: status, Message: e.Message, Error: name, Details: e.Details}
	switch {
	case e.Kind == issuer.KindValidation:
		body.Message = e.Issues
	case status == http.StatusInternalServerError:
		body.Message, body.Details = "Something went wrong", nil
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+999_999_999)/1_000_000_000), 10))
	}
	writeJSON(w, status, body)
	return status
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
