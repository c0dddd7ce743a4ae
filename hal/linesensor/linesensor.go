// Package linesensor is the [hal.Adapter] for microcontroller sensors that
// push newline-delimited JSON readings over a serial port, one object per
// line:
//
//	{"temp":21.5,"hum":40}
//
// # Lines
//
// [Parser] and [ParseLine] hold the line rules: "\n" or "\r\n" ends a
// line, blank lines are ignored, each other line must be one JSON object
// of at most [Options.MaxLineBytes] bytes (default [DefaultMaxLineBytes])
// within [MaxDepth], [MaxKeys] and [MaxKeyBytes]. Numbers decode as
// float64. Anything else (garbage, binary noise, an over-long line, a
// partial line cut off when the port fails) is counted in
// [hal.Stats.Malformed] and skipped; it is never fatal.
//
// # Lifecycle
//
// [New] only builds the adapter. [Adapter.Run] reads the port until its
// context is done and is the only goroutine the adapter needs; the caller
// starts it, cancels it and waits for it to return. Run never closes the
// port: whoever opened it closes it after Run has returned. [Adapter.Poll]
// and [Adapter.Stats] may be called from other goroutines at any time,
// before, during or after Run.
//
// # Polling and staleness
//
// Sensors push at their own pace and the gateway polls at its own. Each
// good line is merged into a pending batch (top-level keys, the latest
// value wins; nested objects are replaced whole, not merged). Poll returns:
//
//  1. the pending batch, if any line arrived since the previous Poll;
//  2. else the error the port last failed with, if its last read failed;
//  3. else the previous batch again, if the newest line is younger than
//     [Options.Stale], so a sensor slower than the poll interval stays
//     connected;
//  4. else it waits for the next line until Stale has passed since the
//     newest line (before any line: since New or the latest start of
//     Run), and then returns [hal.ErrNoResponse].
//
// Line sensors are read-only in this version: [Adapter.Write] always
// returns an error matching [hal.ErrReadOnly].
package linesensor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/thingd/thingd/hal"
)

// Port is the serial port a line sensor is attached to. hal/serialport's
// Port and Keeper satisfy it.
type Port interface {
	io.ReadWriter
	// SetReadTimeout bounds how long each following Read blocks waiting
	// for data. A Read that times out returns (0, nil) or an error that
	// [Options.IsTimeout] or the default timeout rule accepts.
	SetReadTimeout(d time.Duration) error
}

// DefaultStale is the [Options.Stale] used when it is zero: three times a
// typical 10 s push interval.
const DefaultStale = 30 * time.Second

// Options configure an [Adapter]. The zero value is usable. Options must
// not be changed after they are passed to [New].
type Options struct {
	// MaxLineBytes is the longest line accepted, terminator excluded.
	// Zero or less means DefaultMaxLineBytes.
	MaxLineBytes int
	// Stale is how long the sensor may stay silent before Poll reports
	// hal.ErrNoResponse; it is also how long Poll waits for a first line.
	// Set it to about three times the sensor's push interval. Zero or less
	// means DefaultStale.
	Stale time.Duration
	// IsTimeout reports whether a Read error only means that no data came
	// before the read timeout, such as serialport.ErrTimeout. Errors it
	// accepts, like (0, nil) reads and errors that have a Timeout() bool
	// method returning true or that match os.ErrDeadlineExceeded, are "no
	// data yet"; every other error means the port failed. Nil means the
	// default rule alone.
	IsTimeout func(error) bool
	// Logger receives debug records for skipped lines and warnings when
	// the port fails and recovers. Nil means no logging.
	Logger *slog.Logger
	// Now returns the current time, used to stamp lines and judge
	// staleness; Poll's wait itself uses a real timer. Nil means time.Now.
	Now func() time.Time
}

// readTimeout bounds each port read, so Run notices its context being
// done within about this long.
const readTimeout = 200 * time.Millisecond

// Retry delays after a failed read: the first one, and the cap the
// doubling stops at. They reset after a read succeeds.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
)

// Adapter is the [hal.Adapter] for one line sensor. Create it with [New]
// and drive it with [Adapter.Run]. Its methods are safe for concurrent use.
type Adapter struct {
	port      Port
	parser    *Parser // used only by Run
	stale     time.Duration
	isTimeout func(error) bool
	logger    *slog.Logger
	now       func() time.Time

	running sync.Mutex // held by Run while it runs

	// mu guards the following fields.
	mu       sync.Mutex
	pending  hal.Readings  // merged lines since the previous Poll, nil if none
	last     hal.Readings  // the batch the previous Poll returned
	lastLine time.Time     // when the newest good line arrived; zero if none
	started  time.Time     // when New returned or Run last started
	portErr  error         // the last read error, nil once a read works
	arrived  chan struct{} // closed and replaced when a good line arrives
	stats    hal.Stats
}

