package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testPersister is a Persister that records every write.
type testPersister struct {
	mu       sync.Mutex // guards the fields below
	data     []byte
	writes   []string
	readErr  error
	writeErr error
}

func (p *testPersister) Read() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.data, p.readErr
}

func (p *testPersister) Write(data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writeErr != nil {
		return p.writeErr
	}
	p.data = append([]byte(nil), data...)
	p.writes = append(p.writes, string(data))
	return nil
}

func (p *testPersister) saved() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.data)
}

type engineEnv struct {
	f    *fakeJobs
	c    *Client
	e    *Engine
	p    *testPersister
	stop func() error // cancels Run and returns what it returned
}

// startEngine runs an Engine on f until stop is called or the test ends.
// It must be called inside a synctest bubble.
func startEngine(t *testing.T, f *fakeJobs, p *testPersister, opts EngineOptions, handlers map[string]Handler) *engineEnv {
	t.Helper()
	c := NewClient(thing, f, ClientOptions{Logger: testLogger(t)})
	f.setUnsolicited(func(topic string, payload []byte) { c.HandleMessage(topic, payload) })
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	opts.Persister, opts.Logger = p, testLogger(t)
	e := NewEngine(c, opts)
	for op, h := range handlers {
		e.Register(op, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { stop() })
	return &engineEnv{f: f, c: c, e: e, p: p, stop: stop}
}

// reports records the calls of Result.OnReported or ReportObserver.
type reports struct {
	mu    sync.Mutex // guards calls
	calls []string
}

func (r *reports) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *reports) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *reports) onReported(name string) func(context.Context, error) {
	return func(_ context.Context, err error) { r.add(fmt.Sprintf("%s: %v", name, err)) }
}

func succeed(details map[string]string, r *reports) Handler {
	return HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
		return Result{Status: StatusSucceeded, Details: details, OnReported: r.onReported(ex.JobID)}
	})
}

