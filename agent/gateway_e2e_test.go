package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/hal/modbus/modbustest"
	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/simtest"
)

// lineSensor is a JSON-line sensor on a pseudo-terminal whose terminal side
// is linked at a fixed path, so that it can be unplugged (PTY closed, link
// removed) and plugged back (a new PTY, the same link).
type lineSensor struct {
	t    *testing.T
	link string

	mu    sync.Mutex
	pty   *modbustest.PTY
	stop  chan struct{}
	done  chan struct{}
	plugs int
}

func newLineSensor(t *testing.T, link string) *lineSensor {
	s := &lineSensor{t: t, link: link}
	s.plug()
	t.Cleanup(s.unplug)
	return s
}

// plug opens a new PTY, links it and starts sending a reading every 100 ms
// (with the number of times it was plugged in) with a garbage line every
// fifth.
func (s *lineSensor) plug() {
	s.t.Helper()
	p, err := modbustest.OpenPTY()
	if err != nil {
		s.t.Fatal(err)
	}
	p.Port.Close() // thingd opens the terminal side itself
	tmp := s.link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(p.Path, tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, s.link); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.plugs++
	s.pty, s.stop, s.done = p, make(chan struct{}), make(chan struct{})
	stop, done, plugs := s.stop, s.done, s.plugs
	s.mu.Unlock()
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			line := fmt.Sprintf(`{"temperature": %.1f, "humidity": 40, "plug": %d}`+"\n", 20+float64(i%10)*0.5, plugs)
			if i%5 == 4 {
				line = "#$%garbage{{\n"
			}
			_ = p.Device.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = p.Device.Write([]byte(line))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
}

// unplug stops the sensor, closes its PTY and removes the link.
func (s *lineSensor) unplug() {
	s.mu.Lock()
	p, stop, done := s.pty, s.stop, s.done
	s.pty = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	close(stop)
	<-done
	p.Close()
	os.Remove(s.link)
}

