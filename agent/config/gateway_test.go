package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/serialport"
)

const gatewayChildren = `
[gateway]
system_facts = false

[[child]]
name = "temp"
adapter = "line"
port = "/dev/ttyACM0"
poll_interval = "5s"
report_interval = "1m"

[[child]]
name = "meter"
adapter = "modbus"
usb = "0403:6001/A1B2"
baud = 19200
parity = "even"
unit_id = 7
timeout = "500ms"

[[child.register]]
name = "voltage"
table = "input"
address = 0
scale = 0.1

[[child.register]]
name = "setpoint"
table = "holding"
address = 10
type = "int32"
word_order = "little"
writable = true
min = -10.0
max = 40.0
`

func TestGatewayConfig(t *testing.T) {
	c, err := Parse("test.toml", []byte(base+gatewayChildren))
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := -10.0, 40.0
	want := Gateway{SystemFacts: false, Children: []Child{
		{Name: "temp", ThingName: "gw-1-temp", Adapter: AdapterLine, PollInterval: 5 * time.Second, ReportInterval: time.Minute, StaleAfter: 15 * time.Second,
			Timeout: DefaultModbusTimeout,
			Serial:  serialport.Config{Path: "/dev/ttyACM0", Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}},
		{Name: "meter", ThingName: "gw-1-meter", Adapter: AdapterModbus, PollInterval: DefaultPollInterval, ReportInterval: DefaultPollInterval, UnitID: 7,
			Timeout: 500 * time.Millisecond,
			Serial:  serialport.Config{USB: "0403:6001/A1B2", Baud: 19200, DataBits: 8, Parity: "even", StopBits: "1"},
			Registers: []modbus.Register{
				{Name: "voltage", Table: "input", Address: 0, Type: "uint16", WordOrder: "big", Scale: 0.1},
				{Name: "setpoint", Table: "holding", Address: 10, Type: "int32", WordOrder: "little", Scale: 1, Writable: true, Min: &lo, Max: &hi},
			}},
	}}
	if diff := cmp.Diff(want, c.Gateway); diff != "" {
		t.Errorf("gateway config (-want +got):\n%s", diff)
	}

	// No [gateway] and no children: system facts on, nothing else.
	c, err = Parse("test.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Gateway.SystemFacts || len(c.Gateway.Children) != 0 {
		t.Errorf("default gateway config = %+v", c.Gateway)
	}
}

func TestGatewayConfigErrors(t *testing.T) {
	line := "\n[[child]]\nname = \"s\"\nadapter = \"line\"\nport = \"/dev/ttyS0\"\n"
	modbus := "\n[[child]]\nname = \"m\"\nadapter = \"modbus\"\nport = \"/dev/ttyS1\"\n"
	reg := "\n[[child.register]]\nname = \"r\"\ntable = \"holding\"\naddress = 1\n"
	many := ""
	for i := range MaxChildren + 1 {
		many += strings.Replace(line, `"s"`, `"s`+string(rune('a'+i))+`"`, 1)
	}
	cases := []struct {
		name, data string
		want       []string
	}{
		{"no name", "\n[[child]]\nadapter = \"line\"\nport = \"/dev/ttyS0\"\n", []string{"test.toml:7: child[0].name: missing"}},
		{"duplicate name", line + line, []string{"child[1].name: used by two children"}},
		{"bad thing name", strings.Replace(line, `"s"`, `"a b"`, 1), []string{"test.toml:8: child[0].name", `character ' '`}},
		{"no port", "\n[[child]]\nname = \"s\"\nadapter = \"line\"\n", []string{"child[0].port: missing", "/dev/ttyUSB0"}},
		{"port and usb", line + "usb = \"0403:6001\"\n", []string{"child[0].port: set port or usb, not both"}},
		{"relative port", strings.Replace(line, "/dev/ttyS0", "ttyS0", 1), []string{"test.toml:10: child[0].port", "not an absolute path"}},
		{"bad parity", line + "parity = \"maybe\"\n", []string{"test.toml:11: child[0].parity"}},
		{"bad stop bits", line + "stop_bits = \"3\"\n", []string{"child[0].stop_bits"}},
		{"1.5 stop bits", line + "stop_bits = \"1.5\"\n", []string{"child[0].stop_bits: 1.5 stop bits cannot be set on Linux"}},
		{"bad data bits", line + "data_bits = 9\n", []string{"child[0].data_bits"}},
		{"fast poll", line + "poll_interval = \"10ms\"\n", []string{"test.toml:11: child[0].poll_interval", "between 1s and 24h"}},
		{"report before poll", line + "poll_interval = \"10s\"\nreport_interval = \"5s\"\n", []string{"test.toml:12: child[0].report_interval: 5s is not between poll_interval (10s) and 24h"}},
		{"no adapter", "\n[[child]]\nname = \"s\"\nport = \"/dev/ttyS0\"\n", []string{"child[0].adapter: missing (line or modbus)"}},
		{"bad adapter", strings.Replace(line, `"line"`, `"can"`, 1), []string{"test.toml:9: child[0].adapter", `"can" is not line or modbus`}},
		{"line with registers", line + reg, []string{"child[0].adapter: line sensors take no"}},
		{"modbus without registers", modbus, []string{"child[0].register: a Modbus child needs at least one"}},
		{"modbus unit id", modbus + "unit_id = 0\n" + reg, []string{"test.toml:11: child[0].unit_id: 0 is not between 1 and 247"}},
		{"modbus stale", modbus + "stale_after = \"5s\"\n" + reg, []string{"child[0].adapter: Modbus devices take no stale_after"}},
		{"register reserved name", modbus + strings.Replace(reg, `"r"`, `"connected"`, 1), []string{"test.toml:13: child[0].register[0].name", "reserved"}},
		{"register dup name", modbus + reg + reg, []string{"child[0].register[1].name: used by two registers"}},
		{"register no address", modbus + "\n[[child.register]]\nname = \"r\"\ntable = \"input\"\n", []string{"child[0].register[0].address: missing"}},
		{"register bad table", modbus + strings.Replace(reg, `"holding"`, `"coil"`, 1), []string{"test.toml:14: child[0].register[0].table"}},
		{"writable input", modbus + strings.Replace(reg, `"holding"`, `"input"`, 1) + "writable = true\n", []string{"register[0].writable: input registers are read-only"}},
		{"register bad type", modbus + reg + "type = \"float64\"\n", []string{"test.toml:16: child[0].register[0].type"}},
		{"word order on 16 bits", modbus + reg + "word_order = \"little\"\n", []string{"register[0].word_order: only 32-bit"}},
		{"zero scale", modbus + reg + "scale = 0.0\n", []string{"register[0].scale: must be a non-zero number"}},
		{"min on read-only", modbus + reg + "min = 1.0\n", []string{"register[0].min: min and max bound writes"}},
		{"min above max", modbus + reg + "writable = true\nmin = 5.0\nmax = 1.0\n", []string{"register[0].min: 5 is greater than max 1"}},
		{"bad usb", strings.Replace(line, `port = "/dev/ttyS0"`, `usb = "0403"`, 1), []string{"child[0].usb"}},
		{"overlapping registers", modbus + reg + "type = \"uint32\"\n" + strings.Replace(strings.Replace(reg, `"r"`, `"r2"`, 1), "address = 1", "address = 2", 1),
			[]string{"child[0].register", "overlap"}},
		{"too many", many, []string{"child: 26 children configured, at most 25"}},
		{"unknown child key", line + "speed = 9600\n", []string{"test.toml:11: child.speed: unknown key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(base+c.data))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
