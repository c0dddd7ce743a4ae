package linesensor_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/linesensor"
)

// ptyPair is one PTY: the master plays the sensor, the slave is the port.
type ptyPair struct {
	sensor *os.File // master
	tty    *os.File // slave
}

// openPTY opens a PTY pair in raw mode, as a serial port is, and closes
// it when the test ends.
func openPTY(t *testing.T) ptyPair {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no PTY on this machine: pty.Open: %v", err)
	}
	t.Cleanup(func() {
		master.Close() // may already be closed by the test
		slave.Close()
	})
	// Raw mode (cfmakeraw): no echo, no line editing, no CR/NL mapping,
	// 8-bit clean. The slave is not passed to Fd(), which would make it
	// blocking and break read deadlines.
	rc, err := slave.SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		var tio syscall.Termios
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
			ioctlErr = e
			return
		}
		tio.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP |
			syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
		tio.Oflag &^= syscall.OPOST
		tio.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
		tio.Cflag &^= syscall.CSIZE | syscall.PARENB
		tio.Cflag |= syscall.CS8
		tio.Cc[syscall.VMIN] = 1
		tio.Cc[syscall.VTIME] = 0
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
			ioctlErr = e
		}
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		t.Fatalf("set raw mode: %v", err)
	}
	return ptyPair{sensor: master, tty: slave}
}

// unread returns how many bytes wait in the slave's input queue.
func (p ptyPair) unread(t *testing.T) int {
	t.Helper()
	rc, err := p.tty.SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	var n int32
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
			ioctlErr = e
		}
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		t.Fatalf("TIOCINQ: %v", err)
	}
	return int(n)
}

// ttyPort is a linesensor.Port over a PTY slave whose file can be
// swapped, like a port that reopens its device after it went away.
type ttyPort struct {
	mu      sync.Mutex
	f       *os.File
	timeout time.Duration
}

func (p *ttyPort) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout = d
	return nil
}

func (p *ttyPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	f, d := p.f, p.timeout
	p.mu.Unlock()
	if err := f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	return f.Read(b)
}

func (p *ttyPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	f := p.f
	p.mu.Unlock()
	return f.Write(b)
}

func (p *ttyPort) swap(f *os.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.f = f
}

// waitFor polls a until ok accepts the result, failing after a generous
// deadline. It returns the accepted result.
func waitFor(t *testing.T, a *linesensor.Adapter, what string, ok func(hal.Readings, error) bool) (hal.Readings, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var r hal.Readings
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err = a.Poll(ctx)
		cancel()
		if ok(r, err) {
			return r, err
		}
		time.Sleep(10 * time.Millisecond) // only paces the loop
	}
	t.Fatalf("waiting for %s: last Poll() = %v, %v", what, r, err)
	return nil, nil
}

// waitForReadings polls until Poll returns want.
func waitForReadings(t *testing.T, a *linesensor.Adapter, want hal.Readings) {
	t.Helper()
	waitFor(t, a, "readings "+cmp.Diff(nil, want), func(r hal.Readings, err error) bool {
		return err == nil && cmp.Equal(want, r)
	})
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatalf("sensor write: %v", err)
	}
}

func TestEndToEndOverPTY(t *testing.T) {
	first := openPTY(t)
	port := &ttyPort{f: first.tty}
	a := linesensor.New(port, linesensor.Options{Stale: time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	}()

	// Readings arrive through Poll.
	write(t, first.sensor, "{\"temp\":21.5,\"hum\":40}\r\n")
	waitForReadings(t, a, hal.Readings{"temp": 21.5, "hum": 40.0})

	// Garbage, binary noise and an over-long line are counted and skipped.
	write(t, first.sensor, "hello\n\x00\x01\xfe\xff\x7f\x1b[0m\n")
	write(t, first.sensor, `{"big":"`+strings.Repeat("x", 2*linesensor.DefaultMaxLineBytes)+"\"}\n")
	write(t, first.sensor, "{\"temp\":22}\n")
	waitForReadings(t, a, hal.Readings{"temp": 22.0})
	if got, want := a.Stats(), (hal.Stats{Frames: 2, Malformed: 3}); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}

	// The sensor stops: after Stale, hal.ErrNoResponse.
	waitFor(t, a, "hal.ErrNoResponse", func(_ hal.Readings, err error) bool {
		return errors.Is(err, hal.ErrNoResponse)
	})
	if a.Stats().Timeouts == 0 {
		t.Fatalf("Stats().Timeouts = 0 after hal.ErrNoResponse")
	}

	// The sensor resumes: readings again.
	write(t, first.sensor, "{\"temp\":23}\n")
	waitForReadings(t, a, hal.Readings{"temp": 23.0})

	// The sensor goes away mid-line: Poll reports the port's error, and
	// the partial line is counted. The partial line comes in one write
	// after a good line; once the good line is polled, the write has
	// reached the slave, and once the slave's input queue is empty, the
	// adapter holds the partial line.
	write(t, first.sensor, "{\"temp\":25}\n{\"temp\":2")
	waitForReadings(t, a, hal.Readings{"temp": 25.0})
	deadline := time.Now().Add(20 * time.Second)
	for first.unread(t) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the adapter did not read the partial line")
		}
		time.Sleep(10 * time.Millisecond) // only paces the loop
	}
	malformed := a.Stats().Malformed
	first.sensor.Close()
	waitFor(t, a, "the port's error", func(_ hal.Readings, err error) bool {
		return err != nil && !errors.Is(err, hal.ErrNoResponse) && !errors.Is(err, context.DeadlineExceeded)
	})
	if got := a.Stats().Malformed; got != malformed+1 {
		t.Fatalf("Stats().Malformed = %d, want %d after the partial line was dropped", got, malformed+1)
	}

	// The port comes back (a reopening port swaps in a new device) and the
	// sensor talks again: readings again.
	second := openPTY(t)
	port.swap(second.tty)
	write(t, second.sensor, "{\"temp\":24}\n")
	waitForReadings(t, a, hal.Readings{"temp": 24.0})
}