// TestGatewayEndToEnd: thingd (process, SoftHSM key) as gateway gw-1 with
// two serial children on real pseudo-terminals — a JSON-line sensor and a
// Modbus RTU device — reports each in its own thing's shadow through its
// own session; garbage lines are counted, not fatal; a desired setpoint is
// written to the Modbus device's holding register and reported back; an
// out-of-range one is rejected and reported; the sensor unplugged is
// reported disconnected while the Modbus device stays connected, and is
// back after replug; the gateway's own shadow has its system facts and
// the children's state.
func TestGatewayEndToEnd(t *testing.T) {
	s := simtest.StartWith(t, sim.Options{Dir: t.TempDir(), DefaultPolicy: policy.GatewayPolicyName})
	dir := t.TempDir()
	sensor := newLineSensor(t, filepath.Join(dir, "ttySENSOR"))

	slave := modbustest.NewSlave(3)
	slave.SetInput(0, 2305)              // voltage, 0.1 V
	slave.SetHolding(10, 0xFFFF, 0xFF9C) // int32 -100 (big word order): setpoint in 0.1 °C
	mb, err := modbustest.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	// mb.Port stays open: with no terminal side open at all, the master
	// side reads fail and the slave would stop serving.
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = slave.Serve(ctx, mb.Device) }()
	t.Cleanup(func() { cancel(); mb.Close(); <-served })
	meterLink := filepath.Join(dir, "ttyMETER")
	if err := os.Symlink(mb.Path, meterLink); err != nil {
		t.Fatal(err)
	}

	a, _ := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, "", fmt.Sprintf(`
[[child]]
name = "sensor"
adapter = "line"
port = %q
poll_interval = "1s"
stale_after = "2s"

[[child]]
name = "meter"
adapter = "modbus"
port = %q
baud = 19200
unit_id = 3
poll_interval = "1s"
timeout = "300ms"

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
scale = 0.1
writable = true
min = -20.0
max = 40.0
`, sensor.link, meterLink))
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)

	// The sensor's readings arrive in gw-1-sensor's shadow.
	rep := s.WaitReported(t, "gw-1-sensor", "", 20*time.Second, func(r map[string]any) bool {
		v, _ := r["temperature"].(float64)
		return r["connected"] == true && v >= 20 && v < 25 && r["humidity"] == 40.0 && r["plug"] == 1.0
	})
	if path(rep, "device", "gateway") != "gw-1" || path(rep, "device", "adapter") != "line" || rep["lastSeen"] == nil {
		t.Errorf("gw-1-sensor reported = %v", rep)
	}
	s.WaitReported(t, "gw-1-sensor", "", 20*time.Second, func(r map[string]any) bool {
		m, _ := path(r, "device", "malformed").(float64)
		return m >= 1 && r["connected"] == true
	})

	// The Modbus device's registers, scaled.
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool {
		return r["connected"] == true && r["voltage"] == 230.5 && r["setpoint"] == -10.0
	})

	// Desired setpoint: written to the holding registers, reported back,
	// no delta left.
	s.UpdateDesired(t, "gw-1-meter", "", `{"setpoint": 21.5}`)
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool {
		return r["setpoint"] == 21.5 && path(r, "device", "writes", "setpoint", "result") == "applied"
	})
	if got := slave.Holding(10, 2); got[0] != 0 || got[1] != 215 {
		t.Errorf("holding registers 10-11 = %v, want [0 215]", got)
	}
	waitFor(t, 10*time.Second, "no delta on gw-1-meter", func() bool {
		doc, _ := s.GetShadow(t, "gw-1-meter", "")
		return len(doc.State.Delta) == 0
	})
	// Out of range, and a read-only register: rejected, reported, not written.
	s.UpdateDesired(t, "gw-1-meter", "", `{"setpoint": 99, "voltage": 1}`)
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool {
		return path(r, "device", "writes", "setpoint", "result") == "rejected" &&
			path(r, "device", "writes", "voltage", "result") == "rejected"
	})
	if got := slave.Holding(10, 2); got[1] != 215 {
		t.Errorf("a rejected value reached the device: %v", got)
	}

	// The gateway's own shadow: system facts and children.
	host, _ := os.Hostname()
	s.WaitReported(t, "gw-1", "", 20*time.Second, func(r map[string]any) bool {
		return path(r, "system", "hostname") == host && path(r, "system", "memTotalBytes") != nil &&
			path(r, "children", "sensor", "connected") == true && path(r, "children", "meter", "thing") == "gw-1-meter"
	})

	// Unplug the sensor: disconnected, last readings kept; the meter and
	// the gateway carry on.
	sensor.unplug()
	rep = s.WaitReported(t, "gw-1-sensor", "", 20*time.Second, func(r map[string]any) bool { return r["connected"] == false })
	if rep["temperature"] == nil || path(rep, "device", "error") == nil {
		t.Errorf("unplugged sensor lost its readings or error: %v", rep)
	}
	s.WaitReported(t, "gw-1", "", 20*time.Second, func(r map[string]any) bool {
		return path(r, "children", "sensor", "connected") == false && path(r, "children", "meter", "connected") == true
	})
	slave.SetInput(0, 2290)
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool {
		return r["connected"] == true && r["voltage"] == 229.0
	})

	// Plug it back: the port is reopened, readings flow again.
	sensor.plug()
	s.WaitReported(t, "gw-1-sensor", "", 40*time.Second, func(r map[string]any) bool {
		return r["connected"] == true && r["plug"] == 2.0
	})

	// A Modbus device that stops answering: disconnected, then back.
	slave.InjectFault(modbustest.FaultSilent, 1000)
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool { return r["connected"] == false })
	slave.InjectFault(modbustest.FaultNone, 0)
	s.WaitReported(t, "gw-1-meter", "", 20*time.Second, func(r map[string]any) bool { return r["connected"] == true })

	// thingd kept one MQTT connection throughout.
	if n := countLines(p.stderr.String(), "mqtt connected"); n != 1 {
		t.Errorf("thingd connected %d times", n)
	}
}
