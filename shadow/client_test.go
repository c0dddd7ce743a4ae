package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	thing = "gw-1"
	// ts is time.Now().Unix() in a synctest bubble (2000-01-01T00:00:00Z).
	ts = int64(946684800)
)

// newClientEnv returns a fake service and a Client of one of its shadows.
// The fake hands messages that no subscription takes to
// Client.HandleMessage, as the agent does. With subscribed the Client also
// subscribes (Start), and then none of this shadow's messages may be such a
// stray.
func newClientEnv(t *testing.T, shadowName string, subscribed bool, opts ClientOptions) (*fakeService, *Client) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	f := newFakeService(thing)
	c := NewClient(thing, shadowName, f, opts)
	f.unsolicited = func(topic string, payload []byte) { c.HandleMessage(topic, payload) }
	if !subscribed {
		return f, c
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		for _, topic := range f.strayTopics() {
			if tp, err := ParseTopic(topic); err == nil && tp.ThingName == thing && tp.ShadowName == shadowName {
				t.Errorf("%s arrived without a subscription, although the Client subscribed", topic)
			}
		}
	})
	return f, c
}

// modes are the ways a Client is run: classic or named shadow, replies by
// subscription or handed to HandleMessage.
var modes = []struct {
	name       string
	shadow     string
	subscribed bool
}{
	{"classic/unsolicited", "", false},
	{"classic/subscribed", "", true},
	{"named/unsolicited", "config", false},
	{"named/subscribed", "config", true},
}

// ignoreVarying ignores what the random tokens and the metadata make vary.
var ignoreVarying = cmp.Options{
	cmpopts.IgnoreFields(Document{}, "Metadata", "ClientToken"),
	cmpopts.IgnoreFields(ErrorResponse{}, "ClientToken"),
}

