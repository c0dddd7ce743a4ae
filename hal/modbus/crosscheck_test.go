//go:build linux

package modbus_test

// These tests check this package's framing against an independent Modbus
// implementation, github.com/simonvetter/modbus: its client reads and
// writes modbustest's slave (which uses this package's server-side
// framing), and this package's client and adapter talk to its server.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	smodbus "github.com/simonvetter/modbus"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

// testLog is an io.Writer to t.Log, for the other library's logger.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log("simonvetter/modbus: " + string(b))
	return len(b), nil
}

// theirClient connects simonvetter/modbus's client to slave over the
// transport mode names: "rtuovertcp" (RTU frames on a TCP socket) or "rtu"
// (a real pseudo-terminal, opened by path through goburrow/serial).
func theirClient(t *testing.T, mode string, slave *modbustest.Slave) *smodbus.ModbusClient {
	t.Helper()
	var url string
	var accepted chan net.Conn
	switch mode {
	case "rtuovertcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		accepted = make(chan net.Conn, 1)
		go func() {
			defer close(accepted)
			if conn, err := ln.Accept(); err == nil {
				accepted <- conn
			}
		}()
		url = "rtuovertcp://" + ln.Addr().String()
	case "rtu":
		pt := openPTY(t)
		serve(t, slave, pt.Device)
		url = "rtu://" + pt.Path
	}
	c, err := smodbus.NewClient(&smodbus.ClientConfiguration{URL: url, Speed: 19200, Timeout: time.Second, Logger: log.New(testLog{t}, "", 0)})
	if err != nil {
		t.Fatalf("smodbus.NewClient(%s) = %v", url, err)
	}
	if err := c.Open(); err != nil {
		t.Fatalf("Open(%s) = %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	if accepted != nil {
		conn, ok := <-accepted
		if !ok {
			t.Fatal("no connection accepted")
		}
		t.Cleanup(func() { conn.Close() })
		serve(t, slave, conn)
	}
	if err := c.SetUnitId(slave.Unit()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTheirClientOurSlave has simonvetter/modbus's client read and write
// registers, coils and inputs of modbustest's slave, and checks both sides:
// the values it sees, the values the slave holds, and the requests the
// slave decoded.
func TestTheirClientOurSlave(t *testing.T) {
	for _, mode := range []string{"rtuovertcp", "rtu"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(mode))))
			words := func(n int) []uint16 {
				w := make([]uint16, n)
				for i := range w {
					w[i] = uint16(rng.Uint32())
				}
				return w
			}
			bits := func(n int) []bool {
				b := make([]bool, n)
				for i := range b {
					b[i] = rng.IntN(2) == 1
				}
				return b
			}
			holding, input := words(250), words(60)
			coils, discrete := bits(37), bits(2000)
			slave := modbustest.NewSlave(17)
			slave.SetHolding(1000, holding...)
			slave.SetInput(0, input...)
			slave.SetCoils(0x13, coils...)
			slave.SetDiscreteInputs(0, discrete...)
			c := theirClient(t, mode, slave)

			var want []modbus.Request
			expect := func(fn modbus.FunctionCode, addr, qty uint16, values ...uint16) {
				want = append(want, modbus.Request{Unit: 17, Function: fn, Address: addr, Quantity: qty, Values: values})
			}
			check := func(what string, got, want any, err error) {
				t.Helper()
				if err != nil {
					t.Errorf("%s: %v", what, err)
					return
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s differs (-want +got):\n%s", what, diff)
				}
			}

			// Reads.
			got, err := c.ReadRegisters(1000, 125, smodbus.HOLDING_REGISTER)
			check("ReadRegisters(1000, 125, holding)", got, holding[:125], err)
			expect(modbus.FuncReadHoldingRegisters, 1000, 125)
			got, err = c.ReadRegisters(1125, 125, smodbus.HOLDING_REGISTER)
			check("ReadRegisters(1125, 125, holding)", got, holding[125:], err)
			expect(modbus.FuncReadHoldingRegisters, 1125, 125)
			got, err = c.ReadRegisters(0, 60, smodbus.INPUT_REGISTER)
			check("ReadRegisters(0, 60, input)", got, input, err)
			expect(modbus.FuncReadInputRegisters, 0, 60)
			one, err := c.ReadRegister(1007, smodbus.HOLDING_REGISTER)
			check("ReadRegister(1007)", one, holding[7], err)
			expect(modbus.FuncReadHoldingRegisters, 1007, 1)
			u32, err := c.ReadUint32(1010, smodbus.HOLDING_REGISTER)
			check("ReadUint32(1010) high word first", u32, uint32(holding[10])<<16|uint32(holding[11]), err)
			expect(modbus.FuncReadHoldingRegisters, 1010, 2)
			if err := c.SetEncoding(smodbus.BIG_ENDIAN, smodbus.LOW_WORD_FIRST); err != nil {
				t.Fatal(err)
			}
			u32, err = c.ReadUint32(1010, smodbus.HOLDING_REGISTER)
			check("ReadUint32(1010) low word first", u32, uint32(holding[11])<<16|uint32(holding[10]), err)
			expect(modbus.FuncReadHoldingRegisters, 1010, 2)
			if err := c.SetEncoding(smodbus.BIG_ENDIAN, smodbus.HIGH_WORD_FIRST); err != nil {
				t.Fatal(err)
			}
			bs, err := c.ReadCoils(0x13, 37)
			check("ReadCoils(0x13, 37)", bs, coils, err)
			expect(modbus.FuncReadCoils, 0x13, 37)
			bs, err = c.ReadDiscreteInputs(0, 2000)
			check("ReadDiscreteInputs(0, 2000)", bs, discrete, err)
			expect(modbus.FuncReadDiscreteInputs, 0, 2000)

			// Writes.
			err = c.WriteRegister(1020, 0xbeef)
			check("WriteRegister(1020)", slave.Holding(1020, 1), []uint16{0xbeef}, err)
			expect(modbus.FuncWriteSingleRegister, 1020, 1, 0xbeef)
			many := words(123)
			err = c.WriteRegisters(1100, many)
			check("WriteRegisters(1100, 123 values)", slave.Holding(1100, 123), many, err)
			expect(modbus.FuncWriteMultipleRegisters, 1100, 123, many...)
			err = c.WriteFloat32(1030, 21.5)
			check("WriteFloat32(1030, 21.5)", slave.Holding(1030, 2), []uint16{0x41ac, 0x0000}, err)
			expect(modbus.FuncWriteMultipleRegisters, 1030, 2, 0x41ac, 0x0000)
			f32, err := c.ReadFloat32(1030, smodbus.HOLDING_REGISTER)
			check("ReadFloat32(1030)", f32, float32(21.5), err)
			expect(modbus.FuncReadHoldingRegisters, 1030, 2)

			// Exceptions and faults, as the other library sees them.
			theirErr := func(what string, err, want error) {
				t.Helper()
				if !errors.Is(err, want) {
					t.Errorf("%s = %v, want %v", what, err, want)
				}
			}
			_, err = c.ReadRegisters(999, 2, smodbus.HOLDING_REGISTER)
			theirErr("ReadRegisters(999, 2) across the bank's start", err, smodbus.ErrIllegalDataAddress)
			expect(modbus.FuncReadHoldingRegisters, 999, 2)
			err = c.WriteRegister(5000, 1)
			theirErr("WriteRegister(5000)", err, smodbus.ErrIllegalDataAddress)
			expect(modbus.FuncWriteSingleRegister, 5000, 1, 1)
			slave.InjectException(modbus.ExceptionServerDeviceBusy, 1)
			_, err = c.ReadRegister(1000, smodbus.HOLDING_REGISTER)
			theirErr("ReadRegister while busy", err, smodbus.ErrServerDeviceBusy)
			expect(modbus.FuncReadHoldingRegisters, 1000, 1)
			slave.InjectFault(modbustest.FaultBadCRC, 1)
			_, err = c.ReadRegister(1000, smodbus.HOLDING_REGISTER)
			theirErr("ReadRegister with our bad CRC", err, smodbus.ErrBadCRC)
			expect(modbus.FuncReadHoldingRegisters, 1000, 1)
			slave.InjectFault(modbustest.FaultSilent, 1)
			_, err = c.ReadRegister(1000, smodbus.HOLDING_REGISTER)
			theirErr("ReadRegister of a silent slave", err, smodbus.ErrRequestTimedOut)
			expect(modbus.FuncReadHoldingRegisters, 1000, 1)
			one, err = c.ReadRegister(1000, smodbus.HOLDING_REGISTER)
			check("ReadRegister(1000) after the faults", one, holding[0], err)
			expect(modbus.FuncReadHoldingRegisters, 1000, 1)

			if diff := cmp.Diff(want, slave.Requests(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("requests the slave decoded differ (-sent +decoded):\n%s", diff)
			}
			if n := slave.Malformed(); n != 0 {
				t.Errorf("the slave dropped %d of the other library's frames as malformed", n)
			}
		})
	}
}

