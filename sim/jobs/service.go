package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/internal/timers"
	"github.com/thingd/thingd/sim/registry"
)

// Errors returned (wrapped) by the control-plane methods besides the
// registry's ErrNotFound, ErrAlreadyExists and ErrInvalid.
var (
	// ErrInvalidStateTransition: the job cannot be canceled in its status.
	ErrInvalidStateTransition = errors.New("invalid state transition")
	// ErrClosed: the service has been closed.
	ErrClosed = errors.New("jobs: service closed")
)

var (
	bucketJobs       = []byte("Jobs")
	bucketExecutions = []byte("JobExecutions") // thing \x00 jobId → Execution
	bucketJobThings  = []byte("JobThings")     // jobId \x00 thing
)

// Options configure a Service.
type Options struct {
	// Registry holds the things and thing groups jobs target; the service
	// keeps its own buckets in the registry's database. Required.
	Registry *registry.Registry
	// Publish sends notifications and events to the topic's subscribers
	// (the broker's fan-out). Required.
	Publish func(topic string, payload []byte) error
	// Now is the clock for timestamps and deadlines; nil means time.Now.
	Now func() time.Time
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// TimeoutUnit is the length of the "minute" of stepTimeoutInMinutes and
	// inProgressTimeoutInMinutes; zero means time.Minute. Tests shorten it.
	TimeoutUnit time.Duration
	// OnTerminal, if set, is called after an execution reached a terminal
	// status, outside the service's locks, in the order of the changes.
	OnTerminal func(Terminal)
}

// Service is the Jobs service. It is safe for concurrent use.
type Service struct {
	db         *bolt.DB
	publish    func(topic string, payload []byte) error
	now        func() time.Time
	log        *slog.Logger
	unit       time.Duration
	onTerminal func(Terminal)

	timers *timers.Set // timeouts, by execution key

	// mu serializes changes, so that the notifications of one thing go out
	// in the order of its changes; it guards the following.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // changes in flight, hooks included
}

// New returns a service storing its data in opts.Registry's database. Start
// arms the timers of stored executions.
func New(opts Options) (*Service, error) {
	if opts.Registry == nil || opts.Publish == nil {
		return nil, errors.New("jobs: Options.Registry and Options.Publish are required")
	}
	s := &Service{
		db:         opts.Registry.DB(),
		publish:    opts.Publish,
		now:        opts.Now,
		log:        opts.Logger,
		unit:       opts.TimeoutUnit,
		onTerminal: opts.OnTerminal,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.unit <= 0 {
		s.unit = time.Minute
	}
	s.timers = timers.New(s.now)
	if err := opts.Registry.CreateBuckets(bucketJobs, bucketExecutions, bucketJobThings); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return s, nil
}

// Start arms the timeout timers of the stored pending executions; deadlines
// that passed while the simulator was stopped fire at once.
func (s *Service) Start() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return registry.ForEachJSON(tx, bucketExecutions, "execution", func(_ []byte, e Execution) error {
			s.arm(e)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	return nil
}

// Close stops the timers and waits for changes in flight. Later calls fail
// with ErrClosed.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.timers.Close()
	s.wg.Wait()
}

// message is a notification or event to publish.
type message struct {
	topic   string
	payload []byte
}

// change is one read-write transaction of the service and what it sends
// once committed: the reply to the requester first, then notifications and
// events.
type change struct {
	tx  *bolt.Tx
	now time.Time

	before      map[string][]Execution // pending executions of each touched thing, before the change
	things      []string               // touched things, in order
	execs       []Execution            // changed executions, for the timers
	changedJobs []string               // jobs whose executions changed
	reply       func()
	msgs        []message
	terminal    []Terminal
}

// change runs fn in a read-write transaction under s.mu, then sends the
// reply, the notifications and the events, arms the timers and calls
// OnTerminal. An error from fn (a *rejection for device requests) rolls the
// transaction back and is returned.
func (s *Service) change(fn func(c *change) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.wg.Add(1)
	defer s.wg.Done()
	c := &change{now: s.now().UTC(), before: map[string][]Execution{}}
	err := s.db.Update(func(tx *bolt.Tx) error {
		c.tx = tx
		if err := fn(c); err != nil {
			return err
		}
		return c.finish()
	})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if c.reply != nil {
		c.reply()
	}
	for _, m := range c.msgs {
		if err := s.publish(m.topic, m.payload); err != nil {
			s.log.Error("publish", "topic", m.topic, "error", err)
		}
	}
	for _, e := range c.execs {
		s.arm(e)
	}
	s.mu.Unlock()
	if s.onTerminal != nil {
		for _, t := range c.terminal {
			s.onTerminal(t)
		}
	}
	return nil
}

// view runs fn in a read-only transaction.
func (s *Service) view(fn func(c *change) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return fn(&change{tx: tx, now: s.now().UTC()})
	})
}

