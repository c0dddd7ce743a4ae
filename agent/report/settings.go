// Package report is what thingd tells the cloud about itself through the
// classic Device Shadow, and what it accepts from it: the reported document
// (agent, identity, rotation, effective settings) and the desired.config
// settings it can apply live (report interval, renewal window, log level).
// Everything here is pure: the agent feeds it state and applies the
// settings it returns.
package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Settings are the settings the cloud may change through desired.config.
// Each keeps the text it was given, so that reported.config echoes desired
// exactly and the shadow delta clears.
type Settings struct {
	// ReportInterval is how often the full state is reported.
	ReportInterval time.Duration
	// RenewalFraction and RenewalMaxBefore are the renewal window.
	RenewalFraction  float64
	RenewalMaxBefore time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string

	reportIntervalText, maxBeforeText string
}

// NewSettings returns the settings of the config file.
func NewSettings(reportInterval time.Duration, fraction float64, maxBefore time.Duration, logLevel string) Settings {
	return Settings{ReportInterval: reportInterval, RenewalFraction: fraction, RenewalMaxBefore: maxBefore, LogLevel: logLevel}
}

// Limits on what desired.config may set.
const (
	MinReportInterval = 10 * time.Second
	MaxReportInterval = 24 * time.Hour
	MinMaxBefore      = time.Minute
	MaxMaxBefore      = 365 * 24 * time.Hour
)

// Config is the reported.config object: the effective settings.
func (s Settings) Config() map[string]any {
	ri := s.reportIntervalText
	if ri == "" {
		ri = s.ReportInterval.String()
	}
	mb := s.maxBeforeText
	if mb == "" {
		mb = s.RenewalMaxBefore.String()
	}
	return map[string]any{
		"reportInterval": ri,
		"renewal":        map[string]any{"fraction": s.RenewalFraction, "maxBefore": mb},
		"logLevel":       s.LogLevel,
	}
}

// Fixed are config keys the cloud can never change: the identity and where
// thingd connects are the device's own.
var Fixed = []string{"thingName", "thing_name", "endpoint", "key", "keyB", "key_b", "certificate", "serverCa", "server_ca", "stateDir", "state_dir"}

// Applied is the outcome of ApplyDesired.
type Applied struct {
	// Settings are the new effective settings.
	Settings Settings
	// Changed lists the settings that changed ("reportInterval",
	// "renewal.fraction", ...).
	Changed []string
	// Rejected maps a key to why its value was not applied.
	Rejected map[string]string
	// Ignored lists unknown keys.
	Ignored []string
}

// ApplyDesired applies the desired.config object to cur. Valid values are
// taken, invalid ones are rejected with a reason and leave the setting as it
// was, unknown keys are ignored, and the fixed keys (Fixed) are always
// rejected. A desired.config that is not an object rejects everything.
func ApplyDesired(cur Settings, desired json.RawMessage) Applied {
	out := Applied{Settings: cur, Rejected: map[string]string{}}
	if len(desired) == 0 || string(desired) == "null" {
		return out
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(desired, &obj); err != nil {
		out.Rejected["config"] = "desired.config is not a JSON object"
		return out
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := obj[k]
		if string(v) == "null" {
			continue // a deleted desired key leaves the setting as it is
		}
		switch {
		case slices.Contains(Fixed, k):
			out.Rejected[k] = "cannot be changed from the cloud: the thing name, endpoint and key location are the device's own"
		case k == "reportInterval":
			d, text, err := duration(v, MinReportInterval, MaxReportInterval)
			if err != nil {
				out.Rejected[k] = err.Error()
			} else if d != out.Settings.ReportInterval || text != out.Settings.reportIntervalText {
				out.Settings.ReportInterval, out.Settings.reportIntervalText = d, text
				out.Changed = append(out.Changed, k)
			}
		case k == "logLevel":
			var lvl string
			if err := json.Unmarshal(v, &lvl); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, lvl) {
				out.Rejected[k] = fmt.Sprintf("%s is not one of \"debug\", \"info\", \"warn\", \"error\"", compact(v))
			} else if lvl != out.Settings.LogLevel {
				out.Settings.LogLevel = lvl
				out.Changed = append(out.Changed, k)
			}
		case k == "renewal":
			applyRenewal(&out, v)
		default:
			out.Ignored = append(out.Ignored, k)
		}
	}
	return out
}

func applyRenewal(out *Applied, v json.RawMessage) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil {
		out.Rejected["renewal"] = "must be an object with fraction and/or maxBefore"
		return
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := obj[k]
		name := "renewal." + k
		if string(v) == "null" {
			continue
		}
		switch k {
		case "fraction":
			var f float64
			if err := json.Unmarshal(v, &f); err != nil || f <= 0 || f > 0.9 {
				out.Rejected[name] = fmt.Sprintf("%s is not a number in (0, 0.9]", compact(v))
			} else if f != out.Settings.RenewalFraction {
				out.Settings.RenewalFraction = f
				out.Changed = append(out.Changed, name)
			}
		case "maxBefore":
			d, text, err := duration(v, MinMaxBefore, MaxMaxBefore)
			if err != nil {
				out.Rejected[name] = err.Error()
			} else if d != out.Settings.RenewalMaxBefore || text != out.Settings.maxBeforeText {
				out.Settings.RenewalMaxBefore, out.Settings.maxBeforeText = d, text
				out.Changed = append(out.Changed, name)
			}
		default:
			out.Ignored = append(out.Ignored, name)
		}
	}
}

// duration reads a Go duration string ("5m", "1h30m") within [lo, hi].
func duration(v json.RawMessage, lo, hi time.Duration) (time.Duration, string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, "", fmt.Errorf("%s is not a duration string such as \"5m\"", compact(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, "", fmt.Errorf("%q is not a duration such as \"5m\"", s)
	}
	if d < lo || d > hi {
		return 0, "", fmt.Errorf("%q is not between %v and %v", s, lo, hi)
	}
	return d, s, nil
}

func compact(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return s
}
