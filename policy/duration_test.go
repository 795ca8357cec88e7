package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDurationUnits(t *testing.T) {
	const day = 24 * time.Hour
	year := time.Duration(365.25 * float64(day))
	cases := map[string]time.Duration{
		// bare numbers are milliseconds
		"1": time.Millisecond, "1500": 1500 * time.Millisecond, "2.5": 2500 * time.Microsecond,
		// every unit and long form of ms 2.x
		"1ms": time.Millisecond, "1msec": time.Millisecond, "2msecs": 2 * time.Millisecond,
		"1millisecond": time.Millisecond, "3milliseconds": 3 * time.Millisecond,
		"1s": time.Second, "1sec": time.Second, "2secs": 2 * time.Second, "1second": time.Second, "5seconds": 5 * time.Second,
		"1m": time.Minute, "1min": time.Minute, "2mins": 2 * time.Minute, "1minute": time.Minute, "10minutes": 10 * time.Minute,
		"1h": time.Hour, "1hr": time.Hour, "2hrs": 2 * time.Hour, "1hour": time.Hour, "24hours": 24 * time.Hour,
		"1d": day, "1day": day, "30days": 30 * day,
		"1w": 7 * day, "1week": 7 * day, "2weeks": 14 * day,
		"1y": year, "1yr": year, "2yrs": 2 * year, "1year": year, "2years": 2 * year,
		// case-insensitive, decimals, spaces between number and unit
		"1H": time.Hour, "2 DAYS": 2 * day, "1.5h": 90 * time.Minute, ".5h": 30 * time.Minute,
		"2  days": 2 * day, "90d": 90 * day,
	}
	for in, want := range cases {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestParseDurationRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty": "", "zero": "0", "zero with unit": "0d", "negative": "-1h", "unknown unit": "1fortnight",
		"unit only": "h", "trailing junk": "1h30m", "leading space": " 1h", "trailing space": "1h ",
		"two dots": "1.2.3h", "exponent": "1e3", "over 100 chars": strings.Repeat("1", 101),
		"overflow": "9999999999999y", "hex": "0x10", "tiny rounds to zero": "0.0000001",
	} {
		if d, err := ParseDuration(in); !errors.Is(err, ErrInvalidDuration) {
			t.Errorf("%s: ParseDuration(%q) = %v, %v; want ErrInvalidDuration", name, in, d, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1h", "2 days", "1.5y", "-1", "", "9999999999999999999y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d <= 0 {
			t.Fatalf("ParseDuration(%q) = %v: accepted a non-positive duration", s, d)
		}
	})
}
