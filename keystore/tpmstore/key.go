package tpmstore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/thingd/thingd/keystore"
)

// Key is a signing key persisted in the TPM. It implements [keystore.Key]
// and [keystore.SchemeLister]; it is safe for concurrent use and valid until
// its Store is closed.
type Key struct {
	s        *Store
	handle   tpm2.TPMHandle
	name     tpm2.TPM2BName
	location string
	alg      keystore.Algorithm
	pub      crypto.PublicKey
	attrs    tpm2.TPMAObject
	// fixedScheme and fixedHash are the key's own signing scheme, or
	// TPM_ALG_NULL when it is chosen per signature (keys we generate).
	fixedScheme tpm2.TPMAlgID
	fixedHash   tpm2.TPMAlgID
	schemes     []tls.SignatureScheme
}

var (
	_ keystore.Key          = (*Key)(nil)
	_ keystore.SchemeLister = (*Key)(nil)
)

// keyAttributes are the object attributes of every key Generate makes.
var keyAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	NoDA:                true,
	SignEncrypt:         true,
}

// keyTemplate returns the public template for alg: an unrestricted signing
// key with scheme TPM_ALG_NULL and nameAlg SHA-256.
func keyTemplate(alg keystore.Algorithm) (tpm2.TPMTPublic, error) {
	switch alg {
	case keystore.ECDSAP256, keystore.ECDSAP384:
		curve := tpm2.TPMECCNistP256
		if alg == keystore.ECDSAP384 {
			curve = tpm2.TPMECCNistP384
		}
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: keyAttributes,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   curve,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case keystore.RSA2048, keystore.RSA3072:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: keyAttributes,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   tpm2.TPMKeyBits(alg.RSABits()),
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("tpmstore: generate: %w: algorithm %q", keystore.ErrUnsupported, alg)
}

// newKey builds a Key from the public area read at handle.
func newKey(s *Store, uri *keystore.URI, handle tpm2.TPMHandle, pub *tpm2.TPMTPublic, name tpm2.TPM2BName) (*Key, error) {
	where := fmt.Sprintf("tpmstore: key at handle %#x", uint32(handle))
	a := pub.ObjectAttributes
	if !a.SignEncrypt || a.Decrypt || a.Restricted {
		return nil, fmt.Errorf("%s: %w: not an unrestricted signing key (sign=%v decrypt=%v restricted=%v)",
			where, keystore.ErrUnsupported, a.SignEncrypt, a.Decrypt, a.Restricted)
	}
	k := &Key{s: s, handle: handle, name: name, location: uri.Redacted(), attrs: a,
		fixedScheme: tpm2.TPMAlgNull, fixedHash: tpm2.TPMAlgNull}
	var err error
	switch pub.Type {
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		point, err := pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if k.pub, err = ecdsaPublic(parms.CurveID, point); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if parms.Scheme.Scheme != tpm2.TPMAlgNull {
			d, err := parms.Scheme.Details.ECDSA()
			if parms.Scheme.Scheme != tpm2.TPMAlgECDSA || err != nil {
				return nil, fmt.Errorf("%s: %w: ECC signing scheme %v", where, keystore.ErrUnsupported, parms.Scheme.Scheme)
			}
			k.fixedScheme, k.fixedHash = tpm2.TPMAlgECDSA, d.HashAlg
		}
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		e := int(parms.Exponent)
		if e == 0 {
			e = 65537
		}
		k.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}
		switch parms.Scheme.Scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgRSASSA:
			d, err := parms.Scheme.Details.RSASSA()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			k.fixedScheme, k.fixedHash = tpm2.TPMAlgRSASSA, d.HashAlg
		case tpm2.TPMAlgRSAPSS:
			d, err := parms.Scheme.Details.RSAPSS()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			k.fixedScheme, k.fixedHash = tpm2.TPMAlgRSAPSS, d.HashAlg
		default:
			return nil, fmt.Errorf("%s: %w: RSA signing scheme %v", where, keystore.ErrUnsupported, parms.Scheme.Scheme)
		}
	default:
		return nil, fmt.Errorf("%s: %w: object type %v", where, keystore.ErrUnsupported, pub.Type)
	}
	if k.alg, err = keystore.AlgorithmOf(k.pub); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	k.schemes = k.tlsSchemes()
	return k, nil
}

