package serialport

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// KeeperOptions configure a [Keeper]. The zero value is usable.
type KeeperOptions struct {
	// Backoff bounds the delays between reopen attempts.
	Backoff Backoff
	// Logger receives one record per state change (open, gone, the first
	// failed reopen and any later one that fails differently) and debug
	// records for the other attempts. Nil discards them.
	Logger *slog.Logger
	// OnState, if set, is called from Run's goroutine at every state
	// change: up true with a nil error once the port is open; up false
	// with the reason when the first attempt fails, when the open port
	// goes away (an error matching ErrGone) and when Run returns while the
	// port was open (ErrClosed). It must not block for long; it may call
	// the Keeper's methods.
	OnState func(up bool, err error)
	// Rand returns a number in [0, 1) for backoff jitter; nil uses
	// math/rand/v2.
	Rand func() float64

	// list replaces the USB enumerator in tests.
	list listFunc
}

// Keeper keeps a serial port open: Run opens it, and reopens it with
// backoff whenever a Read, Write or ResetInputBuffer finds the device
// gone. Meanwhile the Keeper stands in for the port: its methods use the
// port when it is open and fail with an error matching ErrGone when it is
// not, without waiting for the backoff. All methods are safe for
// concurrent use.
//
// The Keeper notices that a device went away only through the calls made
// on it, which device adapters make all the time; Up reports true until
// then.
type Keeper struct {
	cfg  Config
	name string
	bo   Backoff
	log  *slog.Logger
	rand func() float64
	list listFunc
	on   func(up bool, err error)

	lostc chan struct{} // cap 1: a call found the open port gone
	done  chan struct{} // closed when Run returns

	mu      sync.Mutex // guards the fields below
	port    *Port      // the open port; nil while down
	lost    *Port      // the port found gone, for Run to close
	lostErr error      // why lost is gone
	lastErr error      // why the port is down; nil before the first attempt
	timeout time.Duration
	ready   chan struct{} // closed while port is not nil
	running bool          // Run was called
	stopped bool          // Run returned
}

// NewKeeper returns a Keeper for the port cfg describes, or an error if cfg
// is invalid (see [Config.Validate]). Nothing is opened until Run.
func NewKeeper(cfg Config, opts KeeperOptions) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k := &Keeper{
		cfg:     cfg,
		name:    cfg.String(),
		bo:      opts.Backoff,
		log:     opts.Logger,
		rand:    opts.Rand,
		list:    opts.list,
		on:      opts.OnState,
		lostc:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		timeout: cfg.readTimeout(),
		ready:   make(chan struct{}),
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if k.rand == nil {
		k.rand = rand.Float64
	}
	if k.list == nil {
		k.list = listPorts
	}
	return k, nil
}

// Name names the port as Config.String does.
func (k *Keeper) Name() string { return k.name }

