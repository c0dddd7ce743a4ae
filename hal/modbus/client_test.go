package modbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

func TestClientReadWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 9)
		slave.SetHolding(10, 1, 2, 3, 0xffff)
		slave.SetInput(0, 40, 41)
		slave.SetCoils(5, true, false, true, true, false, false, false, false, true)
		slave.SetDiscreteInputs(0, false, true)
		c := modbus.NewClient(port, modbus.ClientOptions{Baud: 9600})
		ctx := t.Context()

		if got, err := c.ReadHoldingRegisters(ctx, 9, 10, 4); err != nil || !cmp.Equal(got, []uint16{1, 2, 3, 0xffff}) {
			t.Errorf("ReadHoldingRegisters = %v, %v", got, err)
		}
		if got, err := c.ReadInputRegisters(ctx, 9, 0, 2); err != nil || !cmp.Equal(got, []uint16{40, 41}) {
			t.Errorf("ReadInputRegisters = %v, %v", got, err)
		}
		if got, err := c.ReadCoils(ctx, 9, 5, 9); err != nil || !cmp.Equal(got, []bool{true, false, true, true, false, false, false, false, true}) {
			t.Errorf("ReadCoils = %v, %v", got, err)
		}
		if got, err := c.ReadDiscreteInputs(ctx, 9, 0, 2); err != nil || !cmp.Equal(got, []bool{false, true}) {
			t.Errorf("ReadDiscreteInputs = %v, %v", got, err)
		}
		if err := c.WriteRegister(ctx, 9, 11, 0xbeef); err != nil {
			t.Errorf("WriteRegister = %v", err)
		}
		if err := c.WriteRegisters(ctx, 9, 12, []uint16{7, 8}); err != nil {
			t.Errorf("WriteRegisters = %v", err)
		}
		if got := slave.Holding(10, 4); !cmp.Equal(got, []uint16{1, 0xbeef, 7, 8}) {
			t.Errorf("holding registers after writes = %v", got)
		}
		if got, want := c.Stats(), (hal.Stats{Frames: 6}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
	})
}

func TestClientRefusesBadRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		c := modbus.NewClient(port, modbus.ClientOptions{})
		ctx := t.Context()
		tests := []struct {
			name string
			err  error
			want string
		}{
			{"broadcast", c.WriteRegister(ctx, 0, 1, 1), "unit 0 (broadcast) is not supported"},
			{"zero quantity", func() error { _, err := c.ReadHoldingRegisters(ctx, 1, 0, 0); return err }(), "quantity 0"},
			{"126 registers", func() error { _, err := c.ReadInputRegisters(ctx, 1, 0, 126); return err }(), "quantity 126"},
			{"124 writes", c.WriteRegisters(ctx, 1, 0, make([]uint16, 124)), "124 values, at most 123"},
			{"no writes", c.WriteRegisters(ctx, 1, 0, nil), "quantity 0"},
		}
		for _, tt := range tests {
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
				t.Errorf("%s: error %v, want one saying %q", tt.name, tt.err, tt.want)
			}
		}
		if got := slave.Requests(); len(got) != 0 {
			t.Errorf("the slave saw %d requests, want none", len(got))
		}
	})
}

func TestClientNoResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		slave.SetHolding(0, 5)
		slave.InjectFault(modbustest.FaultSilent, -1)
		c := modbus.NewClient(port, modbus.ClientOptions{})
		start := time.Now()
		_, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1)
		if !errors.Is(err, hal.ErrNoResponse) {
			t.Fatalf("ReadHoldingRegisters = %v, want hal.ErrNoResponse", err)
		}
		for _, want := range []string{"unit 1 read holding registers at address 0", "no reply within 1s", "attempt 2 of 2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		// Two attempts of 1 s each; the line was silent long enough.
		if got, want := time.Since(start), 2*time.Second; got != want {
			t.Errorf("gave up after %v, want %v", got, want)
		}
		if got, want := c.Stats(), (hal.Stats{Timeouts: 2}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
		if got := len(slave.Requests()); got != 2 {
			t.Errorf("slave saw %d requests, want 2", got)
		}

		slave.InjectFault(modbustest.FaultNone, 0)
		if got, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); err != nil || got[0] != 5 {
			t.Errorf("ReadHoldingRegisters after the device came back = %v, %v", got, err)
		}
	})
}

