package api

import "sync"

// Admission holds the state that bounds what clients can make the API
// hold: a global number of requests being served and a number per
// identity. It is built once by the daemon and outlives reloads, so a
// SIGHUP never frees a slot that is in use.
type Admission struct {
	slots       chan struct{} // nil: unlimited
	perIdentity int           // 0: unlimited
	mu          sync.Mutex
	inFlight    map[string]int
}

// NewAdmission bounds requests in service to maxConcurrent in all and
// maxPerIdentity per identity; 0 means unlimited.
func NewAdmission(maxConcurrent, maxPerIdentity int) *Admission {
	a := &Admission{perIdentity: maxPerIdentity, inFlight: map[string]int{}}
	if maxConcurrent > 0 {
		a.slots = make(chan struct{}, maxConcurrent)
	}
	return a
}

// acquireIdentity takes one of identity's slots; release gives it back.
func (a *Admission) acquireIdentity(identity string) (release func(), ok bool) {
	if a.perIdentity <= 0 {
		return func() {}, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inFlight[identity] >= a.perIdentity {
		return nil, false
	}
	a.inFlight[identity]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.inFlight[identity]--; a.inFlight[identity] <= 0 {
			delete(a.inFlight, identity) // the map holds only identities in flight
		}
	}, true
}

// acquireSlot takes a global slot without waiting; release gives it back.
func (a *Admission) acquireSlot() (release func(), ok bool) {
	if a.slots == nil {
		return func() {}, true
	}
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, true
	default:
		return nil, false
	}
}
