package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// RestartedReason is the "reason" reported (FAILED) for an execution that
// was running when thingd stopped and whose handler is not a Resumer.
const RestartedReason = "thingd restarted while this job was running; it was not resumed"

// EngineOptions configure an Engine. The zero value is usable.
type EngineOptions struct {
	// Persister keeps the in-flight execution and an undelivered terminal
	// report across restarts; nil keeps them in memory only.
	Persister Persister
	// Logger receives the engine's decisions; nil discards them.
	Logger *slog.Logger
	// MaxDocumentBytes is the largest job document accepted; zero means
	// 32768 (the service's own limit). Larger documents are REJECTED.
	MaxDocumentBytes int
	// StepTimeoutMinutes is sent as stepTimeoutInMinutes with start-next
	// and every IN_PROGRESS update; zero sends none. Values outside
	// 0–10080 are clamped into it.
	StepTimeoutMinutes int64
	// RetryDelay is the wait between attempts to deliver a terminal report
	// (and to retry a failed start-next); zero means 5 s. A Connected call
	// cuts the wait short.
	RetryDelay time.Duration
}

// ReportObserver may be implemented by a Handler that wants to hear about a
// terminal report saved by an earlier run of thingd (whose
// Result.OnReported is gone with that process) once the cloud has accepted
// it (err nil) or it was given up on (err set).
type ReportObserver interface {
	Reported(ctx context.Context, jobID string, status Status, err error)
}

// Engine runs job executions, one at a time: it asks for the next pending
// execution, hands it to the Handler registered for its job document's
// "operation", reports progress and the terminal result, and keeps enough
// state through a Persister to finish the report after a restart. Create it
// with NewEngine, Register handlers, then call Run; the agent calls
// Connected after every (re)connect.
type Engine struct {
	c         *Client
	opts      EngineOptions
	log       *slog.Logger
	connected chan struct{} // capacity 1: a pending Connected call

	mu       sync.Mutex // guards handlers and current
	handlers map[string]Handler
	current  string

	// Owned by the goroutine in Run.
	st         state
	run        *run                         // st's execution with its live version; nil when st is empty
	onReported func(context.Context, error) // of the outcome in st, if produced by this process
	fresh      bool                         // the outcome in st was produced by this process
	lastDone   execKey                      // the last execution whose report ended
}

type execKey struct {
	jobID  string
	number int64
}

// run is the execution being handled or reported, with the version number
// that the next update expects.
type run struct {
	jobID   string
	number  int64
	version atomic.Int64
}

func newRun(jobID string, number, version int64) *run {
	r := &run{jobID: jobID, number: number}
	r.version.Store(version)
	return r
}

// NewEngine returns an Engine that works through c. It starts nothing.
func NewEngine(c *Client, opts EngineOptions) *Engine {
	if opts.Persister == nil {
		opts.Persister = &memPersister{}
	}
	if opts.MaxDocumentBytes <= 0 {
		opts.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	opts.StepTimeoutMinutes = max(0, min(opts.StepTimeoutMinutes, MaxStepTimeoutMinutes))
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		c:         c,
		opts:      opts,
		log:       log.With("thing", c.ThingName()),
		connected: make(chan struct{}, 1),
		handlers:  map[string]Handler{},
	}
}

// Register sets the handler of a job document operation, replacing any
// earlier one. It panics if operation is empty or h is nil. It may be called
// while Run runs; executions already started keep their handler.
func (e *Engine) Register(operation string, h Handler) {
	if operation == "" || h == nil {
		panic("jobs: Register needs an operation and a handler")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handlers[operation] = h
}

func (e *Engine) handler(operation string) Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.handlers[operation]
}

// Connected tells the engine that the connection is (again) up: it resends
// an undelivered terminal report, then asks for the next pending execution.
// It never blocks.
func (e *Engine) Connected() {
	select {
	case e.connected <- struct{}{}:
	default:
	}
}

// Current returns the job id of the execution being handled or reported
// now; ok is false when there is none.
func (e *Engine) Current() (jobID string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.current, e.current != ""
}

func (e *Engine) setCurrent(jobID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.current = jobID
}