func TestEngineOutcomes(t *testing.T) {
	pad := func(n int) string { return `{"operation":"echo","pad":"` + strings.Repeat("p", n) + `"}` }
	many := map[string]string{"reason": "a\nb"}
	for i := range 12 {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	tests := []struct {
		name        string
		doc         string
		maxDoc      int
		handler     func(r *reports) Handler
		wantStatus  string
		wantDetails map[string]string
		wantReports []string
	}{
		{
			name: "succeeded",
			doc:  `{"operation":"echo"}`,
			handler: func(r *reports) Handler {
				return succeed(map[string]string{"newCertificateId": "abc"}, r)
			},
			wantStatus:  "SUCCEEDED",
			wantDetails: map[string]string{"newCertificateId": "abc"},
			wantReports: []string{"job-1: <nil>"},
		},
		{
			name: "failed by the handler",
			doc:  `{"operation":"echo"}`,
			handler: func(r *reports) Handler {
				return HandlerFunc(func(context.Context, Execution, Progress) Result {
					return Result{Status: StatusFailed, Details: map[string]string{"step": "key-generated", "reason": "token full"}, OnReported: r.onReported("failed")}
				})
			},
			wantStatus:  "FAILED",
			wantDetails: map[string]string{"step": "key-generated", "reason": "token full"},
			wantReports: []string{"failed: <nil>"},
		},
		{
			name:        "unknown operation",
			doc:         `{"operation":"reboot"}`,
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": `this device has no handler for operation "reboot"`},
		},
		{
			name:        "not an object",
			doc:         `["operation","echo"]`,
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": "the job document is not a JSON object"},
		},
		{
			name:        "no operation",
			doc:         `{"op":"echo"}`,
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": `the job document has no "operation" field`},
		},
		{
			name:        "operation not a string",
			doc:         `{"operation":{"name":"echo"}}`,
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": `the job document's "operation" is not a string`},
		},
		{
			name:        "larger than MaxDocumentBytes",
			doc:         pad(100),
			maxDoc:      64,
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": fmt.Sprintf("the job document is %d bytes, more than the 64 this device accepts", len(pad(100)))},
		},
		{
			name:        "larger than 32 KiB",
			doc:         pad(40000),
			wantStatus:  "REJECTED",
			wantDetails: map[string]string{"reason": fmt.Sprintf("the job document is %d bytes, more than the 32768 this device accepts", len(pad(40000)))},
		},
		{
			name: "handler panics",
			doc:  `{"operation":"echo"}`,
			handler: func(*reports) Handler {
				return HandlerFunc(func(context.Context, Execution, Progress) Result { panic("kaboom") })
			},
			wantStatus:  "FAILED",
			wantDetails: map[string]string{"reason": "the echo handler crashed: kaboom"},
		},
		{
			name: "OnReported panics",
			doc:  `{"operation":"echo"}`,
			handler: func(*reports) Handler {
				return HandlerFunc(func(context.Context, Execution, Progress) Result {
					return Result{Status: StatusSucceeded, OnReported: func(context.Context, error) { panic("in callback") }}
				})
			},
			wantStatus: "SUCCEEDED",
		},
		{
			name: "handler returns a non-terminal status",
			doc:  `{"operation":"echo"}`,
			handler: func(*reports) Handler {
				return HandlerFunc(func(context.Context, Execution, Progress) Result {
					return Result{Status: StatusInProgress, Details: map[string]string{"step": "x"}}
				})
			},
			wantStatus:  "FAILED",
			wantDetails: map[string]string{"step": "x", "reason": `the handler ended with status "IN_PROGRESS"`},
		},
		{
			name:        "details trimmed to the limits",
			doc:         `{"operation":"echo"}`,
			handler:     func(r *reports) Handler { return succeed(many, r) },
			wantStatus:  "SUCCEEDED",
			wantDetails: TrimStatusDetails(many),
			wantReports: []string{"job-1: <nil>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeJobs(thing)
				f.add("job-1", tt.doc)
				var r reports
				handlers := map[string]Handler{}
				if tt.handler != nil {
					handlers["echo"] = tt.handler(&r)
				}
				env := startEngine(t, f, &testPersister{}, EngineOptions{MaxDocumentBytes: tt.maxDoc}, handlers)
				env.e.Connected()
				synctest.Wait()

				ex := f.get("job-1")
				if ex.status != tt.wantStatus {
					t.Errorf("status = %s, want %s", ex.status, tt.wantStatus)
				}
				if diff := cmp.Diff(tt.wantDetails, ex.details); diff != "" {
					t.Errorf("statusDetails mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.wantReports, r.get()); diff != "" {
					t.Errorf("OnReported calls mismatch (-want +got):\n%s", diff)
				}
				if got := env.p.saved(); got != "{}" {
					t.Errorf("saved state = %s, want {}", got)
				}
				if id, ok := env.e.Current(); ok {
					t.Errorf("Current() = %q, true; want none", id)
				}
				if err := env.stop(); !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
			})
		})
	}
}

