package modbus_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

func TestConfigValidate(t *testing.T) {
	ok := modbus.Register{Name: "t", Table: modbus.TableHolding, Address: 0}
	with := func(f func(r *modbus.Register)) modbus.Config {
		r := ok
		f(&r)
		return modbus.Config{UnitID: 1, Registers: []modbus.Register{r}}
	}
	tests := []struct {
		name string
		cfg  modbus.Config
		want []string // "": valid
	}{
		{"minimal", with(func(r *modbus.Register) {}), nil},
		{"all fields", with(func(r *modbus.Register) {
			*r = modbus.Register{Name: "sp", Table: "holding", Address: 65534, Type: "float32", WordOrder: "little",
				Scale: 0.1, Offset: -40, Writable: true, Min: new(-10.0), Max: new(10.0)}
		}), nil},
		// agent/config fills in "big" for every type.
		{"big word order on uint16", with(func(r *modbus.Register) { r.WordOrder = "big" }), nil},
		{"unit 0", modbus.Config{UnitID: 0, Registers: []modbus.Register{ok}}, []string{"modbus: unit id 0 is not between 1 and 247"}},
		{"unit 248", modbus.Config{UnitID: 248, Registers: []modbus.Register{ok}}, []string{"unit id 248"}},
		{"no registers", modbus.Config{UnitID: 1}, []string{"modbus: no registers to read"}},
		{"no name", with(func(r *modbus.Register) { r.Name = "" }), []string{"modbus: registers[0]: name is missing"}},
		{"control character", with(func(r *modbus.Register) { r.Name = "a\nb" }), []string{"name has control characters"}},
		{"duplicate", modbus.Config{UnitID: 1, Registers: []modbus.Register{ok, {Name: "t", Table: "input"}}},
			[]string{`modbus: register "t": name used by two registers`}},
		{"no table", with(func(r *modbus.Register) { r.Table = "" }), []string{`register "t": table is missing (holding or input)`}},
		{"bad table", with(func(r *modbus.Register) { r.Table = "coil" }), []string{`table "coil" is not holding or input`}},
		{"bad type", with(func(r *modbus.Register) { r.Type = "float64" }), []string{`type "float64" is not uint16, int16, uint32, int32 or float32`}},
		{"word order on int16", with(func(r *modbus.Register) { r.Type, r.WordOrder = "int16", "little" }), []string{"only 32-bit types have a word order"}},
		{"bad word order", with(func(r *modbus.Register) { r.Type, r.WordOrder = "int32", "middle" }), []string{`word order "middle" is not big or little`}},
		{"past 65535", with(func(r *modbus.Register) { r.Type, r.Address = "uint32", 65535 }), []string{"a uint32 at address 65535 runs past 65535"}},
		{"writable input", with(func(r *modbus.Register) { r.Table, r.Writable = "input", true }), []string{"input registers are read-only"}},
		{"NaN scale", with(func(r *modbus.Register) { r.Scale = math.NaN() }), []string{"scale NaN is not a finite number"}},
		{"Inf offset", with(func(r *modbus.Register) { r.Offset = math.Inf(1) }), []string{"offset +Inf is not a finite number"}},
		{"min on read-only", with(func(r *modbus.Register) { r.Min = new(1.0) }), []string{"min and max bound writes; the register is not writable"}},
		{"min above max", with(func(r *modbus.Register) { r.Writable, r.Min, r.Max = true, new(5.0), new(1.0) }), []string{"min 5 is greater than max 1"}},
		{"NaN max", with(func(r *modbus.Register) { r.Writable, r.Max = true, new(math.NaN()) }), []string{"min or max is NaN"}},
		{"overlap", modbus.Config{UnitID: 1, Registers: []modbus.Register{
			{Name: "a", Table: "input", Address: 10, Type: "int32"},
			{Name: "b", Table: "input", Address: 11},
			{Name: "c", Table: "holding", Address: 11}, // other table: fine
		}}, []string{`register "b": input registers 11-11 overlap register "a"`}},
		{"several", modbus.Config{UnitID: 0, Registers: []modbus.Register{{Name: "x"}}},
			[]string{"unit id 0", `register "x": table is missing`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to say %q", err, w)
				}
			}
			if _, aerr := modbus.NewAdapter(nil, tt.cfg); aerr == nil || aerr.Error() != err.Error() {
				t.Errorf("NewAdapter error = %v, want the Validate error", aerr)
			}
		})
	}
}

