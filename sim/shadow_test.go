package sim_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/simtest"
)

// shadowTopic returns a topic of a thing's shadow: the classic one for name
// "", else the named one; suffix is e.g. "update" or "get/accepted".
func shadowTopic(thing, name, suffix string) string {
	if name == "" {
		return "$aws/things/" + thing + "/shadow/" + suffix
	}
	return "$aws/things/" + thing + "/shadow/name/" + name + "/" + suffix
}

// dialShadowDevice connects as d and subscribes to all of its shadow
// topics: shadow replies go to subscribers only.
func dialShadowDevice(t *testing.T, s *simtest.Sim, d simtest.Device) *device {
	t.Helper()
	dev := dialDevice(t, s, d)
	wait(t, dev.Subscribe("$aws/things/"+d.Name+"/shadow/#", 1, dev.in.add), "subscribe to the shadow topics")
	return dev
}

// shadowStep is a shadow request and the reply it must get.
type shadowStep struct {
	name    string // shadow name, "" for the classic shadow
	op      string // get, update or delete
	payload any
	want    string // accepted or rejected
}

// shadowRun sends steps as dev1 and records each reply and what followed it
// (delta, documents) in tr. tick, if set, moves the clock before a step.
func shadowRun(t *testing.T, d *device, tr *transcript, tick func(), steps ...shadowStep) {
	t.Helper()
	for _, st := range steps {
		if tick != nil {
			tick()
		}
		topic := shadowTopic(d.name, st.name, st.op)
		payload, ok := st.payload.(string)
		if !ok {
			data, err := json.Marshal(st.payload)
			if err != nil {
				t.Fatal(err)
			}
			payload = string(data)
		}
		note := strings.TrimSpace(strings.TrimPrefix(topic, "$aws/things/"+d.name+"/") + " " + payload)
		if len(note) > 120 {
			note = note[:120] + "..."
		}
		tr.note("%s", note)
		suffix, reply := d.request(t, topic, payload)
		if suffix != st.want {
			t.Errorf("%s: %s %s, want %s", note, suffix, reply, st.want)
		}
		tr.message(topic+"/"+suffix, reply)
		for _, m := range d.flush(t) {
			if m.topic != d.name+"/barrier" {
				tr.message(m.topic, m.payload)
			}
		}
	}
}

// A movable clock for metadata timestamps: each tick adds a minute and the
// transcript shows <t0>, <t1>, ...
type ticker struct {
	clock *frozenClock
	tr    *transcript
	n     int
}

func newTicker(clock *frozenClock, tr *transcript) *ticker {
	tr.replace(clock.epoch(), "<t0>")
	return &ticker{clock: clock, tr: tr}
}

func (k *ticker) tick() {
	k.n++
	k.clock.Add(time.Minute)
	k.tr.replace(k.clock.epoch(), "<t"+strconv.Itoa(k.n)+">")
}

// The classic and a named shadow through get, update (merge, delta,
// documents, metadata per leaf, versions) and delete, over MQTT.
func TestShadowDeviceAPI(t *testing.T) {
	clock := newFrozenClock()
	s := clock.start(t)
	d := dialShadowDevice(t, s, s.NewDevice(t, "dev1"))
	tr := &transcript{}
	k := newTicker(clock, tr)

	type obj = map[string]any
	shadowRun(t, d, tr, k.tick,
		shadowStep{"", "get", obj{"clientToken": "g1"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"reported": obj{"config": obj{"interval": 30, "level": "info"}, "uptime": 5}}, "clientToken": "u1"}, "accepted"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"config": obj{"interval": 60}, "colors": []any{"red", "green"}}}, "version": 1, "clientToken": "u2"}, "accepted"},
		shadowStep{"", "get", obj{"clientToken": "g2"}, "accepted"},
		shadowStep{"", "update", obj{"state": obj{"reported": obj{"config": obj{"interval": 60.0}, "uptime": nil}}, "clientToken": "u3"}, "accepted"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"colors": []any{"blue"}}, "reported": obj{"colors": []any{"blue"}}}}, "accepted"},
		shadowStep{"", "get", "", "accepted"},
		shadowStep{"", "update", obj{"state": obj{"desired": nil}, "clientToken": "u4"}, "accepted"},
		shadowStep{"", "delete", obj{"clientToken": "d1"}, "accepted"},
		shadowStep{"", "get", "", "rejected"},
		shadowStep{"", "delete", "", "rejected"},
		shadowStep{"", "update", obj{"state": obj{"reported": obj{"uptime": 1}}, "version": 5}, "accepted"},
		shadowStep{"cfg", "get", "", "rejected"},
		shadowStep{"cfg", "update", obj{"state": obj{"desired": obj{"mode": "eco"}, "reported": obj{"mode": "boost"}}, "clientToken": "n1"}, "accepted"},
		shadowStep{"cfg", "get", "", "accepted"},
		shadowStep{"cfg", "delete", "", "accepted"},
		shadowStep{"", "get", "", "accepted"},
	)
	tr.check(t, "shadow-device-api")

	names, err := s.Client().ListNamedShadowsForThing(t.Context(), "dev1", "", 0)
	if err != nil || len(names.Results) != 0 {
		t.Errorf("named shadows after deleting cfg: %+v, %v", names, err)
	}
}

