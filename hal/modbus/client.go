package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/thingd/thingd/hal"
)

// Port is the serial line a [Client] talks over. hal/serialport's *Port and
// *Keeper satisfy it.
type Port interface {
	io.ReadWriter
	// SetReadTimeout bounds every later Read: a Read that gets no byte
	// within d returns (0, nil) or an error that reports a timeout (through
	// a Timeout() bool method, os.ErrDeadlineExceeded, or text saying
	// "timeout" or "timed out"). The client treats both as "no bytes yet"
	// and any other error as the port failing.
	SetReadTimeout(d time.Duration) error
	// ResetInputBuffer discards bytes received and not read yet.
	ResetInputBuffer() error
}

// Client defaults.
const (
	// DefaultTimeout is how long a request waits for its reply by default.
	DefaultTimeout = time.Second
	// DefaultRetries is how many times a request is sent again by default.
	DefaultRetries = 1
	// UnknownBaudSilence is the inter-frame silence kept when the baud
	// rate is not known: 3.5 characters at 9600 baud, rounded up.
	UnknownBaudSilence = 5 * time.Millisecond
)

const (
	// maxReadSlice bounds one Read so that a cancelled context is noticed
	// soon.
	maxReadSlice = 50 * time.Millisecond
	// minDrainQuiet is the shortest silence that ends a drain after a
	// malformed reply: USB serial adapters deliver bytes in bursts a few
	// milliseconds apart.
	minDrainQuiet = 20 * time.Millisecond
)

// ClientOptions configure a [Client]. The zero value is usable.
type ClientOptions struct {
	// Baud is the line's speed in bits per second. It sets the inter-frame
	// silence of Modbus RTU (3.5 character times, or 1.75 ms above 19200
	// baud) and adds the time frames take on the wire to Timeout. Zero
	// means unknown: the silence is UnknownBaudSilence and nothing is added.
	Baud int
	// Timeout is how long one attempt waits for the whole reply after the
	// request is written (plus the request's and the longest reply's time
	// on the wire at Baud). Zero means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a request is sent again after no reply or
	// a malformed one. Exceptions, port errors and a done context are not
	// retried. Register writes are idempotent, so a retried write whose
	// first reply was lost does no harm. Zero means DefaultRetries; a
	// negative value means none.
	Retries int
	// Logger receives debug records about retries and malformed replies;
	// nil discards them.
	Logger *slog.Logger
}

// counters are the atomic form of hal.Stats.
type counters struct {
	frames, malformed, timeouts atomic.Uint64
}

func (c *counters) stats() hal.Stats {
	return hal.Stats{Frames: c.frames.Load(), Malformed: c.malformed.Load(), Timeouts: c.timeouts.Load()}
}

// Client is a Modbus RTU master on one serial line. It may talk to several
// units on that line (RS-485 multidrop). It is safe for concurrent use;
// requests are sent one at a time, and a caller waiting for its turn gives
// up when its context ends. A
// Client starts no goroutines and does not own its port: closing the port
// is the caller's business.
type Client struct {
	port     Port
	timeout  time.Duration
	retries  int
	charTime time.Duration // one 11-bit character on the wire; 0 if Baud is unknown
	silence  time.Duration // t3.5
	log      *slog.Logger
	stats    counters

	// turn is a one-slot semaphore that serializes requests; holding it
	// guards the following fields. A channel rather than a sync.Mutex lets
	// a caller waiting for its turn give up when its context ends.
	turn chan struct{}
	// quietAt is when the line will have been silent for t3.5, so that
	// the next request may be sent.
	quietAt time.Time
}

// NewClient returns a Client that talks over port.
func NewClient(port Port, opts ClientOptions) *Client {
	c := &Client{port: port, timeout: opts.Timeout, retries: opts.Retries, log: opts.Logger, turn: make(chan struct{}, 1)}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.charTime, c.silence = lineTiming(opts.Baud)
	return c
}

// lineTiming returns the time one RTU character (start bit, 8 data bits,
// parity or second stop bit, stop bit) takes at baud, and the inter-frame
// silence t3.5 (Modbus over Serial Line v1.02, section 2.5.1.1).
func lineTiming(baud int) (char, silence time.Duration) {
	if baud <= 0 {
		return 0, UnknownBaudSilence
	}
	char = 11 * time.Second / time.Duration(baud)
	if baud > 19200 {
		return char, 1750 * time.Microsecond
	}
	return char, char * 7 / 2
}

// Stats returns what the client saw on its line since it was created:
// well-formed replies (exceptions included), malformed ones and requests
// with no reply, counting every attempt.
func (c *Client) Stats() hal.Stats { return c.stats.stats() }

// ReadHoldingRegisters reads quantity (1-125) holding registers of unit
// from address on (function 0x03).
func (c *Client) ReadHoldingRegisters(ctx context.Context, unit uint8, address, quantity uint16) ([]uint16, error) {
	return c.readRegisters(ctx, unit, FuncReadHoldingRegisters, address, quantity, nil)
}

