package tpmstore_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"strconv"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// benchBackend opens a fresh TPM of one kind for a benchmark.
type benchBackend struct {
	name  string
	algs  []keystore.Algorithm
	setup func(b *testing.B) (open func(b *testing.B) *tpmstore.Store, uri func(n int) *keystore.URI, raw func(b *testing.B) transport.TPM)
}

var benchBackends = []benchBackend{
	{"simulator", simulatorAlgorithms, func(b *testing.B) (func(*testing.B) *tpmstore.Store, func(int) *keystore.URI, func(*testing.B) transport.TPM) {
		sim := newSimulator(b)
		return func(b *testing.B) *tpmstore.Store { return openSimStore(b, sim) },
			func(n int) *keystore.URI { return keystore.MustParseURI("tpm:handle=0x8100010" + string(rune('0'+n))) },
			func(*testing.B) transport.TPM { return sim }
	}},
	{"swtpm-unix", swtpmAlgorithms, func(b *testing.B) (func(*testing.B) *tpmstore.Store, func(int) *keystore.URI, func(*testing.B) transport.TPM) {
		p := keystoretest.StartSwtpm(b, keystoretest.SwtpmUnix)
		return func(b *testing.B) *tpmstore.Store { return openSwtpm(b, p) },
			func(n int) *keystore.URI { return swtpmURI(p, 0x81000100+uint32(n)) },
			func(b *testing.B) transport.TPM {
				tpm, err := linuxudstpm.Open(p.SocketPath())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { tpm.Close() })
				return tpm
			}
	}},
	{"swtpm-tcp", swtpmAlgorithms, func(b *testing.B) (func(*testing.B) *tpmstore.Store, func(int) *keystore.URI, func(*testing.B) transport.TPM) {
		p := keystoretest.StartSwtpm(b, keystoretest.SwtpmTCP)
		return func(b *testing.B) *tpmstore.Store { return openSwtpm(b, p) },
			func(n int) *keystore.URI { return swtpmURI(p, 0x81000100+uint32(n)) },
			func(b *testing.B) transport.TPM {
				tpm, err := tcp.Open(tcp.Config{
					CommandAddress:  "127.0.0.1:" + strconv.Itoa(p.Port()),
					PlatformAddress: "127.0.0.1:" + strconv.Itoa(p.Port()+1),
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { tpm.Close() })
				return tpm
			}
	}},
}

// BenchmarkSign measures Key.Sign (SHA-256; PKCS #1 v1.5 and PSS for RSA),
// the whole path a TLS handshake takes.
func BenchmarkSign(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			for _, alg := range be.algs {
				opts := []crypto.SignerOpts{crypto.SHA256}
				names := []string{string(alg)}
				if alg.IsRSA() {
					opts = append(opts, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
					names = []string{string(alg) + "-pkcs1", string(alg) + "-pss"}
				}
				for i, o := range opts {
					b.Run(names[i], func(b *testing.B) {
						open, uri, _ := be.setup(b)
						s := open(b)
						defer s.Close()
						k := generate(b, s, uri(0), alg)
						digest := make([]byte, 32)
						rand.Read(digest)
						for b.Loop() {
							if _, err := k.Sign(nil, digest, o); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}

// BenchmarkRawSign measures a bare tpm2.Sign loop (ECDSA P-256, SHA-256) on
// the same kind of persistent key, to show what the Store adds to Sign.
func BenchmarkRawSign(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			open, uri, raw := be.setup(b)
			s := open(b)
			generate(b, s, uri(0), keystore.ECDSAP256)
			s.Close() // swtpm over TCP serves one client at a time
			tpm := raw(b)
			h := tpm2.TPMHandle(uri(0).Handle())
			rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tpm)
			if err != nil {
				b.Fatal(err)
			}
			digest := make([]byte, 32)
			cmd := tpm2.Sign{
				KeyHandle: tpm2.NamedHandle{Handle: h, Name: rp.Name},
				Digest:    tpm2.TPM2BDigest{Buffer: digest},
				InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}
			for b.Loop() {
				if _, err := cmd.Execute(tpm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerate measures Generate followed by Delete (the handle must be
// free for the next round).
func BenchmarkGenerate(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			for _, alg := range be.algs {
				b.Run(string(alg), func(b *testing.B) {
					open, uri, _ := be.setup(b)
					s := open(b)
					defer s.Close()
					ctx := ctxT(b)
					for b.Loop() {
						if _, err := s.Generate(ctx, uri(0), alg); err != nil {
							b.Fatal(err)
						}
						if err := s.Delete(ctx, uri(0)); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