// Every refusal over MQTT: the AWS codes and messages, with the clientToken.
func TestShadowErrors(t *testing.T) {
	clock := newFrozenClock()
	s := clock.start(t)
	dev := s.NewDevice(t, "dev1")
	// Half of the size limit, set before the device listens: a report of
	// the other half is too much for the merged shadow.
	s.UpdateDesired(t, "dev1", "", `{"half":"`+strings.Repeat("x", 4100)+`"}`)
	d := dialShadowDevice(t, s, dev)
	tr := &transcript{}
	tr.replace(clock.epoch(), "<now>")
	tr.replace(strings.Repeat("x", 4100), "<4100 x>")

	type obj = map[string]any
	deep := obj{"l1": obj{"l2": obj{"l3": obj{"l4": obj{"l5": obj{"l6": 1}}}}}}
	shadowRun(t, d, tr, nil,
		shadowStep{"", "update", obj{"state": obj{"reported": obj{"a": 1}}}, "accepted"},
		shadowStep{"", "update", "{not json", "rejected"},
		shadowStep{"", "update", "", "rejected"},
		shadowStep{"", "update", obj{"clientToken": "e1"}, "rejected"},
		shadowStep{"", "update", obj{"state": "on", "clientToken": "e2"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": 5}, "clientToken": "e3"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"reported": []int{1}}, "clientToken": "e4"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"delta": obj{"a": 2}}, "clientToken": "e5"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"a": 2}}, "version": "1", "clientToken": "e6"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"a": 2}}, "version": -1, "clientToken": "e7"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"a": 2}}, "clientToken": strings.Repeat("t", 65)}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": deep}, "clientToken": "e8"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"a": []any{1, nil}}}, "clientToken": "e9"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"blob": strings.Repeat("x", 8200)}}, "clientToken": "e10"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"reported": obj{"b": strings.Repeat("x", 4100)}}, "clientToken": "e11"}, "rejected"},
		shadowStep{"", "update", obj{"state": obj{"desired": obj{"a": 3}}, "version": 1, "clientToken": "e12"}, "rejected"},
		shadowStep{"", "get", obj{"clientToken": 12}, "rejected"},
		shadowStep{"nope", "get", obj{"clientToken": "e13"}, "rejected"},
		shadowStep{"nope", "delete", obj{"clientToken": "e14"}, "rejected"},
		shadowStep{"bad.name", "update", obj{"state": obj{}, "clientToken": "e15"}, "rejected"},
	)
	tr.check(t, "shadow-errors")

	if _, version := s.GetShadow(t, "dev1", ""); version != 2 {
		t.Errorf("version after the refused updates = %d, want 2", version)
	}
}