// New returns an adapter reading port. It starts nothing: call
// [Adapter.Run].
func New(port Port, opts Options) *Adapter {
	a := &Adapter{
		port:      port,
		parser:    NewParser(opts.MaxLineBytes),
		stale:     opts.Stale,
		isTimeout: opts.IsTimeout,
		logger:    opts.Logger,
		now:       opts.Now,
		arrived:   make(chan struct{}),
	}
	if a.stale <= 0 {
		a.stale = DefaultStale
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.started = a.now()
	return a
}

// Run reads lines from the port until ctx is done, then returns
// ctx.Err(). It sets the port's read timeout to a fraction of a second,
// so it returns about that long after ctx is done. A failing read does
// not stop it: the error is reported by Poll, and Run retries with a
// capped, doubling delay until reads work again, so the port underneath
// may be one that reopens itself. A partial line cut off by a failure, or
// by Run returning, is dropped and counted as malformed.
//
// Run returns an error without reading if the port's read timeout cannot
// be set, or if another Run on the same adapter is still running.
func (a *Adapter) Run(ctx context.Context) error {
	if !a.running.TryLock() {
		return errors.New("linesensor: Run is already running")
	}
	defer a.running.Unlock()
	if err := a.port.SetReadTimeout(readTimeout); err != nil {
		return fmt.Errorf("linesensor: set read timeout: %w", err)
	}
	a.mu.Lock()
	a.started = a.now()
	a.mu.Unlock()
	defer a.dropPartial()

	buf := make([]byte, 512)
	retry := time.Duration(0)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := a.port.Read(buf)
		if n > 0 {
			a.feed(buf[:n])
		}
		if err == nil || a.timedOut(err) {
			retry = 0
			a.setPortErr(nil)
			continue
		}
		a.dropPartial()
		a.setPortErr(err)
		retry = min(max(2*retry, retryMin), retryMax)
		if timer == nil {
			timer = time.NewTimer(retry)
		} else {
			timer.Reset(retry)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// timedOut reports whether err from Read only means that no data came.
func (a *Adapter) timedOut(err error) bool {
	if a.isTimeout != nil && a.isTimeout(err) {
		return true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// feed parses data and records what it held.
func (a *Adapter) feed(data []byte) {
	a.parser.Feed(data, func(r hal.Readings, err error) {
		if err != nil {
			a.malformed(err)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.stats.Frames++
		a.lastLine = a.now()
		if a.pending == nil {
			a.pending = r
		} else {
			maps.Copy(a.pending, r)
		}
		close(a.arrived)
		a.arrived = make(chan struct{})
	})
}

// dropPartial drops an unterminated line, counting it if it held data.
func (a *Adapter) dropPartial() {
	if err := a.parser.Reset(); err != nil {
		a.malformed(err)
	}
}

// malformed counts and logs a skipped line.
func (a *Adapter) malformed(err error) {
	a.mu.Lock()
	a.stats.Malformed++
	a.mu.Unlock()
	a.logger.Debug("linesensor: line skipped", "err", err)
}

// setPortErr records the outcome of a read: err, or nil once one works.
// It logs when the port starts failing and when it recovers.
func (a *Adapter) setPortErr(err error) {
	a.mu.Lock()
	was := a.portErr
	a.portErr = err
	a.mu.Unlock()
	switch {
	case was == nil && err != nil:
		a.logger.Warn("linesensor: port read failed", "err", err)
	case was != nil && err == nil:
		a.logger.Info("linesensor: port reads again")
	}
}

// Poll returns the readings received since the previous Poll, merged; or,
// if none arrived, the previous readings while the sensor is not yet
// stale; or an error. The rules are in the package doc, "Polling and
// staleness". Errors: one wrapping the port's read error while the port
// is failing, [hal.ErrNoResponse] once the sensor is stale (counted in
// [hal.Stats.Timeouts]), or ctx.Err(). The returned map is the caller's.
func (a *Adapter) Poll(ctx context.Context) (hal.Readings, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		a.mu.Lock()
		r, wait, arrived, err := a.pollLocked(a.now())
		a.mu.Unlock()
		if r != nil || err != nil {
			return r, err
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-arrived:
		case <-timer.C:
		}
	}
}

// pollLocked decides one step of Poll at now. It returns readings or an
// error to return, or else how long to wait for a line on arrived before
// deciding again.
func (a *Adapter) pollLocked(now time.Time) (r hal.Readings, wait time.Duration, arrived <-chan struct{}, err error) {
	if a.pending != nil {
		a.last, a.pending = a.pending, nil
		return clone(a.last), 0, nil, nil
	}
	if a.portErr != nil {
		return nil, 0, nil, fmt.Errorf("linesensor: read port: %w", a.portErr)
	}
	since := a.lastLine
	if since.IsZero() {
		since = a.started
	} else if a.last != nil && now.Sub(since) < a.stale {
		return clone(a.last), 0, nil, nil
	}
	if now.Sub(since) >= a.stale {
		a.stats.Timeouts++
		return nil, 0, nil, fmt.Errorf("linesensor: no line for %v: %w", a.stale, hal.ErrNoResponse)
	}
	return nil, a.stale - now.Sub(since), a.arrived, nil
}

// Write returns an error matching [hal.ErrReadOnly]: line sensors are
// read-only in this version.
func (a *Adapter) Write(ctx context.Context, name string, value any) error {
	return fmt.Errorf("linesensor: write %q: %w", name, hal.ErrReadOnly)
}

// Stats returns the adapter's counters: good lines (Frames), skipped lines
// (Malformed) and polls that returned hal.ErrNoResponse (Timeouts).
func (a *Adapter) Stats() hal.Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// clone returns a deep copy of r, so callers never share maps or slices
// with the adapter.
func clone(r hal.Readings) hal.Readings {
	out := make(hal.Readings, len(r))
	for k, v := range r {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		s := slices.Clone(v)
		for i, e := range s {
			s[i] = cloneValue(e)
		}
		return s
	}
	return v
}

var _ hal.Adapter = (*Adapter)(nil)
