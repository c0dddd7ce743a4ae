package shadow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeService is an in-memory AWS IoT Device Shadow service
// (aws-iot-protocol.md §2) for the shadows of one thing, seen through the
// MQTT interface. Like sim it is a protocol peer: it parses topics with its
// own pattern, decodes requests into its own structs, strictly, and writes
// replies as maps, so a wrong JSON tag in the package fails a test rather
// than agreeing with itself.
//
// Semantics: update merges (null removes a key or a whole section, objects
// merge recursively, arrays replace), refuses null in arrays, nesting
// deeper than 6, a merged state over 8192 bytes, a clientToken over 64
// bytes and a wrong version (409); every accepted update bumps the version
// and publishes update/accepted, update/documents and, when it touched
// desired and desired differs from reported, update/delta; get of a shadow
// that does not exist is 404; delete keeps the version.
//
// The service's messages go out after its lock is released, from the
// Publish (or admin call) that caused them, one by one: to the subscription
// on their exact topic, or else to unsolicited, the way the agent hands
// stray messages to Client.HandleMessage. Faults are injected through
// offline, rewrite, rejections and onRequest.
type fakeService struct {
	thing string

	mu          sync.Mutex                      // guards all below
	subs        map[string]func(string, []byte) // by exact topic (no wildcards)
	unsolicited func(string, []byte)            // for messages no subscription takes; nil drops them
	strays      []string                        // topics of the messages that went to unsolicited

	offline bool // Publish and Subscribe fail with errOffline
	// rewrite, if set, is handed each reply to the device's requests
	// (after the request took effect), with f.mu held, and returns what to
	// deliver instead: nothing drops it, a changed copy mangles it, more
	// messages add some.
	rewrite func(reply fakeMsg) []fakeMsg
	// rejections force the next requests of an operation to be rejected.
	rejections map[string][]fakeRejection
	// onRequest, if set, is called (without f.mu) after a request of the
	// device took effect and before its replies go out.
	onRequest func(topic string)

	shadows  map[string]*fakeShadow // by name; "" is the classic shadow
	requests []fakeRequest          // the device's requests that reached the service
}

type fakeShadow struct {
	exists            bool
	desired, reported map[string]any // nil: no such section
	version           int64
}

type fakeRejection struct {
	code int
	msg  string
}

type fakeRequest struct {
	topic   string
	qos     byte
	payload string
}

type fakeMsg struct {
	topic   string
	payload []byte
}

var errOffline = errors.New("fake: not connected")

// fakeTopic is the fake's own reading of a shadow request topic.
var fakeTopic = regexp.MustCompile(`^\$aws/things/([^/]+)/shadow(?:/name/([^/]+))?/(get|update|delete)$`)

func newFakeService(thing string) *fakeService {
	return &fakeService{
		thing:      thing,
		subs:       map[string]func(string, []byte){},
		rejections: map[string][]fakeRejection{},
		shadows:    map[string]*fakeShadow{},
	}
}

// Publish implements MQTT: a request of the device.
func (f *fakeService) Publish(_ context.Context, topic string, qos byte, payload []byte) error {
	f.mu.Lock()
	if f.offline {
		f.mu.Unlock()
		return errOffline
	}
	f.requests = append(f.requests, fakeRequest{topic: topic, qos: qos, payload: string(payload)})
	msgs := f.handleLocked(topic, payload, true)
	hook := f.onRequest
	f.mu.Unlock()
	if hook != nil {
		hook(topic)
	}
	f.deliver(msgs)
	return nil
}

// Subscribe implements MQTT.
func (f *fakeService) Subscribe(_ context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.offline {
		return errOffline
	}
	if qos != 1 || strings.ContainsAny(filter, "+#") {
		return fmt.Errorf("fake: subscribe %q with QoS %d: want an exact topic and QoS 1", filter, qos)
	}
	f.subs[filter] = handler
	return nil
}

func (f *fakeService) deliver(msgs []fakeMsg) {
	for _, m := range msgs {
		f.mu.Lock()
		h := f.subs[m.topic]
		if h == nil {
			h = f.unsolicited
			f.strays = append(f.strays, m.topic)
		}
		f.mu.Unlock()
		if h != nil {
			h(m.topic, m.payload)
		}
	}
}

