package serialport

import (
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.bug.st/serial/enumerator"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait for something that should happen soon; it is
// generous so that a loaded machine does not make the tests flaky.
const patience = 20 * time.Second

// The interface the device adapters consume.
var (
	_ adapterPort = (*Port)(nil)
	_ adapterPort = (*Keeper)(nil)
)

type adapterPort interface {
	io.ReadWriter
	SetReadTimeout(time.Duration) error
	ResetInputBuffer() error
}

// device is a pseudo-terminal standing in for a serial device: the test
// plays the device on master, the code under test opens path.
type device struct {
	master *os.File // non-blocking, so read deadlines work
	slave  *os.File // held until closeSlave
	path   string   // the slave's path, /dev/pts/N
}

// newDevice opens a pseudo-terminal; cleanup closes both ends.
func newDevice(t *testing.T) *device {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatalf("pty.Open: %v", err)
	}
	// creack/pty hands out a blocking master, on which read deadlines do
	// not work; use a non-blocking copy, which Go's poller takes.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("dup master: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close master: %v", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatalf("set master non-blocking: %v", err)
	}
	d := &device{master: os.NewFile(uintptr(fd), "ptmx"), slave: s, path: s.Name()}
	t.Cleanup(func() {
		// Either may be closed already.
		_ = d.master.Close()
		_ = d.slave.Close()
	})
	return d
}

// closeSlave closes the test's own descriptor of the slave, once the code
// under test has opened it.
func (d *device) closeSlave(t *testing.T) {
	t.Helper()
	if err := d.slave.Close(); err != nil {
		t.Fatalf("close slave: %v", err)
	}
}

// unplug closes the master: the slave hangs up and its /dev/pts entry goes.
func (d *device) unplug(t *testing.T) {
	t.Helper()
	if err := d.master.Close(); err != nil {
		t.Fatalf("close master: %v", err)
	}
}

// send writes s as the device.
func (d *device) send(t *testing.T, s string) {
	t.Helper()
	if err := d.master.SetWriteDeadline(time.Now().Add(patience)); err != nil {
		t.Fatalf("set write deadline: %v", err)
	}
	if _, err := io.WriteString(d.master, s); err != nil {
		t.Fatalf("device write: %v", err)
	}
}

// expect reads len(want) bytes as the device and compares them with want.
func (d *device) expect(t *testing.T, want string) {
	t.Helper()
	if err := d.master.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(d.master, got); err != nil {
		t.Fatalf("device read: got %q, err %v, want %q", got, err, want)
	}
	if string(got) != want {
		t.Fatalf("device read %q, want %q", got, want)
	}
}

// readString reads exactly len(want) bytes from r, which must have a read
// timeout of about patience, and compares them with want.
func readString(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read: got %q, err %v, want %q", got, err, want)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// fakeBus is a USB enumerator whose ports the test sets.
type fakeBus struct {
	mu    sync.Mutex
	ports []*enumerator.PortDetails
	err   error
}

func (b *fakeBus) list() ([]*enumerator.PortDetails, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ports, b.err
}

func (b *fakeBus) set(ports ...*enumerator.PortDetails) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ports = ports
}

// usbPort describes a USB serial port for fakeBus: "VID:PID/SERIAL".
func usbPort(path, id string) *enumerator.PortDetails {
	ids, serialNo, _ := strings.Cut(id, "/")
	vid, pid, _ := strings.Cut(ids, ":")
	return &enumerator.PortDetails{Name: path, IsUSB: true, VID: vid, PID: pid, SerialNumber: serialNo}
}

// isRoot reports whether the tests run as root, which open(2) lets past
// file permissions and TIOCEXCL.
func isRoot() bool { return os.Geteuid() == 0 }
