// Package gateway is thingd's gateway role: the serial devices behind the
// gateway (its children) are read through their hal.Adapter and reported in
// the classic shadows of their own things, named "<gateway>-<child>", over
// the gateway's own MQTT session — no extra connections, no extra keys.
// Desired state on a child's shadow is written to the device when its
// adapter accepts writes, and the outcome is reported.
//
// A child's reported state holds its readings at the top level (so a
// desired value and the reading of the same name cancel out into no delta
// once written), plus:
//
//	"connected": true|false       the device answered the last poll
//	"lastSeen":  "RFC 3339 time"  when it last answered
//	"device":    {"gateway", "adapter", "port", "error", "frames",
//	              "malformed", "timeouts", "writes": {name: outcome}}
//
// A child that stops answering is reported disconnected with its last
// readings; the others and the gateway carry on.
//
// Each child costs one MQTT subscription ($aws/things/{child}/shadow/+/+,
// which covers the get, update and delta replies of its classic shadow),
// because AWS IoT Core allows 50 subscriptions per connection.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/thingd/thingd/agent/report"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/shadow"
)

// MQTT is what the gateway needs from the connection: agent/mqttconn.Conn.
// Subscribe must remember the subscription across reconnects.
type MQTT = shadow.MQTT

// Child is one downstream device.
type Child struct {
	// Name is the child's name in the gateway's config.
	Name string
	// Thing is its thing name, "<gateway>-<Name>".
	Thing string
	// AdapterKind ("line", "modbus") and Port are reported in the child's
	// device section.
	AdapterKind string
	Port        string
	// Adapter reads the device.
	Adapter hal.Adapter
	// PollInterval is how often Adapter is polled.
	PollInterval time.Duration
	// ReportInterval is the longest a change in the readings waits before
	// it is reported; zero means every poll. Connected-state changes and
	// desired-write outcomes are reported at once.
	ReportInterval time.Duration
	// Run, if set, runs for the child's lifetime beside the poll loop (a
	// line sensor's reader, a port's reopen loop); its error is logged.
	Run func(ctx context.Context) error
	// Ready, if set, returns a channel that is closed while the device's
	// port is open; the first poll waits for it (at most one poll
	// interval), so that a device is not reported absent while its port
	// is still being opened.
	Ready func() <-chan struct{}
}

// Options configure a Gateway.
type Options struct {
	// Gateway is the gateway's own thing name.
	Gateway string
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnChange is called when a child's connected state changes (the
	// gateway's own shadow reports Summary).
	OnChange func()
	// RequestTimeout bounds shadow requests; zero means 30 s.
	RequestTimeout time.Duration
}

// Gateway runs the children.
type Gateway struct {
	opts     Options
	m        MQTT
	children []*child
}

// New returns a Gateway for children over m. It starts nothing; call Run.
func New(m MQTT, children []Child, opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	g := &Gateway{opts: opts, m: m}
	for _, c := range children {
		client := shadow.NewClient(c.Thing, "", m, shadow.ClientOptions{Logger: opts.Logger.With("child", c.Name), Timeout: opts.RequestTimeout})
		log := opts.Logger.With("child", c.Name, "thing", c.Thing)
		g.children = append(g.children, &child{
			Child: c, g: g, log: log, client: client,
			reporter:  shadow.NewReporter(client, shadow.ReporterOptions{Logger: log}),
			connected: make(chan struct{}, 1), pollNow: make(chan struct{}, 1),
			readings: map[string]any{}, writes: map[string]any{}, acted: map[string]desiredMark{},
		})
	}
	return g
}

// Filter is the one subscription a child's shadow needs: the accepted,
// rejected, delta and documents topics of its classic shadow.
func Filter(thing string) string { return "$aws/things/" + thing + "/shadow/+/+" }