func TestClientRequests(t *testing.T) {
	const (
		populated = `{"state":{"desired":{"mode":"eco"},"reported":{"mode":"off","fw":"1.2"}},"clientToken":"app"}`
		big       = `{"state":{"reported":{"blob":"` // + 5000 bytes
	)
	tests := []struct {
		name        string
		setup       func(f *fakeService, shadow string)
		call        func(ctx context.Context, c *Client) (any, error)
		want        any
		wantErr     *ErrorResponse // "NAME" in Message stands for the shadow's name
		wantIs      error
		wantSent    []string
		wantStored  string // the shadow the service holds afterwards
		wantVersion int64
	}{
		{
			name:  "get",
			setup: func(f *fakeService, sh string) { f.appUpdate(sh, populated) },
			call:  func(ctx context.Context, c *Client) (any, error) { return c.Get(ctx) },
			want: &Document{State: DocumentState{
				Desired:  json.RawMessage(`{"mode":"eco"}`),
				Reported: json.RawMessage(`{"fw":"1.2","mode":"off"}`),
				Delta:    json.RawMessage(`{"mode":"eco"}`),
			}, Version: 1, Timestamp: ts},
			wantSent:    []string{`get {}`},
			wantStored:  `{"desired":{"mode":"eco"},"reported":{"fw":"1.2","mode":"off"}}`,
			wantVersion: 1,
		},
		{
			name:     "get, not found",
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Get(ctx) },
			wantErr:  &ErrorResponse{Code: 404, Message: "No shadow exists with name: 'NAME'", Timestamp: ts, Operation: OpGet},
			wantIs:   ErrNotFound,
			wantSent: []string{`get {}`},
		},
		{
			name: "get, forbidden",
			setup: func(f *fakeService, sh string) {
				f.appUpdate(sh, populated)
				f.rejectNext("get", 403, "Forbidden")
			},
			call:        func(ctx context.Context, c *Client) (any, error) { return c.Get(ctx) },
			wantErr:     &ErrorResponse{Code: 403, Message: "Forbidden", Timestamp: ts, Operation: OpGet},
			wantSent:    []string{`get {}`},
			wantStored:  `{"desired":{"mode":"eco"},"reported":{"fw":"1.2","mode":"off"}}`,
			wantVersion: 1,
		},
		{
			name: "update reported from a map, creating the shadow",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Reported: map[string]any{"fw": "1.3", "net": map[string]any{"rssi": -60}}}, 0)
			},
			want:        &Document{State: DocumentState{Reported: json.RawMessage(`{"fw":"1.3","net":{"rssi":-60}}`)}, Version: 1, Timestamp: ts},
			wantSent:    []string{`update {"state":{"reported":{"fw":"1.3","net":{"rssi":-60}}}}`},
			wantStored:  `{"reported":{"fw":"1.3","net":{"rssi":-60}}}`,
			wantVersion: 1,
		},
		{
			name:  "update desired from raw JSON with the expected version",
			setup: func(f *fakeService, sh string) { f.appUpdate(sh, `{"state":{"reported":{"fw":"1.2"}}}`) },
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Desired: json.RawMessage(`{ "mode": "eco" }`)}, 1)
			},
			want:        &Document{State: DocumentState{Desired: json.RawMessage(`{"mode":"eco"}`)}, Version: 2, Timestamp: ts},
			wantSent:    []string{`update {"state":{"desired":{"mode":"eco"}},"version":1}`},
			wantStored:  `{"desired":{"mode":"eco"},"reported":{"fw":"1.2"}}`,
			wantVersion: 2,
		},
		{
			name:  "update, version conflict",
			setup: func(f *fakeService, sh string) { f.appUpdate(sh, `{"state":{"reported":{"fw":"1.2"}}}`) },
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Reported: map[string]any{"fw": "1.3"}}, 7)
			},
			wantErr:     &ErrorResponse{Code: 409, Message: "Version conflict", Timestamp: ts, Operation: OpUpdate},
			wantIs:      ErrVersionConflict,
			wantSent:    []string{`update {"state":{"reported":{"fw":"1.3"}},"version":7}`},
			wantStored:  `{"reported":{"fw":"1.2"}}`,
			wantVersion: 1,
		},
		{
			name: "update removes a key with null and replaces an array",
			setup: func(f *fakeService, sh string) {
				f.appUpdate(sh, `{"state":{"reported":{"fw":"1.2","tags":["a","b"],"net":{"ip":"10.0.0.2","rssi":-60}}}}`)
			},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Reported: map[string]any{"tags": []string{"c"}, "net": map[string]any{"ip": nil}}}, 0)
			},
			want:        &Document{State: DocumentState{Reported: json.RawMessage(`{"net":{"ip":null},"tags":["c"]}`)}, Version: 2, Timestamp: ts},
			wantSent:    []string{`update {"state":{"reported":{"net":{"ip":null},"tags":["c"]}}}`},
			wantStored:  `{"reported":{"fw":"1.2","net":{"rssi":-60},"tags":["c"]}}`,
			wantVersion: 2,
		},
		{
			name:  "update removes a whole section",
			setup: func(f *fakeService, sh string) { f.appUpdate(sh, populated) },
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Desired: json.RawMessage("null")}, 0)
			},
			want:        &Document{State: DocumentState{Desired: json.RawMessage(`null`)}, Version: 2, Timestamp: ts},
			wantSent:    []string{`update {"state":{"desired":null}}`},
			wantStored:  `{"reported":{"fw":"1.2","mode":"off"}}`,
			wantVersion: 2,
		},
		{
			name:  "update, merged state too large for the service",
			setup: func(f *fakeService, sh string) { f.appUpdate(sh, big+strings.Repeat("b", 5000)+`"}}}`) },
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Desired: map[string]any{"blob": strings.Repeat("d", 4000)}}, 0)
			},
			wantErr:     &ErrorResponse{Code: 413, Message: "The payload exceeds the maximum size allowed", Timestamp: ts, Operation: OpUpdate},
			wantSent:    []string{`update {"state":{"desired":{"blob":"` + strings.Repeat("d", 4000) + `"}}}`},
			wantStored:  `{"reported":{"blob":"` + strings.Repeat("b", 5000) + `"}}`,
			wantVersion: 1,
		},
		{
			name: "update, internal failure",
			setup: func(f *fakeService, sh string) {
				f.rejectNext("update", 500, "Internal service failure")
			},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Reported: map[string]any{"fw": "1.3"}}, 0)
			},
			wantErr:  &ErrorResponse{Code: 500, Message: "Internal service failure", Timestamp: ts, Operation: OpUpdate},
			wantSent: []string{`update {"state":{"reported":{"fw":"1.3"}}}`},
		},
		{
			name: "update, throttled",
			setup: func(f *fakeService, sh string) {
				f.rejectNext("update", 429, "Too Many Requests")
			},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, State{Reported: map[string]any{"fw": "1.3"}}, 0)
			},
			wantErr:  &ErrorResponse{Code: 429, Message: "Too Many Requests", Timestamp: ts, Operation: OpUpdate},
			wantSent: []string{`update {"state":{"reported":{"fw":"1.3"}}}`},
		},
		{
			name: "delete",
			setup: func(f *fakeService, sh string) {
				f.appUpdate(sh, populated)
				f.appUpdate(sh, `{"state":{"reported":{"mode":"eco"}}}`)
			},
			call:        func(ctx context.Context, c *Client) (any, error) { return nil, c.Delete(ctx) },
			wantSent:    []string{`delete {}`},
			wantVersion: 2,
		},
		{
			name:     "delete, not found",
			call:     func(ctx context.Context, c *Client) (any, error) { return nil, c.Delete(ctx) },
			wantErr:  &ErrorResponse{Code: 404, Message: "No shadow exists with name: 'NAME'", Timestamp: ts, Operation: OpDelete},
			wantIs:   ErrNotFound,
			wantSent: []string{`delete {}`},
		},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f, c := newClientEnv(t, mode.shadow, mode.subscribed, ClientOptions{})
					if tt.setup != nil {
						tt.setup(f, mode.shadow)
					}
					got, err := tt.call(t.Context(), c)
					if tt.wantErr != nil {
						want := *tt.wantErr
						want.ThingName, want.ShadowName = thing, mode.shadow
						want.Message = strings.Replace(want.Message, "NAME", orDefault(mode.shadow, thing), 1)
						var rej *ErrorResponse
						if !errors.As(err, &rej) {
							t.Fatalf("got %v, %v; want an *ErrorResponse", got, err)
						}
						if diff := cmp.Diff(&want, rej, ignoreVarying); diff != "" {
							t.Errorf("rejection mismatch (-want +got):\n%s", diff)
						}
						for _, sentinel := range []error{ErrNotFound, ErrVersionConflict, ErrInvalidState} {
							if is := errors.Is(err, sentinel); is != (sentinel == tt.wantIs) {
								t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, is)
							}
						}
					} else if err != nil {
						t.Fatalf("got error %v", err)
					} else if diff := cmp.Diff(tt.want, got, ignoreVarying); diff != "" {
						t.Errorf("reply mismatch (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(tt.wantSent, f.take(t)); diff != "" {
						t.Errorf("requests mismatch (-want +got):\n%s", diff)
					}
					if stored, _ := f.stored(mode.shadow); stored != tt.wantStored {
						t.Errorf("the service holds %s, want %s", stored, tt.wantStored)
					}
					if v := c.Version(); v != tt.wantVersion {
						t.Errorf("Version() = %d, want %d", v, tt.wantVersion)
					}
				})
			})
		}
	}
}

