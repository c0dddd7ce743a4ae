package tpmstore_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/tpmstore"
)

var simKeyURI = keystore.MustParseURI("tpm:handle=0x81000100")

func generate(t testing.TB, s keystore.Store, uri *keystore.URI, alg keystore.Algorithm) keystore.Key {
	t.Helper()
	k, err := s.Generate(ctxT(t), uri, alg)
	if err != nil {
		t.Fatalf("Generate(%s, %s): %v", uri, alg, err)
	}
	return k
}

func signVerify(t testing.TB, k crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte(t.Name()))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
	}
}

func transientHandles(t testing.TB, s *tpmstore.Store) int {
	t.Helper()
	n, err := s.TransientHandles(ctxT(t))
	if err != nil {
		t.Fatalf("TransientHandles: %v", err)
	}
	return n
}

// TestManySignsNoTransientObjects signs 10,000 times and checks that no
// transient object is left in the TPM, before, during or after.
func TestManySignsNoTransientObjects(t *testing.T) {
	s := openSimStore(t, newSimulator(t))
	defer s.Close()
	if n := transientHandles(t, s); n != 0 {
		t.Fatalf("transient objects on a fresh simulator: %d", n)
	}
	k := generate(t, s, simKeyURI, keystore.ECDSAP256)
	if n := transientHandles(t, s); n != 0 {
		t.Fatalf("transient objects after Generate: %d, want 0", n)
	}
	digest := make([]byte, 32)
	for i := range 10_000 {
		if _, err := k.Sign(nil, digest, crypto.SHA256); err != nil {
			t.Fatalf("sign %d: %v", i, err)
		}
		if i == 5_000 {
			if n := transientHandles(t, s); n != 0 {
				t.Fatalf("transient objects after %d signs: %d, want 0", i, n)
			}
		}
	}
	if n := transientHandles(t, s); n != 0 {
		t.Fatalf("transient objects after 10,000 signs: %d, want 0", n)
	}
}

// TestSwtpmRestart checks that a key survives swtpm restarts on the same
// state directory, orderly (SIGTERM) and not (SIGKILL), over tcp:.
func TestSwtpmRestart(t *testing.T) {
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmTCP)
	uri := swtpmURI(p, 0x81000100)
	s := openSwtpm(t, p)
	k := generate(t, s, uri, keystore.ECDSAP256)
	want := k.Public()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var crashed *tpmstore.Store
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGKILL} {
		p.Restart(sig)
		if crashed != nil {
			// Its connection died with swtpm: Close reports that, quickly.
			err := crashed.Close()
			t.Logf("Close of a Store whose swtpm was killed: %v", err)
			if err == nil {
				t.Error("Close after swtpm died: want an error (TPM2_Shutdown cannot be sent)")
			}
			crashed = nil
		}
		s := openSwtpm(t, p)
		k, err := s.Open(ctxT(t), uri)
		if err != nil {
			t.Fatalf("Open after %v restart: %v", sig, err)
		}
		if !keystore.SamePublicKey(k.Public(), want) {
			t.Fatalf("after %v restart the key at %s has another public key", sig, uri)
		}
		signVerify(t, k)
		if sig == syscall.SIGKILL {
			// Leave the Store open, as a crashing agent would: the next
			// restart is then a power cut with no TPM2_Shutdown at all.
			crashed = s
			continue
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := crashed.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// rawDAKey creates, with plain go-tpm, a key like ours but without noDA and
// persists it at handle, as the control group of TestLockoutNoDA.
func rawDAKey(t *testing.T, tpm transport.TPM, handle tpm2.TPMHandle) tpm2.TPM2BName {
	t.Helper()
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tpm)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(tpm)
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}
	tmpl := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: true}, // no NoDA
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(tpm)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic}.Execute(tpm)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(tpm)
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: handle}).Execute(tpm); err != nil {
		t.Fatalf("EvictControl: %v", err)
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: handle}.Execute(tpm)
	if err != nil {
		t.Fatalf("ReadPublic: %v", err)
	}
	return rp.Name
}

