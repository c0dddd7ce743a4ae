package modbus

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// unhex decodes hex with spaces, as frames are written in the spec.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestCRC16(t *testing.T) {
	tests := []struct {
		data string
		want uint16 // as a number; the wire has the low byte first
	}{
		{"", 0xffff},
		{"31 32 33 34 35 36 37 38 39", 0x4b37}, // CRC-16/MODBUS check value of "123456789"
		{"01 03 00 00 00 0A", 0xcdc5},          // wire: C5 CD
		{"11 03 00 6B 00 03", 0x8776},          // Modbus spec example: 76 87
		{"01 83 02", 0xf1c0},                   // exception: C0 F1
	}
	for _, tt := range tests {
		if got := CRC16(unhex(t, tt.data)); got != tt.want {
			t.Errorf("CRC16(%s) = %#04x, want %#04x", tt.data, got, tt.want)
		}
	}
}

func TestRequestEncode(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"read holding", Request{Unit: 1, Function: FuncReadHoldingRegisters, Address: 0, Quantity: 10}, "01 03 00 00 00 0A C5 CD"},
		{"read holding spec", Request{Unit: 0x11, Function: FuncReadHoldingRegisters, Address: 0x6b, Quantity: 3}, "11 03 00 6B 00 03 76 87"},
		{"read input", Request{Unit: 1, Function: FuncReadInputRegisters, Address: 0, Quantity: 1}, "01 04 00 00 00 01 31 CA"},
		{"read coils spec", Request{Unit: 0x11, Function: FuncReadCoils, Address: 0x13, Quantity: 0x25}, "11 01 00 13 00 25 0E 84"},
		{"write single", Request{Unit: 1, Function: FuncWriteSingleRegister, Address: 1, Quantity: 1, Values: []uint16{3}}, "01 06 00 01 00 03 98 0B"},
		{"write multiple spec", Request{Unit: 0x11, Function: FuncWriteMultipleRegisters, Address: 1, Quantity: 2, Values: []uint16{0x000a, 0x0102}},
			"11 10 00 01 00 02 04 00 0A 01 02 C6 F0"},
		{"read 125", Request{Unit: 1, Function: FuncReadHoldingRegisters, Address: 65535 - 124, Quantity: 125}, ""},
		{"read 2000 bits", Request{Unit: 1, Function: FuncReadDiscreteInputs, Address: 0, Quantity: 2000}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.Encode()
			if err != nil {
				t.Fatalf("Encode(%+v) = %v", tt.req, err)
			}
			if tt.want != "" && !cmp.Equal(got, unhex(t, tt.want)) {
				t.Errorf("Encode(%+v) = % X, want %s", tt.req, got, tt.want)
			}
			back, err := DecodeRequest(got)
			if err != nil {
				t.Fatalf("DecodeRequest(% X) = %v", got, err)
			}
			if diff := cmp.Diff(tt.req, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DecodeRequest(Encode(r)) differs (-r +decoded):\n%s", diff)
			}
			if n, err := RequestLength(got[:RequestHeaderLength]); n != len(got) || err != nil {
				t.Errorf("RequestLength(% X) = %d, %v, want %d", got[:RequestHeaderLength], n, err, len(got))
			}
		})
	}
}

func TestRequestEncodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"zero quantity", Request{Unit: 1, Function: FuncReadHoldingRegisters}, "quantity 0 is not between 1 and 125"},
		{"126 registers", Request{Unit: 1, Function: FuncReadInputRegisters, Quantity: 126}, "quantity 126 is not between 1 and 125"},
		{"2001 bits", Request{Unit: 1, Function: FuncReadCoils, Quantity: 2001}, "quantity 2001 is not between 1 and 2000"},
		{"124 writes", Request{Unit: 1, Function: FuncWriteMultipleRegisters, Quantity: 124, Values: make([]uint16, 124)}, "quantity 124 is not between 1 and 123"},
		{"quantity mismatch", Request{Unit: 1, Function: FuncWriteMultipleRegisters, Quantity: 3, Values: make([]uint16, 2)}, "quantity 3 with 2 values"},
		{"single with two", Request{Unit: 1, Function: FuncWriteSingleRegister, Quantity: 2, Values: make([]uint16, 2)}, "writes one register"},
		{"read with values", Request{Unit: 1, Function: FuncReadHoldingRegisters, Quantity: 1, Values: []uint16{1}}, "a read carries no values"},
		{"past 65535", Request{Unit: 1, Function: FuncReadHoldingRegisters, Address: 65535, Quantity: 2}, "addresses 65535..65536 run past 65535"},
		{"unknown function", Request{Unit: 1, Function: 0x2b, Quantity: 1}, "encode function 0x2b request: unsupported function code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.Encode()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Encode(%+v) = % X, %v, want error containing %q", tt.req, got, err, tt.want)
			}
		})
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	withCRC := func(s string) []byte { return appendCRC(unhex(t, s)) }
	tests := []struct {
		name      string
		frame     []byte
		malformed bool
		exception ExceptionCode // if not malformed
	}{
		{"bad crc", unhex(t, "01 03 00 00 00 0A C5 CE"), true, 0},
		{"too short", unhex(t, "01 03 C5"), true, 0},
		{"read too long", withCRC("01 03 00 00 00 0A 00"), true, 0},
		{"write multiple byte count beyond frame", withCRC("01 10 00 00 00 01 04 00 01"), true, 0},
		{"write multiple byte count wrong", withCRC("01 10 00 00 00 02 02 00 01"), false, ExceptionIllegalDataValue},
		{"quantity 0", withCRC("01 03 00 00 00 00"), false, ExceptionIllegalDataValue},
		{"quantity 126", withCRC("01 04 00 00 00 7E"), false, ExceptionIllegalDataValue},
		{"past 65535", withCRC("01 03 FF FF 00 02"), false, ExceptionIllegalDataAddress},
		{"write single coil", withCRC("01 05 00 00 FF 00"), false, ExceptionIllegalFunction},
		{"unknown function", withCRC("01 2B 0E 01 00"), false, ExceptionIllegalFunction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeRequest(tt.frame)
			if tt.malformed {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("DecodeRequest(% X) = %+v, %v, want ErrMalformed", tt.frame, req, err)
				}
				return
			}
			var exc *ExceptionError
			if !errors.As(err, &exc) || exc.Code != tt.exception || exc.Unit != 1 || byte(exc.Function) != tt.frame[1] {
				t.Errorf("DecodeRequest(% X) = %+v, %v, want exception %v from unit 1", tt.frame, req, err, tt.exception)
			}
			if errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeRequest(% X) = %v, which is not malformed", tt.frame, err)
			}
		})
	}
}

func TestRequestLength(t *testing.T) {
	tests := []struct {
		head string
		want int // 0: error
	}{
		{"01 03 00 00 00 0A C5", 8},
		{"01 06 00 00 00 0A C5", 8},
		{"01 05 00 00 FF 00 C5", 8},
		{"01 10 00 00 00 02 04", 13},
		{"01 0F 00 00 00 09 02", 11},
		{"01 16 00 00 00 09 02", 10},
		{"01 10 00 00 00 7B F6", 255},
		{"01 10 00 00 00 7B F8", 0}, // 9 + 248 > 256
		{"01 2B 0E 01 00 00 00", 0},
		{"01 03 00", 0},
	}
	for _, tt := range tests {
		got, err := RequestLength(unhex(t, tt.head))
		if got != tt.want || (err == nil) != (tt.want != 0) {
			t.Errorf("RequestLength(%s) = %d, %v, want %d", tt.head, got, err, tt.want)
		}
	}
}

func TestResponseDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Response
	}{
		{"read holding spec", "11 03 06 AE 41 56 52 43 40 49 AD",
			Response{Unit: 0x11, Function: FuncReadHoldingRegisters, Registers: []uint16{0xae41, 0x5652, 0x4340}}},
		{"exception spec", "01 83 02 C0 F1",
			Response{Unit: 1, Function: FuncReadHoldingRegisters, Exception: ExceptionIllegalDataAddress}},
		{"write single echo", "01 06 00 01 00 03 98 0B",
			Response{Unit: 1, Function: FuncWriteSingleRegister, Address: 1, Value: 3}},
		{"write multiple echo", "", Response{Unit: 0x11, Function: FuncWriteMultipleRegisters, Address: 1, Quantity: 2}},
		{"read coils", "", Response{Unit: 3, Function: FuncReadCoils, Bits: []byte{0xcd, 0x6b, 0xb2, 0x0e, 0x1b}}},
		{"read inputs max", "", Response{Unit: 247, Function: FuncReadInputRegisters, Registers: make([]uint16, 125)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, err := tt.want.Encode()
			if err != nil {
				t.Fatalf("Encode(%+v) = %v", tt.want, err)
			}
			if tt.frame != "" && !cmp.Equal(frame, unhex(t, tt.frame)) {
				t.Errorf("Encode(%+v) = % X, want %s", tt.want, frame, tt.frame)
			}
			got, err := DecodeResponse(frame)
			if err != nil {
				t.Fatalf("DecodeResponse(% X) = %v", frame, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DecodeResponse(% X) differs (-want +got):\n%s", frame, diff)
			}
			if n, err := ResponseLength(frame[:ResponseHeaderLength]); n != len(frame) || err != nil {
				t.Errorf("ResponseLength(% X) = %d, %v, want %d", frame[:ResponseHeaderLength], n, err, len(frame))
			}
		})
	}
}

func TestDecodeResponseErrors(t *testing.T) {
	withCRC := func(s string) []byte { return appendCRC(unhex(t, s)) }
	tests := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"bad crc", unhex(t, "11 03 06 AE 41 56 52 43 40 49 AE"), "crc 0xae49, computed 0xad49"},
		{"short", unhex(t, "01 83 02 C0"), "response of 4 bytes"},
		{"too long", make([]byte, 257), "response of 257 bytes"},
		{"odd byte count", withCRC("01 03 03 00 01 02"), "byte count 3"},
		{"zero byte count", withCRC("01 03 00"), "byte count 0"},
		{"byte count 252", withCRC("01 04 FC" + strings.Repeat("00", 250)), "byte count 252"},
		{"byte count longer than frame", withCRC("01 03 04 00 01"), "its header says 9"},
		{"byte count shorter than frame", withCRC("01 03 02 00 01 00 02"), "its header says 7"},
		{"unknown function", withCRC("01 2B 00 00"), "function code 0x2b"},
		{"exception code 0", withCRC("01 83 00"), "exception code 0"},
		{"exception of function 0", withCRC("01 80 01"), "function code 0"},
		{"write echo quantity 0", withCRC("01 10 00 00 00 00"), "quantity 0"},
		{"write echo past 65535", withCRC("01 10 FF FF 00 02"), "quantity 2 at address 65535"},
		{"write echo wrong length", withCRC("01 06 00 00 00"), "its header says 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResponse(tt.frame)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeResponse(% X) = %+v, %v, want ErrMalformed saying %q", tt.frame, got, err, tt.want)
			}
		})
	}
}

