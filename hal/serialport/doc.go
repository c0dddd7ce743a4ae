// Package serialport opens the gateway's serial ports through
// go.bug.st/serial and keeps them open across USB unplugs.
//
// A [Config] names a port either by device path (prefer the stable
// /dev/serial/by-id/... links over /dev/ttyUSBn) or by USB vendor and
// product id, optionally narrowed by serial number; USB ids are looked up
// with go.bug.st/serial/enumerator every time the port is opened, so a
// device that comes back under another /dev/ttyUSBn is still found.
//
// [Open] returns a [Port]. A [Keeper] holds a Port, notices when its device
// goes away and reopens it with capped, jittered backoff. Both satisfy the
// interface the device adapters (hal/linesensor, hal/modbus) consume:
//
//	interface {
//		io.ReadWriter
//		SetReadTimeout(time.Duration) error
//		ResetInputBuffer() error
//	}
//
// # Errors
//
// Every error names the port and the operation that failed, for example
//
//	serialport: open /dev/ttyUSB0: permission denied (add the user running thingd to the dialout group)
//
// and matches, with [errors.Is], at most one of the sentinel errors:
// [ErrNotFound], [ErrPermission] and [ErrBusy] when a port cannot be opened,
// [ErrTimeout] when a read got no data in time, [ErrGone] when the device
// went away (or the port failed in a way only reopening can cure) and
// [ErrClosed] after Close. The underlying error (a syscall.Errno or a
// *serial.PortError) is wrapped as well.
//
// # Reads, timeouts and vanished devices
//
// go.bug.st/serial reports a read timeout as (0, nil), which a caller cannot
// tell from an empty read. [Port.Read] never returns (0, nil) for a non-empty
// buffer: it returns data, or an error matching [ErrTimeout] (whose
// Timeout method also reports true, like a net.Error), or another error.
//
// On Linux, once the other side of a pseudo-terminal closes (and, per the
// library, once a USB adapter is unplugged) a read of the tty returns zero
// bytes at once and go.bug.st/serial reports "Port has been closed"; writes
// fail with EIO. Port tells its own Close apart from that, and reports the
// latter, and every other read or write failure, as [ErrGone].
//
// # Platform
//
// The package targets Linux. Baud rates are ignored by pseudo-terminals, and
// DTR/RTS are never set on open because that fails on them. 1.5 stop bits
// are not supported by the Linux termios interface.
package serialport
