package sim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

func jobsTopic(thing, suffix string) string { return "$aws/things/" + thing + "/jobs/" + suffix }

// notifications returns the topics of the notify and notify-next messages
// in msgs and records them in tr.
func notifications(tr *transcript, msgs []received) []string {
	var topics []string
	for _, m := range msgs {
		if strings.HasSuffix(m.topic, "/notify") || strings.HasSuffix(m.topic, "/notify-next") {
			topics = append(topics, m.topic[strings.LastIndex(m.topic, "/")+1:])
			tr.message(m.topic, m.payload)
		}
	}
	return topics
}

// The worked example of aws-iot-protocol.md §1.5: notify when the set of
// pending executions changes, notify-next only when the head changes.
func TestJobsNotifySequence(t *testing.T) {
	clock := newFrozenClock()
	s := clock.start(t)
	d := dialDevice(t, s, s.NewDevice(t, "dev1"))
	wait(t, d.Subscribe(jobsTopic("dev1", "notify"), 1, d.in.add), "subscribe to notify")
	wait(t, d.Subscribe(jobsTopic("dev1", "notify-next"), 1, d.in.add), "subscribe to notify-next")
	tr := &transcript{}
	tr.replace(clock.epoch(), "<now>")

	update := func(job, status string) func() {
		return func() {
			if suffix, reply := d.request(t, jobsTopic("dev1", job+"/update"), map[string]any{"status": status}); suffix != "accepted" {
				t.Fatalf("update %s to %s: %s %s", job, status, suffix, reply)
			}
		}
	}
	create := func(job string) func() {
		return func() { s.CreateJob(t, job, "dev1", fmt.Sprintf(`{"operation":"test","job":%q}`, job)) }
	}
	for _, step := range []struct {
		name string
		do   func()
		want []string
	}{
		{"create job1", create("job1"), []string{"notify", "notify-next"}},
		{"create job2", create("job2"), []string{"notify"}},
		{"job1 IN_PROGRESS", update("job1", "IN_PROGRESS"), nil},
		{"create job3", create("job3"), []string{"notify"}},
		{"job1 SUCCEEDED", update("job1", "SUCCEEDED"), []string{"notify", "notify-next"}},
		{"job3 IN_PROGRESS", update("job3", "IN_PROGRESS"), []string{"notify-next"}},
		{"job2 REJECTED", update("job2", "REJECTED"), []string{"notify"}},
		{"job3 canceled with force", func() {
			if _, err := s.Client().CancelJob(t.Context(), "job3", true, api.CancelJobRequest{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"notify", "notify-next"}},
	} {
		tr.note("%s", step.name)
		step.do()
		if diff := cmp.Diff(step.want, notifications(tr, d.flush(t))); diff != "" {
			t.Errorf("after %s, notifications (-want +got):\n%s", step.name, diff)
		}
	}
	tr.check(t, "jobs-notify-sequence")
}

// Every device operation and rejection code, sent by a client that never
// subscribed to a reply topic: the replies reach it anyway.
func TestJobsDeviceAPI(t *testing.T) {
	clock := newFrozenClock()
	s := clock.start(t)
	d := dialDevice(t, s, s.NewDevice(t, "dev1"))
	tr := &transcript{}
	tr.replace(clock.epoch(), "<now>")

	tooMany := map[string]string{}
	for i := range 11 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	type req struct {
		topic   string // after $aws/things/dev1/jobs/
		payload any
		want    string // accepted or rejected
	}
	run := func(steps ...req) {
		t.Helper()
		for _, r := range steps {
			topic := jobsTopic("dev1", r.topic)
			suffix, reply := d.request(t, topic, r.payload)
			if suffix != r.want {
				t.Errorf("%s %v: %s %s, want %s", r.topic, r.payload, suffix, reply, r.want)
			}
			note := strings.ReplaceAll(fmt.Sprintf("%s %v", r.topic, r.payload), "\n", `\n`)
			if len(note) > 120 {
				note = note[:120] + "..."
			}
			tr.note("%s", note)
			tr.message(topic+"/"+suffix, reply)
		}
	}
	run(
		req{"get", "", "accepted"},
		req{"start-next", map[string]any{"clientToken": "t0"}, "accepted"},
		req{"$next/get", map[string]any{"clientToken": "t1"}, "accepted"},
	)
	s.CreateJob(t, "job1", "dev1", `{"operation":"rotate-certificate","keyAlgorithm":"ECDSA_P256"}`)
	s.CreateJob(t, "job2", "dev1", `{"operation":"noop"}`)
	run(
		req{"get", map[string]any{"clientToken": "t2"}, "accepted"},
		req{"$next/get", map[string]any{"includeJobDocument": false}, "accepted"},
		req{"job2/get", map[string]any{"clientToken": "t3", "executionNumber": 1}, "accepted"},
		req{"start-next", map[string]any{"statusDetails": map[string]string{"step": "started"}, "clientToken": "t4"}, "accepted"},
		req{"start-next", map[string]any{"statusDetails": map[string]string{"step": "ignored"}}, "accepted"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "expectedVersion": 2, "statusDetails": map[string]string{"step": "key-generated"},
			"includeJobExecutionState": true, "includeJobDocument": true, "clientToken": "t5"}, "accepted"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "expectedVersion": 2, "clientToken": "t6"}, "rejected"},
		req{"job1/update", map[string]any{"status": "DONE"}, "rejected"},
		req{"job1/update", map[string]any{"statusDetails": map[string]string{"a": "b"}}, "rejected"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "statusDetails": tooMany}, "rejected"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"bad key": "v"}}, "rejected"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"k": strings.Repeat("v", 1025)}}, "rejected"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"k": "line\nbreak"}}, "rejected"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0}, "rejected"},
		req{"job1/update", map[string]any{"status": "QUEUED", "clientToken": "t7"}, "rejected"},
		req{"job1/update", map[string]any{"status": "SUCCEEDED", "statusDetails": map[string]string{"step": "committed"}, "includeJobExecutionState": true}, "accepted"},
		req{"job1/update", map[string]any{"status": "IN_PROGRESS", "clientToken": "t8"}, "rejected"},
		req{"job1/get", map[string]any{}, "rejected"},
		req{"nope/update", map[string]any{"status": "IN_PROGRESS"}, "rejected"},
		req{"job2/get", map[string]any{"executionNumber": 5}, "rejected"},
		req{"job2/update", "{not json", "rejected"},
		req{"job2/update", map[string]any{"clientToken": "t9", "status": 5}, "rejected"},
		req{"job2/bogus", map[string]any{"clientToken": "t10"}, "rejected"},
		req{"start-next", map[string]any{"stepTimeoutInMinutes": 10081}, "rejected"},
		req{"job2/update", map[string]any{"status": "SUCCEEDED", "expectedVersion": 1, "includeJobDocument": true}, "accepted"},
		req{"$next/get", "", "accepted"},
	)
	tr.check(t, "jobs-device-api")

	// The jobs state as the control plane sees it.
	job, err := s.Client().DescribeJob(t.Context(), "job1")
	if err != nil {
		t.Fatal(err)
	}
	if job.Job.Status != "COMPLETED" || job.Job.JobProcessDetails.NumberOfSucceededThings != 1 {
		t.Errorf("job1 = %+v, want COMPLETED with one SUCCEEDED thing", job.Job)
	}
	ex := s.JobExecution(t, "dev1", "job1")
	if want := map[string]string{"step": "committed"}; ex.VersionNumber != 4 || !cmp.Equal(ex.StatusDetails.DetailsMap, want) {
		t.Errorf("job1 execution = %+v, want version 4 with statusDetails %v", ex, want)
	}
}