// TestEngineProgress follows one execution closely: what is saved before
// the handler runs, IN_PROGRESS steps with expectedVersion (and a retry
// after VersionMismatch), the terminal report, and OnReported after the
// cloud accepted it.
func TestEngineProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-1", `{"operation":"echo"}`)
		var env *engineEnv
		var r reports
		h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
			if id, ok := env.e.Current(); id != "job-1" || !ok {
				t.Errorf("Current() = %q, %v during the handler; want job-1, true", id, ok)
			}
			if want := `{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"echo"}`; env.p.saved() != want {
				t.Errorf("saved before the handler = %s, want %s", env.p.saved(), want)
			}
			if ex.Status != StatusInProgress || ex.VersionNumber != 2 || string(ex.JobDocument) != `{"operation":"echo"}` {
				t.Errorf("handler got %+v", ex)
			}
			if err := p.Step(ctx, map[string]string{"step": "one"}); err != nil {
				t.Errorf("Step(one): %v", err)
			}
			if got := f.get("job-1"); got.status != "IN_PROGRESS" || got.details["step"] != "one" || got.version != 3 {
				t.Errorf("after Step(one) the cloud has %+v", got)
			}
			f.bump("job-1") // version 4, behind the engine's back
			if err := p.Step(ctx, map[string]string{"step": "two"}); err != nil {
				t.Errorf("Step(two) after a version change: %v", err)
			}
			return Result{Status: StatusSucceeded, Details: map[string]string{"step": "committed"},
				OnReported: func(ctx context.Context, err error) {
					r.add(fmt.Sprintf("%v, cloud has %s", err, f.get("job-1").status))
				}}
		})
		env = startEngine(t, f, &testPersister{}, EngineOptions{StepTimeoutMinutes: 15}, map[string]Handler{"echo": h})
		env.e.Connected()
		synctest.Wait()

		if diff := cmp.Diff([]string{"<nil>, cloud has SUCCEEDED"}, r.get()); diff != "" {
			t.Errorf("OnReported calls mismatch (-want +got):\n%s", diff)
		}
		ex := f.get("job-1")
		if ex.status != "SUCCEEDED" || ex.version != 6 {
			t.Errorf("cloud has %s version %d, want SUCCEEDED version 6", ex.status, ex.version)
		}
		type update struct {
			Status          string            `json:"status"`
			StatusDetails   map[string]string `json:"statusDetails"`
			ExpectedVersion int64             `json:"expectedVersion"`
			StepTimeout     int64             `json:"stepTimeoutInMinutes"`
		}
		var got []update
		for _, req := range f.published("/job-1/update") {
			var u update
			if err := json.Unmarshal([]byte(req.payload), &u); err != nil {
				t.Fatal(err)
			}
			got = append(got, u)
		}
		want := []update{
			{"IN_PROGRESS", map[string]string{"step": "one"}, 2, 15},
			{"IN_PROGRESS", map[string]string{"step": "two"}, 3, 15}, // VersionMismatch
			{"IN_PROGRESS", map[string]string{"step": "two"}, 4, 15},
			{"SUCCEEDED", map[string]string{"step": "committed"}, 5, 0},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("updates mismatch (-want +got):\n%s", diff)
		}
		starts := f.published("/start-next")
		if len(starts) == 0 || !strings.Contains(starts[0].payload, `"stepTimeoutInMinutes":15`) {
			t.Errorf("start-next requests = %+v, want stepTimeoutInMinutes 15", starts)
		}
		wantWrites := []string{
			`{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"echo"}`,
			`{"jobId":"job-1","executionNumber":1,"versionNumber":5,"operation":"echo","outcome":{"status":"SUCCEEDED","statusDetails":{"step":"committed"}}}`,
			`{}`,
		}
		if diff := cmp.Diff(wantWrites, env.p.writes); diff != "" {
			t.Errorf("saved states mismatch (-want +got):\n%s", diff)
		}
	})
}

// TestEngineQueue: executions run one at a time, in queue order; a job
// queued while idle is picked up from notify-next.
func TestEngineQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-a", `{"operation":"echo"}`)
		f.add("job-b", `{"operation":"echo"}`)
		var mu sync.Mutex
		var ran []string
		running := 0
		h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
			mu.Lock()
			ran = append(ran, ex.JobID)
			running++
			if running > 1 {
				t.Errorf("%d executions run at once", running)
			}
			mu.Unlock()
			if ex.JobID == "job-a" {
				f.add("job-c", `{"operation":"echo"}`) // queued while busy
			}
			time.Sleep(time.Second)
			mu.Lock()
			running--
			mu.Unlock()
			return Result{Status: StatusSucceeded}
		})
		env := startEngine(t, f, &testPersister{}, EngineOptions{}, map[string]Handler{"echo": h})
		env.e.Connected()
		synctest.Wait()
		time.Sleep(time.Minute)
		f.add("job-d", `{"operation":"echo"}`) // queued while idle: notify-next
		synctest.Wait()
		time.Sleep(time.Minute)

		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]string{"job-a", "job-b", "job-c", "job-d"}, ran); diff != "" {
			t.Errorf("executions run mismatch (-want +got):\n%s", diff)
		}
		for _, id := range ran {
			if s := f.get(id).status; s != "SUCCEEDED" {
				t.Errorf("%s is %s, want SUCCEEDED", id, s)
			}
		}
	})
}

