package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeJobs is an in-memory AWS IoT Jobs service (aws-iot-protocol.md §1)
// for one thing, seen through the MQTT interface: Publish handles a request
// and delivers the reply, and notify/notify-next when the pending set or its
// head change. Like sim, it is a protocol peer: it decodes requests into its
// own structs, strictly, and writes replies as maps, so a wrong JSON tag in
// the package fails a test rather than agreeing with itself.
//
// Messages are delivered synchronously, from Publish (or the admin method
// that caused them), after the fake's lock is released: to the matching
// subscriptions, or, for replies with none, to unsolicited (the agent hands
// those to Client.HandleMessage).
type fakeJobs struct {
	thing string

	mu sync.Mutex // guards everything below
	// subs are the subscriptions by filter.
	subs map[string]func(string, []byte)
	// unsolicited receives replies that match no subscription; nil drops
	// them.
	unsolicited func(string, []byte)
	// offline makes Publish fail.
	offline bool
	// dropReply, if set, drops the replies it returns true for.
	dropReply func(topic string) bool
	// mangle, if set, rewrites a reply's topic and payload.
	mangle func(topic string, payload []byte) (string, []byte)
	// foreign sends, before each reply, a copy of it on the same topic of
	// another thing, with a different payload.
	foreign bool
	// refuse, if set, is a statusDetails value that updates are rejected
	// for (InvalidRequest), as if the service had a stricter rule.
	refuse string

	execs    []*fakeExec // in queue order
	requests []fakeRequest
	head     string // the execution notify-next last announced
	pending  string // the pending set notify last announced
}

type fakeExec struct {
	jobID, doc                         string
	status                             string
	details                            map[string]string
	version, number                    int64
	queuedAt, startedAt, lastUpdatedAt int64
}

type fakeRequest struct {
	topic   string
	qos     byte
	payload string
}

type fakeMsg struct {
	topic   string
	payload []byte
	reply   bool
}

var errOffline = errors.New("fake: not connected")

func newFakeJobs(thing string) *fakeJobs {
	return &fakeJobs{thing: thing, subs: map[string]func(string, []byte){}}
}

// Publish implements MQTT.
func (f *fakeJobs) Publish(_ context.Context, topic string, qos byte, payload []byte) error {
	f.mu.Lock()
	if f.offline {
		f.mu.Unlock()
		return errOffline
	}
	f.requests = append(f.requests, fakeRequest{topic: topic, qos: qos, payload: string(payload)})
	msgs := f.handleLocked(topic, payload)
	f.mu.Unlock()
	f.deliver(msgs)
	return nil
}

// Subscribe implements MQTT.
func (f *fakeJobs) Subscribe(_ context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if qos != 1 {
		return fmt.Errorf("fake: subscribe %s with QoS %d", filter, qos)
	}
	f.subs[filter] = handler
	return nil
}

func (f *fakeJobs) deliver(msgs []fakeMsg) {
	for _, m := range msgs {
		f.mu.Lock()
		var hs []func(string, []byte)
		for filter, h := range f.subs {
			if topicMatches(filter, m.topic) {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 && m.reply && f.unsolicited != nil {
			hs = append(hs, f.unsolicited)
		}
		f.mu.Unlock()
		for _, h := range hs {
			h(m.topic, m.payload)
		}
	}
}

// topicMatches is MQTT topic filter matching with + and #.
func topicMatches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || (f != "+" && f != ts[i]) {
			return false
		}
	}
	return len(fs) == len(ts)
}

func (f *fakeJobs) now() int64 { return time.Now().Unix() }

// The fake's own request structs; decoded with DisallowUnknownFields.
type (
	fakeTokenReq struct {
		ClientToken string `json:"clientToken"`
	}
	fakeStartNextReq struct {
		StatusDetails        map[string]string `json:"statusDetails"`
		StepTimeoutInMinutes *int64            `json:"stepTimeoutInMinutes"`
		ClientToken          string            `json:"clientToken"`
	}
	fakeDescribeReq struct {
		ExecutionNumber    *int64 `json:"executionNumber"`
		IncludeJobDocument *bool  `json:"includeJobDocument"`
		ClientToken        string `json:"clientToken"`
	}
	fakeUpdateReq struct {
		Status                   string            `json:"status"`
		StatusDetails            map[string]string `json:"statusDetails"`
		ExpectedVersion          *int64            `json:"expectedVersion"`
		ExecutionNumber          *int64            `json:"executionNumber"`
		IncludeJobExecutionState bool              `json:"includeJobExecutionState"`
		IncludeJobDocument       bool              `json:"includeJobDocument"`
		StepTimeoutInMinutes     *int64            `json:"stepTimeoutInMinutes"`
		ClientToken              string            `json:"clientToken"`
	}
)

