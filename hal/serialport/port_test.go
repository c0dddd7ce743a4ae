package serialport

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openDevice opens a fresh pseudo-terminal through Open, as a serial device
// would be, and closes the test's own slave descriptor.
func openDevice(t *testing.T, cfg Config) (*device, *Port) {
	t.Helper()
	d := newDevice(t)
	cfg.Path = d.path
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = patience
	}
	p, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	d.closeSlave(t)
	return d, p
}

func TestPortReadWrite(t *testing.T) {
	d, p := openDevice(t, Config{})
	if p.Name() != d.path || p.String() != d.path {
		t.Errorf("Name(), String() = %q, %q; want %q", p.Name(), p.String(), d.path)
	}
	d.send(t, "hello\r\n")
	readString(t, p, "hello\r\n") // raw mode: no CR/LF translation
	if n, err := p.Write([]byte("world\n")); n != 6 || err != nil {
		t.Fatalf("Write = %d, %v; want 6, nil", n, err)
	}
	d.expect(t, "world\n")
	if n, err := p.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}

	// ResetInputBuffer drops what arrived and was not read.
	d.send(t, "stale")
	waitInput(t, d, 5)
	if err := p.ResetInputBuffer(); err != nil {
		t.Fatalf("ResetInputBuffer: %v", err)
	}
	d.send(t, "fresh")
	readString(t, p, "fresh")
}

