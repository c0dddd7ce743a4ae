package tpmstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// sharedTPM hands Stores a TPM they must not close: Close is a no-op, so
// several Stores can be opened on one simulator, and Send is serialised
// because the simulator is not safe for concurrent use.
type sharedTPM struct {
	mu  *sync.Mutex
	tpm transport.TPM
}

func share(tpm transport.TPM) sharedTPM { return sharedTPM{mu: new(sync.Mutex), tpm: tpm} }

func (s sharedTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tpm.Send(cmd)
}

func (sharedTPM) Close() error { return nil }

// newSimulator starts a fresh go-tpm-tools simulator, closed in t.Cleanup.
// The simulator is process-global: a second one waits until the first is
// closed, so tests using it must not run in parallel.
func newSimulator(t testing.TB) sharedTPM {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return share(sim)
}

// openSimStore opens a Store on a shared simulator; closing the Store leaves
// the simulator running.
func openSimStore(t testing.TB, sim sharedTPM) *tpmstore.Store {
	t.Helper()
	s, err := tpmstore.Open(context.Background(), nil, tpmstore.Options{Transport: sim})
	if err != nil {
		t.Fatalf("tpmstore.Open(simulator): %v", err)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// swtpmMode is how the test talks to swtpm.
type swtpmMode int

const (
	swtpmTCP swtpmMode = iota
	swtpmUnix
)

// swtpmProc is an swtpm process with its state directory. Restart starts a
// new process on the same state; the process is killed in t.Cleanup.
type swtpmProc struct {
	t        testing.TB
	mode     swtpmMode
	stateDir string
	sock     string // unix mode
	port     int    // tcp mode: server port; the control port is port+1
	cmd      *exec.Cmd
	exited   chan struct{}
	extra    []string // extra swtpm flags value for --flags
}

// startSwtpm starts swtpm on a fresh state directory. swtpm must be
// installed: the test fails, never skips, without it.
func startSwtpm(t testing.TB, mode swtpmMode) *swtpmProc {
	t.Helper()
	p := &swtpmProc{t: t, mode: mode, stateDir: t.TempDir()}
	p.start()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

// device returns the device query value for the URI.
func (p *swtpmProc) device() string {
	if p.mode == swtpmUnix {
		return "unix:" + p.sock
	}
	return "tcp:127.0.0.1:" + strconv.Itoa(p.port)
}

// uri returns the key URI for handle on this swtpm.
func (p *swtpmProc) uri(handle uint32) *keystore.URI {
	return keystore.MustParseURI(fmt.Sprintf("tpm:handle=%#x?device=%s", handle, p.device()))
}

// open opens a Store on this swtpm through the URI, as the agent would.
func (p *swtpmProc) open(t testing.TB) *tpmstore.Store {
	t.Helper()
	s, err := tpmstore.Open(ctxT(t), p.uri(0x81000100), tpmstore.Options{})
	if err != nil {
		t.Fatalf("tpmstore.Open(%s): %v", p.device(), err)
	}
	return s
}

func (p *swtpmProc) start() {
	t := p.t
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatalf("swtpm is required for these tests (apt-get install swtpm swtpm-tools): %v", err)
	}
	flags := "not-need-init,startup-clear"
	if len(p.extra) > 0 {
		flags = strings.Join(p.extra, ",")
	}
	for attempt := 1; ; attempt++ {
		args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + p.stateDir, "--flags", flags,
			"--log", "file=" + filepath.Join(p.stateDir, "swtpm.log")}
		if p.mode == swtpmUnix {
			if p.sock == "" {
				// Unix socket paths are limited to 108 bytes; t.TempDir can be long.
				dir, err := os.MkdirTemp("", "swtpm")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				p.sock = filepath.Join(dir, "sock")
			}
			os.Remove(p.sock)
			args = append(args, "--server", "type=unixio,path="+p.sock, "--ctrl", "type=unixio,path="+p.sock+".ctrl")
		} else {
			if p.port == 0 {
				p.port = freePortPair(t)
			}
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
		if err := p.waitReady(exited); err == nil {
			p.cmd, p.exited = cmd, exited
			return
		} else if attempt >= 3 {
			cmd.Process.Kill()
			<-exited
			log, _ := os.ReadFile(filepath.Join(p.stateDir, "swtpm.log"))
			t.Fatalf("swtpm %v did not come up: %v\nlog:\n%s", args, err, log)
		}
		cmd.Process.Kill()
		<-exited
		if p.mode == swtpmTCP {
			p.port = freePortPair(t) // the port was probably taken meanwhile
		}
	}
}

func (p *swtpmProc) waitReady(exited chan struct{}) error {
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
		var addrs []string
		network := "unix"
		if p.mode == swtpmUnix {
			addrs = []string{p.sock, p.sock + ".ctrl"}
		} else {
			network = "tcp"
			addrs = []string{fmt.Sprintf("127.0.0.1:%d", p.port), fmt.Sprintf("127.0.0.1:%d", p.port+1)}
		}
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

// stop sends sig (SIGTERM: orderly; SIGKILL: power cut) and waits.
func (p *swtpmProc) stop(sig syscall.Signal) {
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

// restart stops swtpm with sig and starts it again on the same state.
func (p *swtpmProc) restart(sig syscall.Signal) {
	p.t.Helper()
	p.stop(sig)
	p.start()
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
