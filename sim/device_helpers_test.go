package sim_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/simtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// received is a message a test client got.
type received struct {
	topic   string
	payload []byte
}

// inbox collects every message a client receives, whether it subscribed
// to the topic or not (paho's default publish handler).
type inbox struct {
	mu     sync.Mutex
	msgs   []received
	notify chan struct{}
}

func (in *inbox) add(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, received{m.Topic(), m.Payload()})
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// take removes and returns the first message matching match, waiting up to
// timeout; ok is false if none came.
func (in *inbox) take(match func(received) bool, timeout time.Duration) (received, bool) {
	deadline := time.After(timeout)
	for {
		in.mu.Lock()
		for i, m := range in.msgs {
			if match(m) {
				in.msgs = append(in.msgs[:i:i], in.msgs[i+1:]...)
				in.mu.Unlock()
				return m, true
			}
		}
		in.mu.Unlock()
		select {
		case <-in.notify:
		case <-deadline:
			return received{}, false
		}
	}
}

// device is a connected thing with an inbox.
type device struct {
	*conn
	name    string
	in      *inbox
	barrier atomic.Int64
}

// dialDevice connects as d; the client subscribes to its barrier topic only.
func dialDevice(t *testing.T, s *simtest.Sim, d simtest.Device) *device {
	t.Helper()
	in := &inbox{notify: make(chan struct{}, 1)}
	c, err := dial(t, s, d.Name, &d.TLSCertificate, func(o *paho.ClientOptions) {
		o.SetDefaultPublishHandler(in.add).SetOrderMatters(true) // handlers in arrival order
	})
	if err != nil {
		t.Fatalf("connect as %s: %v", d.Name, err)
	}
	dev := &device{conn: c, name: d.Name, in: in}
	wait(t, c.Subscribe(d.Name+"/barrier", 1, in.add), "subscribe to the barrier topic")
	return dev
}

// publish publishes payload (a string, []byte or a value to encode as JSON)
// at QoS 1.
func (d *device) publish(t *testing.T, topic string, payload any) {
	t.Helper()
	var data []byte
	switch p := payload.(type) {
	case string:
		data = []byte(p)
	case []byte:
		data = p
	default:
		var err error
		if data, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, d.Publish(topic, 1, false, data), "publish to "+topic)
}

// request publishes to topic and returns the reply on topic/accepted or
// topic/rejected: the suffix ("accepted" or "rejected") and the payload.
func (d *device) request(t *testing.T, topic string, payload any) (string, []byte) {
	t.Helper()
	d.publish(t, topic, payload)
	m, ok := d.in.take(func(m received) bool {
		return m.topic == topic+"/accepted" || m.topic == topic+"/rejected"
	}, 5*time.Second)
	if !ok {
		t.Fatalf("no reply to %s", topic)
	}
	return m.topic[len(topic)+1:], m.payload
}

// requestJSON is request with the reply decoded into a map.
func (d *device) requestJSON(t *testing.T, topic string, payload any) (string, map[string]any) {
	t.Helper()
	suffix, data := d.request(t, topic, payload)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("reply on %s/%s is not a JSON object: %v: %s", topic, suffix, err, data)
	}
	return suffix, out
}

// flush waits until everything the broker queued for the device before now
// has arrived, and returns (and removes) what is in the inbox, in order.
// It publishes to the device's barrier topic, whose delivery goes through
// the same outbound queue as notifications.
func (d *device) flush(t *testing.T) []received {
	t.Helper()
	marker := strconv.FormatInt(d.barrier.Add(1), 10)
	d.publish(t, d.name+"/barrier", marker)
	if _, ok := d.in.take(func(m received) bool { return m.topic == d.name+"/barrier" && string(m.payload) == marker }, 5*time.Second); !ok {
		t.Fatal("barrier message did not come back")
	}
	d.in.mu.Lock()
	defer d.in.mu.Unlock()
	out := d.in.msgs
	d.in.msgs = nil
	return out
}

// frozenClock is a clock standing still at a whole second, movable by
// tests.
type frozenClock struct{ ns atomic.Int64 }

func newFrozenClock() *frozenClock {
	c := &frozenClock{}
	c.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *frozenClock) Now() time.Time                  { return time.Unix(0, c.ns.Load()) }
func (c *frozenClock) Add(d time.Duration)             { c.ns.Add(int64(d)) }
func (c *frozenClock) epoch() string                   { return strconv.FormatInt(c.Now().Unix(), 10) }
func (c *frozenClock) options() sim.Options            { return sim.Options{Now: c.Now} }
func (c *frozenClock) start(t *testing.T) *simtest.Sim { return simtest.StartWith(t, c.options()) }

// transcript accumulates a golden record of MQTT messages with timestamps
// and random values replaced by placeholders.
type transcript struct {
	b            strings.Builder
	placeholders []string // actual, placeholder pairs
}

func (tr *transcript) replace(actual, placeholder string) {
	tr.placeholders = append(tr.placeholders, actual, placeholder)
}

func (tr *transcript) note(format string, args ...any) {
	fmt.Fprintf(&tr.b, "# "+format+"\n", args...)
}

func (tr *transcript) message(topic string, payload []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, payload, "", "  ") != nil {
		buf.Reset()
		buf.Write(payload)
	}
	fmt.Fprintf(&tr.b, "%s\n%s\n\n", topic, buf.String())
}

// check compares the transcript with testdata/name.golden (-update rewrites it).
func (tr *transcript) check(t *testing.T, name string) {
	t.Helper()
	got := tr.b.String()
	for i := 0; i < len(tr.placeholders); i += 2 {
		got = strings.ReplaceAll(got, tr.placeholders[i], tr.placeholders[i+1])
	}
	simtest.Golden(t, filepath.Join("testdata", name+".golden"), got, *update)
}
