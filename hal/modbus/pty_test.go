//go:build linux

package modbus_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

// openPTY opens a pseudo-terminal pair closed when the test ends.
func openPTY(t *testing.T) *modbustest.PTY {
	t.Helper()
	pt, err := modbustest.OpenPTY()
	if err != nil {
		t.Fatalf("OpenPTY() = %v", err)
	}
	t.Cleanup(func() {
		if err := pt.Close(); err != nil {
			t.Errorf("close pty: %v", err)
		}
	})
	return pt
}

// meter is the register map of the end-to-end tests: an energy meter with a
// writable setpoint.
var meter = modbus.Config{UnitID: 7, Registers: []modbus.Register{
	{Name: "temperature", Table: "holding", Address: 0, Type: "int16", Scale: 0.1},
	{Name: "status", Table: "holding", Address: 1},
	{Name: "energy", Table: "holding", Address: 2, Type: "uint32", Scale: 0.01},
	{Name: "balance", Table: "holding", Address: 4, Type: "int32", WordOrder: "little"},
	{Name: "power", Table: "holding", Address: 6, Type: "float32"},
	{Name: "setpoint", Table: "holding", Address: 10, Scale: 0.5, Offset: -20, Writable: true, Min: new(-10.0), Max: new(50.0)},
	{Name: "gain", Table: "holding", Address: 11, Type: "float32", WordOrder: "little", Writable: true},
	{Name: "voltage", Table: "input", Address: 100, Scale: 0.1, Offset: 0},
	{Name: "current", Table: "input", Address: 101, Type: "int16", Scale: 0.01},
	{Name: "frequency", Table: "input", Address: 102, Type: "float32", WordOrder: "big"},
}}

func meterSlave() *modbustest.Slave {
	s := modbustest.NewSlave(7)
	s.SetHolding(0,
		uint16(0x10000-215), // temperature -21.5
		3,                   // status
		0x0001, 0xe240,      // energy 123456 * 0.01
		0x1dc0, 0xfffe, // balance -123456, low word first
		0x4048, 0xf5c3, // power 3.14
		0, 0, // not mapped
		80,             // setpoint (80*0.5)-20 = 20
		0x0000, 0x3fc0, // gain 1.5, low word first
	)
	s.SetInput(100,
		2301,           // voltage 230.1
		uint16(0xfff6), // current -0.1
		0x4248, 0x0000, // frequency 50
	)
	return s
}

var meterReadings = hal.Readings{
	"temperature": -21.5, "status": 3.0, "energy": 1234.56, "balance": -123456.0, "power": 3.14,
	"setpoint": 20.0, "gain": 1.5, "voltage": 230.1, "current": -0.1, "frequency": 50.0,
}

