package issuer

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Refusal audit cap (DESIGN.md §6): at most refusalsPerWindow entries per
// identity and minute; beyond that, one summary entry per identity and
// minute with the count, so that a flood of 403s and 404s cannot grow the
// audit log or stall the writer. Metrics still count every refusal.
const (
	refusalsPerWindow = 10
	refusalWindow     = time.Minute
	refusalIdentities = 10_000
)

// refusalThrottle decides which refusals are written to the audit log.
type refusalThrottle struct {
	mu      sync.Mutex
	windows *lru.Cache[string, *refusalCount]
}

type refusalCount struct {
	start      time.Time
	profile    string
	written    int
	suppressed int
}

// suppressedRefusals is a summary owed to the audit log.
type suppressedRefusals struct {
	identity, profile string
	start             time.Time
	count             int
}

func newRefusalThrottle() *refusalThrottle {
	c, _ := lru.New[string, *refusalCount](refusalIdentities)
	return &refusalThrottle{windows: c}
}

// note counts one refusal by identity at now. It reports whether the
// refusal should be written, and the summary of the identity's previous
// window if that one suppressed any.
func (t *refusalThrottle) note(identity, profile string, now time.Time) (write bool, owed *suppressedRefusals) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.windows.Get(identity)
	if !ok || now.Sub(w.start) >= refusalWindow {
		if ok && w.suppressed > 0 {
			owed = &suppressedRefusals{identity: identity, profile: w.profile, start: w.start, count: w.suppressed}
		}
		w = &refusalCount{start: now}
		t.windows.Add(identity, w)
	}
	w.profile = profile
	if w.written < refusalsPerWindow {
		w.written++
		return true, owed
	}
	w.suppressed++
	return false, owed
}

// due returns the summaries of every window that ended by now with
// suppressed refusals, and forgets those windows.
func (t *refusalThrottle) due(now time.Time) []suppressedRefusals {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []suppressedRefusals
	for _, id := range t.windows.Keys() {
		w, ok := t.windows.Peek(id)
		if !ok || now.Sub(w.start) < refusalWindow {
			continue
		}
		if w.suppressed > 0 {
			out = append(out, suppressedRefusals{identity: id, profile: w.profile, start: w.start, count: w.suppressed})
		}
		t.windows.Remove(id)
	}
	return out
}