// ReadInputRegisters reads quantity (1-125) input registers of unit from
// address on (function 0x04).
func (c *Client) ReadInputRegisters(ctx context.Context, unit uint8, address, quantity uint16) ([]uint16, error) {
	return c.readRegisters(ctx, unit, FuncReadInputRegisters, address, quantity, nil)
}

// ReadCoils reads quantity (1-2000) coils of unit from address on
// (function 0x01).
func (c *Client) ReadCoils(ctx context.Context, unit uint8, address, quantity uint16) ([]bool, error) {
	return c.readBits(ctx, unit, FuncReadCoils, address, quantity)
}

// ReadDiscreteInputs reads quantity (1-2000) discrete inputs of unit from
// address on (function 0x02).
func (c *Client) ReadDiscreteInputs(ctx context.Context, unit uint8, address, quantity uint16) ([]bool, error) {
	return c.readBits(ctx, unit, FuncReadDiscreteInputs, address, quantity)
}

// WriteRegister writes value to the holding register of unit at address
// (function 0x06).
func (c *Client) WriteRegister(ctx context.Context, unit uint8, address, value uint16) error {
	return c.writeRegister(ctx, unit, address, value, nil)
}

func (c *Client) writeRegister(ctx context.Context, unit uint8, address, value uint16, also *counters) error {
	_, err := c.do(ctx, Request{Unit: unit, Function: FuncWriteSingleRegister, Address: address, Quantity: 1, Values: []uint16{value}}, also)
	return err
}

// WriteRegisters writes values (1-123 of them) to the holding registers of
// unit from address on (function 0x10).
func (c *Client) WriteRegisters(ctx context.Context, unit uint8, address uint16, values []uint16) error {
	return c.writeRegisters(ctx, unit, address, values, nil)
}

func (c *Client) writeRegisters(ctx context.Context, unit uint8, address uint16, values []uint16, also *counters) error {
	if len(values) > MaxWriteRegisters {
		return fmt.Errorf("modbus: %s: %d values, at most %d per request", FuncWriteMultipleRegisters, len(values), MaxWriteRegisters)
	}
	_, err := c.do(ctx, Request{Unit: unit, Function: FuncWriteMultipleRegisters, Address: address, Quantity: uint16(len(values)), Values: values}, also)
	return err
}

func (c *Client) readRegisters(ctx context.Context, unit uint8, fn FunctionCode, address, quantity uint16, also *counters) ([]uint16, error) {
	resp, err := c.do(ctx, Request{Unit: unit, Function: fn, Address: address, Quantity: quantity}, also)
	if err != nil {
		return nil, err
	}
	return resp.Registers, nil
}

func (c *Client) readBits(ctx context.Context, unit uint8, fn FunctionCode, address, quantity uint16) ([]bool, error) {
	resp, err := c.do(ctx, Request{Unit: unit, Function: fn, Address: address, Quantity: quantity}, nil)
	if err != nil {
		return nil, err
	}
	bits := make([]bool, quantity)
	for i := range bits {
		bits[i] = resp.Bits[i/8]&(1<<(i%8)) != 0
	}
	return bits, nil
}

// do sends req and returns its reply, retrying as configured. Counts go to
// the client's stats and, if also is not nil, to also. An exception reply
// is returned as an *ExceptionError.
func (c *Client) do(ctx context.Context, req Request, also *counters) (Response, error) {
	if req.Unit == 0 {
		return Response{}, fmt.Errorf("modbus: %s: unit 0 (broadcast) is not supported", req.Function)
	}
	adu, err := req.Encode()
	if err != nil {
		return Response{}, err
	}
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return Response{}, fmt.Errorf("modbus: unit %d %s at address %d: wait for the line: %w", req.Unit, req.Function, req.Address, ctx.Err())
	}
	defer func() { <-c.turn }()
	for attempt := 1; ; attempt++ {
		resp, err := c.attemptLocked(ctx, req, adu, also)
		if err == nil {
			return resp, nil
		}
		retry := errors.Is(err, hal.ErrNoResponse) || errors.Is(err, ErrMalformed)
		if !retry || attempt > c.retries || ctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (attempt %d of %d)", err, attempt, c.retries+1)
			}
			return Response{}, err
		}
		c.log.DebugContext(ctx, "modbus: retrying request", "op", req.Function.String(), "unit", req.Unit,
			"address", req.Address, "attempt", attempt, "err", err)
	}
}

