package p11store_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // SHA-1 PKCS #1 v1.5 and PSS cases
	_ "crypto/sha3" // registers SHA3-256, a hash the store must refuse for RSA
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/p11store"
)

func TestOpenErrors(t *testing.T) {
	tk := newToken(t)
	notModule, err := filepath.Abs("testdata/not-a-module.so")
	if err != nil {
		t.Fatal(err)
	}
	wrongPINFile := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPINFile, []byte("98765\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := func(path, query string) string {
		return fmt.Sprintf("pkcs11:%s?%s", path, query)
	}
	mod := "module-path=" + softhsmModule
	goodPIN := "&pin-source=file:" + tk.pinFile
	tests := []struct {
		name    string
		uri     string
		want    []string // substrings of the error
		notWant []string
	}{
		{"missing module", uri("token=thingd", "module-path=/nonexistent/libnothing.so"+goodPIN),
			[]string{"p11store: module /nonexistent/libnothing.so: no such file"}, nil},
		{"text file", uri("token=thingd", "module-path="+notModule+goodPIN),
			[]string{"p11store: module " + notModule + ": not a PKCS#11 module", "not an ELF shared library"}, nil},
		{"executable", uri("token=thingd", "module-path=/bin/true"+goodPIN),
			[]string{"p11store: module /bin/true: not a PKCS#11 module", "C_GetFunctionList"}, nil},
		{"directory", uri("token=thingd", "module-path=/tmp"+goodPIN),
			[]string{"p11store: module /tmp: is a directory"}, nil},
		{"token label not found", uri("token=nosuch", mod+goodPIN),
			[]string{`no token with label "nosuch"`, `tokens present: "thingd"`}, nil},
		{"serial not found", uri("serial=0000000000000000", mod+goodPIN),
			[]string{"no token serial=0000000000000000", `tokens present: "thingd"`}, nil},
		{"slot not found", uri("slot-id=4242", mod+goodPIN),
			[]string{"no token slot-id=4242", `tokens present: "thingd"`}, nil},
		{"wrong PIN in file", uri("token=thingd", mod+"&pin-source=file:"+wrongPINFile),
			[]string{`p11store: wrong PIN for token "thingd"`, "CKR_PIN_INCORRECT"}, []string{"98765"}},
		{"wrong PIN value", uri("token=thingd", mod+"&pin-value=98765"),
			[]string{`p11store: wrong PIN for token "thingd"`}, []string{"98765"}},
		{"no PIN", uri("token=thingd", mod),
			[]string{`p11store: token "thingd" needs a PIN`}, nil},
		{"PIN file missing", uri("token=thingd", mod+"&pin-source=file:/nonexistent/pin"),
			[]string{"p11store: open ", "/nonexistent/pin"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := debugLogger()
			u, err := keystore.ParseURI(tt.uri)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			s, err := p11store.Open(testContext(t), u, p11store.Options{Logger: log})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded, want an error", u)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "p11store: ") {
				t.Errorf("error %q does not start with \"p11store: \"", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Open(%s) = %q, want it to contain %q", u, msg, w)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(msg, nw) {
					t.Errorf("Open(%s) = %q: contains %q", u, msg, nw)
				}
				if strings.Contains(logs.String(), nw) {
					t.Errorf("logs contain %q:\n%s", nw, logs)
				}
			}
		})
	}

	// Every failed Open above released the module: a new configuration is
	// read by a fresh C_Initialize.
	second := newTokenWith(t, "second", userPIN)
	s := second.open(t, p11store.Options{})
	if got := s.TokenLabel(); got != "second" {
		t.Fatalf("TokenLabel() = %q, want second", got)
	}
}