// Run reads the saved state, then works after every Connected call and
// every notify-next that names an execution, until ctx is done; it then
// returns ctx.Err(). A handler still running is cancelled and waited for;
// its execution stays saved, to be resumed (or failed) by the next Run. Run
// fails at once if the Persister cannot be read. Call it once at a time.
func (e *Engine) Run(ctx context.Context) error {
	data, err := e.opts.Persister.Read()
	if err != nil {
		return fmt.Errorf("jobs: read saved state: %w", err)
	}
	if e.st, err = decodeState(data); err != nil {
		e.log.Error("jobs: ignoring saved state", "err", err)
	}
	if e.st.JobID != "" {
		e.run = newRun(e.st.JobID, e.st.ExecutionNumber, e.st.VersionNumber)
		e.log.Info("jobs: found a saved execution", "job_id", e.st.JobID, "op", e.st.Operation, "has_outcome", e.st.Outcome != nil)
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.connected:
		case n := <-e.c.NotifyNext():
			if n.Execution == nil {
				continue
			}
		case <-retry.C:
		}
		err := e.work(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		retry.Stop()
		if err == nil {
			failures = 0
			continue
		}
		failures++
		e.log.Log(ctx, quietAfterFirst(failures), "jobs: could not get the next execution; will retry",
			"attempt", failures, "retry_in", e.opts.RetryDelay, "err", err)
		retry.Reset(e.opts.RetryDelay)
	}
}

// work delivers a saved terminal report, then runs pending executions until
// none is left.
func (e *Engine) work(ctx context.Context) error {
	for {
		if e.st.Outcome != nil {
			if err := e.deliver(ctx); err != nil {
				return err
			}
		}
		ex, err := e.c.StartNext(ctx, StartNextRequest{StepTimeoutInMinutes: e.opts.StepTimeoutMinutes})
		if err != nil {
			return err
		}
		if ex == nil {
			if e.st.JobID != "" {
				e.log.Warn("jobs: the saved execution is no longer pending; forgetting it", "job_id", e.st.JobID)
				e.forget()
			}
			return nil
		}
		if (execKey{ex.JobID, ex.ExecutionNumber}) == e.lastDone {
			return fmt.Errorf("jobs: start-next returned %s (execution %d) again after its terminal report ended", ex.JobID, ex.ExecutionNumber)
		}
		if err := e.execute(ctx, *ex); err != nil {
			return err
		}
	}
}

// execute runs the handler of ex and saves its outcome. It returns an error
// only when ctx is done.
func (e *Engine) execute(ctx context.Context, ex Execution) error {
	log := e.log.With("job_id", ex.JobID)
	resuming := e.st.JobID == ex.JobID && e.st.Outcome == nil && ex.Status == StatusInProgress &&
		(e.st.ExecutionNumber == 0 || e.st.ExecutionNumber == ex.ExecutionNumber)
	if e.st.JobID != "" && !resuming {
		log.Warn("jobs: the saved execution is no longer pending; forgetting it", "saved_job_id", e.st.JobID)
	}
	e.setCurrent(ex.JobID)
	defer e.setCurrent("")

	op, docErr := parseJobDocument(ex.JobDocument, e.opts.MaxDocumentBytes)
	log = log.With("op", op)
	e.st = state{JobID: ex.JobID, ExecutionNumber: ex.ExecutionNumber, VersionNumber: ex.VersionNumber, Operation: op}
	e.run = newRun(ex.JobID, ex.ExecutionNumber, ex.VersionNumber)
	h := e.handler(op)
	var call func(context.Context, Progress) Result
	switch {
	case docErr != nil:
		e.finish(log, reasonResult(StatusRejected, docErr.Error()))
		return nil
	case h == nil:
		e.finish(log, reasonResult(StatusRejected, fmt.Sprintf("this device has no handler for operation %q", op)))
		return nil
	case resuming:
		r, ok := h.(Resumer)
		if !ok {
			log.Warn("jobs: an execution was running when thingd stopped and its handler cannot resume it; reporting FAILED")
			e.finish(log, reasonResult(StatusFailed, RestartedReason))
			return nil
		}
		log.Info("jobs: resuming an execution interrupted by a restart")
		call = func(ctx context.Context, p Progress) Result { return r.Resume(ctx, ex, p) }
	default:
		log.Info("jobs: running an execution")
		call = func(ctx context.Context, p Progress) Result { return h.Handle(ctx, ex, p) }
	}
	if err := e.save(); err != nil {
		log.Error("jobs: could not save the execution before running it; reporting FAILED", "err", err)
		e.finish(log, reasonResult(StatusFailed, "thingd could not save the job's state before running it: "+err.Error()))
		return nil
	}
	res, err := e.runHandler(ctx, log, op, call)
	if err != nil {
		return err
	}
	e.finish(log, res)
	return nil
}

func reasonResult(s Status, reason string) Result {
	return Result{Status: s, Details: map[string]string{"reason": reason}}
}

