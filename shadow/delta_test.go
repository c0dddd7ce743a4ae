package shadow

import (
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
)

// quietUpdate changes a shadow as another client would, but no message
// reaches the device (it was offline, or they were lost).
func (f *fakeService) quietUpdate(shadowName, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handleLocked(Prefix(f.thing, shadowName)+"/update", []byte(body), false)
}

// deltaEnv is what a step of TestDeltas works on.
type deltaEnv struct {
	t      *testing.T
	f      *fakeService
	c      *Client
	shadow string
	topic  func(suffix string) string // a topic of this shadow
	other  func(suffix string) string // the same topic of another shadow of the same thing
}

func (e *deltaEnv) delta(version int, state string) {
	e.f.send(e.topic("/update/delta"), fmt.Sprintf(`{"state":%s,"metadata":{},"version":%d,"timestamp":%d}`, state, version, ts))
}

func (e *deltaEnv) get() {
	if _, err := e.c.Get(e.t.Context()); err != nil {
		e.t.Fatalf("Get: %v", err)
	}
}

func TestDeltas(t *testing.T) {
	type step struct {
		do   func(e *deltaEnv)
		want string // the delta then waiting on Deltas as "version state", or "" for none
	}
	desired := func(v string) string { return `{"state":{"desired":` + v + `},"clientToken":"app"}` }
	reported := func(v string) string { return `{"state":{"reported":` + v + `}}` }
	tests := []struct {
		name        string
		steps       []step
		wantVersion int64
	}{
		{
			// The service sends update/accepted and update/documents of the
			// same version before the delta: they must not make it stale.
			name: "desired changes deliver deltas",
			steps: []step{
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, desired(`{"mode":"eco","level":{"max":3}}`)) }, `1 {"level":{"max":3},"mode":"eco"}`},
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, reported(`{"mode":"eco","level":{"max":2}}`)) }, ``},
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, desired(`{"mode":"off"}`)) }, `3 {"level":{"max":3},"mode":"off"}`},
			},
			wantVersion: 3,
		},
		{
			name: "stale deltas are dropped",
			steps: []step{
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, desired(`{"a":1}`)) }, `1 {"a":1}`},
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, desired(`{"a":2}`)) }, `2 {"a":2}`},
				{func(e *deltaEnv) { e.delta(1, `{"a":1}`) }, ``},
				{func(e *deltaEnv) { e.delta(2, `{"a":2}`) }, ``},
				{func(e *deltaEnv) { e.delta(5, `{"a":5}`) }, `5 {"a":5}`},
			},
			wantVersion: 5,
		},
		{
			name: "out of order: the newer wins",
			steps: []step{
				{func(e *deltaEnv) { e.delta(4, `{"a":4}`); e.delta(3, `{"a":3}`) }, `4 {"a":4}`},
			},
			wantVersion: 4,
		},
		{
			name: "a newer delta replaces an unread one",
			steps: []step{
				{func(e *deltaEnv) {
					e.f.appUpdate(e.shadow, desired(`{"a":1}`))
					e.f.appUpdate(e.shadow, desired(`{"b":2}`))
				}, `2 {"a":1,"b":2}`},
				{func(*deltaEnv) {}, ``},
			},
			wantVersion: 2,
		},
		{
			name: "deltas of another thing or shadow are not this shadow's",
			steps: []step{
				{func(e *deltaEnv) {
					e.f.send(`$aws/things/gw-2/shadow/update/delta`, `{"state":{"a":1},"version":7}`)
					e.f.send(`$aws/things/gw-2/shadow/name/config/update/delta`, `{"state":{"a":1},"version":7}`)
					e.f.send(e.other("/update/delta"), `{"state":{"a":1},"version":7}`)
				}, ``},
			},
		},
		{
			name: "malformed deltas are dropped",
			steps: []step{
				{func(e *deltaEnv) {
					for _, p := range []string{`{"state":"a","version":3}`, `{"state":{"a":1}}`, `{"version":3}`,
						`{"state":null,"version":3}`, `{"state":{},"version":-1}`, `[1]`, `not json`, `{"state":{},"version":1.5}`} {
						e.f.send(e.topic("/update/delta"), p)
					}
				}, ``},
			},
		},
		{
			name: "a get delivers its delta section",
			steps: []step{
				{func(e *deltaEnv) {
					e.f.quietUpdate(e.shadow, reported(`{"a":0}`))
					e.f.quietUpdate(e.shadow, desired(`{"a":1,"b":true}`))
				}, ``},
				{func(e *deltaEnv) { e.get() }, `2 {"a":1,"b":true}`},
				{func(e *deltaEnv) { e.get() }, ``},
				{func(e *deltaEnv) { e.delta(2, `{"a":1,"b":true}`) }, ``},
			},
			wantVersion: 2,
		},
		{
			name: "a get without delta makes older deltas stale",
			steps: []step{
				{func(e *deltaEnv) {
					e.f.quietUpdate(e.shadow, desired(`{"a":1}`))
					e.f.quietUpdate(e.shadow, reported(`{"a":1}`))
				}, ``},
				{func(e *deltaEnv) { e.get() }, ``},
				{func(e *deltaEnv) { e.delta(1, `{"a":1}`) }, ``},
				{func(e *deltaEnv) { e.delta(2, `{"a":1}`) }, ``},
				{func(e *deltaEnv) { e.delta(3, `{"a":3}`) }, `3 {"a":3}`},
			},
			wantVersion: 3,
		},
		{
			name: "versions come from documents and anyone's accepted replies",
			steps: []step{
				{func(e *deltaEnv) { e.f.appUpdate(e.shadow, reported(`{"a":1}`)) }, ``},
				{func(e *deltaEnv) {
					e.f.send(e.topic("/update/documents"), `{"previous":{"version":6},"current":{"version":7}}`)
				}, ``},
				{func(e *deltaEnv) { e.f.send(e.topic("/delete/accepted"), `{"version":6,"clientToken":"app"}`) }, ``},
				{func(e *deltaEnv) { e.f.send(e.topic("/update/documents"), `{"previous":{"version":6}}`) }, ``},
				{func(e *deltaEnv) {
					e.f.send(e.topic("/update/accepted"), `{"state":{},"version":8,"clientToken":"app"}`)
				}, ``},
			},
			wantVersion: 8,
		},
		{
			name: "rejections and other shadows carry no version",
			steps: []step{
				{func(e *deltaEnv) {
					e.f.send(e.topic("/update/rejected"), `{"code":409,"message":"Version conflict","version":50}`)
					e.f.send(e.other("/update/accepted"), `{"state":{},"version":51}`)
					e.f.send(e.other("/update/documents"), `{"current":{"version":52}}`)
					e.f.send(`$aws/things/gw-2/shadow/update/accepted`, `{"state":{},"version":53}`)
				}, ``},
			},
		},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f, c := newClientEnv(t, mode.shadow, mode.subscribed, ClientOptions{})
					other := map[string]string{"": "config", "config": ""}[mode.shadow]
					e := &deltaEnv{t: t, f: f, c: c, shadow: mode.shadow,
						topic: func(s string) string { return Prefix(thing, mode.shadow) + s },
						other: func(s string) string { return Prefix(thing, other) + s },
					}
					for i, s := range tt.steps {
						s.do(e)
						got := ""
						select {
						case d := <-c.Deltas():
							got = fmt.Sprintf("%d %s", d.Version, d.State)
						default:
						}
						if diff := cmp.Diff(s.want, got); diff != "" {
							t.Errorf("step %d: delta mismatch (-want +got):\n%s", i, diff)
						}
					}
					if v := c.Version(); v != tt.wantVersion {
						t.Errorf("Version() = %d, want %d", v, tt.wantVersion)
					}
				})
			})
		}
	}
}

// TestDeltaMessage checks every field of a delta from the service.
func TestDeltaMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := newClientEnv(t, "", true, ClientOptions{})
		f.appUpdate("", `{"state":{"desired":{"mode":"eco"}},"clientToken":"app-7"}`)
		want := Delta{State: []byte(`{"mode":"eco"}`), Metadata: []byte(fmt.Sprintf(`{"mode":{"timestamp":%d}}`, ts)),
			Version: 1, Timestamp: ts, ClientToken: "app-7"}
		select {
		case got := <-c.Deltas():
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("delta mismatch (-want +got):\n%s", diff)
			}
		default:
			t.Fatal("no delta")
		}
	})
}
