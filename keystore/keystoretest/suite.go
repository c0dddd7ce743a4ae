package keystoretest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingd/thingd/keystore"
)

// Run runs the whole conformance suite. setup is called at the start of every
// subtest and must return a harness on a fresh module.
func Run(t *testing.T, setup Setup) {
	t.Helper()
	for _, alg := range keystore.Algorithms {
		t.Run("Algorithm="+string(alg), func(t *testing.T) { testAlgorithm(t, setup, alg) })
	}
	t.Run("GenerateExisting", func(t *testing.T) { testGenerateExisting(t, setup) })
	t.Run("OpenMissing", func(t *testing.T) { testOpenMissing(t, setup) })
	t.Run("DeleteTwice", func(t *testing.T) { testDeleteTwice(t, setup) })
	t.Run("DistinctKeys", func(t *testing.T) { testDistinctKeys(t, setup) })
	t.Run("BadDigest", func(t *testing.T) { testBadDigest(t, setup) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, setup) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T, h *Harness) keystore.Store {
	t.Helper()
	s := h.NewStore(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("%s: Close: %v", h.Name, err)
		}
	})
	return s
}

func firstAlgorithm(h *Harness) keystore.Algorithm {
	if slices.Contains(h.Algorithms, keystore.ECDSAP256) {
		return keystore.ECDSAP256
	}
	return h.Algorithms[0]
}

func testAlgorithm(t *testing.T, setup Setup, alg keystore.Algorithm) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	uri := h.KeyURI(t, 0)
	if !slices.Contains(h.Algorithms, alg) {
		_, err := s.Generate(ctx, uri, alg)
		if !errors.Is(err, keystore.ErrUnsupported) {
			t.Fatalf("Generate(%s) on a backend without it: got %v, want ErrUnsupported", alg, err)
		}
		return
	}
	key, err := s.Generate(ctx, uri, alg)
	if err != nil {
		t.Fatalf("Generate(%s): %v", alg, err)
	}
	got, err := keystore.AlgorithmOf(key.Public())
	if err != nil || got != alg {
		t.Fatalf("public key algorithm = %v, %v; want %s", got, err, alg)
	}
	checkInfo(t, h, key, uri, alg)

	t.Run("SignVerify", func(t *testing.T) { signAll(t, key) })

	t.Run("ReopenInNewStore", func(t *testing.T) {
		s2 := newStore(t, h)
		k2, err := s2.Open(ctx, uri)
		if err != nil {
			t.Fatalf("Open from a new store: %v", err)
		}
		if !keystore.SamePublicKey(k2.Public(), key.Public()) {
			t.Fatal("reopened key has a different public key")
		}
		checkInfo(t, h, k2, uri, alg)
		signOne(t, k2, crypto.SHA256, false)
	})

	t.Run("CSR", func(t *testing.T) {
		pemCSR, err := keystore.CreateCSR(key, "gw-1")
		if err != nil {
			t.Fatalf("CreateCSR: %v", err)
		}
		csr, err := keystore.ParseCSR(pemCSR)
		if err != nil {
			t.Fatalf("ParseCSR: %v", err)
		}
		if csr.Subject.CommonName != "gw-1" {
			t.Errorf("CSR CN = %q, want gw-1", csr.Subject.CommonName)
		}
		if !keystore.SamePublicKey(csr.PublicKey, key.Public()) {
			t.Error("CSR public key is not the store key")
		}
	})

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) { tlsHandshake(t, key, v) })
	}

	t.Run("NonExtractable", func(t *testing.T) {
		if h.CheckNonExtractable == nil {
			if !key.Info().Insecure {
				t.Fatal("backend has no non-extractability check and does not report itself Insecure")
			}
			return
		}
		h.CheckNonExtractable(t, s, uri)
	})
}

func checkInfo(t *testing.T, h *Harness, key keystore.Key, uri *keystore.URI, alg keystore.Algorithm) {
	t.Helper()
	info := key.Info()
	if info.Algorithm != alg {
		t.Errorf("Info().Algorithm = %s, want %s", info.Algorithm, alg)
	}
	if info.Kind != h.Kind {
		t.Errorf("Info().Kind = %s, want %s", info.Kind, h.Kind)
	}
	if info.Location != uri.Redacted() {
		t.Errorf("Info().Location = %q, want %q", info.Location, uri.Redacted())
	}
	if strings.Contains(info.Location, "pin-value") {
		t.Errorf("Info().Location leaks a PIN: %q", info.Location)
	}
	file := h.Kind == keystore.KindFile
	if info.Insecure != file || info.HardwareBacked == file || info.NonExtractable == file {
		t.Errorf("Info() = %+v: a %s key must have Insecure=%v HardwareBacked=%v NonExtractable=%v",
			info, h.Kind, file, !file, !file)
	}
}