func TestClientRetries(t *testing.T) {
	for _, tt := range []struct {
		retries  int
		attempts int
	}{{-1, 1}, {0, 2}, {1, 2}, {3, 4}} {
		t.Run(fmt.Sprint(tt.retries), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, 5)
				slave.InjectFault(modbustest.FaultSilent, -1)
				c := modbus.NewClient(port, modbus.ClientOptions{Retries: tt.retries, Timeout: 100 * time.Millisecond})
				if _, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); !errors.Is(err, hal.ErrNoResponse) {
					t.Fatalf("ReadHoldingRegisters = %v, want hal.ErrNoResponse", err)
				}
				if got := len(slave.Requests()); got != tt.attempts {
					t.Errorf("Retries %d: %d attempts, want %d", tt.retries, got, tt.attempts)
				}
			})
		})
	}
}

func TestClientMalformed(t *testing.T) {
	tests := []struct {
		fault modbustest.Fault
		want  string
	}{
		{modbustest.FaultBadCRC, "crc 0x"},
		{modbustest.FaultGarbage, "reply starting 00 ff 55 does not answer a read holding registers request to unit 1"},
		{modbustest.FaultTruncated, "truncated reply: 4 of 9 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, 5, 6)

				// One bad reply: the retry gets the value.
				slave.InjectFault(tt.fault, 1)
				c := modbus.NewClient(port, modbus.ClientOptions{Baud: 19200})
				if got, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 2); err != nil || !cmp.Equal(got, []uint16{5, 6}) {
					t.Errorf("ReadHoldingRegisters after one %s reply = %v, %v", tt.fault, got, err)
				}
				if got, want := c.Stats(), (hal.Stats{Frames: 1, Malformed: 1}); got != want {
					t.Errorf("Stats() = %+v, want %+v", got, want)
				}

				// Without retries the error says what was wrong.
				slave.InjectFault(tt.fault, 1)
				c = modbus.NewClient(port, modbus.ClientOptions{Baud: 19200, Retries: -1})
				_, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 2)
				if !errors.Is(err, modbus.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("ReadHoldingRegisters = %v, want ErrMalformed saying %q", err, tt.want)
				}
				if errors.Is(err, hal.ErrNoResponse) {
					t.Errorf("ReadHoldingRegisters = %v, which is not a missing reply", err)
				}
				if got, want := c.Stats(), (hal.Stats{Malformed: 1}); got != want {
					t.Errorf("Stats() = %+v, want %+v", got, want)
				}
				if got, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 2); err != nil || !cmp.Equal(got, []uint16{5, 6}) {
					t.Errorf("next ReadHoldingRegisters = %v, %v", got, err)
				}
			})
		})
	}
}

func TestClientException(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 3)
		slave.SetHolding(0, 5)
		c := modbus.NewClient(port, modbus.ClientOptions{})
		ctx := t.Context()

		_, err := c.ReadHoldingRegisters(ctx, 3, 0, 2)
		var exc *modbus.ExceptionError
		if !errors.As(err, &exc) || *exc != (modbus.ExceptionError{Unit: 3, Function: modbus.FuncReadHoldingRegisters, Code: modbus.ExceptionIllegalDataAddress}) {
			t.Errorf("ReadHoldingRegisters of a missing register = %v, want exception 2", err)
		}
		err = c.WriteRegister(ctx, 3, 1, 1)
		if !errors.As(err, &exc) || exc.Code != modbus.ExceptionIllegalDataAddress || exc.Function != modbus.FuncWriteSingleRegister {
			t.Errorf("WriteRegister to a missing register = %v, want exception 2", err)
		}

		slave.InjectException(modbus.ExceptionServerDeviceBusy, 1)
		_, err = c.ReadHoldingRegisters(ctx, 3, 0, 1)
		if !errors.As(err, &exc) || exc.Code != modbus.ExceptionServerDeviceBusy {
			t.Errorf("ReadHoldingRegisters = %v, want exception 6", err)
		}
		if want := "modbus: unit 3 refused read holding registers: exception 6 (server device busy)"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
		if errors.Is(err, hal.ErrNoResponse) || errors.Is(err, modbus.ErrMalformed) {
			t.Errorf("an exception matches ErrNoResponse or ErrMalformed: %v", err)
		}
		// Exceptions are answers: counted as frames, not retried.
		if got, want := c.Stats(), (hal.Stats{Frames: 3}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
		if got := len(slave.Requests()); got != 3 {
			t.Errorf("slave saw %d requests, want 3", got)
		}
	})
}