// Unlike Jobs replies, shadow replies reach subscribers only (AWS lists the
// reply topics as subscribe topics): a client that did not subscribe gets
// nothing, and every subscribed connection of the thing gets them.
func TestShadowRepliesToSubscribers(t *testing.T) {
	s := simtest.Start(t)
	dev := s.NewDevice(t, "dev1")
	d := dialDevice(t, s, dev)
	d.publish(t, shadowTopic("dev1", "", "update"), `{"state":{"reported":{"a":1}}}`)
	d.publish(t, shadowTopic("dev1", "", "get"), ``)
	for _, m := range d.flush(t) {
		if m.topic != "dev1/barrier" {
			t.Errorf("a client that did not subscribe received %s: %s", m.topic, m.payload)
		}
	}
	if _, version := s.GetShadow(t, "dev1", ""); version != 1 {
		t.Errorf("version = %d, want 1: the update was served all the same", version)
	}

	wait(t, d.Subscribe(shadowTopic("dev1", "", "get/+"), 1, d.in.add), "subscribe to get replies")
	if suffix, reply := d.request(t, shadowTopic("dev1", "", "get"), ``); suffix != "accepted" || !strings.Contains(string(reply), `"version":1`) {
		t.Errorf("get after subscribing: %s %s", suffix, reply)
	}
	for _, m := range d.flush(t) {
		if strings.Contains(m.topic, "/shadow/") {
			t.Errorf("a second copy of a reply: %s", m.topic)
		}
	}
}

// A client may not publish to, subscribe to or receive another thing's
// shadow topics.
func TestShadowOtherThingsTopicsRefused(t *testing.T) {
	s := simtest.Start(t)
	dev1 := dialShadowDevice(t, s, s.NewDevice(t, "dev1"))
	dev2 := dialDevice(t, s, s.NewDevice(t, "dev2"))

	tok := dev2.SubscribeMultiple(map[string]byte{
		shadowTopic("dev1", "", "update/delta"): 1, "$aws/things/+/shadow/update/documents": 1,
		shadowTopic("dev1", "cfg", "get/accepted"): 1, shadowTopic("dev2", "", "update/delta"): 1,
	}, dev2.in.add)
	wait(t, tok, "subscribe")
	want := map[string]byte{
		shadowTopic("dev1", "", "update/delta"): 0x80, "$aws/things/+/shadow/update/documents": 0x80,
		shadowTopic("dev1", "cfg", "get/accepted"): 0x80, shadowTopic("dev2", "", "update/delta"): 1,
	}
	if diff := cmp.Diff(want, tok.(*paho.SubscribeToken).Result()); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	wait(t, dev2.Subscribe("#", 1, dev2.in.add), "subscribe to #")

	if suffix, reply := dev1.request(t, shadowTopic("dev1", "", "update"), `{"state":{"desired":{"a":1}}}`); suffix != "accepted" {
		t.Fatalf("dev1's update: %s %s", suffix, reply)
	}
	s.UpdateDesired(t, "dev1", "", `{"b":2}`)
	dev1.flush(t)
	for _, m := range dev2.flush(t) {
		if strings.Contains(m.topic, "/shadow/") {
			t.Errorf("dev2 received %s: %s", m.topic, m.payload)
		}
	}

	// Publishing to dev1's update topic at QoS 1 costs dev2 its connection
	// and changes nothing.
	dev2.Publish(shadowTopic("dev1", "", "update"), 1, false, `{"state":{"desired":{"a":666}}}`)
	dev2.waitLost(t)
	s.WaitLog(t, "not authorized: reserved topic of another thing", "clientId=dev2")
	if doc, version := s.GetShadow(t, "dev1", ""); version != 2 || doc.State.Desired["a"] != 1.0 {
		t.Errorf("dev1's shadow = %+v (version %d), want it untouched at version 2", doc.State, version)
	}
}