type sigCase struct {
	name string
	opts crypto.SignerOpts
}

func sigCases(pub crypto.PublicKey) []sigCase {
	var cs []sigCase
	for _, hh := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if _, ok := pub.(*rsa.PublicKey); ok {
			cs = append(cs,
				sigCase{"PKCS1v15-" + hh.String(), hh},
				sigCase{"PSS-" + hh.String(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hh}},
				sigCase{"PSS-auto-salt-" + hh.String(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: hh}})
		} else {
			cs = append(cs, sigCase{"ECDSA-" + hh.String(), hh})
		}
	}
	return cs
}

func signAll(t *testing.T, key keystore.Key) {
	for _, c := range sigCases(key.Public()) {
		t.Run(c.name, func(t *testing.T) { signWith(t, key, c.opts) })
	}
}

// signOne signs a random digest and verifies it with the standard library.
// A backend may refuse a hash only with ErrUnsupported, and never SHA-256.
func signOne(t *testing.T, key keystore.Key, hh crypto.Hash, pss bool) {
	t.Helper()
	var opts crypto.SignerOpts = hh
	if pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hh}
	}
	signWith(t, key, opts)
}

// signWith signs a random digest with opts and verifies the signature (PSS
// with the salt length TLS expects: the hash length).
func signWith(t *testing.T, key keystore.Key, opts crypto.SignerOpts) {
	t.Helper()
	hh := opts.HashFunc()
	_, pss := opts.(*rsa.PSSOptions)
	digest := make([]byte, hh.Size())
	rand.Read(digest)
	sig, err := key.Sign(rand.Reader, digest, opts)
	if err != nil {
		if errors.Is(err, keystore.ErrUnsupported) && hh != crypto.SHA256 {
			t.Logf("backend refuses %v with this key: %v", hh, err)
			return
		}
		t.Fatalf("Sign(%v, pss=%v): %v", hh, pss, err)
	}
	if err := verify(key.Public(), hh, digest, sig, pss); err != nil {
		t.Fatalf("signature (%v, pss=%v) does not verify: %v", hh, pss, err)
	}
}

func verify(pub crypto.PublicKey, hh crypto.Hash, digest, sig []byte, pss bool) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ecdsa.VerifyASN1 failed (is the signature ASN.1 DER?)")
		}
		return nil
	case *rsa.PublicKey:
		if pss {
			return rsa.VerifyPSS(k, hh, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(k, hh, digest, sig)
	}
	return fmt.Errorf("unexpected public key %T", pub)
}

func testGenerateExisting(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	uri := h.KeyURI(t, 0)
	alg := firstAlgorithm(h)
	k, err := s.Generate(ctx, uri, alg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Generate(ctx, uri, alg); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second Generate at the same URI: got %v, want ErrExists", err)
	}
	k2, err := s.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if !keystore.SamePublicKey(k.Public(), k2.Public()) {
		t.Fatal("a refused Generate replaced the existing key")
	}
}

func testOpenMissing(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	_, err := s.Open(ctx, h.KeyURI(t, 3))
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open of a missing key: got %v, want ErrNotFound", err)
	}
}

func testDeleteTwice(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	uri := h.KeyURI(t, 0)
	k, err := s.Generate(ctx, uri, firstAlgorithm(h))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Delete(ctx, uri); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := s.Delete(ctx, h.KeyURI(t, 5)); err != nil {
		t.Fatalf("Delete of a key that never existed: %v", err)
	}
	if _, err := s.Open(ctx, uri); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open after Delete: got %v, want ErrNotFound", err)
	}
	s2 := newStore(t, h)
	if _, err := s2.Open(ctx, uri); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open after Delete from a new store: got %v, want ErrNotFound", err)
	}
	k2, err := s.Generate(ctx, uri, firstAlgorithm(h))
	if err != nil {
		t.Fatalf("Generate after Delete: %v", err)
	}
	if keystore.SamePublicKey(k.Public(), k2.Public()) {
		t.Fatal("a key generated after Delete equals the deleted key")
	}
}