var fakeKey = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// handleLocked answers one request.
func (f *fakeJobs) handleLocked(topic string, payload []byte) []fakeMsg {
	rest, ok := strings.CutPrefix(topic, "$aws/things/"+f.thing+"/jobs/")
	if !ok {
		return nil
	}
	var token fakeTokenReq
	_ = json.Unmarshal(payload, &token) // best effort, for InvalidJson replies
	decode := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(payload))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}
	reject := func(code, msg string, ex *fakeExec) []fakeMsg {
		body := map[string]any{"code": code, "message": msg}
		if ex != nil && (code == "VersionMismatch" || code == "InvalidStateTransition") {
			body["executionState"] = ex.state()
		}
		return f.replyLocked(topic+"/rejected", token.ClientToken, body)
	}
	if !json.Valid(payload) {
		return reject("InvalidJson", "payload is not JSON", nil)
	}
	switch {
	case rest == "get":
		var req fakeTokenReq
		if err := decode(&req); err != nil {
			return reject("InvalidRequest", err.Error(), nil)
		}
		inProgress, queued := []map[string]any{}, []map[string]any{}
		for _, ex := range f.execs {
			switch ex.status {
			case "IN_PROGRESS":
				inProgress = append(inProgress, ex.summary())
			case "QUEUED":
				queued = append(queued, ex.summary())
			}
		}
		return f.replyLocked(topic+"/accepted", req.ClientToken, map[string]any{"inProgressJobs": inProgress, "queuedJobs": queued})
	case rest == "start-next":
		var req fakeStartNextReq
		if err := decode(&req); err != nil {
			return reject("InvalidRequest", err.Error(), nil)
		}
		if msg := fakeCheckDetails(req.StatusDetails); msg != "" {
			return reject("InvalidRequest", msg, nil)
		}
		ex := f.headLocked()
		if ex == nil {
			return f.replyLocked(topic+"/accepted", req.ClientToken, map[string]any{})
		}
		if ex.status == "QUEUED" {
			ex.status, ex.startedAt = "IN_PROGRESS", f.now()
			if req.StatusDetails != nil {
				ex.details = req.StatusDetails
			}
			ex.touch(f.now())
		}
		msgs := f.replyLocked(topic+"/accepted", req.ClientToken, map[string]any{"execution": ex.execution(true, f.thing)})
		return append(msgs, f.notifyLocked()...)
	case strings.HasSuffix(rest, "/get"):
		jobID := strings.TrimSuffix(rest, "/get")
		var req fakeDescribeReq
		if err := decode(&req); err != nil {
			return reject("InvalidRequest", err.Error(), nil)
		}
		withDoc := req.IncludeJobDocument == nil || *req.IncludeJobDocument
		if jobID == "$next" {
			body := map[string]any{}
			if ex := f.headLocked(); ex != nil {
				body["execution"] = ex.execution(withDoc, f.thing)
			}
			return f.replyLocked(topic+"/accepted", req.ClientToken, body)
		}
		ex := f.findLocked(jobID, req.ExecutionNumber)
		switch {
		case ex == nil:
			return reject("ResourceNotFound", "no execution of "+jobID, nil)
		case fakeTerminal(ex.status):
			return reject("TerminalStateReached", "execution is "+ex.status, nil)
		}
		return f.replyLocked(topic+"/accepted", req.ClientToken, map[string]any{"execution": ex.execution(withDoc, f.thing)})
	case strings.HasSuffix(rest, "/update"):
		jobID := strings.TrimSuffix(rest, "/update")
		var req fakeUpdateReq
		if err := decode(&req); err != nil {
			return reject("InvalidRequest", err.Error(), nil)
		}
		switch req.Status {
		case "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED":
		default:
			return reject("InvalidRequest", fmt.Sprintf("status %q", req.Status), nil)
		}
		if msg := fakeCheckDetails(req.StatusDetails); msg != "" {
			return reject("InvalidRequest", msg, nil)
		}
		for k, v := range req.StatusDetails {
			if f.refuse != "" && v == f.refuse {
				return reject("InvalidRequest", fmt.Sprintf("statusDetails %q refused", k), nil)
			}
		}
		ex := f.findLocked(jobID, req.ExecutionNumber)
		switch {
		case ex == nil:
			return reject("ResourceNotFound", "no execution of "+jobID, nil)
		case fakeTerminal(ex.status):
			return reject("InvalidStateTransition", fmt.Sprintf("%s to %s", ex.status, req.Status), ex)
		case req.ExpectedVersion != nil && *req.ExpectedVersion != ex.version:
			return reject("VersionMismatch", fmt.Sprintf("expected version %d, have %d", *req.ExpectedVersion, ex.version), ex)
		}
		if ex.status == "QUEUED" {
			ex.startedAt = f.now()
		}
		ex.status = req.Status
		if req.StatusDetails != nil {
			ex.details = req.StatusDetails
		}
		ex.touch(f.now())
		body := map[string]any{}
		if req.IncludeJobExecutionState {
			body["executionState"] = ex.state()
		}
		if req.IncludeJobDocument {
			body["jobDocument"] = json.RawMessage(ex.doc)
		}
		msgs := f.replyLocked(topic+"/accepted", req.ClientToken, body)
		return append(msgs, f.notifyLocked()...)
	}
	return reject("InvalidTopic", "no such Jobs API", nil)
}