// attemptLocked sends adu, the encoding of req, once and reads the reply.
func (c *Client) attemptLocked(ctx context.Context, req Request, adu []byte, also *counters) (Response, error) {
	fail := func(err error) error {
		return fmt.Errorf("modbus: unit %d %s at address %d: %w", req.Unit, req.Function, req.Address, err)
	}
	count := func(f func(*counters) *atomic.Uint64) {
		f(&c.stats).Add(1)
		if also != nil {
			f(also).Add(1)
		}
	}
	if err := sleepUntil(ctx, c.quietAt); err != nil {
		return Response{}, fail(err)
	}
	if err := c.port.ResetInputBuffer(); err != nil {
		return Response{}, fail(fmt.Errorf("discard stale input: %w", err))
	}
	n, err := c.port.Write(adu)
	sent := time.Now()
	c.quietAt = sent.Add(time.Duration(len(adu))*c.charTime + c.silence)
	if err == nil && n < len(adu) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return Response{}, fail(fmt.Errorf("write request: %w", err))
	}
	deadline := sent.Add(c.timeout + time.Duration(len(adu)+req.responseLengthFor())*c.charTime)

	malformed := func(err error) (Response, error) {
		count(func(c *counters) *atomic.Uint64 { return &c.malformed })
		c.log.DebugContext(ctx, "modbus: malformed reply", "op", req.Function.String(), "unit", req.Unit, "err", err)
		c.drainLocked(ctx, deadline)
		return Response{}, fail(err)
	}

	var buf [MaxADULength]byte
	got, err := c.readLocked(ctx, buf[:ResponseHeaderLength], deadline)
	switch {
	case errors.Is(err, errReadTimeout) && got == 0:
		count(func(c *counters) *atomic.Uint64 { return &c.timeouts })
		return Response{}, fail(fmt.Errorf("no reply within %v: %w", c.timeout, hal.ErrNoResponse))
	case errors.Is(err, errReadTimeout):
		return malformed(fmt.Errorf("%w: truncated reply: % x, then silence", ErrMalformed, buf[:got]))
	case err != nil:
		return Response{}, fail(err)
	}
	if buf[0] != req.Unit || FunctionCode(buf[1]&^0x80) != req.Function {
		return malformed(fmt.Errorf("%w: reply starting % x does not answer a %s request to unit %d", ErrMalformed, buf[:got], req.Function, req.Unit))
	}
	want, err := ResponseLength(buf[:ResponseHeaderLength])
	if err != nil {
		return malformed(err)
	}
	if buf[1]&0x80 == 0 && want != req.responseLengthFor() {
		return malformed(fmt.Errorf("%w: reply of %d bytes announced, a %s of %d needs %d", ErrMalformed, want, req.Function, req.Quantity, req.responseLengthFor()))
	}
	more, err := c.readLocked(ctx, buf[ResponseHeaderLength:want], deadline)
	switch {
	case errors.Is(err, errReadTimeout):
		return malformed(fmt.Errorf("%w: truncated reply: %d of %d bytes, then silence", ErrMalformed, ResponseHeaderLength+more, want))
	case err != nil:
		return Response{}, fail(err)
	}
	resp, err := DecodeResponse(buf[:want])
	if err != nil {
		return malformed(err)
	}
	if err := req.matches(resp); err != nil {
		return malformed(err)
	}
	count(func(c *counters) *atomic.Uint64 { return &c.frames })
	if err := resp.Err(); err != nil {
		return Response{}, err
	}
	return resp, nil
}

// errReadTimeout is readLocked's report that the deadline passed.
var errReadTimeout = errors.New("read timeout")

// readLocked fills buf from the port until deadline and returns how many
// bytes it read. It returns errReadTimeout if the deadline passed first,
// ctx's error if ctx ended, or the port's error.
func (c *Client) readLocked(ctx context.Context, buf []byte, deadline time.Time) (int, error) {
	n := 0
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		d := time.Until(deadline)
		if d <= 0 {
			return n, errReadTimeout
		}
		if err := c.port.SetReadTimeout(min(d, maxReadSlice)); err != nil {
			return n, fmt.Errorf("set read timeout: %w", err)
		}
		m, err := c.port.Read(buf[n:])
		n += m
		if m > 0 {
			c.heardLocked()
		}
		if err != nil && !isTimeout(err) {
			return n, fmt.Errorf("read reply: %w", err)
		}
	}
	return n, nil
}

// heardLocked notes that bytes just arrived: the line is busy until now.
// The request's own time on the wire may end later.
func (c *Client) heardLocked() {
	if q := time.Now().Add(c.silence); q.After(c.quietAt) {
		c.quietAt = q
	}
}

// drainLocked reads and drops bytes until the line has been quiet for a
// while, or until the deadline, so that the rest of a bad reply does not
// end up in front of the next one.
func (c *Client) drainLocked(ctx context.Context, deadline time.Time) {
	quiet := max(c.silence, minDrainQuiet)
	var buf [MaxADULength]byte
	for ctx.Err() == nil {
		d := min(time.Until(deadline), quiet)
		if d <= 0 {
			return
		}
		if err := c.port.SetReadTimeout(d); err != nil {
			return // The next attempt reports the port's trouble.
		}
		n, err := c.port.Read(buf[:])
		if n > 0 {
			c.heardLocked()
			continue
		}
		if err == nil || isTimeout(err) {
			return // Quiet.
		}
		return // The port failed; the next attempt reports it.
	}
}

// isTimeout reports whether err, from a Port's Read, only means that no
// byte came in time.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return true
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "timeout") || strings.Contains(s, "timed out")
}

// sleepUntil waits until t or until ctx ends, whichever is first, and
// returns ctx's error in the latter case.
func sleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
