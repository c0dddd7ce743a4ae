package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// thingdBin and thingsimBin are the binaries built once for the end-to-end
// tests; crashBin is thingd built with the crashhook tag (the rotation crash
// matrix).
var thingdBin, thingsimBin, crashBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thingd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	thingdBin = filepath.Join(dir, "thingd")
	thingsimBin = filepath.Join(dir, "thingsim")
	crashBin = filepath.Join(dir, "thingd-crashhook")
	for _, b := range []struct{ bin, pkg, tags string }{
		{thingdBin, "agent/cmd/thingd", ""},
		{thingsimBin, "sim/cmd/thingsim", ""},
		{crashBin, "agent/cmd/thingd", "crashhook"},
	} {
		bin, pkg := b.bin, b.pkg
		cmd := exec.Command("go", "build", "-race", "-tags="+b.tags, "-o", bin, "github.com/thingd/thingd/"+pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
