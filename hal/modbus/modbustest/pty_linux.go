//go:build linux

package modbustest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal pair standing in for a serial line: a Slave
// serves on Device, and a master talks through Port or opens Path as a
// serial device (the baud rate is ignored). Both sides are in raw mode, so
// every byte passes unchanged.
type PTY struct {
	// Device is the pseudo-terminal's master side, the device's end.
	Device *os.File
	// Port is the terminal side, opened, as a modbus.Port.
	Port *FilePort
	// Path is the terminal side's name, such as /dev/pts/3, for code that
	// opens the serial port itself.
	Path string
}

// OpenPTY opens a pseudo-terminal pair in raw mode. Close it when done.
func OpenPTY() (*PTY, error) {
	blocking, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("modbustest: open pty: %w", err)
	}
	master, err := pollable(blocking)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("modbustest: pty master: %w", err), tty.Close())
	}
	if err := makeRaw(tty); err != nil {
		return nil, errors.Join(fmt.Errorf("modbustest: raw mode on %s: %w", tty.Name(), err), master.Close(), tty.Close())
	}
	return &PTY{Device: master, Port: NewFilePort(tty), Path: tty.Name()}, nil
}

// pollable returns a copy of f that supports deadlines, and closes f.
// creack/pty calls Fd on the master side, which puts it in blocking mode
// for good: reads then ignore deadlines. A duplicate descriptor set
// non-blocking is taken into the runtime's poller by os.NewFile.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	var fd int
	err := control(f, func(old int) error {
		var err error
		if fd, err = unix.FcntlInt(uintptr(old), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// Close closes both sides.
func (p *PTY) Close() error {
	return errors.Join(p.Port.Close(), p.Device.Close())
}

// makeRaw puts the terminal f in raw mode, as cfmakeraw(3) does.
func makeRaw(f *os.File) error {
	return control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		return unix.IoctlSetTermios(fd, unix.TCSETS, t)
	})
}

// control runs fn on f's descriptor without taking it out of the runtime's
// poller (as f.Fd would), so deadlines keep working.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// FilePort is a terminal as a modbus.Port: reads honour SetReadTimeout
// through the file's read deadline, and ResetInputBuffer flushes the
// terminal's input queue (tcflush(TCIFLUSH)).
type FilePort struct {
	f *os.File

	// mu guards timeout.
	mu      sync.Mutex
	timeout time.Duration
}

// NewFilePort returns a FilePort over f, a terminal opened by os.OpenFile
// (so that it supports deadlines). The FilePort owns f.
func NewFilePort(f *os.File) *FilePort { return &FilePort{f: f} }

// Read reads from the terminal, waiting at most the read timeout (none if
// zero) and then returning an error matching os.ErrDeadlineExceeded.
func (p *FilePort) Read(b []byte) (int, error) {
	p.mu.Lock()
	d := p.timeout
	p.mu.Unlock()
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	if err := p.f.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	return p.f.Read(b)
}

// Write writes to the terminal.
func (p *FilePort) Write(b []byte) (int, error) { return p.f.Write(b) }

// SetReadTimeout bounds each later Read to d; zero means no bound.
func (p *FilePort) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout = d
	return nil
}

// ResetInputBuffer discards the bytes the terminal received and no one
// read yet.
func (p *FilePort) ResetInputBuffer() error {
	return control(p.f, func(fd int) error { return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) })
}

// Buffered returns how many received bytes wait in the terminal's input
// queue (TIOCINQ). Bytes written on a pseudo-terminal's master side reach
// that queue a little later, through a kernel worker: a test that wants
// ResetInputBuffer to drop them waits until they are counted here.
func (p *FilePort) Buffered() (int, error) {
	var n int
	err := control(p.f, func(fd int) error {
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCINQ)
		return err
	})
	return n, err
}

// Close closes the terminal.
func (p *FilePort) Close() error { return p.f.Close() }
