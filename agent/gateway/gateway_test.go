package gateway_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/thingd/thingd/agent/gateway"
	"github.com/thingd/thingd/agent/mqttconn"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/simtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAdapter is a device whose readings and answers the test sets.
type fakeAdapter struct {
	mu       sync.Mutex
	readings hal.Readings
	down     bool
	writable map[string]bool
	writes   []string
	polls    int
}

func (a *fakeAdapter) Poll(ctx context.Context) (hal.Readings, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.polls++
	if a.down {
		return nil, fmt.Errorf("fake: %w", hal.ErrNoResponse)
	}
	out := hal.Readings{}
	for k, v := range a.readings {
		out[k] = v
	}
	return out, nil
}

func (a *fakeAdapter) Write(ctx context.Context, name string, value any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes = append(a.writes, fmt.Sprintf("%s=%v", name, value))
	if a.down {
		return fmt.Errorf("fake: %w", hal.ErrNoResponse)
	}
	if !a.writable[name] {
		return fmt.Errorf("fake: %s: %w", name, hal.ErrReadOnly)
	}
	f, ok := value.(float64)
	if !ok || f > 100 {
		return fmt.Errorf("fake: %s=%v: %w", name, value, hal.ErrInvalidValue)
	}
	a.readings[name] = f
	return nil
}

func (a *fakeAdapter) Stats() hal.Stats { return hal.Stats{Frames: 1} }

func (a *fakeAdapter) set(f func(a *fakeAdapter)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *fakeAdapter) writeLog() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.writes...)
}