func TestLoginErrorMessages(t *testing.T) {
	tests := []struct {
		rv   uint
		want string
	}{
		{pkcs11.CKR_PIN_INCORRECT, `p11store: wrong PIN for token "t1"`},
		{pkcs11.CKR_PIN_LOCKED, `p11store: PIN of token "t1" is locked`},
		{pkcs11.CKR_PIN_EXPIRED, `p11store: PIN of token "t1" has expired`},
		{pkcs11.CKR_PIN_LEN_RANGE, `p11store: PIN for token "t1" has a length`},
		{pkcs11.CKR_USER_PIN_NOT_INITIALIZED, `p11store: token "t1" has no user PIN`},
		{pkcs11.CKR_DEVICE_ERROR, `p11store: log in to token "t1"`},
	}
	for _, tt := range tests {
		err := p11store.LoginError("t1", pkcs11.Error(tt.rv))
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("LoginError(%#x) = %q, want prefix %q", tt.rv, err, tt.want)
		}
		if !errors.Is(err, pkcs11.Error(tt.rv)) {
			t.Errorf("LoginError(%#x) does not wrap the PKCS#11 error", tt.rv)
		}
	}
}

// TestPINNeverShown runs a whole key life, and a failed login, on a token
// with a distinctive PIN, and looks for it in every error and log record.
func TestPINNeverShown(t *testing.T) {
	const pin = "Pin-7a1b9c-secret"
	newTokenWith(t, "thingd", pin)
	log, logs := debugLogger()
	ctx := testContext(t)
	var errs []error

	// PIN given in the URI (pin-value) rather than in a file.
	withValue := keystore.MustParseURI(fmt.Sprintf("pkcs11:token=thingd?module-path=%s&pin-value=%s", softhsmModule, pin))
	s, err := p11store.Open(ctx, withValue, p11store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keyURI := withValue.WithAttr("object", "key0")
	k, err := s.Generate(ctx, keyURI, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(k.Info().Location, pin) || strings.Contains(k.Info().Location, "pin-value") {
		t.Errorf("Info().Location = %q shows the PIN", k.Info().Location)
	}
	_, err = s.Generate(ctx, keyURI, keystore.ECDSAP256)
	errs = append(errs, err)
	_, err = s.Open(ctx, withValue.WithAttr("object", "missing"))
	errs = append(errs, err)
	_, err = s.Open(ctx, withValue.WithAttr("token", "other").WithAttr("object", "key0"))
	errs = append(errs, err)
	if err := s.CloseAllSessionsForTest(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
		t.Fatalf("Sign after the sessions were closed: %v", err)
	}
	_, err = k.Sign(rand.Reader, make([]byte, 31), crypto.SHA256)
	errs = append(errs, err)

	bad := keystore.MustParseURI(fmt.Sprintf("pkcs11:token=thingd?module-path=%s&pin-value=%s", softhsmModule, pin+"x"))
	// The token is logged in already (by s): the PIN is still checked.
	if s2, err := p11store.Open(ctx, bad, p11store.Options{Logger: log}); err == nil {
		s2.Close()
		t.Error("Open with a wrong PIN succeeded while another store is logged in")
	} else {
		errs = append(errs, err)
	}

	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		if strings.Contains(err.Error(), pin) {
			t.Errorf("error shows the PIN: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "p11store: ") {
			t.Errorf("error %q does not start with \"p11store: \"", err)
		}
	}
	if !strings.Contains(logs.String(), "recovered sessions") {
		t.Errorf("no recovery logged:\n%s", logs)
	}
	if strings.Contains(logs.String(), pin) {
		t.Errorf("logs show the PIN:\n%s", logs)
	}
}

func TestKeyURIChecks(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	otherModule := keystore.MustParseURI("pkcs11:token=thingd;object=key0?module-path=/usr/lib/other-pkcs11.so")
	tests := []struct {
		name string
		uri  *keystore.URI
		want string
	}{
		{"other token", tk.keyURI("key0").WithAttr("token", "other"), `names token "other", but this store uses token "thingd"`},
		{"other serial", tk.keyURI("key0").WithAttr("serial", "1234"), `names serial "1234"`},
		{"other slot", tk.keyURI("key0").WithAttr("slot-id", "4242"), `names slot 4242`},
		{"other module", otherModule, "names module /usr/lib/other-pkcs11.so, but this store uses " + softhsmModule},
		{"no object", tk.storeURI(), "names no key: add object=LABEL"},
		{"public key", tk.keyURI("key0").WithAttr("type", "public"), "type=public"},
		{"file URI", keystore.MustParseURI("file:/tmp/key.pem"), "not a pkcs11: URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, gerr := s.Generate(ctx, tt.uri, keystore.ECDSAP256)
			_, oerr := s.Open(ctx, tt.uri)
			derr := s.Delete(ctx, tt.uri)
			for op, err := range map[string]error{"Generate": gerr, "Open": oerr, "Delete": derr} {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "p11store: ") {
					t.Errorf("%s(%s) = %v, want an error containing %q", op, tt.uri, err, tt.want)
				}
			}
		})
	}
}

