//go:build crashhook

package agent

import (
	"os"
	"syscall"

	"github.com/thingd/thingd/agent/rotation"
)

// CrashHookEnv names the rotation step after whose journal write a thingd
// built with -tags crashhook kills itself with SIGKILL. Only the crash
// matrix test builds that binary; production builds have no such hook.
const CrashHookEnv = "THINGD_TEST_CRASH_AFTER"

func init() {
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