// bank is a device for simonvetter/modbus's server.
type bank struct {
	mu       sync.Mutex
	holding  map[uint16]uint16
	input    map[uint16]uint16
	coils    map[uint16]bool
	discrete map[uint16]bool
}

func (b *bank) HandleCoils(req *smodbus.CoilsRequest) ([]bool, error) {
	if req.IsWrite {
		return nil, smodbus.ErrIllegalFunction
	}
	return readBank(&b.mu, b.coils, req.Addr, req.Quantity)
}

func (b *bank) HandleDiscreteInputs(req *smodbus.DiscreteInputsRequest) ([]bool, error) {
	return readBank(&b.mu, b.discrete, req.Addr, req.Quantity)
}

func (b *bank) HandleHoldingRegisters(req *smodbus.HoldingRegistersRequest) ([]uint16, error) {
	if !req.IsWrite {
		return readBank(&b.mu, b.holding, req.Addr, req.Quantity)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range req.Args {
		if _, ok := b.holding[req.Addr+uint16(i)]; !ok {
			return nil, smodbus.ErrIllegalDataAddress
		}
	}
	for i, v := range req.Args {
		b.holding[req.Addr+uint16(i)] = v
	}
	return nil, nil
}

func (b *bank) HandleInputRegisters(req *smodbus.InputRegistersRequest) ([]uint16, error) {
	return readBank(&b.mu, b.input, req.Addr, req.Quantity)
}

func readBank[T any](mu *sync.Mutex, m map[uint16]T, addr, qty uint16) ([]T, error) {
	mu.Lock()
	defer mu.Unlock()
	out := make([]T, qty)
	for i := range out {
		v, ok := m[addr+uint16(i)]
		if !ok {
			return nil, smodbus.ErrIllegalDataAddress
		}
		out[i] = v
	}
	return out, nil
}

// theirServer starts simonvetter/modbus's TCP server for b and returns its
// address.
func theirServer(t *testing.T, b *bank) string {
	t.Helper()
	var errs []error
	for range 5 {
		// The server does not tell which port it got: pick a free one.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s, err := smodbus.NewServer(&smodbus.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 2,
			Logger: log.New(io.Discard, "", 0)}, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			errs = append(errs, err)
			continue
		}
		t.Cleanup(func() { s.Stop() })
		return addr
	}
	t.Fatalf("start simonvetter/modbus server: %v", errors.Join(errs...))
	return ""
}

