package shadow

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/registry"
)

// published records what the service published.
type published struct {
	mu   sync.Mutex
	msgs []message
}

func (p *published) publish(topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, message{topic, payload})
	return nil
}

// take returns and forgets the messages so far.
func (p *published) take() []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.msgs
	p.msgs = nil
	return out
}

func (p *published) topics() []string {
	var out []string
	for _, m := range p.take() {
		out = append(out, m.topic)
	}
	return out
}

type fixture struct {
	svc *Service
	pub *published
	now time.Time
	dir string
	reg *registry.Registry
}

func newFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	reg, err := registry.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pub: &published{}, now: time.Unix(1700000000, 0), dir: dir, reg: reg}
	f.svc, err = New(Options{Registry: reg, Publish: f.pub.publish, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.svc.Close()
		reg.Close()
	})
	return f
}

// request sends a device request as the broker would and returns the
// topics published in answer.
func (f *fixture) request(clientID, topic, payload string) []string {
	handled := f.svc.HandleRequest(broker.NewRequest(clientID, "cert", topic, []byte(payload), func(string, []byte) {
		panic("shadow replies must go to subscribers, not to Request.Reply")
	}))
	if !handled {
		return []string{"not handled"}
	}
	return f.pub.topics()
}

func (f *fixture) mustUpdate(t *testing.T, thing, name, payload string) map[string]any {
	t.Helper()
	data, err := f.svc.Update(thing, name, []byte(payload))
	if err != nil {
		t.Fatalf("Update(%s, %q, %s): %v", thing, name, payload, err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseTopic(t *testing.T) {
	for _, tt := range []struct {
		topic, thing, name string
		named              bool
		op                 string
		ok                 bool
	}{
		{"$aws/things/dev1/shadow/get", "dev1", "", false, "get", true},
		{"$aws/things/dev1/shadow/update/accepted", "dev1", "", false, "update/accepted", true},
		{"$aws/things/dev1/shadow/name/cfg/delete", "dev1", "cfg", true, "delete", true},
		{"$aws/things/dev1/shadow/name/cfg", "dev1", "cfg", true, "", true},
		{"$aws/things/dev1/shadow/name//get", "dev1", "", true, "get", true},
		{"$aws/things/dev1/shadow", "dev1", "", false, "", true},
		{"$aws/things/dev1/shadow/name", "dev1", "", false, "name", true},
		{"$aws/things/dev1/shadowy/get", "", "", false, "", false},
		{"$aws/things/dev1/jobs/get", "", "", false, "", false},
		{"$aws/things/dev1", "", "", false, "", false},
		{"dev1/shadow/get", "", "", false, "", false},
	} {
		thing, name, named, op, ok := parseTopic(tt.topic)
		if thing != tt.thing || name != tt.name || named != tt.named || op != tt.op || ok != tt.ok {
			t.Errorf("parseTopic(%q) = %q, %q, %v, %q, %v; want %q, %q, %v, %q, %v", tt.topic,
				thing, name, named, op, ok, tt.thing, tt.name, tt.named, tt.op, tt.ok)
		}
	}
}

// Which topics each request answers on.
func TestHandleRequestTopics(t *testing.T) {
	f := newFixture(t, t.TempDir())
	const p = "$aws/things/dev1/shadow"
	for _, tt := range []struct {
		clientID, topic, payload string
		want                     []string
	}{
		{"dev1", p + "/get", ``, []string{p + "/get/rejected"}},
		{"dev1", p + "/update", `{"state":{"reported":{"a":1}}}`, []string{p + "/update/accepted", p + "/update/documents"}},
		{"dev1", p + "/update", `{"state":{"desired":{"a":2}}}`, []string{p + "/update/accepted", p + "/update/delta", p + "/update/documents"}},
		{"dev1", p + "/update", `{"state":{"reported":{"b":2}}}`, []string{p + "/update/accepted", p + "/update/delta", p + "/update/documents"}},
		{"dev1", p + "/update", `{"state":{"reported":{"a":2}}}`, []string{p + "/update/accepted", p + "/update/documents"}},
		{"dev1", p + "/get", `not json: the content of get is ignored`, []string{p + "/get/accepted"}},
		{"dev1", p + "/get", `{"clientToken":7}`, []string{p + "/get/rejected"}},
		{"dev1", p + "/update", `{"state":{},"version":1}`, []string{p + "/update/rejected"}},
		{"dev1", p + "/update/accepted", `{}`, nil},
		{"dev1", p + "/update/delta", `{}`, nil},
		{"dev1", p + "/name/x/get/accepted", `{}`, nil},
		{"dev1", p + "/frobnicate", `{}`, nil},
		{"dev1", p, `{}`, nil},
		{"dev2", p + "/delete", `{}`, nil},
		{"dev1", p + "/name/bad.name/update", `{"state":{}}`, []string{p + "/name/bad.name/update/rejected"}},
		{"dev1", p + "/name/" + strings.Repeat("n", 65) + "/get", ``, []string{p + "/name/" + strings.Repeat("n", 65) + "/get/rejected"}},
		{"dev1", p + "/name/$x/delete", ``, []string{p + "/name/$x/delete/rejected"}},
		{"dev1", p + "/delete", ``, []string{p + "/delete/accepted"}},
		{"dev1", p + "/delete", ``, []string{p + "/delete/rejected"}},
		{"dev1", "$aws/things/dev1/jobs/get", `{}`, []string{"not handled"}},
		{"dev1", "dev1/telemetry", `{}`, []string{"not handled"}},
	} {
		if got := f.request(tt.clientID, tt.topic, tt.payload); !cmp.Equal(got, tt.want) {
			t.Errorf("%s publishes %s %s: published %q, want %q", tt.clientID, tt.topic, tt.payload, got, tt.want)
		}
	}
	if _, err := f.svc.Get("dev1", ""); err == nil {
		t.Error("dev2's delete or a reply-topic publish changed dev1's shadow")
	}
}

// A deleted shadow's version continues for 48 hours, then starts over.
func TestDeletedVersionKept(t *testing.T) {
	f := newFixture(t, t.TempDir())
	up := `{"state":{"reported":{"a":1}}}`
	f.mustUpdate(t, "dev1", "", up)
	f.mustUpdate(t, "dev1", "", up)
	if _, err := f.svc.Delete("dev1", ""); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(DeletedVersionKept - time.Second)
	if _, err := f.svc.Update("dev1", "", []byte(`{"state":{},"version":0}`)); err == nil || err.(*Error).Code != 409 {
		t.Errorf("update of a deleted shadow with version 0: %v, want a version conflict (it is at 2)", err)
	}
	if v := f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":1}},"version":2}`)["version"]; v != 3.0 {
		t.Errorf("version after delete and update within 48 h = %v, want 3", v)
	}
	if _, err := f.svc.Delete("dev1", ""); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(DeletedVersionKept)
	if v := f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":1}},"version":0}`)["version"]; v != 1.0 {
		t.Errorf("version after delete and update 48 h later = %v, want 1", v)
	}
	if _, err := f.svc.Delete("dev1", "other"); err == nil || err.Error() != "shadow: 404 No shadow exists with name: 'other'" {
		t.Errorf("delete of a shadow never created: %v", err)
	}
}

// Shadows, their metadata and deleted shadows' versions are in the
// database; numbers keep their digits.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir)
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"big":12345678901234567890,"f":1.50,"cfg":{"a":[1,{"b":2}]}},"reported":{"timestamp":{"timestamp":1}}}}`)
	f.now = f.now.Add(time.Minute)
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"cfg":{"c":true}}}}`)
	f.mustUpdate(t, "dev1", "gone", `{"state":{"reported":{"a":1}}}`)
	if _, err := f.svc.Delete("dev1", "gone"); err != nil {
		t.Fatal(err)
	}
	f.mustUpdate(t, "dev1", "kept", `{"state":{"reported":{"a":1}}}`)
	before, err := f.svc.Get("dev1", "")
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Close()
	if err := f.reg.Close(); err != nil {
		t.Fatal(err)
	}

	g := newFixture(t, dir)
	g.now = f.now
	after, err := g.svc.Get("dev1", "")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("after reopening:\n%s\nwant\n%s", after, before)
	}
	if !strings.Contains(string(after), `"big":12345678901234567890,`) || !strings.Contains(string(after), `"f":1.50}`) {
		t.Errorf("numbers lost their digits: %s", after)
	}
	names, err := g.svc.ListNamed("dev1")
	if err != nil || !cmp.Equal(names, []string{"kept"}) {
		t.Errorf("ListNamed = %q, %v; want [kept]", names, err)
	}
	if v := g.mustUpdate(t, "dev1", "gone", `{"state":{"reported":{"a":1}}}`)["version"]; v != 2.0 {
		t.Errorf("deleted shadow's next version after reopening = %v, want 2", v)
	}
}