// Replies go to the requesting connection only, once, even to a client that
// subscribed to them; other clients see nothing of another thing's jobs.
func TestJobsRepliesOnlyToRequester(t *testing.T) {
	s := simtest.Start(t)
	dev1 := dialDevice(t, s, s.NewDevice(t, "dev1"))
	dev2 := dialDevice(t, s, s.NewDevice(t, "dev2"))
	wait(t, dev2.Subscribe("#", 1, dev2.in.add), "dev2 subscribes to #")
	wait(t, dev1.Subscribe(jobsTopic("dev1", "get/accepted"), 1, dev1.in.add), "dev1 subscribes to get/accepted")
	s.CreateJob(t, "job1", "dev1", `{"operation":"noop"}`)

	if suffix, _ := dev1.request(t, jobsTopic("dev1", "get"), `{"clientToken":"a"}`); suffix != "accepted" {
		t.Fatalf("get: %s", suffix)
	}
	if suffix, _ := dev1.request(t, jobsTopic("dev1", "start-next"), `{}`); suffix != "accepted" {
		t.Fatalf("start-next: %s", suffix)
	}
	for _, m := range dev1.flush(t) {
		if strings.HasSuffix(m.topic, "/accepted") || strings.HasSuffix(m.topic, "/rejected") {
			t.Errorf("dev1 received a second reply on %s: %s", m.topic, m.payload)
		}
	}
	for _, m := range dev2.flush(t) {
		if strings.Contains(m.topic, "/jobs/") {
			t.Errorf("dev2 received %s: %s", m.topic, m.payload)
		}
	}
}

