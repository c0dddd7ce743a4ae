package p11store

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// The session pool.
//
// A caller first takes one of the Store's MaxSessions slots (enter), waiting
// with its context; holding a slot also keeps Close, and so C_Finalize,
// away. It then holds the module's ops lock shared while it takes a session
// (an idle one, or a new one opened and logged in), uses it and puts it
// back.
//
// A session that fails as lost (its handle, its login or its slot is gone)
// is dropped: never used again and never closed, since the module may have
// given its handle to a new session already. Its slot is marked suspect, so
// that no new session is opened there, and the Store recovers: with the ops
// lock held exclusively, when no session of the module is in use, it closes
// every session of the slot (C_CloseAllSessions), which makes every session
// opened before stale for every Store of the process, and finds its token
// again.

// enter takes a pool slot, waiting while MaxSessions are in use.
func (s *Store) enter(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return errStoreClosed
	case <-ctx.Done():
		return fmt.Errorf("p11store: wait for a session on token %q: %w", s.token.label, ctx.Err())
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		<-s.sem
		return errStoreClosed
	}
	return nil
}

// leave gives the pool slot back.
func (s *Store) leave() { <-s.sem }

// take returns a logged-in session on slot: an idle one, or a new one. The
// caller holds a pool slot and s.mod.ops shared.
func (s *Store) take(slot uint) (*session, error) {
	m := s.mod
	for {
		select {
		case sess := <-s.idle:
			if m.stale(sess) || sess.slot != slot {
				s.drop(sess)
				continue
			}
			return sess, nil
		default:
		}
		break
	}
	if m.isSuspect(slot) {
		return nil, fmt.Errorf("p11store: sessions on token %q were lost: %w", s.token.label, pkcs11.Error(pkcs11.CKR_SESSION_CLOSED))
	}
	h, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("p11store: open session on token %q (slot %d): %w", s.token.label, slot, err)
	}
	sess := &session{h: h, slot: slot, opened: m.epoch.Load()}
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	if err := s.login(h); err != nil {
		if sessionLost(err) {
			s.drop(sess)
			m.setSuspect(slot, true)
		} else {
			s.closeSession(sess)
		}
		return nil, err
	}
	s.log.Debug("p11store: opened session", "token", s.token.label, "slot", slot)
	return sess, nil
}

// putBack returns sess, used by an operation that ended with err, to the
// idle sessions, drops it if it was lost, or closes it if it was left with
// an operation active. The caller holds s.mod.ops shared.
func (s *Store) putBack(sess *session, err error) {
	switch {
	case sessionLost(err):
		s.drop(sess)
		s.mod.setSuspect(sess.slot, true)
	case rv(err) == pkcs11.CKR_OPERATION_ACTIVE:
		s.closeSession(sess)
	default:
		s.idle <- sess // never blocks: each session is idle or held with a pool slot
	}
}

// closeSession closes sess and forgets it. The caller holds s.mod.ops and
// knows sess is not stale. The error is ignored: the session is being
// discarded.
func (s *Store) closeSession(sess *session) {
	_ = s.mod.ctx.CloseSession(sess.h)
	s.drop(sess)
}

// drop forgets sess without closing it.
func (s *Store) drop(sess *session) {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// currentSlot returns the slot of the token.
func (s *Store) currentSlot() uint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slot
}

// withSession runs op on a pooled session. When op, or opening the session,
// fails because the session, the login or the slot is gone, it recovers
// before it gives its pool slot back.
func (s *Store) withSession(ctx context.Context, op func(sess *session) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	m := s.mod
	slot := s.currentSlot()
	m.ops.RLock()
	seen := m.epoch.Load()
	sess, err := s.take(slot)
	if err == nil {
		seen = sess.opened
		err = op(sess)
		s.putBack(sess, err)
	}
	m.ops.RUnlock()
	if sessionLost(err) {
		s.recover(slot, seen, err)
	}
	return err
}

// do runs op on a pooled session and, if it failed because its session, the
// login, the slot or an object handle became invalid, runs it once more
// after recovery. op must look object handles up again when asked to (see
// key.handle).
func (s *Store) do(ctx context.Context, op func(sess *session) error) error {
	for attempt := 0; ; attempt++ {
		err := s.withSession(ctx, op)
		if err == nil || attempt > 0 || !recoverable(err) || ctx.Err() != nil {
			return err
		}
		s.log.Debug("p11store: operation lost its session or object, retrying", "token", s.token.label, "cause", err.Error())
	}
}

// recover resets slot, after an operation failed with cause on a session
// opened in epoch seen (or, when no session could be had, while the module
// was in epoch seen), unless that was done already; then it finds the token
// again by its label, in case its slot changed. A reset also invalidates
// object handles (SoftHSM forgets them when the last session of a slot
// closes), so it starts a new epoch in which keys find their objects again. The caller holds a pool slot
// but not s.mod.ops.
func (s *Store) recover(slot uint, seen uint64, cause error) {
	m := s.mod
	m.ops.Lock()
	defer m.ops.Unlock()
	// Reset unless the slot was reset after the failed session was opened
	// and no session has been found lost since (suspect).
	if m.resetAt[slot] <= seen || m.isSuspect(slot) {
		// Errors are expected (the slot may be gone) and change nothing:
		// every session opened so far is stale from now on.
		_ = m.ctx.CloseAllSessions(slot)
		m.epoch.Add(1)
		m.resetAt[slot] = m.epoch.Load()
	}
	m.setSuspect(slot, false)
	// Drop the stale idle sessions now rather than at their next use.
	var keep []*session
	for {
		select {
		case sess := <-s.idle:
			if m.stale(sess) {
				s.drop(sess)
			} else {
				keep = append(keep, sess)
			}
			continue
		default:
		}
		break
	}
	for _, sess := range keep {
		s.idle <- sess
	}
	if s.currentSlot() != slot {
		return // another goroutine found the token already
	}
	byLabel := &keystore.URI{Scheme: keystore.SchemePKCS11, Path: []keystore.Attr{{Name: "token", Value: s.token.label}}}
	newSlot, _, err := s.findToken(byLabel)
	if err != nil {
		s.log.Warn("p11store: token lost", "token", s.token.label, "cause", cause.Error(), "err", err.Error())
		return
	}
	s.mu.Lock()
	s.slot = newSlot
	s.mu.Unlock()
	s.log.Info("p11store: recovered sessions", "token", s.token.label, "cause", cause.Error(), "old_slot", slot, "slot", newSlot)
}