// TestEngineOfflineReport: a terminal report that cannot be sent is saved
// and sent after the next Connected, or after RetryDelay.
func TestEngineOfflineReport(t *testing.T) {
	tests := []struct {
		name      string
		reconnect bool // call Connected, else wait RetryDelay
	}{
		{"after Connected", true},
		{"after RetryDelay", false},
	}
	const retryDelay = 10 * time.Minute
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeJobs(thing)
				f.add("job-1", `{"operation":"echo"}`)
				release := make(chan struct{})
				var r reports
				h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
					<-release
					return Result{Status: StatusSucceeded, Details: map[string]string{"step": "committed"}, OnReported: r.onReported("job-1")}
				})
				env := startEngine(t, f, &testPersister{}, EngineOptions{RetryDelay: retryDelay}, map[string]Handler{"echo": h})
				env.e.Connected()
				synctest.Wait()

				f.setOffline(true)
				close(release)
				synctest.Wait()
				time.Sleep(3*retryDelay + time.Second) // three more attempts, all offline
				const wantSaved = `{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"echo","outcome":{"status":"SUCCEEDED","statusDetails":{"step":"committed"}}}`
				if got := env.p.saved(); got != wantSaved {
					t.Errorf("saved while offline = %s, want %s", got, wantSaved)
				}
				if got := f.get("job-1").status; got != "IN_PROGRESS" {
					t.Errorf("cloud has %s while offline, want IN_PROGRESS", got)
				}
				if got := r.get(); len(got) != 0 {
					t.Errorf("OnReported called while offline: %v", got)
				}
				if id, ok := env.e.Current(); id != "job-1" || !ok {
					t.Errorf("Current() = %q, %v while reporting; want job-1, true", id, ok)
				}

				f.setOffline(false)
				start := time.Now()
				if tt.reconnect {
					env.e.Connected()
					synctest.Wait()
				} else {
					time.Sleep(retryDelay)
					synctest.Wait()
				}
				if waited := time.Since(start); tt.reconnect && waited != 0 {
					t.Errorf("delivered %v after Connected, want at once", waited)
				}
				if got := f.get("job-1"); got.status != "SUCCEEDED" || got.details["step"] != "committed" {
					t.Errorf("cloud has %+v, want SUCCEEDED with step committed", got)
				}
				if diff := cmp.Diff([]string{"job-1: <nil>"}, r.get()); diff != "" {
					t.Errorf("OnReported calls mismatch (-want +got):\n%s", diff)
				}
				if got := env.p.saved(); got != "{}" {
					t.Errorf("saved = %s, want {}", got)
				}
			})
		})
	}
}

// restartHandler is a Handler, Resumer and ReportObserver that records its
// calls.
type restartHandler struct{ r *reports }

func (h restartHandler) Handle(ctx context.Context, ex Execution, p Progress) Result {
	h.r.add("Handle " + ex.JobID)
	return Result{Status: StatusSucceeded, Details: map[string]string{"how": "handled"}}
}

func (h restartHandler) Resume(ctx context.Context, ex Execution, p Progress) Result {
	h.r.add(fmt.Sprintf("Resume %s %s v%d", ex.JobID, ex.Status, ex.VersionNumber))
	if err := p.Step(ctx, map[string]string{"step": "resumed"}); err != nil {
		h.r.add("Step: " + err.Error())
	}
	return Result{Status: StatusSucceeded, Details: map[string]string{"how": "resumed"}}
}

func (h restartHandler) Reported(ctx context.Context, jobID string, status Status, err error) {
	h.r.add(fmt.Sprintf("Reported %s %s: %v", jobID, status, err))
}

// plainHandler is only a Handler.
type plainHandler struct{ r *reports }

func (h plainHandler) Handle(ctx context.Context, ex Execution, p Progress) Result {
	h.r.add("Handle " + ex.JobID)
	return Result{Status: StatusSucceeded}
}