// A client may not publish to, subscribe to or receive another thing's job
// topics.
func TestJobsOtherThingsTopicsRefused(t *testing.T) {
	s := simtest.Start(t)
	dev1 := dialDevice(t, s, s.NewDevice(t, "dev1"))
	dev2 := dialDevice(t, s, s.NewDevice(t, "dev2"))

	tok := dev2.SubscribeMultiple(map[string]byte{
		jobsTopic("dev1", "notify"): 1, "$aws/things/+/jobs/notify-next": 1, jobsTopic("dev2", "notify"): 1,
	}, dev2.in.add)
	wait(t, tok, "subscribe")
	want := map[string]byte{jobsTopic("dev1", "notify"): 0x80, "$aws/things/+/jobs/notify-next": 0x80, jobsTopic("dev2", "notify"): 1}
	if diff := cmp.Diff(want, tok.(*paho.SubscribeToken).Result()); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	wait(t, dev2.Subscribe("$aws/things/#", 1, dev2.in.add), "subscribe to $aws/things/#")

	s.CreateJob(t, "job1", "dev1", `{"operation":"noop"}`)
	dev1.flush(t)
	for _, m := range dev2.flush(t) {
		t.Errorf("dev2 received %s: %s", m.topic, m.payload)
	}

	// Publishing to dev1's update topic at QoS 1 costs dev2 its connection
	// (MQTT 3 has no negative PUBACK) and changes nothing.
	dev2.Publish(jobsTopic("dev1", "job1/update"), 1, false, `{"status":"SUCCEEDED"}`)
	dev2.waitLost(t)
	s.WaitLog(t, "not authorized: reserved topic of another thing", "clientId=dev2")
	if ex := s.JobExecution(t, "dev1", "job1"); ex.Status != "QUEUED" || ex.VersionNumber != 1 {
		t.Errorf("dev1's execution = %+v, want it untouched (QUEUED, version 1)", ex)
	}
}