func TestNotFoundAndExists(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)

	if _, err := s.Open(ctx, tk.keyURI("key0")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.RawAttributes(ctx, tk.keyURI("key0")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("RawAttributes(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Generate(ctx, tk.keyURI("key0").WithAttr("id", "\x01"), keystore.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		uri  *keystore.URI
	}{
		{"same label", tk.keyURI("key0")},
		{"same label, other id", tk.keyURI("key0").WithAttr("id", "\x02")},
		{"other label, same id", tk.keyURI("key1").WithAttr("id", "\x01")},
		{"same id, no label", tk.storeURI().WithAttr("id", "\x01")},
	} {
		_, err := s.Generate(ctx, tt.uri, keystore.RSA2048)
		if !errors.Is(err, keystore.ErrExists) {
			t.Errorf("Generate(%s): %v, want ErrExists", tt.name, err)
		}
	}
	// Opening by label, by id or by both finds the key; a mismatch does not.
	for _, tt := range []struct {
		name string
		uri  *keystore.URI
		err  error
	}{
		{"label", tk.keyURI("key0"), nil},
		{"id", tk.storeURI().WithAttr("id", "\x01"), nil},
		{"label and id", tk.keyURI("key0").WithAttr("id", "\x01"), nil},
		{"label and other id", tk.keyURI("key0").WithAttr("id", "\x02"), keystore.ErrNotFound},
	} {
		_, err := s.Open(ctx, tt.uri)
		if !errors.Is(err, tt.err) {
			t.Errorf("Open by %s = %v, want %v", tt.name, err, tt.err)
		}
	}
	// Delete by id removes the private and the public object.
	for range 2 {
		if err := s.Delete(ctx, tk.storeURI().WithAttr("id", "\x01")); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := s.Open(ctx, tk.keyURI("key0")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
	}
	if out := tk.run(t, "pkcs11-tool", "--module", softhsmModule, "--login", "--pin", userPIN, "--token-label", tokenLabel, "--list-objects"); strings.Contains(out, "key0") {
		t.Errorf("objects left after Delete:\n%s", out)
	}
}

func TestDerivedID(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	k, err := s.Generate(ctx, tk.keyURI("device-a"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	byID, err := s.Open(ctx, tk.storeURI().WithAttr("id", string(p11store.DerivedID("device-a"))))
	if err != nil {
		t.Fatalf("Open by the derived id: %v", err)
	}
	if !keystore.SamePublicKey(k.Public(), byID.Public()) {
		t.Fatal("the key found by derived id is another key")
	}
	if string(p11store.DerivedID("device-a")) == string(p11store.DerivedID("device-b")) {
		t.Fatal("two labels share a derived id")
	}
}

func TestUnsupported(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	if _, err := s.Generate(ctx, tk.keyURI("key0"), keystore.Algorithm("ed25519")); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("Generate(ed25519) = %v, want ErrUnsupported", err)
	}
	rsaKey, err := s.Generate(ctx, tk.keyURI("rsa"), keystore.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, crypto.SHA3_256.Size())
	for _, opts := range []crypto.SignerOpts{crypto.SHA3_256, &rsa.PSSOptions{Hash: crypto.SHA3_256}} {
		if _, err := rsaKey.Sign(rand.Reader, digest, opts); !errors.Is(err, keystore.ErrUnsupported) {
			t.Errorf("Sign(SHA3-256, %T) = %v, want ErrUnsupported", opts, err)
		}
	}
	if _, err := rsaKey.Sign(rand.Reader, make([]byte, 36), crypto.MD5SHA1); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("Sign(MD5SHA1) = %v, want ErrUnsupported", err)
	}
}

func TestSignVerify(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	type signCase struct {
		name   string
		opts   crypto.SignerOpts
		verify *rsa.PSSOptions // nil: PKCS #1 v1.5
	}
	hashes := []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.ECDSAP384, keystore.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := s.Generate(ctx, tk.keyURI(string(alg)), alg)
			if err != nil {
				t.Fatal(err)
			}
			var cases []signCase
			for _, h := range hashes {
				cases = append(cases, signCase{"hash-" + h.String(), h, nil})
				if alg.IsRSA() {
					cases = append(cases,
						signCase{"PSS-equals-hash-" + h.String(), &rsa.PSSOptions{Hash: h, SaltLength: rsa.PSSSaltLengthEqualsHash}, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}},
						signCase{"PSS-auto-" + h.String(), &rsa.PSSOptions{Hash: h, SaltLength: rsa.PSSSaltLengthAuto}, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}},
						signCase{"PSS-salt-0-" + h.String(), &rsa.PSSOptions{Hash: h, SaltLength: 0}, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}},
						signCase{"PSS-salt-17-" + h.String(), &rsa.PSSOptions{Hash: h, SaltLength: 17}, &rsa.PSSOptions{SaltLength: 17}},
					)
				}
			}
			for _, c := range cases {
				h := c.opts.HashFunc()
				digest := make([]byte, h.Size())
				rand.Read(digest)
				sig, err := k.Sign(rand.Reader, digest, c.opts)
				if err != nil {
					t.Errorf("%s: Sign: %v", c.name, err)
					continue
				}
				switch pub := k.Public().(type) {
				case *ecdsa.PublicKey:
					if !ecdsa.VerifyASN1(pub, digest, sig) {
						t.Errorf("%s: ecdsa.VerifyASN1 failed", c.name)
					}
				case *rsa.PublicKey:
					if c.verify != nil {
						err = rsa.VerifyPSS(pub, h, digest, sig, c.verify)
					} else {
						err = rsa.VerifyPKCS1v15(pub, h, digest, sig)
					}
					if err != nil {
						t.Errorf("%s: verify: %v", c.name, err)
					}
				}
			}
		})
	}
}