func (f *fakeService) now() int64 { return time.Now().Unix() }

// The fake's own request structs; decoded with DisallowUnknownFields.
type (
	fakeTokenReq struct {
		ClientToken string `json:"clientToken"`
	}
	fakeUpdateReq struct {
		State       *map[string]json.RawMessage `json:"state"`
		ClientToken string                      `json:"clientToken"`
		Version     *int64                      `json:"version"`
	}
)

// handleLocked answers one request. fromDevice says whether the reply goes
// through rewrite.
func (f *fakeService) handleLocked(topic string, payload []byte, fromDevice bool) []fakeMsg {
	m := fakeTopic.FindStringSubmatch(topic)
	if m == nil || m[1] != f.thing {
		return nil // not a request to this service
	}
	name, op := m[2], m[3]
	sh := f.shadows[name]
	if sh == nil {
		sh = &fakeShadow{}
		f.shadows[name] = sh
	}
	var token fakeTokenReq
	_ = json.Unmarshal(payload, &token) // best effort, for the error replies
	reply := func(kind string, body map[string]any) []fakeMsg {
		return f.replyLocked(topic+"/"+kind, token.ClientToken, body, fromDevice)
	}
	reject := func(code int, msg string) []fakeMsg {
		return reply("rejected", map[string]any{"code": code, "message": msg})
	}
	if q := f.rejections[op]; len(q) > 0 {
		f.rejections[op] = q[1:]
		return reject(q[0].code, q[0].msg)
	}
	if !json.Valid(payload) {
		return reject(400, "Invalid JSON")
	}
	if len(token.ClientToken) > 64 {
		return reject(400, "Invalid clientToken")
	}
	notFound := func() []fakeMsg {
		shown := name
		if shown == "" {
			shown = f.thing
		}
		return reject(404, fmt.Sprintf("No shadow exists with name: '%s'", shown))
	}
	switch op {
	case "get":
		if err := fakeDecode(payload, &fakeTokenReq{}); err != nil {
			return reject(400, err.Error())
		}
		if !sh.exists {
			return notFound()
		}
		state, meta := map[string]any{}, map[string]any{}
		for sec, v := range map[string]map[string]any{"desired": sh.desired, "reported": sh.reported} {
			if v != nil {
				state[sec], meta[sec] = v, fakeMeta(v, f.now())
			}
		}
		if d := fakeDelta(sh.desired, sh.reported); len(d) > 0 {
			state["delta"] = d
		}
		return reply("accepted", map[string]any{"state": state, "metadata": meta, "version": sh.version})
	case "delete":
		if err := fakeDecode(payload, &fakeTokenReq{}); err != nil {
			return reject(400, err.Error())
		}
		if !sh.exists {
			return notFound()
		}
		sh.exists, sh.desired, sh.reported = false, nil, nil
		return reply("accepted", map[string]any{"version": sh.version})
	}
	var req fakeUpdateReq
	if err := fakeDecode(payload, &req); err != nil {
		return reject(400, err.Error())
	}
	if req.State == nil {
		return reject(400, "Missing required node: state")
	}
	if _, ok := (*req.State)["delta"]; ok {
		return reject(400, "State contains an invalid node: 'delta'")
	}
	if req.Version != nil && *req.Version != sh.version {
		return reject(409, "Version conflict")
	}
	before := map[string]any{"state": fakeSections(sh), "metadata": map[string]any{}, "version": sh.version}
	next := map[string]map[string]any{"desired": fakeCopy(sh.desired), "reported": fakeCopy(sh.reported)}
	echo, echoMeta := map[string]any{}, map[string]any{}
	for _, sec := range []string{"desired", "reported"} {
		raw, ok := (*req.State)[sec]
		if !ok {
			continue
		}
		if string(raw) == "null" {
			next[sec] = nil
			echo[sec] = nil
			continue
		}
		var patch map[string]any
		if bytes.TrimSpace(raw)[0] != '{' || fakeDecodeNumbers(raw, &patch) != nil {
			return reject(400, strings.ToUpper(sec[:1])+sec[1:]+" node must be an object")
		}
		if fakeDepth(patch) > 6 {
			return reject(400, "JSON contains too many levels of nesting; maximum is 6")
		}
		if fakeNullInArray(patch) {
			return reject(400, "Invalid JSON")
		}
		if next[sec] == nil {
			next[sec] = map[string]any{}
		}
		fakeApply(next[sec], patch)
		echo[sec], echoMeta[sec] = patch, fakeMeta(patch, f.now())
	}
	size := 0
	for _, v := range next {
		if v != nil {
			size += len(fakeJSON(v))
		}
	}
	if size > 8192 {
		return reject(413, "The payload exceeds the maximum size allowed")
	}
	sh.exists, sh.desired, sh.reported = true, next["desired"], next["reported"]
	sh.version++
	msgs := reply("accepted", map[string]any{"state": echo, "metadata": echoMeta, "version": sh.version})
	after := map[string]any{"state": fakeSections(sh), "metadata": map[string]any{}, "version": sh.version}
	msgs = append(msgs, f.publishLocked(topic+"/documents", token.ClientToken, map[string]any{"previous": before, "current": after})...)
	if _, touched := echo["desired"]; touched {
		if d := fakeDelta(sh.desired, sh.reported); len(d) > 0 {
			msgs = append(msgs, f.publishLocked(topic+"/delta", token.ClientToken,
				map[string]any{"state": d, "metadata": fakeMeta(d, f.now()), "version": sh.version})...)
		}
	}
	return msgs
}