// TestEngineRestart starts an engine on state saved by an earlier run.
func TestEngineRestart(t *testing.T) {
	const (
		inFlight = `{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"op"}`
		outcome  = `{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"op","outcome":{"status":"SUCCEEDED","statusDetails":{"step":"committed"}}}`
	)
	tests := []struct {
		name        string
		saved       string
		cloud       func(f *fakeJobs) // job-1 is IN_PROGRESS, version 2, before this
		plain       bool              // register a handler that is not a Resumer
		wantCalls   []string
		wantStatus  map[string]string // job id → status
		wantDetails map[string]string // job-1's
	}{
		{
			name:        "saved outcome is delivered",
			saved:       outcome,
			wantCalls:   []string{"Reported job-1 SUCCEEDED: <nil>"},
			wantStatus:  map[string]string{"job-1": "SUCCEEDED"},
			wantDetails: map[string]string{"step": "committed"},
		},
		{
			name:        "saved outcome already recorded (reply lost)",
			saved:       outcome,
			cloud:       func(f *fakeJobs) { f.set("job-1", "SUCCEEDED") },
			wantCalls:   []string{"Reported job-1 SUCCEEDED: <nil>"},
			wantStatus:  map[string]string{"job-1": "SUCCEEDED"},
			wantDetails: nil,
		},
		{
			name:  "saved outcome, execution canceled meanwhile",
			saved: outcome,
			cloud: func(f *fakeJobs) { f.set("job-1", "CANCELED") },
			wantCalls: []string{"Reported job-1 SUCCEEDED: jobs: SUCCEEDED was not recorded for job-1: the execution already ended in the cloud: " +
				"jobs: update job-1 rejected: InvalidStateTransition: CANCELED to SUCCEEDED"},
			wantStatus: map[string]string{"job-1": "CANCELED"},
		},
		{
			name:        "in flight, resumed",
			saved:       inFlight,
			wantCalls:   []string{"Resume job-1 IN_PROGRESS v2"},
			wantStatus:  map[string]string{"job-1": "SUCCEEDED"},
			wantDetails: map[string]string{"how": "resumed"},
		},
		{
			name:        "in flight, handler cannot resume",
			saved:       inFlight,
			plain:       true,
			wantStatus:  map[string]string{"job-1": "FAILED"},
			wantDetails: map[string]string{"reason": RestartedReason},
		},
		{
			name:       "in flight, execution canceled meanwhile",
			saved:      inFlight,
			cloud:      func(f *fakeJobs) { f.set("job-1", "CANCELED") },
			wantStatus: map[string]string{"job-1": "CANCELED"},
		},
		{
			name:  "in flight, execution canceled, another queued",
			saved: inFlight,
			cloud: func(f *fakeJobs) {
				f.set("job-1", "CANCELED")
				f.add("job-2", `{"operation":"op"}`)
			},
			wantCalls:  []string{"Handle job-2"},
			wantStatus: map[string]string{"job-1": "CANCELED", "job-2": "SUCCEEDED"},
		},
		{
			name:        "corrupt saved state is ignored",
			saved:       `{"jobId":`,
			wantCalls:   []string{"Handle job-1"},
			wantStatus:  map[string]string{"job-1": "SUCCEEDED"},
			wantDetails: map[string]string{"how": "handled"},
		},
		{
			name:        "saved state with a non-terminal outcome is ignored",
			saved:       `{"jobId":"job-1","outcome":{"status":"IN_PROGRESS"}}`,
			wantCalls:   []string{"Handle job-1"},
			wantStatus:  map[string]string{"job-1": "SUCCEEDED"},
			wantDetails: map[string]string{"how": "handled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeJobs(thing)
				f.add("job-1", `{"operation":"op"}`)
				f.set("job-1", "IN_PROGRESS")
				if tt.cloud != nil {
					tt.cloud(f)
				}
				var r reports
				var h Handler = restartHandler{&r}
				if tt.plain {
					h = plainHandler{&r}
				}
				p := &testPersister{data: []byte(tt.saved)}
				env := startEngine(t, f, p, EngineOptions{}, map[string]Handler{"op": h})
				env.e.Connected()
				synctest.Wait()

				if diff := cmp.Diff(tt.wantCalls, r.get()); diff != "" {
					t.Errorf("handler calls mismatch (-want +got):\n%s", diff)
				}
				for id, want := range tt.wantStatus {
					if got := f.get(id).status; got != want {
						t.Errorf("%s is %s, want %s", id, got, want)
					}
				}
				if diff := cmp.Diff(tt.wantDetails, f.get("job-1").details); diff != "" {
					t.Errorf("job-1 statusDetails mismatch (-want +got):\n%s", diff)
				}
				if got := p.saved(); got != "{}" {
					t.Errorf("saved = %s, want {}", got)
				}
			})
		})
	}
}