func TestInfo(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	uri := keystore.MustParseURI(fmt.Sprintf("pkcs11:token=thingd;object=key0?module-path=%s&pin-value=%s", softhsmModule, userPIN))
	k, err := s.Generate(ctx, uri, "")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	want := keystore.KeyInfo{
		Algorithm:      keystore.ECDSAP256,
		Kind:           keystore.KindPKCS11,
		Location:       "pkcs11:token=thingd;object=key0?module-path=" + softhsmModule,
		HardwareBacked: true,
		NonExtractable: true,
	}
	for name, got := range map[string]keystore.KeyInfo{"Generate": k.Info(), "Open": k2.Info()} {
		if got != want {
			t.Errorf("%s: Info() = %+v, want %+v", name, got, want)
		}
	}
}

// TestPkcs11ToolCannotReadPrivateKey checks with OpenSC's pkcs11-tool, not our
// code, that keys made by the store cannot be read off the token.
func TestPkcs11ToolCannotReadPrivateKey(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{})
	ctx := testContext(t)
	tool := func(args ...string) (string, error) {
		return tk.try("pkcs11-tool", append([]string{"--module", softhsmModule, "--login", "--pin", userPIN, "--token-label", tokenLabel}, args...)...)
	}
	if _, err := tool("--show-info"); err != nil {
		t.Skipf("pkcs11-tool does not work here: %v", err)
	}
	// A control key made by pkcs11-tool itself with CKA_EXTRACTABLE set.
	if out, err := tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "control", "--id", "ff", "--extractable"); err != nil {
		t.Fatalf("pkcs11-tool --keypairgen: %v\n%s", err, out)
	}
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.RSA2048} {
		label := "key-" + string(alg)
		k, err := s.Generate(ctx, tk.keyURI(label), alg)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(string(alg), func(t *testing.T) {
			// The private key value cannot be read.
			out := filepath.Join(t.TempDir(), "priv.der")
			msg, err := tool("--read-object", "--type", "privkey", "--label", label, "-o", out)
			if b, rerr := os.ReadFile(out); rerr == nil && len(b) > 0 {
				t.Fatalf("pkcs11-tool read %d bytes of the private key (err %v):\n%s", len(b), err, msg)
			}
			t.Logf("pkcs11-tool --read-object --type privkey: err=%v: %s", err, strings.TrimSpace(msg))

			// The public key can, and it is ours: the tool sees our objects.
			pubOut := filepath.Join(t.TempDir(), "pub.der")
			if msg, err := tool("--read-object", "--type", "pubkey", "--label", label, "-o", pubOut); err != nil {
				t.Fatalf("pkcs11-tool --read-object --type pubkey: %v\n%s", err, msg)
			}
			der, err := os.ReadFile(pubOut)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := x509.ParsePKIXPublicKey(der)
			if err != nil {
				t.Fatalf("public key from pkcs11-tool: %v", err)
			}
			if !keystore.SamePublicKey(k.Public(), pub) {
				t.Fatal("pkcs11-tool reads another public key than Key.Public()")
			}

			// The token reports the private key sensitive and never extractable.
			list, err := tool("--list-objects", "--type", "privkey", "--label", label)
			if err != nil {
				t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, list)
			}
			access := accessFlags(list, label)
			if !access["sensitive"] || !access["never extractable"] || access["extractable"] {
				t.Errorf("pkcs11-tool shows access %v, want sensitive and never extractable:\n%s", access, list)
			}
		})
	}
	list, err := tool("--list-objects", "--type", "privkey", "--label", "control")
	if err != nil {
		t.Fatal(err)
	}
	if access := accessFlags(list, "control"); !access["extractable"] {
		t.Errorf("control key made with --extractable shows access %v: the check above proves nothing", access)
	}
}