// replyLocked builds a reply; one to the device goes through rewrite.
func (f *fakeService) replyLocked(topic, token string, body map[string]any, fromDevice bool) []fakeMsg {
	msgs := f.publishLocked(topic, token, body)
	if fromDevice && f.rewrite != nil {
		return f.rewrite(msgs[0])
	}
	return msgs
}

// publishLocked makes a message of the service, stamped with the time and
// with the token of the request that caused it (the service leaves out an
// empty one).
func (f *fakeService) publishLocked(topic, token string, body map[string]any) []fakeMsg {
	stamped := maps.Clone(body)
	stamped["timestamp"] = f.now()
	if token != "" {
		stamped["clientToken"] = token
	}
	return []fakeMsg{{topic: topic, payload: fakeJSON(stamped)}}
}

// fakeJSON encodes what the fake built itself, which always encodes.
func fakeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fake: encode %#v: %v", v, err))
	}
	return b
}

func fakeDecode(payload []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func fakeDecodeNumbers(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

// fakeCopy deep-copies a section through JSON.
func fakeCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	var out map[string]any
	if err := fakeDecodeNumbers(fakeJSON(m), &out); err != nil {
		panic(err)
	}
	return out
}

// fakeApply merges patch into dst in place, as the service does.
func fakeApply(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			dm, ok := dst[k].(map[string]any)
			if !ok {
				dm = map[string]any{}
				dst[k] = dm
			}
			fakeApply(dm, pm)
			continue
		}
		dst[k] = v
	}
}

// fakeDelta is the service's delta: the desired leaves that reported lacks
// or holds with another value, compared by their JSON text.
func fakeDelta(desired, reported map[string]any) map[string]any {
	out := map[string]any{}
	for k, want := range desired {
		have, ok := reported[k]
		wm, wantObj := want.(map[string]any)
		hm, haveObj := have.(map[string]any)
		if wantObj && haveObj {
			if sub := fakeDelta(wm, hm); len(sub) > 0 {
				out[k] = sub
			}
		} else if !ok || !reflect.DeepEqual(want, have) {
			out[k] = want
		}
	}
	return out
}

// fakeMeta mirrors v with {"timestamp": ts} for each leaf.
func fakeMeta(v map[string]any, ts int64) map[string]any {
	out := map[string]any{}
	for k, x := range v {
		if m, ok := x.(map[string]any); ok {
			out[k] = fakeMeta(m, ts)
		} else {
			out[k] = map[string]any{"timestamp": ts}
		}
	}
	return out
}

