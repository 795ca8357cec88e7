package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// LoginLimits bounds universal-auth logins. Zero fields take the defaults.
type LoginLimits struct {
	// PerClientPerMinute is the sustained rate of login attempts per
	// client id, known or not (default 10).
	PerClientPerMinute int
	// PerSourcePerMinute is the sustained rate per source address: an
	// IPv4 address, or an IPv6 /64, which is what one host usually has
	// (default 30).
	PerSourcePerMinute int
	// Burst is how many attempts either bucket admits at once (default 10:
	// Terraform logs in twice per apply, and CI jobs start together).
	Burst int
	// TrackedKeys bounds each of the two LRUs of buckets (default 10000).
	// An evicted bucket starts full again; the Concurrency gate is what
	// bounds the cost of a flood that cycles through more keys than this.
	TrackedKeys int
	// Concurrency is how many secret verifications may run at once
	// (default GOMAXPROCS). Each takes the hash's memory (19 MiB for
	// HashSecret's) and a core for ~40 ms; the rest wait their turn.
	Concurrency int
}

// Default login limits.
const (
	DefaultPerClientPerMinute = 10
	DefaultPerSourcePerMinute = 30
	DefaultLoginBurst         = 10
	DefaultTrackedKeys        = 10000
)

// malformedClientKey is the one bucket of every client id that is not a
// UUID: none of them can be configured, so sharing a bucket costs no real
// client anything, and arbitrary strings never become LRU keys.
const malformedClientKey = "\x00malformed"

// LoginLimiter holds the login rate limits and the verification gate. It is
// long-lived: the daemon makes one and passes it to every Service it builds,
// so that a reload (a new Machines, a new Service) resets no bucket.
type LoginLimiter struct {
	clock                  func() time.Time
	clientRate, sourceRate rate.Limit
	burst                  int
	mu                     sync.Mutex // guards the LRUs (simplelru is not safe for concurrent use)
	perClient, perSource   *simplelru.LRU[string, *rate.Limiter]
	gate                   chan struct{}
}

// NewLoginLimiter validates limits, fills in defaults and returns the
// limiter. clock is the time source (nil: time.Now).
func NewLoginLimiter(limits LoginLimits, clock func() time.Time) (*LoginLimiter, error) {
	var errs []error
	check := func(name string, v int, def int) int {
		switch {
		case v < 0:
			errs = append(errs, fmt.Errorf("%s is %d, want a positive number (0: the default, %d)", name, v, def))
			return def
		case v == 0:
			return def
		default:
			return v
		}
	}
	perClient := check("perClientPerMinute", limits.PerClientPerMinute, DefaultPerClientPerMinute)
	perSource := check("perSourcePerMinute", limits.PerSourcePerMinute, DefaultPerSourcePerMinute)
	burst := check("burst", limits.Burst, DefaultLoginBurst)
	tracked := check("trackedKeys", limits.TrackedKeys, DefaultTrackedKeys)
	concurrency := check("concurrency", limits.Concurrency, runtime.GOMAXPROCS(0))
	if len(errs) > 0 {
		return nil, fmt.Errorf("login limits: %w", errors.Join(errs...))
	}
	if clock == nil {
		clock = time.Now
	}
	l := &LoginLimiter{
		clock:      clock,
		clientRate: rate.Limit(float64(perClient) / 60),
		sourceRate: rate.Limit(float64(perSource) / 60),
		burst:      burst,
		gate:       make(chan struct{}, concurrency),
	}
	var err error
	if l.perClient, err = simplelru.NewLRU[string, *rate.Limiter](tracked, nil); err != nil {
		return nil, fmt.Errorf("login limits: %w", err)
	}
	if l.perSource, err = simplelru.NewLRU[string, *rate.Limiter](tracked, nil); err != nil {
		return nil, fmt.Errorf("login limits: %w", err)
	}
	return l, nil
}

// admit counts one login attempt against the client id's bucket and the
// source's bucket. Both must have a token; if either has none, neither is
// charged (a refused attempt costs nothing, so Retry-After is honest) and
// the result is a *RateLimitError.
func (l *LoginLimiter) admit(clientID, source string) error {
	ck, sk := clientKey(clientID), sourceKey(source)
	now := l.clock()

	l.mu.Lock()
	defer l.mu.Unlock()
	cr := bucket(l.perClient, ck, l.clientRate, l.burst).ReserveN(now, 1)
	sr := bucket(l.perSource, sk, l.sourceRate, l.burst).ReserveN(now, 1)
	cd, sd := cr.DelayFrom(now), sr.DelayFrom(now)
	if cd == 0 && sd == 0 {
		return nil
	}
	cr.CancelAt(now)
	sr.CancelAt(now)
	e := &RateLimitError{RetryAfter: max(cd, sd)}
	switch {
	case cd > 0 && sd > 0:
		e.Scope = "client and source"
	case cd > 0:
		e.Scope = "client"
	default:
		e.Scope = "source"
	}
	// Retry-After is whole seconds; round up, so that a client that
	// waits exactly that long is admitted.
	e.RetryAfter = max(time.Second, (e.RetryAfter + time.Second - 1).Truncate(time.Second))
	return e
}

// bucket returns key's limiter, making it (full) if the LRU has none.
func bucket(c *simplelru.LRU[string, *rate.Limiter], key string, r rate.Limit, burst int) *rate.Limiter {
	if b, ok := c.Get(key); ok {
		return b
	}
	b := rate.NewLimiter(r, burst)
	c.Add(key, b)
	return b
}

// acquire takes a verification slot, waiting until one is free or ctx ends.
func (l *LoginLimiter) acquire(ctx context.Context) error {
	select {
	case l.gate <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a login verification slot: %w", ctx.Err())
	}
}

func (l *LoginLimiter) release() { <-l.gate }

// clientKey is the bucket key of a client id: its canonical form if it is a
// UUID, else the shared malformed bucket.
func clientKey(clientID string) string {
	if id, ok := canonicalUUID(clientID); ok {
		return id
	}
	return malformedClientKey
}

// sourceKey is the bucket key of a source address ("ip", "ip:port" or
// "[ip]:port"): the IPv4 address (IPv4-mapped IPv6 unmapped), or the /64 of
// an IPv6 address, since one host is normally given a whole /64 and could
// otherwise rotate through it. Anything else (a Unix socket, a test) is its
// own key, capped in length.
func sourceKey(source string) string {
	host := source
	if h, _, err := net.SplitHostPort(source); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("").Unmap()
		if a.Is4() {
			return a.String()
		}
		p, _ := a.Prefix(64) // cannot fail: a is IPv6 without a zone
		return p.String()
	}
	const maxKey = 256
	if len(source) > maxKey {
		source = source[:maxKey]
	}
	return "other:" + source
}
