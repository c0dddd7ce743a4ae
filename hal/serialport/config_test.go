package serialport

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.bug.st/serial"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{name: "path", cfg: Config{Path: "/dev/ttyUSB0"}},
		{name: "usb", cfg: Config{USB: "0403:6001/A6008isP"}},
		{name: "all set", cfg: Config{Path: "/dev/ttyS0", Baud: 115200, DataBits: 7, Parity: "Even", StopBits: "2", ReadTimeout: time.Second}},
		{name: "mark 5 bits", cfg: Config{Path: "/dev/ttyS0", DataBits: 5, Parity: "mark"}},
		{name: "space", cfg: Config{Path: "/dev/ttyS0", Parity: "SPACE", StopBits: "1"}},
		{name: "nothing", cfg: Config{}, want: []string{"serialport: config for (no port): set either path or usb"}},
		{name: "both", cfg: Config{Path: "/dev/ttyS0", USB: "0403:6001"}, want: []string{`path "/dev/ttyS0" and usb "0403:6001" are mutually exclusive`}},
		{name: "relative", cfg: Config{Path: "ttyS0"}, want: []string{`config for ttyS0: path "ttyS0" is not absolute`}},
		{name: "bad usb", cfg: Config{USB: "0403-6001"}, want: []string{`serialport: config for usb:0403-6001: usb id "0403-6001": no colon`}},
		{name: "negative baud", cfg: Config{Path: "/dev/x", Baud: -1}, want: []string{"baud -1 is negative"}},
		{name: "data bits", cfg: Config{Path: "/dev/x", DataBits: 9}, want: []string{"data bits 9: want 5, 6, 7 or 8"}},
		{name: "parity", cfg: Config{Path: "/dev/x", Parity: "N"}, want: []string{`parity "N": want none, even, odd, mark or space`}},
		{name: "stop 1.5", cfg: Config{Path: "/dev/x", StopBits: "1.5"}, want: []string{`stop bits "1.5" are not supported on Linux`}},
		{name: "stop 3", cfg: Config{Path: "/dev/x", StopBits: "3"}, want: []string{`stop bits "3": want "1" or "2"`}},
		{name: "timeout", cfg: Config{Path: "/dev/x", ReadTimeout: -time.Second}, want: []string{"read timeout -1s is negative"}},
		{name: "several at once", cfg: Config{Path: "/dev/x", DataBits: 4, Parity: "x", StopBits: "0"},
			want: []string{"data bits 4", `parity "x"`, `stop bits "0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "serialport: config for ") {
				t.Errorf("Validate() = %q, want it to name the port", err)
			}
		})
	}
}

func TestConfigMode(t *testing.T) {
	tests := []struct {
		cfg  Config
		want serial.Mode
	}{
		{Config{}, serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}},
		{Config{Baud: 19200, DataBits: 7, Parity: "even", StopBits: "2"},
			serial.Mode{BaudRate: 19200, DataBits: 7, Parity: serial.EvenParity, StopBits: serial.TwoStopBits}},
		{Config{Parity: "Odd"}, serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.OddParity}},
		{Config{Parity: "mark"}, serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.MarkParity}},
		{Config{Parity: "space"}, serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.SpaceParity}},
		{Config{Parity: "none", StopBits: "1"}, serial.Mode{BaudRate: 9600, DataBits: 8}},
	}
	for _, tt := range tests {
		got, err := tt.cfg.mode()
		if err != nil {
			t.Errorf("%+v.mode() error %v", tt.cfg, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%+v.mode() mismatch (-want +got):\n%s", tt.cfg, diff)
		}
		if got.InitialStatusBits != nil {
			t.Errorf("%+v.mode() sets DTR/RTS, which fails on pseudo-terminals", tt.cfg)
		}
	}
	if got := (Config{}).readTimeout(); got != time.Second {
		t.Errorf("default read timeout = %v, want 1s", got)
	}
}

func TestConfigString(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Path: "/dev/ttyUSB0"}, "/dev/ttyUSB0"},
		{Config{USB: "403:6001"}, "usb:0403:6001"},
		{Config{USB: "0403:6001/A6008isP"}, "usb:0403:6001/A6008isP"},
		{Config{USB: "1A86:7523"}, "usb:1a86:7523"},
		{Config{USB: "junk"}, "usb:junk"},
		{Config{}, "(no port)"},
	}
	for _, tt := range tests {
		if got := tt.cfg.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

func TestParseUSB(t *testing.T) {
	tests := []struct {
		in      string
		want    USBID
		wantErr string
	}{
		{in: "0403:6001", want: USBID{VID: 0x0403, PID: 0x6001}},
		{in: "1A86:7523", want: USBID{VID: 0x1a86, PID: 0x7523}},
		{in: "1a86:7Ea3", want: USBID{VID: 0x1a86, PID: 0x7ea3}},
		{in: "403:1", want: USBID{VID: 0x403, PID: 1}},
		{in: "0403:6001/A6008isP", want: USBID{VID: 0x0403, PID: 0x6001, Serial: "A6008isP"}},
		{in: "0403:6001/a/b", want: USBID{VID: 0x0403, PID: 0x6001, Serial: "a/b"}},
		{in: "0403:6001/with space", want: USBID{VID: 0x0403, PID: 0x6001, Serial: "with space"}},
		{in: "", wantErr: "no colon"},
		{in: "04036001", wantErr: "no colon"},
		{in: ":6001", wantErr: "vendor id is not 1 to 4 hex digits"},
		{in: "0403:", wantErr: "product id is not 1 to 4 hex digits"},
		{in: "10403:6001", wantErr: "vendor id is not 1 to 4 hex digits"},
		{in: "0x43:6001", wantErr: "vendor id is not hex"},
		{in: "+403:6001", wantErr: "vendor id is not hex"},
		{in: "0403:600g", wantErr: "product id is not hex"},
		{in: "0403:6001:1", wantErr: "product id is not 1 to 4 hex digits"},
		{in: "0403:6001/", wantErr: "empty serial number"},
		{in: "0403:6001/a\nb", wantErr: "serial number has invalid characters"},
		{in: "0403:6001/\xff", wantErr: "serial number has invalid characters"},
		{in: " 403:6001", wantErr: "vendor id is not hex"},
	}
	for _, tt := range tests {
		got, err := ParseUSB(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseUSB(%q) = %v, %v; want error with %q", tt.in, got, err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "serialport: usb id ") {
				t.Errorf("ParseUSB(%q) error %q does not say what failed", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseUSB(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseUSB(f *testing.F) {
	for _, s := range []string{"0403:6001", "1A86:7523/X", "0403:6001/a/b", ":", "0:0/", "ffff:FFFF/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseUSB(s)
		if err != nil {
			return
		}
		// What parses prints back to something that parses the same.
		again, err := ParseUSB(id.String())
		if err != nil || again != id {
			t.Fatalf("ParseUSB(%q) = %+v, but ParseUSB(%q) = %+v, %v", s, id, id.String(), again, err)
		}
		if err := (Config{USB: s}).Validate(); err != nil {
			t.Fatalf("ParseUSB(%q) accepts it, Config.Validate says %v", s, err)
		}
	})
}

func FuzzConfigValidate(f *testing.F) {
	f.Add("/dev/ttyUSB0", "", 9600, 8, "none", "1")
	f.Add("", "0403:6001", 0, 0, "", "")
	f.Add("/x", "", -1, 9, "EVEN", "1.5")
	f.Fuzz(func(t *testing.T, path, usb string, baud, dataBits int, parity, stopBits string) {
		cfg := Config{Path: path, USB: usb, Baud: baud, DataBits: dataBits, Parity: parity, StopBits: stopBits}
		err := cfg.Validate()
		_ = cfg.String()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "serialport: config for ") {
				t.Fatalf("Validate() = %q, want it to name the port", err)
			}
			return
		}
		m, err := cfg.mode()
		if err != nil {
			t.Fatalf("Validate() = nil but mode() = %v", err)
		}
		if m.BaudRate <= 0 || m.DataBits < 5 || m.DataBits > 8 || m.InitialStatusBits != nil {
			t.Fatalf("Validate() = nil but mode() = %+v", m)
		}
	})
}
