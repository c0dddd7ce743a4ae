package keystoretest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SwtpmMode is how clients reach an swtpm process started by [StartSwtpm].
type SwtpmMode int

const (
	// SwtpmTCP serves TPM commands on 127.0.0.1:PORT and the control
	// channel on PORT+1 (swtpm --server type=tcp --ctrl type=tcp), the
	// device tcp:127.0.0.1:PORT. swtpm serves one TCP client at a time:
	// a second client waits until the first disconnects.
	SwtpmTCP SwtpmMode = iota
	// SwtpmUnix serves TPM commands on a Unix socket (swtpm --server
	// type=unixio), the device unix:/PATH. Clients connect per command, so
	// several can share it.
	SwtpmUnix
)

func (m SwtpmMode) String() string {
	switch m {
	case SwtpmTCP:
		return "tcp"
	case SwtpmUnix:
		return "unix"
	}
	return "SwtpmMode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultSwtpmFlags is the swtpm --flags list [StartSwtpm] uses when given
// none: the TPM is powered on and has been sent TPM2_Startup(CLEAR).
const DefaultSwtpmFlags = "not-need-init,startup-clear"

// Swtpm is a running swtpm (software TPM 2.0) process with its own state
// directory under the test's temporary directory. It is killed when the
// test ends.
type Swtpm struct {
	t        testing.TB
	mode     SwtpmMode
	flags    string
	stateDir string
	sock     string // SwtpmUnix: server socket; the control socket is sock+".ctrl"
	port     int    // SwtpmTCP: server port; the control port is port+1
	cmd      *exec.Cmd
	exited   chan struct{}
}

// StartSwtpm starts swtpm on a fresh state directory and waits until it
// accepts connections. flags, if given, replace [DefaultSwtpmFlags] as
// swtpm's --flags list (for example "not-need-init" alone for a TPM that
// was never sent TPM2_Startup).
//
// swtpm must be installed (`make deps`): the test fails, never skips,
// without it.
func StartSwtpm(t testing.TB, mode SwtpmMode, flags ...string) *Swtpm {
	t.Helper()
	if mode != SwtpmTCP && mode != SwtpmUnix {
		t.Fatalf("keystoretest.StartSwtpm: unknown mode %v", mode)
	}
	p := &Swtpm{t: t, mode: mode, flags: DefaultSwtpmFlags, stateDir: t.TempDir()}
	if len(flags) > 0 {
		p.flags = strings.Join(flags, ",")
	}
	if mode == SwtpmUnix {
		// Unix socket paths are limited to 108 bytes and t.TempDir can be
		// longer: use a short directory under os.TempDir.
		dir, err := os.MkdirTemp("", "swtpm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		p.sock = filepath.Join(dir, "sock")
	}
	// Registered after the directories' cleanups, so it runs before them.
	t.Cleanup(func() { p.Stop(os.Kill) })
	p.start(true)
	return p
}

// Mode returns how clients reach this swtpm.
func (p *Swtpm) Mode() SwtpmMode { return p.mode }

// Device returns the device= query value of a tpm: URI naming this swtpm:
// tcp:127.0.0.1:PORT or unix:/PATH.
func (p *Swtpm) Device() string {
	if p.mode == SwtpmUnix {
		return "unix:" + p.sock
	}
	return "tcp:127.0.0.1:" + strconv.Itoa(p.port)
}

// URI returns the key URI for the persistent handle on this swtpm, e.g.
// tpm:handle=0x81000100?device=tcp:127.0.0.1:PORT.
func (p *Swtpm) URI(handle uint32) string {
	return fmt.Sprintf("tpm:handle=%#x?device=%s", handle, p.Device())
}

// SocketPath returns the server socket of a [SwtpmUnix] swtpm (the control
// socket is SocketPath()+".ctrl"); it is "" for [SwtpmTCP].
func (p *Swtpm) SocketPath() string { return p.sock }

// Port returns the server port of a [SwtpmTCP] swtpm on 127.0.0.1 (the
// control port is Port()+1); it is 0 for [SwtpmUnix]. The port stays the
// same across [Swtpm.Restart].
func (p *Swtpm) Port() int { return p.port }

// StateDir returns the directory holding the TPM's state (and swtpm.log).
func (p *Swtpm) StateDir() string { return p.stateDir }

// Stop sends sig to swtpm and waits for it to exit: os.Interrupt or
// syscall.SIGTERM is an orderly stop (swtpm saves its state), os.Kill a
// power cut. swtpm is killed if it has not exited 10 s after sig. Stopping
// a stopped swtpm does nothing.
func (p *Swtpm) Stop(sig os.Signal) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// Restart stops swtpm with sig (see [Swtpm.Stop]) and starts it again on
// the same state, socket or port, so URIs from [Swtpm.URI] stay valid.
// Clients must reconnect.
func (p *Swtpm) Restart(sig os.Signal) {
	p.t.Helper()
	p.Stop(sig)
	p.start(false)
}

// start runs swtpm and waits until it accepts connections, trying up to 3
// times. On the first start a TCP port pair taken meanwhile by someone else
// is replaced by another; on a restart the port is kept.
func (p *Swtpm) start(first bool) {
	t := p.t
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatalf("swtpm is required for this test and was not found (run `make deps`, or apt-get install swtpm swtpm-tools): %v", err)
	}
	logFile := filepath.Join(p.stateDir, "swtpm.log")
	if p.mode == SwtpmTCP && p.port == 0 {
		p.port = freePortPair(t)
	}
	for attempt := 1; ; attempt++ {
		args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + p.stateDir, "--flags", p.flags,
			"--log", "file=" + logFile}
		if p.mode == SwtpmUnix {
			os.Remove(p.sock)
			args = append(args, "--server", "type=unixio,path="+p.sock, "--ctrl", "type=unixio,path="+p.sock+".ctrl")
		} else {
			args = append(args, "--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", p.port),
				"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", p.port+1))
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start swtpm: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		err := p.waitReady(exited)
		if err == nil {
			p.cmd, p.exited = cmd, exited
			return
		}
		cmd.Process.Kill()
		<-exited
		if attempt >= 3 {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("swtpm %v did not come up: %v\nlog:\n%s", args, err, log)
		}
		if p.mode == SwtpmTCP && first {
			p.port = freePortPair(t) // the port was probably taken meanwhile
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitReady waits up to 10 s until swtpm accepts connections on its server
// and control endpoints.
func (p *Swtpm) waitReady(exited chan struct{}) error {
	network := "tcp"
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", p.port), fmt.Sprintf("127.0.0.1:%d", p.port+1)}
	if p.mode == SwtpmUnix {
		network = "unix"
		addrs = []string{p.sock, p.sock + ".ctrl"}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("swtpm exited")
		default:
		}
		// The socket file (or port) can exist before swtpm listens on it:
		// wait until a connection is accepted. swtpm takes the empty
		// connection as a client that came and went.
		ready := true
		for _, a := range addrs {
			c, err := net.Dial(network, a)
			if err != nil {
				ready = false
				break
			}
			c.Close()
		}
		if ready {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("timed out")
}

// freePortPair returns a port P such that P and P+1 were both free.
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l1.Addr().(*net.TCPAddr).Port
		if port >= 65534 {
			l1.Close()
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l1.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free pair of TCP ports")
	return 0
}
