//go:build crashhook

package agent

import (
	"os"
	"syscall"
	"time"

	"github.com/thingd/thingd/agent/rotation"
)

// CrashHookEnv names the rotation step after whose journal write a thingd
// built with -tags crashhook kills itself with SIGKILL. Only the crash
// matrix test builds that binary; production builds have no such hook.
const CrashHookEnv = "THINGD_TEST_CRASH_AFTER"

// WedgeHookEnv, in a crashhook build, wedges the main loop this long after
// start (a Go duration), for the systemd watchdog test.
const WedgeHookEnv = "THINGD_TEST_WEDGE_AFTER"

func init() {
	if d, err := time.ParseDuration(os.Getenv(WedgeHookEnv)); err == nil {
		ch := make(chan struct{})
		time.AfterFunc(d, func() { close(ch) })
		testWedge = ch
	}
	step := os.Getenv(CrashHookEnv)
	if step == "" {
		return
	}
	crashAfter = func(s rotation.Step) {
		if string(s) == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}
