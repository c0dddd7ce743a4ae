package p11store

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// Generate creates a key pair of alg (keystore.DefaultAlgorithm when empty)
// on the token, named by uri's object= label and id= (when uri has no id=,
// the id is [DerivedID] of the label). The private key is a token object
// that is private, sensitive, not extractable and may only sign. Generate
// fails with keystore.ErrExists if a private key with that label or id is
// already on the token, and with keystore.ErrUnsupported for an algorithm
// the store or the token does not support. Public key objects left behind
// under the same name without their private key are replaced.
func (s *Store) Generate(ctx context.Context, uri *keystore.URI, alg keystore.Algorithm) (keystore.Key, error) {
	if err := s.checkKeyURI(uri); err != nil {
		return nil, err
	}
	if alg == "" {
		alg = keystore.DefaultAlgorithm
	}
	name := nameOf(uri)
	explicitID := name.id != nil
	if !explicitID {
		name.id = DerivedID(name.label)
	}
	mech, pubT, privT, err := keyTemplates(alg, name.label, name.id)
	if err != nil {
		return nil, wrapOp("generate "+uri.Redacted(), err)
	}
	s.mod.genMu.Lock()
	defer s.mod.genMu.Unlock()

	var (
		k       *key
		created bool // the pair exists: a retry after recovery must not fail with ErrExists
	)
	err = s.do(ctx, func(sess *session) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if created {
			hs, err := s.findObjects(sess, name.template(pkcs11.CKO_PRIVATE_KEY))
			if err != nil {
				return err
			}
			if len(hs) != 1 {
				return fmt.Errorf("key generated, but %d private keys now match: %w", len(hs), keystore.ErrNotFound)
			}
			obj, err := s.readKey(sess, hs[0])
			if err != nil {
				return err
			}
			k = s.newKey(uri, obj, hs[0])
			return nil
		}
		if err := s.checkFree(sess, name, explicitID); err != nil {
			return err
		}
		_, priv, err := s.mod.ctx.GenerateKeyPair(sess.h, []*pkcs11.Mechanism{mech}, pubT, privT)
		if err != nil {
			return wrapUnsupported("C_GenerateKeyPair ("+string(alg)+")", err)
		}
		created = true
		obj, err := s.readKey(sess, priv)
		if err != nil {
			return err
		}
		k = s.newKey(uri, obj, priv)
		return nil
	})
	if err != nil {
		return nil, wrapOp("generate "+uri.Redacted(), err)
	}
	s.log.Debug("p11store: generated key", "key", uri.Redacted(), "alg", string(alg))
	return k, nil
}

// checkFree fails with ErrExists if a private key with name's label, or with
// its id when the URI gave one, is on the token. It destroys public key
// objects under name that have no private key.
func (s *Store) checkFree(sess *session, name keyName, explicitID bool) error {
	var selectors []keyName
	if name.label != "" {
		selectors = append(selectors, keyName{label: name.label})
	}
	if explicitID || name.label == "" {
		selectors = append(selectors, keyName{id: name.id})
	}
	for _, sel := range selectors {
		hs, err := s.findObjects(sess, sel.template(pkcs11.CKO_PRIVATE_KEY))
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return keystore.ErrExists
		}
	}
	for _, sel := range selectors {
		hs, err := s.findObjects(sess, sel.template(pkcs11.CKO_PUBLIC_KEY))
		if err != nil {
			return err
		}
		for _, h := range hs {
			if err := s.mod.ctx.DestroyObject(sess.h, h); err != nil && !objectLost(err) {
				return fmt.Errorf("destroy orphaned public key object: %w", err)
			}
			s.log.Info("p11store: destroyed a public key object without its private key", "label", name.label)
		}
	}
	return nil
}

// Open returns the key at uri: the private key object with uri's object=
// label and id= (all those given must match). It fails with
// keystore.ErrNotFound when there is none.
func (s *Store) Open(ctx context.Context, uri *keystore.URI) (keystore.Key, error) {
	if err := s.checkKeyURI(uri); err != nil {
		return nil, err
	}
	name := nameOf(uri)
	var k *key
	err := s.do(ctx, func(sess *session) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		hs, err := s.findObjects(sess, name.template(pkcs11.CKO_PRIVATE_KEY))
		if err != nil {
			return err
		}
		switch len(hs) {
		case 0:
			return fmt.Errorf("no private key on token %q: %w", s.token.label, keystore.ErrNotFound)
		case 1:
		default:
			return fmt.Errorf("%d private keys on token %q match; add id= to choose one", len(hs), s.token.label)
		}
		obj, err := s.readKey(sess, hs[0])
		if err != nil {
			return err
		}
		k = s.newKey(uri, obj, hs[0])
		return nil
	})
	if err != nil {
		return nil, wrapOp("open "+uri.Redacted(), err)
	}
	return k, nil
}

// Delete destroys the private key at uri (every private key object matching
// its label and id) and the public key objects that belong to it. Deleting
// a key that does not exist is not an error.
func (s *Store) Delete(ctx context.Context, uri *keystore.URI) error {
	if err := s.checkKeyURI(uri); err != nil {
		return err
	}
	name := nameOf(uri)
	s.mod.genMu.Lock()
	defer s.mod.genMu.Unlock()
	err := s.do(ctx, func(sess *session) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		privs, err := s.findObjects(sess, name.template(pkcs11.CKO_PRIVATE_KEY))
		if err != nil {
			return err
		}
		pubs, err := s.findObjects(sess, name.template(pkcs11.CKO_PUBLIC_KEY))
		if err != nil {
			return err
		}
		for _, h := range privs {
			// The public half may carry another label: find it by id too.
			v, err := s.attrs(sess, h, pkcs11.CKA_ID)
			if err != nil {
				return err
			}
			if len(v[0]) == 0 {
				continue
			}
			more, err := s.findObjects(sess, keyName{id: v[0]}.template(pkcs11.CKO_PUBLIC_KEY))
			if err != nil {
				return err
			}
			pubs = append(pubs, more...)
		}
		var errs []error
		seen := map[pkcs11.ObjectHandle]bool{}
		for _, h := range append(privs, pubs...) {
			if seen[h] {
				continue
			}
			seen[h] = true
			if err := s.mod.ctx.DestroyObject(sess.h, h); err != nil && !objectLost(err) {
				errs = append(errs, fmt.Errorf("C_DestroyObject: %w", err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return wrapOp("delete "+uri.Redacted(), err)
	}
	s.log.Debug("p11store: deleted key", "key", uri.Redacted())
	return nil
}
