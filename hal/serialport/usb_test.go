package serialport

import (
	"errors"
	"strings"
	"testing"

	"go.bug.st/serial/enumerator"
)

func TestMatchUSB(t *testing.T) {
	ftdiA := usbPort("/dev/ttyUSB0", "0403:6001/A1")
	ftdiB := usbPort("/dev/ttyUSB1", "0403:6001/B2")
	ftdiNoSerial := usbPort("/dev/ttyUSB3", "0403:6001")
	ch340 := usbPort("/dev/ttyUSB2", "1A86:7523") // upper case, as darwin reports
	acm := usbPort("/dev/ttyACM0", "2341:0043/85736323")
	onboard := &enumerator.PortDetails{Name: "/dev/ttyS0"}
	tests := []struct {
		name    string
		id      string
		ports   []*enumerator.PortDetails
		want    string
		wantErr []string
		kind    error
	}{
		{name: "one match", id: "1a86:7523", ports: []*enumerator.PortDetails{onboard, ftdiA, ch340}, want: "/dev/ttyUSB2"},
		{name: "hex case and zeros", id: "1A86:7523", ports: []*enumerator.PortDetails{ch340}, want: "/dev/ttyUSB2"},
		{name: "short hex", id: "403:6001", ports: []*enumerator.PortDetails{ftdiA}, want: "/dev/ttyUSB0"},
		{name: "serial picks one", id: "0403:6001/B2", ports: []*enumerator.PortDetails{ftdiA, ftdiB}, want: "/dev/ttyUSB1"},
		{name: "serial is exact", id: "0403:6001/b2", ports: []*enumerator.PortDetails{ftdiA, ftdiB},
			wantErr: []string{"serialport: find usb:0403:6001/b2: no matching USB serial device: found /dev/ttyUSB0 (usb:0403:6001/A1), /dev/ttyUSB1 (usb:0403:6001/B2)"}, kind: ErrNotFound},
		{name: "none present", id: "0403:6001", ports: []*enumerator.PortDetails{onboard, nil},
			wantErr: []string{"serialport: find usb:0403:6001: no matching USB serial device: no USB serial devices present"}, kind: ErrNotFound},
		{name: "no ports at all", id: "0403:6001", ports: nil,
			wantErr: []string{"no USB serial devices present"}, kind: ErrNotFound},
		{name: "others present", id: "0403:6015", ports: []*enumerator.PortDetails{acm, ch340, ftdiA},
			wantErr: []string{"found /dev/ttyACM0 (usb:2341:0043/85736323), /dev/ttyUSB0 (usb:0403:6001/A1), /dev/ttyUSB2 (usb:1a86:7523)"}, kind: ErrNotFound},
		{name: "two match", id: "0403:6001", ports: []*enumerator.PortDetails{ftdiB, ch340, ftdiA},
			wantErr: []string{"serialport: find usb:0403:6001: 2 devices match: /dev/ttyUSB0 (usb:0403:6001/A1), /dev/ttyUSB1 (usb:0403:6001/B2); add /SERIAL to the usb id to choose one"}},
		{name: "two match the serial", id: "0403:6001/A1", ports: []*enumerator.PortDetails{ftdiA, usbPort("/dev/ttyUSB4", "0403:6001/A1")},
			wantErr: []string{"2 devices match", "share the serial number", "/dev/serial/by-path"}},
		{name: "id without serial matches device without serial", id: "0403:6001", ports: []*enumerator.PortDetails{ftdiNoSerial}, want: "/dev/ttyUSB3"},
		{name: "unparsable enumerator id", id: "0403:6001", ports: []*enumerator.PortDetails{usbPort("/dev/ttyUSB9", "zz:6001")},
			wantErr: []string{"found /dev/ttyUSB9 (usb:zz:6001)"}, kind: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseUSB(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := matchUSB(id, tt.ports)
			if len(tt.wantErr) == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("matchUSB(%v) = %q, %v; want %q", id, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("matchUSB(%v) = %q, want an error", id, got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("matchUSB(%v) error = %q, want it to contain %q", id, err, w)
				}
			}
			checkKind(t, err, tt.kind)
		})
	}
}

func TestFindUSBListError(t *testing.T) {
	boom := errors.New("boom")
	bus := &fakeBus{err: boom}
	_, err := findUSB(USBID{VID: 0x403, PID: 0x6001}, bus.list)
	if !errors.Is(err, boom) || err.Error() != "serialport: find usb:0403:6001: list serial ports: boom" {
		t.Errorf("findUSB with a failing enumerator = %v", err)
	}
}