func fakeCheckDetails(d map[string]string) string {
	if len(d) > 10 {
		return "too many statusDetails"
	}
	for k, v := range d {
		if !fakeKey.MatchString(k) || v == "" || len([]rune(v)) > 1024 || strings.ContainsAny(v, "\n\r\t\x00") {
			return fmt.Sprintf("bad statusDetails %q", k)
		}
	}
	return ""
}

func fakeTerminal(status string) bool {
	switch status {
	case "QUEUED", "IN_PROGRESS":
		return false
	}
	return true
}

// replyLocked builds a reply, applying the drop, mangle and foreign hooks.
func (f *fakeJobs) replyLocked(topic, token string, body map[string]any) []fakeMsg {
	body["timestamp"] = f.now()
	if token != "" {
		body["clientToken"] = token
	}
	payload, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	var msgs []fakeMsg
	if f.foreign {
		other := strings.Replace(topic, "/things/"+f.thing+"/", "/things/other-thing/", 1)
		fake := map[string]any{"clientToken": token, "execution": map[string]any{"jobId": "not-yours", "status": "IN_PROGRESS", "versionNumber": 99}}
		p, _ := json.Marshal(fake)
		msgs = append(msgs, fakeMsg{topic: other, payload: p, reply: true})
	}
	if f.dropReply != nil && f.dropReply(topic) {
		return msgs
	}
	if f.mangle != nil {
		topic, payload = f.mangle(topic, payload)
	}
	return append(msgs, fakeMsg{topic: topic, payload: payload, reply: true})
}

func (f *fakeJobs) headLocked() *fakeExec {
	for _, want := range []string{"IN_PROGRESS", "QUEUED"} {
		for _, ex := range f.execs {
			if ex.status == want {
				return ex
			}
		}
	}
	return nil
}

func (f *fakeJobs) findLocked(jobID string, number *int64) *fakeExec {
	var found *fakeExec
	for _, ex := range f.execs {
		if ex.jobID == jobID && (number == nil || *number == ex.number) {
			found = ex // the latest
		}
	}
	return found
}

