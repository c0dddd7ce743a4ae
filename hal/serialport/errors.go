package serialport

import (
	"errors"
	"strings"
	"syscall"

	"go.bug.st/serial"
)

// Sentinel errors. Errors from this package match at most one of them with
// errors.Is; see the package documentation.
var (
	// ErrNotFound means the device does not exist: no such path, a device
	// node whose hardware is gone, or no USB device with the configured id.
	ErrNotFound = errors.New("serialport: no such device")
	// ErrPermission means the process may not open the device. On Debian
	// and most distributions serial devices belong to the dialout group.
	ErrPermission = errors.New("serialport: permission denied")
	// ErrBusy means another process holds the device (EBUSY, or exclusive
	// mode set with TIOCEXCL by another program).
	ErrBusy = errors.New("serialport: device busy")
	// ErrTimeout means a Read got no data within the read timeout. The
	// port is still usable.
	ErrTimeout = errors.New("serialport: read timeout")
	// ErrGone means the device went away (USB unplug, pseudo-terminal
	// master closed) or failed in a way that only reopening can cure. The
	// Port is useless from then on: close it and open it again, or let a
	// Keeper do that.
	ErrGone = errors.New("serialport: device gone")
	// ErrClosed means the Port or Keeper was closed (or its Run returned).
	ErrClosed = errors.New("serialport: port closed")
)

// kindText is how each sentinel reads inside a longer message.
var kindText = map[error]string{
	ErrNotFound:   "no such device",
	ErrPermission: "permission denied (add the user running thingd to the dialout group)",
	ErrBusy:       "device busy (another program has it open)",
	ErrTimeout:    "timeout",
	ErrGone:       "device gone",
	ErrClosed:     "port closed",
}

// portError is what this package returns for a failed operation on a port.
// It is unexported: callers match its parts with errors.Is and errors.As.
type portError struct {
	op   string // what failed: "open", "find", "read", "write", ...
	port string // the port, as Config.String or Port's label prints it
	kind error  // one of the sentinels, or nil
	text string // replaces kindText[kind] when set
	err  error  // the cause, or nil
}

func (e *portError) Error() string {
	var b strings.Builder
	b.WriteString("serialport: ")
	b.WriteString(e.op)
	b.WriteString(" ")
	b.WriteString(e.port)
	text := e.text
	if text == "" {
		text = kindText[e.kind]
	}
	if text != "" {
		b.WriteString(": ")
		b.WriteString(text)
	}
	if e.err != nil && !e.causeIsKind() {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.err.Error(), "serialport: "))
	}
	return b.String()
}

// causeIsKind reports whether the cause says no more than the kind's text
// already does ("permission denied: permission denied"), so that Error
// need not repeat it. The cause is still there for errors.Is and errors.As.
func (e *portError) causeIsKind() bool {
	if e.kind == nil {
		return false
	}
	var pe portCoder
	if errors.As(e.err, &pe) {
		// A bare PortError's text is its code, which the kind says
		// better; with a cause its text has more.
		if p, ok := pe.(interface{ EncodedErrorString() string }); ok {
			return e.err.Error() == p.EncodedErrorString()
		}
		return false
	}
	var errno syscall.Errno
	return errors.As(e.err, &errno) && e.err.Error() == errno.Error() &&
		strings.HasPrefix(kindText[e.kind], errno.Error())
}

// Unwrap returns the sentinel and the cause, so errors.Is matches either.
func (e *portError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// Timeout reports whether the error is a read timeout, following the
// net.Error convention so callers that know nothing of this package can
// tell a timeout from a failure.
func (e *portError) Timeout() bool { return e.kind == ErrTimeout }

// portCoder is what *serial.PortError (and serial.PortError) provide; tests
// fake it, since a PortError with a chosen code cannot be built outside the
// library.
type portCoder interface {
	Code() serial.PortErrorCode
}

// openKind classifies an error from serial.Open (or the open(2) below it)
// as ErrNotFound, ErrPermission or ErrBusy, or returns nil if it is none of
// them.
func openKind(err error) error {
	if err == nil {
		return nil
	}
	var pe portCoder
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound:
			return ErrNotFound
		case serial.PermissionDenied:
			return ErrPermission
		case serial.PortBusy:
			return ErrBusy
		}
		// Other codes (InvalidSerialPort with a cause the library does not
		// expose for unwrapping, bad settings) fall through: none of ours.
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT, syscall.ENODEV, syscall.ENXIO:
			return ErrNotFound
		case syscall.EACCES, syscall.EPERM:
			return ErrPermission
		case syscall.EBUSY:
			return ErrBusy
		}
	}
	return nil
}
