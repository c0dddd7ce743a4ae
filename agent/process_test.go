package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thingd/thingd/agent"
)

// thingdProc is a thingd process under test.
type thingdProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	config string
	state  string
	done   chan error
}

type configOpts struct {
	thing, endpoint, serverCA, key, cert, stateDir string
	extra                                          string
}

func writeConfig(t *testing.T, o configOpts) string {
	t.Helper()
	if o.stateDir == "" {
		o.stateDir = filepath.Join(t.TempDir(), "state")
	}
	p := filepath.Join(t.TempDir(), "thingd.toml")
	body := fmt.Sprintf(`thing_name = %q
endpoint = %q
server_ca = %q
state_dir = %q
key = %q
certificate = %q
log_level = "debug"

[backoff]
base = "200ms"
cap = "2s"
reset_after = "20s"
%s`, o.thing, o.endpoint, o.serverCA, o.stateDir, o.key, o.cert, o.extra)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startThingd runs `thingd run --config cfg`; it is stopped with SIGTERM at
// the end of the test if still running.
func startThingd(t *testing.T, cfg string, args ...string) *thingdProc {
	t.Helper()
	return startThingdBin(t, thingdBin, nil, cfg, args...)
}

// startThingdBin is startThingd with another binary and extra environment.
func startThingdBin(t *testing.T, bin string, env []string, cfg string, args ...string) *thingdProc {
	t.Helper()
	p := &thingdProc{stderr: &syncBuffer{}, config: cfg, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"run", "--config", cfg}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("thingd log:\n%s", p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; it returns the exit error.
func (p *thingdProc) stop(t *testing.T) error {
	if err, done := p.exited(0); done {
		return err
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("thingd did not stop within 15s of SIGTERM")
		return <-p.done
	}
}

// exited waits up to d for the process to exit by itself.
func (p *thingdProc) exited(d time.Duration) (error, bool) {
	if d == 0 {
		select {
		case err := <-p.done:
			p.done <- err
			return err, true
		default:
			return nil, false
		}
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

func (p *thingdProc) waitLog(t *testing.T, d time.Duration, substr string) {
	t.Helper()
	waitFor(t, d, "thingd log line containing "+substr, func() bool { return strings.Contains(p.stderr.String(), substr) })
}

// status runs `thingd status --json`.
func thingdStatus(t *testing.T, cfg string) agent.Report {
	t.Helper()
	out, err := exec.Command(thingdBin, "status", "--config", cfg, "--json").Output()
	if err != nil {
		t.Fatalf("thingd status: %v", err)
	}
	var r agent.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("thingd status output %q: %v", out, err)
	}
	return r
}
