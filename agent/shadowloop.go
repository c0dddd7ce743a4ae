package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/report"
	"github.com/thingd/thingd/agent/rotation"
	"github.com/thingd/thingd/shadow"
)

// shadowLoop reports thingd's state in the classic shadow and applies
// desired.config: on start, at every change it is told of, every report
// interval, and after every (re)connect (when it also reads the whole
// desired state, so settings survive a restart of thingd).
type shadowLoop struct {
	client   *shadow.Client
	reporter *shadow.Reporter
	log      *slog.Logger
	now      func() time.Time
	level    *slog.LevelVar
	rot      *rotation.Rotator
	holder   *identity.Holder
	agent    report.Agent

	changed   chan struct{}
	connected chan struct{}

	// system and children, if set, add the gateway's system facts and
	// the state of its children to the report.
	system   func() map[string]any
	children func() map[string]any

	mu       sync.Mutex
	settings report.Settings
	applied  *report.Applied
	conn     report.Connection
}

// ConnectionLost records a lost session; it is reported (coalesced) once
// the connection is back.
func (l *shadowLoop) ConnectionLost(at time.Time, errText string) {
	l.mu.Lock()
	l.conn.LostCount++
	l.conn.LastLostAt, l.conn.LastError = at, errText
	l.mu.Unlock()
	l.Changed()
}

func newShadowLoop(c *shadow.Client, log *slog.Logger, now func() time.Time, level *slog.LevelVar,
	rot *rotation.Rotator, holder *identity.Holder, agent report.Agent, settings report.Settings) *shadowLoop {
	return &shadowLoop{
		client: c, reporter: shadow.NewReporter(c, shadow.ReporterOptions{Logger: log}),
		log: log, now: now, level: level, rot: rot, holder: holder, agent: agent, settings: settings,
		changed: make(chan struct{}, 1), connected: make(chan struct{}, 1),
	}
}

// Changed tells the loop that something it reports has changed.
func (l *shadowLoop) Changed() { signal(l.changed) }

// Connected is called after every (re)connect.
func (l *shadowLoop) Connected() {
	l.reporter.Connected()
	signal(l.connected)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Settings returns the effective settings.
func (l *shadowLoop) Settings() report.Settings {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settings
}

func (l *shadowLoop) state() report.State {
	l.mu.Lock()
	st := report.State{Agent: l.agent, Connection: l.conn, Settings: l.settings, Applied: l.applied}
	l.mu.Unlock()
	if id := l.holder.Current(); id != nil {
		info := id.Key.Info()
		st.Identity = report.Identity{
			CertificateID: id.CertificateID, Serial: identity.SerialHex(id.Leaf),
			NotBefore: id.Leaf.NotBefore, NotAfter: id.Leaf.NotAfter,
			KeyStore: string(info.Kind), KeyAlgorithm: string(info.Algorithm),
			HardwareBacked: info.HardwareBacked, Insecure: info.Insecure,
		}
	}
	rs := l.rot.Status()
	st.Rotation = report.Rotation{State: rs.State, NextRenewalAt: rs.NextRenewal, RenewalNote: rs.RenewalNote}
	if last := rs.Last; last != nil {
		st.Rotation.LastID, st.Rotation.LastJobID, st.Rotation.LastResult = last.ID, last.JobID, last.Result
		st.Rotation.LastReason, st.Rotation.LastRotatedAt = last.Reason, last.At
	}
	if active, err := identity.LoadActive(l.rot.StateDir(), ""); err == nil {
		st.Identity.Slot = string(active.Slot)
	}
	if l.system != nil {
		st.System = l.system()
	}
	if l.children != nil {
		st.Children = l.children()
	}
	return st
}

func (l *shadowLoop) push() { l.reporter.Set(report.Reported(l.state(), l.now())) }

// apply applies a desired.config object (from a get or a delta).
func (l *shadowLoop) apply(config json.RawMessage) {
	if len(config) == 0 {
		return
	}
	l.mu.Lock()
	a := report.ApplyDesired(l.settings, config)
	l.settings = a.Settings
	l.applied = &a
	l.mu.Unlock()
	for k, why := range a.Rejected {
		l.log.Warn("desired config not applied", "key", k, "reason", why)
	}
	if len(a.Ignored) > 0 {
		l.log.Info("desired config keys ignored (unknown)", "keys", a.Ignored)
	}
	if len(a.Changed) == 0 {
		return
	}
	s := a.Settings
	if l.level != nil {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(s.LogLevel)); err == nil {
			l.level.Set(lvl)
		}
	}
	l.rot.SetWindow(rotation.Window{Fraction: s.RenewalFraction, MaxBefore: s.RenewalMaxBefore})
	l.log.Info("desired config applied", "changed", a.Changed, "report_interval", s.ReportInterval,
		"renewal_fraction", s.RenewalFraction, "renewal_max_before", s.RenewalMaxBefore, "log_level", s.LogLevel)
}

// desiredConfig takes the "config" object out of a desired (or delta)
// section.
func desiredConfig(section json.RawMessage) json.RawMessage {
	var d struct {
		Config json.RawMessage `json:"config"`
	}
	if len(section) == 0 || json.Unmarshal(section, &d) != nil {
		return nil
	}
	return d.Config
}

// Run is the loop; it returns when ctx ends.
func (l *shadowLoop) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.reporter.Run(ctx) })
	defer wg.Wait()
	l.push()
	timer := time.NewTimer(l.Settings().ReportInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.connected:
			gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			doc, err := l.client.Get(gctx)
			cancel()
			switch {
			case err == nil:
				l.apply(desiredConfig(doc.State.Desired))
			case errors.Is(err, shadow.ErrNotFound):
			default:
				l.log.Warn("shadow get after connect failed", "err", err)
			}
		case d := <-l.client.Deltas():
			l.apply(desiredConfig(d.State))
		case <-l.changed:
		case <-timer.C:
		}
		l.push()
		timer.Reset(l.Settings().ReportInterval)
	}
}

// SetLocal takes settings from a reloaded config file and reports them.
func (l *shadowLoop) SetLocal(s report.Settings) {
	l.mu.Lock()
	l.settings = s
	l.mu.Unlock()
	l.Changed()
}
