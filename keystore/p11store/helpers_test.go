package p11store_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/p11store"
)

const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	tokenLabel    = "thingd"
	userPIN       = "1234"
	soPIN         = "5678"
)

// testToken is a fresh SoftHSM2 token in a temporary directory, with its own
// softhsm2.conf named by SOFTHSM2_CONF for the rest of the test.
type testToken struct {
	label    string
	pin      string
	dir      string
	conf     string
	tokenDir string
	pinFile  string
}

// newToken makes a fresh SoftHSM2 token labelled "thingd" with user PIN 1234.
// It skips the test when SoftHSM2 is not installed. Tests using it cannot be
// parallel (SOFTHSM2_CONF is process-wide).
func newToken(tb testing.TB) *testToken {
	tb.Helper()
	return newTokenWith(tb, tokenLabel, userPIN)
}

// newTokenWith is newToken with another label and user PIN. Calling it again
// in a test points SOFTHSM2_CONF at the new token's directory.
func newTokenWith(tb testing.TB, label, pin string) *testToken {
	tb.Helper()
	if _, err := os.Stat(softhsmModule); err != nil {
		tb.Skipf("SoftHSM2 not installed: %v", err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		tb.Skipf("softhsm2-util not installed: %v", err)
	}
	dir := tb.TempDir()
	if strings.ContainsAny(dir, "=#") {
		// SoftHSM's configuration parser cuts a value at '=' (and '#' starts
		// a comment), and subtest names such as "Algorithm=rsa-2048" end up
		// in t.TempDir(): use a plain temporary directory instead.
		var err error
		if dir, err = os.MkdirTemp("", "p11store-test-"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	tk := &testToken{
		label:    label,
		pin:      pin,
		dir:      dir,
		conf:     filepath.Join(dir, "softhsm2.conf"),
		tokenDir: filepath.Join(dir, "tokens"),
		pinFile:  filepath.Join(dir, "pin"),
	}
	if err := os.Mkdir(tk.tokenDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tk.tokenDir)
	if err := os.WriteFile(tk.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(tk.pinFile, []byte(pin+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("SOFTHSM2_CONF", tk.conf)
	tk.softhsm(tb, "--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", pin)
	return tk
}

// softhsm runs softhsm2-util on the token's configuration.
func (tk *testToken) softhsm(tb testing.TB, args ...string) string {
	tb.Helper()
	return tk.run(tb, "softhsm2-util", args...)
}

// run runs a tool with SOFTHSM2_CONF set to the token's configuration and
// fails the test if it fails.
func (tk *testToken) run(tb testing.TB, tool string, args ...string) string {
	tb.Helper()
	out, err := tk.try(tool, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a tool with SOFTHSM2_CONF set to the token's configuration.
func (tk *testToken) try(tool string, args ...string) (string, error) {
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tk.conf)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// storeURI is the URI of the token, PIN from a file.
func (tk *testToken) storeURI() *keystore.URI {
	return keystore.MustParseURI(fmt.Sprintf("pkcs11:token=%s?module-path=%s&pin-source=file:%s", tk.label, softhsmModule, tk.pinFile))
}

// keyURI is the URI of the key labelled label on the token.
func (tk *testToken) keyURI(label string) *keystore.URI {
	return tk.storeURI().WithAttr("object", label)
}

// open opens a Store on the token and closes it at the end of the test.
func (tk *testToken) open(tb testing.TB, opts p11store.Options) *p11store.Store {
	tb.Helper()
	s, err := p11store.Open(context.Background(), tk.storeURI(), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// logBuffer is a concurrency-safe buffer for a slog text handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// debugLogger logs everything into a buffer.
func debugLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
