// Package modbustest is a small Modbus RTU slave (server) for tests and
// demos, plus the serial lines to run it on: an in-memory [Pipe] and, on
// Linux, a pseudo-terminal pair ([OpenPTY]).
//
// A [Slave] serves banks of holding and input registers, coils and
// discrete inputs, answers reads and writes with the framing of package
// modbus, refuses addresses it does not have with exception 2 (illegal
// data address) and can be told to misbehave for its next requests: stay
// silent, corrupt its reply, answer with an exception, or answer late.
package modbustest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/thingd/thingd/hal/modbus"
)

// Conn is the device's end of a serial line: a PTY's master side, a
// net.Conn (Modbus RTU over TCP), or a [PipeEnd]. Read deadlines let the
// slave tell frames apart by silence and notice a cancelled context.
type Conn interface {
	io.ReadWriter
	SetReadDeadline(t time.Time) error
}

// Fault is a way for a Slave to misbehave.
type Fault int

// Faults a Slave can be told to show.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultSilent reads the request and neither acts on it nor answers,
	// like a dead device.
	FaultSilent
	// FaultBadCRC acts on the request and answers with a wrong CRC.
	FaultBadCRC
	// FaultGarbage acts on the request and answers with bytes that are
	// not a frame (line noise).
	FaultGarbage
	// FaultTruncated acts on the request and sends only the first half
	// of its reply.
	FaultTruncated
)

// String returns the fault's name.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultSilent:
		return "silent"
	case FaultBadCRC:
		return "bad crc"
	case FaultGarbage:
		return "garbage"
	case FaultTruncated:
		return "truncated"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Garbage is what a Slave sends under FaultGarbage: no frame starts with
// unit 0, and the rest is no frame either.
var Garbage = []byte{0x00, 0xff, 0x55, 0xaa, 0x13, 0x37, 0xfe}

const (
	// idleSlice bounds a wait for a request's first byte, so that a
	// cancelled context is noticed.
	idleSlice = 50 * time.Millisecond
	// FrameGap is the silence that ends a frame the slave cannot size
	// from its header, and after which a partial frame is dropped. It is
	// far longer than RTU's 3.5 characters, for pseudo-terminals on a busy
	// test machine.
	FrameGap = 100 * time.Millisecond
	// maxLog bounds the requests a Slave remembers.
	maxLog = 10000
)

// Slave is a Modbus RTU device with one unit id. Its zero value is not
// usable; call NewSlave. Its methods are safe for concurrent use, including
// while Serve runs.
type Slave struct {
	unit uint8

	// mu guards the following fields.
	mu         sync.Mutex
	holding    map[uint16]uint16
	input      map[uint16]uint16
	coils      map[uint16]bool
	discrete   map[uint16]bool
	fault      Fault
	faultN     int // requests left to show fault; negative: until changed
	exception  modbus.ExceptionCode
	exceptionN int
	delay      time.Duration
	requests   []modbus.Request
	malformed  int
}

// NewSlave returns a slave answering to unit, with no registers: add them
// with SetHolding, SetInput, SetCoils and SetDiscreteInputs.
func NewSlave(unit uint8) *Slave {
	return &Slave{unit: unit, holding: map[uint16]uint16{}, input: map[uint16]uint16{},
		coils: map[uint16]bool{}, discrete: map[uint16]bool{}}
}

// Unit returns the slave's unit id.
func (s *Slave) Unit() uint8 { return s.unit }

// SetHolding gives the slave holding registers from addr on, with values.
func (s *Slave) SetHolding(addr uint16, values ...uint16) { s.setWords(s.holding, addr, values) }

// SetInput gives the slave input registers from addr on, with values.
func (s *Slave) SetInput(addr uint16, values ...uint16) { s.setWords(s.input, addr, values) }

// Holding returns n holding registers from addr on; those the slave does
// not have read as 0.
func (s *Slave) Holding(addr uint16, n int) []uint16 { return s.words(s.holding, addr, n) }

// Input returns n input registers from addr on; those the slave does not
// have read as 0.
func (s *Slave) Input(addr uint16, n int) []uint16 { return s.words(s.input, addr, n) }

