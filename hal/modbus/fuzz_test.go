package modbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// frameSeeds are frames of every kind, good and bad, for the fuzzers.
func frameSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, s := range []string{
		"01 03 00 00 00 0A C5 CD",
		"11 03 00 6B 00 03 76 87",
		"01 04 00 00 00 01 31 CA",
		"11 01 00 13 00 25 0E 84",
		"01 06 00 01 00 03 98 0B",
		"11 10 00 01 00 02 04 00 0A 01 02 C6 F0",
		"11 03 06 AE 41 56 52 43 40 49 AD",
		"01 83 02 C0 F1",
		"01 03 00 00 00 0A C5 CE",
		"00 FF 55 AA 13 37 FE",
		"",
	} {
		seeds = append(seeds, unhex(t, s))
	}
	for _, r := range []Response{
		{Unit: 3, Function: FuncReadCoils, Bits: []byte{0xcd, 0x6b, 0xb2, 0x0e, 0x1b}},
		{Unit: 247, Function: FuncReadInputRegisters, Registers: make([]uint16, 125)},
		{Unit: 1, Function: FuncWriteMultipleRegisters, Address: 100, Quantity: 123},
		{Unit: 1, Function: FuncReadDiscreteInputs, Exception: ExceptionServerDeviceBusy},
	} {
		b, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// withGoodCRC returns frame with its last two bytes replaced by the CRC
// of the rest, so that the fuzzers also explore what lies past the CRC check.
func withGoodCRC(frame []byte) []byte {
	if len(frame) < 2 {
		return frame
	}
	return appendCRC(bytes.Clone(frame[:len(frame)-2]))
}

// crcOK reports whether frame ends with the CRC of the rest.
func crcOK(frame []byte) bool {
	n := len(frame)
	return n >= 2 && binary.LittleEndian.Uint16(frame[n-2:]) == CRC16(frame[:n-2])
}

// FuzzDecodeResponse checks that DecodeResponse never panics, never
// accepts a bad CRC (fixCRC makes the fuzzer's frame carry a good one, so
// that the parser behind the check is explored too), agrees with ResponseLength, and that what it accepts
// encodes back to the same bytes.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, fixCRC bool) {
		if fixCRC {
			frame = withGoodCRC(frame)
		}
		if len(frame) >= ResponseHeaderLength {
			_, _ = ResponseLength(frame) // Must not panic.
		}
		resp, err := DecodeResponse(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeResponse(% X) = %v, not matching ErrMalformed", frame, err)
			}
			return
		}
		if !crcOK(frame) {
			t.Fatalf("DecodeResponse(% X) accepted a frame with a bad CRC", frame)
		}
		if n, err := ResponseLength(frame[:ResponseHeaderLength]); n != len(frame) || err != nil {
			t.Fatalf("DecodeResponse(% X) accepted %d bytes, ResponseLength = %d, %v", frame, len(frame), n, err)
		}
		again, err := resp.Encode()
		if err != nil {
			t.Fatalf("Encode(DecodeResponse(% X) = %+v) = %v", frame, resp, err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("Encode(DecodeResponse(% X)) = % X", frame, again)
		}
	})
}

// FuzzDecodeRequest checks the server side: DecodeRequest never panics,
// never accepts a bad CRC, refuses only with ErrMalformed or an exception,
// agrees with RequestLength, and what it accepts encodes back to the same
// bytes.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, fixCRC bool) {
		if fixCRC {
			frame = withGoodCRC(frame)
		}
		if len(frame) >= RequestHeaderLength {
			_, _ = RequestLength(frame) // Must not panic.
		}
		req, err := DecodeRequest(frame)
		var exc *ExceptionError
		switch {
		case errors.As(err, &exc):
			if !crcOK(frame) {
				t.Fatalf("DecodeRequest(% X) answered a frame with a bad CRC: %v", frame, err)
			}
			if exc.Unit != frame[0] || byte(exc.Function) != frame[1] || exc.Code == 0 {
				t.Fatalf("DecodeRequest(% X) = %v, for the wrong unit or function", frame, err)
			}
			if _, err := (Response{Unit: exc.Unit, Function: exc.Function, Exception: exc.Code}).Encode(); err != nil {
				t.Fatalf("cannot encode the exception for % X: %v", frame, err)
			}
			return
		case err != nil:
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeRequest(% X) = %v, neither malformed nor an exception", frame, err)
			}
			return
		}
		if !crcOK(frame) {
			t.Fatalf("DecodeRequest(% X) accepted a frame with a bad CRC", frame)
		}
		if n, err := RequestLength(frame); n != len(frame) || err != nil {
			t.Fatalf("DecodeRequest(% X) accepted %d bytes, RequestLength = %d, %v", frame, len(frame), n, err)
		}
		again, err := req.Encode()
		if err != nil {
			t.Fatalf("Encode(DecodeRequest(% X) = %+v) = %v", frame, req, err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("Encode(DecodeRequest(% X)) = % X", frame, again)
		}
	})
}