func TestExceptions(t *testing.T) {
	tests := []struct {
		code ExceptionCode
		name string
	}{
		{ExceptionIllegalFunction, "illegal function"},
		{ExceptionIllegalDataAddress, "illegal data address"},
		{ExceptionIllegalDataValue, "illegal data value"},
		{ExceptionServerDeviceFailure, "server device failure"},
		{ExceptionAcknowledge, "acknowledge"},
		{ExceptionServerDeviceBusy, "server device busy"},
		{ExceptionMemoryParityError, "memory parity error"},
		{ExceptionGatewayPathUnavailable, "gateway path unavailable"},
		{ExceptionGatewayTargetNoResponse, "gateway target device failed to respond"},
		{0x42, "exception 0x42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := appendCRC([]byte{7, 0x83, byte(tt.code)})
			resp, err := DecodeResponse(frame)
			if err != nil {
				t.Fatalf("DecodeResponse(% X) = %v", frame, err)
			}
			var exc *ExceptionError
			if !errors.As(resp.Err(), &exc) {
				t.Fatalf("DecodeResponse(% X).Err() = %v, want an *ExceptionError", frame, resp.Err())
			}
			want := &ExceptionError{Unit: 7, Function: FuncReadHoldingRegisters, Code: tt.code}
			if diff := cmp.Diff(want, exc); diff != "" {
				t.Errorf("exception differs (-want +got):\n%s", diff)
			}
			if msg := exc.Error(); !strings.Contains(msg, "unit 7 refused read holding registers") || !strings.Contains(msg, tt.name) {
				t.Errorf("Error() = %q, want it to name the unit, function and %q", msg, tt.name)
			}
			if err := req(FuncReadHoldingRegisters, 7, 0, 1).matches(resp); err != nil {
				t.Errorf("matches(exception) = %v", err)
			}
		})
	}
	if got := (Response{Unit: 1, Function: FuncReadCoils}).Err(); got != nil {
		t.Errorf("Err() of a positive response = %v", got)
	}
}

func req(fn FunctionCode, unit uint8, addr, qty uint16, values ...uint16) Request {
	return Request{Unit: unit, Function: fn, Address: addr, Quantity: qty, Values: values}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		resp Response
		want string // "": matches
	}{
		{"ok read", req(FuncReadInputRegisters, 1, 0, 2), Response{Unit: 1, Function: FuncReadInputRegisters, Registers: []uint16{1, 2}}, ""},
		{"other unit", req(FuncReadInputRegisters, 1, 0, 2), Response{Unit: 2, Function: FuncReadInputRegisters, Registers: []uint16{1, 2}}, "reply from unit 2"},
		{"other function", req(FuncReadInputRegisters, 1, 0, 2), Response{Unit: 1, Function: FuncReadHoldingRegisters, Registers: []uint16{1, 2}}, "read holding registers reply to a read input registers request"},
		{"too few", req(FuncReadHoldingRegisters, 1, 0, 2), Response{Unit: 1, Function: FuncReadHoldingRegisters, Registers: []uint16{1}}, "1 registers in reply to a read of 2"},
		{"bits", req(FuncReadCoils, 1, 0, 9), Response{Unit: 1, Function: FuncReadCoils, Bits: []byte{1}}, "1 bytes of bits in reply to a read of 9, want 2"},
		{"single echo", req(FuncWriteSingleRegister, 1, 5, 1, 7), Response{Unit: 1, Function: FuncWriteSingleRegister, Address: 5, Value: 8}, "write echoes 8 at address 5, sent 7 at 5"},
		{"multiple echo", req(FuncWriteMultipleRegisters, 1, 5, 2, 7, 8), Response{Unit: 1, Function: FuncWriteMultipleRegisters, Address: 5, Quantity: 3}, "write echoes 3 registers"},
		{"ok multiple", req(FuncWriteMultipleRegisters, 1, 5, 2, 7, 8), Response{Unit: 1, Function: FuncWriteMultipleRegisters, Address: 5, Quantity: 2}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.matches(tt.resp)
			if tt.want == "" {
				if err != nil {
					t.Errorf("matches = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("matches = %v, want ErrMalformed saying %q", err, tt.want)
			}
		})
	}
}

func TestLineTiming(t *testing.T) {
	tests := []struct {
		baud          int
		char, silence string
	}{
		{0, "0s", "5ms"},
		{9600, "1.145833ms", "4.010415ms"},
		{19200, "572.916µs", "2.005206ms"},
		{38400, "286.458µs", "1.75ms"},
		{115200, "95.486µs", "1.75ms"},
	}
	for _, tt := range tests {
		char, silence := lineTiming(tt.baud)
		if char.String() != tt.char || silence.String() != tt.silence {
			t.Errorf("lineTiming(%d) = %v, %v, want %s, %s", tt.baud, char, silence, tt.char, tt.silence)
		}
	}
}