// waitInput waits until the slave has n bytes queued for reading.
func waitInput(t *testing.T, d *device, n int) {
	t.Helper()
	// The port's descriptor is not ours; open the slave again to ask.
	f, err := os.OpenFile(d.path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", d.path, err)
	}
	defer f.Close()
	deadline := time.Now().Add(patience)
	for {
		q, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatalf("TIOCINQ: %v", err)
		}
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes queued after %v, want %d", q, patience, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPortMode checks that the line settings reach the tty, as far as a
// pseudo-terminal keeps them.
func TestPortMode(t *testing.T) {
	d := newDevice(t)
	p, err := Open(t.Context(), Config{Path: d.path, Baud: 19200, DataBits: 7, Parity: "mark", StopBits: "2"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer p.Close()
	tio, err := unix.IoctlGetTermios(int(d.slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("TCGETS: %v", err)
	}
	// Linux pseudo-terminals force CS8 and clear PARENB whatever is asked
	// (drivers/tty/pty.c, pty_set_termios); the rest of the mode sticks.
	if got := tio.Cflag & (unix.PARODD | unix.CMSPAR); got != unix.PARODD|unix.CMSPAR {
		t.Errorf("parity flags = %#o, want PARODD|CMSPAR (mark)", got)
	}
	if tio.Cflag&unix.CSTOPB == 0 {
		t.Errorf("CSTOPB not set")
	}
	if tio.Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("not in raw mode: lflag %#o", tio.Lflag)
	}
}

func TestPortReadTimeout(t *testing.T) {
	d, p := openDevice(t, Config{ReadTimeout: 50 * time.Millisecond})
	buf := make([]byte, 8)
	start := time.Now()
	n, err := p.Read(buf)
	if n != 0 || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read = %d, %v; want 0, ErrTimeout", n, err)
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("Read timed out after %v, want at least 50ms", elapsed)
	}
	checkKind(t, err, ErrTimeout)
	if want := "serialport: read " + d.path + ": timeout"; err.Error() != want {
		t.Errorf("timeout error = %q, want %q", err, want)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("timeout error %v has no Timeout() true", err)
	}

	// A longer timeout than one library read slice.
	if err := p.SetReadTimeout(3 * readSlice / 2); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := p.Read(buf); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read = %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(start); elapsed < 3*readSlice/2 {
		t.Errorf("Read timed out after %v, want at least %v", elapsed, 3*readSlice/2)
	}

	// The port still works after timeouts.
	if err := p.SetReadTimeout(patience); err != nil {
		t.Fatal(err)
	}
	d.send(t, "late")
	readString(t, p, "late")

	for _, bad := range []time.Duration{0, -time.Second} {
		if err := p.SetReadTimeout(bad); err == nil {
			t.Errorf("SetReadTimeout(%v) = nil, want an error", bad)
		}
	}
}

// TestPortGone checks what go.bug.st/serial does on Linux when the master
// of a pseudo-terminal closes: a read of the slave returns zero bytes (the
// library says "Port has been closed"), writes fail with EIO. Port reports
// both as ErrGone.
func TestPortGone(t *testing.T) {
	t.Run("read waiting", func(t *testing.T) {
		d, p := openDevice(t, Config{})
		got := make(chan error, 1)
		go func() {
			_, err := p.Read(make([]byte, 8))
			got <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the read block; the outcome is the same if it has not yet
		d.unplug(t)
		select {
		case err := <-got:
			checkGone(t, err, "read", d.path)
		case <-time.After(patience):
			t.Fatal("Read still blocked after the master closed")
		}
	})
	t.Run("later calls", func(t *testing.T) {
		d, p := openDevice(t, Config{})
		d.unplug(t)
		for range 2 {
			n, err := p.Read(make([]byte, 8))
			if n != 0 {
				t.Errorf("Read = %d bytes", n)
			}
			checkGone(t, err, "read", d.path)
		}
		_, err := p.Write([]byte("x"))
		checkGone(t, err, "write", d.path)
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("Write error %v, want EIO inside", err)
		}
		checkGone(t, p.ResetInputBuffer(), "reset input buffer", d.path)
		if err := p.Close(); err != nil {
			t.Errorf("Close of a gone port = %v", err)
		}
	})
}

func checkGone(t *testing.T, err error, op, path string) {
	t.Helper()
	checkKind(t, err, ErrGone)
	if err == nil || !strings.HasPrefix(err.Error(), "serialport: "+op+" "+path+": device gone: ") {
		t.Errorf("%s error = %v, want it to name %s and say the device is gone", op, err, path)
	}
}

func TestPortClose(t *testing.T) {
	d, p := openDevice(t, Config{})
	got := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 8))
		got <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read block; the outcome is the same if it has not yet
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-got:
		checkKind(t, err, ErrClosed)
	case <-time.After(patience):
		t.Fatal("Read still blocked after Close returned")
	}
	_, err := p.Read(make([]byte, 1))
	checkKind(t, err, ErrClosed)
	_, err = p.Write([]byte("x"))
	checkKind(t, err, ErrClosed)
	checkKind(t, p.ResetInputBuffer(), ErrClosed)
	if want := "serialport: write " + d.path + ": port closed"; err.Error() != want {
		t.Errorf("Write after Close = %q, want %q", err, want)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// TestPortConcurrent runs every method at once, for the race detector.
func TestPortConcurrent(t *testing.T) {
	d, p := openDevice(t, Config{ReadTimeout: 10 * time.Millisecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			buf := make([]byte, 16)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := p.Read(buf); err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrClosed) {
					t.Errorf("Read: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := p.SetReadTimeout(time.Duration(i%5+1) * time.Millisecond); err != nil {
				t.Errorf("SetReadTimeout: %v", err)
			}
			if err := p.ResetInputBuffer(); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("ResetInputBuffer: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	// Writes go to the master, which the test drains.
	wg.Go(func() {
		buf := make([]byte, 256)
		for {
			if err := d.master.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				return
			}
			if _, err := d.master.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	for range 50 {
		d.send(t, "ping")
		if _, err := p.Write([]byte("pong")); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	close(stop)
	wg.Wait()
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(dir, "ttyNOPE")
		_, err := Open(t.Context(), Config{Path: path})
		checkKind(t, err, ErrNotFound)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v does not match fs.ErrNotExist", err)
		}
		if want := "serialport: open " + path + ": no such device: no such file or directory"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
	t.Run("dangling link", func(t *testing.T) {
		link := filepath.Join(dir, "ttyLINK")
		if err := os.Symlink(filepath.Join(dir, "gone"), link); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), Config{Path: link})
		checkKind(t, err, ErrNotFound)
	})
	t.Run("not a tty", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), Config{Path: path})
		checkKind(t, err, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "serialport: open "+path+": ") || !strings.Contains(err.Error(), "inappropriate ioctl") {
			t.Errorf("error = %v, want it to name the path and the cause", err)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		if _, err := Open(t.Context(), Config{Path: "/dev/x", DataBits: 9}); err == nil || !strings.Contains(err.Error(), "data bits 9") {
			t.Errorf("Open with 9 data bits = %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		d := newDevice(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Open(ctx, Config{Path: d.path})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), d.path) {
			t.Errorf("Open with a canceled context = %v", err)
		}
	})
	t.Run("permission", func(t *testing.T) {
		if isRoot() {
			runUnprivileged(t, "TestOpenErrors/permission")
			return
		}
		d := newDevice(t)
		if err := os.Chmod(d.path, 0); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), Config{Path: d.path})
		t.Logf("Open: %v", err)
		checkKind(t, err, ErrPermission)
		if err == nil || !strings.Contains(err.Error(), "dialout") || !strings.Contains(err.Error(), d.path) {
			t.Errorf("error = %v, want the path and the dialout hint", err)
		}
	})
	t.Run("busy", func(t *testing.T) {
		if isRoot() {
			runUnprivileged(t, "TestOpenErrors/busy")
			return
		}
		// The first Open sets TIOCEXCL, which turns others away with EBUSY.
		_, p := openDevice(t, Config{})
		_, err := Open(t.Context(), Config{Path: p.Name()})
		t.Logf("second Open: %v", err)
		checkKind(t, err, ErrBusy)
		if err == nil || !strings.Contains(err.Error(), p.Name()) {
			t.Errorf("error = %v, want the path", err)
		}
	})
}

// runUnprivileged runs the named test again in a copy of the test binary as
// user nobody, because root is let past file permissions and TIOCEXCL. It
// skips if that cannot be arranged; TestOpenKind and TestOpenErrorMessages
// cover the same mapping without the kernel.
func runUnprivileged(t *testing.T, name string) {
	t.Helper()
	const nobody = 65534
	self, err := os.Executable()
	if err != nil {
		t.Skipf("running as root and cannot find the test binary: %v", err)
	}
	// t.TempDir and its parent are private to root; nobody needs to reach
	// the copy.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "serialport.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + p + "$"
	}
	cmd := exec.CommandContext(t.Context(), bin, "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- PASS: "+name) && err == nil {
		t.Logf("passed as uid %d:\n%s", nobody, out)
		return
	}
	if _, ok := err.(*exec.ExitError); !ok && err != nil {
		t.Skipf("running as root and cannot run as uid %d: %v", nobody, err)
	}
	t.Fatalf("%s as uid %d: %v\n%s", name, nobody, err, out)
}

func TestOpenUSB(t *testing.T) {
	d := newDevice(t)
	bus := &fakeBus{}
	bus.set(usbPort("/dev/ttyUSB7", "0403:6001/OTHER"), usbPort(d.path, "0403:6001/A1"))
	p, err := openPort(t.Context(), Config{USB: "0403:6001/A1", ReadTimeout: patience}, bus.list)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer p.Close()
	d.closeSlave(t)
	if p.Name() != d.path {
		t.Errorf("Name() = %q, want %q", p.Name(), d.path)
	}
	if want := "usb:0403:6001/A1 (" + d.path + ")"; p.String() != want {
		t.Errorf("String() = %q, want %q", p.String(), want)
	}
	d.send(t, "usb")
	readString(t, p, "usb")

	bus.set()
	_, err = openPort(t.Context(), Config{USB: "0403:6001/A1"}, bus.list)
	checkKind(t, err, ErrNotFound)
	if want := "serialport: find usb:0403:6001/A1: no matching USB serial device: no USB serial devices present"; err == nil || err.Error() != want {
		t.Errorf("open with no USB devices = %v, want %q", err, want)
	}
}
