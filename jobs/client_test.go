package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	thing = "dev-1"
	// ts is time.Now().Unix() in a synctest bubble (2000-01-01T00:00:00Z).
	ts = int64(946684800)
)

// newClientEnv returns a fake service and a Client on it. Unsolicited
// replies go to Client.HandleMessage, as the agent does; with subscribed the
// Client also subscribes (Start), and then no reply of this thing may
// arrive unsolicited.
func newClientEnv(t *testing.T, subscribed bool, opts ClientOptions) (*fakeJobs, *Client) {
	t.Helper()
	f := newFakeJobs(thing)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c := NewClient(thing, f, opts)
	var unsolicited atomic.Int32
	f.setUnsolicited(func(topic string, payload []byte) {
		if c.HandleMessage(topic, payload) {
			unsolicited.Add(1)
		}
	})
	if subscribed {
		if err := c.Start(t.Context()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() {
			if n := unsolicited.Load(); n != 0 {
				t.Errorf("%d replies of this thing arrived unsolicited despite the subscriptions", n)
			}
		})
	}
	return f, c
}

var deliveryModes = []struct {
	name       string
	subscribed bool
}{
	{"unsolicited", false},
	{"subscribed", true},
}

// ignoreTokens ignores what the fake's clock and the random tokens make
// vary.
var ignoreTokens = cmp.Options{
	cmpopts.IgnoreFields(PendingExecutions{}, "ClientToken"),
	cmpopts.IgnoreFields(UpdateAccepted{}, "ClientToken"),
	cmpopts.IgnoreFields(RejectedError{}, "ClientToken", "Message"),
}