// ecdsaPublic converts a TPM ECC point, checking that it is on the curve.
func ecdsaPublic(curveID tpm2.TPMECCCurve, p *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch curveID {
	case tpm2.TPMECCNistP256:
		curve = elliptic.P256()
	case tpm2.TPMECCNistP384:
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("%w: ECC curve %#x", keystore.ErrUnsupported, uint16(curveID))
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(p.X.Buffer) > size || len(p.Y.Buffer) > size {
		return nil, errors.New("ECC point coordinates too long")
	}
	raw := make([]byte, 1+2*size)
	raw[0] = 4
	copy(raw[1+size-len(p.X.Buffer):1+size], p.X.Buffer)
	copy(raw[1+2*size-len(p.Y.Buffer):], p.Y.Buffer)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("bad ECC public point: %w", err)
	}
	return pub, nil
}

// tpmHash maps a Go hash to its TPM algorithm ID.
func tpmHash(h crypto.Hash) (tpm2.TPMAlgID, bool) {
	switch h {
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1, true
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, true
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, true
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, true
	}
	return 0, false
}

// canSign reports whether the key can sign with scheme and hash, as far as
// is known without asking the TPM, and if not, why.
func (k *Key) canSign(scheme, hash tpm2.TPMAlgID, h crypto.Hash) error {
	if !k.s.hashes[hash] {
		return fmt.Errorf("%w: the TPM does not implement %v", keystore.ErrUnsupported, h)
	}
	if k.fixedScheme != tpm2.TPMAlgNull && (k.fixedScheme != scheme || k.fixedHash != hash) {
		return fmt.Errorf("%w: the key is bound to scheme %v with hash %v", keystore.ErrUnsupported, k.fixedScheme, k.fixedHash)
	}
	return nil
}

// tlsSchemes lists the TLS 1.2/1.3 signature schemes the key can produce, in
// the order TLS prefers them. ECDSA keys sign only with the hash that matches
// their curve (what TLS 1.3 requires, and what every TPM can do).
func (k *Key) tlsSchemes() []tls.SignatureScheme {
	var out []tls.SignatureScheme
	add := func(s tls.SignatureScheme, scheme tpm2.TPMAlgID, h crypto.Hash) {
		hash, _ := tpmHash(h)
		if k.canSign(scheme, hash, h) == nil {
			out = append(out, s)
		}
	}
	switch k.alg {
	case keystore.ECDSAP256:
		add(tls.ECDSAWithP256AndSHA256, tpm2.TPMAlgECDSA, crypto.SHA256)
	case keystore.ECDSAP384:
		add(tls.ECDSAWithP384AndSHA384, tpm2.TPMAlgECDSA, crypto.SHA384)
	default:
		add(tls.PSSWithSHA256, tpm2.TPMAlgRSAPSS, crypto.SHA256)
		add(tls.PSSWithSHA384, tpm2.TPMAlgRSAPSS, crypto.SHA384)
		add(tls.PSSWithSHA512, tpm2.TPMAlgRSAPSS, crypto.SHA512)
		add(tls.PKCS1WithSHA256, tpm2.TPMAlgRSASSA, crypto.SHA256)
		add(tls.PKCS1WithSHA384, tpm2.TPMAlgRSASSA, crypto.SHA384)
		add(tls.PKCS1WithSHA512, tpm2.TPMAlgRSASSA, crypto.SHA512)
	}
	return out
}

// Public returns the public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Handle returns the key's persistent handle.
func (k *Key) Handle() uint32 { return uint32(k.handle) }

// SupportedSignatureAlgorithms returns the TLS signature schemes the key can
// produce on this TPM: for ECDSA only the scheme matching its curve; for RSA,
// PSS and PKCS #1 v1.5 with each of SHA-256/384/512 the TPM implements. Put
// it in tls.Certificate.SupportedSignatureAlgorithms (keystore.TLSCertificate
// does) so TLS never asks for a signature the TPM cannot make.
func (k *Key) SupportedSignatureAlgorithms() []tls.SignatureScheme {
	return slices.Clone(k.schemes)
}

// Info describes the key. NonExtractable reflects fixedTPM and fixedParent
// in the key's public area.
func (k *Key) Info() keystore.KeyInfo {
	return keystore.KeyInfo{
		Algorithm:      k.alg,
		Kind:           keystore.KindTPM,
		Location:       k.location,
		HardwareBacked: true,
		NonExtractable: k.attrs.FixedTPM && k.attrs.FixedParent,
	}
}