// bridge connects an RTU line to a Modbus TCP server, as an RTU-to-TCP
// gateway does: each request frame loses its CRC and gains an MBAP header;
// each reply the other way round. It touches nothing inside the PDU, so the
// server decodes our client's PDUs and encodes the replies our client
// decodes. It runs until the line or the connection closes.
func bridge(line *modbustest.PipeEnd, conn net.Conn) error {
	var txn uint16
	buf := make([]byte, 512)
	for {
		if _, err := io.ReadFull(line, buf[:modbus.RequestHeaderLength]); err != nil {
			return err
		}
		n, err := modbus.RequestLength(buf[:modbus.RequestHeaderLength])
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(line, buf[modbus.RequestHeaderLength:n]); err != nil {
			return err
		}
		frame := buf[:n]
		if got, want := binary.LittleEndian.Uint16(frame[n-2:]), modbus.CRC16(frame[:n-2]); got != want {
			return fmt.Errorf("bridge: request % x has a bad crc", frame)
		}
		txn++
		pdu := frame[1 : n-2]
		mbap := binary.BigEndian.AppendUint16(nil, txn)
		mbap = append(mbap, 0, 0)
		mbap = binary.BigEndian.AppendUint16(mbap, uint16(len(pdu)+1))
		mbap = append(mbap, frame[0])
		if _, err := conn.Write(append(mbap, pdu...)); err != nil {
			return err
		}
		head := make([]byte, 7)
		if _, err := io.ReadFull(conn, head); err != nil {
			return err
		}
		if binary.BigEndian.Uint16(head) != txn {
			return fmt.Errorf("bridge: reply to transaction %d, want %d", binary.BigEndian.Uint16(head), txn)
		}
		body := make([]byte, int(binary.BigEndian.Uint16(head[4:]))-1)
		if _, err := io.ReadFull(conn, body); err != nil {
			return err
		}
		reply := append([]byte{head[6]}, body...)
		reply = binary.LittleEndian.AppendUint16(reply, modbus.CRC16(reply))
		if _, err := line.Write(reply); err != nil {
			return err
		}
	}
}