// accessFlags returns the "Access:" flags pkcs11-tool --list-objects shows
// for the object labelled label (the tool lists every object whatever
// --label says).
func accessFlags(list, label string) map[string]bool {
	flags := map[string]bool{}
	inObject := false
	for _, line := range strings.Split(list, "\n") {
		line = strings.TrimSpace(line)
		if l, ok := strings.CutPrefix(line, "label:"); ok {
			inObject = strings.TrimSpace(l) == label
		}
		if a, ok := strings.CutPrefix(line, "Access:"); ok && inObject {
			for _, f := range strings.Split(a, ",") {
				flags[strings.TrimSpace(f)] = true
			}
		}
	}
	return flags
}

func TestRecoveryAfterCloseAllSessions(t *testing.T) {
	tk := newToken(t)
	log, logs := debugLogger()
	s := tk.open(t, p11store.Options{Logger: log, MaxSessions: 3})
	ctx := testContext(t)
	k, err := s.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	sign := func() {
		t.Helper()
		sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest, sig) {
			t.Fatal("signature does not verify")
		}
	}
	sign()
	for i := range 3 {
		if err := s.CloseAllSessionsForTest(); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			sign()
		case 1:
			if _, err := s.Open(ctx, tk.keyURI("key0")); err != nil {
				t.Fatalf("Open after C_CloseAllSessions: %v", err)
			}
		case 2:
			if _, err := s.Generate(ctx, tk.keyURI("key1"), keystore.ECDSAP256); err != nil {
				t.Fatalf("Generate after C_CloseAllSessions: %v", err)
			}
		}
	}
	// Concurrent signers while the sessions are pulled from under them
	// once: every signature succeeds.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 6 {
		wg.Go(func() {
			d := make([]byte, 32)
			for range 50 {
				if _, err := k.Sign(rand.Reader, d, crypto.SHA256); err != nil {
					t.Errorf("concurrent Sign: %v", err)
					failed.Add(1)
					return
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.CloseAllSessionsForTest(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	sign()
	if n := s.OpenSessions(); n < 1 || n > 3 {
		t.Errorf("OpenSessions() = %d after recovery, want 1..3", n)
	}
	if got := strings.Count(logs.String(), "recovered sessions"); got < 3 {
		t.Errorf("%d recoveries logged, want at least 3:\n%s", got, logs)
	}
}

// TestRecoveryAfterTokenReinit re-initialises the token from another process
// (softhsm2-util --init-token on the existing token): the old key is gone,
// and the store goes on working without a stale session error.
func TestRecoveryAfterTokenReinit(t *testing.T) {
	tk := newToken(t)
	log, logs := debugLogger()
	s := tk.open(t, p11store.Options{Logger: log})
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	ctx := testContext(t)
	old, err := s.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	if _, err := old.Sign(rand.Reader, digest, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	tk.softhsm(t, "--init-token", "--token", tokenLabel, "--label", tokenLabel, "--so-pin", soPIN, "--pin", userPIN)

	checkGone := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("%s after re-init = %v, want ErrNotFound", op, err)
		}
		if err != nil && strings.Contains(err.Error(), "SESSION") {
			t.Errorf("%s after re-init: stale session error %v", op, err)
		}
	}
	_, err = old.Sign(rand.Reader, digest, crypto.SHA256)
	checkGone("Sign with the old key", err)
	_, err = s.Open(ctx, tk.keyURI("key0"))
	checkGone("Open", err)

	k, err := s.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatalf("Generate after re-init: %v", err)
	}
	sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest, sig) {
		t.Fatalf("Sign with the new key: %v", err)
	}
	// The old Key names the same label and id, but it is not the new key.
	_, err = old.Sign(rand.Reader, digest, crypto.SHA256)
	checkGone("Sign with the old key after a new one was made", err)

	// A second store (as a restarted agent would open) sees the new key.
	s2 := tk.open(t, p11store.Options{})
	k2, err := s2.Open(ctx, tk.keyURI("key0"))
	if err != nil || !keystore.SamePublicKey(k2.Public(), k.Public()) {
		t.Fatalf("Open from a second store: %v", err)
	}
}

// TestTokenDeletedAndCreatedAgain: SoftHSM reads its token directory only in
// C_Initialize, so a token deleted and created anew by another process is
// seen once every Store on the module has been closed.
func TestTokenDeletedAndCreatedAgain(t *testing.T) {
	tk := newToken(t)
	ctx := testContext(t)
	s, err := p11store.Open(ctx, tk.storeURI(), p11store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old, err := s.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tk.softhsm(t, "--delete-token", "--token", tokenLabel)
	tk.softhsm(t, "--init-token", "--free", "--label", tokenLabel, "--so-pin", soPIN, "--pin", userPIN)

	if _, err := old.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Sign with a key of the deleted token = %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := tk.open(t, p11store.Options{})
	if _, err := s2.Open(ctx, tk.keyURI("key0")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Open on the new token = %v, want ErrNotFound", err)
	}
	k, err := s2.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatalf("Generate on the new token: %v", err)
	}
	if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
		t.Fatalf("Sign on the new token: %v", err)
	}
}