func rawSign(tpm transport.TPM, handle tpm2.TPMHandle, name tpm2.TPM2BName) error {
	digest := sha256.Sum256([]byte("lockout"))
	_, err := tpm2.Sign{
		KeyHandle: tpm2.NamedHandle{Handle: handle, Name: name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
		InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(tpm)
	return err
}

// TestLockoutNoDA power-cuts swtpm several times while keys are in use. A
// key without noDA ends in dictionary-attack lockout (the control group); a
// key from Generate (noDA) keeps signing.
func TestLockoutNoDA(t *testing.T) {
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmUnix)
	raw, err := linuxudstpm.Open(p.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const daHandle = tpm2.TPMHandle(0x81000200)
	daName := rawDAKey(t, raw, daHandle)
	uri := swtpmURI(p, 0x81000100)
	s := openSwtpm(t, p)
	generate(t, s, uri, keystore.ECDSAP256)
	s.Close()

	for i := range 5 {
		s := openSwtpm(t, p)
		k, err := s.Open(ctxT(t), uri)
		if err != nil {
			t.Fatalf("power cut %d: Open: %v", i, err)
		}
		signVerify(t, k)
		daErr := rawSign(raw, daHandle, daName)
		t.Logf("before power cut %d: DA-protected key: %v", i+1, daErr)
		// Power cut: swtpm dies without TPM2_Shutdown, and the Store is not
		// closed (it would send one).
		p.Restart(syscall.SIGKILL)
	}

	if err := rawSign(raw, daHandle, daName); !errors.Is(err, tpm2.TPMRCLockout) {
		t.Fatalf("control group: DA-protected key after 5 power cuts: got %v, want TPM_RC_LOCKOUT", err)
	}
	s = openSwtpm(t, p)
	defer s.Close()
	k, err := s.Open(ctxT(t), uri)
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, k)
	attrs, err := s.PublicAttributes(ctxT(t), uri)
	if err != nil {
		t.Fatal(err)
	}
	if !attrs.NoDA {
		t.Fatal("generated key lacks noDA")
	}
}

func TestGenerateExisting(t *testing.T) {
	sim := newSimulator(t)
	s := openSimStore(t, sim)
	defer s.Close()
	ctx := ctxT(t)
	first := generate(t, s, simKeyURI, keystore.ECDSAP256)
	_, err := s.Generate(ctx, simKeyURI, keystore.RSA2048)
	if !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("Generate on an occupied handle: got %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "0x81000100") {
		t.Errorf("error %q does not name the handle", err)
	}
	k, err := s.Open(ctx, simKeyURI)
	if err != nil || !keystore.SamePublicKey(k.Public(), first.Public()) {
		t.Fatalf("key changed after a refused Generate: %v", err)
	}

	// A foreign object (a storage key persisted by someone else) also
	// occupies its handle, and is no signing key.
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		PersistentHandle: 0x81000001}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(sim)
	srkURI := keystore.MustParseURI("tpm:handle=0x81000001")
	if _, err := s.Generate(ctx, srkURI, keystore.ECDSAP256); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("Generate over a persisted SRK: got %v, want ErrExists", err)
	}
	if _, err := s.Open(ctx, srkURI); !errors.Is(err, keystore.ErrUnsupported) || !strings.Contains(err.Error(), "not an unrestricted signing key") {
		t.Fatalf("Open of a storage key: got %v, want ErrUnsupported naming the reason", err)
	}
	if n := transientHandles(t, s); n != 0 {
		t.Fatalf("%d transient objects left", n)
	}
}

func TestOpenMissingAndDelete(t *testing.T) {
	s := openSimStore(t, newSimulator(t))
	defer s.Close()
	ctx := ctxT(t)
	if _, err := s.Open(ctx, simKeyURI); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open of an empty handle: got %v, want ErrNotFound", err)
	} else if !strings.Contains(err.Error(), "TPM2_ReadPublic on handle 0x81000100") {
		t.Errorf("error %q does not name the command and handle", err)
	}
	if _, err := s.PublicAttributes(ctx, simKeyURI); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("PublicAttributes of an empty handle: got %v, want ErrNotFound", err)
	}
	k := generate(t, s, simKeyURI, keystore.ECDSAP256)
	for i := range 2 {
		if err := s.Delete(ctx, simKeyURI); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := s.Open(ctx, simKeyURI); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open after Delete: got %v, want ErrNotFound", err)
	}
	_, err := k.Sign(nil, make([]byte, 32), crypto.SHA256)
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Sign with a deleted key: got %v, want ErrNotFound", err)
	}
}