// runHandler calls call in its own goroutine and, while it runs, watches
// notify-next: when it no longer names the execution, a describe tells
// whether the execution ended in the cloud (canceled, removed, timed out),
// and if so the handler's context is cancelled.
func (e *Engine) runHandler(ctx context.Context, log *slog.Logger, op string, call func(context.Context, Progress) Result) (Result, error) {
	var checks sync.WaitGroup
	defer checks.Wait() // after cancel, below
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()

	r := e.run
	p := &progress{e: e, r: r, log: log, cancel: cancel}
	done := make(chan Result, 1)
	go func() {
		done <- handlerResult(log, op, func() Result { return call(hctx, p) })
	}()
	var checking atomic.Bool
	for {
		select {
		case res := <-done:
			p.closed.Store(true)
			return res, nil
		case <-ctx.Done():
			log.Info("jobs: stopping; waiting for the handler to return")
			<-done
			p.closed.Store(true)
			return Result{}, ctx.Err()
		case n := <-e.c.NotifyNext():
			if n.Execution != nil && n.Execution.JobID == r.jobID {
				continue
			}
			if checking.CompareAndSwap(false, true) {
				checks.Go(func() {
					defer checking.Store(false)
					e.cancelIfEnded(hctx, log, r, cancel)
				})
			}
		case <-e.connected:
			// Nothing to do now: start-next follows once this execution has
			// been reported.
		}
	}
}

// cancelIfEnded describes r's execution and calls cancel if it has ended in
// the cloud.
func (e *Engine) cancelIfEnded(ctx context.Context, log *slog.Logger, r *run, cancel context.CancelFunc) {
	no := false
	ex, err := e.c.Describe(ctx, r.jobID, DescribeRequest{ExecutionNumber: r.number, IncludeJobDocument: &no})
	why := ""
	if rej, ended := endedRemotely(err); ended {
		why = string(rej.Code)
	} else if err == nil && ex.Status.Terminal() {
		why = string(ex.Status)
	}
	if why == "" {
		if err != nil && ctx.Err() == nil {
			log.Debug("jobs: could not check whether the execution is still pending", "err", err)
		}
		return
	}
	log.Info("jobs: the execution ended in the cloud; cancelling its handler", "reason", why)
	cancel()
}

// handlerResult calls f, turning a panic into a FAILED result.
func handlerResult(log *slog.Logger, op string, f func() Result) (res Result) {
	if v := recovered(log, "the "+op+" handler", func() { res = f() }); v != nil {
		res = reasonResult(StatusFailed, fmt.Sprintf("the %s handler crashed: %v", op, v))
	}
	return res
}

