package policy

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// durationPattern is the grammar of npm `ms` 2.x: a number (optionally
// negative, decimals allowed), any number of spaces, an optional unit.
// Matching is case-insensitive. A bare number is milliseconds.
var durationPattern = regexp.MustCompile(`(?i)^(-?(?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|years?|yrs?|y)?$`)

// maxDurationInput mirrors ms, which refuses strings over 100 characters.
const maxDurationInput = 100

// Unit lengths in milliseconds, as ms 2.x defines them (y = 365.25 d).
const (
	msSecond = 1000.0
	msMinute = 60 * msSecond
	msHour   = 60 * msMinute
	msDay    = 24 * msHour
	msWeek   = 7 * msDay
	msYear   = 365.25 * msDay
)

// ErrInvalidDuration is returned for input outside the ms grammar, for zero
// or negative durations and for durations too long to represent.
var ErrInvalidDuration = errors.New("invalid duration")

// ParseDuration parses s in the grammar of npm ms 2.x and returns a strictly
// positive duration. It is the only duration parser in pkid.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) == 0 || len(s) > maxDurationInput {
		return 0, fmt.Errorf("%w: %q", ErrInvalidDuration, s)
	}
	m := durationPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%w: %q", ErrInvalidDuration, s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrInvalidDuration, s)
	}
	ms := n * unitMillis(strings.ToLower(m[2]))
	if !(ms > 0) {
		return 0, fmt.Errorf("%w: %q must be positive", ErrInvalidDuration, s)
	}
	ns := ms * float64(time.Millisecond)
	if ns >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q is too long", ErrInvalidDuration, s)
	}
	d := time.Duration(math.Round(ns))
	if d <= 0 {
		return 0, fmt.Errorf("%w: %q must be positive", ErrInvalidDuration, s)
	}
	return d, nil
}

func unitMillis(unit string) float64 {
	switch unit {
	case "years", "year", "yrs", "yr", "y":
		return msYear
	case "weeks", "week", "w":
		return msWeek
	case "days", "day", "d":
		return msDay
	case "hours", "hour", "hrs", "hr", "h":
		return msHour
	case "minutes", "minute", "mins", "min", "m":
		return msMinute
	case "seconds", "second", "secs", "sec", "s":
		return msSecond
	default: // "", ms, msec(s), millisecond(s)
		return 1
	}
}