// Sign signs digest with TPM2_Sign. opts.HashFunc() must match the digest
// length. ECDSA signatures are ASN.1 DER; RSA signs PKCS #1 v1.5, or PSS with
// a hash-length salt when opts is *rsa.PSSOptions. A hash or scheme the TPM
// or the key cannot use fails with an error wrapping keystore.ErrUnsupported;
// a key deleted meanwhile with keystore.ErrNotFound. rand is ignored: the TPM
// makes its own randomness.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	where := fmt.Sprintf("tpmstore: sign with key at handle %#x", uint32(k.handle))
	if err := keystore.CheckDigest(digest, opts); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	h := opts.HashFunc()
	hash, ok := tpmHash(h)
	if !ok {
		return nil, fmt.Errorf("%s: %w: hash %v", where, keystore.ErrUnsupported, h)
	}
	pss, isPSS := opts.(*rsa.PSSOptions)
	var scheme tpm2.TPMAlgID
	switch {
	case k.alg.IsRSA() && isPSS:
		if salt := keystore.PSSSaltLength(pss, h); salt != h.Size() {
			return nil, fmt.Errorf("%s: %w: PSS salt length %d (the TPM uses the hash length, %d)", where, keystore.ErrUnsupported, salt, h.Size())
		}
		scheme = tpm2.TPMAlgRSAPSS
	case k.alg.IsRSA():
		scheme = tpm2.TPMAlgRSASSA
	case isPSS:
		return nil, fmt.Errorf("%s: %w: PSS options for an ECDSA key", where, keystore.ErrUnsupported)
	default:
		scheme = tpm2.TPMAlgECDSA
	}
	if err := k.canSign(scheme, hash, h); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}

	ctx := context.Background()
	if err := k.s.lock(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	rsp, err := do(ctx, k.s, tpm2.Sign{
		KeyHandle: tpm2.NamedHandle{Handle: k.handle, Name: k.name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  scheme,
			Details: tpm2.NewTPMUSigScheme(scheme, &tpm2.TPMSSchemeHash{HashAlg: hash}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	})
	k.s.unlock()
	switch {
	case errors.Is(err, tpm2.TPMRCHandle):
		return nil, fmt.Errorf("%s: TPM2_Sign: %w: %w", where, keystore.ErrNotFound, err)
	case errors.Is(err, tpm2.TPMRCScheme), errors.Is(err, tpm2.TPMRCHash):
		return nil, fmt.Errorf("%s: TPM2_Sign with %v: %w: %w", where, h, keystore.ErrUnsupported, err)
	case err != nil:
		return nil, fmt.Errorf("%s: TPM2_Sign: %w", where, err)
	}

	switch scheme {
	case tpm2.TPMAlgECDSA:
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("%s: TPM2_Sign response: %w", where, err)
		}
		der, err := asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig.SignatureR.Buffer),
			new(big.Int).SetBytes(sig.SignatureS.Buffer),
		})
		if err != nil {
			return nil, fmt.Errorf("%s: encode ECDSA signature: %w", where, err)
		}
		return der, nil
	case tpm2.TPMAlgRSAPSS:
		sig, err := rsp.Signature.Signature.RSAPSS()
		if err != nil {
			return nil, fmt.Errorf("%s: TPM2_Sign response: %w", where, err)
		}
		// TPMs choose the PSS salt length themselves (hash length, or the
		// maximum on some FIPS 186-4 era firmware). TLS needs the hash length,
		// so check rather than hand out a signature the peer will reject.
		if err := rsa.VerifyPSS(k.pub.(*rsa.PublicKey), h, digest, sig.Sig.Buffer,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			return nil, fmt.Errorf("%s: %w: the TPM's PSS signature does not verify with a %d-byte salt: %w",
				where, keystore.ErrUnsupported, h.Size(), err)
		}
		return sig.Sig.Buffer, nil
	default:
		sig, err := rsp.Signature.Signature.RSASSA()
		if err != nil {
			return nil, fmt.Errorf("%s: TPM2_Sign response: %w", where, err)
		}
		return sig.Sig.Buffer, nil
	}
}