// SetCoils gives the slave coils from addr on, with values.
func (s *Slave) SetCoils(addr uint16, values ...bool) { s.setBits(s.coils, addr, values) }

// SetDiscreteInputs gives the slave discrete inputs from addr on, with
// values.
func (s *Slave) SetDiscreteInputs(addr uint16, values ...bool) { s.setBits(s.discrete, addr, values) }

func (s *Slave) setWords(bank map[uint16]uint16, addr uint16, values []uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range values {
		bank[addr+uint16(i)] = v
	}
}

func (s *Slave) words(bank map[uint16]uint16, addr uint16, n int) []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint16, n)
	for i := range out {
		out[i] = bank[addr+uint16(i)]
	}
	return out
}

func (s *Slave) setBits(bank map[uint16]bool, addr uint16, values []bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range values {
		bank[addr+uint16(i)] = v
	}
}

// InjectFault makes the slave show fault for its next n requests (those
// addressed to its unit), or from now on if n is negative, until the next
// InjectFault. InjectFault(FaultNone, 0) restores normal service.
func (s *Slave) InjectFault(fault Fault, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.faultN = fault, n
}

// InjectException makes the slave refuse its next n requests with code
// (n negative: until the next InjectException), without acting on them.
// Faults injected with InjectFault apply to the exception reply.
func (s *Slave) InjectException(code modbus.ExceptionCode, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exception, s.exceptionN = code, n
}

// SetDelay makes the slave wait d before each reply; zero answers at once.
func (s *Slave) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns the requests addressed to the slave's unit (or
// broadcast) that it decoded, oldest first, including those it refused or
// did not answer.
func (s *Slave) Requests() []modbus.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Malformed returns how many frames the slave dropped as malformed.
func (s *Slave) Malformed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.malformed
}

// Serve answers requests arriving on conn until ctx ends, when it returns
// ctx's error, or until reading or writing conn fails, when it returns
// that error (io.EOF if the other end closed). Serve does not close conn.
// One Slave may serve several conns at once (as several transports to the
// same device).
func (s *Slave) Serve(ctx context.Context, conn Conn) error {
	for {
		frame, err := s.readFrame(ctx, conn)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("modbustest: read request: %w", err)
		}
		if frame == nil {
			continue
		}
		reply := s.handle(frame)
		if reply == nil {
			continue
		}
		s.mu.Lock()
		delay := s.delay
		s.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if _, err := conn.Write(reply); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("modbustest: write reply: %w", err)
		}
	}
}

// readFrame waits for a request and returns its bytes: as many as its
// header announces or, for a header that does not say, those that arrive
// before a FrameGap of silence. It returns a nil frame, and no error, when
// only part of a frame arrived before a gap.
func (s *Slave) readFrame(ctx context.Context, conn Conn) ([]byte, error) {
	buf := make([]byte, modbus.MaxADULength+1)
	n := 0
	for n == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := conn.SetReadDeadline(time.Now().Add(idleSlice)); err != nil {
			return nil, err
		}
		m, err := conn.Read(buf[:1])
		n += m
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
	}
	n, err := readGap(conn, buf, n, modbus.RequestHeaderLength)
	if err != nil || n < modbus.RequestHeaderLength {
		return s.partial(buf[:n], err)
	}
	want, lerr := modbus.RequestLength(buf[:n])
	if lerr != nil {
		want = len(buf) // Frame by silence.
	}
	n, err = readGap(conn, buf, n, want)
	if err != nil || (lerr == nil && n < want) {
		return s.partial(buf[:n], err)
	}
	return buf[:n], nil
}

// partial handles a frame cut short by a gap (err nil) or by a failing
// conn.
func (s *Slave) partial(frame []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if len(frame) >= 4 {
		return frame, nil // May be a short frame of an unknown function; DecodeRequest will tell.
	}
	s.mu.Lock()
	s.malformed++
	s.mu.Unlock()
	return nil, nil
}

