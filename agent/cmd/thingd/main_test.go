package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = run(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

// TestKeyCommandsSoftHSM drives the key subcommands against a real SoftHSM
// token and checks the result with OpenSC's pkcs11-tool and openssl.
func TestKeyCommandsSoftHSM(t *testing.T) {
	tok := keystoretest.NewSoftHSMToken(t, "thingd")
	uri := tok.URI("device")

	out, _, err := runCLI(t, "key", "generate", "--key", uri, "--algorithm", "ecdsa-p384", "--json")
	if err != nil {
		t.Fatalf("key generate: %v", err)
	}
	var d keys.Description
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("generate --json output %q: %v", out, err)
	}
	if d.Algorithm != keystore.ECDSAP384 || d.Kind != keystore.KindPKCS11 || !d.NonExtractable || !d.HardwareBacked || d.Insecure {
		t.Fatalf("generated key description: %+v", d)
	}

	if _, _, err := runCLI(t, "key", "generate", "--key", uri); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second generate: got %v, want 'already exists'", err)
	}

	out, _, err = runCLI(t, "key", "info", "--key", uri)
	if err != nil {
		t.Fatalf("key info: %v", err)
	}
	for _, want := range []string{"ecdsa-p384", d.Fingerprint, "non-extractable:   true", "key store:         pkcs11"} {
		if !strings.Contains(out, want) {
			t.Errorf("key info output lacks %q:\n%s", want, out)
		}
	}

	csrPEM, _, err := runCLI(t, "key", "csr", "--key", uri, "--thing", "gw-1")
	if err != nil {
		t.Fatalf("key csr: %v", err)
	}
	csr, err := keystore.ParseCSR([]byte(csrPEM))
	if err != nil {
		t.Fatalf("CSR does not parse: %v", err)
	}
	if csr.Subject.CommonName != "gw-1" {
		t.Fatalf("CSR CN = %q", csr.Subject.CommonName)
	}
	fp, _ := keystore.Fingerprint(csr.PublicKey)
	if fp != d.Fingerprint {
		t.Fatalf("CSR key %s is not the generated key %s", fp, d.Fingerprint)
	}
	cmd := exec.Command("openssl", "req", "-noout", "-verify")
	cmd.Stdin = strings.NewReader(csrPEM)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl req -verify: %v\n%s", err, b)
	}

	// OpenSC, an independent PKCS#11 client, sees the private key as
	// sensitive and never extractable, and cannot read its value.
	list := exec.Command("pkcs11-tool", "--module", keystoretest.SoftHSMModule, "--login", "--pin", tok.PIN,
		"--token-label", "thingd", "--list-objects", "--type", "privkey")
	b, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "label:      device") ||
		!strings.Contains(string(b), "Access:     sensitive, always sensitive, never extractable, local") {
		t.Fatalf("pkcs11-tool does not show the key as sensitive/never extractable/local:\n%s", b)
	}
	read := exec.Command("pkcs11-tool", "--module", keystoretest.SoftHSMModule, "--login", "--pin", tok.PIN,
		"--token-label", "thingd", "--read-object", "--type", "privkey", "--label", "device", "-o", t.TempDir()+"/priv.der")
	b, _ = read.CombinedOutput()
	if !strings.Contains(string(b), "reading private keys not (yet) supported") {
		t.Fatalf("pkcs11-tool --read-object privkey: unexpected output:\n%s", b)
	}
	if out, _, err = runCLI(t, "key", "delete", "--key", uri); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("key delete: %q, %v", out, err)
	}
	if _, _, err = runCLI(t, "key", "delete", "--key", uri); err != nil {
		t.Fatalf("second key delete: %v", err)
	}
	if _, _, err := runCLI(t, "key", "info", "--key", uri); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("info after delete: got %v, want not found", err)
	}
}

func TestKeyCommandErrors(t *testing.T) {
	tok := keystoretest.NewSoftHSMToken(t, "thingd")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"key"}, "no subcommand"},
		{"unknown subcommand", []string{"key", "rotate"}, `unknown subcommand "rotate"`},
		{"no key", []string{"key", "info"}, "--key URI is required"},
		{"bad attribute", []string{"key", "info", "--key", "pkcs11:tokn=x?module-path=/usr/lib/softhsm/libsofthsm2.so"}, `path attribute "tokn": unknown attribute`},
		{"bad scheme", []string{"key", "info", "--key", "pkcs12:token=x"}, `scheme: unknown scheme "pkcs12"`},
		{"bad handle", []string{"key", "info", "--key", "tpm:handle=0x1234"}, `attribute "handle"`},
		{"bad algorithm", []string{"key", "generate", "--key", "file:/tmp/x.pem", "--algorithm", "ed25519"}, `algorithm "ed25519"`},
		{"csr without thing", []string{"key", "csr", "--key", tok.URI("device")}, "--thing NAME is required"},
		{"missing key", []string{"key", "info", "--key", tok.URI("nothere")}, "not found"},
		{"missing module", []string{"key", "info", "--key", "pkcs11:token=thingd;object=a?module-path=/nonexistent/lib.so&pin-value=1234"}, "/nonexistent/lib.so"},
		{"wrong pin", []string{"key", "info", "--key", "pkcs11:token=thingd;object=a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=99999"}, "PIN"},
		{"unknown token", []string{"key", "info", "--key", "pkcs11:token=other;object=a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"}, `"other"`},
		{"no tpm", []string{"key", "info", "--key", "tpm:handle=0x81000100?device=/nonexistent/tpm"}, "/nonexistent/tpm"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runCLI(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "99999") {
				t.Fatalf("error shows the PIN: %v", err)
			}
		})
	}
}

func TestFileKeyWarnsInsecure(t *testing.T) {
	uri := "file:" + t.TempDir() + "/k.pem"
	out, errOut, err := runCLI(t, "key", "generate", "--key", uri)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "INSECURE") || !strings.Contains(out, "INSECURE") {
		t.Fatalf("file key not reported insecure:\nstdout: %s\nstderr: %s", out, errOut)
	}
}
