package keystore_test

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps returns the packages pkg depends on (with tests excluded).
func goListDeps(t *testing.T, pkg string, env ...string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", pkg)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules enforces design.md §8: the keystore root imports none of its
// backends; backends import only keystore and their vendor libraries; the
// thingd binary links neither the simulator nor the TPM simulator.
func TestImportRules(t *testing.T) {
	const mod = "github.com/thingd/thingd/"
	cases := []struct {
		pkg     string
		allowed []string // our packages it may depend on
		banned  []string // substrings no dependency may contain
	}{
		{pkg: mod + "keystore", allowed: []string{mod + "keystore"}},
		{pkg: mod + "keystore/p11store", allowed: []string{mod + "keystore", mod + "keystore/p11store"}},
		{pkg: mod + "keystore/tpmstore", allowed: []string{mod + "keystore", mod + "keystore/tpmstore"},
			banned: []string{"go-tpm-tools/simulator", "go-tpm/tpm2/transport/simulator"}},
		{pkg: mod + "keystore/filestore", allowed: []string{mod + "keystore", mod + "keystore/filestore"}},
		{pkg: mod + "jobs", allowed: []string{mod + "jobs"}},
		{pkg: mod + "shadow", allowed: []string{mod + "shadow"}},
		{pkg: mod + "hal", allowed: []string{mod + "hal"}},
		{pkg: mod + "hal/serialport", allowed: []string{mod + "hal/serialport"}},
		{pkg: mod + "hal/linesensor", allowed: []string{mod + "hal", mod + "hal/linesensor"}},
		{pkg: mod + "hal/modbus", allowed: []string{mod + "hal", mod + "hal/modbus"}},
		{pkg: mod + "hal/sysfacts", allowed: []string{mod + "hal/sysfacts"}},
		{pkg: mod + "agent/cmd/thingd", banned: []string{mod + "sim", "mochi-mqtt", "go-tpm-tools/simulator", "transport/simulator",
			"modbustest", "creack/pty", "simonvetter/modbus"}},
	}
	for _, c := range cases {
		t.Run(c.pkg, func(t *testing.T) {
			for _, d := range goListDeps(t, c.pkg) {
				for _, b := range c.banned {
					if strings.Contains(d, b) {
						t.Errorf("%s depends on %s, which it must not", c.pkg, d)
					}
				}
				if c.allowed == nil || !strings.HasPrefix(d, mod) {
					continue
				}
				ok := false
				for _, a := range c.allowed {
					ok = ok || d == a
				}
				if !ok {
					t.Errorf("%s imports %s; allowed: %v", c.pkg, d, c.allowed)
				}
			}
		})
	}
}

// TestTPMStoreBuildsWithoutCgo checks that the TPM backend needs no cgo,
// so production builds for gateways do not need OpenSSL or the simulator.
func TestTPMStoreBuildsWithoutCgo(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", "/dev/null", "github.com/thingd/thingd/keystore/tpmstore")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build keystore/tpmstore: %v\n%s", err, out)
	}
}
