package acme

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/record"
)

// errorNS prefixes every ACME error type (RFC 8555 §6.7).
const errorNS = "urn:ietf:params:acme:error:"

// The ACME error types pkid answers with (RFC 8555 §6.7).
const (
	probAccountDoesNotExist     = "accountDoesNotExist"
	probAlreadyRevoked          = "alreadyRevoked"
	probBadCSR                  = "badCSR"
	probBadNonce                = "badNonce"
	probBadPublicKey            = "badPublicKey"
	probBadRevocationReason     = "badRevocationReason"
	probBadSignatureAlgorithm   = "badSignatureAlgorithm"
	probExternalAccountRequired = "externalAccountRequired"
	probInvalidContact          = "invalidContact"
	probMalformed               = "malformed"
	probOrderNotReady           = "orderNotReady"
	probRateLimited             = "rateLimited"
	probRejectedIdentifier      = "rejectedIdentifier"
	probServerInternal          = "serverInternal"
	probUnauthorized            = "unauthorized"
	probUnsupportedContact      = "unsupportedContact"
	probUnsupportedIdentifier   = "unsupportedIdentifier"
)

// problem is an RFC 7807 problem document with ACME's error types. Its
// detail is safe to show; cause is for the log line only.
type problem struct {
	Type       string   `json:"type"`
	Detail     string   `json:"detail"`
	Status     int      `json:"status"`
	Algorithms []string `json:"algorithms,omitempty"` // badSignatureAlgorithm (RFC 8555 §6.2)

	retryAfter time.Duration
	location   string // a 409's existing resource
	cause      error
}

func (p *problem) Error() string { return p.Type + ": " + p.Detail }

func newProblem(status int, typ, detail string) *problem {
	return &problem{Type: errorNS + typ, Detail: detail, Status: status}
}

func malformed(detail string) *problem {
	return newProblem(http.StatusBadRequest, probMalformed, detail)
}

func unauthorized(detail string) *problem {
	return newProblem(http.StatusForbidden, probUnauthorized, detail)
}

func notFound(detail string) *problem { return newProblem(http.StatusNotFound, probMalformed, detail) }

func internalProblem(cause error) *problem {
	p := newProblem(http.StatusInternalServerError, probServerInternal, "Something went wrong")
	p.cause = cause
	return p
}

// retryAfterUnavailable is the Retry-After of a 503.
const retryAfterUnavailable = 5 * time.Second

// storeProblem answers a store error: not found, or the database is
// unavailable (503, as the issuer answers it).
func storeProblem(err error, what string) *problem {
	if errors.Is(err, record.ErrNotFound) {
		return notFound(what + " not found")
	}
	p := newProblem(http.StatusServiceUnavailable, probServerInternal, "The certificate store is unavailable; retry later")
	p.retryAfter, p.cause = retryAfterUnavailable, err
	return p
}

// fromIssuer is the one map from the core's error kinds to ACME problems.
func fromIssuer(err error) *problem {
	e := issuer.AsError(err)
	var p *problem
	switch e.Kind {
	case issuer.KindPolicy:
		p = newProblem(http.StatusBadRequest, probRejectedIdentifier, e.Message)
		if d, ok := e.Details.(map[string][]string); ok && d["lints"] != nil {
			p.Type = errorNS + probBadCSR // the CSR asks for what no certificate may carry
		}
	case issuer.KindBadRequest:
		switch {
		case errors.Is(err, issuer.ErrBadCSR):
			p = newProblem(http.StatusBadRequest, probBadCSR, e.Message)
		case errors.Is(err, issuer.ErrBadRevocationReason):
			p = newProblem(http.StatusBadRequest, probBadRevocationReason, e.Message)
		case errors.Is(err, record.ErrAlreadyRevoked):
			p = newProblem(http.StatusBadRequest, probAlreadyRevoked, e.Message)
		default:
			p = malformed(e.Message)
		}
	case issuer.KindForbidden:
		p = unauthorized(e.Message)
	case issuer.KindNotFound:
		p = notFound(e.Message)
	case issuer.KindRateLimited:
		p = newProblem(http.StatusTooManyRequests, probRateLimited, e.Message)
		p.retryAfter = e.RetryAfter
	case issuer.KindUnavailable:
		p = newProblem(http.StatusServiceUnavailable, probServerInternal, e.Message)
		p.retryAfter = e.RetryAfter
	default:
		return internalProblem(e.Cause)
	}
	p.cause = e.Cause
	return p
}

// write sends p as application/problem+json.
func (p *problem) write(w http.ResponseWriter) int {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((p.retryAfter+time.Second-1)/time.Second), 10))
	}
	if p.location != "" {
		h.Set("Location", p.location)
	}
	w.WriteHeader(p.Status)
	b, _ := json.Marshal(p) // strings and ints: cannot fail
	w.Write(b)
	return p.Status
}

// typeName is the problem's type without the namespace, for logs.
func (p *problem) typeName() string { return p.Type[len(errorNS):] }