// TestDistinctKeys checks that keys are not deterministic primaries: the
// same template on the same handle gives a new key every time.
func TestDistinctKeys(t *testing.T) {
	s := openSimStore(t, newSimulator(t))
	defer s.Close()
	ctx := ctxT(t)
	seen := map[string]bool{}
	for i := range 3 {
		k := generate(t, s, simKeyURI, keystore.ECDSAP256)
		fp, err := keystore.Fingerprint(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		if seen[fp] {
			t.Fatalf("Generate #%d returned a key seen before", i+1)
		}
		seen[fp] = true
		if err := s.Delete(ctx, simKeyURI); err != nil {
			t.Fatal(err)
		}
	}
	a := generate(t, s, keystore.MustParseURI("tpm:handle=0x81000100"), keystore.ECDSAP256)
	b := generate(t, s, keystore.MustParseURI("tpm:handle=0x81000101"), keystore.ECDSAP256)
	if keystore.SamePublicKey(a.Public(), b.Public()) {
		t.Fatal("two handles hold the same key")
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	open := func(device string) error {
		t.Helper()
		s, err := tpmstore.Open(ctx, keystore.MustParseURI("tpm:handle=0x81000100?device="+device), tpmstore.Options{})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", device)
		}
		return err
	}
	missing := t.TempDir() + "/tpm9"
	if err := open(missing); !strings.HasPrefix(err.Error(), "tpmstore: open "+missing+": ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing device: %v", err)
	}
	if err := open("/dev/null"); !strings.HasPrefix(err.Error(), "tpmstore: TPM at /dev/null: TPM2_GetCapability") {
		t.Errorf("/dev/null (not a TPM): %v", err)
	}
	if err := open("unix:" + missing); !strings.HasPrefix(err.Error(), "tpmstore: open unix:"+missing+": ") {
		t.Errorf("missing socket: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dev := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	if err := open(dev); !strings.HasPrefix(err.Error(), "tpmstore: open "+dev+": ") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: %v", err)
	}

	// No device named: /dev/tpmrm0, then /dev/tpm0.
	_, err1 := os.Stat(tpmstore.DefaultDevice)
	_, err2 := os.Stat(tpmstore.FallbackDevice)
	if err1 != nil && err2 != nil {
		_, err := tpmstore.Open(ctx, keystore.MustParseURI("tpm:handle=0x81000100"), tpmstore.Options{})
		want := regexp.MustCompile(`^tpmstore: no TPM: open /dev/tpmrm0: .*; open /dev/tpm0: .*$`)
		if err == nil || !want.MatchString(err.Error()) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("no TPM device: got %v, want match for %s", err, want)
		}
	} else {
		t.Logf("this machine has a TPM device; not checking the no-TPM error")
	}

	if _, err := tpmstore.Open(ctx, keystore.MustParseURI("file:/tmp/k.pem"), tpmstore.Options{}); err == nil || !strings.Contains(err.Error(), "not a tpm: URI") {
		t.Errorf("file: URI: %v", err)
	}
}

func TestURIChecks(t *testing.T) {
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmUnix)
	s := openSwtpm(t, p)
	defer s.Close()
	ctx := ctxT(t)
	other := keystore.MustParseURI("tpm:handle=0x81000100?device=unix:/run/other.sock")
	if _, err := s.Generate(ctx, other, keystore.ECDSAP256); err == nil || !strings.Contains(err.Error(), "the store is open on") {
		t.Errorf("Generate for another device: %v", err)
	}
	if _, err := s.Open(ctx, keystore.MustParseURI("tpm:")); err == nil || !strings.Contains(err.Error(), "names no persistent handle") {
		t.Errorf("Open without handle: %v", err)
	}
	if _, err := s.Generate(ctx, swtpmURI(p, 0x81000100), keystore.Algorithm("ed25519")); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("Generate(ed25519): %v", err)
	}
	// A URI without device is fine: it means "this store's TPM".
	if _, err := s.Generate(ctx, keystore.MustParseURI("tpm:handle=0x81000100"), keystore.ECDSAP256); err != nil {
		t.Errorf("Generate with a device-less URI: %v", err)
	}
}

