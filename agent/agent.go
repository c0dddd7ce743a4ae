// Package agent wires thingd together: config → key store → identity → TLS →
// MQTT connection, and the status the daemon reports. Only the thingd main
// imports it.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/thingd/thingd/agent/config"
	"github.com/thingd/thingd/agent/gateway"
	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/atomicfile"
	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/agent/mqttconn"
	"github.com/thingd/thingd/agent/report"
	"github.com/thingd/thingd/agent/rotation"
	"github.com/thingd/thingd/agent/sdnotify"
	"github.com/thingd/thingd/jobs"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/shadow"
)

// Version is thingd's version, set at build time with
// -ldflags "-X github.com/thingd/thingd/agent.Version=...".
var Version = "0.1.0-dev"

// buildTime is when this thingd was built (RFC 3339), set with
// -ldflags "-X github.com/thingd/thingd/agent.buildTime=...". A clock
// earlier than this is certainly wrong. The default is the date this line was
// last edited, so an unset build time still catches an RTC reset to 1970.
var buildTime = "2026-11-25T00:00:00Z"

// BuildTime returns the build time (zero if unparseable).
func BuildTime() time.Time {
	t, _ := time.Parse(time.RFC3339, buildTime)
	return t
}

// StatusFile is the name, inside the state directory, of the file the
// running daemon keeps its live status in.
const StatusFile = "status.json"

// DaemonStatus is what the running daemon writes to StatusFile.
type DaemonStatus struct {
	PID        int             `json:"pid"`
	Version    string          `json:"version"`
	StartedAt  time.Time       `json:"startedAt"`
	UpdatedAt  time.Time       `json:"updatedAt"`
	Connection mqttconn.Status `json:"connection"`
	// CertificateID of the identity in use.
	CertificateID string `json:"certificateId"`
	// Warnings are current loud warnings (expired certificate, untrusted
	// clock, insecure key store).
	Warnings []string `json:"warnings,omitempty"`
	// Rotation is the rotation state and the next renewal.
	Rotation *rotation.Status `json:"rotation,omitempty"`
}

// Options are what Run needs beyond the config.
type Options struct {
	// Logger for the daemon; nil discards.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnReady, if set, is called once the config is valid, the key opens
	// and the certificate matches it (systemd READY=1).
	OnReady func()
	// LogLevel, if set, is the level of Logger; the shadow's
	// desired.config.logLevel and a reload change it live.
	LogLevel *slog.LevelVar
	// Notifier, if set, gets READY=1, STATUS= lines and (with systemd's
	// watchdog on) WATCHDOG=1 pings from the main loop.
	Notifier *sdnotify.Notifier
	// Reload delivers re-read configs (SIGHUP). Settings that can change
	// live are applied; any other change makes Run return a *RestartError.
	Reload <-chan *config.Config
	// WedgeMainLoop is a test hook: once it is closed the main loop stops
	// going round, as a deadlocked daemon would (the watchdog must notice).
	WedgeMainLoop <-chan struct{}
}

// RestartError is returned by Run when a reloaded config changes what can
// only be applied by starting over (thing, endpoint, CA, key, certificate,
// state directory, backoff, rotation settings). The caller runs Run again
// with Config.
type RestartError struct {
	Config  *config.Config
	Changed []string
}

func (e *RestartError) Error() string {
	return "agent: config changed (" + strings.Join(e.Changed, ", ") + "); restart required"
}

