package config

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/good.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.ThingName != "gw-1" || c.Host != "127.0.0.1" || c.Port != 8883 || c.LogLevel != slog.LevelDebug {
		t.Fatalf("unexpected config: %+v", c)
	}
	want := Backoff{Base: 2 * time.Second, Cap: time.Minute, ResetAfter: DefaultBackoffResetAfter}
	if c.Backoff != want {
		t.Fatalf("backoff = %+v, want %+v", c.Backoff, want)
	}
	if c.Key.Attr("object") != "device" {
		t.Fatalf("key URI not parsed: %v", c.Key)
	}
}

const base = `thing_name = "gw-1"
endpoint = "127.0.0.1:8883"
server_ca = "testdata/ca.pem"
key = "file:/var/lib/thingd/key.pem"
certificate = "/var/lib/thingd/cert.pem"
`

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, data string
		want       []string
	}{
		{"unknown key", base + "thing_nme = \"x\"\n", []string{"config test.toml:6: thing_nme: unknown key"}},
		{"unknown nested key", base + "[backoff]\nbase = \"1s\"\njitter = true\n", []string{"test.toml:8: backoff.jitter: unknown key"}},
		{"bad duration", base + "[backoff]\nbase = \"soon\"\n", []string{"test.toml:7", `"soon" is not a duration`}},
		{"syntax", base + "endpoint = \n", []string{"config test.toml:6"}},
		{"missing thing", strings.Replace(base, `thing_name = "gw-1"`, "", 1), []string{"thing_name: missing"}},
		{"dollar thing", strings.Replace(base, `"gw-1"`, `"$gw"`, 1), []string{"test.toml:1: thing_name", `character '$'`}},
		{"long thing", strings.Replace(base, `"gw-1"`, `"`+strings.Repeat("a", 129)+`"`, 1), []string{"129 bytes"}},
		{"bad endpoint", strings.Replace(base, `"127.0.0.1:8883"`, `"localhost"`, 1), []string{"test.toml:2: endpoint", "not host:port"}},
		{"bad port", strings.Replace(base, `:8883"`, `:99999"`, 1), []string{"endpoint: port"}},
		{"missing ca", strings.Replace(base, "testdata/ca.pem", "testdata/nope.pem", 1), []string{"server_ca", "no such file"}},
		{"not a ca", strings.Replace(base, "testdata/ca.pem", "testdata/good.toml", 1), []string{"server_ca", "no PEM certificate"}},
		{"bad key", strings.Replace(base, "file:/var", "pkcs11:tokn=a?module-path=/x.so&pin-value=SECRET", 1), []string{"test.toml:4: key", `"tokn"`}},
		{"relative cert", strings.Replace(base, `"/var/lib/thingd/cert.pem"`, `"cert.pem"`, 1), []string{"certificate", "not an absolute path"}},
		{"bad level", base + "log_level = \"loud\"\n", []string{"log_level", `"loud"`}},
		{"cap below base", base + "[backoff]\nbase = \"10s\"\ncap = \"1s\"\n", []string{"backoff.cap"}},
		{"relative state", base + "state_dir = \"state\"\n", []string{"state_dir"}},
		{"two errors", strings.Replace(base, `"gw-1"`, `""`, 1) + "log_level = \"x\"\n", []string{"thing_name", "log_level"}},
		{"key_b other scheme", base + "[rotation]\nkey_b = \"tpm:handle=0x81000101\"\n", []string{"rotation.key_b", "same module"}},
		{"key_b same key", base + "[rotation]\nkey_b = \"file:/var/lib/thingd/key.pem\"\n", []string{"rotation.key_b", "different object"}},
		{"verify timeout", base + "[rotation]\nverify_timeout = \"10ms\"\n", []string{"rotation.verify_timeout", "between 1s and 1h"}},
		{"device ca", base + "[rotation]\ndevice_ca = \"testdata/nope.pem\"\n", []string{"rotation.device_ca"}},
		{"fraction", base + "[renewal]\nfraction = 1.5\n", []string{"renewal.fraction"}},
		{"renewal unknown", base + "[renewal]\nwhen = \"now\"\n", []string{"renewal.when: unknown key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(c.data))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", c.data)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error shows the PIN: %v", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/absent.toml")
	if err == nil || !strings.Contains(err.Error(), "testdata/absent.toml") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	good, _ := os.ReadFile("testdata/good.toml")
	f.Add(good)
	f.Add([]byte(base))
	f.Add([]byte("[backoff]\nbase = 1\n"))
	f.Add([]byte(base + gatewayChildren))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil && (c.ThingName == "" || c.Key == nil || c.ServerCAs == nil || c.Backoff.Base <= 0) {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		if err != nil {
			return
		}
		for _, ch := range c.Gateway.Children {
			if ch.PollInterval < time.Second || (ch.Serial.Path == "") == (ch.Serial.USB == "") ||
				(ch.Adapter == AdapterModbus && len(ch.Registers) == 0) {
				t.Fatalf("accepted an invalid child: %+v", ch)
			}
		}
	})
}

// TestExampleConfig keeps agent/deploy/config.example.toml valid.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../deploy/config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "/etc/thingd/AmazonRootCA1.pem", "testdata/ca.pem", 1))
	c, err := Parse("config.example.toml", data)
	if err != nil {
		t.Fatalf("example config does not validate: %v", err)
	}
	if c.Port != 8883 || c.Key.Scheme != "pkcs11" || c.Backoff.Cap != 2*time.Minute {
		t.Fatalf("example config: %+v", c)
	}

	// The commented-out [[child]] examples are valid once uncommented.
	var lines []string
	inGateway := false
	for _, l := range strings.Split(string(data), "\n") {
		inGateway = inGateway || strings.HasPrefix(l, "[gateway]")
		if inGateway && strings.HasPrefix(l, "# ") {
			rest := strings.TrimPrefix(l, "# ")
			if k, _, ok := strings.Cut(rest, " = "); strings.HasPrefix(rest, "[[child") || ok && strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") == "" {
				l = rest
			}
		}
		lines = append(lines, l)
	}
	c, err = Parse("config.example.toml (children uncommented)", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("example children do not validate: %v", err)
	}
	if n := len(c.Gateway.Children); n != 2 || c.Gateway.Children[1].Registers[1].Name != "setpoint" {
		t.Fatalf("example children: %+v", c.Gateway.Children)
	}
}