// The cloud side through the admin API and the simtest helpers: a desired
// change reaches the device as a delta, the device reports over MQTT.
func TestShadowAdminAPIAndDevice(t *testing.T) {
	s := simtest.Start(t)
	d := dialShadowDevice(t, s, s.NewDevice(t, "dev1"))
	version := s.UpdateDesired(t, "dev1", "dev1-child", `{"config":{"logLevel":"debug"}}`)
	m, ok := d.in.take(func(m received) bool { return m.topic == shadowTopic("dev1", "dev1-child", "update/delta") }, 5*time.Second)
	if !ok {
		t.Fatal("no delta after UpdateThingShadow")
	}
	var deltaDoc struct {
		State   map[string]any `json:"state"`
		Version int64          `json:"version"`
	}
	if err := json.Unmarshal(m.payload, &deltaDoc); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"config": map[string]any{"logLevel": "debug"}}; !cmp.Equal(deltaDoc.State, want) || deltaDoc.Version != version {
		t.Errorf("delta = %s, want state %v at version %d", m.payload, want, version)
	}

	go func() { // the device reports a little later
		time.Sleep(50 * time.Millisecond)
		d.Publish(shadowTopic("dev1", "dev1-child", "update"), 1, false, `{"state":{"reported":{"config":{"logLevel":"debug"}}}}`)
	}()
	reported := s.WaitReported(t, "dev1", "dev1-child", 5*time.Second, func(r map[string]any) bool { return r["config"] != nil })
	if diff := cmp.Diff(map[string]any{"config": map[string]any{"logLevel": "debug"}}, reported); diff != "" {
		t.Errorf("reported (-want +got):\n%s", diff)
	}
	doc, v := s.GetShadow(t, "dev1", "dev1-child")
	if v != version+1 || doc.State.Delta != nil {
		t.Errorf("shadow after the report: version %d, delta %v; want version %d, no delta", v, doc.State.Delta, version+1)
	}
	if got := s.WaitReported(t, "dev1", "absent", time.Second, func(r map[string]any) bool { return r == nil }); got != nil {
		t.Errorf("WaitReported on a missing shadow = %v", got)
	}
}

// Shadows, deleted ones' versions included, are in the database and survive
// a restart of the simulator.
func TestShadowSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s1 := simtest.StartWith(t, sim.Options{Dir: dir})
	dev := s1.NewDevice(t, "dev1")
	d := dialShadowDevice(t, s1, dev)
	for _, req := range []struct{ name, op, payload string }{
		{"", "update", `{"state":{"desired":{"interval":60},"reported":{"interval":30,"tags":["a","b"]}}}`},
		{"", "update", `{"state":{"reported":{"uptime":5}}}`},
		{"cfg", "update", `{"state":{"reported":{"mode":"eco"}}}`},
		{"old", "update", `{"state":{"reported":{"x":1}}}`},
		{"old", "delete", ``},
	} {
		if suffix, reply := d.request(t, shadowTopic("dev1", req.name, req.op), req.payload); suffix != "accepted" {
			t.Fatalf("%s %s: %s %s", req.name, req.op, suffix, reply)
		}
	}
	before, _ := s1.GetShadow(t, "dev1", "")
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := simtest.StartWith(t, sim.Options{Dir: dir})
	d = dialShadowDevice(t, s2, dev)
	suffix, got := d.requestJSON(t, shadowTopic("dev1", "", "get"), ``)
	if suffix != "accepted" {
		t.Fatalf("get after restart: %s %v", suffix, got)
	}
	want := map[string]any{
		"desired":  map[string]any{"interval": 60.0},
		"reported": map[string]any{"interval": 30.0, "tags": []any{"a", "b"}, "uptime": 5.0},
		"delta":    map[string]any{"interval": 60.0},
	}
	if diff := cmp.Diff(want, got["state"]); diff != "" || got["version"] != 2.0 {
		t.Errorf("after restart: version %v, state (-want +got):\n%s", got["version"], diff)
	}
	if after, _ := s2.GetShadow(t, "dev1", ""); !cmp.Equal(after.Metadata, before.Metadata) {
		t.Errorf("metadata after restart %v, want %v", after.Metadata, before.Metadata)
	}
	if suffix, reply := d.requestJSON(t, shadowTopic("dev1", "", "update"), `{"state":{"reported":{"interval":60}},"version":2}`); suffix != "accepted" || reply["version"] != 3.0 {
		t.Errorf("update after restart: %s %v, want accepted at version 3", suffix, reply)
	}
	if suffix, reply := d.requestJSON(t, shadowTopic("dev1", "old", "update"), `{"state":{"reported":{"x":2}},"version":1}`); suffix != "accepted" || reply["version"] != 2.0 {
		t.Errorf("update of the deleted shadow after restart: %s %v, want accepted at version 2", suffix, reply)
	}
	names, err := s2.Client().ListNamedShadowsForThing(t.Context(), "dev1", "", 0)
	if err != nil || !cmp.Equal(names.Results, []string{"cfg", "old"}) {
		t.Errorf("named shadows after restart: %v, %v", names.Results, err)
	}
}
