package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// maxConflicts is how many version conflicts in a row one attempt of the
// Reporter resolves (read, recompute, resend) before it waits RetryDelay.
const maxConflicts = 3

// ReporterOptions configure a Reporter. The zero value is usable.
type ReporterOptions struct {
	// Logger receives the reporter's decisions; nil discards them.
	Logger *slog.Logger
	// RetryDelay is the wait after a failed attempt (no connection, no
	// reply, a throttled or failed request) before the next one; zero
	// means 5 s. A Connected call cuts the wait short.
	RetryDelay time.Duration
}

// Reporter keeps the reported section of a shadow equal to what the agent
// last Set, sending as little as it can:
//
//   - It sends only what changed since the last accepted report: a JSON
//     merge patch of the reported tree, with the changed leaves and null
//     for removed keys. Changes made while offline, while backing off or
//     while a send is in flight are coalesced into one update.
//   - Every update carries the version the Reporter's view of the cloud was
//     read or accepted at (none if the shadow did not exist). On a 409
//     conflict it reads the shadow (Get) and sends the difference from what
//     the cloud has, rather than overwriting; after more than 3 conflicts
//     in a row it waits RetryDelay first.
//   - After every Connected call it reads the shadow once and sends what
//     differs: the cloud may have lost or changed the reported state.
//   - A failed or unanswered update is never lost: the patch is recomputed
//     against the last accepted state and sent again after RetryDelay or on
//     Connected. A rejection that cannot succeed on a retry (400, 401, 403,
//     404, 413, or a state over the limits) waits for the next Set or
//     Connected.
//
// The Reporter owns the whole reported section: keys the agent does not Set
// are removed from the cloud. It never touches desired. It sends nothing
// before the first Set, nor before the first Connected call (except through
// Flush).
type Reporter struct {
	c          *Client
	log        *slog.Logger
	retryDelay time.Duration

	changed   chan struct{}   // capacity 1: Set changed the wanted state
	connected chan struct{}   // capacity 1: a pending Connected call
	flushes   chan chan error // Flush requests, each with its answer channel
	running   atomic.Bool     // Run is running

	mu   sync.Mutex     // guards want
	want map[string]any // the latest Set, as a tree; nil before the first Set

	// Owned by Run's goroutine.
	cloud map[string]any // the reported tree the cloud has, as far as we know
	base  int64          // the shadow version cloud was read or accepted at; 0 sends no version
	stale bool           // cloud must be read (Get) before the next update
}

// NewReporter returns a Reporter that reports through c. It starts nothing;
// call Run.
func NewReporter(c *Client, opts ReporterOptions) *Reporter {
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("thing", c.thing)
	if c.shadow != "" {
		log = log.With("shadow", c.shadow)
	}
	return &Reporter{
		c:          c,
		log:        log,
		retryDelay: opts.RetryDelay,
		changed:    make(chan struct{}, 1),
		connected:  make(chan struct{}, 1),
		flushes:    make(chan chan error),
		stale:      true,
	}
}