// Run subscribes for every child and runs them until ctx ends. A child
// whose subscription fails is logged and retried; the others run.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range g.children {
		wg.Go(func() { c.run(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

// Connected is called after every (re)connect of the gateway's session:
// each child re-reads its shadow and applies pending desired state.
func (g *Gateway) Connected() {
	for _, c := range g.children {
		c.reporter.Connected()
		signal(c.connected)
	}
}

// ChildStatus is one child's state in the gateway's own shadow.
type ChildStatus struct {
	Thing     string
	Adapter   string
	Connected bool
	LastSeen  time.Time
	Error     string
}

// Summary returns every child's state, by name.
func (g *Gateway) Summary() map[string]ChildStatus {
	out := make(map[string]ChildStatus, len(g.children))
	for _, c := range g.children {
		c.mu.Lock()
		out[c.Name] = ChildStatus{Thing: c.Thing, Adapter: c.AdapterKind, Connected: c.up, LastSeen: c.lastSeen, Error: c.lastErr}
		c.mu.Unlock()
	}
	return out
}

// SummaryReported is Summary as a shadow value.
func SummaryReported(s map[string]ChildStatus) map[string]any {
	out := make(map[string]any, len(s))
	for name, st := range s {
		out[name] = map[string]any{"thing": st.Thing, "adapter": st.Adapter, "connected": st.Connected,
			"lastSeen": report.Time(st.LastSeen), "error": report.OptString(st.Error)}
	}
	return out
}

type child struct {
	Child
	g        *Gateway
	log      *slog.Logger
	client   *shadow.Client
	reporter *shadow.Reporter

	connected chan struct{}
	pollNow   chan struct{}

	mu         sync.Mutex
	up         bool
	polled     bool
	lastReport time.Time
	// droppedReserved is set once a reading with a reserved name was
	// dropped (and logged).
	droppedReserved bool
	lastSeen        time.Time
	lastErr         string
	readings        map[string]any
	writes          map[string]any
	// retryDesired is set when a write failed because the device did not
	// answer; the desired state is applied again once it does.
	retryDesired bool
	// acted holds, per desired name, the value and desired timestamp last
	// acted upon. The service sends a delta after every update that leaves
	// one (reported-only updates included), so a value that cannot be
	// written would otherwise be retried at every report; it is acted on
	// again only when the desired value or its timestamp changes (an
	// operator setting the same value again).
	acted map[string]desiredMark
}

type desiredMark struct {
	value  string
	at     int64
	failed bool
}

// Reserved are the reported keys thingd owns in a child's shadow; a
// reading cannot have one of these names.
var Reserved = []string{"connected", "lastSeen", "device"}

func (c *child) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if c.Run != nil {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("child adapter stopped", "err", err)
			}
		})
	}
	wg.Go(func() { _ = c.reporter.Run(ctx) })
	if !c.subscribe(ctx) {
		return
	}
	if c.Ready != nil {
		wait := time.NewTimer(c.PollInterval)
		select {
		case <-c.Ready():
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
	}
	c.poll(ctx, true)
	ticker := time.NewTicker(c.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			c.poll(ctx, false)
		case <-c.pollNow:
			c.poll(ctx, true)
		case <-c.connected:
			c.applyFromGet(ctx)
		case d := <-c.client.Deltas():
			c.applyDesired(ctx, d.State, d.Metadata)
		}
	}
}

