package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Protocol limits (Modbus Application Protocol v1.1b3, section 6; Modbus
// over Serial Line v1.02, section 2.5.1).
const (
	// MaxADULength is the longest RTU frame: unit id, PDU of at most 253
	// bytes, CRC.
	MaxADULength = 256
	// MaxReadRegisters is the most registers one read request may ask for.
	MaxReadRegisters = 125
	// MaxWriteRegisters is the most registers one write multiple registers
	// request may carry.
	MaxWriteRegisters = 123
	// MaxReadBits is the most coils or discrete inputs one read may ask for.
	MaxReadBits = 2000
)

// ErrMalformed is matched by every error about a frame that cannot be
// trusted: a bad CRC, a wrong length or byte count, an unexpected unit id or
// function code, a truncated reply. The error's text says which.
var ErrMalformed = errors.New("modbus: malformed frame")

// FunctionCode is the first byte of a Modbus PDU.
type FunctionCode uint8

// The function codes this package encodes and decodes.
const (
	FuncReadCoils              FunctionCode = 0x01
	FuncReadDiscreteInputs     FunctionCode = 0x02
	FuncReadHoldingRegisters   FunctionCode = 0x03
	FuncReadInputRegisters     FunctionCode = 0x04
	FuncWriteSingleRegister    FunctionCode = 0x06
	FuncWriteMultipleRegisters FunctionCode = 0x10
)

// String returns the function's name, such as "read holding registers", or
// "function 0x2b" for codes this package does not know.
func (f FunctionCode) String() string {
	switch f {
	case FuncReadCoils:
		return "read coils"
	case FuncReadDiscreteInputs:
		return "read discrete inputs"
	case FuncReadHoldingRegisters:
		return "read holding registers"
	case FuncReadInputRegisters:
		return "read input registers"
	case FuncWriteSingleRegister:
		return "write single register"
	case FuncWriteMultipleRegisters:
		return "write multiple registers"
	}
	return fmt.Sprintf("function 0x%02x", uint8(f))
}

// ExceptionCode is the reason a device gives when it refuses a request.
type ExceptionCode uint8

// Exception codes of the Modbus Application Protocol, section 7.
const (
	ExceptionIllegalFunction         ExceptionCode = 0x01
	ExceptionIllegalDataAddress      ExceptionCode = 0x02
	ExceptionIllegalDataValue        ExceptionCode = 0x03
	ExceptionServerDeviceFailure     ExceptionCode = 0x04
	ExceptionAcknowledge             ExceptionCode = 0x05
	ExceptionServerDeviceBusy        ExceptionCode = 0x06
	ExceptionMemoryParityError       ExceptionCode = 0x08
	ExceptionGatewayPathUnavailable  ExceptionCode = 0x0a
	ExceptionGatewayTargetNoResponse ExceptionCode = 0x0b
)

// String returns the exception's name as the specification words it, such
// as "illegal data address", or "exception 0x42" for unknown codes.
func (c ExceptionCode) String() string {
	switch c {
	case ExceptionIllegalFunction:
		return "illegal function"
	case ExceptionIllegalDataAddress:
		return "illegal data address"
	case ExceptionIllegalDataValue:
		return "illegal data value"
	case ExceptionServerDeviceFailure:
		return "server device failure"
	case ExceptionAcknowledge:
		return "acknowledge"
	case ExceptionServerDeviceBusy:
		return "server device busy"
	case ExceptionMemoryParityError:
		return "memory parity error"
	case ExceptionGatewayPathUnavailable:
		return "gateway path unavailable"
	case ExceptionGatewayTargetNoResponse:
		return "gateway target device failed to respond"
	}
	return fmt.Sprintf("exception 0x%02x", uint8(c))
}

// ExceptionError is a device's refusal of a request: an exception response
// (the function code with its high bit set, then the exception code). The
// client returns it as is; [DecodeRequest] returns it wrapped, with the
// reason, for requests a server must refuse.
type ExceptionError struct {
	// Unit is the unit id of the device that refused.
	Unit uint8
	// Function is the refused request's function code.
	Function FunctionCode
	// Code says why.
	Code ExceptionCode
}

// Error names the unit, the function and the exception, for example
// "modbus: unit 1 refused read holding registers: exception 2 (illegal data
// address)".
func (e *ExceptionError) Error() string {
	return fmt.Sprintf("modbus: unit %d refused %s: exception %d (%s)", e.Unit, e.Function, uint8(e.Code), e.Code)
}

// crcTable is the table of the reflected CRC-16 polynomial 0xA001.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xa001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/MODBUS of data (polynomial 0x8005 reflected,
// initial value 0xFFFF). An RTU frame carries it after the PDU, low byte
// first.
func CRC16(data []byte) uint16 {
	crc := uint16(0xffff)
	for _, b := range data {
		crc = crc>>8 ^ crcTable[byte(crc)^b]
	}
	return crc
}

// appendCRC appends the CRC of frame to it, low byte first.
func appendCRC(frame []byte) []byte {
	return binary.LittleEndian.AppendUint16(frame, CRC16(frame))
}

// checkCRC reports, as an error matching ErrMalformed, a frame whose last two
// bytes are not the CRC of the rest.
func checkCRC(frame []byte) error {
	n := len(frame)
	got := binary.LittleEndian.Uint16(frame[n-2:])
	if want := CRC16(frame[:n-2]); got != want {
		return fmt.Errorf("%w: crc 0x%04x, computed 0x%04x", ErrMalformed, got, want)
	}
	return nil
}

// Request is a Modbus request as a master sends it.
type Request struct {
	// Unit is the addressed device: 1-247, or 0 for a broadcast write.
	Unit uint8
	// Function says what to do; see the Func constants.
	Function FunctionCode
	// Address is the first register, coil or input (the protocol address,
	// counting from 0).
	Address uint16
	// Quantity is the number of registers or bits to read or, for writes,
	// len(Values).
	Quantity uint16
	// Values are the registers to write: exactly one for
	// FuncWriteSingleRegister, Quantity for FuncWriteMultipleRegisters, none
	// for reads.
	Values []uint16
}

// check validates r's fields against the protocol. On failure it returns the
// exception a server answers with and the reason.
func (r Request) check() (ExceptionCode, string) {
	var maxQty uint16
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs:
		maxQty = MaxReadBits
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		maxQty = MaxReadRegisters
	case FuncWriteSingleRegister:
		if len(r.Values) != 1 || r.Quantity != 1 {
			return ExceptionIllegalDataValue, fmt.Sprintf("writes one register, got quantity %d and %d values", r.Quantity, len(r.Values))
		}
		return 0, ""
	case FuncWriteMultipleRegisters:
		maxQty = MaxWriteRegisters
		if len(r.Values) != int(r.Quantity) {
			return ExceptionIllegalDataValue, fmt.Sprintf("quantity %d with %d values", r.Quantity, len(r.Values))
		}
	default:
		return ExceptionIllegalFunction, "unsupported function code"
	}
	if r.Quantity < 1 || r.Quantity > maxQty {
		return ExceptionIllegalDataValue, fmt.Sprintf("quantity %d is not between 1 and %d", r.Quantity, maxQty)
	}
	if r.Function != FuncWriteMultipleRegisters && len(r.Values) != 0 {
		return ExceptionIllegalDataValue, "a read carries no values"
	}
	if int(r.Address)+int(r.Quantity) > 1<<16 {
		return ExceptionIllegalDataAddress, fmt.Sprintf("addresses %d..%d run past 65535", r.Address, int(r.Address)+int(r.Quantity)-1)
	}
	return 0, ""
}

