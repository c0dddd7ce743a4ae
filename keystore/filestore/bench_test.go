package filestore_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
	"github.com/thingd/thingd/keystore/keystoretest"
)

// benchKeys writes one key file per algorithm and opens it.
func benchKeys(b *testing.B) map[keystore.Algorithm]keystore.Key {
	dir := b.TempDir()
	s := filestore.New()
	keys := map[keystore.Algorithm]keystore.Key{}
	for _, alg := range keystore.Algorithms {
		k, err := s.Generate(context.Background(), keystore.MustParseURI("file:"+filepath.Join(dir, string(alg)+".pem")), alg)
		if err != nil {
			b.Fatal(err)
		}
		keys[alg] = k
	}
	return keys
}

// BenchmarkSign signs SHA-256 digests through Key.Sign (digest check, PSS
// salt normalisation, then crypto/ecdsa or crypto/rsa).
func BenchmarkSign(b *testing.B) {
	keys := benchKeys(b)
	digest := sha256.Sum256([]byte("thingd"))
	for _, c := range keystoretest.SignCases {
		b.Run(c.Name, func(b *testing.B) {
			k, opts := keys[c.Alg], c.Opts()
			for b.Loop() {
				if _, err := k.Sign(rand.Reader, digest[:], opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawSign is the baseline for BenchmarkSign: the Go private key
// parsed from the same PEM file, signing directly.
func BenchmarkRawSign(b *testing.B) {
	s := filestore.New()
	digest := sha256.Sum256([]byte("thingd"))
	for _, c := range keystoretest.SignCases {
		b.Run(c.Name, func(b *testing.B) {
			// -count re-runs each sub-benchmark: a fresh directory each time.
			path := filepath.Join(b.TempDir(), c.Name+".pem")
			if _, err := s.Generate(context.Background(), keystore.MustParseURI("file:"+path), c.Alg); err != nil {
				b.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			block, _ := pem.Decode(data)
			if block == nil {
				b.Fatal("no PEM block")
			}
			priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				b.Fatal(err)
			}
			signer := priv.(crypto.Signer)
			opts := c.Opts()
			for b.Loop() {
				if _, err := signer.Sign(rand.Reader, digest[:], opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerate writes key files (generation, PKCS #8 encoding, fsync,
// link into place) and deletes them, untimed.
func BenchmarkGenerate(b *testing.B) {
	dir := b.TempDir()
	s := filestore.New()
	ctx := context.Background()
	for _, alg := range keystore.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			i := 0
			for b.Loop() {
				uri := keystore.MustParseURI("file:" + filepath.Join(dir, fmt.Sprintf("gen-%s-%d.pem", alg, i)))
				i++
				if _, err := s.Generate(ctx, uri, alg); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(ctx, uri); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
