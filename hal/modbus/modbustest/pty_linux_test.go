package modbustest_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/thingd/thingd/hal/modbus/modbustest"
)

func TestPTY(t *testing.T) {
	pt, err := modbustest.OpenPTY()
	if err != nil {
		t.Fatalf("OpenPTY() = %v", err)
	}
	defer pt.Close()
	if _, err := os.Stat(pt.Path); err != nil {
		t.Errorf("Path %q: %v", pt.Path, err)
	}
	// Raw both ways: CR, LF, ^C, ^D and 0xff pass unchanged, nothing echoes.
	raw := []byte{'\r', '\n', 0x03, 0x04, 0x11, 0x13, 0x7f, 0xff, 0x00}
	read := func(f interface{ Read([]byte) (int, error) }, n int) []byte {
		t.Helper()
		buf := make([]byte, 0, n)
		tmp := make([]byte, n)
		for len(buf) < n {
			m, err := f.Read(tmp[:n-len(buf)])
			if err != nil {
				t.Fatalf("read %d of %d bytes: %v", len(buf), n, err)
			}
			buf = append(buf, tmp[:m]...)
		}
		return buf
	}
	pt.Port.SetReadTimeout(time.Second)
	pt.Device.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := pt.Port.Write(raw); err != nil {
		t.Fatal(err)
	}
	if got := read(pt.Device, len(raw)); string(got) != string(raw) {
		t.Errorf("device read % x, want % x", got, raw)
	}
	if _, err := pt.Device.Write(raw); err != nil {
		t.Fatal(err)
	}
	if got := read(pt.Port, len(raw)); string(got) != string(raw) {
		t.Errorf("port read % x, want % x", got, raw)
	}

	// Timeouts on both sides.
	pt.Port.SetReadTimeout(20 * time.Millisecond)
	if _, err := pt.Port.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("port Read() with nothing sent = %v, want os.ErrDeadlineExceeded (no echo either)", err)
	}
	pt.Device.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := pt.Device.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("device Read() with nothing sent = %v, want os.ErrDeadlineExceeded", err)
	}

	// ResetInputBuffer drops what the device sent and the port did not read.
	pt.Device.Write([]byte("stale"))
	waitBuffered(t, pt.Port, 5)
	if err := pt.Port.ResetInputBuffer(); err != nil {
		t.Fatalf("ResetInputBuffer() = %v", err)
	}
	pt.Device.Write([]byte("new"))
	pt.Port.SetReadTimeout(time.Second)
	if got := read(pt.Port, 3); string(got) != "new" {
		t.Errorf("port read %q after ResetInputBuffer, want new", got)
	}
}

// waitBuffered waits until n bytes wait in p's input queue.
func waitBuffered(t *testing.T, p *modbustest.FilePort, n int) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		got, err := p.Buffered()
		if err != nil {
			t.Fatalf("Buffered() = %v", err)
		}
		if got >= n {
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("Buffered() = %d after 5s, want %d", got, n)
		}
	}
}