// Encode returns r as an RTU frame (unit id, PDU, CRC). It refuses
// requests the protocol does not allow: unknown functions, quantities out of
// range (1-125 registers per read, 1-123 per write, 1-2000 bits) and address
// ranges past 65535.
func (r Request) Encode() ([]byte, error) {
	if code, why := r.check(); code != 0 {
		return nil, fmt.Errorf("modbus: encode %s request: %s", r.Function, why)
	}
	b := make([]byte, 0, 9+2*len(r.Values))
	b = append(b, r.Unit, byte(r.Function))
	b = binary.BigEndian.AppendUint16(b, r.Address)
	switch r.Function {
	case FuncWriteSingleRegister:
		b = binary.BigEndian.AppendUint16(b, r.Values[0])
	case FuncWriteMultipleRegisters:
		b = binary.BigEndian.AppendUint16(b, r.Quantity)
		b = append(b, byte(2*r.Quantity))
		for _, v := range r.Values {
			b = binary.BigEndian.AppendUint16(b, v)
		}
	default:
		b = binary.BigEndian.AppendUint16(b, r.Quantity)
	}
	return appendCRC(b), nil
}

// RequestHeaderLength is how many bytes of a request [RequestLength] needs.
// Every request it can frame is longer.
const RequestHeaderLength = 7

