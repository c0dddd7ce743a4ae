// Package filestore keeps keys as PEM files. It is for development only: the
// private key is plain bytes on disk and in memory, so every key it returns
// reports itself Insecure, and everything that shows a key store (logs,
// `thingd key info`, the shadow) must say so.
package filestore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/thingd/thingd/keystore"
)

// Store is a keystore.Store over PEM files named by file: URIs.
type Store struct{}

var _ keystore.Store = (*Store)(nil)

// New returns a file store. It holds no resources.
func New() *Store { return &Store{} }

func checkURI(uri *keystore.URI) (string, error) {
	if uri == nil || uri.Scheme != keystore.SchemeFile {
		return "", fmt.Errorf("filestore: %v is not a file: URI", uri)
	}
	return uri.FilePath(), nil
}

// Generate creates a key and writes it as a PKCS #8 PEM file with mode 0600.
// The file is written atomically (temporary file, fsync, link into place), so
// an existing key is never replaced: that fails with keystore.ErrExists.
func (s *Store) Generate(ctx context.Context, uri *keystore.URI, alg keystore.Algorithm) (keystore.Key, error) {
	path, err := checkURI(uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var priv crypto.Signer
	switch {
	case alg.Curve() != nil:
		priv, err = ecdsa.GenerateKey(alg.Curve(), rand.Reader)
	case alg.IsRSA():
		priv, err = rsa.GenerateKey(rand.Reader, alg.RSABits())
	default:
		return nil, fmt.Errorf("filestore: generate: %w: algorithm %q", keystore.ErrUnsupported, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: generate %s: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("filestore: encode key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeNew(path, data); err != nil {
		return nil, err
	}
	return &key{priv: priv, alg: alg, loc: uri.Redacted()}, nil
}

// writeNew writes data to a new file at path without ever replacing one.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("filestore: create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*.tmp")
	if err != nil {
		return fmt.Errorf("filestore: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: chmod key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: sync key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("filestore: close key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("filestore: %s: %w", path, keystore.ErrExists)
		}
		return fmt.Errorf("filestore: install key file: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filestore: open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("filestore: sync directory: %w", err)
	}
	return nil
}

// Open reads the PEM key at uri. A key file readable by group or others is
// refused, as ssh does.
func (s *Store) Open(ctx context.Context, uri *keystore.URI) (keystore.Key, error) {
	path, err := checkURI(uri)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("filestore: %s: %w", path, keystore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("filestore: %s: permissions %#o are too open, want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("filestore: %s: no PEM block", path)
	}
	var priv any
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("filestore: %s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: %s: parse key: %w", path, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("filestore: %s: %w: key type %T", path, keystore.ErrUnsupported, priv)
	}
	alg, err := keystore.AlgorithmOf(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("filestore: %s: %w", path, err)
	}
	return &key{priv: signer, alg: alg, loc: uri.Redacted()}, nil
}

// Delete removes the key file. A missing file is not an error.
func (s *Store) Delete(ctx context.Context, uri *keystore.URI) error {
	path, err := checkURI(uri)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filestore: delete: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// Close does nothing; a file store holds no resources.
func (s *Store) Close() error { return nil }

type key struct {
	priv crypto.Signer
	alg  keystore.Algorithm
	loc  string
}

func (k *key) Public() crypto.PublicKey { return k.priv.Public() }

func (k *key) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := keystore.CheckDigest(digest, opts); err != nil {
		return nil, err
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		opts = &rsa.PSSOptions{Hash: pss.HashFunc(), SaltLength: keystore.PSSSaltLength(pss, pss.HashFunc())}
	}
	return k.priv.Sign(r, digest, opts)
}

func (k *key) Info() keystore.KeyInfo {
	return keystore.KeyInfo{
		Algorithm: k.alg,
		Kind:      keystore.KindFile,
		Location:  k.loc,
		Insecure:  true,
	}
}