// TestEngineStopAndResume: stopping Run cancels the handler and keeps the
// execution saved; the next Run resumes it.
func TestEngineStopAndResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-1", `{"operation":"op"}`)
		var r reports
		blocking := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
			<-ctx.Done()
			r.add("Handle cancelled")
			return Result{Status: StatusFailed}
		})
		p := &testPersister{}
		env := startEngine(t, f, p, EngineOptions{}, map[string]Handler{"op": blocking})
		env.e.Connected()
		synctest.Wait()
		if err := env.stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if want := `{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"op"}`; p.saved() != want {
			t.Errorf("saved after stop = %s, want %s", p.saved(), want)
		}
		if got := f.get("job-1").status; got != "IN_PROGRESS" {
			t.Errorf("cloud has %s after stop, want IN_PROGRESS", got)
		}

		env = startEngine(t, f, p, EngineOptions{}, map[string]Handler{"op": restartHandler{&r}})
		env.e.Connected()
		synctest.Wait()
		want := []string{"Handle cancelled", "Resume job-1 IN_PROGRESS v2"}
		if diff := cmp.Diff(want, r.get()); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
		if got := f.get("job-1"); got.status != "SUCCEEDED" || got.version != 4 {
			t.Errorf("cloud has %s version %d, want SUCCEEDED version 4", got.status, got.version)
		}
	})
}

// TestEngineCancel: an execution that ends in the cloud while its handler
// runs has the handler's context cancelled; the report then fails and
// OnReported says so.
func TestEngineCancel(t *testing.T) {
	tests := []struct {
		name string
		// end ends job-1 in the cloud while the handler runs.
		end func(f *fakeJobs)
		// step makes the handler call Step after the end.
		step       bool
		wantStatus string
		wantReport string
	}{
		{
			name:       "notify-next shows the queue empty",
			end:        func(f *fakeJobs) { f.set("job-1", "CANCELED") },
			wantStatus: "CANCELED",
			wantReport: "InvalidStateTransition",
		},
		{
			name: "notify-next shows another job",
			end: func(f *fakeJobs) {
				f.add("job-2", `{"operation":"other"}`)
				f.set("job-1", "REMOVED")
			},
			wantStatus: "REMOVED",
			wantReport: "InvalidStateTransition",
		},
		{
			name:       "notification lost; Step rejected",
			end:        func(f *fakeJobs) { f.setQuietly("job-1", "CANCELED") },
			step:       true,
			wantStatus: "CANCELED",
			wantReport: "InvalidStateTransition",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeJobs(thing)
				f.add("job-1", `{"operation":"op"}`)
				ended := make(chan struct{})
				var r reports
				h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
					<-ended
					if tt.step {
						err := p.Step(ctx, map[string]string{"step": "two"})
						if _, gone := endedRemotely(err); !gone {
							t.Errorf("Step after the end = %v, want a rejection saying it ended", err)
						}
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Hour):
						t.Errorf("the handler's context was not cancelled")
					}
					return Result{Status: StatusFailed, Details: map[string]string{"reason": "cancelled"}, OnReported: r.onReported("job-1")}
				})
				env := startEngine(t, f, &testPersister{}, EngineOptions{}, map[string]Handler{"op": h, "other": plainHandler{&reports{}}})
				env.e.Connected()
				synctest.Wait()
				tt.end(f)
				close(ended)
				synctest.Wait()

				if got := f.get("job-1").status; got != tt.wantStatus {
					t.Errorf("job-1 is %s, want %s", got, tt.wantStatus)
				}
				calls := r.get()
				if len(calls) != 1 || !strings.Contains(calls[0], tt.wantReport) {
					t.Errorf("OnReported calls = %q, want one error with %s", calls, tt.wantReport)
				}
				if got := env.p.saved(); got != "{}" {
					t.Errorf("saved = %s, want {}", got)
				}
			})
		})
	}
}

