package issuer

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error for the edge. It carries no transport
// vocabulary: the API maps kinds to HTTP statuses in one place.
type Kind int

const (
	KindInternal    Kind = iota // unexpected; details never reach the client
	KindForbidden               // identity not allowed on the profile or the certificate
	KindNotFound                // unknown profile or certificate
	KindRateLimited             // identity over its rate (RetryAfter set)
	KindPolicy                  // the profile's policy refuses the request
	KindBadRequest              // CA, window, CSR or state constraints refuse the request
	KindUnavailable             // token or store unusable (RetryAfter set)
)

// Outcome is the metric/log label of a kind.
func (k Kind) Outcome() string {
	switch k {
	case KindBadRequest:
		return OutcomeInvalid
	case KindForbidden:
		return OutcomeForbidden
	case KindNotFound:
		return OutcomeNotFound
	case KindRateLimited:
		return OutcomeRateLimited
	case KindPolicy:
		return OutcomePolicyViolation
	case KindUnavailable:
		return OutcomeUnavailable
	default:
		return OutcomeError
	}
}

// Outcomes of a request, as logged and counted.
const (
	OutcomeIssued          = "issued"
	OutcomeInvalid         = "invalid"
	OutcomeUnauthorized    = "unauthorized"
	OutcomeForbidden       = "forbidden"
	OutcomeNotFound        = "not_found"
	OutcomePolicyViolation = "policy_violation"
	OutcomeRateLimited     = "rate_limited"
	OutcomeUnavailable     = "unavailable"
	OutcomeError           = "error"
)

// Outcomes lists every outcome, so counters can start at zero.
var Outcomes = []string{
	OutcomeIssued, OutcomeInvalid, OutcomeUnauthorized, OutcomeForbidden, OutcomeNotFound,
	OutcomePolicyViolation, OutcomeRateLimited, OutcomeUnavailable, OutcomeError,
}

// Error is an error with a Kind and a message that is safe to show to a
// client. Cause, if any, is for logs only.
type Error struct {
	Kind       Kind
	Message    string
	Details    any           // optional structured details (403, 400)
	RetryAfter time.Duration // KindRateLimited, KindUnavailable
	Cause      error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Cause)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error of the given kind.
func Errorf(kind Kind, format string, a ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, a...)}
}

// AsError returns err as an *Error; anything else becomes KindInternal with
// the original kept as the (log-only) cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return internal(err)
}

func internal(cause error) *Error {
	return &Error{Kind: KindInternal, Message: "Something went wrong", Cause: cause}
}

// retryAfterUnavailable is the Retry-After given while the token or the
// store is unusable.
const retryAfterUnavailable = 5 * time.Second

func unavailable(msg string, cause error) *Error {
	return &Error{Kind: KindUnavailable, Message: msg, RetryAfter: retryAfterUnavailable, Cause: cause}
}

func storeUnavailable(cause error) *Error {
	return unavailable("the certificate store is unavailable", cause)
}