func TestClientRequests(t *testing.T) {
	no := false
	doc := json.RawMessage(`{"operation":"echo"}`)
	queued := func(f *fakeJobs) { f.add("job-1", string(doc)) }
	tests := []struct {
		name    string
		setup   func(f *fakeJobs)
		call    func(ctx context.Context, c *Client) (any, error)
		want    any
		wantErr *RejectedError
	}{
		{
			name: "get-pending",
			setup: func(f *fakeJobs) {
				f.add("job-a", `{}`)
				f.add("job-b", `{}`)
				f.set("job-a", "IN_PROGRESS")
			},
			call: func(ctx context.Context, c *Client) (any, error) { return c.GetPending(ctx) },
			want: &PendingExecutions{
				InProgressJobs: []ExecutionSummary{{JobID: "job-a", QueuedAt: ts, StartedAt: ts, LastUpdatedAt: ts, VersionNumber: 2, ExecutionNumber: 1}},
				QueuedJobs:     []ExecutionSummary{{JobID: "job-b", QueuedAt: ts, LastUpdatedAt: ts, VersionNumber: 1, ExecutionNumber: 1}},
				Timestamp:      ts,
			},
		},
		{
			name: "get-pending, none",
			call: func(ctx context.Context, c *Client) (any, error) { return c.GetPending(ctx) },
			want: &PendingExecutions{InProgressJobs: []ExecutionSummary{}, QueuedJobs: []ExecutionSummary{}, Timestamp: ts},
		},
		{
			name:  "start-next",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.StartNext(ctx, StartNextRequest{StatusDetails: map[string]string{"step": "started"}, StepTimeoutInMinutes: 10})
			},
			want: &Execution{JobID: "job-1", ThingName: thing, JobDocument: doc, Status: StatusInProgress,
				StatusDetails: map[string]string{"step": "started"}, QueuedAt: ts, StartedAt: ts, LastUpdatedAt: ts, VersionNumber: 2, ExecutionNumber: 1},
		},
		{
			name: "start-next, nothing pending",
			call: func(ctx context.Context, c *Client) (any, error) { return c.StartNext(ctx, StartNextRequest{}) },
			want: (*Execution)(nil),
		},
		{
			name:  "describe",
			setup: queued,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.Describe(ctx, "job-1", DescribeRequest{}) },
			want: &Execution{JobID: "job-1", ThingName: thing, JobDocument: doc, Status: StatusQueued,
				QueuedAt: ts, LastUpdatedAt: ts, VersionNumber: 1, ExecutionNumber: 1},
		},
		{
			name:  "describe without document",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Describe(ctx, "job-1", DescribeRequest{IncludeJobDocument: &no, ExecutionNumber: 1})
			},
			want: &Execution{JobID: "job-1", ThingName: thing, Status: StatusQueued, QueuedAt: ts, LastUpdatedAt: ts, VersionNumber: 1, ExecutionNumber: 1},
		},
		{
			name:  "describe $next",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Describe(ctx, NextJobID, DescribeRequest{})
			},
			want: &Execution{JobID: "job-1", ThingName: thing, JobDocument: doc, Status: StatusQueued,
				QueuedAt: ts, LastUpdatedAt: ts, VersionNumber: 1, ExecutionNumber: 1},
		},
		{
			name: "describe $next, nothing pending",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Describe(ctx, NextJobID, DescribeRequest{})
			},
			want: (*Execution)(nil),
		},
		{
			name:    "describe unknown job",
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Describe(ctx, "job-9", DescribeRequest{}) },
			wantErr: &RejectedError{Code: CodeResourceNotFound, Timestamp: ts, Operation: OpDescribe, JobID: "job-9"},
		},
		{
			name: "describe terminal",
			setup: func(f *fakeJobs) {
				queued(f)
				f.set("job-1", "CANCELED")
			},
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Describe(ctx, "job-1", DescribeRequest{}) },
			wantErr: &RejectedError{Code: CodeTerminalStateReached, Timestamp: ts, Operation: OpDescribe, JobID: "job-1"},
		},
		{
			name:  "update",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, "job-1", UpdateRequest{Status: StatusInProgress, StatusDetails: map[string]string{"step": "one"},
					ExpectedVersion: 1, IncludeJobExecutionState: true, IncludeJobDocument: true, StepTimeoutInMinutes: 5})
			},
			want: &UpdateAccepted{ExecutionState: &ExecutionState{Status: StatusInProgress, StatusDetails: map[string]string{"step": "one"}, VersionNumber: 2},
				JobDocument: doc, Timestamp: ts},
		},
		{
			name:  "update, bare reply",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, "job-1", UpdateRequest{Status: StatusRejected})
			},
			want: &UpdateAccepted{Timestamp: ts},
		},
		{
			name:  "update, version mismatch",
			setup: queued,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, "job-1", UpdateRequest{Status: StatusInProgress, ExpectedVersion: 7})
			},
			wantErr: &RejectedError{Code: CodeVersionMismatch, Timestamp: ts, Operation: OpUpdate, JobID: "job-1",
				ExecutionState: &ExecutionState{Status: StatusQueued, VersionNumber: 1}},
		},
		{
			name: "update, terminal",
			setup: func(f *fakeJobs) {
				queued(f)
				f.set("job-1", "SUCCEEDED")
			},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, "job-1", UpdateRequest{Status: StatusFailed})
			},
			wantErr: &RejectedError{Code: CodeInvalidStateTransition, Timestamp: ts, Operation: OpUpdate, JobID: "job-1",
				ExecutionState: &ExecutionState{Status: StatusSucceeded, VersionNumber: 2}},
		},
		{
			name: "update, unknown job",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Update(ctx, "job-9", UpdateRequest{Status: StatusFailed})
			},
			wantErr: &RejectedError{Code: CodeResourceNotFound, Timestamp: ts, Operation: OpUpdate, JobID: "job-9"},
		},
	}
	for _, mode := range deliveryModes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f, c := newClientEnv(t, mode.subscribed, ClientOptions{})
					if tt.setup != nil {
						tt.setup(f)
					}
					got, err := tt.call(t.Context(), c)
					if tt.wantErr != nil {
						var rej *RejectedError
						if !errors.As(err, &rej) {
							t.Fatalf("got %v, %v; want a *RejectedError", got, err)
						}
						if diff := cmp.Diff(tt.wantErr, rej, ignoreTokens); diff != "" {
							t.Errorf("rejected error mismatch (-want +got):\n%s", diff)
						}
						return
					}
					if err != nil {
						t.Fatalf("got error %v", err)
					}
					if diff := cmp.Diff(tt.want, got, ignoreTokens); diff != "" {
						t.Errorf("reply mismatch (-want +got):\n%s", diff)
					}
					for _, r := range f.published("") {
						if r.qos != 1 {
							t.Errorf("published %s with QoS %d, want 1", r.topic, r.qos)
						}
					}
				})
			})
		}
	}
}