func testDistinctKeys(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	a, err := s.Generate(ctx, h.KeyURI(t, 0), firstAlgorithm(h))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Generate(ctx, h.KeyURI(t, 1), firstAlgorithm(h))
	if err != nil {
		t.Fatal(err)
	}
	if keystore.SamePublicKey(a.Public(), b.Public()) {
		t.Fatal("two slots hold the same key")
	}
	ka, err := s.Open(ctx, h.KeyURI(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !keystore.SamePublicKey(a.Public(), ka.Public()) {
		t.Fatal("slot 0 changed after generating slot 1")
	}
}

func testBadDigest(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	key, err := s.Generate(ctx, h.KeyURI(t, 0), firstAlgorithm(h))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"short", make([]byte, 20), crypto.SHA256},
		{"long", make([]byte, 48), crypto.SHA256},
		{"empty", nil, crypto.SHA384},
		{"no hash", make([]byte, 32), crypto.Hash(0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := key.Sign(rand.Reader, c.digest, c.opts); err == nil {
				t.Fatalf("Sign accepted a %d-byte digest for %v", len(c.digest), c.opts.HashFunc())
			}
		})
	}
}

func testConcurrent(t *testing.T, setup Setup) {
	h := setup(t)
	ctx := ctxFor(t)
	s := newStore(t, h)
	key, err := s.Generate(ctx, h.KeyURI(t, 0), firstAlgorithm(h))
	if err != nil {
		t.Fatal(err)
	}
	n := h.ConcurrentSigns
	if n == 0 {
		n = 1000
	}
	resources := func() int {
		if h.Resources == nil {
			return 0
		}
		return h.Resources(t, s)
	}
	var peak atomic.Int64
	round := func(n int) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				digest := make([]byte, 32)
				for i := range n {
					rand.Read(digest)
					sig, err := key.Sign(rand.Reader, digest, crypto.SHA256)
					if err != nil {
						errs <- fmt.Errorf("goroutine %d sign %d: %w", g, i, err)
						return
					}
					if i%97 == 0 {
						if err := verify(key.Public(), crypto.SHA256, digest, sig, false); err != nil {
							errs <- fmt.Errorf("goroutine %d sign %d: %w", g, i, err)
							return
						}
						if r := int64(resources()); r > peak.Load() {
							peak.Store(r)
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	// A short warm-up round fills any pool; the full round must then leave
	// exactly as many resources open as the warm-up did.
	round(max(n/20, 5))
	after1 := resources()
	round(n)
	after2 := resources()
	if after1 != after2 {
		t.Errorf("%s: open resources went from %d to %d over 8x%d concurrent signs", h.Name, after1, after2, n)
	}
	if p := peak.Load(); p > 16 {
		t.Errorf("%s: %d resources open at once while signing, want a bounded pool (<= 16)", h.Name, p)
	}
	t.Logf("%s: resources after rounds: %d, %d; peak %d", h.Name, after1, after2, peak.Load())
}

// tlsHandshake runs a mutual-TLS handshake over loopback with key as the
// client key, pinned to one TLS version, and checks the server saw it.
func tlsHandshake(t *testing.T, key keystore.Key, version uint16) {
	t.Helper()
	ca := newTestCA(t)
	clientDER := ca.issue(t, "gw-1", key.Public(), true)
	serverKey, _ := ecdsa.GenerateKey(ellipticP256(), rand.Reader)
	serverDER := ca.issue(t, "localhost", serverKey.Public(), false)

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	serverCfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   version,
		MaxVersion:   version,
	}
	clientCert := keystore.TLSCertificate(key, [][]byte{clientDER})
	clientCfg := &tls.Config{
		RootCAs:    pool,
		ServerName: "localhost",
		MinVersion: version,
		MaxVersion: version,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &clientCert, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cn  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) == 0 {
			done <- result{err: errors.New("no client certificate")}
			return
		}
		// Read one byte so the client's TLS 1.3 certificate flight is processed.
		buf := make([]byte, 1)
		if _, err := tc.Read(buf); err != nil {
			done <- result{err: err}
			return
		}
		tc.Write(buf)
		done <- result{cn: st.PeerCertificates[0].Subject.CommonName}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(c, clientCfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client handshake (%s): %v", tls.VersionName(version), err)
	}
	if _, err := tc.Write([]byte{42}); err != nil {
		t.Fatalf("client write: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := tc.Read(buf); err != nil {
		t.Fatalf("client read: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("server side of %s handshake: %v", tls.VersionName(version), r.err)
	}
	if r.cn != "gw-1" {
		t.Fatalf("server saw client CN %q, want gw-1", r.cn)
	}
	if got := tc.ConnectionState().Version; got != version {
		t.Fatalf("negotiated %s, want %s", tls.VersionName(got), tls.VersionName(version))
	}
}