// Run opens the port at once, then keeps it open until ctx is done: when a
// call finds the device gone, Run closes the port and reopens it after a
// backoff delay, resolving a USB id again each time. It retries forever;
// it returns ctx's error after closing the port. Run may be called only
// once.
func (k *Keeper) Run(ctx context.Context) error {
	k.mu.Lock()
	if k.running {
		k.mu.Unlock()
		return fmt.Errorf("serialport: keeper for %s: Run called twice", k.name)
	}
	k.running = true
	k.mu.Unlock()
	defer k.stop()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	attempt := 0     // index of the next backoff delay
	failures := 0    // failed opens since the port was last open
	down := false    // OnState(false, ...) was reported
	lastLogged := "" // the last open error logged at warning level
	for {
		p, err := openPort(ctx, k.cfg, k.list)
		if err == nil {
			k.setUp(p)
			k.log.Info("serial port open", "port", p.String(), "failed_attempts", failures)
			k.notify(true, nil)
			down, failures, lastLogged = false, 0, ""
			opened := time.Now()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-k.lostc:
			}
			old, cause := k.takeLost()
			if err := old.Close(); err != nil {
				// Nothing more to do with a vanished device's descriptor.
				k.log.Debug("serial port close after loss", "port", old.String(), "err", err)
			}
			k.log.Warn("serial port gone", "port", old.String(), "err", cause)
			k.notify(false, cause)
			down = true
			attempt = k.bo.afterUp(attempt, time.Since(opened))
		} else {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			k.setDown(err)
			if !down {
				k.notify(false, err)
				down = true
			}
		}
		delay := k.bo.Delay(attempt, k.rand())
		attempt++
		if err != nil {
			if msg := err.Error(); msg != lastLogged {
				k.log.Warn("serial port unavailable", "port", k.name, "err", err, "attempt", failures, "retry_in", delay)
				lastLogged = msg
			} else {
				k.log.Debug("serial port unavailable", "port", k.name, "err", err, "attempt", failures, "retry_in", delay)
			}
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// setUp installs p as the open port.
func (k *Keeper) setUp(p *Port) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// Cannot fail: k.timeout is always positive.
	_ = p.SetReadTimeout(k.timeout)
	k.port = p
	k.lastErr = nil
	close(k.ready)
}

// setDown records why the port could not be opened.
func (k *Keeper) setDown(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastErr = err
}

// markLost takes p down if it is still the open port, and wakes Run.
func (k *Keeper) markLost(p *Port, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.port != p || p == nil {
		return // already handled, or Run returned
	}
	k.port = nil
	k.lost, k.lostErr, k.lastErr = p, err, err
	k.ready = make(chan struct{})
	select {
	case k.lostc <- struct{}{}:
	default: // cannot happen: one signal per open port, consumed before the next
	}
}

// takeLost hands the lost port to Run.
func (k *Keeper) takeLost() (*Port, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, err := k.lost, k.lostErr
	k.lost, k.lostErr = nil, nil
	return p, err
}

// stop closes whatever is open when Run returns.
func (k *Keeper) stop() {
	k.mu.Lock()
	wasUp := k.port != nil
	ports := []*Port{k.port, k.lost}
	k.port, k.lost = nil, nil
	k.stopped = true
	if wasUp {
		k.ready = make(chan struct{})
	}
	close(k.done)
	k.mu.Unlock()
	for _, p := range ports {
		if p == nil {
			continue
		}
		if err := p.Close(); err != nil {
			k.log.Warn("serial port close", "port", p.String(), "err", err)
		}
	}
	if wasUp {
		k.log.Info("serial port closed", "port", k.name)
		k.notify(false, &portError{op: "keep", port: k.name, kind: ErrClosed})
	}
}

// notify calls OnState, if set. It is called without k.mu held.
func (k *Keeper) notify(up bool, err error) {
	if k.on != nil {
		k.on(up, err)
	}
}

// use returns the open port for op, or the error to return instead: one
// matching ErrClosed once Run returned, or ErrGone while the port is down.
// With wait set, a call finding the port down first waits up to the read
// timeout for it to come back.
func (k *Keeper) use(op string, wait bool) (*Port, error) {
	k.mu.Lock()
	if wait && !k.stopped && k.port == nil {
		ready, timeout := k.ready, k.timeout
		k.mu.Unlock()
		t := time.NewTimer(timeout)
		select {
		case <-ready:
		case <-k.done:
		case <-t.C:
		}
		t.Stop()
		k.mu.Lock()
	}
	defer k.mu.Unlock()
	switch {
	case k.stopped:
		return nil, &portError{op: op, port: k.name, kind: ErrClosed}
	case k.port != nil:
		return k.port, nil
	default:
		return nil, k.downErrLocked(op)
	}
}

// downErrLocked is the error for op while the port is down.
func (k *Keeper) downErrLocked(op string) error {
	if k.lastErr == nil {
		return &portError{op: op, port: k.name, kind: ErrGone, text: "device not open yet"}
	}
	return &portError{op: op, port: k.name, kind: ErrGone, text: "device not open", err: k.lastErr}
}

// failed looks at err from op on p: a gone device takes the port down; a
// port closed under the call (by Run, after another call found it gone)
// means the device is down rather than the Keeper closed.
func (k *Keeper) failed(p *Port, op string, err error) error {
	switch {
	case errIsKind(err, ErrGone):
		k.markLost(p, err)
	case errIsKind(err, ErrClosed):
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.stopped {
			return k.downErrLocked(op)
		}
	}
	return err
}

// Read reads from the open port; see [Port.Read]. While the port is down
// it waits up to the read timeout for it to come back (and then reads with
// the full timeout), else fails with an error matching ErrGone and the
// last open error, such as ErrNotFound or ErrPermission. A read that finds
// the device gone fails with ErrGone and makes Run reopen the port. After
// Run returned, Read fails with ErrClosed.
func (k *Keeper) Read(b []byte) (int, error) {
	p, err := k.use("read", true)
	if err != nil {
		return 0, err
	}
	n, err := p.Read(b)
	if err != nil {
		err = k.failed(p, "read", err)
	}
	return n, err
}

// Write writes to the open port; see [Port.Write]. While the port is down
// it fails at once with an error matching ErrGone; otherwise as Read.
func (k *Keeper) Write(b []byte) (int, error) {
	p, err := k.use("write", false)
	if err != nil {
		return 0, err
	}
	n, err := p.Write(b)
	if err != nil {
		err = k.failed(p, "write", err)
	}
	return n, err
}

// ResetInputBuffer discards unread input on the open port; while the port
// is down it fails at once with an error matching ErrGone.
func (k *Keeper) ResetInputBuffer() error {
	p, err := k.use("reset input buffer", false)
	if err != nil {
		return err
	}
	if err := p.ResetInputBuffer(); err != nil {
		return k.failed(p, "reset input buffer", err)
	}
	return nil
}

// SetReadTimeout sets the read timeout of the open port and of every port
// Run opens later. d must be positive.
func (k *Keeper) SetReadTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("serialport: set read timeout on %s: %v is not positive", k.name, d)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timeout = d
	if k.port != nil {
		return k.port.SetReadTimeout(d)
	}
	return nil
}

// Up reports whether the port is open, as far as the Keeper knows.
func (k *Keeper) Up() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.port != nil
}

// Ready returns a channel that is closed while the port is open. Once the
// port goes away, later calls return a new channel, closed when it is open
// again; after Run returns it is never closed.
func (k *Keeper) Ready() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ready
}

// Wait waits until the port is open and returns nil. It returns an error
// matching ErrClosed once Run returned, or ctx's error, with the last open
// error if there was one, when ctx is done first.
func (k *Keeper) Wait(ctx context.Context) error {
	for {
		k.mu.Lock()
		up, stopped, ready, last := k.port != nil, k.stopped, k.ready, k.lastErr
		k.mu.Unlock()
		switch {
		case stopped:
			return &portError{op: "wait for", port: k.name, kind: ErrClosed}
		case up:
			return nil
		}
		select {
		case <-ready:
		case <-k.done:
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("serialport: wait for %s: %w (last error: %w)", k.name, ctx.Err(), last)
			}
			return fmt.Errorf("serialport: wait for %s: %w", k.name, ctx.Err())
		}
	}
}