func TestSessionPoolBounded(t *testing.T) {
	tk := newToken(t)
	s := tk.open(t, p11store.Options{MaxSessions: 2})
	ctx := testContext(t)
	k, err := s.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var peak atomic.Int32
	for range 8 {
		wg.Go(func() {
			d := make([]byte, 32)
			for range 100 {
				if _, err := k.Sign(rand.Reader, d, crypto.SHA256); err != nil {
					t.Error(err)
					return
				}
				if n := int32(s.OpenSessions()); n > peak.Load() {
					peak.Store(n)
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d sessions open at once, want at most MaxSessions = 2", p)
	}
	if n := s.OpenSessions(); n > 2 {
		t.Errorf("OpenSessions() = %d after signing, want at most 2", n)
	}

	// With every session taken, callers wait until their context ends.
	r1, err := s.RawSigner(ctx, tk.keyURI("key0"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.RawSigner(ctx, tk.keyURI("key0"))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Open(short, tk.keyURI("key0")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with all sessions busy = %v, want DeadlineExceeded", err)
	}
	r1.Close()
	r2.Close()
	r2.Close()
	if _, err := s.Open(ctx, tk.keyURI("key0")); err != nil {
		t.Errorf("Open after the sessions came back: %v", err)
	}
}

func TestStoresShareModule(t *testing.T) {
	tk := newToken(t)
	ctx := testContext(t)
	s1, err := p11store.Open(ctx, tk.storeURI(), p11store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2 := tk.open(t, p11store.Options{})
	k1, err := s1.Generate(ctx, tk.keyURI("key0"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := k1.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Sign with a key of a closed store = %v, want a store closed error", err)
	}
	// The other store still holds the module (and the login).
	k2, err := s2.Open(ctx, tk.keyURI("key0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
		t.Fatalf("Sign from the remaining store: %v", err)
	}
}

func TestOpenBySerialAndSlot(t *testing.T) {
	tk := newToken(t)
	var slot, serial string
	for _, line := range strings.Split(tk.softhsm(t, "--show-slots"), "\n") {
		if v, ok := strings.CutPrefix(line, "Slot "); ok { // "Slot 123", not "    Slot info:"
			slot = strings.TrimSpace(v)
		}
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Serial number:"); ok {
			serial = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Label:"); ok && strings.TrimSpace(v) == tokenLabel {
			break
		}
	}
	if slot == "" || serial == "" {
		t.Fatal("no slot and serial for the token in softhsm2-util --show-slots")
	}
	ctx := testContext(t)
	pin := "?module-path=" + softhsmModule + "&pin-source=file:" + tk.pinFile
	for _, path := range []string{
		"serial=" + serial,
		"slot-id=" + slot,
		"token=thingd;serial=" + serial + ";manufacturer=SoftHSM%20project;model=SoftHSM%20v2",
	} {
		u := keystore.MustParseURI("pkcs11:" + path + pin)
		s, err := p11store.Open(ctx, u, p11store.Options{})
		if err != nil {
			t.Errorf("Open(%s): %v", u, err)
			continue
		}
		if s.TokenLabel() != tokenLabel {
			t.Errorf("Open(%s) found token %q", u, s.TokenLabel())
		}
		// Key URIs may name the token like the store URI did.
		if _, err := s.Generate(ctx, u.WithAttr("object", "k"), keystore.ECDSAP256); err != nil {
			t.Errorf("Generate on %s: %v", u, err)
		}
		if err := s.Delete(ctx, u.WithAttr("object", "k")); err != nil {
			t.Errorf("Delete on %s: %v", u, err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestRecoveryStress pulls the sessions from under two stores of the process
// on the same token again and again while eight goroutines sign through both.
// A signature may fail when its retry loses its session too, but only with a
// lost-session error; once the pulling stops, everything signs again, and the
// pools stay bounded.
func TestRecoveryStress(t *testing.T) {
	tk := newToken(t)
	s1 := tk.open(t, p11store.Options{MaxSessions: 3})
	s2 := tk.open(t, p11store.Options{MaxSessions: 2})
	ctx := testContext(t)
	k1, err := s1.Generate(ctx, tk.keyURI("key1"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s2.Generate(ctx, tk.keyURI("key2"), keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var pulls, fails, signs atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			s := s1
			if pulls.Add(1)%2 == 0 {
				s = s2
			}
			if err := s.CloseAllSessionsForTest(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var signers sync.WaitGroup
	for g := range 8 {
		signers.Go(func() {
			k := k1
			if g%2 == 1 {
				k = k2
			}
			d := make([]byte, 32)
			for range 100 {
				_, err := k.Sign(rand.Reader, d, crypto.SHA256)
				signs.Add(1)
				if err == nil {
					continue
				}
				fails.Add(1)
				if !errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)) && !errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_CLOSED)) {
					t.Errorf("Sign under session loss: %v", err)
					return
				}
			}
		})
	}
	signers.Wait()
	close(stop)
	wg.Wait()
	t.Logf("%d signatures, %d failed after a second loss, %d C_CloseAllSessions", signs.Load(), fails.Load(), pulls.Load())
	for _, k := range []keystore.Key{k1, k2} {
		if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
			t.Errorf("Sign after the storm: %v", err)
		}
	}
	if n := s1.OpenSessions(); n < 0 || n > 3 {
		t.Errorf("store 1 has %d sessions open, want 0..3", n)
	}
	if n := s2.OpenSessions(); n < 0 || n > 2 {
		t.Errorf("store 2 has %d sessions open, want 0..2", n)
	}
}