// notifyLocked publishes notify-next when the head changes and notify when
// the pending set changes.
func (f *fakeJobs) notifyLocked() []fakeMsg {
	var msgs []fakeMsg
	head, body := "", map[string]any{"timestamp": f.now()}
	if ex := f.headLocked(); ex != nil {
		head = fmt.Sprintf("%s#%d", ex.jobID, ex.number)
		body["execution"] = ex.execution(true, f.thing)
	}
	if head != f.head {
		f.head = head
		p, _ := json.Marshal(body)
		msgs = append(msgs, fakeMsg{topic: "$aws/things/" + f.thing + "/jobs/notify-next", payload: p})
	}
	var ids []string
	lists := map[string][]map[string]any{}
	for _, status := range []string{"IN_PROGRESS", "QUEUED"} {
		for _, ex := range f.execs {
			if ex.status == status {
				ids = append(ids, ex.jobID)
				lists[status] = append(lists[status], ex.summary())
			}
		}
	}
	slices.Sort(ids)
	if set := strings.Join(ids, ","); set != f.pending {
		f.pending = set
		p, _ := json.Marshal(map[string]any{"timestamp": f.now(), "jobs": lists})
		msgs = append(msgs, fakeMsg{topic: "$aws/things/" + f.thing + "/jobs/notify", payload: p})
	}
	return msgs
}

func (ex *fakeExec) touch(now int64) {
	ex.version++
	ex.lastUpdatedAt = now
}

func (ex *fakeExec) state() map[string]any {
	m := map[string]any{"status": ex.status, "versionNumber": ex.version}
	if len(ex.details) > 0 {
		m["statusDetails"] = ex.details
	}
	return m
}

func (ex *fakeExec) summary() map[string]any {
	m := map[string]any{"jobId": ex.jobID, "queuedAt": ex.queuedAt, "lastUpdatedAt": ex.lastUpdatedAt,
		"versionNumber": ex.version, "executionNumber": ex.number}
	if ex.startedAt != 0 {
		m["startedAt"] = ex.startedAt
	}
	return m
}

func (ex *fakeExec) execution(withDoc bool, thing string) map[string]any {
	m := ex.summary()
	m["thingName"] = thing
	m["status"] = ex.status
	if len(ex.details) > 0 {
		m["statusDetails"] = ex.details
	}
	if withDoc {
		m["jobDocument"] = json.RawMessage(ex.doc)
	}
	return m
}

// admin runs fn on the service's state, then publishes the notifications
// the change causes.
func (f *fakeJobs) admin(fn func()) {
	f.mu.Lock()
	fn()
	msgs := f.notifyLocked()
	f.mu.Unlock()
	f.deliver(msgs)
}

// add queues an execution of a new job with document doc.
func (f *fakeJobs) add(jobID, doc string) {
	f.admin(func() {
		now := f.now()
		f.execs = append(f.execs, &fakeExec{jobID: jobID, doc: doc, status: "QUEUED", version: 1, number: 1, queuedAt: now, lastUpdatedAt: now})
	})
}

// set forces the status of jobID's latest execution, as the console or the
// service would (CANCELED, REMOVED, IN_PROGRESS ...).
func (f *fakeJobs) set(jobID, status string) {
	f.admin(func() {
		ex := f.findLocked(jobID, nil)
		if ex.status == "QUEUED" && status == "IN_PROGRESS" {
			ex.startedAt = f.now()
		}
		ex.status = status
		ex.touch(f.now())
	})
}

// setQuietly forces a status like set but publishes no notification (one
// that got lost).
func (f *fakeJobs) setQuietly(jobID, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ex := f.findLocked(jobID, nil)
	ex.status = status
	ex.touch(f.now())
}

// bump changes the version of jobID's execution behind the device's back.
func (f *fakeJobs) bump(jobID string) {
	f.admin(func() { f.findLocked(jobID, nil).touch(f.now()) })
}

// get returns a copy of jobID's latest execution.
func (f *fakeJobs) get(jobID string) fakeExec {
	f.mu.Lock()
	defer f.mu.Unlock()
	ex := *f.findLocked(jobID, nil)
	ex.details = maps.Clone(ex.details)
	return ex
}

func (f *fakeJobs) setOffline(off bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offline = off
}

func (f *fakeJobs) setUnsolicited(h func(string, []byte)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsolicited = h
}

// published returns the requests seen so far on topics ending in suffix.
func (f *fakeJobs) published(suffix string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if strings.HasSuffix(r.topic, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// testLogger logs to the test's output at debug level.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
