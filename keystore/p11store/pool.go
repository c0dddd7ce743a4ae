package p11store

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// The session pool. A caller first takes a slot (enter), bounded by
// MaxSessions and its context, then a session (take): an idle one, or a new
// one opened and logged in. Holding a slot also keeps Close, and so
// C_Finalize, away: everything that calls into the module holds one.

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

// leave gives the slot back.
func (s *Store) leave() { <-s.sem }

// take returns a logged-in session of the current generation. The caller
// holds a slot.
func (s *Store) take() (*session, error) {
	s.mu.Lock()
	gen, slot := s.gen, s.slot
	s.mu.Unlock()
	for {
		select {
		case sess := <-s.idle:
			if sess.gen == gen {
				return sess, nil
			}
			s.closeSession(sess) // from before a recovery
			continue
		default:
		}
		break
	}
	h, err := s.mod.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("p11store: open session on token %q (slot %d): %w", s.token.label, slot, err)
	}
	sess := &session{h: h, gen: gen}
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	if err := s.login(h); err != nil {
		s.closeSession(sess)
		return nil, err
	}
	s.log.Debug("p11store: opened session", "token", s.token.label, "slot", slot)
	return sess, nil
}

// putBack returns sess to the idle sessions, or closes it if it is broken
// or predates a recovery. The caller still holds its slot.
func (s *Store) putBack(sess *session, broken bool) {
	s.mu.Lock()
	stale := sess.gen != s.gen
	s.mu.Unlock()
	if broken || stale {
		s.closeSession(sess)
		return
	}
	s.idle <- sess // never blocks: each session is idle or held with a slot
}

// closeSession closes sess and forgets it. Errors are ignored: the session
// is being discarded, usually because it is already invalid.
func (s *Store) closeSession(sess *session) {
	_ = s.mod.ctx.CloseSession(sess.h)
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// acquire is enter and take: a session held until release.
func (s *Store) acquire(ctx context.Context) (*session, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	sess, err := s.take()
	if err != nil {
		s.leave()
		return nil, err
	}
	return sess, nil
}

// release is putBack and leave.
func (s *Store) release(sess *session, broken bool) {
	s.putBack(sess, broken)
	s.leave()
}

// withSession runs op on a pooled session. When op, or opening the session,
// fails because the session, the login or the slot is gone, it recovers
// before giving its slot back.
func (s *Store) withSession(ctx context.Context, op func(sess *session) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	gen := s.generation()
	sess, err := s.take()
	if err == nil {
		gen = sess.gen
		err = op(sess)
		s.putBack(sess, sessionLost(err) || rv(err) == pkcs11.CKR_OPERATION_ACTIVE)
	}
	if sessionLost(err) {
		s.recover(gen, err)
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

// recover drops every pooled session and finds the token again by its label,
// after an operation on a session of generation gen failed with cause. It
// does nothing if another goroutine recovered since. The caller holds a slot.
func (s *Store) recover(gen uint64, cause error) {
	s.mu.Lock()
	if s.gen != gen || s.closed {
		s.mu.Unlock()
		return
	}
	s.gen++
	oldSlot := s.slot
	s.mu.Unlock()

	// Sessions in use are closed when they come back (their gen is old).
	for {
		select {
		case sess := <-s.idle:
			s.closeSession(sess)
			continue
		default:
		}
		break
	}
	byLabel := &keystore.URI{Scheme: keystore.SchemePKCS11, Path: []keystore.Attr{{Name: "token", Value: s.token.label}}}
	slot, _, err := s.findToken(byLabel)
	if err != nil {
		s.log.Warn("p11store: token lost", "token", s.token.label, "cause", cause.Error(), "err", err.Error())
		return
	}
	s.mu.Lock()
	s.slot = slot
	s.mu.Unlock()
	s.log.Info("p11store: recovered sessions", "token", s.token.label, "cause", cause.Error(), "old_slot", oldSlot, "slot", slot)
}

// generation returns the current pool generation.
func (s *Store) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// slotID returns the current slot of the token.
func (s *Store) slotID() uint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slot
}
