// Package timers is a set of keyed one-shot timers that can be stopped as a
// whole: the step timeouts of the Jobs service and the certificate
// retirements of the provisioning service.
package timers

import (
	"sync"
	"time"
)

// Set runs a callback per key at a deadline. Arming a key again replaces
// its timer. The zero value is not usable; use New.
type Set struct {
	now func() time.Time

	mu     sync.Mutex // guards the following
	timers map[string]*time.Timer
	closed bool
	wg     sync.WaitGroup // callbacks running
}

// New returns an empty set measuring deadlines against now (nil: time.Now).
func New(now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	return &Set{now: now, timers: map[string]*time.Timer{}}
}

// Arm runs fn at deadline (at once if it has passed), replacing the key's
// timer; after Close it does nothing.
func (s *Set) Arm(key string, deadline time.Time, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(key)
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(max(deadline.Sub(s.now()), 0), func() {
		s.mu.Lock()
		if s.closed || s.timers[key] != t {
			s.mu.Unlock()
			return // stopped or replaced while firing
		}
		delete(s.timers, key)
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		fn()
	})
	s.timers[key] = t
}

// Stop cancels the key's timer, if any.
func (s *Set) Stop(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(key)
}

func (s *Set) stopLocked(key string) {
	if t := s.timers[key]; t != nil {
		t.Stop()
		delete(s.timers, key)
	}
}

// Len returns how many timers are armed.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.timers)
}

// Close stops every timer and waits for the callbacks already running.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	for key := range s.timers {
		s.stopLocked(key)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