func TestErrorResponseError(t *testing.T) {
	tests := []struct {
		err  *ErrorResponse
		want string
	}{
		{&ErrorResponse{Code: 409, Message: "Version conflict", Operation: OpUpdate, ThingName: "gw-1"}, "shadow: update of gw-1 rejected: 409 Version conflict"},
		{&ErrorResponse{Code: 404, Operation: OpGet, ThingName: "gw-1", ShadowName: "config"}, "shadow: get of gw-1/config rejected: 404"},
		{&ErrorResponse{Code: 500}, "shadow: request of  rejected: 500"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// nest returns {"k":{"k":...{"k":1}}} with depth levels.
func nest(depth int) map[string]any {
	m := map[string]any{"k": 1}
	for range depth - 1 {
		m = map[string]any{"k": m}
	}
	return m
}

func TestClientRefusesBeforeSending(t *testing.T) {
	blob := func(n int) map[string]any { return map[string]any{"blob": strings.Repeat("x", n)} }
	tests := []struct {
		name     string
		thing    string // default thing
		shadow   string
		opts     ClientOptions
		state    State
		expected int64
		wantErr  string // exact; "" means it is sent and accepted
		invalid  bool   // the error matches ErrInvalidState
	}{
		{name: "state of 9123 bytes", state: State{Reported: blob(9112)},
			wantErr: "shadow: update of gw-1: state document is 9123 bytes, AWS allows 8192", invalid: true},
		{name: "named shadow, state too large", shadow: "config", state: State{Reported: blob(9112)},
			wantErr: "shadow: update of gw-1/config: state document is 9123 bytes, AWS allows 8192", invalid: true},
		{name: "state of exactly 8192 bytes", state: State{Reported: blob(8181)}},
		{name: "desired and reported together too large", state: State{Desired: blob(4100), Reported: blob(4100)},
			wantErr: "shadow: update of gw-1: state document is 8222 bytes, AWS allows 8192", invalid: true},
		{name: "removing a section counts nothing", state: State{Desired: json.RawMessage("null"), Reported: blob(8181)}},
		{name: "nesting of 6 levels", state: State{Reported: nest(6)}},
		{name: "nesting of 7 levels", state: State{Reported: nest(7)},
			wantErr: "shadow: update of gw-1: reported: JSON contains too many levels of nesting (7); maximum is 6", invalid: true},
		{name: "arrays nest too", state: State{Desired: json.RawMessage(`{"a":[[[[[[1]]]]]]}`)},
			wantErr: "shadow: update of gw-1: desired: JSON contains too many levels of nesting (7); maximum is 6", invalid: true},
		{name: "a smaller MaxDepth", opts: ClientOptions{MaxDepth: 5}, state: State{Reported: nest(6)},
			wantErr: "shadow: update of gw-1: reported: JSON contains too many levels of nesting (6); maximum is 5", invalid: true},
		{name: "null in an array", state: State{Reported: json.RawMessage(`{"a":[1,null]}`)},
			wantErr: "shadow: update of gw-1: reported: an array contains null, which the service rejects", invalid: true},
		{name: "brackets and null inside strings are text", state: State{Reported: json.RawMessage(`{"a\"[":null,"b":"[null]","c":[{"d":null}]}`)}},
		{name: "reported is a string", state: State{Reported: "on"},
			wantErr: `shadow: update of gw-1: reported must be a JSON object, not "on"`, invalid: true},
		{name: "desired is an array", state: State{Desired: []int{1}},
			wantErr: `shadow: update of gw-1: desired must be a JSON object, not [1]`, invalid: true},
		{name: "a nil map is not a removal", state: State{Reported: map[string]any(nil)},
			wantErr: `shadow: update of gw-1: reported encodes to null; pass json.RawMessage("null") to remove the section`, invalid: true},
		{name: "no section", state: State{},
			wantErr: "shadow: update of gw-1: the state has neither desired nor reported", invalid: true},
		{name: "negative expected version", state: State{Reported: blob(1)}, expected: -1,
			wantErr: "shadow: update of gw-1: expected version -1 is negative", invalid: true},
		{name: "a value JSON cannot encode", state: State{Reported: map[string]any{"c": make(chan int)}},
			wantErr: "shadow: update of gw-1: encode reported: json: unsupported type: chan int"},
		{name: "invalid thing name", thing: "gw 1", state: State{Reported: blob(1)},
			wantErr: `shadow: update of gw 1: thing name "gw 1": character ' ' is not allowed (want [a-zA-Z0-9:_-])`},
		{name: "invalid shadow name", shadow: "a/b", state: State{Reported: blob(1)},
			wantErr: `shadow: update of gw-1/a/b: shadow name "a/b": character '/' is not allowed (want [a-zA-Z0-9$:_-])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeService(orDefault(tt.thing, thing))
				c := NewClient(orDefault(tt.thing, thing), tt.shadow, f, tt.opts)
				f.unsolicited = func(topic string, payload []byte) { c.HandleMessage(topic, payload) }
				_, err := c.Update(t.Context(), tt.state, tt.expected)
				sent := f.take(t)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("Update: %v", err)
					}
					if len(sent) != 1 {
						t.Errorf("sent %q, want one update", sent)
					}
					return
				}
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("Update = %v, want %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrInvalidState) != tt.invalid {
					t.Errorf("errors.Is(%v, ErrInvalidState) = %v, want %v", err, !tt.invalid, tt.invalid)
				}
				if len(sent) != 0 {
					t.Errorf("sent %q, want nothing", sent)
				}
			})
		})
	}
}

func TestClientStart(t *testing.T) {
	f := newFakeService(thing)
	if err := NewClient(thing, "config", f, ClientOptions{}).Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for topic := range f.subs {
			if !yield(topic) {
				return
			}
		}
	})
	want := slices.Sorted(slices.Values(SubscriptionFilters(thing, "config")))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subscriptions mismatch (-want +got):\n%s", diff)
	}

	err := NewClient("gw/1", "", f, ClientOptions{}).Start(t.Context())
	if want := `shadow: start gw/1: thing name "gw/1": character '/' is not allowed (want [a-zA-Z0-9:_-])`; err == nil || err.Error() != want {
		t.Errorf("Start with a bad thing name = %v, want %q", err, want)
	}
	f.offline = true
	err = NewClient(thing, "", f, ClientOptions{}).Start(t.Context())
	if !errors.Is(err, errOffline) || !strings.Contains(err.Error(), "subscribe $aws/things/gw-1/shadow/get/accepted") {
		t.Errorf("Start while offline = %v, want an error naming the topic and wrapping %v", err, errOffline)
	}
}

func TestClientFailures(t *testing.T) {
	tests := []struct {
		name       string
		opts       ClientOptions
		setup      func(f *fakeService, shadow string)
		ctxTimeout time.Duration
		wantErr    string // exact, with TOPIC for the update topic; unless wantIs is set
		wantIs     error
		wantWait   time.Duration
	}{
		{
			name:     "dropped reply",
			setup:    func(f *fakeService, _ string) { f.rewrite = drop },
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name:     "dropped reply, shorter timeout",
			opts:     ClientOptions{Timeout: 2 * time.Second},
			setup:    func(f *fakeService, _ string) { f.rewrite = drop },
			wantErr:  "shadow: no reply to TOPIC in 2s",
			wantWait: 2 * time.Second,
		},
		{
			name: "malformed reply",
			setup: func(f *fakeService, _ string) {
				f.rewrite = func(m fakeMsg) []fakeMsg { return []fakeMsg{{m.topic, m.payload[:len(m.payload)/2]}} }
			},
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply with another token",
			setup: func(f *fakeService, _ string) {
				f.rewrite = func(m fakeMsg) []fakeMsg {
					return []fakeMsg{{m.topic, []byte(`{"clientToken":"someone-else","state":{},"version":1}`)}}
				}
			},
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply on another thing's topic",
			setup: func(f *fakeService, _ string) {
				f.rewrite = func(m fakeMsg) []fakeMsg {
					return []fakeMsg{{strings.Replace(m.topic, "/gw-1/", "/gw-2/", 1), m.payload}}
				}
			},
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply on another shadow's topic",
			setup: func(f *fakeService, sh string) {
				other := map[string]string{"": "config", "config": ""}[sh]
				f.rewrite = func(m fakeMsg) []fakeMsg {
					return []fakeMsg{{strings.Replace(m.topic, Prefix(thing, sh)+"/", Prefix(thing, other)+"/", 1), m.payload}}
				}
			},
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply on another operation's topic",
			setup: func(f *fakeService, _ string) {
				f.rewrite = func(m fakeMsg) []fakeMsg {
					return []fakeMsg{{strings.Replace(m.topic, "/update/", "/get/", 1), m.payload}}
				}
			},
			wantErr:  "shadow: no reply to TOPIC in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "copies for another thing first",
			setup: func(f *fakeService, _ string) {
				f.rewrite = func(m fakeMsg) []fakeMsg {
					other := strings.Replace(m.topic, "/gw-1/", "/gw-1x/", 1)
					return []fakeMsg{{other, m.payload}, {other, []byte(`{"state":{},"version":99}`)}, m}
				}
			},
		},
		{
			name:       "context ends",
			setup:      func(f *fakeService, _ string) { f.rewrite = drop },
			ctxTimeout: time.Second,
			wantIs:     context.DeadlineExceeded,
			wantWait:   time.Second,
		},
		{
			name:    "offline",
			setup:   func(f *fakeService, _ string) { f.offline = true },
			wantErr: "shadow: update of NAME: publish TOPIC: fake: not connected",
			wantIs:  errOffline,
		},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f, c := newClientEnv(t, mode.shadow, mode.subscribed, tt.opts)
					topic := Prefix(thing, mode.shadow) + "/update"
					f.set(func(f *fakeService) { tt.setup(f, mode.shadow) })
					ctx := t.Context()
					if tt.ctxTimeout > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
						defer cancel()
					}
					start := time.Now()
					got, err := c.Update(ctx, State{Reported: map[string]any{"fw": "1.3"}}, 0)
					if waited := time.Since(start); waited != tt.wantWait {
						t.Errorf("Update returned after %v, want %v", waited, tt.wantWait)
					}
					wantErr := strings.NewReplacer("TOPIC", topic, "NAME", c.name()).Replace(tt.wantErr)
					switch {
					case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
						t.Errorf("Update = %v, want an error wrapping %v", err, tt.wantIs)
					case wantErr != "" && (err == nil || err.Error() != wantErr):
						t.Errorf("Update = %v, want %q", err, wantErr)
					case tt.wantIs == nil && wantErr == "":
						if err != nil {
							t.Fatalf("Update: %v", err)
						}
						if got.Version != 1 {
							t.Errorf("Update = %+v, want the reply for this thing (version 1)", got)
						}
					}
					if v := c.Version(); tt.wantIs == nil && wantErr == "" && v != 1 {
						t.Errorf("Version() = %d, want 1: a reply of another thing counted", v)
					}
					// A late reply to the expired request is taken as this
					// shadow's but answers nothing.
					if sent := f.requests; len(sent) > 0 {
						token := tokenOf(t, sent[len(sent)-1].payload)
						if !c.HandleMessage(topic+"/accepted", []byte(`{"clientToken":"`+token+`","version":1}`)) {
							t.Errorf("HandleMessage(late reply) = false, want true")
						}
					}
					c.mu.Lock()
					defer c.mu.Unlock()
					if len(c.waiting) != 0 {
						t.Errorf("%d requests still waiting after the call", len(c.waiting))
					}
				})
			})
		}
	}
}

// drop is a fakeService.rewrite that loses every reply.
func drop(fakeMsg) []fakeMsg { return nil }

func tokenOf(t *testing.T, payload string) string {
	t.Helper()
	var req struct {
		ClientToken string `json:"clientToken"`
	}
	if err := json.Unmarshal([]byte(payload), &req); err != nil {
		t.Fatalf("request %s: %v", payload, err)
	}
	return req.ClientToken
}

// TestClientConcurrentRequests: concurrent requests each get their own
// reply, and every request has its own token.
func TestClientConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := newClientEnv(t, "", true, ClientOptions{})
		const n = 8
		versions := make(chan int64, n)
		for i := range n {
			go func() {
				doc, err := c.Update(t.Context(), State{Reported: map[string]any{fmt.Sprint("k", i): i}}, 0)
				if err != nil {
					t.Errorf("Update %d: %v", i, err)
					versions <- 0
					return
				}
				if want := fmt.Sprintf(`{"k%d":%d}`, i, i); string(doc.State.Reported) != want {
					t.Errorf("Update %d got the reply %s, want %s", i, doc.State.Reported, want)
				}
				versions <- doc.Version
			}()
		}
		var got, tokens []string
		for range n {
			got = append(got, fmt.Sprint(<-versions))
		}
		for _, r := range f.requests {
			tokens = append(tokens, tokenOf(t, r.payload))
		}
		slices.Sort(got)
		slices.Sort(tokens)
		if want := []string{"1", "2", "3", "4", "5", "6", "7", "8"}; !slices.Equal(got, want) {
			t.Errorf("versions %v, want %v", got, want)
		}
		if len(slices.Compact(tokens)) != n {
			t.Errorf("clientTokens are not unique: %v", tokens)
		}
		if c.Version() != n {
			t.Errorf("Version() = %d, want %d", c.Version(), n)
		}
	})
}

func TestHandleMessage(t *testing.T) {
	tests := []struct {
		topic        string
		classic, cfg bool // what a Client of the classic and of the "config" shadow of gw-1 report
	}{
		{"$aws/things/gw-1/shadow/update/delta", true, false},
		{"$aws/things/gw-1/shadow/get/accepted", true, false},
		{"$aws/things/gw-1/shadow/delete/rejected", true, false},
		{"$aws/things/gw-1/shadow/update/documents", true, false},
		{"$aws/things/gw-1/shadow/update", true, false}, // a request, seen through a wide subscription
		{"$aws/things/gw-1/shadow/name/config/update/delta", false, true},
		{"$aws/things/gw-1/shadow/name/config/get/rejected", false, true},
		{"$aws/things/gw-1/shadow/name/other/update/delta", false, false},
		{"$aws/things/gw-2/shadow/update/delta", false, false},
		{"$aws/things/gw-2/shadow/name/config/update/delta", false, false},
		{"$aws/things/gw-1/jobs/notify-next", false, false},
		{"$aws/things/gw-1/shadow/update/snapshot", false, false},
		{"$aws/things/gw-1/shadow/get/delta", false, false},
		{"gw-1/shadow/update/delta", false, false},
	}
	f := newFakeService(thing)
	classic, cfg := NewClient(thing, "", f, ClientOptions{}), NewClient(thing, "config", f, ClientOptions{})
	for _, tt := range tests {
		payload := []byte(`{"state":{"a":1},"version":1}`)
		if got := classic.HandleMessage(tt.topic, payload); got != tt.classic {
			t.Errorf("classic HandleMessage(%q) = %v, want %v", tt.topic, got, tt.classic)
		}
		if got := cfg.HandleMessage(tt.topic, payload); got != tt.cfg {
			t.Errorf("named HandleMessage(%q) = %v, want %v", tt.topic, got, tt.cfg)
		}
	}
}

// orDefault returns s, or def if s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