// restartNeeded lists the settings that differ between a and b and cannot
// be applied to a running agent.
func restartNeeded(a, b *config.Config) []string {
	var changed []string
	diff := func(name string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			changed = append(changed, name)
		}
	}
	uri := func(u *keystore.URI) string {
		if u == nil {
			return ""
		}
		return u.Secret()
	}
	diff("thing_name", a.ThingName, b.ThingName)
	diff("endpoint", a.Endpoint, b.Endpoint)
	diff("server_ca", a.ServerCAFile, b.ServerCAFile)
	diff("state_dir", a.StateDir, b.StateDir)
	diff("key", uri(a.Key), uri(b.Key))
	diff("certificate", a.CertificateFile, b.CertificateFile)
	diff("backoff", a.Backoff, b.Backoff)
	diff("rotation.key_b", uri(a.Rotation.KeyB), uri(b.Rotation.KeyB))
	diff("rotation.device_ca", a.Rotation.DeviceCAFile, b.Rotation.DeviceCAFile)
	diff("rotation", [3]time.Duration{a.Rotation.VerifyTimeout, a.Rotation.ReplyTimeout, a.Rotation.ClockSkew},
		[3]time.Duration{b.Rotation.VerifyTimeout, b.Rotation.ReplyTimeout, b.Rotation.ClockSkew})
	diff("renewal.enabled", a.Renewal.Enabled, b.Renewal.Enabled)
	diff("renewal.check_interval", a.Renewal.CheckInterval, b.Renewal.CheckInterval)
	diff("shadow.enabled", a.Shadow.Enabled, b.Shadow.Enabled)
	diff("gateway", a.Gateway, b.Gateway)
	return changed
}