// TestPlan checks how a poll groups registers into requests.
func TestPlan(t *testing.T) {
	type req struct {
		fn       modbus.FunctionCode
		addr, qt uint16
	}
	many := func(n int, table string, from uint16) []modbus.Register {
		var regs []modbus.Register
		for i := range n {
			regs = append(regs, modbus.Register{Name: fmt.Sprintf("%s%d", table, i), Table: table, Address: from + uint16(i)})
		}
		return regs
	}
	tests := []struct {
		name   string
		regs   []modbus.Register
		maxGap uint16
		want   []req
	}{
		{"one", many(1, "input", 7), 0, []req{{modbus.FuncReadInputRegisters, 7, 1}}},
		{"contiguous out of order", []modbus.Register{
			{Name: "c", Table: "holding", Address: 3, Type: "float32"},
			{Name: "a", Table: "holding", Address: 0, Type: "uint32"},
			{Name: "b", Table: "holding", Address: 2},
		}, 0, []req{{modbus.FuncReadHoldingRegisters, 0, 5}}},
		{"tables apart", []modbus.Register{
			{Name: "i", Table: "input", Address: 0},
			{Name: "h", Table: "holding", Address: 1},
		}, 0, []req{{modbus.FuncReadHoldingRegisters, 1, 1}, {modbus.FuncReadInputRegisters, 0, 1}}},
		{"gap not bridged", []modbus.Register{
			{Name: "a", Table: "holding", Address: 0},
			{Name: "b", Table: "holding", Address: 2},
		}, 0, []req{{modbus.FuncReadHoldingRegisters, 0, 1}, {modbus.FuncReadHoldingRegisters, 2, 1}}},
		{"gap bridged", []modbus.Register{
			{Name: "a", Table: "holding", Address: 0},
			{Name: "b", Table: "holding", Address: 4, Type: "int32"},
			{Name: "c", Table: "holding", Address: 20},
		}, 3, []req{{modbus.FuncReadHoldingRegisters, 0, 6}, {modbus.FuncReadHoldingRegisters, 20, 1}}},
		{"125 per request", many(300, "input", 0), 0, []req{
			{modbus.FuncReadInputRegisters, 0, 125}, {modbus.FuncReadInputRegisters, 125, 125}, {modbus.FuncReadInputRegisters, 250, 50}}},
		{"pair not split", append(many(124, "holding", 0), modbus.Register{Name: "f", Table: "holding", Address: 124, Type: "float32"}), 0,
			[]req{{modbus.FuncReadHoldingRegisters, 0, 124}, {modbus.FuncReadHoldingRegisters, 124, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(0, make([]uint16, 400)...)
				slave.SetInput(0, make([]uint16, 400)...)
				a, err := modbus.NewAdapter(modbus.NewClient(port, modbus.ClientOptions{}), modbus.Config{UnitID: 1, Registers: tt.regs, MaxGap: tt.maxGap})
				if err != nil {
					t.Fatal(err)
				}
				readings, err := a.Poll(t.Context())
				if err != nil {
					t.Fatalf("Poll() = %v", err)
				}
				if len(readings) != len(tt.regs) {
					t.Errorf("Poll() returned %d readings, want %d", len(readings), len(tt.regs))
				}
				var got []req
				for _, r := range slave.Requests() {
					got = append(got, req{r.Function, r.Address, r.Quantity})
				}
				if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(req{})); diff != "" {
					t.Errorf("requests differ (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestAdapterValues checks every type, word order, scale and offset both
// ways: the words a written value becomes, and the reading those words give.
func TestAdapterValues(t *testing.T) {
	tests := []struct {
		reg   modbus.Register
		value any
		words []uint16
		read  float64 // the reading of words
	}{
		{modbus.Register{Type: "uint16"}, 65535.0, []uint16{0xffff}, 65535},
		{modbus.Register{Type: "uint16"}, 0, []uint16{0}, 0},
		{modbus.Register{}, json.Number("1234"), []uint16{1234}, 1234},
		{modbus.Register{Type: "int16"}, -32768, []uint16{0x8000}, -32768},
		{modbus.Register{Type: "int16"}, int64(-1), []uint16{0xffff}, -1},
		{modbus.Register{Type: "int16", Scale: 0.1}, -12.3, []uint16{uint16(0x10000 - 123)}, -12.3},
		{modbus.Register{Type: "uint16", Scale: 0.1}, 0.3, []uint16{3}, 0.3},
		{modbus.Register{Type: "uint16", Scale: 0.1}, 21.55, []uint16{216}, 21.6}, // rounded to the register's resolution
		{modbus.Register{Type: "uint16", Scale: 0.5, Offset: -20}, 25, []uint16{90}, 25},
		{modbus.Register{Type: "uint16", Scale: -1}, -7, []uint16{7}, -7},
		{modbus.Register{Type: "uint32"}, uint32(0x12345678), []uint16{0x1234, 0x5678}, 0x12345678},
		{modbus.Register{Type: "uint32", WordOrder: "little"}, 0x12345678, []uint16{0x5678, 0x1234}, 0x12345678},
		{modbus.Register{Type: "uint32"}, 4294967295.0, []uint16{0xffff, 0xffff}, 4294967295},
		{modbus.Register{Type: "int32"}, -2147483648, []uint16{0x8000, 0}, -2147483648},
		{modbus.Register{Type: "int32", WordOrder: "little"}, -123456, []uint16{0x1dc0, 0xfffe}, -123456},
		{modbus.Register{Type: "int32", Scale: 0.001}, json.Number("-1.5"), []uint16{0xffff, 0xfa24}, -1.5},
		{modbus.Register{Type: "float32"}, 3.14, []uint16{0x4048, 0xf5c3}, 3.14},
		{modbus.Register{Type: "float32", WordOrder: "little"}, float32(21.5), []uint16{0, 0x41ac}, 21.5},
		{modbus.Register{Type: "float32"}, 0.1, []uint16{0x3dcc, 0xcccd}, 0.1},
		{modbus.Register{Type: "float32", Scale: 10, Offset: 1}, 1.0, []uint16{0, 0}, 1},
		{modbus.Register{Type: "float32"}, -3.4e38, []uint16{0xff7f, 0xc99e}, -3.4e38},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s/%v/%v", tt.reg.Type, tt.reg.WordOrder, tt.reg.Scale, tt.value)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slave, port := pipeSlave(t, 1)
				slave.SetHolding(100, 0xaaaa, 0xaaaa)
				reg := tt.reg
				reg.Name, reg.Table, reg.Address, reg.Writable = "v", "holding", 100, true
				a, err := modbus.NewAdapter(modbus.NewClient(port, modbus.ClientOptions{}), modbus.Config{UnitID: 1, Registers: []modbus.Register{reg}})
				if err != nil {
					t.Fatal(err)
				}
				if err := a.Write(t.Context(), "v", tt.value); err != nil {
					t.Fatalf("Write(%v) = %v", tt.value, err)
				}
				if got := slave.Holding(100, len(tt.words)); !cmp.Equal(got, tt.words) {
					t.Errorf("Write(%v) wrote %#04x, want %#04x", tt.value, got, tt.words)
				}
				slave.SetHolding(100, tt.words...)
				readings, err := a.Poll(t.Context())
				if err != nil {
					t.Fatalf("Poll() = %v", err)
				}
				if diff := cmp.Diff(hal.Readings{"v": tt.read}, readings); diff != "" {
					t.Errorf("Poll() of %#04x differs (-want +got):\n%s", tt.words, diff)
				}
				wantFn := modbus.FuncWriteSingleRegister
				if len(tt.words) == 2 {
					wantFn = modbus.FuncWriteMultipleRegisters
				}
				if got := slave.Requests()[0].Function; got != wantFn {
					t.Errorf("Write used %v, want %v", got, wantFn)
				}
			})
		})
	}
}

func TestAdapterWriteRefused(t *testing.T) {
	regs := []modbus.Register{
		{Name: "ro", Table: "holding", Address: 0},
		{Name: "in", Table: "input", Address: 0},
		{Name: "u16", Table: "holding", Address: 1, Writable: true},
		{Name: "i16", Table: "holding", Address: 2, Type: "int16", Writable: true},
		{Name: "u32", Table: "holding", Address: 3, Type: "uint32", Writable: true},
		{Name: "i32", Table: "holding", Address: 5, Type: "int32", Writable: true, Scale: 0.01},
		{Name: "f32", Table: "holding", Address: 7, Type: "float32", Writable: true},
		{Name: "sp", Table: "holding", Address: 9, Scale: 0.5, Offset: -20, Writable: true, Min: new(-10.0), Max: new(50.0)},
	}
	tests := []struct {
		name  string
		value any
		want  error
		says  string
	}{
		{"ro", 1, hal.ErrReadOnly, `modbus: write "ro": holding register 0 is not writable`},
		{"in", 1, hal.ErrReadOnly, "input register 0 is not writable"},
		{"nope", 1, hal.ErrUnknownName, `modbus: write "nope"`},
		{"u16", 65536, hal.ErrInvalidValue, "65536 is raw value 65536, outside the uint16 range 0 to 65535"},
		{"u16", -1, hal.ErrInvalidValue, "outside the uint16 range"},
		{"u16", -0.4, nil, ""}, // rounds to 0
		{"u16", "12", hal.ErrInvalidValue, "a string is not a number"},
		{"u16", true, hal.ErrInvalidValue, "a bool is not a number"},
		{"u16", nil, hal.ErrInvalidValue, "a <nil> is not a number"},
		{"u16", json.Number("x"), hal.ErrInvalidValue, `"x" is not a number`},
		{"u16", json.Number("1e400"), hal.ErrInvalidValue, `"1e400" is not a number`},
		{"u16", math.NaN(), hal.ErrInvalidValue, "NaN is not a finite number"},
		{"u16", math.Inf(-1), hal.ErrInvalidValue, "-Inf is not a finite number"},
		{"i16", 32768, hal.ErrInvalidValue, "outside the int16 range -32768 to 32767"},
		{"i16", -32769, hal.ErrInvalidValue, "outside the int16 range"},
		{"u32", 4294967296.0, hal.ErrInvalidValue, "outside the uint32 range 0 to 4294967295"},
		{"i32", 21474836.48, hal.ErrInvalidValue, "outside the int32 range"},
		{"i32", -21474836.48, nil, ""},
		{"f32", 3.5e38, hal.ErrInvalidValue, "outside the float32 range -3.4028235e+38 to 3.4028235e+38"},
		{"f32", uint64(1) << 63, nil, ""},
		{"sp", 50.5, hal.ErrInvalidValue, "50.5 is above max 50"},
		{"sp", -10.5, hal.ErrInvalidValue, "-10.5 is below min -10"},
		{"sp", 50, nil, ""},
	}
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		slave.SetHolding(0, make([]uint16, 10)...)
		slave.SetInput(0, 0)
		a, err := modbus.NewAdapter(modbus.NewClient(port, modbus.ClientOptions{}), modbus.Config{UnitID: 1, Registers: regs})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			before := len(slave.Requests())
			err := a.Write(t.Context(), tt.name, tt.value)
			if tt.want == nil {
				if err != nil {
					t.Errorf("Write(%q, %v) = %v", tt.name, tt.value, err)
				}
				continue
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Write(%q, %v) = %v, want %v saying %q", tt.name, tt.value, err, tt.want, tt.says)
			}
			if n := len(slave.Requests()) - before; n != 0 {
				t.Errorf("Write(%q, %v) sent %d requests, want none", tt.name, tt.value, n)
			}
		}
	})
}

