package issuer

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultRateLimiterSize bounds how many (profile, identity) buckets the
// rate limiter keeps; the least recently used goes first.
const DefaultRateLimiterSize = 100_000

// RateLimiter holds a token bucket per (profile, identity). It is built
// once by the daemon and outlives reloads, so SIGHUP never refills a
// bucket; a reload that changes a profile's rate adjusts its buckets at
// their next use.
type RateLimiter struct {
	clock   Clock
	buckets *lru.Cache[string, *rate.Limiter]
}

// NewRateLimiter returns a limiter keeping at most size buckets (0:
// DefaultRateLimiterSize). clock nil means the system clock.
func NewRateLimiter(size int, clock Clock) *RateLimiter {
	if size <= 0 {
		size = DefaultRateLimiterSize
	}
	if clock == nil {
		clock = SystemClock{}
	}
	c, err := lru.New[string, *rate.Limiter](size)
	if err != nil {
		panic(err) // only for a non-positive size, excluded above
	}
	return &RateLimiter{clock: clock, buckets: c}
}

// allow takes one token from the bucket of (p, identity), or says how long
// until one is available.
func (l *RateLimiter) allow(p *Profile, identity string) (time.Duration, bool) {
	rl := p.rate
	if rl.PerMinute <= 0 {
		return 0, true
	}
	burst := rl.Burst
	if burst < 1 {
		burst = rl.PerMinute
	}
	limit := rate.Limit(float64(rl.PerMinute) / 60)
	now := l.clock.Now()
	key := p.id + "\x00" + identity
	b, ok := l.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(limit, burst)
		if prev, found, _ := l.buckets.PeekOrAdd(key, b); found {
			b = prev
		}
	}
	if b.Limit() != limit {
		b.SetLimitAt(now, limit)
	}
	if b.Burst() != burst {
		b.SetBurstAt(now, burst)
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return time.Minute, false
	}
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return wait, false
	}
	return 0, true
}