// subscribe makes the child's one subscription, retrying until it works
// or ctx ends (mqttconn remembers it across reconnects).
func (c *child) subscribe(ctx context.Context) bool {
	delay := time.Second
	for {
		err := c.g.m.Subscribe(ctx, Filter(c.Thing), 1, func(topic string, payload []byte) { c.client.HandleMessage(topic, payload) })
		if err == nil {
			return true
		}
		c.log.Warn("child shadow subscription failed; retrying", "filter", Filter(c.Thing), "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// poll reads the device and reports the result: at once if report is set
// or the connected state changed, else once ReportInterval has passed
// since the last report.
func (c *child) poll(ctx context.Context, report bool) {
	r, err := c.Adapter.Poll(ctx)
	if ctx.Err() != nil {
		return
	}
	now := c.g.opts.Now()
	c.mu.Lock()
	was, first := c.up, !c.polled
	c.polled = true
	retry := false
	if err != nil {
		c.up, c.lastErr = false, err.Error()
	} else {
		c.up, c.lastErr, c.lastSeen = true, "", now
		for k, v := range r {
			if slices.Contains(Reserved, k) {
				if !c.droppedReserved {
					c.droppedReserved = true
					c.log.Warn("device sends a reading named like a key thingd reports; it is left out of the shadow (rename it in the device's firmware)",
						"reading", k, "reserved", Reserved)
				}
				continue
			}
			c.readings[k] = v
		}
		retry, c.retryDesired = c.retryDesired, false
		if retry {
			for k, m := range c.acted {
				if m.failed {
					delete(c.acted, k)
				}
			}
		}
	}
	up, lastErr := c.up, c.lastErr
	c.mu.Unlock()
	switch {
	case err != nil && (was || first):
		c.log.Warn("child not answering", "err", err)
	case err == nil && !was:
		c.log.Info("child answering", "readings", len(r))
	}
	changed := was != up || first
	if changed || (err != nil && lastErr != err.Error()) {
		if f := c.g.opts.OnChange; f != nil {
			f()
		}
	}
	// Half a poll interval of slack: polls take a varying time.
	if report || changed || now.Sub(c.lastReported()) >= c.ReportInterval-c.PollInterval/2 {
		c.setReported(now)
	}
	if retry {
		c.applyFromGet(ctx)
	}
}

func (c *child) lastReported() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastReport
}

// setReported hands the reported section to the Reporter, which sends
// what changed since the cloud last accepted it.
func (c *child) setReported(now time.Time) {
	c.mu.Lock()
	c.lastReport = now
	c.mu.Unlock()
	c.reporter.Set(c.reported())
}

// reported is the child's reported section.
func (c *child) reported() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.Adapter.Stats()
	rep := maps.Clone(c.readings)
	rep["connected"] = c.up
	rep["lastSeen"] = report.Time(c.lastSeen)
	var writes any
	if len(c.writes) > 0 {
		writes = maps.Clone(c.writes)
	}
	rep["device"] = map[string]any{
		"gateway": c.g.opts.Gateway, "adapter": c.AdapterKind, "port": c.Port,
		"error": report.OptString(c.lastErr), "frames": st.Frames, "malformed": st.Malformed, "timeouts": st.Timeouts,
		"writes": writes,
	}
	return rep
}

// applyFromGet reads the child's shadow and applies its delta.
func (c *child) applyFromGet(ctx context.Context) {
	gctx, cancel := context.WithTimeout(ctx, c.g.opts.RequestTimeout)
	doc, err := c.client.Get(gctx)
	cancel()
	switch {
	case err == nil:
		var meta struct {
			Desired json.RawMessage `json:"desired"`
		}
		_ = json.Unmarshal(doc.Metadata, &meta) // absent metadata: compare values only
		c.applyDesired(ctx, doc.State.Delta, meta.Desired)
	case errors.Is(err, shadow.ErrNotFound):
	case ctx.Err() == nil:
		c.log.Warn("child shadow get failed", "err", err)
	}
}

// applyDesired writes each desired value (a delta: what reported lacks) to
// the device and records the outcome.
func (c *child) applyDesired(ctx context.Context, state, metadata json.RawMessage) {
	if len(state) == 0 || string(state) == "null" {
		return
	}
	var desired map[string]json.RawMessage
	if err := json.Unmarshal(state, &desired); err != nil {
		c.log.Warn("child desired state is not an object", "err", err)
		return
	}
	var stamps map[string]struct {
		Timestamp int64 `json:"timestamp"`
	}
	_ = json.Unmarshal(metadata, &stamps) // nested or absent metadata: no timestamp
	wrote, acted := false, false
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		var value any
		if err := json.Unmarshal(desired[name], &value); err != nil {
			continue
		}
		mark := desiredMark{value: string(desired[name]), at: stamps[name].Timestamp}
		c.mu.Lock()
		prev, seen := c.acted[name]
		c.mu.Unlock()
		if seen && prev.value == mark.value && prev.at == mark.at {
			continue
		}
		acted = true
		outcome := map[string]any{"value": value, "at": report.Time(c.g.opts.Now())}
		var err error
		if slices.Contains(Reserved, name) {
			err = fmt.Errorf("%q is reported by thingd and cannot be desired: %w", name, hal.ErrReadOnly)
		} else {
			err = c.Adapter.Write(ctx, name, value)
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			outcome["result"] = "applied"
			wrote = true
			c.log.Info("desired value written to device", "name", name, "value", value)
		case errors.Is(err, hal.ErrReadOnly), errors.Is(err, hal.ErrInvalidValue), errors.Is(err, hal.ErrUnknownName):
			outcome["result"], outcome["error"] = "rejected", err.Error()
			c.log.Warn("desired value rejected", "name", name, "value", value, "err", err)
		default:
			outcome["result"], outcome["error"] = "failed", err.Error()
			c.log.Warn("desired value not written; retried when the device answers", "name", name, "value", value, "err", err)
			mark.failed = true
			c.mu.Lock()
			c.retryDesired = true
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.writes[name] = outcome
		c.acted[name] = mark
		c.mu.Unlock()
	}
	if !acted {
		return
	}
	c.setReported(c.g.opts.Now())
	if wrote {
		signal(c.pollNow) // report the value the device now has
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
