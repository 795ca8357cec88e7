package issuer

import (
	"sync"
	"time"
)

// maxBuckets bounds the limiter's memory; full (idle) buckets are dropped
// first when it is reached.
const maxBuckets = 100_000

// limiter is a token bucket per (profile, identity).
type limiter struct {
	clock   Clock
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(c Clock) *limiter { return &limiter{clock: c, buckets: map[string]*bucket{}} }

// allow takes one token, or says how long until one is available.
func (l *limiter) allow(p *Profile, identity string) (time.Duration, bool) {
	rl := p.RateLimit
	if rl.PerMinute <= 0 {
		return 0, true
	}
	burst := float64(rl.Burst)
	if burst < 1 {
		burst = float64(rl.PerMinute)
	}
	perSecond := float64(rl.PerMinute) / 60
	now := l.clock.Now()
	key := p.ID + "\x00" + identity

	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evictFull(now, perSecond, burst)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*perSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / perSecond * float64(time.Second)), false
}

func (l *limiter) evictFull(now time.Time, perSecond, burst float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*perSecond >= burst {
			delete(l.buckets, k)
		}
	}
}
