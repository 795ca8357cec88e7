package issuer

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error for the edge. It carries no HTTP status: the API
// maps kinds to statuses in one place.
type Kind int

const (
	KindInternal         Kind = iota // unexpected; details never reach the client
	KindMalformed                    // the request cannot be parsed at all
	KindUnauthenticated              // no client identity
	KindForbidden                    // identity not allowed on the profile
	KindNotFound                     // unknown profile
	KindTooLarge                     // body over the limit
	KindUnsupportedMedia             // not JSON
	KindValidation                   // schema violations (Issues holds them)
	KindRateLimited                  // identity over its rate (RetryAfter set)
	KindPolicy                       // the profile's policy refuses the request
	KindBadRequest                   // CA or window constraints refuse the request
	KindUnavailable                  // token or store unusable (RetryAfter set)
)

// Outcome is the metric/log label of a kind.
func (k Kind) Outcome() string {
	switch k {
	case KindMalformed, KindValidation, KindTooLarge, KindUnsupportedMedia, KindBadRequest:
		return OutcomeInvalid
	case KindUnauthenticated:
		return OutcomeUnauthorized
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

// Outcomes of an issuance request, as logged and counted.
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

// Issue is one schema violation, in zod's vocabulary.
type Issue struct {
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

// Error is an error with a Kind and a message that is safe to show to a
// client. Cause, if any, is for logs only.
type Error struct {
	Kind       Kind
	Message    string
	Details    any           // optional structured details (403, 400)
	Issues     []Issue       // KindValidation only
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
	return &Error{Kind: KindInternal, Message: "Something went wrong", Cause: err}
}
