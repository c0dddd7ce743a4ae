package shadow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

type reporterEnv struct {
	t      *testing.T
	f      *fakeService
	c      *Client
	r      *Reporter
	shadow string
	stop   func() error // cancels Run and returns what it returned
}

// startReporter runs a Reporter on a fresh fake service until stop is
// called or the test ends. It must be called inside a synctest bubble.
func startReporter(t *testing.T, shadowName string, opts ReporterOptions) *reporterEnv {
	t.Helper()
	f, c := newClientEnv(t, shadowName, true, ClientOptions{})
	opts.Logger = testLogger(t)
	r := NewReporter(c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { stop() })
	return &reporterEnv{t: t, f: f, c: c, r: r, shadow: shadowName, stop: stop}
}

// update is the request a Reporter sends for a reported patch with an
// expected version (0: none), as fakeService.take shows it.
func update(version int64, patch string) string {
	if version == 0 {
		return `update {"state":{"reported":` + patch + `}}`
	}
	return fmt.Sprintf(`update {"state":{"reported":%s},"version":%d}`, patch, version)
}

const get = `get {}`

// obj is shorthand for the maps handed to Set.
type obj = map[string]any

func TestReporter(t *testing.T) {
	type step struct {
		name string
		do   func(e *reporterEnv)
		want []string // the requests that reached the service during the step
	}
	set := func(m obj) func(e *reporterEnv) { return func(e *reporterEnv) { e.r.Set(m) } }
	connect := func(e *reporterEnv) { e.r.Connected() }
	setAndConnect := func(m obj) func(e *reporterEnv) {
		return func(e *reporterEnv) {
			e.r.Set(m)
			e.r.Connected()
		}
	}
	sleep := func(d time.Duration) func(e *reporterEnv) { return func(*reporterEnv) { time.Sleep(d) } }
	full := obj{"fw": "1.2", "net": obj{"ip": "10.0.0.2", "rssi": -60}, "tags": []string{"a", "b"}}
	tests := []struct {
		name       string
		steps      []step
		wantStored string // reported, as the service holds it at the end
	}{
		{
			name: "first report full, then only the changed leaves",
			steps: []step{
				{"set before connecting", set(full), nil},
				{"connect", connect, []string{get, update(0, `{"fw":"1.2","net":{"ip":"10.0.0.2","rssi":-60},"tags":["a","b"]}`)}},
				{"change a nested leaf", set(obj{"fw": "1.2", "net": obj{"ip": "10.0.0.2", "rssi": -55}, "tags": []string{"a", "b"}}),
					[]string{update(1, `{"net":{"rssi":-55}}`)}},
				{"set the same again", set(obj{"fw": "1.2", "net": obj{"ip": "10.0.0.2", "rssi": -55}, "tags": []string{"a", "b"}}), nil},
				{"remove a nested key, shorten an array", set(obj{"fw": "1.2", "net": obj{"rssi": -55}, "tags": []string{"a"}}),
					[]string{update(2, `{"net":{"ip":null},"tags":["a"]}`)}},
				{"remove an object, add a key", set(obj{"fw": "1.2", "tags": []string{"a"}, "uptime": 60}),
					[]string{update(3, `{"net":null,"uptime":60}`)}},
				{"a value JSON cannot encode is ignored", set(obj{"fw": make(chan int)}), nil},
			},
			wantStored: `{"fw":"1.2","tags":["a"],"uptime":60}`,
		},
		{
			name: "numbers compare by value, large integers exactly",
			steps: []step{
				{"the cloud has numbers written differently", func(e *reporterEnv) {
					e.f.appUpdate(e.shadow, `{"state":{"reported":{"n":1.0,"e":1e2}}}`)
				}, nil},
				{"connect", setAndConnect(obj{"n": 1, "e": 100, "big": int64(1<<62 + 1)}), []string{get, update(1, `{"big":4611686018427387905}`)}},
				{"same numbers, other types", set(obj{"n": 1.0, "e": uint8(100), "big": uint64(1<<62 + 1)}), nil},
				{"a large integer one off", set(obj{"n": 1, "e": 100, "big": int64(1<<62 + 2)}), []string{update(2, `{"big":4611686018427387906}`)}},
			},
			wantStored: `{"big":4611686018427387906,"e":1e2,"n":1.0}`,
		},
		{
			name: "only the difference from what the cloud has",
			steps: []step{
				{"someone else wrote the shadow", func(e *reporterEnv) {
					e.f.appUpdate(e.shadow, `{"state":{"desired":{"mode":"eco"},"reported":{"fw":"1.1","old":"x","net":{"rssi":-60}}}}`)
				}, nil},
				{"connect", setAndConnect(obj{"fw": "1.2", "net": obj{"rssi": -60}}), []string{get, update(1, `{"fw":"1.2","old":null}`)}},
			},
			wantStored: `{"fw":"1.2","net":{"rssi":-60}}`,
		},
		{
			name: "nothing before the first Set",
			steps: []step{
				{"connect", connect, nil},
				{"wait", sleep(time.Minute), nil},
				{"set", set(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
			},
			wantStored: `{"a":1}`,
		},
		{
			name: "changes made offline go out as one update on Connected",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1, "b": 1}), []string{get, update(0, `{"a":1,"b":1}`)}},
				{"go offline and change", func(e *reporterEnv) {
					e.f.set(func(f *fakeService) { f.offline = true })
					e.r.Set(obj{"a": 2, "b": 1})
					e.r.Set(obj{"a": 3})
				}, nil},
				{"retries fail", sleep(time.Minute), nil},
				{"change again", set(obj{"a": 4, "c": obj{"d": true}}), nil},
				{"reconnect", func(e *reporterEnv) {
					e.f.set(func(f *fakeService) { f.offline = false })
					e.r.Connected()
				}, []string{get, update(1, `{"a":4,"b":null,"c":{"d":true}}`)}},
			},
			wantStored: `{"a":4,"c":{"d":true}}`,
		},
		{
			name: "a failed update is retried after RetryDelay with the latest value",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"the service fails", func(e *reporterEnv) {
					e.f.rejectNext("update", 500, "Internal service failure")
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`)}},
				{"change while backing off", set(obj{"a": 3}), nil},
				{"not yet", sleep(4 * time.Second), nil},
				{"retry", sleep(time.Second), []string{update(1, `{"a":3}`)}},
			},
			wantStored: `{"a":3}`,
		},
		{
			name: "a throttled update is retried at once on Connected",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"throttled", func(e *reporterEnv) {
					e.f.rejectNext("update", 429, "Too Many Requests")
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`)}},
				{"reconnect", connect, []string{get, update(1, `{"a":2}`)}},
			},
			wantStored: `{"a":2}`,
		},
		{
			name: "an unanswered update is resent; the conflict shows it was applied",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"the reply is lost", func(e *reporterEnv) {
					e.f.set(func(f *fakeService) {
						f.rewrite = func(fakeMsg) []fakeMsg {
							f.rewrite = nil // once; called with f.mu held
							return nil
						}
					})
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`)}},
				{"timeout, then retry", sleep(40 * time.Second), []string{update(1, `{"a":2}`), get}},
				{"next change", set(obj{"a": 3}), []string{update(2, `{"a":3}`)}},
			},
			wantStored: `{"a":3}`,
		},
		{
			name: "a conflict makes it read the shadow and send what differs",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1, "fw": "1.2"}), []string{get, update(0, `{"a":1,"fw":"1.2"}`)}},
				{"someone else changes the shadow", func(e *reporterEnv) {
					e.f.appUpdate(e.shadow, `{"state":{"desired":{"a":5}}}`)
					e.f.appUpdate(e.shadow, `{"state":{"reported":{"fw":"bogus","x":1}}}`)
				}, nil},
				{"change", set(obj{"a": 2, "fw": "1.2"}), []string{update(1, `{"a":2}`), get, update(3, `{"a":2,"fw":"1.2","x":null}`)}},
			},
			wantStored: `{"a":2,"fw":"1.2"}`,
		},
		{
			name: "conflicts that keep coming make it back off",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"four conflicts", func(e *reporterEnv) {
					for range 4 {
						e.f.rejectNext("update", 409, "Version conflict")
					}
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`), get, update(1, `{"a":2}`), get, update(1, `{"a":2}`), get, update(1, `{"a":2}`)}},
				{"retry", sleep(5 * time.Second), []string{get, update(1, `{"a":2}`)}},
			},
			wantStored: `{"a":2}`,
		},
		{
			name: "every reconnect reads the shadow and repairs it",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"reconnect, nothing to repair", connect, []string{get}},
				{"the shadow was deleted", func(e *reporterEnv) {
					e.f.appDelete(e.shadow)
					e.r.Connected()
				}, []string{get, update(0, `{"a":1}`)}},
				{"someone changed reported", func(e *reporterEnv) {
					e.f.appUpdate(e.shadow, `{"state":{"reported":{"a":9}}}`)
					e.r.Connected()
				}, []string{get, update(3, `{"a":1}`)}},
			},
			wantStored: `{"a":1}`,
		},
		{
			name: "changes made while a send is in flight go out together next",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"change during the send", func(e *reporterEnv) {
					e.f.set(func(f *fakeService) {
						f.onRequest = func(string) {
							f.set(func(f *fakeService) { f.onRequest = nil }) // once; called without f.mu, from the reporter's goroutine
							e.r.Set(obj{"a": 2, "b": 1})
							e.r.Set(obj{"a": 3, "b": 1})
						}
					})
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`), update(2, `{"a":3,"b":1}`)}},
			},
			wantStored: `{"a":3,"b":1}`,
		},
		{
			name: "a refused update waits for the next change",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1}), []string{get, update(0, `{"a":1}`)}},
				{"refused", func(e *reporterEnv) {
					e.f.rejectNext("update", 400, "Invalid JSON")
					e.r.Set(obj{"a": 2})
				}, []string{update(1, `{"a":2}`)}},
				{"no retry", sleep(time.Minute), nil},
				{"next change", set(obj{"a": 3}), []string{update(1, `{"a":3}`)}},
			},
			wantStored: `{"a":3}`,
		},
		{
			name: "a state over the limit is not sent",
			steps: []step{
				{"connect", setAndConnect(obj{"blob": strings.Repeat("x", 9000)}), []string{get}},
				{"no retry", sleep(time.Minute), nil},
				{"a smaller state", set(obj{"blob": "x"}), []string{update(0, `{"blob":"x"}`)}},
			},
			wantStored: `{"blob":"x"}`,
		},
		{
			name: "Set(nil) empties the reported section",
			steps: []step{
				{"connect", setAndConnect(obj{"a": 1, "b": obj{"c": 2}}), []string{get, update(0, `{"a":1,"b":{"c":2}}`)}},
				{"nil", set(nil), []string{update(1, `{"a":null,"b":null}`)}},
			},
			wantStored: `{}`,
		},
	}
	for _, shadowName := range []string{"", "config"} {
		for _, tt := range tests {
			t.Run(orDefault(shadowName, "classic")+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					e := startReporter(t, shadowName, ReporterOptions{})
					for _, s := range tt.steps {
						s.do(e)
						synctest.Wait()
						if diff := cmp.Diff(s.want, e.f.take(t), cmpopts.EquateEmpty()); diff != "" {
							t.Errorf("step %q: requests mismatch (-want +got):\n%s", s.name, diff)
						}
					}
					stored, _ := e.f.stored(shadowName)
					if want := `"reported":` + tt.wantStored; !strings.Contains(stored, want) {
						t.Errorf("the service holds %s, want %s", stored, want)
					}
					if err := e.stop(); !errors.Is(err, context.Canceled) {
						t.Errorf("Run = %v, want context.Canceled", err)
					}
				})
			})
		}
	}
}

// TestReporterGetDeliversDelta: the Get after a reconnect hands desired
// changes made while the device was offline to the Client's Deltas.
func TestReporterGetDeliversDelta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := startReporter(t, "", ReporterOptions{})
		e.f.quietUpdate("", `{"state":{"desired":{"interval":30},"reported":{"interval":60}}}`)
		e.r.Set(obj{"interval": 60})
		e.r.Connected()
		synctest.Wait()
		select {
		case d := <-e.c.Deltas():
			if got, want := fmt.Sprintf("%d %s", d.Version, d.State), `1 {"interval":30}`; got != want {
				t.Errorf("delta %s, want %s", got, want)
			}
		default:
			t.Error("no delta after the reconnect")
		}
		if diff := cmp.Diff([]string{get}, e.f.take(t)); diff != "" {
			t.Errorf("requests mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestReporterFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := startReporter(t, "", ReporterOptions{})
		ctx := t.Context()
		if err := e.r.Flush(ctx); err != nil {
			t.Errorf("Flush with nothing set = %v", err)
		}
		e.r.Set(obj{"a": 1})
		if err := e.r.Flush(ctx); err != nil {
			t.Errorf("Flush before Connected = %v", err)
		}
		if diff := cmp.Diff([]string{get, update(0, `{"a":1}`)}, e.f.take(t)); diff != "" {
			t.Errorf("requests mismatch (-want +got):\n%s", diff)
		}
		e.f.set(func(f *fakeService) { f.offline = true })
		e.r.Set(obj{"a": 2})
		if err := e.r.Flush(ctx); !errors.Is(err, errOffline) {
			t.Errorf("Flush while offline = %v, want an error wrapping %v", err, errOffline)
		}
		e.r.Set(obj{"blob": strings.Repeat("x", 9000)})
		want := "shadow: report of gw-1: reported state is 9011 bytes, AWS allows 8192"
		if err := e.r.Flush(ctx); !errors.Is(err, ErrInvalidState) || err.Error() != want {
			t.Errorf("Flush of a large state = %v, want %q", err, want)
		}

		// Without Run, Flush waits for its context.
		e.stop()
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := e.r.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Flush without Run = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestReporterRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := startReporter(t, "", ReporterOptions{})
		synctest.Wait()
		if err := e.r.Run(t.Context()); err == nil || err.Error() != "shadow: Reporter.Run is already running" {
			t.Errorf("a second Run = %v, want it refused", err)
		}
	})
}
