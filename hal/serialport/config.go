package serialport

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.bug.st/serial"
)

// Defaults for the zero values of [Config] fields.
const (
	DefaultBaud        = 9600
	DefaultDataBits    = 8
	DefaultReadTimeout = time.Second
)

// Config says which serial port to open and how. Exactly one of Path and
// USB must be set. The zero values of the line settings mean 9600 8N1 with
// a one-second read timeout. A Config is a plain value: it is copied by
// [Open] and [NewKeeper] and never modified.
type Config struct {
	// Path is the device path, such as /dev/ttyUSB0 or, better, a stable
	// /dev/serial/by-id/... link. It must be absolute.
	Path string
	// USB selects the port by USB ids instead: "VID:PID" or
	// "VID:PID/SERIAL", ids in hex (case does not matter), serial number
	// compared exactly, for example "0403:6001/A6008isP". See [ParseUSB].
	// Opening fails if no port or more than one port matches.
	USB string
	// Baud is the bit rate; zero means DefaultBaud. Pseudo-terminals
	// ignore it.
	Baud int
	// DataBits is 5, 6, 7 or 8; zero means DefaultDataBits.
	DataBits int
	// Parity is "none", "even", "odd", "mark" or "space" (case does not
	// matter); empty means "none".
	Parity string
	// StopBits is "1" or "2"; empty means "1". "1.5" is rejected: Linux
	// cannot set it.
	StopBits string
	// ReadTimeout bounds how long a Read waits for data before it returns
	// an error matching ErrTimeout; zero means DefaultReadTimeout. It can be
	// changed later with SetReadTimeout.
	ReadTimeout time.Duration
}

// String names the port for logs and errors: the path, or "usb:" followed
// by the USB id.
func (c Config) String() string {
	switch {
	case c.Path != "":
		return c.Path
	case c.USB != "":
		if id, err := ParseUSB(c.USB); err == nil {
			return "usb:" + id.String()
		}
		return "usb:" + c.USB
	default:
		return "(no port)"
	}
}

// Validate reports every problem in c at once; nil means [Open] will accept
// it. The error names the port and the offending fields.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Path == "" && c.USB == "":
		errs = append(errs, errors.New("set either path or usb"))
	case c.Path != "" && c.USB != "":
		errs = append(errs, fmt.Errorf("path %q and usb %q are mutually exclusive", c.Path, c.USB))
	case c.Path != "" && !filepath.IsAbs(c.Path):
		errs = append(errs, fmt.Errorf("path %q is not absolute", c.Path))
	case c.USB != "":
		if _, err := ParseUSB(c.USB); err != nil {
			errs = append(errs, errors.New(strings.TrimPrefix(err.Error(), "serialport: ")))
		}
	}
	if _, err := c.mode(); err != nil {
		errs = append(errs, err)
	}
	if c.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("read timeout %v is negative", c.ReadTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("serialport: config for %s: %w", c, errors.Join(errs...))
}

// mode returns the library's line settings for c, defaults applied. It
// never sets the modem output bits: doing so makes Open fail on a
// pseudo-terminal.
func (c Config) mode() (serial.Mode, error) {
	var errs []error
	m := serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	if m.BaudRate == 0 {
		m.BaudRate = DefaultBaud
	} else if m.BaudRate < 0 {
		errs = append(errs, fmt.Errorf("baud %d is negative", c.Baud))
	}
	if m.DataBits == 0 {
		m.DataBits = DefaultDataBits
	} else if m.DataBits < 5 || m.DataBits > 8 {
		errs = append(errs, fmt.Errorf("data bits %d: want 5, 6, 7 or 8", c.DataBits))
	}
	switch strings.ToLower(c.Parity) {
	case "", "none":
		m.Parity = serial.NoParity
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		errs = append(errs, fmt.Errorf("parity %q: want none, even, odd, mark or space", c.Parity))
	}
	switch c.StopBits {
	case "", "1":
		m.StopBits = serial.OneStopBit
	case "2":
		m.StopBits = serial.TwoStopBits
	case "1.5":
		errs = append(errs, errors.New(`stop bits "1.5" are not supported on Linux: want "1" or "2"`))
	default:
		errs = append(errs, fmt.Errorf(`stop bits %q: want "1" or "2"`, c.StopBits))
	}
	return m, errors.Join(errs...)
}

// readTimeout returns ReadTimeout with its default applied.
func (c Config) readTimeout() time.Duration {
	if c.ReadTimeout <= 0 {
		return DefaultReadTimeout
	}
	return c.ReadTimeout
}

// USBID selects USB serial devices by vendor and product id and, if Serial
// is not empty, by serial number.
type USBID struct {
	// VID and PID are the USB vendor and product ids.
	VID, PID uint16
	// Serial is the device's USB serial number; empty matches any.
	Serial string
}

// String returns the id in the form ParseUSB accepts: four lower-case hex
// digits each for VID and PID, then "/SERIAL" if Serial is set.
func (id USBID) String() string {
	s := fmt.Sprintf("%04x:%04x", id.VID, id.PID)
	if id.Serial != "" {
		s += "/" + id.Serial
	}
	return s
}

// ParseUSB parses "VID:PID" or "VID:PID/SERIAL": VID and PID are one to four
// hex digits (either case), SERIAL is everything after the first slash and
// must be non-empty, valid UTF-8 and free of control characters.
func ParseUSB(s string) (USBID, error) {
	bad := func(why string) (USBID, error) {
		return USBID{}, fmt.Errorf("serialport: usb id %q: %s: want VID:PID or VID:PID/SERIAL, ids in hex, like 0403:6001", s, why)
	}
	ids, serialNo, hasSerial := strings.Cut(s, "/")
	vid, pid, ok := strings.Cut(ids, ":")
	if !ok {
		return bad("no colon")
	}
	var id USBID
	for _, f := range []struct {
		name, text string
		dst        *uint16
	}{{"vendor id", vid, &id.VID}, {"product id", pid, &id.PID}} {
		if len(f.text) < 1 || len(f.text) > 4 {
			return bad(f.name + " is not 1 to 4 hex digits")
		}
		v, err := strconv.ParseUint(f.text, 16, 16)
		if err != nil {
			return bad(f.name + " is not hex")
		}
		*f.dst = uint16(v)
	}
	if hasSerial {
		if serialNo == "" {
			return bad("empty serial number")
		}
		if !utf8.ValidString(serialNo) || strings.ContainsFunc(serialNo, unicode.IsControl) {
			return bad("serial number has invalid characters")
		}
		id.Serial = serialNo
	}
	return id, nil
}