// recovered calls f and returns what it panicked with, if it did, after
// logging it.
func recovered(log *slog.Logger, what string, f func()) (v any) {
	defer func() {
		if v = recover(); v != nil {
			log.Error("jobs: "+what+" panicked", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	f()
	return nil
}

// progress is the Progress handed to a handler.
type progress struct {
	e      *Engine
	r      *run
	log    *slog.Logger
	cancel context.CancelFunc
	closed atomic.Bool // the handler has returned
}

// Step sends an IN_PROGRESS update with details (trimmed to the limits). A
// rejection saying the execution has ended cancels the handler's context.
func (p *progress) Step(ctx context.Context, details map[string]string) error {
	if p.closed.Load() {
		return fmt.Errorf("jobs: progress of %s after its handler returned", p.r.jobID)
	}
	err := p.e.update(ctx, p.r, StatusInProgress, TrimStatusDetails(details), p.e.opts.StepTimeoutMinutes)
	if rej, ended := endedRemotely(err); ended {
		p.log.Info("jobs: the execution ended in the cloud; cancelling its handler", "reason", rej.Code)
		p.cancel()
	}
	return err
}

// update sends one update with expectedVersion and tracks the version; on
// VersionMismatch for an execution still pending it takes the cloud's
// version and tries once more.
func (e *Engine) update(ctx context.Context, r *run, status Status, details map[string]string, stepTimeout int64) error {
	for retried := false; ; retried = true {
		acc, err := e.c.Update(ctx, r.jobID, UpdateRequest{
			Status:                   status,
			StatusDetails:            details,
			ExpectedVersion:          r.version.Load(),
			ExecutionNumber:          r.number,
			IncludeJobExecutionState: true,
			StepTimeoutInMinutes:     stepTimeout,
		})
		if err == nil {
			if acc.ExecutionState != nil {
				r.version.Store(acc.ExecutionState.VersionNumber)
			} else {
				r.version.Add(1)
			}
			return nil
		}
		var rej *RejectedError
		if retried || !errors.As(err, &rej) || rej.Code != CodeVersionMismatch ||
			rej.ExecutionState == nil || rej.ExecutionState.Status.Terminal() {
			return err
		}
		e.log.Debug("jobs: version mismatch; retrying with the cloud's version", "job_id", r.jobID,
			"version", r.version.Load(), "cloud_version", rej.ExecutionState.VersionNumber)
		r.version.Store(rej.ExecutionState.VersionNumber)
	}
}

// finish saves res as the outcome of the current execution, to be
// delivered next.
func (e *Engine) finish(log *slog.Logger, res Result) {
	switch res.Status {
	case StatusSucceeded, StatusFailed, StatusRejected:
	default:
		log.Error("jobs: the handler returned a status other than SUCCEEDED, FAILED or REJECTED; reporting FAILED", "status", res.Status)
		details := maps.Clone(res.Details)
		if details == nil {
			details = map[string]string{}
		}
		details["reason"] = fmt.Sprintf("the handler ended with status %q", res.Status)
		res.Status, res.Details = StatusFailed, details
	}
	e.st.VersionNumber = e.run.version.Load()
	e.st.Outcome = &outcome{Status: res.Status, StatusDetails: TrimStatusDetails(res.Details)}
	e.onReported, e.fresh = res.OnReported, true
	if err := e.save(); err != nil {
		log.Error("jobs: could not save the outcome; it is lost if thingd stops before the cloud accepts it", "err", err)
	}
}

// deliver sends the saved outcome until the cloud accepts it or refuses it
// for good, retrying after RetryDelay or the next Connected call. It returns
// an error only when ctx is done.
func (e *Engine) deliver(ctx context.Context) error {
	o := e.st.Outcome
	log := e.log.With("job_id", e.st.JobID, "op", e.st.Operation, "status", o.Status)
	e.setCurrent(e.st.JobID)
	defer e.setCurrent("")
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		err := e.update(ctx, e.run, o.Status, o.StatusDetails, 0)
		if err == nil {
			log.Info("jobs: execution reported")
			e.reported(ctx, log, nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var rej *RejectedError
		if r, ended := endedRemotely(err); ended {
			if r.ExecutionState != nil && r.ExecutionState.Status == o.Status {
				log.Info("jobs: the cloud already has this status")
				e.reported(ctx, log, nil)
			} else {
				log.Warn("jobs: the execution already ended in the cloud; its status was not recorded", "err", err)
				e.reported(ctx, log, fmt.Errorf("jobs: %s was not recorded for %s: the execution already ended in the cloud: %w", o.Status, e.st.JobID, err))
			}
			return nil
		} else if errors.As(err, &rej) && (rej.Code == CodeInvalidRequest || rej.Code == CodeInvalidJSON) {
			if o.StatusDetails == nil {
				log.Error("jobs: the cloud refused the report; giving up", "err", err)
				e.reported(ctx, log, fmt.Errorf("jobs: gave up reporting %s for %s: %w", o.Status, e.st.JobID, err))
				return nil
			}
			log.Warn("jobs: the cloud refused the status details; reporting without them", "err", err)
			o.StatusDetails = nil
			if err := e.save(); err != nil {
				log.Error("jobs: could not save the outcome", "err", err)
			}
			continue
		}
		log.Log(ctx, quietAfterFirst(attempt), "jobs: could not report the execution; will retry", "attempt", attempt, "retry_in", e.opts.RetryDelay, "err", err)
		timer.Reset(e.opts.RetryDelay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-e.connected:
			timer.Stop()
		}
	}
}

// quietAfterFirst is the level for logging the attempt-th failure in a row
// of something retried every few seconds: WARN for attempts 1, 2, 4, 8, ...,
// DEBUG for the others, so that a long time offline does not flood the log.
func quietAfterFirst(attempt int) slog.Level {
	if attempt&(attempt-1) == 0 {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// reported ends the report of the saved outcome: it calls the result's
// OnReported (or, for an outcome saved by an earlier run, the handler's
// ReportObserver), then forgets the execution.
func (e *Engine) reported(ctx context.Context, log *slog.Logger, err error) {
	st, cb, fresh := e.st, e.onReported, e.fresh
	e.onReported, e.fresh = nil, false
	e.lastDone = execKey{st.JobID, st.ExecutionNumber}
	if cb != nil {
		recovered(log, "OnReported", func() { cb(ctx, err) })
	} else if obs, ok := e.handler(st.Operation).(ReportObserver); ok && !fresh {
		recovered(log, "Reported", func() { obs.Reported(ctx, st.JobID, st.Outcome.Status, err) })
	}
	e.forget()
}

// forget clears the saved state.
func (e *Engine) forget() {
	e.st, e.run = state{}, nil
	if err := e.save(); err != nil {
		e.log.Error("jobs: could not clear the saved execution", "err", err)
	}
}

// save writes st through the Persister.
func (e *Engine) save() error {
	data, err := json.Marshal(e.st)
	if err != nil {
		return fmt.Errorf("jobs: encode state: %w", err)
	}
	if err := e.opts.Persister.Write(data); err != nil {
		return fmt.Errorf("jobs: save state: %w", err)
	}
	return nil
}
