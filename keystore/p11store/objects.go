package p11store

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// DerivedID returns the CKA_ID Generate gives a key whose URI has no id=:
// the first 16 bytes of the SHA-256 of its label. It is stable, so the key
// pair can be found by label and by id, and two labels never share an id in
// practice.
func DerivedID(label string) []byte {
	sum := sha256.Sum256([]byte(label))
	return sum[:16]
}

// Curve object identifiers, DER-encoded as CKA_EC_PARAMS (namedCurve).
var (
	oidP256 = mustMarshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	oidP384 = mustMarshal(asn1.ObjectIdentifier{1, 3, 132, 0, 34})
)

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// keyName is how a URI names a key: its object label and/or its id.
type keyName struct {
	label string
	id    []byte // nil when the URI has no id=
}

func nameOf(uri *keystore.URI) keyName {
	n := keyName{label: uri.Attr("object")}
	if v := uri.Attr("id"); v != "" {
		n.id = []byte(v)
	}
	return n
}

// template returns the attributes that select objects of class with this
// name (label and id both, when both are given).
func (n keyName) template(class uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if n.label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, n.label))
	}
	if n.id != nil {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, n.id))
	}
	return t
}

// keyTemplates returns the mechanism and the public and private templates
// that generate a key pair of alg named label and id.
func keyTemplates(alg keystore.Algorithm, label string, id []byte) (*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute, error) {
	common := func(class, keyType uint) []*pkcs11.Attribute {
		t := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		if label != "" {
			t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
		}
		return t
	}
	private := func(keyType uint) []*pkcs11.Attribute {
		return append(common(pkcs11.CKO_PRIVATE_KEY, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		)
	}
	public := func(keyType uint) []*pkcs11.Attribute {
		return append(common(pkcs11.CKO_PUBLIC_KEY, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		)
	}
	switch alg {
	case keystore.ECDSAP256, keystore.ECDSAP384:
		params := oidP256
		if alg == keystore.ECDSAP384 {
			params = oidP384
		}
		pub := append(public(pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
		return pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil), pub, private(pkcs11.CKK_EC), nil
	case keystore.RSA2048, keystore.RSA3072:
		pub := append(public(pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, alg.RSABits()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil), pub, private(pkcs11.CKK_RSA), nil
	}
	return nil, nil, nil, fmt.Errorf("%w: algorithm %q (want one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072)", keystore.ErrUnsupported, alg)
}

// findObjects returns the handles of the objects matching tmpl.
func (s *Store) findObjects(sess *session, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	c := s.mod.ctx
	if err := c.FindObjectsInit(sess.h, tmpl); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := c.FindObjects(sess.h, 16)
		if err != nil {
			_ = c.FindObjectsFinal(sess.h) // the search failed already; report that
			return nil, fmt.Errorf("C_FindObjects: %w", err)
		}
		all = append(all, hs...)
		if len(hs) < 16 {
			break
		}
	}
	if err := c.FindObjectsFinal(sess.h); err != nil {
		return nil, fmt.Errorf("C_FindObjectsFinal: %w", err)
	}
	return all, nil
}

// attrs reads the given attributes of object h, in order.
func (s *Store) attrs(sess *session, h pkcs11.ObjectHandle, types ...uint) ([][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	got, err := s.mod.ctx.GetAttributeValue(sess.h, h, tmpl)
	if err != nil {
		return nil, fmt.Errorf("C_GetAttributeValue: %w", err)
	}
	out := make([][]byte, len(types))
	for i, t := range types {
		for _, a := range got {
			if a.Type == t {
				out[i] = a.Value
			}
		}
	}
	return out, nil
}

// objectInfo is what Open reads from a private key object.
type objectInfo struct {
	label          string
	id             []byte
	pub            crypto.PublicKey
	alg            keystore.Algorithm
	nonExtractable bool
}

// readKey reads the private key object priv and its public key.
func (s *Store) readKey(sess *session, priv pkcs11.ObjectHandle) (*objectInfo, error) {
	v, err := s.attrs(sess, priv, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE)
	if err != nil {
		return nil, fmt.Errorf("read private key attributes: %w", err)
	}
	info := &objectInfo{
		label:          string(v[1]),
		id:             v[2],
		nonExtractable: boolAttr(v[3]) && !boolAttr(v[4]),
	}
	keyType := ulongAttr(v[0])
	pub, err := s.publicKey(sess, priv, keyType, info.label, info.id)
	if err != nil {
		return nil, err
	}
	info.pub = pub
	if info.alg, err = keystore.AlgorithmOf(pub); err != nil {
		return nil, fmt.Errorf("key on token: %w", err)
	}
	return info, nil
}

// publicKey returns the public key of the private key object priv, read from
// the public key object with the same id (and label), or for RSA from the
// private object itself when there is no public object.
func (s *Store) publicKey(sess *session, priv pkcs11.ObjectHandle, keyType uint, label string, id []byte) (crypto.PublicKey, error) {
	if keyType != pkcs11.CKK_EC && keyType != pkcs11.CKK_RSA {
		return nil, fmt.Errorf("%w: key type %#x (want CKK_EC or CKK_RSA)", keystore.ErrUnsupported, keyType)
	}
	name := keyName{label: label, id: id}
	if len(id) == 0 {
		name.id = nil
	}
	tmpl := append(name.template(pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType))
	pubs, err := s.findObjects(sess, tmpl)
	if err != nil {
		return nil, fmt.Errorf("find public key: %w", err)
	}
	if len(pubs) == 0 && label != "" && len(id) > 0 {
		// Labels of the pair may differ; the id is what ties them.
		name.label = ""
		tmpl := append(name.template(pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType))
		if pubs, err = s.findObjects(sess, tmpl); err != nil {
			return nil, fmt.Errorf("find public key: %w", err)
		}
	}
	if keyType == pkcs11.CKK_RSA {
		obj := priv // CKA_MODULUS and CKA_PUBLIC_EXPONENT are public on the private object too
		if len(pubs) > 0 {
			obj = pubs[0]
		}
		v, err := s.attrs(sess, obj, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, fmt.Errorf("read RSA public key: %w", err)
		}
		return parseRSA(v[0], v[1])
	}
	if len(pubs) == 0 {
		return nil, errors.New("the EC private key has no public key object with the same CKA_ID")
	}
	v, err := s.attrs(sess, pubs[0], pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, fmt.Errorf("read EC public key: %w", err)
	}
	return parseEC(v[0], v[1])
}

func parseRSA(modulus, exponent []byte) (*rsa.PublicKey, error) {
	e := new(big.Int).SetBytes(exponent)
	if len(modulus) == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, errors.New("bad RSA public key on token (modulus or exponent)")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(modulus), E: int(e.Int64())}, nil
}

// parseEC parses CKA_EC_PARAMS (a named curve) and CKA_EC_POINT, which
// modules return either DER-wrapped in an OCTET STRING (as PKCS#11 says, and
// SoftHSM does) or raw.
func parseEC(params, point []byte) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch {
	case bytes.Equal(params, oidP256):
		curve = elliptic.P256()
	case bytes.Equal(params, oidP384):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("%w: EC key on a curve other than P-256 and P-384 (CKA_EC_PARAMS %x)", keystore.ErrUnsupported, params)
	}
	size := (curve.Params().BitSize + 7) / 8
	raw := point
	if len(point) != 1+2*size || point[0] != 4 {
		var inner []byte
		rest, err := asn1.Unmarshal(point, &inner)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("bad CKA_EC_POINT on token (%d bytes, neither a raw point nor an OCTET STRING)", len(point))
		}
		raw = inner
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("bad CKA_EC_POINT on token: %w", err)
	}
	return pub, nil
}

func boolAttr(v []byte) bool { return len(v) == 1 && v[0] != 0 }

func ulongAttr(v []byte) uint {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v))
	case 4:
		return uint(binary.NativeEndian.Uint32(v))
	}
	return ^uint(0)
}