func TestSignOptions(t *testing.T) {
	sim := newSimulator(t)
	s := openSimStore(t, sim)
	defer s.Close()
	rk := generate(t, s, simKeyURI, keystore.RSA2048)
	ek := generate(t, s, keystore.MustParseURI("tpm:handle=0x81000101"), keystore.ECDSAP256)
	pub := rk.Public().(*rsa.PublicKey)
	digest := sha256.Sum256([]byte("pss"))

	for _, c := range []struct {
		name string
		salt int
		ok   bool
	}{
		{"EqualsHash", rsa.PSSSaltLengthEqualsHash, true},
		{"Auto", rsa.PSSSaltLengthAuto, true},
		{"explicit 32", 32, true},
		{"explicit 20", 20, false},
		{"explicit max", 256 - 32 - 2, false},
	} {
		t.Run("PSS "+c.name, func(t *testing.T) {
			sig, err := rk.Sign(nil, digest[:], &rsa.PSSOptions{SaltLength: c.salt, Hash: crypto.SHA256})
			if !c.ok {
				if !errors.Is(err, keystore.ErrUnsupported) {
					t.Fatalf("got %v, want ErrUnsupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// What TLS checks, and what a lenient verifier accepts.
			for _, v := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 32} {
				if err := rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: v}); err != nil {
					t.Errorf("VerifyPSS(salt %d): %v", v, err)
				}
			}
		})
	}

	if _, err := ek.Sign(nil, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("PSS options on an ECDSA key: %v", err)
	}
	if _, err := ek.Sign(nil, make([]byte, 28), crypto.SHA224); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("SHA-224: %v", err)
	}
	if _, err := ek.Sign(nil, digest[:20], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "handle 0x81000101") {
		t.Errorf("short digest: %v", err)
	}

	if got, want := ek.(*tpmstore.Key).SupportedSignatureAlgorithms(), []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}; !slices.Equal(got, want) {
		t.Errorf("P-256 schemes = %v, want %v", got, want)
	}
	rs := rk.(*tpmstore.Key).SupportedSignatureAlgorithms()
	for _, want := range []tls.SignatureScheme{tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PKCS1WithSHA256} {
		if !slices.Contains(rs, want) {
			t.Errorf("RSA schemes %v lack %v", rs, want)
		}
	}
	info := rk.Info()
	if info.Kind != keystore.KindTPM || !info.HardwareBacked || !info.NonExtractable || info.Insecure ||
		info.Location != simKeyURI.Redacted() || info.Algorithm != keystore.RSA2048 {
		t.Errorf("Info() = %+v", info)
	}
	if h := rk.(*tpmstore.Key).Handle(); h != 0x81000100 {
		t.Errorf("Handle() = %#x", h)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := ek.Sign(nil, digest[:], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Sign after Close: %v", err)
	}
	if _, err := s.Open(context.Background(), simKeyURI); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Open after Close: %v", err)
	}
}

// TestKeyWithFixedScheme opens a key provisioned by another tool with its
// scheme bound to ECDSA-SHA256: it signs SHA-256 and refuses the rest.
func TestKeyWithFixedScheme(t *testing.T) {
	sim := newSimulator(t)
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: 0x81000100}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(sim)
	tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(sim)

	s := openSimStore(t, sim)
	defer s.Close()
	k, err := s.Open(ctxT(t), simKeyURI)
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, k)
	if _, err := k.Sign(nil, make([]byte, 48), crypto.SHA384); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("SHA-384 with a SHA-256-bound key: got %v, want ErrUnsupported", err)
	}
	if got := k.(*tpmstore.Key).SupportedSignatureAlgorithms(); !slices.Equal(got, []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}) {
		t.Errorf("schemes = %v", got)
	}
}

// TestStartup checks that Open starts an emulator that was never sent
// TPM2_Startup.
func TestStartup(t *testing.T) {
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmUnix, "not-need-init")
	raw, err := linuxudstpm.Open(p.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := (tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, PropertyCount: 1}).Execute(raw); !errors.Is(err, tpm2.TPMRCInitialize) {
		t.Fatalf("swtpm without startup-clear answered %v, want TPM_RC_INITIALIZE", err)
	}
	s := openSwtpm(t, p)
	defer s.Close()
	signVerify(t, generate(t, s, swtpmURI(p, 0x81000100), keystore.ECDSAP256))
}