// Set makes reported the full reported state the agent wants in the cloud.
// It is copied (encoded as JSON) before Set returns; null members are left
// out. It never blocks. A value encoding/json cannot encode is logged and
// ignored: the previous state stays.
func (r *Reporter) Set(reported map[string]any) {
	t, err := toTree(reported)
	if err != nil {
		r.log.Error("shadow: Set: cannot encode the reported state; keeping the previous one", "err", err)
		return
	}
	r.mu.Lock()
	same := r.want != nil && equalValue(r.want, t)
	r.want = t
	r.mu.Unlock()
	if same {
		return
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Connected tells the Reporter that the connection is (again) up: it reads
// the shadow and sends what differs. The agent calls it after every connect.
// It never blocks.
func (r *Reporter) Connected() {
	select {
	case r.connected <- struct{}{}:
	default:
	}
}

// Flush makes an attempt now, whatever the state of the connection or of a
// retry, and waits for it: it returns nil once the cloud has accepted the
// state last Set (or there was nothing to send), and the attempt's error
// otherwise. It needs Run to be running; until then it waits for ctx.
func (r *Reporter) Flush(ctx context.Context) error {
	answer := make(chan error, 1)
	select {
	case r.flushes <- answer:
	case <-ctx.Done():
		return fmt.Errorf("shadow: flush of %s: %w", r.c.name(), ctx.Err())
	}
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return fmt.Errorf("shadow: flush of %s: %w", r.c.name(), ctx.Err())
	}
}

// Run reports until ctx is done, then returns ctx.Err(). It works after
// every Connected call, every Set that changes the state (once connected
// and not backing off), every Flush and every retry. Only one Run may run
// at a time.
func (r *Reporter) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("shadow: Reporter.Run is already running")
	}
	defer r.running.Store(false)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	online, backingOff, failures := false, false, 0
	for {
		var answer chan error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.connected:
			online, r.stale = true, true
		case <-r.changed:
			if !online || backingOff {
				continue // the next Connected or retry sends it
			}
		case <-retry.C:
		case answer = <-r.flushes:
		}
		retry.Stop()
		backingOff = false
		err := r.sync(ctx)
		if answer != nil {
			answer <- err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil:
			if failures > 0 {
				r.log.Info("shadow: reported state delivered", "failed_attempts", failures)
			}
			failures = 0
		case !retryable(err):
			failures = 0
			r.log.Error("shadow: the reported state was refused; waiting for the next change or connect", "err", err)
		default:
			failures++
			level := slog.LevelDebug
			if failures == 1 {
				level = slog.LevelWarn
			}
			r.log.Log(ctx, level, "shadow: could not report; will retry", "attempt", failures, "retry_in", r.retryDelay, "err", err)
			retry.Reset(r.retryDelay)
			backingOff = true
		}
	}
}

// retryable reports whether an attempt that failed with err may succeed if
// repeated unchanged.
func retryable(err error) bool {
	var rej *ErrorResponse
	if errors.As(err, &rej) {
		return rej.Code == 409 || rej.Code == 429 || rej.Code >= 500
	}
	return !errors.Is(err, ErrInvalidState)
}

// latest returns the state last Set; nil before the first Set.
func (r *Reporter) latest() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.want
}

// sync makes the cloud's reported state equal to the latest Set: it reads
// the shadow if its view is stale, then sends the difference, until there
// is none.
func (r *Reporter) sync(ctx context.Context) error {
	conflicts := 0
	for {
		want := r.latest()
		if want == nil {
			return nil
		}
		if r.stale {
			if err := r.read(ctx); err != nil {
				return err
			}
		}
		patch := diffTree(r.cloud, want)
		if len(patch) == 0 {
			return nil
		}
		if size := treeBytes(want); size > MaxStateBytes {
			return &invalidStateError{what: "report of " + r.c.name(), reason: fmt.Sprintf("reported state is %d bytes, AWS allows %d", size, MaxStateBytes)}
		}
		doc, err := r.c.Update(ctx, State{Reported: patch}, r.base)
		if errors.Is(err, ErrVersionConflict) {
			// Someone else changed the shadow: read it before sending again.
			r.stale = true
			if conflicts++; conflicts <= maxConflicts {
				r.log.Debug("shadow: version conflict; reading the shadow again", "version", r.base)
				continue
			}
		}
		if err != nil {
			return err
		}
		r.log.Debug("shadow: reported", "version", doc.Version, "changed_keys", len(patch))
		r.cloud, r.base = want, doc.Version
	}
}

// read learns the cloud's reported state and version with a Get.
func (r *Reporter) read(ctx context.Context) error {
	doc, err := r.c.Get(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		r.cloud, r.base = map[string]any{}, 0
	case err != nil:
		return err
	default:
		cloud, err := decodeTree(doc.State.Reported)
		if err != nil {
			return fmt.Errorf("shadow: get of %s: reported: %w", r.c.name(), err)
		}
		r.cloud, r.base = cloud, doc.Version
	}
	r.stale = false
	return nil
}

// treeBytes is the size of t as compact JSON.
func treeBytes(t map[string]any) int {
	raw, err := json.Marshal(t)
	if err != nil { // a tree holds only what JSON decoding produces
		panic(err)
	}
	return len(raw)
}
