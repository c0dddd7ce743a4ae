// Package sdnotify speaks systemd's notify protocol for thingd: READY=1,
// STATUS= lines, RELOADING=1/STOPPING=1, and WATCHDOG=1 pings that are sent
// only while the daemon's main loop proves it is alive. Without
// NOTIFY_SOCKET every call is a no-op, so thingd runs the same outside
// systemd. It wraps github.com/coreos/go-systemd/v22/daemon.
package sdnotify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends notifications to the service manager.
type Notifier struct {
	log *slog.Logger

	mu         sync.Mutex
	lastStatus string
}

// New returns a Notifier; log may be nil.
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: log}
}

func (n *Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// Ready tells systemd thingd is up (config valid, key open).
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Reloading tells systemd a reload (SIGHUP) has started; call Ready when it
// is done.
func (n *Notifier) Reloading() { n.send(daemon.SdNotifyReloading) }

// Stopping tells systemd thingd is shutting down.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Status sends a STATUS= line when it differs from the last one.
func (n *Notifier) Status(s string) {
	n.mu.Lock()
	same := s == n.lastStatus
	n.lastStatus = s
	n.mu.Unlock()
	if !same {
		n.send("STATUS=" + s)
	}
}

// WatchdogInterval is how often systemd wants WATCHDOG=1 (WatchdogSec=),
// and false if the watchdog is off.
func WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// Watchdog sends WATCHDOG=1 at half the interval systemd asked for, but only
// if the main loop has called Beat since the previous ping: a wedged loop
// stops the pings and systemd restarts thingd.
type Watchdog struct {
	n        *Notifier
	interval time.Duration

	mu   sync.Mutex
	beat bool
}

// NewWatchdog returns a watchdog pinging every interval/2.
func NewWatchdog(n *Notifier, interval time.Duration) *Watchdog {
	return &Watchdog{n: n, interval: interval}
}

// Period is how often the main loop should Beat (a quarter of the
// interval, so two beats fit between pings).
func (w *Watchdog) Period() time.Duration { return w.interval / 4 }

// Beat says the main loop went round once.
func (w *Watchdog) Beat() {
	w.mu.Lock()
	w.beat = true
	w.mu.Unlock()
}

// Run pings until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(w.interval / 2)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		ok := w.beat
		w.beat = false
		w.mu.Unlock()
		if ok {
			missed = 0
			w.n.send(daemon.SdNotifyWatchdog)
			continue
		}
		missed++
		if missed == 1 {
			w.n.log.Error("main loop did not check in; withholding the watchdog ping (systemd will restart thingd if it stays wedged)")
		}
	}
}