// Run is the daemon: it recovers an interrupted rotation, loads the
// identity of the active key slot, refuses one that cannot be right, keeps
// the MQTT session up, runs jobs (certificate rotation above all) and
// renews the certificate in its renewal window, until ctx is cancelled.
// Cancellation is a clean stop and returns nil.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	slots, err := Slots(cfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	store, err := keys.OpenStore(ctx, cfg.Key, log.With("component", "keystore"))
	if err != nil {
		return fmt.Errorf("agent: open key store: %w", err)
	}
	defer store.Close()

	holder := identity.NewHolder(nil)
	st := &statusWriter{
		path: filepath.Join(cfg.StateDir, StatusFile),
		log:  log,
		cur:  DaemonStatus{PID: os.Getpid(), Version: Version, StartedAt: now()},
	}
	var jc *jobs.Client
	var prov *rotation.Provisioner
	var engine *jobs.Engine
	var sc *shadow.Client
	var loop *shadowLoop
	var gw *gateway.Gateway
	conn := mqttconn.New(mqttconn.Options{
		Host:                 cfg.Host,
		Port:                 cfg.Port,
		ClientID:             cfg.ThingName,
		RootCAs:              cfg.ServerCAs,
		GetClientCertificate: holder.GetClientCertificate,
		Backoff:              mqttconn.Backoff(cfg.Backoff),
		Logger:               log.With("component", "mqtt"),
		OnState: func(s mqttconn.Status) {
			var was mqttconn.State
			st.update(func(d *DaemonStatus) { was, d.Connection = d.Connection.State, s })
			if was == mqttconn.StateConnected && s.State == mqttconn.StateDisconnected && loop != nil {
				loop.ConnectionLost(s.Since, s.LastError)
			}
		},
		OnConnect: func() {
			engine.Connected()
			if loop != nil {
				loop.Connected()
			}
			if gw != nil {
				gw.Connected()
			}
		},
		OnUnsolicited: func(topic string, payload []byte) {
			if !jc.HandleMessage(topic, payload) && !prov.HandleMessage(topic, payload) &&
				(sc == nil || !sc.HandleMessage(topic, payload)) {
				log.Debug("unsolicited message dropped", "topic", topic)
			}
		},
	})
	jc = jobs.NewClient(cfg.ThingName, conn, jobs.ClientOptions{Logger: log.With("component", "jobs"), Timeout: cfg.Rotation.ReplyTimeout})
	prov = rotation.NewProvisioner(conn, log.With("component", "provisioning"))
	rot, err := rotation.New(rotation.Config{
		ThingName:         cfg.ThingName,
		StateDir:          cfg.StateDir,
		Slots:             slots,
		ConfigCertificate: cfg.CertificateFile,
		DeviceCAs:         cfg.Rotation.DeviceCAs,
		ClockSkew:         cfg.Rotation.ClockSkew,
		ReplyTimeout:      cfg.Rotation.ReplyTimeout,
		VerifyTimeout:     cfg.Rotation.VerifyTimeout,
		Window:            rotation.Window{Fraction: cfg.Renewal.Fraction, MaxBefore: cfg.Renewal.MaxBefore},
		Renew:             cfg.Renewal.Enabled,
		CheckInterval:     cfg.Renewal.CheckInterval,
		BuildTime:         BuildTime(),
	}, rotation.Deps{
		Store: store, Holder: holder, Conn: conn, Jobs: jc, Prov: prov,
		Log: log.With("component", "rotation"), Now: now, AfterJournal: crashAfter,
		OnChange: func(s rotation.Status) {
			st.update(func(d *DaemonStatus) {
				d.Rotation = &s
				if id := holder.Current(); id != nil {
					d.CertificateID = id.CertificateID
				}
			})
			if loop != nil {
				loop.Changed()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	active, fallback, err := rot.Recover(ctx)
	if err != nil {
		return fmt.Errorf("agent: recover rotation: %w", err)
	}
	id, err := loadIdentity(ctx, store, cfg.ThingName, slots.Key(active.Slot), active.CertificateFile)
	if err != nil && fallback != nil {
		log.Error("new identity of an interrupted rotation does not load; rolling back", "err", err)
		rot.RollbackUnloadable(ctx, err)
		active, fallback = *fallback, nil
		id, err = loadIdentity(ctx, store, cfg.ThingName, slots.Key(active.Slot), active.CertificateFile)
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if fallback != nil {
		old, err := loadIdentity(ctx, store, cfg.ThingName, slots.Key(fallback.Slot), fallback.CertificateFile)
		if err != nil {
			log.Error("previous identity does not load; the interrupted rotation can only go forward", "err", err)
		} else {
			rot.SetFallback(old)
		}
	}
	var warnings []string
	if tc := identity.CheckTime(id.Leaf, now(), BuildTime()); tc.Warning != "" {
		log.Warn("certificate time check", "warning", tc.Warning, "not_before", id.Leaf.NotBefore, "not_after", id.Leaf.NotAfter)
		warnings = append(warnings, tc.Warning)
	}
	if id.Key.Info().Insecure {
		log.Warn(keys.InsecureWarning, "key", id.Key.Info().Location)
		warnings = append(warnings, keys.InsecureWarning)
	}
	log.Info("identity loaded", "thing", cfg.ThingName, "slot", string(active.Slot), "certificate_id", id.CertificateID,
		"serial", identity.SerialHex(id.Leaf), "not_after", id.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"key", id.Key.Info().Location, "key_store", id.Key.Info().Kind)
	holder.Set(id)
	rs := rot.Status()
	st.update(func(d *DaemonStatus) {
		d.CertificateID, d.Warnings, d.Connection, d.Rotation = id.CertificateID, warnings, conn.Status(), &rs
	})

	engine = jobs.NewEngine(jc, jobs.EngineOptions{
		Persister: filePersister(filepath.Join(cfg.StateDir, JobsFile)),
		Logger:    log.With("component", "jobs"),
	})
	engine.Register(rotation.Operation, rot)
	if err := jc.Start(ctx); err != nil {
		return fmt.Errorf("agent: jobs: %w", err)
	}
	if cfg.Shadow.Enabled {
		sc = shadow.NewClient(cfg.ThingName, "", conn, shadow.ClientOptions{Logger: log.With("component", "shadow"), Timeout: cfg.Rotation.ReplyTimeout})
		if err := sc.Start(ctx); err != nil {
			return fmt.Errorf("agent: shadow: %w", err)
		}
		loop = newShadowLoop(sc, log.With("component", "shadow"), now, opts.LogLevel, rot, holder,
			report.Agent{Version: Version, StartedAt: now()},
			report.NewSettings(cfg.Shadow.ReportInterval, cfg.Renewal.Fraction, cfg.Renewal.MaxBefore, logLevelName(cfg.LogLevel)))
	}
	if len(cfg.Gateway.Children) > 0 {
		children, err := buildChildren(cfg, log)
		if err != nil {
			return fmt.Errorf("agent: gateway: %w", err)
		}
		gw = gateway.New(conn, children, gateway.Options{Gateway: cfg.ThingName, Logger: log.With("component", "gateway"),
			Now: now, RequestTimeout: cfg.Rotation.ReplyTimeout, OnChange: func() {
				if loop != nil {
					loop.Changed()
				}
			}})
		log.Info("gateway: children configured", "children", len(children))
	}
	if loop != nil {
		if cfg.Gateway.SystemFacts {
			loop.system = systemFacts(cfg.StateDir, log.With("component", "sysfacts"))
		}
		if gw != nil {
			loop.children = func() map[string]any { return gateway.SummaryReported(gw.Summary()) }
		}
	}
	if opts.OnReady != nil {
		opts.OnReady()
	}
	if opts.Notifier != nil {
		opts.Notifier.Ready()
	}

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = engine.Run(rctx) })
	wg.Go(func() { _ = rot.Run(rctx) })
	if loop != nil {
		wg.Go(func() { _ = loop.Run(rctx) })
	}
	if gw != nil {
		wg.Go(func() { _ = gw.Run(rctx) })
	}
	if opts.WedgeMainLoop == nil {
		opts.WedgeMainLoop = testWedge
	}
	var restart *RestartError
	wg.Go(func() {
		restart = mainLoop(rctx, mainLoopDeps{cfg: cfg, opts: opts, log: log, conn: conn, rot: rot, holder: holder, shadow: loop})
		if restart != nil {
			stop()
		}
	})
	err = conn.Run(rctx)
	stop()
	wg.Wait()
	if restart != nil {
		return restart
	}
	st.update(func(d *DaemonStatus) { d.Connection = conn.Status() })
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		log.Info("stopped")
		return nil
	}
	return err
}

func logLevelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	}
	return "error"
}

