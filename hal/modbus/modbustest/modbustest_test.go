package modbustest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPipe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := modbustest.Pipe()
		buf := make([]byte, 8)

		// Buffered: writes never wait for the reader.
		for _, s := range []string{"ab", "cd"} {
			if n, err := a.Write([]byte(s)); n != 2 || err != nil {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		if n, err := b.Read(buf); string(buf[:n]) != "abcd" || err != nil {
			t.Errorf("Read() = %q, %v, want abcd", buf[:n], err)
		}

		// A read timeout bounds each Read.
		b.SetReadTimeout(100 * time.Millisecond)
		start := time.Now()
		if n, err := b.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read() = %d, %v, want os.ErrDeadlineExceeded", n, err)
		}
		if got := time.Since(start); got != 100*time.Millisecond {
			t.Errorf("Read() timed out after %v, want 100ms", got)
		}
		b.SetReadTimeout(0)

		// A deadline set while a Read waits ends it.
		go func() {
			time.Sleep(time.Second)
			b.SetReadDeadline(time.Now())
		}()
		if n, err := b.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read() = %d, %v, want os.ErrDeadlineExceeded", n, err)
		}
		b.SetReadDeadline(time.Time{})

		// Data arriving wakes a waiting Read.
		go func() {
			time.Sleep(time.Second)
			a.Write([]byte("x"))
		}()
		if n, err := b.Read(buf); string(buf[:n]) != "x" || err != nil {
			t.Errorf("Read() = %q, %v, want x", buf[:n], err)
		}

		// ResetInputBuffer drops what was not read.
		a.Write([]byte("stale"))
		b.ResetInputBuffer()
		a.Write([]byte("new"))
		if n, err := b.Read(buf); string(buf[:n]) != "new" || err != nil {
			t.Errorf("Read() after ResetInputBuffer = %q, %v, want new", buf[:n], err)
		}

		// Close: the other end drains, then reads io.EOF; writes fail.
		b.Write([]byte("last"))
		b.Close()
		if n, err := a.Read(buf); string(buf[:n]) != "last" || err != nil {
			t.Errorf("Read() after the peer closed = %q, %v, want last", buf[:n], err)
		}
		if n, err := a.Read(buf); n != 0 || err != io.EOF {
			t.Errorf("Read() = %d, %v, want io.EOF", n, err)
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Write() after close = %v, want io.ErrClosedPipe", err)
		}
	})
}

// rawSlave serves a slave for unit 1 on a Pipe and returns the master's end.
func rawSlave(t *testing.T) (*modbustest.Slave, *modbustest.PipeEnd) {
	dev, port := modbustest.Pipe()
	slave := modbustest.NewSlave(1)
	slave.SetHolding(0, 10, 11, 12)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slave.Serve(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	})
	port.SetReadTimeout(time.Second)
	return slave, port
}

func withCRC(b ...byte) []byte { return binary.LittleEndian.AppendUint16(b, modbus.CRC16(b)) }

// exchange sends frame and returns the reply, or nil after a second of
// silence.
func exchange(t *testing.T, port *modbustest.PipeEnd, frame []byte) []byte {
	t.Helper()
	if _, err := port.Write(frame); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 300)
	n, err := port.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestSlaveFraming(t *testing.T) {
	tests := []struct {
		name    string
		request []byte
		reply   []byte // nil: none
	}{
		{"read", withCRC(1, 3, 0, 1, 0, 2), withCRC(1, 3, 4, 0, 11, 0, 12)},
		{"missing register", withCRC(1, 3, 0, 2, 0, 2), withCRC(1, 0x83, 2)},
		{"quantity 0", withCRC(1, 3, 0, 0, 0, 0), withCRC(1, 0x83, 3)},
		{"write single coil (framed, not implemented)", withCRC(1, 5, 0, 0, 0xff, 0), withCRC(1, 0x85, 1)},
		{"unknown function (framed by silence)", withCRC(1, 0x2b, 0x0e, 1, 0), withCRC(1, 0xab, 1)},
		{"other unit", withCRC(2, 3, 0, 1, 0, 2), nil},
		{"bad crc", append(withCRC(1, 3, 0, 1, 0, 2)[:6], 0, 0), nil},
		{"broadcast write", withCRC(0, 6, 0, 0, 0, 99), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := rawSlave(t)
				if got := exchange(t, port, tt.request); !cmp.Equal(got, tt.reply) {
					t.Errorf("reply to % x = % x, want % x", tt.request, got, tt.reply)
				}
				// The slave still answers.
				if got, want := exchange(t, port, withCRC(1, 3, 0, 0, 0, 1)), withCRC(1, 3, 2, 0, byte(slave.Holding(0, 1)[0])); !cmp.Equal(got, want) {
					t.Errorf("next reply = % x, want % x", got, want)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		slave, port := rawSlave(t)
		exchange(t, port, withCRC(0, 6, 0, 0, 0, 99))
		if got := slave.Holding(0, 1)[0]; got != 99 {
			t.Errorf("broadcast write left %d, want 99", got)
		}
		exchange(t, port, append(withCRC(1, 3, 0, 1, 0, 2)[:6], 0, 0))
		if got := slave.Malformed(); got != 1 {
			t.Errorf("Malformed() = %d, want 1", got)
		}
	})
}

func TestSlaveFaults(t *testing.T) {
	read := withCRC(1, 3, 0, 0, 0, 1)
	good := withCRC(1, 3, 2, 0, 10)
	tests := []struct {
		fault modbustest.Fault
		reply []byte
	}{
		{modbustest.FaultSilent, nil},
		{modbustest.FaultBadCRC, append(good[:len(good)-1:len(good)-1], good[len(good)-1]^0xff)},
		{modbustest.FaultGarbage, modbustest.Garbage},
		{modbustest.FaultTruncated, good[:3]},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := rawSlave(t)
				slave.InjectFault(tt.fault, 2)
				for i := range 2 {
					if got := exchange(t, port, read); !cmp.Equal(got, tt.reply) {
						t.Errorf("reply %d = % x, want % x", i, got, tt.reply)
					}
				}
				if got := exchange(t, port, read); !cmp.Equal(got, good) {
					t.Errorf("reply after the fault = % x, want % x", got, good)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		slave, port := rawSlave(t)
		slave.InjectFault(modbustest.FaultSilent, -1)
		for range 3 {
			if got := exchange(t, port, read); got != nil {
				t.Errorf("reply while silent for good = % x", got)
			}
		}
		slave.InjectException(modbus.ExceptionAcknowledge, -1)
		slave.InjectFault(modbustest.FaultNone, 0)
		for range 2 {
			if got, want := exchange(t, port, read), withCRC(1, 0x83, 5); !cmp.Equal(got, want) {
				t.Errorf("reply = % x, want % x", got, want)
			}
		}
		slave.InjectException(0, 0)
		slave.SetDelay(500 * time.Millisecond)
		start := time.Now()
		if got := exchange(t, port, read); !cmp.Equal(got, good) || time.Since(start) != 500*time.Millisecond {
			t.Errorf("delayed reply = % x after %v", got, time.Since(start))
		}
		if got := len(slave.Requests()); got != 6 {
			t.Errorf("Requests() has %d, want 6", got)
		}
	})
}

func TestSlaveServeEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev, port := modbustest.Pipe()
		done := make(chan error, 1)
		go func() { done <- modbustest.NewSlave(1).Serve(context.Background(), dev) }()
		port.Close()
		if err := <-done; !errors.Is(err, io.EOF) {
			t.Errorf("Serve after the line closed = %v, want io.EOF", err)
		}
	})
}
