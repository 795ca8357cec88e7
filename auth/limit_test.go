package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewLoginLimiter(t *testing.T) {
	l, err := NewLoginLimiter(LoginLimits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.burst != DefaultLoginBurst || cap(l.gate) < 1 {
		t.Errorf("defaults not applied: burst %d, gate %d", l.burst, cap(l.gate))
	}
	_, err = NewLoginLimiter(LoginLimits{PerClientPerMinute: -1, PerSourcePerMinute: -2, Burst: -3, TrackedKeys: -4, Concurrency: -5}, nil)
	if err == nil {
		t.Fatal("negative limits accepted")
	}
	for _, name := range []string{"perClientPerMinute", "perSourcePerMinute", "burst", "trackedKeys", "concurrency"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestLoginLimiterAdmit drives admit directly (no argon2): per client id and
// per source, both must pass, refused attempts cost nothing, and buckets
// refill with time.
func TestLoginLimiterAdmit(t *testing.T) {
	const (
		idA = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
		idB = "6f1c5b1e-0000-4000-8000-000000000001"
	)
	type attempt struct {
		advance   time.Duration
		id, src   string
		wantScope string        // "" means admitted
		wantRetry time.Duration // when refused
	}
	tests := []struct {
		name     string
		limits   LoginLimits
		attempts []attempt
	}{
		{
			name:   "per client id, across sources",
			limits: LoginLimits{PerClientPerMinute: 2, PerSourcePerMinute: 600, Burst: 2},
			attempts: []attempt{
				{0, idA, "192.0.2.1:1000", "", 0},
				{0, idA, "192.0.2.2:1000", "", 0},
				{0, idA, "192.0.2.3:1000", "client", 30 * time.Second},
				{0, strings.ToUpper(idA), "192.0.2.4:1000", "client", 30 * time.Second}, // same id, other spelling
				{0, idB, "192.0.2.3:1000", "", 0},                                       // another id is not affected
				{30 * time.Second, idA, "192.0.2.3:1000", "", 0},                        // refilled one
				{0, idA, "192.0.2.3:1000", "client", 30 * time.Second},
			},
		},
		{
			name:   "per source, across client ids",
			limits: LoginLimits{PerClientPerMinute: 600, PerSourcePerMinute: 3, Burst: 2},
			attempts: []attempt{
				{0, idA, "192.0.2.1:1000", "", 0},
				{0, idB, "192.0.2.1:2000", "", 0}, // another port, same address
				{0, "not-a-uuid", "192.0.2.1:3000", "source", 20 * time.Second},
				{0, idA, "192.0.2.9:1000", "", 0}, // another address is not affected
				{10 * time.Second, idB, "192.0.2.1:1000", "source", 10 * time.Second},
				{10 * time.Second, idB, "192.0.2.1:1000", "", 0},
			},
		},
		{
			name:   "IPv6 sources share their /64",
			limits: LoginLimits{PerClientPerMinute: 600, PerSourcePerMinute: 1, Burst: 1},
			attempts: []attempt{
				{0, idA, "[2001:db8:1:2::1]:443", "", 0},
				{time.Second, idA, "[2001:db8:1:2:ffff::9]:443", "source", 59 * time.Second},
				{time.Second, idA, "[2001:db8:1:3::1]:443", "", 0},
			},
		},
		{
			name:   "both refuse: the longer wait",
			limits: LoginLimits{PerClientPerMinute: 1, PerSourcePerMinute: 2, Burst: 1},
			attempts: []attempt{
				{0, idA, "192.0.2.1:1", "", 0},
				{0, idA, "192.0.2.1:1", "client and source", time.Minute},
			},
		},
		{
			name: "a refusal by one bucket does not charge the other",
			// idA's bucket is emptied from one source; attempts for idA
			// from a second source are refused by the client bucket and
			// must leave the second source's bucket full for idB.
			limits: LoginLimits{PerClientPerMinute: 1, PerSourcePerMinute: 1, Burst: 2},
			attempts: []attempt{
				{0, idA, "192.0.2.1:1", "", 0},
				{0, idA, "192.0.2.2:1", "", 0},
				{0, idA, "192.0.2.3:1", "client", time.Minute},
				{0, idA, "192.0.2.3:1", "client", time.Minute},
				{0, idA, "192.0.2.3:1", "client", time.Minute},
				{0, idB, "192.0.2.3:1", "", 0},
				{0, idB, "192.0.2.3:1", "", 0},
			},
		},
		{
			name:   "malformed client ids share one bucket",
			limits: LoginLimits{PerClientPerMinute: 1, PerSourcePerMinute: 600, Burst: 1},
			attempts: []attempt{
				{0, "x", "192.0.2.1:1", "", 0},
				{0, strings.Repeat("y", 10000), "192.0.2.2:1", "client", time.Minute},
				{0, idA, "192.0.2.3:1", "", 0},
			},
		},
		{
			name:   "retry-after rounds up to whole seconds",
			limits: LoginLimits{PerClientPerMinute: 7, PerSourcePerMinute: 600, Burst: 1},
			attempts: []attempt{
				{0, idA, "192.0.2.1:1", "", 0},
				{time.Second, idA, "192.0.2.1:1", "client", 8 * time.Second}, // 60/7 - 1 = 7.57 s
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			l, err := NewLoginLimiter(tc.limits, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range tc.attempts {
				clock.Advance(a.advance)
				err := l.admit(a.id, a.src)
				if a.wantScope == "" {
					if err != nil {
						t.Fatalf("attempt %d (%s from %s): %v, want admitted", i, a.id, a.src, err)
					}
					continue
				}
				var rl *RateLimitError
				if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) {
					t.Fatalf("attempt %d (%s from %s): %v, want a *RateLimitError", i, a.id, a.src, err)
				}
				if rl.Scope != a.wantScope || rl.RetryAfter != a.wantRetry {
					t.Errorf("attempt %d: scope %q retry after %v, want %q %v", i, rl.Scope, rl.RetryAfter, a.wantScope, a.wantRetry)
				}
			}
		})
	}
}

func TestLoginLimiterBounded(t *testing.T) {
	clock := newFakeClock()
	l, err := NewLoginLimiter(LoginLimits{TrackedKeys: 3}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		_ = l.admit(formatUUIDv4([]byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}), "192.0.2."+string(rune('0'+i%10))+":1")
	}
	if n, m := l.perClient.Len(), l.perSource.Len(); n > 3 || m > 3 {
		t.Errorf("LRUs hold %d and %d buckets, want at most 3", n, m)
	}
}

func TestLoginLimiterGate(t *testing.T) {
	l, err := NewLoginLimiter(LoginLimits{Concurrency: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second acquire = %v, want the context's deadline", err)
	}
	l.release()
	if err := l.acquire(context.Background()); err != nil {
		t.Errorf("acquire after release = %v", err)
	}
	l.release()
}

func TestSourceKey(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"IPv4 with port", "192.0.2.7:51000", "192.0.2.7"},
		{"IPv4 bare", "192.0.2.7", "192.0.2.7"},
		{"IPv4-mapped IPv6", "[::ffff:192.0.2.7]:443", "192.0.2.7"},
		{"IPv6 with port", "[2001:db8:aa:bb:1:2:3:4]:443", "2001:db8:aa:bb::/64"},
		{"IPv6 bare", "2001:db8:aa:bb::1", "2001:db8:aa:bb::/64"},
		{"IPv6 zoned", "[fe80::1%eth0]:443", "fe80::/64"},
		{"loopback", "127.0.0.1:1", "127.0.0.1"},
		{"not an address", "@unix-socket", "other:@unix-socket"},
		{"empty", "", "other:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sourceKey(tc.in); got != tc.want {
				t.Errorf("sourceKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if got := sourceKey(strings.Repeat("z", 5000)); len(got) > 300 {
		t.Errorf("sourceKey of a long string is %d bytes long", len(got))
	}
}