// RequestLength returns the length of the whole request frame that head
// starts, from its first [RequestHeaderLength] bytes: what a server reads
// before it can check the CRC. It knows the standard public function codes
// of fixed length or with a byte count (0x01-0x06, 0x0F, 0x10, 0x16), which
// lets a server answer the ones it does not implement with an exception;
// for others it returns an error matching [ErrMalformed].
func RequestLength(head []byte) (int, error) {
	if len(head) < RequestHeaderLength {
		return 0, fmt.Errorf("modbus: request length needs %d bytes, got %d", RequestHeaderLength, len(head))
	}
	switch fc := head[1]; fc {
	case 0x01, 0x02, 0x03, 0x04, 0x05, 0x06:
		return 8, nil
	case 0x0f, 0x10:
		if n := 9 + int(head[6]); n <= MaxADULength {
			return n, nil
		}
		return 0, fmt.Errorf("%w: request with byte count %d is longer than %d bytes", ErrMalformed, head[6], MaxADULength)
	case 0x16:
		return 10, nil
	default:
		return 0, fmt.Errorf("%w: cannot tell the length of a request with function code 0x%02x", ErrMalformed, fc)
	}
}

// DecodeRequest parses a whole request frame, as a server does. A frame
// that cannot be trusted (bad CRC, wrong length or byte count) gives an error
// matching [ErrMalformed]; a server drops it silently. A sound frame that
// asks for something the protocol forbids or this package does not
// implement gives an error wrapping an [*ExceptionError] (found with
// [errors.As]) and the Request's Unit and Function are set: a server answers
// with that exception.
func DecodeRequest(adu []byte) (Request, error) {
	if len(adu) < 4 || len(adu) > MaxADULength {
		return Request{}, fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(adu))
	}
	if err := checkCRC(adu); err != nil {
		return Request{}, err
	}
	if fc := adu[1]; fc == 0 || fc >= 0x80 {
		return Request{}, fmt.Errorf("%w: function code 0x%02x in a request", ErrMalformed, fc)
	}
	r := Request{Unit: adu[0], Function: FunctionCode(adu[1])}
	pdu := adu[2 : len(adu)-2]
	refuse := func(code ExceptionCode, why string) (Request, error) {
		return r, fmt.Errorf("modbus: %s request: %s: %w", r.Function, why, &ExceptionError{Unit: r.Unit, Function: r.Function, Code: code})
	}
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(pdu) != 4 {
			return Request{}, fmt.Errorf("%w: %s request of %d bytes, want 8", ErrMalformed, r.Function, len(adu))
		}
		r.Address = binary.BigEndian.Uint16(pdu)
		r.Quantity = binary.BigEndian.Uint16(pdu[2:])
	case FuncWriteSingleRegister:
		if len(pdu) != 4 {
			return Request{}, fmt.Errorf("%w: %s request of %d bytes, want 8", ErrMalformed, r.Function, len(adu))
		}
		r.Address = binary.BigEndian.Uint16(pdu)
		r.Quantity = 1
		r.Values = []uint16{binary.BigEndian.Uint16(pdu[2:])}
	case FuncWriteMultipleRegisters:
		if len(pdu) < 5 || len(pdu) != 5+int(pdu[4]) {
			return Request{}, fmt.Errorf("%w: %s request of %d bytes does not match its byte count", ErrMalformed, r.Function, len(adu))
		}
		r.Address = binary.BigEndian.Uint16(pdu)
		r.Quantity = binary.BigEndian.Uint16(pdu[2:])
		if int(pdu[4]) != 2*int(r.Quantity) {
			return refuse(ExceptionIllegalDataValue, fmt.Sprintf("byte count %d for %d registers", pdu[4], r.Quantity))
		}
		r.Values = make([]uint16, r.Quantity)
		for i := range r.Values {
			r.Values[i] = binary.BigEndian.Uint16(pdu[5+2*i:])
		}
	default:
		return refuse(ExceptionIllegalFunction, "unsupported function code")
	}
	if code, why := r.check(); code != 0 {
		return refuse(code, why)
	}
	return r, nil
}

