// Package keystore names device keys by URI and hands them out as
// [crypto.Signer]s whose private half never leaves the module that made it.
//
// A [Store] is one key module: a PKCS#11 token (package p11store), a TPM 2.0
// (package tpmstore) or, for development only, a directory of PEM files
// (package filestore). Keys inside a store are addressed by a parsed [URI]:
//
//	pkcs11:token=thingd;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/thingd/pin
//	tpm:handle=0x81000100?device=/dev/tpmrm0
//	file:/var/lib/thingd/device-key.pem
//
// This package imports none of its backends; the agent chooses one by the URI
// scheme. Everything above the keystore (mutual TLS, CSRs, rotation) works
// with the [Key] interface only.
package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors every backend wraps, so callers can test with [errors.Is].
var (
	// ErrNotFound means no key exists at the URI.
	ErrNotFound = errors.New("keystore: key not found")
	// ErrExists means Generate was asked to create a key where one already exists.
	ErrExists = errors.New("keystore: key already exists")
	// ErrUnsupported means the backend cannot do what was asked (an algorithm,
	// a hash, a padding scheme).
	ErrUnsupported = errors.New("keystore: unsupported")
)

// Algorithm names a key type and size.
type Algorithm string

// The algorithms a Store may support. ECDSAP256 is the default.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
)

// DefaultAlgorithm is used when none is given.
const DefaultAlgorithm = ECDSAP256

// Algorithms lists every algorithm in a stable order.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072}

// ParseAlgorithm accepts the CLI spelling ("ecdsa-p256") and the job document
// spelling ("ECDSA_P256"), case-insensitively. The empty string yields
// [DefaultAlgorithm].
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return DefaultAlgorithm, nil
	}
	norm := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	for _, a := range Algorithms {
		if string(a) == norm {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w: algorithm %q (want one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072)", ErrUnsupported, s)
}

// IsRSA reports whether a is an RSA algorithm.
func (a Algorithm) IsRSA() bool { return a == RSA2048 || a == RSA3072 }

// Curve returns the elliptic curve of an ECDSA algorithm, or nil.
func (a Algorithm) Curve() elliptic.Curve {
	switch a {
	case ECDSAP256:
		return elliptic.P256()
	case ECDSAP384:
		return elliptic.P384()
	}
	return nil
}

// RSABits returns the modulus size of an RSA algorithm, or 0.
func (a Algorithm) RSABits() int {
	switch a {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	}
	return 0
}

// AlgorithmOf returns the algorithm of a public key.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", fmt.Errorf("%w: curve %s", ErrUnsupported, k.Curve.Params().Name)
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		}
		return "", fmt.Errorf("%w: RSA-%d", ErrUnsupported, k.N.BitLen())
	}
	return "", fmt.Errorf("%w: public key type %T", ErrUnsupported, pub)
}

// Kind names the sort of module a key lives in.
type Kind string

// The kinds of key store.
const (
	KindPKCS11 Kind = "pkcs11"
	KindTPM    Kind = "tpm"
	KindFile   Kind = "file"
)

// KeyInfo describes where a key lives and how well it is protected.
type KeyInfo struct {
	// Algorithm of the key.
	Algorithm Algorithm
	// Kind of store holding the key.
	Kind Kind
	// Location is the key URI with secrets removed (see [URI.Redacted]).
	Location string
	// HardwareBacked reports whether the key lives in a security module
	// (a PKCS#11 token or a TPM) rather than in a file.
	HardwareBacked bool
	// NonExtractable reports whether the module refuses to export the private
	// key (PKCS#11: CKA_SENSITIVE and not CKA_EXTRACTABLE; TPM: fixedTPM and
	// fixedParent).
	NonExtractable bool
	// Insecure is set for development-only stores; anything that reports
	// the key must say so.
	Insecure bool
}

// Key is a private key held by a Store. Sign is safe for concurrent use,
// checks that the digest length matches opts.HashFunc(), returns ASN.1 DER
// signatures for ECDSA, and supports both PKCS #1 v1.5 and PSS
// (*rsa.PSSOptions) for RSA, so a Key can be the client key of a TLS 1.2 or
// 1.3 connection.
type Key interface {
	crypto.Signer
	// Info describes the key.
	Info() KeyInfo
}

// Store is one key module. Keys are addressed by URIs of the store's scheme.
// Implementations are safe for concurrent use.
type Store interface {
	// Generate creates a new key of the given algorithm inside the module at
	// uri. It fails with ErrExists if a key is already there, and with
	// ErrUnsupported if the module cannot make that algorithm.
	Generate(ctx context.Context, uri *URI, alg Algorithm) (Key, error)
	// Open returns the existing key at uri, or ErrNotFound.
	Open(ctx context.Context, uri *URI) (Key, error)
	// Delete destroys the key at uri. Deleting a missing key is not an error.
	Delete(ctx context.Context, uri *URI) error
	// Close releases the module. Keys opened from the store must not be used
	// afterwards.
	Close() error
}

// Fingerprint returns the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo
// of pub, the key's stable public identity.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("keystore: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// CheckDigest verifies that digest has the length of the hash opts names,
// the check every Key.Sign performs before calling its module. A zero hash
// is refused: keys here sign digests, never raw messages.
func CheckDigest(digest []byte, opts crypto.SignerOpts) error {
	if opts == nil {
		return fmt.Errorf("keystore: sign: nil SignerOpts")
	}
	h := opts.HashFunc()
	if h == 0 {
		return fmt.Errorf("%w: sign: signing without a hash (raw message) is not supported", ErrUnsupported)
	}
	if !h.Available() {
		return fmt.Errorf("%w: sign: hash %v", ErrUnsupported, h)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("keystore: sign: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	return nil
}

// PSSSaltLength returns the salt length to use for opts with hash h: PSSSaltLengthEqualsHash and
// PSSSaltLengthAuto become the hash length (what TLS uses), explicit lengths
// are kept.
func PSSSaltLength(opts *rsa.PSSOptions, h crypto.Hash) int {
	switch opts.SaltLength {
	case rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto:
		return h.Size()
	}
	return opts.SaltLength
}

// SchemeLister is implemented by keys that can produce only some TLS
// signature schemes (a TPM key, for instance, may not sign SHA-384 with a
// P-256 key). TLSCertificate uses it to restrict what TLS offers.
type SchemeLister interface {
	SupportedSignatureAlgorithms() []tls.SignatureScheme
}

// TLSCertificate returns a tls.Certificate presenting chain (leaf first, DER)
// with key as its private key, restricted to the signature schemes the key
// supports when it says so.
func TLSCertificate(key crypto.Signer, chain [][]byte) tls.Certificate {
	c := tls.Certificate{Certificate: chain, PrivateKey: key}
	if sl, ok := key.(SchemeLister); ok {
		c.SupportedSignatureAlgorithms = sl.SupportedSignatureAlgorithms()
	}
	if len(chain) > 0 {
		if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
			c.Leaf = leaf
		}
	}
	return c
}
