package serialport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
)

// readSlice bounds each read the library is asked to do. Port.Read loops
// over slices until its own deadline, so Close never has to wait more than
// this for a Read to let go of the file descriptor (see Port.Close).
const readSlice = 100 * time.Millisecond

// errHangup is the cause of ErrGone when a read returned end of file: the
// other end of a pseudo-terminal closed, or a USB adapter was unplugged.
// go.bug.st/serial reports it as "Port has been closed", which reads as if
// we had closed the port.
var errHangup = errors.New("hangup (end of file)")

// Port is an open serial port. All its methods may be called from
// different goroutines at once; concurrent Reads are served one after the
// other, and so are Writes.
type Port struct {
	sp    serial.Port
	path  string // the device path opened
	label string // how errors name the port

	timeout atomic.Int64 // read timeout, a time.Duration
	closing atomic.Bool  // set by the first Close

	// rmu is held for the whole of a Read, so the library's read state
	// (its read timeout field) is only touched by one goroutine, and so
	// Close can wait for the read to end before the descriptor is closed.
	rmu sync.Mutex
	// wmu is held for the whole of a Write (so concurrent writes do not
	// interleave) or ResetInputBuffer, and by Close, so no write reaches a
	// descriptor number that Close freed and something else reused.
	wmu sync.Mutex
}

// Open opens the port cfg describes, looking USB ids up with the serial
// enumerator. It fails if cfg is invalid (see [Config.Validate]) or ctx is
// already done. Errors name the port and match ErrNotFound, ErrPermission
// or ErrBusy where that applies.
//
// Open does not block on the device (it opens with O_NONBLOCK, then makes
// reads blocking); enumerating USB devices only reads sysfs.
func Open(ctx context.Context, cfg Config) (*Port, error) {
	return openPort(ctx, cfg, listPorts)
}

// openPort is Open with the USB port lister as a parameter.
func openPort(ctx context.Context, cfg Config, list listFunc) (*Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mode, _ := cfg.mode() // Validate checked it
	if err := ctx.Err(); err != nil {
		return nil, &portError{op: "open", port: cfg.String(), err: err}
	}
	path, label := cfg.Path, cfg.Path
	if cfg.USB != "" {
		id, _ := ParseUSB(cfg.USB) // Validate checked it
		var err error
		if path, err = findUSB(id, list); err != nil {
			return nil, err
		}
		label = fmt.Sprintf("%s (%s)", cfg, path)
	}
	sp, err := serial.Open(path, &mode)
	if err != nil {
		return nil, openError(label, err)
	}
	p := &Port{sp: sp, path: path, label: label}
	p.timeout.Store(int64(cfg.readTimeout()))
	return p, nil
}

// Name returns the device path the port was opened at (for a USB id, the
// path it resolved to).
func (p *Port) Name() string { return p.path }

// String names the port as its errors do: the path, or for a USB id the id
// followed by the path in parentheses.
func (p *Port) String() string { return p.label }

// Read reads what has arrived, up to len(b) bytes, waiting at most the
// read timeout for the first byte. It returns n > 0 with a nil error, or
// an error: matching ErrTimeout if nothing came in time (the port is still
// usable), ErrClosed after Close, ErrGone for everything else, notably a
// device that went away. It never returns (0, nil) unless len(b) is 0.
func (p *Port) Read(b []byte) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.closing.Load() {
		return 0, p.fail("read", ErrClosed, nil)
	}
	if len(b) == 0 {
		return 0, nil
	}
	deadline := time.Now().Add(time.Duration(p.timeout.Load()))
	for {
		slice := min(max(time.Until(deadline), 0), readSlice)
		if err := p.sp.SetReadTimeout(slice); err != nil {
			return 0, p.fail("read", nil, fmt.Errorf("set read timeout: %w", err))
		}
		n, err := p.sp.Read(b)
		switch {
		case n > 0:
			// An error alongside data (the library never returns one)
			// would come back on the next Read.
			return n, nil
		case err != nil:
			if p.closing.Load() {
				return 0, p.fail("read", ErrClosed, err)
			}
			var pe portCoder
			if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
				// The library's words for a read of zero bytes, which
				// on Linux means the other end hung up.
				err = errHangup
			}
			return 0, p.fail("read", ErrGone, err)
		case p.closing.Load():
			return 0, p.fail("read", ErrClosed, nil)
		case !time.Now().Before(deadline):
			return 0, p.fail("read", ErrTimeout, nil)
		}
	}
}

// Write writes all of b, blocking until the kernel took it. It returns an
// error matching ErrClosed after Close and ErrGone for any failure, notably
// a device that went away.
func (p *Port) Write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closing.Load() {
		return 0, p.fail("write", ErrClosed, nil)
	}
	n := 0
	for n < len(b) {
		m, err := p.sp.Write(b[n:])
		n += m
		if err != nil {
			return n, p.fail("write", ErrGone, err)
		}
		if m == 0 {
			return n, p.fail("write", ErrGone, io.ErrShortWrite)
		}
	}
	return n, nil
}

// SetReadTimeout sets how long each following Read waits for data; a Read
// already waiting keeps its deadline. d must be positive.
func (p *Port) SetReadTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("serialport: set read timeout on %s: %v is not positive", p.label, d)
	}
	p.timeout.Store(int64(d))
	return nil
}

// ResetInputBuffer discards data received but not read yet. Errors match
// ErrClosed or ErrGone.
func (p *Port) ResetInputBuffer() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closing.Load() {
		return p.fail("reset input buffer", ErrClosed, nil)
	}
	if err := p.sp.ResetInputBuffer(); err != nil {
		return p.fail("reset input buffer", ErrGone, err)
	}
	return nil
}

// Close closes the port. A Read in progress returns an error matching
// ErrClosed within about 100 ms; Close waits for it, and for a Write in
// progress to finish. Calls after the first return nil at once.
func (p *Port) Close() error {
	if !p.closing.CompareAndSwap(false, true) {
		return nil
	}
	// The library closes the descriptor before it wakes readers, so a read
	// still in select(2) could end up on a reused descriptor number. Wait
	// for reads and writes to let go first.
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.sp.Close(); err != nil {
		return p.fail("close", nil, err)
	}
	return nil
}

// openError is the error for a failed serial.Open of port.
func openError(port string, err error) error {
	return &portError{op: "open", port: port, kind: openKind(err), err: err}
}

// fail builds the error for op on this port.
func (p *Port) fail(op string, kind, err error) error {
	return &portError{op: op, port: p.label, kind: kind, err: err}
}

// errIsKind reports whether err is one of ours with the given kind at its
// top level (not merely wrapping one as its cause).
func errIsKind(err, kind error) bool {
	var pe *portError
	return errors.As(err, &pe) && pe.kind == kind
}
