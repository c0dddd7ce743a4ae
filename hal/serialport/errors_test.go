package serialport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"go.bug.st/serial"
)

// fakePortError stands in for a *serial.PortError with a chosen code, which
// cannot be built outside the library.
type fakePortError struct {
	code serial.PortErrorCode
	text string
}

func (e fakePortError) Code() serial.PortErrorCode { return e.code }
func (e fakePortError) EncodedErrorString() string { return e.text }
func (e fakePortError) Error() string              { return e.text }

var sentinels = []error{ErrNotFound, ErrPermission, ErrBusy, ErrTimeout, ErrGone, ErrClosed}

func TestOpenKind(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"PortNotFound", fakePortError{serial.PortNotFound, "Serial port not found"}, ErrNotFound},
		{"PermissionDenied", fakePortError{serial.PermissionDenied, "Permission denied"}, ErrPermission},
		{"PortBusy", fakePortError{serial.PortBusy, "Serial port busy"}, ErrBusy},
		{"real PortBusy", &serial.PortError{}, ErrBusy}, // the zero code is PortBusy
		{"real PortBusy value", serial.PortError{}, ErrBusy},
		{"InvalidSerialPort", fakePortError{serial.InvalidSerialPort, "Invalid serial port: error getting term settings: inappropriate ioctl for device"}, nil},
		{"InvalidSpeed", fakePortError{serial.InvalidSpeed, "Port speed invalid or not supported"}, nil},
		{"ENOENT", syscall.ENOENT, ErrNotFound},
		{"ENODEV", syscall.ENODEV, ErrNotFound},
		{"ENXIO", syscall.ENXIO, ErrNotFound},
		{"EACCES", syscall.EACCES, ErrPermission},
		{"EPERM", syscall.EPERM, ErrPermission},
		{"EBUSY", syscall.EBUSY, ErrBusy},
		{"EIO", syscall.EIO, nil},
		{"EISDIR", syscall.EISDIR, nil},
		{"wrapped EACCES", fmt.Errorf("open: %w", syscall.EACCES), ErrPermission},
		{"PathError EBUSY", &os.PathError{Op: "open", Path: "/dev/ttyUSB0", Err: syscall.EBUSY}, ErrBusy},
		{"wrapped PortError", fmt.Errorf("x: %w", fakePortError{serial.PermissionDenied, "Permission denied"}), ErrPermission},
		{"other", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := openKind(tt.err); got != tt.want {
				t.Errorf("openKind(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestOpenErrorMessages(t *testing.T) {
	const port = "/dev/ttyUSB0"
	tests := []struct {
		name string
		err  error
		want string
		kind error
	}{
		{"EACCES", syscall.EACCES,
			"serialport: open /dev/ttyUSB0: permission denied (add the user running thingd to the dialout group)", ErrPermission},
		{"EPERM", syscall.EPERM,
			"serialport: open /dev/ttyUSB0: permission denied (add the user running thingd to the dialout group): operation not permitted", ErrPermission},
		{"PermissionDenied", fakePortError{serial.PermissionDenied, "Permission denied"},
			"serialport: open /dev/ttyUSB0: permission denied (add the user running thingd to the dialout group)", ErrPermission},
		{"EBUSY", syscall.EBUSY, "serialport: open /dev/ttyUSB0: device busy (another program has it open): device or resource busy", ErrBusy},
		{"PortBusy", &serial.PortError{}, "serialport: open /dev/ttyUSB0: device busy (another program has it open)", ErrBusy},
		{"ENOENT", syscall.ENOENT, "serialport: open /dev/ttyUSB0: no such device: no such file or directory", ErrNotFound},
		{"ENXIO", syscall.ENXIO, "serialport: open /dev/ttyUSB0: no such device: no such device or address", ErrNotFound},
		{"not a tty", fakePortError{serial.InvalidSerialPort, "Invalid serial port: error getting term settings: inappropriate ioctl for device"},
			"serialport: open /dev/ttyUSB0: Invalid serial port: error getting term settings: inappropriate ioctl for device", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := openError(port, tt.err)
			if err.Error() != tt.want {
				t.Errorf("openError(%q, %v) = %q, want %q", port, tt.err, err, tt.want)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("openError(%q, %v) does not wrap its cause", port, tt.err)
			}
			checkKind(t, err, tt.kind)
		})
	}
	if err := openError(port, syscall.ENOENT); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("openError(ENOENT) = %v, want it to match fs.ErrNotExist too", err)
	}
}

// checkKind checks that err matches kind and no other sentinel (kind nil:
// none).
func checkKind(t *testing.T, err, kind error) {
	t.Helper()
	for _, s := range sentinels {
		if got, want := errors.Is(err, s), s == kind; got != want {
			t.Errorf("errors.Is(%q, %v) = %v, want %v", err, s, got, want)
		}
	}
}

func TestTimeoutMethod(t *testing.T) {
	var te interface{ Timeout() bool }
	err := error(&portError{op: "read", port: "/dev/x", kind: ErrTimeout})
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("%v: Timeout() is not true", err)
	}
	err = &portError{op: "read", port: "/dev/x", kind: ErrGone}
	if !errors.As(err, &te) || te.Timeout() {
		t.Errorf("%v: Timeout() is not false", err)
	}
}