// fakeDepth counts the levels of objects and arrays in v, v's own included.
func fakeDepth(v any) int {
	deepest := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			deepest = max(deepest, fakeDepth(x))
		}
	case []any:
		for _, x := range v {
			deepest = max(deepest, fakeDepth(x))
		}
	default:
		return 0
	}
	return deepest + 1
}

func fakeNullInArray(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if fakeNullInArray(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if x == nil || fakeNullInArray(x) {
				return true
			}
		}
	}
	return false
}

func fakeSections(sh *fakeShadow) map[string]any {
	out := map[string]any{}
	if sh.desired != nil {
		out["desired"] = sh.desired
	}
	if sh.reported != nil {
		out["reported"] = sh.reported
	}
	return out
}

// appUpdate publishes an update as another client (a cloud application)
// would: the replies go to every subscriber, with that client's token.
func (f *fakeService) appUpdate(shadowName, body string) {
	f.mu.Lock()
	topic := Prefix(f.thing, shadowName) + "/update"
	msgs := f.handleLocked(topic, []byte(body), false)
	f.mu.Unlock()
	if len(msgs) == 0 || !strings.HasSuffix(msgs[0].topic, "/accepted") {
		panic(fmt.Sprintf("fake: app update %s was not accepted: %s", body, msgs[0].payload))
	}
	f.deliver(msgs)
}

// appDelete deletes a shadow as another client would.
func (f *fakeService) appDelete(shadowName string) {
	f.mu.Lock()
	msgs := f.handleLocked(Prefix(f.thing, shadowName)+"/delete", []byte(`{}`), false)
	f.mu.Unlock()
	f.deliver(msgs)
}

// send delivers any message, e.g. a stale delta or one for another thing.
func (f *fakeService) send(topic, payload string) {
	f.deliver([]fakeMsg{{topic: topic, payload: []byte(payload)}})
}

// rejectNext makes the next request of op ("get", "update", "delete") be
// rejected with code and msg, whatever it asks.
func (f *fakeService) rejectNext(op string, code int, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejections[op] = append(f.rejections[op], fakeRejection{code, msg})
}

// stored returns a shadow as the service holds it, as compact JSON with
// sorted keys ({"desired":...,"reported":...}), and its version; "" if it
// does not exist.
func (f *fakeService) stored(shadowName string) (string, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh := f.shadows[shadowName]
	if sh == nil {
		return "", 0
	}
	if !sh.exists {
		return "", sh.version
	}
	return string(fakeJSON(fakeSections(sh))), sh.version
}

// strayTopics returns the topics of the messages that matched no
// subscription.
func (f *fakeService) strayTopics() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.strays)
}

// set runs fn with f.mu held, to change the fault settings.
func (f *fakeService) set(fn func(f *fakeService)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// take returns the device's requests since the last take, each as
// "{op} {payload without clientToken}", e.g. `update {"state":...}`, and
// checks that every one had a fresh clientToken and QoS 1.
func (f *fakeService) take(t *testing.T) []string {
	t.Helper()
	f.mu.Lock()
	reqs := f.requests
	f.requests = nil
	f.mu.Unlock()
	out := []string{}
	for _, r := range reqs {
		if r.qos != 1 {
			t.Errorf("request on %s with QoS %d, want 1", r.topic, r.qos)
		}
		m := fakeTopic.FindStringSubmatch(r.topic)
		if m == nil {
			t.Errorf("request on %s, not a shadow request topic", r.topic)
			continue
		}
		out = append(out, m[3]+" "+withoutToken(t, r.payload))
	}
	return out
}

// withoutToken returns a request payload re-encoded (sorted keys) without
// its clientToken, after checking that it has one.
func withoutToken(t *testing.T, payload string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Errorf("request payload %s: %v", payload, err)
		return payload
	}
	var token string
	if err := json.Unmarshal(m["clientToken"], &token); err != nil || token == "" || len(token) > 64 {
		t.Errorf("request payload %s has no valid clientToken", payload)
	}
	delete(m, "clientToken")
	b, _ := json.Marshal(m)
	return string(b)
}

// testLogger logs to the test's output at debug level.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