// readGap reads into buf[n:want] until it holds want bytes or the line is
// silent for FrameGap, and returns the new n.
func readGap(conn Conn, buf []byte, n, want int) (int, error) {
	for n < want {
		if err := conn.SetReadDeadline(time.Now().Add(FrameGap)); err != nil {
			return n, err
		}
		m, err := conn.Read(buf[n:want])
		n += m
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if m == 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// handle acts on a request frame and returns the reply to send, or nil.
func (s *Slave) handle(frame []byte) []byte {
	req, err := modbus.DecodeRequest(frame)
	var exc *modbus.ExceptionError
	switch {
	case errors.As(err, &exc):
	case err != nil:
		s.mu.Lock()
		s.malformed++
		s.mu.Unlock()
		return nil
	}
	if req.Unit != s.unit && req.Unit != 0 {
		return nil // Another device on the line.
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < maxLog {
		s.requests = append(s.requests, req)
	}
	fault := s.fault
	if s.faultN > 0 {
		s.faultN--
		if s.faultN == 0 {
			s.fault = FaultNone
		}
	} else if s.faultN == 0 {
		fault = FaultNone
	}
	if fault == FaultSilent {
		return nil
	}
	var resp modbus.Response
	switch {
	case exc != nil:
		resp = modbus.Response{Unit: req.Unit, Function: req.Function, Exception: exc.Code}
	case s.exception != 0 && s.exceptionN != 0:
		if s.exceptionN > 0 {
			s.exceptionN--
		}
		resp = modbus.Response{Unit: req.Unit, Function: req.Function, Exception: s.exception}
	default:
		resp = s.applyLocked(req)
	}
	if req.Unit == 0 {
		return nil // Broadcasts get no reply.
	}
	reply, err := resp.Encode()
	if err != nil {
		// A bug in applyLocked; answer as a device that failed. DecodeRequest
		// vouched for the function code, so this encodes.
		reply, _ = modbus.Response{Unit: req.Unit, Function: req.Function, Exception: modbus.ExceptionServerDeviceFailure}.Encode()
	}
	switch fault {
	case FaultBadCRC:
		reply[len(reply)-1] ^= 0xff
	case FaultGarbage:
		reply = slices.Clone(Garbage)
	case FaultTruncated:
		reply = reply[:len(reply)/2]
	}
	return reply
}

// applyLocked carries out a decoded request on the banks.
func (s *Slave) applyLocked(req modbus.Request) modbus.Response {
	resp := modbus.Response{Unit: req.Unit, Function: req.Function}
	refuse := func() modbus.Response {
		resp.Exception = modbus.ExceptionIllegalDataAddress
		return resp
	}
	words := func(bank map[uint16]uint16) modbus.Response {
		resp.Registers = make([]uint16, req.Quantity)
		for i := range resp.Registers {
			v, ok := bank[req.Address+uint16(i)]
			if !ok {
				return refuse()
			}
			resp.Registers[i] = v
		}
		return resp
	}
	bits := func(bank map[uint16]bool) modbus.Response {
		resp.Bits = make([]byte, (int(req.Quantity)+7)/8)
		for i := range int(req.Quantity) {
			v, ok := bank[req.Address+uint16(i)]
			if !ok {
				return refuse()
			}
			if v {
				resp.Bits[i/8] |= 1 << (i % 8)
			}
		}
		return resp
	}
	switch req.Function {
	case modbus.FuncReadHoldingRegisters:
		return words(s.holding)
	case modbus.FuncReadInputRegisters:
		return words(s.input)
	case modbus.FuncReadCoils:
		return bits(s.coils)
	case modbus.FuncReadDiscreteInputs:
		return bits(s.discrete)
	case modbus.FuncWriteSingleRegister, modbus.FuncWriteMultipleRegisters:
		for i := range req.Values {
			if _, ok := s.holding[req.Address+uint16(i)]; !ok {
				return refuse()
			}
		}
		for i, v := range req.Values {
			s.holding[req.Address+uint16(i)] = v
		}
		resp.Address = req.Address
		if req.Function == modbus.FuncWriteSingleRegister {
			resp.Value = req.Values[0]
		} else {
			resp.Quantity = req.Quantity
		}
		return resp
	}
	resp.Exception = modbus.ExceptionIllegalFunction
	return resp
}