// FuzzRoundTrip builds requests from fuzzed fields: those Encode accepts
// must decode to themselves on the server side, and a server's reply built
// for them must decode and match them on the master side.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(1), uint8(0x03), uint16(0), uint16(10), []byte{})
	f.Add(uint8(17), uint8(0x10), uint16(1), uint16(2), []byte{0, 10, 1, 2})
	f.Add(uint8(247), uint8(0x06), uint16(65535), uint16(1), []byte{0xff, 0xfe})
	f.Add(uint8(2), uint8(0x01), uint16(65000), uint16(2000), []byte{})
	f.Add(uint8(2), uint8(0x04), uint16(65411), uint16(125), []byte{})
	f.Fuzz(func(t *testing.T, unit, fn uint8, addr, qty uint16, data []byte) {
		r := Request{Unit: unit, Function: FunctionCode(fn), Address: addr, Quantity: qty}
		if r.Function == FuncWriteSingleRegister || r.Function == FuncWriteMultipleRegisters {
			for i := 0; i+1 < len(data); i += 2 {
				r.Values = append(r.Values, binary.BigEndian.Uint16(data[i:]))
			}
		}
		frame, err := r.Encode()
		if err != nil {
			return
		}
		back, err := DecodeRequest(frame)
		if err != nil {
			t.Fatalf("DecodeRequest(Encode(%+v) = % X) = %v", r, frame, err)
		}
		if diff := cmp.Diff(r, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("DecodeRequest(Encode(r)) differs (-r +decoded):\n%s", diff)
		}
		if n, err := RequestLength(frame[:RequestHeaderLength]); n != len(frame) || err != nil {
			t.Fatalf("RequestLength(% X) = %d, %v, want %d", frame, n, err, len(frame))
		}

		// A server's positive reply, derived from the request and data.
		resp := Response{Unit: r.Unit, Function: r.Function}
		switch r.Function {
		case FuncReadHoldingRegisters, FuncReadInputRegisters:
			resp.Registers = make([]uint16, r.Quantity)
			for i := range resp.Registers {
				resp.Registers[i] = uint16(i)*uint16(len(data)+1) ^ addr
			}
		case FuncReadCoils, FuncReadDiscreteInputs:
			resp.Bits = make([]byte, (int(r.Quantity)+7)/8)
			copy(resp.Bits, data)
		case FuncWriteSingleRegister:
			resp.Address, resp.Value = r.Address, r.Values[0]
		case FuncWriteMultipleRegisters:
			resp.Address, resp.Quantity = r.Address, r.Quantity
		}
		reply, err := resp.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v) = %v", resp, err)
		}
		if len(reply) != r.responseLengthFor() {
			t.Fatalf("reply to %+v is %d bytes, responseLengthFor says %d", r, len(reply), r.responseLengthFor())
		}
		if n, err := ResponseLength(reply[:ResponseHeaderLength]); n != len(reply) || err != nil {
			t.Fatalf("ResponseLength(% X) = %d, %v, want %d", reply, n, err, len(reply))
		}
		got, err := DecodeResponse(reply)
		if err != nil {
			t.Fatalf("DecodeResponse(% X) = %v", reply, err)
		}
		if diff := cmp.Diff(resp, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("DecodeResponse(Encode(resp)) differs (-resp +decoded):\n%s", diff)
		}
		if err := r.matches(got); err != nil {
			t.Fatalf("reply %+v does not match request %+v: %v", got, r, err)
		}
		// Any single flipped bit is caught by the CRC or the structure.
		for i := range len(reply) * 8 {
			bad := bytes.Clone(reply)
			bad[i/8] ^= 1 << (i % 8)
			if _, err := DecodeResponse(bad); err == nil {
				t.Fatalf("DecodeResponse accepted % X, bit %d of % X flipped", bad, i, reply)
			}
		}
	})
}