// Response is a Modbus response as a server sends it. Exactly one group of
// fields is set, by Function and Exception.
type Response struct {
	// Unit is the answering device.
	Unit uint8
	// Function is the request's function code (without the exception bit).
	Function FunctionCode
	// Exception, if not zero, makes this an exception response: the device
	// refused the request and no other field is set. See [Response.Err].
	Exception ExceptionCode
	// Registers are the values read by FuncReadHoldingRegisters and
	// FuncReadInputRegisters.
	Registers []uint16
	// Bits are the coils or inputs read by FuncReadCoils and
	// FuncReadDiscreteInputs, packed as on the wire: bit 0 of Bits[0] is the
	// first address. Unused high bits of the last byte are zero.
	Bits []byte
	// Address is the first register written, echoed by
	// FuncWriteSingleRegister and FuncWriteMultipleRegisters.
	Address uint16
	// Quantity is the number of registers written, echoed by
	// FuncWriteMultipleRegisters.
	Quantity uint16
	// Value is the value written, echoed by FuncWriteSingleRegister.
	Value uint16
}

// Err returns the [*ExceptionError] of an exception response, and nil for
// any other.
func (r Response) Err() error {
	if r.Exception == 0 {
		return nil
	}
	return &ExceptionError{Unit: r.Unit, Function: r.Function, Code: r.Exception}
}

// Encode returns r as an RTU frame, as a server sends it.
func (r Response) Encode() ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("modbus: encode %s response: %s", r.Function, fmt.Sprintf(format, args...))
	}
	if r.Function == 0 || r.Function >= 0x80 {
		return fail("function code 0x%02x out of range 1-127", uint8(r.Function))
	}
	if r.Exception != 0 {
		return appendCRC([]byte{r.Unit, byte(r.Function) | 0x80, byte(r.Exception)}), nil
	}
	b := make([]byte, 0, 5+2*len(r.Registers)+len(r.Bits))
	b = append(b, r.Unit, byte(r.Function))
	switch r.Function {
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(r.Registers) < 1 || len(r.Registers) > MaxReadRegisters {
			return fail("%d registers, want 1 to %d", len(r.Registers), MaxReadRegisters)
		}
		b = append(b, byte(2*len(r.Registers)))
		for _, v := range r.Registers {
			b = binary.BigEndian.AppendUint16(b, v)
		}
	case FuncReadCoils, FuncReadDiscreteInputs:
		if n := len(r.Bits); n < 1 || n > (MaxReadBits+7)/8 {
			return fail("%d bytes of bits, want 1 to %d", n, (MaxReadBits+7)/8)
		}
		b = append(b, byte(len(r.Bits)))
		b = append(b, r.Bits...)
	case FuncWriteSingleRegister:
		b = binary.BigEndian.AppendUint16(b, r.Address)
		b = binary.BigEndian.AppendUint16(b, r.Value)
	case FuncWriteMultipleRegisters:
		if r.Quantity < 1 || r.Quantity > MaxWriteRegisters || int(r.Address)+int(r.Quantity) > 1<<16 {
			return fail("quantity %d at address %d", r.Quantity, r.Address)
		}
		b = binary.BigEndian.AppendUint16(b, r.Address)
		b = binary.BigEndian.AppendUint16(b, r.Quantity)
	default:
		return fail("unsupported function code")
	}
	return appendCRC(b), nil
}

// ResponseHeaderLength is how many bytes of a response [ResponseLength]
// needs. Every response is longer.
const ResponseHeaderLength = 3

// ResponseLength returns the length of the whole response frame that head
// starts, from its first [ResponseHeaderLength] bytes (unit id, function
// code, and byte count or exception code): how many bytes a master waits
// for. Function codes this package does not decode, and byte counts that no
// valid response has, give an error matching [ErrMalformed].
func ResponseLength(head []byte) (int, error) {
	if len(head) < ResponseHeaderLength {
		return 0, fmt.Errorf("modbus: response length needs %d bytes, got %d", ResponseHeaderLength, len(head))
	}
	fc, bc := head[1], int(head[2])
	if fc&0x80 != 0 {
		return 5, nil
	}
	switch FunctionCode(fc) {
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if bc == 0 || bc%2 != 0 || bc > 2*MaxReadRegisters {
			return 0, fmt.Errorf("%w: %s response with byte count %d", ErrMalformed, FunctionCode(fc), bc)
		}
		return 5 + bc, nil
	case FuncReadCoils, FuncReadDiscreteInputs:
		if bc == 0 || bc > (MaxReadBits+7)/8 {
			return 0, fmt.Errorf("%w: %s response with byte count %d", ErrMalformed, FunctionCode(fc), bc)
		}
		return 5 + bc, nil
	case FuncWriteSingleRegister, FuncWriteMultipleRegisters:
		return 8, nil
	}
	return 0, fmt.Errorf("%w: response with function code 0x%02x", ErrMalformed, fc)
}