// ourClientTheirServer returns our Client talking through a bridge to
// simonvetter/modbus's server for b.
func ourClientTheirServer(t *testing.T, b *bank) *modbus.Client {
	t.Helper()
	conn, err := net.Dial("tcp", theirServer(t, b))
	if err != nil {
		t.Fatal(err)
	}
	dev, port := modbustest.Pipe()
	done := make(chan error, 1)
	go func() { done <- bridge(dev, conn) }()
	t.Cleanup(func() {
		dev.Close()
		conn.Close()
		if err := <-done; !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("bridge: %v", err)
		}
	})
	return modbus.NewClient(port, modbus.ClientOptions{Baud: 115200, Retries: -1})
}

// TestOurClientTheirServer has this package's client read and write
// simonvetter/modbus's server, which parses the requests and builds the
// replies on its own.
func TestOurClientTheirServer(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := &bank{holding: map[uint16]uint16{}, input: map[uint16]uint16{}, coils: map[uint16]bool{}, discrete: map[uint16]bool{}}
	holding, input := make([]uint16, 250), make([]uint16, 125)
	for i := range holding {
		holding[i] = uint16(rng.Uint32())
		b.holding[500+uint16(i)] = holding[i]
	}
	for i := range input {
		input[i] = uint16(rng.Uint32())
		b.input[65411+uint16(i)] = input[i] // up to 65535
	}
	coils := make([]bool, 2000)
	for i := range coils {
		coils[i] = rng.IntN(3) == 0
		b.coils[uint16(i)] = coils[i]
		b.discrete[uint16(100+i)] = !coils[i]
	}
	c := ourClientTheirServer(t, b)
	ctx := t.Context()

	check := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s differs (-want +got):\n%s", what, diff)
		}
	}
	got, err := c.ReadHoldingRegisters(ctx, 5, 500, 125)
	check("ReadHoldingRegisters(500, 125)", got, holding[:125], err)
	got, err = c.ReadHoldingRegisters(ctx, 5, 625, 125)
	check("ReadHoldingRegisters(625, 125)", got, holding[125:], err)
	got, err = c.ReadInputRegisters(ctx, 5, 65411, 125)
	check("ReadInputRegisters(65411, 125)", got, input, err)
	bs, err := c.ReadCoils(ctx, 5, 0, 2000)
	check("ReadCoils(0, 2000)", bs, coils, err)
	bs, err = c.ReadCoils(ctx, 5, 3, 13)
	check("ReadCoils(3, 13)", bs, coils[3:16], err)
	bs, err = c.ReadDiscreteInputs(ctx, 5, 107, 9)
	want := make([]bool, 9)
	for i := range want {
		want[i] = !coils[7+i]
	}
	check("ReadDiscreteInputs(107, 9)", bs, want, err)

	err = c.WriteRegister(ctx, 5, 510, 0xcafe)
	check("WriteRegister(510)", b.holding[510], uint16(0xcafe), err)
	vals := make([]uint16, 123)
	for i := range vals {
		vals[i] = uint16(rng.Uint32())
	}
	err = c.WriteRegisters(ctx, 5, 600, vals)
	b.mu.Lock()
	written := make([]uint16, 123)
	for i := range written {
		written[i] = b.holding[600+uint16(i)]
	}
	b.mu.Unlock()
	check("WriteRegisters(600, 123 values)", written, vals, err)

	_, err = c.ReadHoldingRegisters(ctx, 5, 499, 2)
	var exc *modbus.ExceptionError
	if !errors.As(err, &exc) || *exc != (modbus.ExceptionError{Unit: 5, Function: modbus.FuncReadHoldingRegisters, Code: modbus.ExceptionIllegalDataAddress}) {
		t.Errorf("ReadHoldingRegisters(499, 2) = %v, want exception 2 from unit 5", err)
	}
	err = c.WriteRegisters(ctx, 5, 749, []uint16{1, 2})
	if !errors.As(err, &exc) || exc.Code != modbus.ExceptionIllegalDataAddress || exc.Function != modbus.FuncWriteMultipleRegisters {
		t.Errorf("WriteRegisters(749, 2 values) = %v, want exception 2", err)
	}
	if st := c.Stats(); st != (hal.Stats{Frames: 10}) {
		t.Errorf("Stats() = %+v, want 10 frames and nothing else", st)
	}
}