// Slots returns the URIs of the two key slots: slot A is the configured key,
// slot B is rotation.key_b or derived from the key.
func Slots(cfg *config.Config) (identity.Slots, error) {
	b := cfg.Rotation.KeyB
	if b == nil {
		var err error
		if b, err = identity.DeriveSlotB(cfg.Key); err != nil {
			return identity.Slots{}, err
		}
	}
	return identity.Slots{A: cfg.Key, B: b}, nil
}

func loadIdentity(ctx context.Context, store keystore.Store, thing string, key *keystore.URI, certFile string) (*identity.Identity, error) {
	k, err := store.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open device key: %w", err)
	}
	return identity.Load(thing, k, certFile)
}

// JobsFile is the name, in the state directory, of the jobs engine's
// record of the execution in flight.
const JobsFile = "jobs.json"

// filePersister keeps the jobs engine state in a file, written atomically.
type filePersister string

func (p filePersister) Read() ([]byte, error) {
	b, err := os.ReadFile(string(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (p filePersister) Write(data []byte) error { return atomicfile.WriteFile(string(p), data, 0o600) }

// statusWriter keeps StatusFile current.
type statusWriter struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	cur  DaemonStatus
}

func (w *statusWriter) update(f func(*DaemonStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.cur)
	w.cur.UpdatedAt = time.Now()
	data, err := json.MarshalIndent(w.cur, "", "  ")
	if err != nil {
		return
	}
	if err := atomicfile.WriteFile(w.path, append(data, '\n'), 0o644); err != nil {
		w.log.Warn("write status file", "err", err)
	}
}

// ReadDaemonStatus reads the status the daemon wrote in stateDir and reports
// whether that daemon is still running.
func ReadDaemonStatus(stateDir string) (st DaemonStatus, running bool, err error) {
	data, err := os.ReadFile(filepath.Join(stateDir, StatusFile))
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, false, fmt.Errorf("agent: %s: %w", StatusFile, err)
	}
	return st, processAlive(st.PID) && st.Connection.State != mqttconn.StateStopped, nil
}

// Report is what `thingd status` shows.
type Report struct {
	Thing            string           `json:"thing"`
	Endpoint         string           `json:"endpoint"`
	CertificateFile  string           `json:"certificateFile"`
	CertificateID    string           `json:"certificateId,omitempty"`
	Serial           string           `json:"serial,omitempty"`
	NotBefore        time.Time        `json:"notBefore,omitzero"`
	NotAfter         time.Time        `json:"notAfter,omitzero"`
	Key              string           `json:"key"`
	KeyStore         keystore.Kind    `json:"keyStore"`
	Insecure         bool             `json:"insecure,omitempty"`
	Warnings         []string         `json:"warnings,omitempty"`
	Daemon           string           `json:"daemon"` // running, not running
	PID              int              `json:"pid,omitempty"`
	Connection       *mqttconn.Status `json:"connection,omitempty"`
	CertificateError string           `json:"certificateError,omitempty"`
	// Slot is the active key slot (a or b) and ActiveKey its redacted URI.
	Slot      identity.Slot `json:"slot"`
	ActiveKey string        `json:"activeKey"`
	// Rotation is the rotation state, the last result and the next renewal.
	Rotation rotation.Status `json:"rotation"`
}

// Status builds the status report from the config, the certificate file and
// the running daemon's status file, without touching the key module (the
// daemon may hold it, and a TPM serves one client at a time).
func Status(cfg *config.Config, now time.Time) Report {
	r := Report{
		Thing:           cfg.ThingName,
		Endpoint:        cfg.Endpoint,
		CertificateFile: cfg.CertificateFile,
		Key:             cfg.Key.Redacted(),
		KeyStore:        kindOf(cfg.Key),
		Daemon:          "not running",
	}
	if r.KeyStore == keystore.KindFile {
		r.Insecure = true
		r.Warnings = append(r.Warnings, keys.InsecureWarning)
	}
	active, err := identity.LoadActive(cfg.StateDir, cfg.CertificateFile)
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
		active = identity.Active{Slot: identity.SlotA, CertificateFile: cfg.CertificateFile}
	}
	r.Slot, r.CertificateFile, r.ActiveKey = active.Slot, active.CertificateFile, r.Key
	if slots, err := Slots(cfg); err == nil {
		r.ActiveKey = slots.Key(active.Slot).Redacted()
	}
	r.Rotation.State = "idle"
	if rec, err := rotation.ReadRecord(cfg.StateDir); err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	} else {
		r.Rotation.Last = rec.Last
		if j := rec.Journal; j != nil {
			r.Rotation.State, r.Rotation.ID, r.Rotation.JobID = string(j.Step), j.ID, j.JobID
		}
	}
	if data, err := os.ReadFile(active.CertificateFile); err != nil {
		r.CertificateError = err.Error()
	} else if certs, err := identity.ParseChain(data); err != nil {
		r.CertificateError = err.Error()
	} else {
		leaf := certs[0]
		r.CertificateID = identity.CertificateID(leaf.Raw)
		r.Serial = identity.SerialHex(leaf)
		r.NotBefore, r.NotAfter = leaf.NotBefore, leaf.NotAfter
		if leaf.Subject.CommonName != cfg.ThingName {
			r.Warnings = append(r.Warnings, fmt.Sprintf("certificate CN %q does not match thing name %q: thingd will refuse to start", leaf.Subject.CommonName, cfg.ThingName))
		}
		if tc := identity.CheckTime(leaf, now, BuildTime()); tc.Warning != "" {
			r.Warnings = append(r.Warnings, tc.Warning)
		}
		if !cfg.Renewal.Enabled {
			r.Rotation.RenewalNote = "renewal without a job is disabled"
		} else {
			w := rotation.Window{Fraction: cfg.Renewal.Fraction, MaxBefore: cfg.Renewal.MaxBefore}
			d := w.Decide(leaf.NotBefore, leaf.NotAfter, now, BuildTime(), rotation.DeviceJitter(cfg.ThingName, r.Serial))
			r.Rotation.NextRenewal, r.Rotation.RenewalNote = d.At, d.Reason
		}
	}
	if ds, running, err := ReadDaemonStatus(cfg.StateDir); err == nil && running {
		r.Daemon = "running"
		r.PID = ds.PID
		c := ds.Connection
		r.Connection = &c
	}
	return r
}

func kindOf(u *keystore.URI) keystore.Kind {
	switch u.Scheme {
	case keystore.SchemePKCS11:
		return keystore.KindPKCS11
	case keystore.SchemeTPM:
		return keystore.KindTPM
	}
	return keystore.KindFile
}

// crashAfter is the rotation crash test hook and testWedge the main-loop
// wedge hook; set only in builds with the crashhook tag (crashhook.go).
var (
	crashAfter func(rotation.Step)
	testWedge  <-chan struct{}
)
