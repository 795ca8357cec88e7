package contract

import (
	"encoding/json"
	"fmt"
	"time"
)

// Both stores keep times and lists as text, in the same encoding, so that
// `pkid store migrate` copies values as they are and the two backends
// order and compare them alike.

// timeLayout writes every fractional digit, so that text order is time
// order (RFC 3339Nano trims trailing zeros, and "…:00Z" > "…:00.5Z").
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// TimeText is t in UTC in the stores' fixed-width layout.
func TimeText(t time.Time) string { return t.UTC().Format(timeLayout) }

// OptionalTime is TimeText, or "" for the zero time, so that a record that
// was never revoked has no revocation time rather than year 1.
func OptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return TimeText(t)
}

// ParseTime decodes TimeText's and OptionalTime's text ("" is the zero
// time); RFC3339Nano also reads schema version 1's trimmed layout.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("decoding time %q: %w", s, err)
	}
	return t, nil
}

// JSONText is s as a JSON array; a nil slice is [].
func JSONText[T any](s []T) string {
	if s == nil {
		s = []T{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		// Slices of strings and of string pairs: json.Marshal cannot fail.
		panic(fmt.Sprintf("encoding %T: %v", s, err))
	}
	return string(b)
}