// TestClientUniqueTokens: concurrent requests each get their own reply.
func TestClientConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := newClientEnv(t, false, ClientOptions{})
		ids := []string{"job-a", "job-b", "job-c", "job-d"}
		for _, id := range ids {
			f.add(id, `{"operation":"x"}`)
		}
		got := make([]string, len(ids))
		done := make(chan struct{})
		for i, id := range ids {
			go func() {
				defer func() { done <- struct{}{} }()
				ex, err := c.Describe(t.Context(), id, DescribeRequest{})
				if err != nil {
					t.Errorf("Describe(%s): %v", id, err)
					return
				}
				got[i] = ex.JobID
			}()
		}
		for range ids {
			<-done
		}
		if diff := cmp.Diff(ids, got); diff != "" {
			t.Errorf("Describe results mismatch (-want +got):\n%s", diff)
		}
		var tokens []string
		for _, r := range f.published("/get") {
			var req struct{ ClientToken string }
			if err := json.Unmarshal([]byte(r.payload), &req); err != nil || req.ClientToken == "" {
				t.Fatalf("request %s has no clientToken: %s", r.topic, r.payload)
			}
			tokens = append(tokens, req.ClientToken)
		}
		slices.Sort(tokens)
		if len(slices.Compact(tokens)) != len(ids) {
			t.Errorf("clientTokens are not unique: %v", tokens)
		}
	})
}

func TestClientFailures(t *testing.T) {
	const updateTopic = "$aws/things/dev-1/jobs/job-1/update"
	tests := []struct {
		name       string
		opts       ClientOptions
		setup      func(f *fakeJobs)
		ctxTimeout time.Duration
		wantErr    string // exact, unless wantIs is set
		wantIs     error
		wantWait   time.Duration
	}{
		{
			name:     "dropped reply",
			setup:    func(f *fakeJobs) { f.dropReply = func(string) bool { return true } },
			wantErr:  "jobs: no reply to " + updateTopic + " in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name:     "dropped reply, shorter timeout",
			opts:     ClientOptions{Timeout: 2 * time.Second},
			setup:    func(f *fakeJobs) { f.dropReply = func(string) bool { return true } },
			wantErr:  "jobs: no reply to " + updateTopic + " in 2s",
			wantWait: 2 * time.Second,
		},
		{
			name: "malformed reply",
			setup: func(f *fakeJobs) {
				f.mangle = func(topic string, p []byte) (string, []byte) { return topic, p[:len(p)/2] }
			},
			wantErr:  "jobs: no reply to " + updateTopic + " in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply on another job's topic",
			setup: func(f *fakeJobs) {
				f.mangle = func(topic string, p []byte) (string, []byte) { return strings.Replace(topic, "job-1", "job-2", 1), p }
			},
			wantErr:  "jobs: no reply to " + updateTopic + " in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply with another token",
			setup: func(f *fakeJobs) {
				f.mangle = func(topic string, _ []byte) (string, []byte) { return topic, []byte(`{"clientToken":"someone-else"}`) }
			},
			wantErr:  "jobs: no reply to " + updateTopic + " in 30s",
			wantWait: 30 * time.Second,
		},
		{
			name: "reply for another thing first",
			setup: func(f *fakeJobs) {
				f.foreign = true
			},
		},
		{
			name:       "context ends",
			setup:      func(f *fakeJobs) { f.dropReply = func(string) bool { return true } },
			ctxTimeout: time.Second,
			wantIs:     context.DeadlineExceeded,
			wantWait:   time.Second,
		},
		{
			name:   "offline",
			setup:  func(f *fakeJobs) { f.offline = true },
			wantIs: errOffline,
		},
	}
	for _, mode := range deliveryModes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f, c := newClientEnv(t, mode.subscribed, tt.opts)
					f.add("job-1", `{"operation":"x"}`)
					f.mu.Lock()
					tt.setup(f)
					f.mu.Unlock()
					ctx := t.Context()
					if tt.ctxTimeout > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
						defer cancel()
					}
					start := time.Now()
					got, err := c.Update(ctx, "job-1", UpdateRequest{Status: StatusInProgress, IncludeJobExecutionState: true})
					if waited := time.Since(start); waited != tt.wantWait {
						t.Errorf("Update returned after %v, want %v", waited, tt.wantWait)
					}
					switch {
					case tt.wantIs != nil:
						if !errors.Is(err, tt.wantIs) {
							t.Errorf("Update = %v, want an error wrapping %v", err, tt.wantIs)
						}
					case tt.wantErr != "":
						if err == nil || err.Error() != tt.wantErr {
							t.Errorf("Update = %v, want %q", err, tt.wantErr)
						}
					default:
						if err != nil {
							t.Fatalf("Update: %v", err)
						}
						if got.ExecutionState == nil || got.ExecutionState.VersionNumber != 2 {
							t.Errorf("Update = %+v, want the reply for this thing (version 2)", got)
						}
					}
					// A late reply to the expired request is ignored.
					reqs := f.published("/update")
					if len(reqs) > 0 {
						var req struct{ ClientToken string }
						_ = json.Unmarshal([]byte(reqs[len(reqs)-1].payload), &req) // the fake checked it
						if !c.HandleMessage(AcceptedTopic(updateTopic), []byte(`{"clientToken":"`+req.ClientToken+`"}`)) {
							t.Errorf("HandleMessage(late reply) = false, want true")
						}
					}
					c.mu.Lock()
					defer c.mu.Unlock()
					if len(c.calls) != 0 {
						t.Errorf("%d requests still registered after the call", len(c.calls))
					}
				})
			})
		}
	}
}

