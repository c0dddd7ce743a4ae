package p11store_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/p11store"
)

// benchKeys makes one key per algorithm on a fresh token.
func benchKeys(b *testing.B) (*testToken, *p11store.Store, map[keystore.Algorithm]keystore.Key) {
	tk := newToken(b)
	s := tk.open(b, p11store.Options{})
	keys := map[keystore.Algorithm]keystore.Key{}
	for _, alg := range keystore.Algorithms {
		k, err := s.Generate(testContext(b), tk.keyURI(string(alg)), alg)
		if err != nil {
			b.Fatal(err)
		}
		keys[alg] = k
	}
	return tk, s, keys
}

func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// BenchmarkSign signs SHA-256 digests through Key.Sign: digest check, the
// session pool, DigestInfo or PSS parameters, ASN.1 conversion for ECDSA.
func BenchmarkSign(b *testing.B) {
	_, _, keys := benchKeys(b)
	digest := sha256.Sum256([]byte("thingd"))
	for _, c := range keystoretest.SignCases {
		b.Run(c.Name, func(b *testing.B) {
			k, opts := keys[c.Alg], c.Opts()
			for b.Loop() {
				if _, err := k.Sign(rand.Reader, digest[:], opts); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, "signs/s")
		})
	}
}

// BenchmarkSignParallel is BenchmarkSign from GOMAXPROCS goroutines sharing
// the default pool of 4 sessions.
func BenchmarkSignParallel(b *testing.B) {
	_, _, keys := benchKeys(b)
	digest := sha256.Sum256([]byte("thingd"))
	for _, c := range keystoretest.SignCases {
		b.Run(c.Name, func(b *testing.B) {
			k, opts := keys[c.Alg], c.Opts()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Sign(rand.Reader, digest[:], opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, "signs/s")
		})
	}
}

// BenchmarkRawSign is the baseline for BenchmarkSign: C_SignInit and C_Sign
// on one session and one object handle, with the mechanism input prepared
// once.
func BenchmarkRawSign(b *testing.B) {
	tk, s, _ := benchKeys(b)
	digest := sha256.Sum256([]byte("thingd"))
	digestInfo := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, digest[:]...)
	for _, c := range keystoretest.SignCases {
		b.Run(c.Name, func(b *testing.B) {
			r, err := s.RawSigner(testContext(b), tk.keyURI(string(c.Alg)))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			mech, param, data := uint(pkcs11.CKM_ECDSA), []byte(nil), digest[:]
			switch {
			case c.PSS:
				mech, param = pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)
			case c.Alg.IsRSA():
				mech, data = pkcs11.CKM_RSA_PKCS, digestInfo
			}
			for b.Loop() {
				if _, err := r.Sign(mech, param, data); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, "signs/s")
		})
	}
}

// BenchmarkGenerate makes token key pairs (and deletes them, untimed).
func BenchmarkGenerate(b *testing.B) {
	tk := newToken(b)
	s := tk.open(b, p11store.Options{})
	ctx := context.Background() // b.N RSA-3072 keys can take minutes
	for _, alg := range keystore.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			for i := range b.N {
				uri := tk.keyURI(fmt.Sprintf("gen-%s-%d", alg, i))
				if _, err := s.Generate(ctx, uri, alg); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(ctx, uri); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportRate(b, "keys/s")
		})
	}
}