// DecodeResponse parses a whole response frame, as a master does. It checks
// the CRC first and never accepts a frame whose CRC is wrong. Any problem
// with the frame gives an error matching [ErrMalformed]. An exception
// response is a well-formed frame: it decodes without error into a Response
// whose Exception is set (see [Response.Err]).
//
// DecodeResponse checks the frame on its own; a master must still check
// that it answers the request it sent (unit, function, quantity, echoed
// address and values), as [Client] does.
func DecodeResponse(adu []byte) (Response, error) {
	if len(adu) < 5 || len(adu) > MaxADULength {
		return Response{}, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(adu))
	}
	if err := checkCRC(adu); err != nil {
		return Response{}, err
	}
	n, err := ResponseLength(adu)
	if err != nil {
		return Response{}, err
	}
	if n != len(adu) {
		return Response{}, fmt.Errorf("%w: response of %d bytes, its header says %d", ErrMalformed, len(adu), n)
	}
	r := Response{Unit: adu[0], Function: FunctionCode(adu[1] &^ 0x80)}
	if adu[1]&0x80 != 0 {
		r.Exception = ExceptionCode(adu[2])
		if r.Exception == 0 {
			return Response{}, fmt.Errorf("%w: exception response with exception code 0", ErrMalformed)
		}
		if r.Function == 0 {
			return Response{}, fmt.Errorf("%w: exception response for function code 0", ErrMalformed)
		}
		return r, nil
	}
	pdu := adu[2 : len(adu)-2]
	switch r.Function {
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		r.Registers = make([]uint16, len(pdu[1:])/2)
		for i := range r.Registers {
			r.Registers[i] = binary.BigEndian.Uint16(pdu[1+2*i:])
		}
	case FuncReadCoils, FuncReadDiscreteInputs:
		r.Bits = append([]byte(nil), pdu[1:]...)
	case FuncWriteSingleRegister:
		r.Address = binary.BigEndian.Uint16(pdu)
		r.Value = binary.BigEndian.Uint16(pdu[2:])
	case FuncWriteMultipleRegisters:
		r.Address = binary.BigEndian.Uint16(pdu)
		r.Quantity = binary.BigEndian.Uint16(pdu[2:])
		if r.Quantity < 1 || r.Quantity > MaxWriteRegisters || int(r.Address)+int(r.Quantity) > 1<<16 {
			return Response{}, fmt.Errorf("%w: %s response echoes quantity %d at address %d", ErrMalformed, r.Function, r.Quantity, r.Address)
		}
	}
	return r, nil
}

// matches checks that resp, a decoded frame, answers req: same unit and
// function, as many registers or bits as asked, and a write's echo. An
// exception response matches any request with the same unit and function.
// A mismatch is an error matching ErrMalformed.
func (r Request) matches(resp Response) error {
	if resp.Unit != r.Unit {
		return fmt.Errorf("%w: reply from unit %d to a request for unit %d", ErrMalformed, resp.Unit, r.Unit)
	}
	if resp.Function != r.Function {
		return fmt.Errorf("%w: %s reply to a %s request", ErrMalformed, resp.Function, r.Function)
	}
	if resp.Exception != 0 {
		return nil
	}
	switch r.Function {
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(resp.Registers) != int(r.Quantity) {
			return fmt.Errorf("%w: %d registers in reply to a read of %d", ErrMalformed, len(resp.Registers), r.Quantity)
		}
	case FuncReadCoils, FuncReadDiscreteInputs:
		if want := (int(r.Quantity) + 7) / 8; len(resp.Bits) != want {
			return fmt.Errorf("%w: %d bytes of bits in reply to a read of %d, want %d", ErrMalformed, len(resp.Bits), r.Quantity, want)
		}
	case FuncWriteSingleRegister:
		if resp.Address != r.Address || resp.Value != r.Values[0] {
			return fmt.Errorf("%w: write echoes %d at address %d, sent %d at %d", ErrMalformed, resp.Value, resp.Address, r.Values[0], r.Address)
		}
	case FuncWriteMultipleRegisters:
		if resp.Address != r.Address || resp.Quantity != r.Quantity {
			return fmt.Errorf("%w: write echoes %d registers at address %d, sent %d at %d", ErrMalformed, resp.Quantity, resp.Address, r.Quantity, r.Address)
		}
	}
	return nil
}

// responseLengthFor returns the length of a positive response to r.
func (r Request) responseLengthFor() int {
	switch r.Function {
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		return 5 + 2*int(r.Quantity)
	case FuncReadCoils, FuncReadDiscreteInputs:
		return 5 + (int(r.Quantity)+7)/8
	}
	return 8
}