func TestClientValidation(t *testing.T) {
	ctx := context.Background()
	eleven := map[string]string{}
	for _, k := range strings.Split("a b c d e f g h i j k", " ") {
		eleven[k] = "v"
	}
	tests := []struct {
		name    string
		thing   string
		call    func(c *Client) error
		wantErr string
	}{
		{"start-next, too many details", thing, func(c *Client) error {
			_, err := c.StartNext(ctx, StartNextRequest{StatusDetails: eleven})
			return err
		}, "jobs: start-next: statusDetails has 11 pairs"},
		{"start-next, step timeout too long", thing, func(c *Client) error {
			_, err := c.StartNext(ctx, StartNextRequest{StepTimeoutInMinutes: 10081})
			return err
		}, "stepTimeoutInMinutes 10081"},
		{"start-next, step timeout -1", thing, func(c *Client) error {
			_, err := c.StartNext(ctx, StartNextRequest{StepTimeoutInMinutes: -1})
			return err
		}, "stepTimeoutInMinutes -1"},
		{"describe, bad job id", thing, func(c *Client) error {
			_, err := c.Describe(ctx, "job/1", DescribeRequest{})
			return err
		}, `jobs: describe job/1: job id "job/1"`},
		{"describe, empty job id", thing, func(c *Client) error {
			_, err := c.Describe(ctx, "", DescribeRequest{})
			return err
		}, `job id ""`},
		{"update, $next", thing, func(c *Client) error {
			_, err := c.Update(ctx, NextJobID, UpdateRequest{Status: StatusSucceeded})
			return err
		}, `job id "$next"`},
		{"update, long job id", thing, func(c *Client) error {
			_, err := c.Update(ctx, strings.Repeat("j", 65), UpdateRequest{Status: StatusSucceeded})
			return err
		}, "must be 1 to 64 characters"},
		{"update, QUEUED", thing, func(c *Client) error {
			_, err := c.Update(ctx, "job-1", UpdateRequest{Status: StatusQueued})
			return err
		}, `status "QUEUED"`},
		{"update, no status", thing, func(c *Client) error {
			_, err := c.Update(ctx, "job-1", UpdateRequest{})
			return err
		}, `status ""`},
		{"update, control character", thing, func(c *Client) error {
			_, err := c.Update(ctx, "job-1", UpdateRequest{Status: StatusFailed, StatusDetails: map[string]string{"reason": "a\nb"}})
			return err
		}, "control"},
		{"update, bad key", thing, func(c *Client) error {
			_, err := c.Update(ctx, "job-1", UpdateRequest{Status: StatusFailed, StatusDetails: map[string]string{"new key": "x"}})
			return err
		}, "statusDetails key"},
		{"update, step timeout -2", thing, func(c *Client) error {
			_, err := c.Update(ctx, "job-1", UpdateRequest{Status: StatusInProgress, StepTimeoutInMinutes: -2})
			return err
		}, "stepTimeoutInMinutes -2"},
		{"bad thing name, get-pending", "dev/1", func(c *Client) error {
			_, err := c.GetPending(ctx)
			return err
		}, `jobs: get-pending: thing name "dev/1"`},
		{"bad thing name, start", "dev+1", func(c *Client) error { return c.Start(ctx) }, `jobs: start: thing name "dev+1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJobs(tt.thing)
			c := NewClient(tt.thing, f, ClientOptions{Logger: testLogger(t)})
			err := tt.call(c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if n := len(f.published("")) + len(f.subs); n != 0 {
				t.Errorf("%d publishes or subscriptions happened, want none", n)
			}
		})
	}
}

func TestClientStart(t *testing.T) {
	f := newFakeJobs(thing)
	c := NewClient(thing, f, ClientOptions{})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(f.subs))
	want := slices.Sorted(slices.Values(SubscriptionFilters(thing)))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subscriptions mismatch (-want +got):\n%s", diff)
	}

	failing := failingSubscribe{f}
	err := NewClient(thing, failing, ClientOptions{}).Start(context.Background())
	if !errors.Is(err, errOffline) || !strings.Contains(err.Error(), "jobs: subscribe $aws/things/dev-1/jobs/notify-next") {
		t.Errorf("Start with a failing Subscribe = %v, want it to name the filter and wrap the cause", err)
	}
}

type failingSubscribe struct{ *fakeJobs }

func (failingSubscribe) Subscribe(context.Context, string, byte, func(string, []byte)) error {
	return errOffline
}

func TestHandleMessage(t *testing.T) {
	c := NewClient(thing, newFakeJobs(thing), ClientOptions{})
	tests := []struct {
		topic, payload string
		want           bool
	}{
		{"$aws/things/dev-1/shadow/update/accepted", `{}`, false},
		{"$aws/things/other/jobs/notify-next", `{"timestamp":1,"execution":{"jobId":"x"}}`, false},
		{"$aws/things/other/jobs/job-1/update/accepted", `{"clientToken":"x"}`, false},
		{"sensors/temp", `21`, false},
		{"$aws/things/dev-1/jobs/job-1/update/accepted", `{"clientToken":"unknown"}`, true},
		{"$aws/things/dev-1/jobs/job-1/update/rejected", `not json`, true},
		{"$aws/things/dev-1/jobs/job-1/update", `{"status":"SUCCEEDED"}`, true},
		{"$aws/things/dev-1/jobs/notify", `{"timestamp":1,"jobs":{}}`, true},
		{"$aws/things/dev-1/jobs/notify-next", `{"timestamp":2,"execution":{"jobId":"job-1","status":"QUEUED","versionNumber":1}}`, true},
		{"$aws/things/dev-1/jobs/notify-next", `{"timestamp":3,"execution":{"jobId":"job-2","status":"QUEUED","versionNumber":1}}`, true},
		{"$aws/things/dev-1/jobs/notify-next", `{"timestamp":`, true},
	}
	for _, tt := range tests {
		if got := c.HandleMessage(tt.topic, []byte(tt.payload)); got != tt.want {
			t.Errorf("HandleMessage(%q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
	// Latest wins; the malformed one was dropped; the other thing's was not taken.
	select {
	case n := <-c.NotifyNext():
		want := NextNotification{Timestamp: 3, Execution: &Execution{JobID: "job-2", Status: StatusQueued, VersionNumber: 1}}
		if diff := cmp.Diff(want, n); diff != "" {
			t.Errorf("NotifyNext mismatch (-want +got):\n%s", diff)
		}
	default:
		t.Fatal("NotifyNext is empty")
	}
	select {
	case n := <-c.NotifyNext():
		t.Errorf("NotifyNext holds a second message %+v", n)
	default:
	}
	select {
	case n := <-c.Notify():
		if diff := cmp.Diff(ListNotification{Timestamp: 1, Jobs: map[Status][]ExecutionSummary{}}, n); diff != "" {
			t.Errorf("Notify mismatch (-want +got):\n%s", diff)
		}
	default:
		t.Fatal("Notify is empty")
	}
}