// arm (re)arms or stops the timeout timer of an execution.
func (s *Service) arm(e Execution) {
	key, deadline := execKey(e.ThingName, e.JobID), e.Deadline()
	if IsTerminal(e.Status) || deadline.IsZero() {
		s.timers.Stop(key)
		return
	}
	thing, jobID := e.ThingName, e.JobID
	s.timers.Arm(key, deadline, func() { s.timeout(thing, jobID, deadline) })
}

// timeout moves an execution to TIMED_OUT if it is still pending with the
// deadline its timer was armed for.
func (s *Service) timeout(thing, jobID string, deadline time.Time) {
	err := s.change(func(c *change) error {
		e, ok, err := c.execution(thing, jobID)
		if err != nil || !ok || IsTerminal(e.Status) || !e.Deadline().Equal(deadline) {
			return err
		}
		s.log.Info("job execution timed out", "thing", thing, "job_id", jobID)
		e.Status = StatusTimedOut
		return c.save(&e)
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		s.log.Error("job execution timeout", "thing", thing, "job_id", jobID, "error", err)
	}
}

func execKey(thing, jobID string) string { return thing + "\x00" + jobID }

func (c *change) job(id string) (Job, bool, error) {
	var j Job
	data := c.tx.Bucket(bucketJobs).Get([]byte(id))
	if data == nil {
		return Job{}, false, nil
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return Job{}, false, fmt.Errorf("decode job %s: %w", id, err)
	}
	return j, true, nil
}

func (c *change) mustJob(id string) (Job, error) {
	j, ok, err := c.job(id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: job %s", registry.ErrNotFound, id)
	}
	return j, err
}

func (c *change) putJob(j Job) error {
	data, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return c.tx.Bucket(bucketJobs).Put([]byte(j.ID), data)
}

func (c *change) allJobs() ([]Job, error) {
	var out []Job
	err := registry.ForEachJSON(c.tx, bucketJobs, "job", func(_ []byte, j Job) error {
		out = append(out, j)
		return nil
	})
	return out, err
}

func (c *change) execution(thing, jobID string) (Execution, bool, error) {
	var e Execution
	data := c.tx.Bucket(bucketExecutions).Get([]byte(execKey(thing, jobID)))
	if data == nil {
		return Execution{}, false, nil
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return Execution{}, false, fmt.Errorf("decode execution of %s on %s: %w", jobID, thing, err)
	}
	return e, true, nil
}

// thingExecutions returns a thing's executions, by job id.
func (c *change) thingExecutions(thing string) ([]Execution, error) {
	var out []Execution
	prefix := []byte(thing + "\x00")
	cur := c.tx.Bucket(bucketExecutions).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var e Execution
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decode execution %q: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// jobExecutions returns the executions of a job, by thing name.
func (c *change) jobExecutions(jobID string) ([]Execution, error) {
	var out []Execution
	prefix := []byte(jobID + "\x00")
	cur := c.tx.Bucket(bucketJobThings).Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		e, ok, err := c.execution(string(k[len(prefix):]), jobID)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// pending returns a thing's QUEUED and IN_PROGRESS executions in the order
// $next follows: IN_PROGRESS first, then queue order.
func (c *change) pending(thing string) ([]Execution, error) {
	all, err := c.thingExecutions(thing)
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(e Execution) bool { return IsTerminal(e.Status) })
	slices.SortFunc(out, func(a, b Execution) int {
		if (a.Status == StatusInProgress) != (b.Status == StatusInProgress) {
			if a.Status == StatusInProgress {
				return -1
			}
			return 1
		}
		if n := a.QueuedAt.Compare(b.QueuedAt); n != 0 {
			return n
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
}

// touch records a thing's pending executions before the change modifies
// them.
func (c *change) touch(thing string) error {
	if _, ok := c.before[thing]; ok {
		return nil
	}
	p, err := c.pending(thing)
	if err != nil {
		return err
	}
	if p == nil {
		p = []Execution{}
	}
	c.before[thing] = p
	c.things = append(c.things, thing)
	return nil
}

// queue creates a QUEUED execution of job on thing.
func (c *change) queue(j Job, thing string, executionNumber int64) error {
	seq, err := c.tx.Bucket(bucketExecutions).NextSequence()
	if err != nil {
		return err
	}
	e := Execution{
		JobID: j.ID, ThingName: thing, Status: StatusQueued, QueuedAt: c.now, LastUpdatedAt: c.now,
		VersionNumber: 1, ExecutionNumber: executionNumber, Seq: seq,
	}
	if err := c.touch(thing); err != nil {
		return err
	}
	if err := c.tx.Bucket(bucketJobThings).Put([]byte(j.ID+"\x00"+thing), nil); err != nil {
		return err
	}
	return c.put(e)
}

// save stores a changed execution: it bumps versionNumber and
// lastUpdatedAt, clears the timers of a terminal one, and records the
// terminal transition (event and OnTerminal).
func (c *change) save(e *Execution) error {
	if err := c.touch(e.ThingName); err != nil {
		return err
	}
	e.VersionNumber++
	e.LastUpdatedAt = c.now
	if IsTerminal(e.Status) {
		e.StepDeadline, e.InProgressDeadline = time.Time{}, time.Time{}
		j, err := c.mustJob(e.JobID)
		if err != nil {
			return err
		}
		c.terminal = append(c.terminal, Terminal{Execution: *e, Document: j.Document})
		c.event(fmt.Sprintf("$aws/events/jobExecution/%s/%s", e.JobID, operation(e.Status)), executionEvent{
			EventType: "JOB_EXECUTION", EventID: registry.NewUUID(), Timestamp: c.now.Unix(), Operation: operation(e.Status),
			JobID: e.JobID, ThingArn: registry.ThingARN(e.ThingName), Status: e.Status, StatusDetails: e.StatusDetails,
		})
	}
	return c.put(*e)
}

func (c *change) put(e Execution) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode execution: %w", err)
	}
	if err := c.tx.Bucket(bucketExecutions).Put([]byte(execKey(e.ThingName, e.JobID)), data); err != nil {
		return err
	}
	c.execs = append(c.execs, e)
	c.jobChanged(e.JobID)
	return nil
}

// jobChanged makes finish check whether the job is complete.
func (c *change) jobChanged(id string) {
	if !slices.Contains(c.changedJobs, id) {
		c.changedJobs = append(c.changedJobs, id)
	}
}

// operation is the lower-case event operation of a terminal status.
func operation(status string) string {
	switch status {
	case StatusTimedOut:
		return "timed_out"
	}
	b := []byte(status)
	for i, ch := range b {
		if ch >= 'A' && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

func (c *change) event(topic string, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("jobs: encode %T: %v", v, err)) // plain structs always encode
	}
	c.msgs = append(c.msgs, message{topic, payload})
}

// finish completes snapshot jobs whose executions are all terminal and
// queues the notifications of every touched thing.
func (c *change) finish() error {
	for _, id := range c.changedJobs {
		j, err := c.mustJob(id)
		if err != nil {
			return err
		}
		if err := c.completeIfDone(j); err != nil {
			return err
		}
	}
	for _, thing := range c.things {
		before := c.before[thing]
		after, err := c.pending(thing)
		if err != nil {
			return err
		}
		if !sameJobs(before, after) {
			c.notify(thing, after)
		}
		if headJob(before) != headJob(after) {
			if err := c.notifyNext(thing, after); err != nil {
				return err
			}
		}
	}
	return nil
}

// completeIfDone marks an IN_PROGRESS snapshot job COMPLETED when none of
// its executions is pending.
func (c *change) completeIfDone(j Job) error {
	if j.Status != JobInProgress || j.TargetSelection != Snapshot {
		return nil
	}
	execs, err := c.jobExecutions(j.ID)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(execs, func(e Execution) bool { return !IsTerminal(e.Status) }) {
		return nil
	}
	j.Status, j.CompletedAt, j.LastUpdatedAt = JobCompleted, c.now, c.now
	c.jobEvent(j, "completed")
	return c.putJob(j)
}

func (c *change) jobEvent(j Job, op string) {
	c.event("$aws/events/job/"+j.ID+"/"+op, jobEvent{
		EventType: "JOB", EventID: registry.NewUUID(), Timestamp: c.now.Unix(), Operation: op,
		JobID: j.ID, Status: j.Status, TargetSelection: j.TargetSelection,
	})
}

func sameJobs(a, b []Execution) bool {
	if len(a) != len(b) {
		return false
	}
	ids := map[string]bool{}
	for _, e := range a {
		ids[e.JobID] = true
	}
	for _, e := range b {
		if !ids[e.JobID] {
			return false
		}
	}
	return true
}

func headJob(p []Execution) string {
	if len(p) == 0 {
		return ""
	}
	return p[0].JobID
}

func thingTopic(thing, suffix string) string { return "$aws/things/" + thing + "/jobs/" + suffix }

// notify queues a JobExecutionsChanged message.
func (c *change) notify(thing string, pending []Execution) {
	p := notifyPayload{Timestamp: c.now.Unix(), Jobs: map[string][]wireSummary{}}
	for _, e := range pending[:min(len(pending), MaxPendingInResponse)] {
		p.Jobs[e.Status] = append(p.Jobs[e.Status], e.summary())
	}
	c.event(thingTopic(thing, "notify"), p)
}

// notifyNext queues a NextJobExecutionChanged message.
func (c *change) notifyNext(thing string, pending []Execution) error {
	p := notifyNextPayload{Timestamp: c.now.Unix()}
	if len(pending) > 0 {
		j, err := c.mustJob(pending[0].JobID)
		if err != nil {
			return err
		}
		p.Execution = pending[0].wire(j.Document)
	}
	c.event(thingTopic(thing, "notify-next"), p)
	return nil
}