func TestJobsTimeouts(t *testing.T) {
	const unit = 40 * time.Millisecond
	s := simtest.StartWith(t, sim.Options{JobTimeoutUnit: unit})
	dev := s.NewDevice(t, "dev1")
	d := dialDevice(t, s, dev)
	wait(t, d.Subscribe("$aws/events/jobExecution/+/timed_out", 1, d.in.add), "subscribe to timed_out events")

	t.Run("step timeout", func(t *testing.T) {
		s.CreateJob(t, "step", "dev1", `{"operation":"noop"}`)
		d.request(t, jobsTopic("dev1", "start-next"), `{"stepTimeoutInMinutes":2}`)
		ex := s.WaitJobExecution(t, "dev1", "step", "TIMED_OUT", 5*time.Second)
		if ex.VersionNumber != 3 {
			t.Errorf("versionNumber = %d, want 3 (queued 1, started 2, timed out 3)", ex.VersionNumber)
		}
		if _, ok := d.in.take(func(m received) bool { return m.topic == "$aws/events/jobExecution/step/timed_out" }, 5*time.Second); !ok {
			t.Error("no timed_out event")
		}
	})
	t.Run("-1 clears the step timer", func(t *testing.T) {
		s.CreateJob(t, "cleared", "dev1", `{"operation":"noop"}`)
		d.request(t, jobsTopic("dev1", "start-next"), `{"stepTimeoutInMinutes":2}`)
		d.request(t, jobsTopic("dev1", "cleared/update"), `{"status":"IN_PROGRESS","stepTimeoutInMinutes":-1}`)
		time.Sleep(5 * unit)
		if ex := s.JobExecution(t, "dev1", "cleared"); ex.Status != "IN_PROGRESS" {
			t.Errorf("status = %s after the cleared timer's deadline, want IN_PROGRESS", ex.Status)
		}
		d.request(t, jobsTopic("dev1", "cleared/update"), `{"status":"SUCCEEDED"}`)
	})
	t.Run("an update resets the step timer", func(t *testing.T) {
		s.CreateJob(t, "reset", "dev1", `{"operation":"noop"}`)
		d.request(t, jobsTopic("dev1", "start-next"), `{"stepTimeoutInMinutes":2}`)
		d.request(t, jobsTopic("dev1", "reset/update"), `{"status":"IN_PROGRESS","stepTimeoutInMinutes":50}`)
		time.Sleep(5 * unit)
		if ex := s.JobExecution(t, "dev1", "reset"); ex.Status != "IN_PROGRESS" || ex.ApproximateSecondsBeforeTimedOut < 0 {
			t.Errorf("execution = %+v, want IN_PROGRESS with the new deadline", ex)
		}
		d.request(t, jobsTopic("dev1", "reset/update"), `{"status":"SUCCEEDED"}`)
	})
	t.Run("job in-progress timeout", func(t *testing.T) {
		_, err := s.Client().CreateJob(t.Context(), "inprogress", api.CreateJobRequest{
			Targets: []string{registry.ThingARN("dev1")}, Document: `{"operation":"noop"}`,
			TimeoutConfig: &api.TimeoutConfig{InProgressTimeoutInMinutes: 2},
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * unit)
		if ex := s.JobExecution(t, "dev1", "inprogress"); ex.Status != "QUEUED" {
			t.Errorf("status = %s before the device started it, want QUEUED (the timer starts at IN_PROGRESS)", ex.Status)
		}
		d.request(t, jobsTopic("dev1", "start-next"), `{}`)
		s.WaitJobExecution(t, "dev1", "inprogress", "TIMED_OUT", 5*time.Second)
	})
}

func TestJobsThingGroups(t *testing.T) {
	s := simtest.Start(t)
	s.NewDevice(t, "early")
	late := s.NewDevice(t, "late")
	s.CreateThingGroup(t, "fleet")
	s.AddThingToThingGroup(t, "fleet", "early")
	s.CreateGroupJob(t, "continuous", "fleet", `{"operation":"noop"}`, true)
	s.CreateGroupJob(t, "snapshot", "fleet", `{"operation":"noop"}`, false)
	for _, job := range []string{"continuous", "snapshot"} {
		s.WaitJobExecution(t, "early", job, "QUEUED", time.Second)
	}

	d := dialDevice(t, s, late)
	wait(t, d.Subscribe(jobsTopic("late", "notify-next"), 1, d.in.add), "subscribe to notify-next")
	s.AddThingToThingGroup(t, "fleet", "late")
	msgs := d.flush(t)
	if len(msgs) != 1 || msgs[0].topic != jobsTopic("late", "notify-next") || !strings.Contains(string(msgs[0].payload), `"jobId":"continuous"`) {
		t.Errorf("after joining the group, late received %q, want notify-next for the continuous job", msgs)
	}
	resp, err := s.Client().ListJobExecutionsForThing(t.Context(), "late", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ExecutionSummaries) != 1 || resp.ExecutionSummaries[0].JobID != "continuous" {
		t.Errorf("late's executions = %+v, want only the continuous job's", resp.ExecutionSummaries)
	}

	// Leaving the group removes the pending execution of the continuous job;
	// joining again queues a new one.
	if err := s.Client().RemoveThingFromThingGroup(t.Context(), "fleet", "late"); err != nil {
		t.Fatal(err)
	}
	s.WaitJobExecution(t, "late", "continuous", "REMOVED", time.Second)
	s.AddThingToThingGroup(t, "fleet", "late")
	if ex := s.WaitJobExecution(t, "late", "continuous", "QUEUED", time.Second); ex.ExecutionNumber != 2 {
		t.Errorf("executionNumber after rejoining = %d, want 2", ex.ExecutionNumber)
	}
	if job, err := s.Client().DescribeJob(t.Context(), "continuous"); err != nil || job.Job.Status != "IN_PROGRESS" {
		t.Errorf("continuous job = %+v, %v; want IN_PROGRESS", job.Job, err)
	}
}

// Jobs, executions and step timers are in the database and survive a
// restart of the simulator.
func TestJobsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	const unit = 100 * time.Millisecond
	s1 := simtest.StartWith(t, sim.Options{Dir: dir, JobTimeoutUnit: unit})
	dev := s1.NewDevice(t, "dev1")
	s1.CreateJob(t, "kept", "dev1", `{"operation":"noop"}`)
	s1.CreateJob(t, "timed", "dev1", `{"operation":"noop"}`)
	d := dialDevice(t, s1, dev)
	d.request(t, jobsTopic("dev1", "kept/update"), `{"status":"IN_PROGRESS","statusDetails":{"step":"one"}}`)
	d.request(t, jobsTopic("dev1", "timed/update"), `{"status":"IN_PROGRESS","stepTimeoutInMinutes":5}`)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := simtest.StartWith(t, sim.Options{Dir: dir, JobTimeoutUnit: unit})
	ex := s2.JobExecution(t, "dev1", "kept")
	if ex.Status != "IN_PROGRESS" || ex.VersionNumber != 2 || ex.StatusDetails.DetailsMap["step"] != "one" {
		t.Errorf("execution after restart = %+v, want IN_PROGRESS, version 2, step one", ex)
	}
	s2.WaitJobExecution(t, "dev1", "timed", "TIMED_OUT", 5*time.Second)
	d = dialDevice(t, s2, dev)
	_, reply := d.requestJSON(t, jobsTopic("dev1", "kept/update"), `{"status":"SUCCEEDED","expectedVersion":2}`)
	if _, ok := reply["timestamp"]; !ok {
		t.Errorf("update after restart: %v", reply)
	}
	s2.WaitJobExecution(t, "dev1", "kept", "SUCCEEDED", time.Second)
	jobs, err := s2.Client().ListJobs(t.Context(), "COMPLETED", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range jobs.Jobs {
		ids = append(ids, j.JobID)
	}
	slices.Sort(ids)
	if diff := cmp.Diff([]string{"kept", "timed"}, ids); diff != "" {
		t.Errorf("COMPLETED jobs (-want +got):\n%s", diff)
	}
}

func TestJobDocumentLimit(t *testing.T) {
	s := simtest.Start(t)
	s.NewDevice(t, "dev1")
	pad := func(n int) string { // a JSON object of exactly n bytes
		return `{"p":"` + strings.Repeat("x", n-len(`{"p":""}`)) + `"}`
	}
	for _, tc := range []struct {
		size int
		ok   bool
	}{{32768, true}, {32769, false}} {
		doc := pad(tc.size)
		if !json.Valid([]byte(doc)) || len(doc) != tc.size {
			t.Fatalf("bad test document of %d bytes", len(doc))
		}
		_, err := s.Client().CreateJob(t.Context(), fmt.Sprintf("doc%d", tc.size), api.CreateJobRequest{Targets: []string{registry.ThingARN("dev1")}, Document: doc})
		var apiErr *api.Error
		if tc.ok && err != nil || !tc.ok && (!errors.As(err, &apiErr) || apiErr.StatusCode != 400) {
			t.Errorf("CreateJob with a %d-byte document: %v, want ok=%v (400 otherwise)", tc.size, err, tc.ok)
		}
	}
}
