package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/thingd/thingd/agent/config"
	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/mqttconn"
	"github.com/thingd/thingd/agent/report"
	"github.com/thingd/thingd/agent/rotation"
	"github.com/thingd/thingd/agent/sdnotify"
)

type mainLoopDeps struct {
	cfg    *config.Config
	opts   Options
	log    *slog.Logger
	conn   *mqttconn.Conn
	rot    *rotation.Rotator
	holder *identity.Holder
	shadow *shadowLoop
}

// mainLoop is thingd's supervisor: it goes round every few seconds, sends
// systemd the STATUS= line, proves it is alive to the watchdog, and applies
// reloaded configs. It returns a *RestartError when a reload needs a fresh
// start, nil when ctx ends.
func mainLoop(ctx context.Context, d mainLoopDeps) *RestartError {
	period := 5 * time.Second
	var wd *sdnotify.Watchdog
	if d.opts.Notifier != nil {
		if iv, ok := sdnotify.WatchdogInterval(); ok {
			wd = sdnotify.NewWatchdog(d.opts.Notifier, iv)
			period = min(period, wd.Period())
			go wd.Run(ctx)
			d.log.Info("systemd watchdog on", "interval", iv)
		}
	}
	t := time.NewTicker(period)
	defer t.Stop()
	cfg := d.cfg
	for {
		// The checks below take the locks every part of thingd uses; a
		// deadlock anywhere stops this loop, and so the watchdog pings.
		status := statusLine(cfg.ThingName, d.conn.Status(), d.holder.Current(), d.rot.Status())
		if d.opts.Notifier != nil {
			d.opts.Notifier.Status(status)
		}
		if wd != nil {
			wd.Beat()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.opts.WedgeMainLoop:
			d.log.Error("test hook: main loop wedged")
			<-ctx.Done()
			return nil
		case next := <-d.opts.Reload:
			if changed := restartNeeded(cfg, next); len(changed) > 0 {
				return &RestartError{Config: next, Changed: changed}
			}
			applyLive(d, next)
			cfg = next
			if d.opts.Notifier != nil {
				d.opts.Notifier.Ready()
			}
		case <-t.C:
		}
	}
}

// applyLive applies the settings a running agent can change.
func applyLive(d mainLoopDeps, next *config.Config) {
	if d.opts.LogLevel != nil {
		d.opts.LogLevel.Set(next.LogLevel)
	}
	d.rot.SetWindow(rotation.Window{Fraction: next.Renewal.Fraction, MaxBefore: next.Renewal.MaxBefore})
	if d.shadow != nil {
		d.shadow.SetLocal(report.NewSettings(next.Shadow.ReportInterval, next.Renewal.Fraction, next.Renewal.MaxBefore, logLevelName(next.LogLevel)))
	}
	d.log.Info("reload: config applied; identity kept", "log_level", next.LogLevel, "renewal_fraction", next.Renewal.Fraction,
		"renewal_max_before", next.Renewal.MaxBefore, "report_interval", next.Shadow.ReportInterval)
}

// statusLine is the one-line STATUS= systemd shows in `systemctl status`.
func statusLine(thing string, c mqttconn.Status, id *identity.Identity, r rotation.Status) string {
	s := fmt.Sprintf("%s %s", thing, c.State)
	if id != nil {
		s += fmt.Sprintf(", certificate %.12s expires %s", id.CertificateID, id.Leaf.NotAfter.UTC().Format("2006-01-02"))
	}
	s += ", rotation " + r.State
	if !r.NextRenewal.IsZero() {
		s += ", next renewal " + r.NextRenewal.UTC().Format(time.RFC3339)
	}
	if c.State != mqttconn.StateConnected && c.LastError != "" {
		s += "; last error: " + c.LastError
	}
	return s
}