// TestClientLateReply checks that a reply arriving after its request timed
// out is discarded rather than taken for the next request's.
func TestClientLateReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		slave.SetHolding(0, 1)
		slave.SetDelay(1500 * time.Millisecond)
		c := modbus.NewClient(port, modbus.ClientOptions{Retries: -1})
		if _, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); !errors.Is(err, hal.ErrNoResponse) {
			t.Fatalf("ReadHoldingRegisters = %v, want hal.ErrNoResponse", err)
		}
		time.Sleep(time.Second) // The late reply, holding 1, arrives.
		slave.SetDelay(0)
		slave.SetHolding(0, 2)
		if got, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); err != nil || got[0] != 2 {
			t.Errorf("ReadHoldingRegisters = %v, %v, want [2]", got, err)
		}
		if got, want := c.Stats(), (hal.Stats{Frames: 1, Timeouts: 1}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
	})
}

// TestClientSilence checks the RTU inter-frame silence: a request goes out
// no sooner than t3.5 after the line was last busy, counting the time the
// previous request took on the wire.
func TestClientSilence(t *testing.T) {
	tests := []struct {
		baud int
		gap  time.Duration // between two requests, whose replies come at once
	}{
		{0, modbus.UnknownBaudSilence},
		{9600, 8*(11*time.Second/9600) + 11*time.Second/9600*7/2},
		{115200, 8*(11*time.Second/115200) + 1750*time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.baud), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, 1)
				c := modbus.NewClient(port, modbus.ClientOptions{Baud: tt.baud})
				start := time.Now()
				for range 10 {
					if _, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); err != nil {
						t.Fatal(err)
					}
				}
				if got, want := time.Since(start), 9*tt.gap; got != want {
					t.Errorf("10 requests took %v, want %v", got, want)
				}
			})
		})
	}
}

func TestClientContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		slave.SetHolding(0, 1)
		slave.InjectFault(modbustest.FaultSilent, -1)
		c := modbus.NewClient(port, modbus.ClientOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.ReadHoldingRegisters(ctx, 1, 0, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReadHoldingRegisters = %v, want context.DeadlineExceeded", err)
		}
		if got := time.Since(start); got > 300*time.Millisecond+50*time.Millisecond {
			t.Errorf("returned %v after the context ended", got-300*time.Millisecond)
		}
		if got := c.Stats(); got != (hal.Stats{}) {
			t.Errorf("Stats() = %+v, want none counted", got)
		}
		if _, err := c.ReadHoldingRegisters(ctx, 1, 0, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReadHoldingRegisters with a done context = %v", err)
		}
	})
}

// timeoutPort turns the read timeouts of a PipeEnd into the other forms a
// Port may report them in.
type timeoutPort struct {
	*modbustest.PipeEnd
	as func() (int, error)
}

func (p timeoutPort) Read(b []byte) (int, error) {
	n, err := p.PipeEnd.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return p.as()
	}
	return n, err
}

// netTimeout is a timeout as net.Error and serialport.ErrTimeout report it.
type netTimeout struct{}