func TestAdapterNonFinite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slave, port := pipeSlave(t, 1)
		slave.SetInput(0, 0x7fc0, 0, 0xff80, 0, 0x3f80, 0) // NaN, -Inf, 1
		a, err := modbus.NewAdapter(modbus.NewClient(port, modbus.ClientOptions{}), modbus.Config{UnitID: 1, Registers: []modbus.Register{
			{Name: "nan", Table: "input", Address: 0, Type: "float32"},
			{Name: "inf", Table: "input", Address: 2, Type: "float32"},
			{Name: "one", Table: "input", Address: 4, Type: "float32"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Poll(t.Context())
		if diff := cmp.Diff(hal.Readings{"one": 1.0}, got); err != nil || diff != "" {
			t.Errorf("Poll() = %v, differs (-want +got):\n%s", err, diff)
		}
		if _, err := json.Marshal(got); err != nil {
			t.Errorf("readings do not marshal: %v", err)
		}
	})
}

// TestAdapterStatsShared checks that two adapters on one line (two units)
// count their own replies while the client counts all.
func TestAdapterStatsShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev, port := modbustest.Pipe()
		t.Cleanup(func() { port.Close() })
		s1, s2 := modbustest.NewSlave(1), modbustest.NewSlave(2)
		s1.SetHolding(0, 11)
		s2.SetHolding(0, 22)
		// Two slaves on one line: both read every request; each answers its own.
		dev1, dev2, bus := fanout(t, dev)
		serve(t, s1, dev1)
		serve(t, s2, dev2)
		go bus()
		c := modbus.NewClient(port, modbus.ClientOptions{})
		reg := []modbus.Register{{Name: "v", Table: "holding", Address: 0}}
		a1, _ := modbus.NewAdapter(c, modbus.Config{UnitID: 1, Registers: reg})
		a2, _ := modbus.NewAdapter(c, modbus.Config{UnitID: 2, Registers: reg})
		for range 2 {
			if got, err := a1.Poll(t.Context()); err != nil || got["v"] != 11.0 {
				t.Errorf("unit 1 Poll() = %v, %v", got, err)
			}
		}
		s2.InjectFault(modbustest.FaultSilent, 2)
		if _, err := a2.Poll(t.Context()); !errors.Is(err, hal.ErrNoResponse) {
			t.Errorf("unit 2 Poll() = %v, want hal.ErrNoResponse", err)
		}
		if got, err := a2.Poll(t.Context()); err != nil || got["v"] != 22.0 {
			t.Errorf("unit 2 Poll() = %v, %v", got, err)
		}
		for _, tt := range []struct {
			name      string
			got, want hal.Stats
		}{
			{"unit 1", a1.Stats(), hal.Stats{Frames: 2}},
			{"unit 2", a2.Stats(), hal.Stats{Frames: 1, Timeouts: 2}},
			{"client", c.Stats(), hal.Stats{Frames: 3, Timeouts: 2}},
		} {
			if tt.got != tt.want {
				t.Errorf("%s Stats() = %+v, want %+v", tt.name, tt.got, tt.want)
			}
		}
	})
}

// fanout splits the device end of a line into two devices on the same bus:
// what the master sends reaches both, what either sends reaches the master.
// run copies until the line closes.
func fanout(t *testing.T, line *modbustest.PipeEnd) (a, b *modbustest.PipeEnd, run func()) {
	a, aBus := modbustest.Pipe()
	b, bBus := modbustest.Pipe()
	t.Cleanup(func() { line.Close(); aBus.Close(); bBus.Close() })
	copyTo := func(dst interface{ Write([]byte) (int, error) }, src *modbustest.PipeEnd, also *modbustest.PipeEnd) {
		buf := make([]byte, 512)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			dst.Write(buf[:n])
			if also != nil {
				also.Write(buf[:n])
			}
		}
	}
	return a, b, func() {
		go copyTo(line, aBus, nil)
		go copyTo(line, bBus, nil)
		copyTo(aBus, line, bBus)
	}
}