// TestAdapterPTY runs the adapter end to end over a real pseudo-terminal:
// polls, writes, a dead device and corrupt replies.
func TestAdapterPTY(t *testing.T) {
	pt := openPTY(t)
	slave := meterSlave()
	serve(t, slave, pt.Device)
	// A generous timeout where replies are expected, so that a loaded
	// machine does not fail the test, and a short one where they are not.
	client := modbus.NewClient(pt.Port, modbus.ClientOptions{Baud: 19200, Timeout: 2 * time.Second})
	a, err := modbus.NewAdapter(client, meter)
	if err != nil {
		t.Fatal(err)
	}
	impatient, err := modbus.NewAdapter(modbus.NewClient(pt.Port, modbus.ClientOptions{Baud: 19200, Timeout: 150 * time.Millisecond}), meter)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	got, err := a.Poll(ctx)
	if err != nil {
		t.Fatalf("Poll() = %v", err)
	}
	if diff := cmp.Diff(meterReadings, got); diff != "" {
		t.Errorf("Poll() differs (-want +got):\n%s", diff)
	}
	// Holding 0-7, holding 10-12 and input 100-103: three requests.
	if got := len(slave.Requests()); got != 3 {
		t.Errorf("Poll() sent %d requests, want 3", got)
	}

	// Writes.
	for _, w := range []struct {
		name  string
		value any
		words []uint16
	}{
		{"setpoint", 25.0, []uint16{90}},
		{"setpoint", json.Number("-10"), []uint16{20}},
		{"setpoint", 50, []uint16{140}},
		{"gain", 0.25, []uint16{0x0000, 0x3e80}},
	} {
		if err := a.Write(ctx, w.name, w.value); err != nil {
			t.Errorf("Write(%q, %v) = %v", w.name, w.value, err)
		}
		addr := map[string]uint16{"setpoint": 10, "gain": 11}[w.name]
		if got := slave.Holding(addr, len(w.words)); !cmp.Equal(got, w.words) {
			t.Errorf("Write(%q, %v) left %#04x, want %#04x", w.name, w.value, got, w.words)
		}
	}
	if got, err := a.Poll(ctx); err != nil || got["setpoint"] != 50.0 || got["gain"] != 0.25 {
		t.Errorf("Poll() after writes = setpoint %v, gain %v, %v", got["setpoint"], got["gain"], err)
	}
	for _, w := range []struct {
		name  string
		value any
		want  error
	}{
		{"setpoint", 50.5, hal.ErrInvalidValue},
		{"setpoint", -10.5, hal.ErrInvalidValue},
		{"gain", math.MaxFloat64, hal.ErrInvalidValue},
		{"setpoint", "warm", hal.ErrInvalidValue},
		{"power", 1.0, hal.ErrReadOnly},
		{"voltage", 1.0, hal.ErrReadOnly},
		{"pressure", 1.0, hal.ErrUnknownName},
	} {
		if err := a.Write(ctx, w.name, w.value); !errors.Is(err, w.want) {
			t.Errorf("Write(%q, %v) = %v, want %v", w.name, w.value, err, w.want)
		}
	}
	if got := slave.Holding(10, 1)[0]; got != 140 {
		t.Errorf("refused writes changed the setpoint register to %d", got)
	}

	// A dead device: hal.ErrNoResponse, with the registers named.
	slave.InjectFault(modbustest.FaultSilent, -1)
	_, err = impatient.Poll(ctx)
	if !errors.Is(err, hal.ErrNoResponse) {
		t.Fatalf("Poll() of a silent device = %v, want hal.ErrNoResponse", err)
	}
	if want := "modbus: poll unit 7: holding registers 0-7 (temperature, status, energy, balance, power)"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Poll() error = %q, want it to start %q", err, want)
	}
	if got := impatient.Stats(); got != (hal.Stats{Timeouts: 2}) {
		t.Errorf("Stats() = %+v, want 2 timeouts (one retry)", got)
	}
	if err := impatient.Write(ctx, "setpoint", 0); !errors.Is(err, hal.ErrNoResponse) {
		t.Errorf("Write to a silent device = %v, want hal.ErrNoResponse", err)
	}
	slave.InjectFault(modbustest.FaultNone, 0)
	if got, err := a.Poll(ctx); err != nil || got["setpoint"] != 50.0 {
		t.Errorf("Poll() after the device came back = %v, %v", got, err)
	}

	// One corrupt reply: counted, retried, the poll works.
	for _, fault := range []modbustest.Fault{modbustest.FaultBadCRC, modbustest.FaultGarbage} {
		before := a.Stats()
		slave.InjectFault(fault, 1)
		got, err := a.Poll(ctx)
		if err != nil {
			t.Errorf("Poll() with one %s reply = %v", fault, err)
		} else if diff := cmp.Diff(meterReadings["temperature"], got["temperature"]); diff != "" {
			t.Errorf("Poll() with one %s reply read temperature %v", fault, got["temperature"])
		}
		if d := a.Stats().Malformed - before.Malformed; d != 1 {
			t.Errorf("%s: Stats().Malformed grew by %d, want 1", fault, d)
		}
	}

	// A truncated reply is only known as such when the timeout passes.
	before := impatient.Stats()
	slave.InjectFault(modbustest.FaultTruncated, 2)
	if _, err := impatient.Poll(ctx); !errors.Is(err, modbus.ErrMalformed) || !strings.Contains(err.Error(), "truncated reply: 10 of 21 bytes") {
		t.Errorf("Poll() with truncated replies = %v, want ErrMalformed saying it was truncated", err)
	}
	if d := impatient.Stats().Malformed - before.Malformed; d != 2 {
		t.Errorf("truncated: Stats().Malformed grew by %d, want 2", d)
	}

	// Two corrupt replies: the poll fails with ErrMalformed; the next works.
	slave.InjectFault(modbustest.FaultBadCRC, 2)
	if _, err := a.Poll(ctx); !errors.Is(err, modbus.ErrMalformed) || !strings.Contains(err.Error(), "crc") {
		t.Errorf("Poll() with two bad replies = %v, want ErrMalformed about the crc", err)
	}
	if _, err := a.Poll(ctx); err != nil {
		t.Errorf("next Poll() = %v", err)
	}

	// A refusal names the registers of the block.
	slave.InjectException(modbus.ExceptionServerDeviceBusy, 1)
	_, err = a.Poll(ctx)
	var exc *modbus.ExceptionError
	if !errors.As(err, &exc) || exc.Code != modbus.ExceptionServerDeviceBusy {
		t.Errorf("Poll() = %v, want exception 6", err)
	} else if want := "holding registers 0-7 (temperature, status, energy, balance, power): modbus: unit 7 refused read holding registers: exception 6 (server device busy)"; !strings.Contains(err.Error(), want) {
		t.Errorf("Poll() error = %q, want it to say %q", err, want)
	}

	st := a.Stats()
	if st.Frames == 0 || st != client.Stats() {
		t.Errorf("adapter Stats() = %+v, client Stats() = %+v: want equal (one adapter) and frames counted", st, client.Stats())
	}
	t.Logf("stats: %+v", st)
}

// TestAdapterPTYStaleInput checks that bytes waiting in the terminal's
// input queue before a request (noise, a late reply) are discarded rather
// than taken for the reply.
func TestAdapterPTYStaleInput(t *testing.T) {
	pt := openPTY(t)
	slave := meterSlave()
	// What looks like the start of a reply, queued before the slave runs.
	if _, err := pt.Device.Write([]byte{0x07, 0x03, 0x02, 0xde, 0xad}); err != nil {
		t.Fatal(err)
	}
	// Wait until the kernel has queued them on the terminal side.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		n, err := pt.Port.Buffered()
		if err != nil {
			t.Fatalf("Buffered() = %v", err)
		}
		if n == 5 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the noise never reached the terminal's input queue")
		}
	}
	serve(t, slave, pt.Device)
	a, err := modbus.NewAdapter(modbus.NewClient(pt.Port, modbus.ClientOptions{Timeout: 2 * time.Second, Retries: -1}), meter)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Poll(t.Context())
	if err != nil {
		t.Fatalf("Poll() = %v", err)
	}
	if diff := cmp.Diff(meterReadings, got); diff != "" {
		t.Errorf("Poll() differs (-want +got):\n%s", diff)
	}
	if st := a.Stats(); st.Malformed != 0 {
		t.Errorf("Stats() = %+v, want nothing malformed", st)
	}
}
