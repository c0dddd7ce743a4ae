package jobs_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness drives a Service without a broker.
type harness struct {
	*jobs.Service
	reg *registry.Registry

	mu        sync.Mutex
	published []string // topics
}

func newHarness(t *testing.T, unit time.Duration) *harness {
	t.Helper()
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{reg: reg}
	h.Service, err = jobs.New(jobs.Options{Registry: reg, Publish: h.publish, TimeoutUnit: unit})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		reg.Close()
	})
	return h
}

func (h *harness) publish(topic string, _ []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.published = append(h.published, topic)
	return nil
}

func (h *harness) thing(t *testing.T, name string) {
	t.Helper()
	if _, _, err := h.reg.CreateThing(name, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) job(t *testing.T, id string, targets ...string) {
	t.Helper()
	in := jobs.CreateJobInput{JobID: id, Targets: targets, Document: `{"operation":"test"}`}
	if strings.Contains(targets[0], ":thinggroup/") {
		in.TargetSelection = jobs.Continuous
	}
	if _, err := h.CreateJob(in); err != nil {
		t.Fatal(err)
	}
}

// request sends a device request from thing and returns the reply topic's
// last segment ("accepted" or "rejected") and body; "" if there was none.
func (h *harness) request(t *testing.T, thing, suffix, payload string) (string, map[string]any) {
	t.Helper()
	var replies []string
	var body map[string]any
	topic := "$aws/things/" + thing + "/jobs/" + suffix
	handled := h.HandleRequest(broker.NewRequest(thing, "cert", topic, []byte(payload), func(rt string, p []byte) {
		replies = append(replies, rt)
		if err := json.Unmarshal(p, &body); err != nil {
			t.Errorf("reply on %s is not JSON: %s", rt, p)
		}
	}))
	if !handled {
		t.Fatalf("%s not handled", topic)
	}
	switch len(replies) {
	case 0:
		return "", nil
	case 1:
		if !strings.HasPrefix(replies[0], topic+"/") {
			t.Fatalf("reply to %s on %s", topic, replies[0])
		}
		return strings.TrimPrefix(replies[0], topic+"/"), body
	}
	t.Fatalf("%d replies to %s", len(replies), topic)
	return "", nil
}

// The execution state machine of aws-iot-protocol.md §1.7, from every status
// to every status a device might ask for.
func TestStateMachine(t *testing.T) {
	h := newHarness(t, 10*time.Millisecond)
	h.thing(t, "dev1")
	if _, _, err := h.reg.CreateThingGroup("g", "", time.Now()); err != nil {
		t.Fatal(err)
	}

	// reach puts a new execution of job on dev1 into status.
	reach := func(t *testing.T, job, status string) {
		t.Helper()
		if status == jobs.StatusRemoved {
			if _, err := h.reg.AddThingToGroup("g", "dev1"); err != nil {
				t.Fatal(err)
			}
			h.job(t, job, registry.ThingGroupARN("g"))
			if _, err := h.reg.RemoveThingFromGroup("g", "dev1"); err != nil {
				t.Fatal(err)
			}
			if err := h.ThingRemovedFromGroup("g", "dev1"); err != nil {
				t.Fatal(err)
			}
			return
		}
		h.job(t, job, registry.ThingARN("dev1"))
		switch status {
		case jobs.StatusQueued:
		case jobs.StatusCanceled:
			if _, err := h.CancelJob(job, false, "", ""); err != nil {
				t.Fatal(err)
			}
		case jobs.StatusTimedOut:
			h.request(t, "dev1", job+"/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":1}`)
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if e, _ := h.Execution("dev1", job, 0); e.Status == status {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("execution did not time out: %+v", e)
				}
			}
		default:
			if r, body := h.request(t, "dev1", job+"/update", fmt.Sprintf(`{"status":%q}`, status)); r != "accepted" {
				t.Fatalf("reach %s: %s %v", status, r, body)
			}
		}
		if e, err := h.Execution("dev1", job, 0); err != nil || e.Status != status {
			t.Fatalf("execution = %+v, %v; want %s", e, err, status)
		}
	}

	n := 0
	for _, from := range jobs.ExecutionStatuses {
		for _, to := range append(jobs.ExecutionStatuses[:len(jobs.ExecutionStatuses):len(jobs.ExecutionStatuses)], "DONE") {
			want := "InvalidStateTransition"
			switch {
			case to == "DONE":
				want = "InvalidRequest"
			case jobs.IsTerminal(from):
			case to == jobs.StatusInProgress || to == jobs.StatusSucceeded || to == jobs.StatusFailed || to == jobs.StatusRejected:
				want = "accepted"
			}
			t.Run(from+" to "+to, func(t *testing.T) {
				n++
				job := fmt.Sprintf("j%d", n)
				reach(t, job, from)
				before, _ := h.Execution("dev1", job, 0)
				r, body := h.request(t, "dev1", job+"/update", fmt.Sprintf(`{"status":%q,"includeJobExecutionState":true}`, to))
				after, _ := h.Execution("dev1", job, 0)
				got := r
				if r == "rejected" {
					got, _ = body["code"].(string)
				}
				if got != want {
					t.Fatalf("update %s → %s: %s %v, want %s", from, to, r, body, want)
				}
				wantVersion, wantStatus := before.VersionNumber, from
				if want == "accepted" {
					wantVersion, wantStatus = before.VersionNumber+1, to
				}
				if after.VersionNumber != wantVersion || after.Status != wantStatus {
					t.Errorf("after: %s version %d, want %s version %d", after.Status, after.VersionNumber, wantStatus, wantVersion)
				}
				if want == "InvalidStateTransition" {
					state, _ := body["executionState"].(map[string]any)
					if state["status"] != from || state["versionNumber"] != float64(before.VersionNumber) {
						t.Errorf("executionState = %v, want status %s version %d", state, from, before.VersionNumber)
					}
				}
			})
		}
	}
}

func TestPendingListsAreCappedAtTen(t *testing.T) {
	h := newHarness(t, 0)
	h.thing(t, "dev1")
	for i := range 12 {
		h.job(t, fmt.Sprintf("job%02d", i), registry.ThingARN("dev1"))
	}
	_, body := h.request(t, "dev1", "get", "")
	if q, _ := body["queuedJobs"].([]any); len(q) != 10 {
		t.Errorf("get returned %d queued jobs, want 10", len(q))
	} else if first := q[0].(map[string]any)["jobId"]; first != "job00" {
		t.Errorf("first queued job = %v, want job00 (queue order)", first)
	}
}

func TestRequestsNotServed(t *testing.T) {
	h := newHarness(t, 0)
	h.thing(t, "dev1")
	for _, topic := range []string{"$aws/things/dev1/shadow/get", "dev1/jobs/get", "$aws/things/dev1"} {
		if h.HandleRequest(broker.NewRequest("dev1", "c", topic, nil, func(string, []byte) { t.Errorf("reply to %s", topic) })) {
			t.Errorf("%s handled by jobs", topic)
		}
	}
	for _, topic := range []string{
		"$aws/things/dev2/jobs/get",                  // another thing's (the broker refuses it first)
		"$aws/things/dev1/jobs/notify",               // a notification topic
		"$aws/things/dev1/jobs/get/accepted",         // a reply topic
		"$aws/things/dev1/jobs/job1/update/rejected", // a reply topic
	} {
		if !h.HandleRequest(broker.NewRequest("dev1", "c", topic, []byte(`{}`), func(string, []byte) { t.Errorf("reply to %s", topic) })) {
			t.Errorf("%s not swallowed", topic)
		}
	}
}

// Close stops the timers: an execution whose step timer was pending stays
// IN_PROGRESS, and no goroutine is left behind (goleak).
func TestCloseStopsTimers(t *testing.T) {
	h := newHarness(t, 20*time.Millisecond)
	h.thing(t, "dev1")
	h.job(t, "j", registry.ThingARN("dev1"))
	h.request(t, "dev1", "start-next", `{"stepTimeoutInMinutes":1}`)
	h.Close()
	time.Sleep(60 * time.Millisecond)
	if e, err := h.Execution("dev1", "j", 0); err != nil || e.Status != jobs.StatusInProgress {
		t.Errorf("execution after Close = %+v, %v; want IN_PROGRESS", e, err)
	}
	if _, err := h.CreateJob(jobs.CreateJobInput{JobID: "late", Targets: []string{registry.ThingARN("dev1")}, Document: `{}`}); err == nil {
		t.Error("CreateJob after Close succeeded")
	}
}

func TestValidateStatusDetails(t *testing.T) {
	ten := map[string]string{}
	for i := range 10 {
		ten[fmt.Sprintf("k%d", i)] = "v"
	}
	eleven := map[string]string{"k10": "v"}
	for k, v := range ten {
		eleven[k] = v
	}
	for _, tc := range []struct {
		name    string
		details map[string]string
		wantErr string
	}{
		{"nil", nil, ""},
		{"ten pairs", ten, ""},
		{"eleven pairs", eleven, "11 entries"},
		{"key with colon and dash", map[string]string{"a:b-c_D9": "v"}, ""},
		{"key with space", map[string]string{"a b": "v"}, "must match"},
		{"empty key", map[string]string{"": "v"}, "must match"},
		{"key of 128", map[string]string{strings.Repeat("k", 128): "v"}, ""},
		{"key of 129", map[string]string{strings.Repeat("k", 129): "v"}, "must match"},
		{"empty value", map[string]string{"k": ""}, "0 characters"},
		{"value of 1024 characters", map[string]string{"k": strings.Repeat("é", 1024)}, ""},
		{"value of 1025 characters", map[string]string{"k": strings.Repeat("v", 1025)}, "1025 characters"},
		{"tab", map[string]string{"k": "a\tb"}, "U+0009"},
		{"zero-width joiner (format character)", map[string]string{"k": "a\u200db"}, "U+200D"},
		{"invalid UTF-8", map[string]string{"k": "a\xffb"}, "U+FFFD"},
		{"unicode text", map[string]string{"reason": "clé expirée — renouvelée"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := jobs.ValidateStatusDetails(tc.details)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("ValidateStatusDetails = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateJobIDAndDocument(t *testing.T) {
	for id, ok := range map[string]bool{"a": true, "rotate-2025_01": true, strings.Repeat("j", 64): true,
		"": false, strings.Repeat("j", 65): false, "a.b": false, "a/b": false, "$next": false} {
		if err := jobs.ValidateJobID(id); (err == nil) != ok {
			t.Errorf("ValidateJobID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
	for doc, ok := range map[string]bool{`{}`: true, `{"operation":"x"}`: true, ``: false, `[]`: false, `"s"`: false, `{`: false,
		`{"p":"` + strings.Repeat("x", 32768-8) + `"}`: true, `{"p":"` + strings.Repeat("x", 32768-7) + `"}`: false} {
		if err := jobs.ValidateDocument(doc); (err == nil) != ok {
			t.Errorf("ValidateDocument(%.20q, %d bytes) = %v, want ok=%v", doc, len(doc), err, ok)
		}
	}
}

func TestDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		step, inProgress, want time.Time
	}{
		{time.Time{}, time.Time{}, time.Time{}},
		{t0, time.Time{}, t0},
		{time.Time{}, t0, t0},
		{t0, t0.Add(time.Second), t0},
		{t0.Add(time.Second), t0, t0},
	} {
		e := jobs.Execution{StepDeadline: tc.step, InProgressDeadline: tc.inProgress}
		if got := e.Deadline(); !got.Equal(tc.want) {
			t.Errorf("Deadline(step %v, in progress %v) = %v, want %v", tc.step, tc.inProgress, got, tc.want)
		}
	}
}