// connect dials thingsim as thing with mqttconn.
func connect(t *testing.T, s *simtest.Sim, dev simtest.Device, onConnect func()) *mqttconn.Conn {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.MQTTAddr())
	p, _ := strconv.Atoi(port)
	cert := dev.TLSCertificate
	c := mqttconn.New(mqttconn.Options{Host: host, Port: p, ClientID: dev.Name, RootCAs: s.CAPool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		Backoff:              mqttconn.Backoff{Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond, ResetAfter: time.Second},
		OnConnect:            onConnect, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func startGateway(t *testing.T, s *simtest.Sim, children []gateway.Child) (*gateway.Gateway, *changeCounter) {
	t.Helper()
	dev := s.NewPolicyDevice(t, "gw", policy.GatewayPolicyName)
	changes := &changeCounter{}
	var g *gateway.Gateway
	created := make(chan struct{})
	conn := connect(t, s, dev, func() {
		<-created // OnConnect may run before New returns
		g.Connected()
	})
	g = gateway.New(conn, children, gateway.Options{Gateway: "gw", RequestTimeout: 5 * time.Second, OnChange: changes.inc})
	close(created)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return g, changes
}

type changeCounter struct {
	mu sync.Mutex
	n  int
}

func (c *changeCounter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *changeCounter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func TestGatewayReportsChildren(t *testing.T) {
	s := simtest.Start(t)
	temp := &fakeAdapter{readings: hal.Readings{"temp": 21.5, "connected": "spoofed"}}
	meter := &fakeAdapter{readings: hal.Readings{"volts": 230.0, "setpoint": 20.0}, writable: map[string]bool{"setpoint": true}}
	g, changes := startGateway(t, s, []gateway.Child{
		{Name: "temp", Thing: "gw-temp", AdapterKind: "line", Port: "/dev/ttyACM0", Adapter: temp, PollInterval: 100 * time.Millisecond},
		{Name: "meter", Thing: "gw-meter", AdapterKind: "modbus", Port: "/dev/ttyUSB0", Adapter: meter, PollInterval: 100 * time.Millisecond},
	})

	r := s.WaitReported(t, "gw-temp", "", 10*time.Second, func(r map[string]any) bool { return r["temp"] == 21.5 })
	dev, _ := r["device"].(map[string]any)
	if r["connected"] != true || r["lastSeen"] == nil || dev["gateway"] != "gw" || dev["adapter"] != "line" || dev["port"] != "/dev/ttyACM0" {
		t.Errorf("gw-temp reported = %v", r)
	}
	s.WaitReported(t, "gw-meter", "", 10*time.Second, func(r map[string]any) bool { return r["volts"] == 230.0 && r["connected"] == true })

	// Desired setpoint is written to the device and reported back; the
	// delta goes away.
	s.UpdateDesired(t, "gw-meter", "", `{"setpoint": 22.5}`)
	s.WaitReported(t, "gw-meter", "", 10*time.Second, func(r map[string]any) bool {
		w, _ := r["device"].(map[string]any)["writes"].(map[string]any)
		sp, _ := w["setpoint"].(map[string]any)
		return r["setpoint"] == 22.5 && sp["result"] == "applied"
	})
	waitFor(t, 10*time.Second, "no delta left on gw-meter", func() bool {
		doc, _ := s.GetShadow(t, "gw-meter", "")
		return len(doc.State.Delta) == 0
	})

	// A value the device refuses is reported as rejected and not retried
	// at every report (the service sends a delta after each one).
	s.UpdateDesired(t, "gw-meter", "", `{"volts": 1}`)
	s.WaitReported(t, "gw-meter", "", 10*time.Second, func(r map[string]any) bool {
		w, _ := r["device"].(map[string]any)["writes"].(map[string]any)
		v, _ := w["volts"].(map[string]any)
		return v["result"] == "rejected" && v["error"] != nil
	})
	time.Sleep(time.Second) // about ten polls and reports
	n := 0
	for _, w := range meter.writeLog() {
		if w == "volts=1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the refused value was written %d times, want once: %v", n, meter.writeLog())
	}
	// Setting it again (a new desired timestamp) is a new attempt.
	s.UpdateDesired(t, "gw-meter", "", `{"volts": 1}`)
	waitFor(t, 10*time.Second, "second attempt", func() bool {
		n := 0
		for _, w := range meter.writeLog() {
			if w == "volts=1" {
				n++
			}
		}
		return n == 2
	})

	// A child that stops answering is disconnected; the other is not.
	before := changes.get()
	temp.set(func(a *fakeAdapter) { a.down = true })
	r = s.WaitReported(t, "gw-temp", "", 10*time.Second, func(r map[string]any) bool { return r["connected"] == false })
	if r["temp"] != 21.5 || r["device"].(map[string]any)["error"] == nil {
		t.Errorf("disconnected child lost its last readings or error: %v", r)
	}
	if st := g.Summary(); st["temp"].Connected || !st["meter"].Connected || st["temp"].Error == "" {
		t.Errorf("summary = %+v", st)
	}
	if changes.get() <= before {
		t.Error("OnChange was not called when a child went away")
	}
	// A write while the device is away fails and is retried when it is back.
	s.UpdateDesired(t, "gw-temp", "", `{"temp": 19}`)
	s.WaitReported(t, "gw-temp", "", 10*time.Second, func(r map[string]any) bool {
		w, _ := r["device"].(map[string]any)["writes"].(map[string]any)
		v, _ := w["temp"].(map[string]any)
		return v["result"] == "failed"
	})
	temp.set(func(a *fakeAdapter) { a.down = false; a.writable = map[string]bool{"temp": true} })
	s.WaitReported(t, "gw-temp", "", 10*time.Second, func(r map[string]any) bool {
		w, _ := r["device"].(map[string]any)["writes"].(map[string]any)
		v, _ := w["temp"].(map[string]any)
		return r["connected"] == true && r["temp"] == 19.0 && v["result"] == "applied"
	})
}

// With a long report interval, changed readings wait; a change of
// connected state and a desired write's outcome (with the value written)
// are reported at once.
func TestGatewayReportInterval(t *testing.T) {
	s := simtest.Start(t)
	dev := &fakeAdapter{readings: hal.Readings{"level": 1.0}, writable: map[string]bool{"level": true}}
	startGateway(t, s, []gateway.Child{{Name: "tank", Thing: "gw-tank", AdapterKind: "modbus", Port: "/dev/ttyUSB0",
		Adapter: dev, PollInterval: 50 * time.Millisecond, ReportInterval: time.Hour}})
	s.WaitReported(t, "gw-tank", "", 10*time.Second, func(r map[string]any) bool { return r["level"] == 1.0 })

	dev.set(func(a *fakeAdapter) { a.readings["level"] = 2.0 })
	waitFor(t, 10*time.Second, "polls", func() bool { dev.mu.Lock(); defer dev.mu.Unlock(); return dev.polls > 20 })
	if doc, _ := s.GetShadow(t, "gw-tank", ""); doc.State.Reported["level"] != 1.0 {
		t.Errorf("a reading change was reported before the report interval: %v", doc.State.Reported)
	}

	s.UpdateDesired(t, "gw-tank", "", `{"level": 3}`)
	s.WaitReported(t, "gw-tank", "", 10*time.Second, func(r map[string]any) bool {
		w, _ := r["device"].(map[string]any)["writes"].(map[string]any)
		v, _ := w["level"].(map[string]any)
		return r["level"] == 3.0 && v["result"] == "applied"
	})

	dev.set(func(a *fakeAdapter) { a.down = true })
	s.WaitReported(t, "gw-tank", "", 10*time.Second, func(r map[string]any) bool { return r["connected"] == false })
}

func TestGatewayChildSummary(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	got := gateway.SummaryReported(map[string]gateway.ChildStatus{
		"a": {Thing: "gw-a", Adapter: "line", Connected: true, LastSeen: now},
		"b": {Thing: "gw-b", Adapter: "modbus", Error: "no response"},
	})
	a := got["a"].(map[string]any)
	b := got["b"].(map[string]any)
	if a["connected"] != true || a["lastSeen"] != "2026-12-03T10:00:00Z" || a["error"] != nil ||
		b["connected"] != false || b["lastSeen"] != nil || b["error"] != "no response" {
		t.Errorf("summary = %v", got)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
