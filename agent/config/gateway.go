package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/thingd/thingd/agent/gateway"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/serialport"
)

// Gateway limits and defaults.
const (
	// MaxChildren bounds the downstream devices of one gateway. Each child
	// costs one MQTT subscription on the gateway's connection; AWS IoT Core
	// allows 50 per connection and thingd's own Shadow, Jobs and rotation
	// topics use about 20.
	MaxChildren = 25
	// DefaultPollInterval is how often a child is read by default.
	DefaultPollInterval = 10 * time.Second
	// DefaultSerialBaud is the serial speed by default.
	DefaultSerialBaud = 9600
	// DefaultModbusTimeout bounds one Modbus request by default.
	DefaultModbusTimeout = time.Second
)

// Adapter kinds a child can use.
const (
	AdapterLine   = "line"
	AdapterModbus = "modbus"
)

type gatewayT struct {
	SystemFacts *bool `toml:"system_facts"`
}

type child struct {
	Name         string     `toml:"name"`
	Adapter      string     `toml:"adapter"`
	Port         string     `toml:"port"`
	USB          string     `toml:"usb"`
	Baud         int        `toml:"baud"`
	DataBits     int        `toml:"data_bits"`
	Parity       string     `toml:"parity"`
	StopBits     string     `toml:"stop_bits"`
	PollInterval *Duration  `toml:"poll_interval"`
	ReportEvery  *Duration  `toml:"report_interval"`
	StaleAfter   *Duration  `toml:"stale_after"`
	MaxLineBytes int        `toml:"max_line_bytes"`
	UnitID       *int       `toml:"unit_id"`
	Timeout      *Duration  `toml:"timeout"`
	Registers    []register `toml:"register"`
}

type register struct {
	Name      string   `toml:"name"`
	Table     string   `toml:"table"`
	Address   *int     `toml:"address"`
	Type      string   `toml:"type"`
	WordOrder string   `toml:"word_order"`
	Scale     *float64 `toml:"scale"`
	Offset    float64  `toml:"offset"`
	Writable  bool     `toml:"writable"`
	Min       *float64 `toml:"min"`
	Max       *float64 `toml:"max"`
}

// Gateway configures the gateway role ([gateway] and [[child]]).
type Gateway struct {
	// SystemFacts adds the gateway's system facts (hostname, OS, uptime,
	// CPU temperature, memory, disk) to its own shadow (default true).
	SystemFacts bool
	// Children are the serial devices reported as things named
	// "<thing_name>-<name>".
	Children []Child
}

// Child is one downstream device behind the gateway ([[child]]).
type Child struct {
	// Name is the child's name; its thing is ThingName.
	Name string
	// ThingName is "<gateway thing>-<Name>".
	ThingName string
	// Adapter is AdapterLine or AdapterModbus.
	Adapter string
	// Serial is the port the device is on and its line settings.
	Serial serialport.Config
	// PollInterval is how often the device is read.
	PollInterval time.Duration
	// ReportInterval is the longest a change in the readings waits before
	// it is reported (default: PollInterval, every poll). A change of
	// connected state and the outcome of a desired write are reported at
	// once. A longer interval means fewer shadow updates (each is billed
	// on AWS) at the price of fresher readings.
	ReportInterval time.Duration
	// StaleAfter (line sensors) is how long without a line before the
	// child is reported disconnected; zero means 3 poll intervals.
	StaleAfter time.Duration
	// MaxLineBytes (line sensors) bounds one line; zero means the
	// adapter's default.
	MaxLineBytes int
	// UnitID (Modbus) is the device's unit address, 1-247.
	UnitID int
	// Timeout (Modbus) bounds one request.
	Timeout time.Duration
	// Registers (Modbus) are the registers read at every poll.
	Registers []modbus.Register
}

// childLine finds the line of key (the last dotted part) inside the i-th
// [[child]] table (and its j-th [[child.register]] when j >= 0), or the
// table header's line; 0 when not found.
func childLine(data []byte, i, j int, key string) int {
	short := key[strings.LastIndexAny(key, ". ")+1:]
	lines := strings.Split(string(data), "\n")
	header := func(l string) string { return strings.ReplaceAll(strings.TrimSpace(l), " ", "") }
	ci, ri, start := -1, -1, 0
	for n, l := range lines {
		switch h := header(l); {
		case h == "[[child]]":
			ci, ri = ci+1, -1
			if ci == i && j < 0 {
				start = n + 1
			}
		case h == "[[child.register]]":
			ri++
			if ci == i && ri == j {
				start = n + 1
			}
		case strings.HasPrefix(h, "[") && start > 0:
			return start
		default:
			if start == 0 {
				continue
			}
			if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == short {
				return n + 1
			}
		}
	}
	return start
}