// Concurrent updates are serialized: none is lost, and the messages of each
// version go out in version order.
func TestConcurrentUpdates(t *testing.T) {
	f := newFixture(t, t.TempDir())
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			payload := fmt.Sprintf(`{"state":{"reported":{"k%d":%d}}}`, i, i)
			if _, err := f.svc.Update("dev1", "", []byte(payload)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_, version := f.getVersion(t)
	if version != n {
		t.Errorf("version after %d concurrent updates = %d", n, version)
	}
	var last int64
	for _, m := range f.pub.take() {
		if !strings.HasSuffix(m.topic, "/documents") {
			continue
		}
		var d struct {
			Current struct {
				Version int64          `json:"version"`
				State   map[string]any `json:"state"`
			} `json:"current"`
		}
		if err := json.Unmarshal(m.payload, &d); err != nil {
			t.Fatal(err)
		}
		if d.Current.Version != last+1 {
			t.Errorf("documents for version %d after version %d", d.Current.Version, last)
		}
		last = d.Current.Version
	}
}

func (f *fixture) getVersion(t *testing.T) (map[string]any, int64) {
	t.Helper()
	data, err := f.svc.Get("dev1", "")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		State   map[string]any `json:"state"`
		Version int64          `json:"version"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.State, doc.Version
}

func TestClosed(t *testing.T) {
	f := newFixture(t, t.TempDir())
	f.svc.Close()
	if _, err := f.svc.Update("dev1", "", []byte(`{"state":{}}`)); err != ErrClosed {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if got := f.request("dev1", "$aws/things/dev1/shadow/update", `{"state":{},"clientToken":"c"}`); !cmp.Equal(got, []string{"$aws/things/dev1/shadow/update/rejected"}) {
		t.Errorf("request after Close published %q", got)
	}
}
