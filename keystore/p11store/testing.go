package p11store

// This file holds hooks for tests, the keystore conformance suite and
// benchmarks. They are part of the package so that other packages' tests can
// use them; production code has no reason to.

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// OpenSessions returns the number of PKCS#11 sessions the Store has open,
// idle or in use. It never exceeds Options.MaxSessions.
func (s *Store) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// RawAttributes is what the token itself says about a private key object,
// read with C_GetAttributeValue and no interpretation by this package.
type RawAttributes struct {
	// Extractable is CKA_EXTRACTABLE.
	Extractable bool
	// Sensitive is CKA_SENSITIVE.
	Sensitive bool
	// AlwaysSensitive is CKA_ALWAYS_SENSITIVE (set by the token when the key
	// has been sensitive since it was made on it).
	AlwaysSensitive bool
	// NeverExtractable is CKA_NEVER_EXTRACTABLE.
	NeverExtractable bool
	// ValueErr is the error of reading the secret value of the key
	// (CKA_VALUE for EC, CKA_PRIVATE_EXPONENT for RSA). For a key that cannot
	// leave the token it wraps the pkcs11.Error CKR_ATTRIBUTE_SENSITIVE; nil
	// means the token handed the private key out.
	ValueErr error
}

// RawAttributes reads the protection attributes of the private key at uri
// directly from the token and tries to read its secret value, so that a test
// can check non-extractability through the vendor interface rather than
// through [keystore.KeyInfo].
func (s *Store) RawAttributes(ctx context.Context, uri *keystore.URI) (RawAttributes, error) {
	if err := s.checkKeyURI(uri); err != nil {
		return RawAttributes{}, err
	}
	var ra RawAttributes
	err := s.do(ctx, func(sess *session) error {
		h, err := s.findOne(sess, uri)
		if err != nil {
			return err
		}
		v, err := s.attrs(sess, h, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_SENSITIVE,
			pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_NEVER_EXTRACTABLE, pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return err
		}
		ra = RawAttributes{
			Extractable:      boolAttr(v[0]),
			Sensitive:        boolAttr(v[1]),
			AlwaysSensitive:  boolAttr(v[2]),
			NeverExtractable: boolAttr(v[3]),
		}
		secret := uint(pkcs11.CKA_VALUE)
		if ulongAttr(v[4]) == pkcs11.CKK_RSA {
			secret = pkcs11.CKA_PRIVATE_EXPONENT
		}
		_, ra.ValueErr = s.mod.ctx.GetAttributeValue(sess.h, h, []*pkcs11.Attribute{pkcs11.NewAttribute(secret, nil)})
		if sessionLost(ra.ValueErr) || objectLost(ra.ValueErr) {
			return ra.ValueErr
		}
		return nil
	})
	if err != nil {
		return RawAttributes{}, wrapOp("raw attributes of "+uri.Redacted(), err)
	}
	return ra, nil
}

// findOne returns the handle of the only private key object uri names.
func (s *Store) findOne(sess *session, uri *keystore.URI) (pkcs11.ObjectHandle, error) {
	hs, err := s.findObjects(sess, nameOf(uri).template(pkcs11.CKO_PRIVATE_KEY))
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("no private key on token %q: %w", s.token.label, keystore.ErrNotFound)
	case 1:
		return hs[0], nil
	}
	return 0, fmt.Errorf("%d private keys on token %q match; add id= to choose one", len(hs), s.token.label)
}

// RawSigner holds one session of the Store's pool and the handle of one
// private key, and signs with bare C_SignInit and C_Sign calls: no digest
// checks, no DigestInfo, no signature conversion, no recovery. It is the
// baseline the Store's Key.Sign is benchmarked against. A RawSigner is not
// safe for concurrent use; Close it to give the session back.
type RawSigner struct {
	s    *Store
	sess *session
	h    pkcs11.ObjectHandle
}

// RawSigner takes a session from the pool for the private key at uri. The
// session stays taken until [RawSigner.Close], which must come before
// [Store.Close] (Close waits for it).
func (s *Store) RawSigner(ctx context.Context, uri *keystore.URI) (*RawSigner, error) {
	if err := s.checkKeyURI(uri); err != nil {
		return nil, err
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	m := s.mod
	m.ops.RLock()
	sess, err := s.take(s.currentSlot())
	var h pkcs11.ObjectHandle
	if err == nil {
		if h, err = s.findOne(sess, uri); err != nil {
			s.putBack(sess, err)
		}
	}
	m.ops.RUnlock()
	if err != nil {
		s.leave()
		return nil, wrapOp("raw signer for "+uri.Redacted(), err)
	}
	return &RawSigner{s: s, sess: sess, h: h}, nil
}

// Sign runs C_SignInit with mechanism (a CKM_ constant) and param (nil, or
// e.g. [pkcs11.NewPSSParams]) and then C_Sign on data, and returns what the
// token returned.
func (r *RawSigner) Sign(mechanism uint, param []byte, data []byte) ([]byte, error) {
	if r.sess == nil {
		return nil, errors.New("p11store: raw sign: signer is closed")
	}
	m := r.s.mod
	m.ops.RLock()
	defer m.ops.RUnlock()
	if m.stale(r.sess) {
		return nil, fmt.Errorf("p11store: raw sign: the session was reset: %w", pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID))
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(mechanism, param)}
	if err := m.ctx.SignInit(r.sess.h, mech, r.h); err != nil {
		return nil, fmt.Errorf("p11store: raw sign: C_SignInit: %w", err)
	}
	sig, err := m.ctx.Sign(r.sess.h, data)
	if err != nil {
		return nil, fmt.Errorf("p11store: raw sign: C_Sign: %w", err)
	}
	return sig, nil
}

// Close gives the session back to the Store's pool. Closing twice is a
// no-op.
func (r *RawSigner) Close() {
	if r.sess == nil {
		return
	}
	m := r.s.mod
	m.ops.RLock()
	if m.stale(r.sess) {
		r.s.drop(r.sess)
	} else {
		r.s.putBack(r.sess, nil)
	}
	m.ops.RUnlock()
	r.s.leave()
	r.sess = nil
}

// CloseAllSessionsForTest calls C_CloseAllSessions on the Store's slot
// behind the pool's back, as a token removal or a module restart would,
// once no operation of the process is using a session. The next operation
// finds its session gone and recovers. It closes the sessions of every Store
// of the process on that token.
func (s *Store) CloseAllSessionsForTest() error {
	if err := s.enter(context.Background()); err != nil {
		return err
	}
	defer s.leave()
	m := s.mod
	m.ops.Lock()
	defer m.ops.Unlock()
	slot := s.currentSlot()
	if err := m.ctx.CloseAllSessions(slot); err != nil {
		return fmt.Errorf("p11store: C_CloseAllSessions: %w", err)
	}
	// Known lost: open no new session on the slot (it could be given the
	// handle of an idle one) before the Store has recovered.
	m.setSuspect(slot, true)
	return nil
}