// TestLogger checks that debug records reach Options.Logger and never
// carry anything but the redacted URI.
func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := tpmstore.Open(ctxT(t), nil, tpmstore.Options{Transport: newSimulator(t), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	generate(t, s, simKeyURI, keystore.ECDSAP256)
	if err := s.Delete(ctxT(t), simKeyURI); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"op=generate", "op=delete", `key="tpm:handle=0x81000100"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestTPM2ToolsReadPublic is the acceptance check with an independent
// client: tpm2-tools reads the key's public area from swtpm and reports
// fixedtpm|fixedparent|sensitivedataorigin.
func TestTPM2ToolsReadPublic(t *testing.T) {
	bin, err := exec.LookPath("tpm2_readpublic")
	if err != nil {
		t.Fatalf("tpm2-tools are required for this test: %v", err)
	}
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmTCP)
	s := openSwtpm(t, p)
	k := generate(t, s, swtpmURI(p, 0x81000100), keystore.ECDSAP256)
	want, err := keystore.Fingerprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	// swtpm serves one TCP client at a time: let go of it first.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pemFile := t.TempDir() + "/pub.pem"
	tcti := fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", p.Port())
	out, err := exec.Command(bin, "-T", tcti, "-c", "0x81000100", "-f", "pem", "-o", pemFile).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_readpublic -T %s: %v\n%s", tcti, err, out)
	}
	// The attributes are printed as
	//	attributes:
	//	  value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign
	//	  raw: 0x60472
	m := regexp.MustCompile(`(?m)^attributes:\n\s+value: (\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no attributes value line in tpm2_readpublic output:\n%s", out)
	}
	attrs := string(m[1])
	if !strings.HasPrefix(attrs, "fixedtpm|fixedparent|sensitivedataorigin") {
		t.Errorf("tpm2_readpublic attributes %q, want fixedtpm|fixedparent|sensitivedataorigin|...", attrs)
	}
	for _, a := range []string{"fixedtpm", "fixedparent", "sensitivedataorigin", "userwithauth", "noda", "sign"} {
		if !slices.Contains(strings.Split(attrs, "|"), a) {
			t.Errorf("tpm2_readpublic attributes %q lack %s", attrs, a)
		}
	}
	if strings.Contains(attrs, "decrypt") || strings.Contains(attrs, "restricted") {
		t.Errorf("tpm2_readpublic attributes %q: want neither decrypt nor restricted", attrs)
	}
	pemBytes, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatalf("tpm2_readpublic -f pem wrote no PEM:\n%s", pemBytes)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := keystore.Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("tpm2_readpublic public key fingerprint %s, want %s", got, want)
	}
}

// TestSwtpmTCPAlgorithms generates and signs with every algorithm over the
// tcp: transport (the conformance suite runs over unix:), reopening each key
// from a second Store after the first is closed: swtpm serves one TCP client
// at a time.
func TestSwtpmTCPAlgorithms(t *testing.T) {
	p := keystoretest.StartSwtpm(t, keystoretest.SwtpmTCP)
	s := openSwtpm(t, p)
	var keys []keystore.Key
	for i, alg := range swtpmAlgorithms {
		keys = append(keys, generate(t, s, swtpmURI(p, 0x81000100+uint32(i)), alg))
	}
	if n := transientHandles(t, s); n != 0 {
		t.Fatalf("%d transient objects after Generate", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSwtpm(t, p)
	defer s.Close()
	for i, alg := range swtpmAlgorithms {
		k, err := s.Open(ctxT(t), swtpmURI(p, 0x81000100+uint32(i)))
		if err != nil {
			t.Fatalf("Open %s: %v", alg, err)
		}
		if !keystore.SamePublicKey(k.Public(), keys[i].Public()) {
			t.Fatalf("%s: reopened key differs", alg)
		}
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			digest := make([]byte, h.Size())
			rand.Read(digest)
			opts := []crypto.SignerOpts{h}
			if alg.IsRSA() {
				opts = append(opts, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
			}
			for _, o := range opts {
				sig, err := k.Sign(nil, digest, o)
				if err != nil {
					t.Fatalf("%s %v %T: %v", alg, h, o, err)
				}
				var verr error
				switch pub := k.Public().(type) {
				case *ecdsa.PublicKey:
					if !ecdsa.VerifyASN1(pub, digest, sig) {
						verr = errors.New("ECDSA verification failed")
					}
				case *rsa.PublicKey:
					if _, pss := o.(*rsa.PSSOptions); pss {
						verr = rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
					} else {
						verr = rsa.VerifyPKCS1v15(pub, h, digest, sig)
					}
				}
				if verr != nil {
					t.Errorf("%s %v %T: %v", alg, h, o, verr)
				}
			}
		}
	}
}
