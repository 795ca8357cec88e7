package record

import (
	"strings"
	"testing"
)

// One serial has one spelling, whichever way a person or client wrote it.
func TestNormalizeSerial(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"4a3F", "4a3f", true},
		{"00:4A:3f", "4a3f", true},
		{" 004a3f\n", "4a3f", true},
		{"00", "0", true},
		{strings.Repeat("ff", 20), strings.Repeat("ff", 20), true},
		{strings.Repeat("ff", 21), "", false},
		{"", "", false},
		{":", "", false},
		{"4a3g", "", false},
		{"0x4a", "", false},
		{"-4a", "", false},
	} {
		got, ok := NormalizeSerial(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizeSerial(%q) = %q, %t; want %q, %t", c.in, got, ok, c.want, c.ok)
		}
	}
}
