package p11store

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// key is a private key on the token, as returned by Generate and Open.
type key struct {
	s    *Store
	name keyName // the object's own CKA_LABEL and CKA_ID, used to find it again
	pub  crypto.PublicKey
	info keystore.KeyInfo

	// mu guards the cached object handle.
	mu     sync.Mutex
	h      pkcs11.ObjectHandle
	hEpoch uint64 // module epoch h was found in
	hOK    bool
}

var _ keystore.Key = (*key)(nil)

// newKey makes the key for the object h, just found on a session. The
// caller holds s.mod.ops shared.
func (s *Store) newKey(uri *keystore.URI, obj *objectInfo, h pkcs11.ObjectHandle) *key {
	return &key{
		s:    s,
		name: keyName{label: obj.label, id: obj.id},
		pub:  obj.pub,
		info: keystore.KeyInfo{
			Algorithm:      obj.alg,
			Kind:           keystore.KindPKCS11,
			Location:       uri.Redacted(),
			HardwareBacked: true,
			NonExtractable: obj.nonExtractable,
		},
		h: h, hEpoch: s.mod.epoch.Load(), hOK: true,
	}
}

// Public returns the *ecdsa.PublicKey or *rsa.PublicKey of the key.
func (k *key) Public() crypto.PublicKey { return k.pub }

// Info describes the key.
func (k *key) Info() keystore.KeyInfo { return k.info }

// handle returns the key's object handle, finding the object again after a
// slot reset or an invalid handle. A key that is gone, or that was replaced
// by a different key under the same label and id, is ErrNotFound. The caller
// holds s.mod.ops shared.
func (k *key) handle(sess *session) (pkcs11.ObjectHandle, error) {
	epoch := k.s.mod.epoch.Load()
	k.mu.Lock()
	if k.hOK && k.hEpoch == epoch {
		h := k.h
		k.mu.Unlock()
		return h, nil
	}
	k.mu.Unlock()

	s := k.s
	hs, err := s.findObjects(sess, k.name.template(pkcs11.CKO_PRIVATE_KEY))
	if err != nil {
		return 0, fmt.Errorf("find key again: %w", err)
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("key is gone from token %q: %w", s.token.label, keystore.ErrNotFound)
	case 1:
	default:
		return 0, fmt.Errorf("%d private keys on token %q now have this label and id", len(hs), s.token.label)
	}
	obj, err := s.readKey(sess, hs[0])
	if err != nil {
		return 0, fmt.Errorf("find key again: %w", err)
	}
	if !keystore.SamePublicKey(obj.pub, k.pub) {
		return 0, fmt.Errorf("key on token %q was replaced by a different key: %w", s.token.label, keystore.ErrNotFound)
	}
	k.mu.Lock()
	k.h, k.hEpoch, k.hOK = hs[0], epoch, true
	k.mu.Unlock()
	return hs[0], nil
}

// forget drops the cached handle h, so the next operation finds the object
// again.
func (k *key) forget(h pkcs11.ObjectHandle) {
	k.mu.Lock()
	if k.h == h {
		k.hOK = false
	}
	k.mu.Unlock()
}

// Sign signs digest, the output of opts.HashFunc(), on the token. ECDSA keys
// return an ASN.1 DER signature; RSA keys sign PKCS #1 v1.5 or, when opts is
// an *rsa.PSSOptions, PSS with MGF1 of the same hash. rand is not used: the
// token brings its own randomness. Sign is safe for concurrent use.
func (k *key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.sign(context.Background(), digest, opts)
}

func (k *key) sign(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	op := "sign with " + k.info.Location
	if err := keystore.CheckDigest(digest, opts); err != nil {
		return nil, wrapOp(op, err)
	}
	mech, data, err := k.mechanism(digest, opts)
	if err != nil {
		return nil, wrapOp(op, err)
	}
	var sig []byte
	err = k.s.do(ctx, func(sess *session) error {
		var serr error
		sig, serr = k.signOnce(sess, mech, data)
		return serr
	})
	if err != nil {
		return nil, wrapUnsupported(op, err)
	}
	if k.info.Algorithm.IsRSA() {
		return sig, nil
	}
	return ecdsaDER(sig)
}

// signOnce runs C_SignInit and C_Sign on sess.
func (k *key) signOnce(sess *session, mech []*pkcs11.Mechanism, data []byte) ([]byte, error) {
	h, err := k.handle(sess)
	if err != nil {
		return nil, err
	}
	c := k.s.mod.ctx
	if err := c.SignInit(sess.h, mech, h); err != nil {
		if objectLost(err) {
			k.forget(h)
		}
		return nil, fmt.Errorf("C_SignInit: %w", err)
	}
	sig, err := c.Sign(sess.h, data)
	if err != nil {
		if objectLost(err) {
			k.forget(h)
		}
		return nil, fmt.Errorf("C_Sign: %w", err)
	}
	return sig, nil
}

// mechanism returns the PKCS#11 mechanism and the data to pass to C_Sign.
func (k *key) mechanism(digest []byte, opts crypto.SignerOpts) ([]*pkcs11.Mechanism, []byte, error) {
	if !k.info.Algorithm.IsRSA() {
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, digest, nil
	}
	h := opts.HashFunc()
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		hm, ok := pssHashes[h]
		if !ok {
			return nil, nil, fmt.Errorf("%w: RSA-PSS with %v", keystore.ErrUnsupported, h)
		}
		salt := keystore.PSSSaltLength(pss, h)
		if salt < 0 {
			return nil, nil, fmt.Errorf("%w: RSA-PSS salt length %d", keystore.ErrUnsupported, pss.SaltLength)
		}
		params := pkcs11.NewPSSParams(hm.hash, hm.mgf, uint(salt))
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params)}, digest, nil
	}
	prefix, ok := digestInfoPrefixes[h]
	if !ok {
		return nil, nil, fmt.Errorf("%w: RSA PKCS #1 v1.5 with %v", keystore.ErrUnsupported, h)
	}
	data := make([]byte, 0, len(prefix)+len(digest))
	data = append(append(data, prefix...), digest...)
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, data, nil
}

// digestInfoPrefixes are the DER DigestInfo headers CKM_RSA_PKCS needs in
// front of the digest (RFC 8017 §9.2, note 1).
var digestInfoPrefixes = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// pssHashes maps a hash to the CK_RSA_PKCS_PSS_PARAMS hashAlg and mgf.
var pssHashes = map[crypto.Hash]struct{ hash, mgf uint }{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// ecdsaDER converts the r||s signature of CKM_ECDSA to ASN.1 DER.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("p11store: sign: CKM_ECDSA returned %d bytes, want r||s", len(raw))
	}
	n := len(raw) / 2
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:n]),
		new(big.Int).SetBytes(raw[n:]),
	})
	if err != nil {
		return nil, fmt.Errorf("p11store: sign: encode ECDSA signature: %w", err)
	}
	return der, nil
}