func (netTimeout) Error() string { return "serialport: read /dev/ttyUSB0: i/o wait expired" }
func (netTimeout) Timeout() bool { return true }

func TestClientTimeoutForms(t *testing.T) {
	tests := []struct {
		name string
		as   func() (int, error)
	}{
		{"zero and nil", func() (int, error) { return 0, nil }},
		{"Timeout method", func() (int, error) { return 0, fmt.Errorf("wrapped: %w", netTimeout{}) }},
		{"text", func() (int, error) { return 0, errors.New("serial: read timed out") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, 1)
				c := modbus.NewClient(timeoutPort{port, tt.as}, modbus.ClientOptions{Retries: -1})
				if got, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); err != nil || got[0] != 1 {
					t.Errorf("ReadHoldingRegisters = %v, %v", got, err)
				}
				slave.InjectFault(modbustest.FaultSilent, 1)
				if _, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1); !errors.Is(err, hal.ErrNoResponse) {
					t.Errorf("ReadHoldingRegisters = %v, want hal.ErrNoResponse", err)
				}
			})
		})
	}
}

// failingPort fails at one step.
type failingPort struct {
	*modbustest.PipeEnd
	read, write, reset error
}

func (p failingPort) Read(b []byte) (int, error) {
	if p.read != nil {
		return 0, p.read
	}
	return p.PipeEnd.Read(b)
}

func (p failingPort) Write(b []byte) (int, error) {
	if p.write != nil {
		return 0, p.write
	}
	return p.PipeEnd.Write(b)
}

func (p failingPort) ResetInputBuffer() error {
	if p.reset != nil {
		return p.reset
	}
	return p.PipeEnd.ResetInputBuffer()
}

func TestClientPortFailure(t *testing.T) {
	gone := errors.New("serialport: /dev/ttyUSB0: device went away")
	tests := []struct {
		name string
		port func(*modbustest.PipeEnd) modbus.Port
		want string
	}{
		{"read", func(p *modbustest.PipeEnd) modbus.Port { return failingPort{PipeEnd: p, read: gone} }, "read reply: " + gone.Error()},
		{"write", func(p *modbustest.PipeEnd) modbus.Port { return failingPort{PipeEnd: p, write: gone} }, "write request: " + gone.Error()},
		{"reset", func(p *modbustest.PipeEnd) modbus.Port { return failingPort{PipeEnd: p, reset: gone} }, "discard stale input: " + gone.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, 1)
				c := modbus.NewClient(tt.port(port), modbus.ClientOptions{})
				_, err := c.ReadHoldingRegisters(t.Context(), 1, 0, 1)
				if !errors.Is(err, gone) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("ReadHoldingRegisters = %v, want an error wrapping %q", err, tt.want)
				}
				if errors.Is(err, hal.ErrNoResponse) || errors.Is(err, modbus.ErrMalformed) {
					t.Errorf("a failing port is reported as the device's fault: %v", err)
				}
				if got := c.Stats(); got != (hal.Stats{}) {
					t.Errorf("Stats() = %+v, want none counted (no retry either)", got)
				}
			})
		})
	}
}

func TestClientConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		for i := range 50 {
			slave.SetHolding(uint16(i), uint16(1000+i))
		}
		c := modbus.NewClient(port, modbus.ClientOptions{Baud: 115200})
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				if i%5 == 0 {
					if err := c.WriteRegister(t.Context(), 1, uint16(i), uint16(2000+i)); err != nil {
						t.Errorf("WriteRegister(%d) = %v", i, err)
					}
					return
				}
				got, err := c.ReadHoldingRegisters(t.Context(), 1, uint16(i), 1)
				if err != nil || got[0] != uint16(1000+i) {
					t.Errorf("ReadHoldingRegisters(%d) = %v, %v", i, got, err)
				}
			})
		}
		wg.Wait()
		if got, want := c.Stats(), (hal.Stats{Frames: 50}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
		if got := slave.Malformed(); got != 0 {
			t.Errorf("slave dropped %d malformed frames: requests interleaved", got)
		}
	})
}
