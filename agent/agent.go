// Package agent wires thingd together: config → key store → identity → TLS →
// MQTT connection, and the status the daemon reports. Only the thingd main
// imports it.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/thingd/thingd/agent/config"
	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/atomicfile"
	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/agent/mqttconn"
	"github.com/thingd/thingd/keystore"
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
}

// Run is the daemon: it loads the identity, refuses one that cannot be
// right, and keeps the MQTT session up until ctx is cancelled. Cancellation
// is a clean stop and returns nil.
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
	store, err := keys.OpenStore(ctx, cfg.Key, log.With("component", "keystore"))
	if err != nil {
		return fmt.Errorf("agent: open key store: %w", err)
	}
	defer store.Close()
	key, err := store.Open(ctx, cfg.Key)
	if err != nil {
		return fmt.Errorf("agent: open device key: %w", err)
	}
	id, err := identity.Load(cfg.ThingName, key, cfg.CertificateFile)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	var warnings []string
	if tc := identity.CheckTime(id.Leaf, now(), BuildTime()); tc.Warning != "" {
		log.Warn("certificate time check", "warning", tc.Warning, "not_before", id.Leaf.NotBefore, "not_after", id.Leaf.NotAfter)
		warnings = append(warnings, tc.Warning)
	}
	if key.Info().Insecure {
		log.Warn(keys.InsecureWarning, "key", key.Info().Location)
		warnings = append(warnings, keys.InsecureWarning)
	}
	log.Info("identity loaded", "thing", cfg.ThingName, "certificate_id", id.CertificateID,
		"serial", identity.SerialHex(id.Leaf), "not_after", id.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"key", key.Info().Location, "key_store", key.Info().Kind)
	holder := identity.NewHolder(id)

	st := &statusWriter{
		path: filepath.Join(cfg.StateDir, StatusFile),
		log:  log,
		cur: DaemonStatus{PID: os.Getpid(), Version: Version, StartedAt: now(),
			CertificateID: id.CertificateID, Warnings: warnings},
	}
	conn := mqttconn.New(mqttconn.Options{
		Host:                 cfg.Host,
		Port:                 cfg.Port,
		ClientID:             cfg.ThingName,
		RootCAs:              cfg.ServerCAs,
		GetClientCertificate: holder.GetClientCertificate,
		Backoff:              mqttconn.Backoff(cfg.Backoff),
		Logger:               log.With("component", "mqtt"),
		OnState:              st.setConnection,
	})
	st.setConnection(conn.Status())
	if opts.OnReady != nil {
		opts.OnReady()
	}
	err = conn.Run(ctx)
	st.setConnection(conn.Status())
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		log.Info("stopped")
		return nil
	}
	return err
}

// statusWriter keeps StatusFile current.
type statusWriter struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	cur  DaemonStatus
}

func (w *statusWriter) setConnection(s mqttconn.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.Connection = s
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
	if data, err := os.ReadFile(cfg.CertificateFile); err != nil {
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