func validateGateway(c *Config, f *file, data []byte, errs *[]error) {
	bad := func(key, format string, args ...any) {
		*errs = append(*errs, &Error{Path: c.Path, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	c.Gateway = Gateway{SystemFacts: true}
	if f.Gateway != nil && f.Gateway.SystemFacts != nil {
		c.Gateway.SystemFacts = *f.Gateway.SystemFacts
	}
	if len(f.Children) > MaxChildren {
		bad("child", "%d children configured, at most %d (each uses one MQTT subscription; AWS IoT allows 50 per connection)",
			len(f.Children), MaxChildren)
	}
	seen := map[string]bool{}
	for i, ch := range f.Children {
		key := func(k string) string { return fmt.Sprintf("child[%d].%s", i, k) }
		badChild := func(j int) func(key, format string, args ...any) {
			return func(key, format string, args ...any) {
				*errs = append(*errs, &Error{Path: c.Path, Line: childLine(data, i, j, key), Key: key, Msg: fmt.Sprintf(format, args...)})
			}
		}
		bad := badChild(-1)
		out := Child{Name: ch.Name, ThingName: c.ThingName + "-" + ch.Name, Adapter: ch.Adapter,
			PollInterval: durationOr(ch.PollInterval, DefaultPollInterval),
			StaleAfter:   durationOr(ch.StaleAfter, 0), MaxLineBytes: ch.MaxLineBytes,
			Timeout: durationOr(ch.Timeout, DefaultModbusTimeout),
			Serial: serialport.Config{Path: ch.Port, USB: ch.USB, Baud: ch.Baud, DataBits: ch.DataBits,
				Parity: strings.ToLower(ch.Parity), StopBits: ch.StopBits}}
		switch {
		case ch.Name == "":
			bad(key("name"), "missing (the child's thing is <thing_name>-<name>)")
		case seen[ch.Name]:
			bad(key("name"), "used by two children")
		default:
			if err := CheckThingName(out.ThingName); err != nil {
				bad(key("name"), "thing name %v", err)
			}
		}
		seen[ch.Name] = true
		validateSerial(&out.Serial, key, bad)
		if out.PollInterval < time.Second || out.PollInterval > 24*time.Hour {
			bad(key("poll_interval"), "%v is not between 1s and 24h", out.PollInterval)
		}
		out.ReportInterval = durationOr(ch.ReportEvery, out.PollInterval)
		if out.ReportInterval < out.PollInterval || out.ReportInterval > 24*time.Hour {
			bad(key("report_interval"), "%v is not between poll_interval (%v) and 24h", out.ReportInterval, out.PollInterval)
		}
		switch ch.Adapter {
		case AdapterLine:
			if out.StaleAfter == 0 {
				out.StaleAfter = 3 * out.PollInterval
			}
			if out.StaleAfter < time.Second {
				bad(key("stale_after"), "%v is less than 1s", out.StaleAfter)
			}
			if ch.MaxLineBytes != 0 && (ch.MaxLineBytes < 64 || ch.MaxLineBytes > 65536) {
				bad(key("max_line_bytes"), "%d is not between 64 and 65536", ch.MaxLineBytes)
			}
			if ch.UnitID != nil || len(ch.Registers) > 0 || ch.Timeout != nil {
				bad(key("adapter"), "line sensors take no unit_id, timeout or registers (those are Modbus settings)")
			}
		case AdapterModbus:
			out.UnitID = 1
			if ch.UnitID != nil {
				out.UnitID = *ch.UnitID
			}
			if out.UnitID < 1 || out.UnitID > 247 {
				bad(key("unit_id"), "%d is not between 1 and 247", out.UnitID)
			}
			if out.Timeout < 10*time.Millisecond || out.Timeout > time.Minute {
				bad(key("timeout"), "%v is not between 10ms and 1m", out.Timeout)
			}
			if ch.StaleAfter != nil || ch.MaxLineBytes != 0 {
				bad(key("adapter"), "Modbus devices take no stale_after or max_line_bytes (those are line sensor settings)")
			}
			if len(ch.Registers) == 0 {
				bad(key("register"), "a Modbus child needs at least one [[child.register]]")
			}
			names := map[string]bool{}
			for j, r := range ch.Registers {
				rkey := func(k string) string { return key(fmt.Sprintf("register[%d].%s", j, k)) }
				out.Registers = append(out.Registers, validateRegister(r, names, rkey, badChild(j)))
			}
			if out.UnitID >= 1 && out.UnitID <= 247 && len(out.Registers) > 0 {
				// What the checks above do not see: registers overlapping
				// in a table, a 32-bit pair past 65535.
				if err := (modbus.Config{UnitID: uint8(out.UnitID), Registers: out.Registers}).Validate(); err != nil && len(*errs) == 0 {
					bad(key("register"), "%v", err)
				}
			}
		case "":
			bad(key("adapter"), "missing (line or modbus)")
		default:
			bad(key("adapter"), "%q is not line or modbus", ch.Adapter)
		}
		c.Gateway.Children = append(c.Gateway.Children, out)
	}
}

func validateSerial(s *serialport.Config, key func(string) string, bad func(key, format string, args ...any)) {
	switch {
	case s.Path == "" && s.USB == "":
		bad(key("port"), "missing: set port (a device path such as /dev/ttyUSB0) or usb (VID:PID[/SERIAL])")
	case s.Path != "" && s.USB != "":
		bad(key("port"), "set port or usb, not both")
	case s.Path != "" && !strings.HasPrefix(s.Path, "/"):
		bad(key("port"), "%q is not an absolute path", s.Path)
	}
	if s.USB != "" {
		if _, err := serialport.ParseUSB(s.USB); err != nil {
			bad(key("usb"), "%v", err)
		}
	}
	if s.Baud == 0 {
		s.Baud = DefaultSerialBaud
	}
	if s.Baud < 50 || s.Baud > 4000000 {
		bad(key("baud"), "%d is not a serial speed", s.Baud)
	}
	if s.DataBits == 0 {
		s.DataBits = 8
	}
	if s.DataBits < 5 || s.DataBits > 8 {
		bad(key("data_bits"), "%d is not 5, 6, 7 or 8", s.DataBits)
	}
	switch s.Parity {
	case "":
		s.Parity = "none"
	case "none", "even", "odd", "mark", "space":
	default:
		bad(key("parity"), "%q is not none, even, odd, mark or space", s.Parity)
	}
	switch s.StopBits {
	case "":
		s.StopBits = "1"
	case "1", "2":
	case "1.5":
		bad(key("stop_bits"), "1.5 stop bits cannot be set on Linux serial ports; use 1 or 2")
	default:
		bad(key("stop_bits"), "%q is not 1 or 2", s.StopBits)
	}
}

func validateRegister(r register, names map[string]bool, key func(string) string, bad func(key, format string, args ...any)) modbus.Register {
	out := modbus.Register{Name: r.Name, Table: r.Table, Type: r.Type, WordOrder: r.WordOrder, Scale: 1, Offset: r.Offset,
		Writable: r.Writable, Min: r.Min, Max: r.Max}
	switch {
	case r.Name == "":
		bad(key("name"), "missing")
	case names[r.Name]:
		bad(key("name"), "used by two registers")
	case slices.Contains(gateway.Reserved, r.Name):
		bad(key("name"), "%q is reserved (thingd reports %s in every child's shadow)", r.Name, strings.Join(gateway.Reserved, ", "))
	case len(r.Name) > 64 || strings.ContainsAny(r.Name, ".$ \t\n"):
		bad(key("name"), "%q: use at most 64 characters without dots, spaces or $", r.Name)
	}
	names[r.Name] = true
	switch r.Table {
	case "holding":
	case "input":
		if r.Writable {
			bad(key("writable"), "input registers are read-only; only holding registers can be writable")
		}
	case "":
		bad(key("table"), "missing (holding or input)")
	default:
		bad(key("table"), "%q is not holding or input", r.Table)
	}
	if r.Address == nil {
		bad(key("address"), "missing")
	} else if *r.Address < 0 || *r.Address > 65535 {
		bad(key("address"), "%d is not between 0 and 65535", *r.Address)
	} else {
		out.Address = uint16(*r.Address)
	}
	switch r.Type {
	case "":
		out.Type = "uint16"
	case "uint16", "int16", "uint32", "int32", "float32":
	default:
		bad(key("type"), "%q is not uint16, int16, uint32, int32 or float32", r.Type)
	}
	switch r.WordOrder {
	case "":
		out.WordOrder = "big"
	case "big", "little":
		if out.Type == "uint16" || out.Type == "int16" {
			bad(key("word_order"), "only 32-bit types have a word order")
		}
	default:
		bad(key("word_order"), "%q is not big or little", r.WordOrder)
	}
	if r.Scale != nil {
		out.Scale = *r.Scale
		if *r.Scale == 0 || math.IsNaN(*r.Scale) || math.IsInf(*r.Scale, 0) {
			bad(key("scale"), "must be a non-zero number")
		}
	}
	if (r.Min != nil || r.Max != nil) && !r.Writable {
		bad(key("min"), "min and max bound writes; the register is not writable")
	}
	if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
		bad(key("min"), "%v is greater than max %v", *r.Min, *r.Max)
	}
	return out
}