// TestOurAdapterTheirServer runs the end-to-end register map against
// simonvetter/modbus's server.
func TestOurAdapterTheirServer(t *testing.T) {
	b := &bank{holding: map[uint16]uint16{}, input: map[uint16]uint16{}, coils: map[uint16]bool{}, discrete: map[uint16]bool{}}
	slave := meterSlave() // the same values, read back from the slave
	for _, r := range []struct {
		m    map[uint16]uint16
		read func(uint16, int) []uint16
		from uint16
		n    int
	}{{b.holding, slave.Holding, 0, 8}, {b.holding, slave.Holding, 10, 3}, {b.input, slave.Input, 100, 4}} {
		for i, v := range r.read(r.from, r.n) {
			r.m[r.from+uint16(i)] = v
		}
	}
	a, err := modbus.NewAdapter(ourClientTheirServer(t, b), meter)
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
	if err := a.Write(t.Context(), "setpoint", 21.5); err != nil {
		t.Errorf("Write(setpoint) = %v", err)
	}
	if err := a.Write(t.Context(), "gain", -2.75); err != nil {
		t.Errorf("Write(gain) = %v", err)
	}
	b.mu.Lock()
	sp, g := b.holding[10], uint32(b.holding[12])<<16|uint32(b.holding[11])
	b.mu.Unlock()
	if sp != 83 || math.Float32frombits(g) != -2.75 {
		t.Errorf("server holds setpoint %d and gain %v, want 83 and -2.75", sp, math.Float32frombits(g))
	}
	got, err = a.Poll(t.Context())
	if err != nil || got["setpoint"] != 21.5 || got["gain"] != -2.75 {
		t.Errorf("Poll() after writes = %v, %v", got, err)
	}
}