// TestEngineUnrelatedNotification: a notify-next naming another execution
// while ours is still IN_PROGRESS does not cancel the handler.
func TestEngineUnrelatedNotification(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-0", `{"operation":"op"}`)
		f.add("job-1", `{"operation":"op"}`)
		f.set("job-1", "IN_PROGRESS") // start-next picks it first
		release := make(chan struct{})
		var r reports
		h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
			r.add("Handle " + ex.JobID)
			if ex.JobID == "job-1" {
				select {
				case <-release:
				case <-ctx.Done():
					r.add("cancelled")
				}
			}
			return Result{Status: StatusSucceeded}
		})
		env := startEngine(t, f, &testPersister{}, EngineOptions{}, map[string]Handler{"op": h})
		env.e.Connected()
		synctest.Wait()
		f.set("job-0", "IN_PROGRESS") // queued earlier: becomes the head, notify-next(job-0)
		synctest.Wait()
		close(release)
		synctest.Wait()
		if diff := cmp.Diff([]string{"Handle job-1", "Handle job-0"}, r.get()); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
		if len(f.published("/job-1/get")) != 1 {
			t.Errorf("describe of job-1 sent %d times, want once", len(f.published("/job-1/get")))
		}
	})
}

// TestEngineDetailsRefused: a terminal report whose details the cloud
// refuses is sent again without them.
func TestEngineDetailsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-1", `{"operation":"op"}`)
		f.refuse = "unacceptable"
		var r reports
		h := HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
			if err := p.Step(ctx, map[string]string{"step": "one"}); err != nil {
				t.Errorf("Step: %v", err)
			}
			return Result{Status: StatusSucceeded, Details: map[string]string{"note": "unacceptable"}, OnReported: r.onReported("job-1")}
		})
		env := startEngine(t, f, &testPersister{}, EngineOptions{}, map[string]Handler{"op": h})
		env.e.Connected()
		synctest.Wait()
		if got := f.get("job-1"); got.status != "SUCCEEDED" || !cmp.Equal(got.details, map[string]string{"step": "one"}) {
			t.Errorf("cloud has %s %v, want SUCCEEDED with the details left as they were", got.status, got.details)
		}
		if diff := cmp.Diff([]string{"job-1: <nil>"}, r.get()); diff != "" {
			t.Errorf("OnReported calls mismatch (-want +got):\n%s", diff)
		}
		if n := len(f.published("/job-1/update")); n != 3 {
			t.Errorf("%d updates sent, want 3 (step, refused report, report without details)", n)
		}
	})
}

func TestEngineStartNextRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJobs(thing)
		f.add("job-1", `{"operation":"op"}`)
		f.setOffline(true)
		var r reports
		env := startEngine(t, f, &testPersister{}, EngineOptions{RetryDelay: time.Minute}, map[string]Handler{"op": plainHandler{&r}})
		env.e.Connected()
		synctest.Wait()
		f.setOffline(false)
		time.Sleep(time.Minute + time.Second)
		if diff := cmp.Diff([]string{"Handle job-1"}, r.get()); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestEnginePersisterErrors(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeJobs(thing)
			env := startEngine(t, f, &testPersister{readErr: errors.New("disk gone")}, EngineOptions{}, nil)
			err := env.stop()
			if err == nil || !strings.Contains(err.Error(), "jobs: read saved state: disk gone") {
				t.Errorf("Run = %v, want the read error", err)
			}
		})
	})
	t.Run("write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeJobs(thing)
			f.add("job-1", `{"operation":"op"}`)
			var r reports
			env := startEngine(t, f, &testPersister{writeErr: errors.New("disk full")}, EngineOptions{}, map[string]Handler{"op": plainHandler{&r}})
			env.e.Connected()
			synctest.Wait()
			if got := r.get(); len(got) != 0 {
				t.Errorf("handler called without saved state: %v", got)
			}
			want := map[string]string{"reason": "thingd could not save the job's state before running it: jobs: save state: disk full"}
			if got := f.get("job-1"); got.status != "FAILED" || !cmp.Equal(got.details, want) {
				t.Errorf("cloud has %s %v, want FAILED %v", got.status, got.details, want)
			}
		})
	})
}

func TestRegisterPanics(t *testing.T) {
	e := NewEngine(NewClient(thing, newFakeJobs(thing), ClientOptions{}), EngineOptions{})
	for _, tt := range []struct {
		op string
		h  Handler
	}{{"", plainHandler{}}, {"op", nil}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q, %v) did not panic", tt.op, tt.h)
				}
			}()
			e.Register(tt.op, tt.h)
		}()
	}
}
