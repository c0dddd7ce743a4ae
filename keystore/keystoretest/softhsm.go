package keystoretest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSMModule is where Debian's softhsm2 package puts the module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSMToken is a fresh SoftHSM token in a test's temporary directory.
type SoftHSMToken struct {
	Label   string // token label
	PIN     string // user PIN
	PINFile string // file holding the PIN (mode 0600)
	Conf    string // SOFTHSM2_CONF path
}

// NewSoftHSMToken initialises a fresh token under t.TempDir() and points
// SOFTHSM2_CONF at it with t.Setenv (so the calling test cannot be
// parallel). The real libsofthsm2.so and softhsm2-util must be installed:
// the test fails, never skips, when they are missing (`make deps`).
func NewSoftHSMToken(t testing.TB, label string) *SoftHSMToken {
	t.Helper()
	if _, err := os.Stat(SoftHSMModule); err != nil {
		t.Fatalf("SoftHSM is not installed (%v): run `make deps`", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tok := &SoftHSMToken{Label: label, PIN: "ud-pin-4821", Conf: conf, PINFile: filepath.Join(dir, "pin")}
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "5678", "--pin", tok.PIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}

// URI returns a pkcs11: key URI for object on this token, with the PIN in a
// pin-source file.
func (tok *SoftHSMToken) URI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s", tok.Label, object, SoftHSMModule, tok.PINFile)
}
