package acme

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Limits of the ACME server that are not configured: generous for real
// clients (an issuance is about a dozen requests, polling included), tight
// enough that one client cannot fill the store or the validators.
const (
	// Requests per source address, all routes: 20 a second, bursts of 200.
	sourceRate, sourceBurst = 20, 200
	// State-creating requests (new-account, new-order, challenge,
	// finalize, key-change) per account or, before there is one, per
	// source address: 2 a second, bursts of 30.
	createRate, createBurst = 2, 30
	// Validations running at once, over all profiles.
	maxValidations = 32
	// Requests being served at once, over all profiles.
	maxInFlight = 128
	limiterSize = 100_000
)

// Runtime is the ACME state that outlives a configuration reload: rate
// limits and in-flight challenge validations. The daemon builds it once
// and closes it before the store.
type Runtime struct {
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	slots     chan struct{} // validations
	inFlight  chan struct{} // requests
	sources   *limiter
	creations *limiter
}

// NewRuntime starts an empty runtime.
func NewRuntime() *Runtime {
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxValidations), inFlight: make(chan struct{}, maxInFlight),
		sources: newLimiter(sourceRate, sourceBurst), creations: newLimiter(createRate, createBurst)}
}

// reserve takes a validation slot without waiting; false when every
// slot is taken (the caller answers rateLimited and the challenge stays
// pending). The slot is given back by run, or by release if run is not
// called.
func (rt *Runtime) reserve() (release func(), ok bool) {
	select {
	case rt.slots <- struct{}{}:
		return func() { <-rt.slots }, true
	default:
		return nil, false
	}
}

// run runs fn in the background with the runtime's context, in the slot
// reserve took, and gives the slot back when fn returns.
func (rt *Runtime) run(release func(), fn func(ctx context.Context)) {
	rt.wg.Add(1)
	go func() {
		defer func() { release(); rt.wg.Done() }()
		fn(rt.ctx)
	}()
}

// Wait returns once no validation is running (tests wait on it rather
// than sleep).
func (rt *Runtime) Wait() { rt.wg.Wait() }

// Close cancels the validations in flight and waits for them until ctx
// ends; a cancelled validation leaves its challenge processing, which
// reads as invalid once it is stale.
func (rt *Runtime) Close(ctx context.Context) error {
	rt.cancel()
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admit takes a request slot without waiting.
func (rt *Runtime) admit() (release func(), ok bool) {
	select {
	case rt.inFlight <- struct{}{}:
		return func() { <-rt.inFlight }, true
	default:
		return nil, false
	}
}

// limiter holds a token bucket per key, the least recently used dropped
// first.
type limiter struct {
	limit   rate.Limit
	burst   int
	mu      sync.Mutex
	buckets *lru.Cache[string, *rate.Limiter]
}

func newLimiter(perSecond float64, burst int) *limiter {
	c, err := lru.New[string, *rate.Limiter](limiterSize)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &limiter{limit: rate.Limit(perSecond), burst: burst, buckets: c}
}

// allow takes a token of key's bucket, or says how long until one comes.
func (l *limiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}
