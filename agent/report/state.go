package report

import (
	"time"
)

// Agent describes the running thingd.
type Agent struct {
	Version   string
	StartedAt time.Time
}

// Identity describes the identity in use.
type Identity struct {
	CertificateID  string
	Serial         string
	NotBefore      time.Time
	NotAfter       time.Time
	KeyStore       string
	KeyAlgorithm   string
	HardwareBacked bool
	Insecure       bool
	Slot           string
}

// Rotation describes the rotation state.
type Rotation struct {
	State         string
	LastID        string
	LastJobID     string
	LastResult    string
	LastReason    string
	LastRotatedAt time.Time
	NextRenewalAt time.Time
	RenewalNote   string
}

// Connection counts the MQTT sessions lost since thingd started.
type Connection struct {
	LostCount  int
	LastLostAt time.Time
	LastError  string
}

// State is everything thingd reports.
type State struct {
	Agent      Agent
	Connection Connection
	Identity   Identity
	Rotation   Rotation
	Settings   Settings
	// Applied is the last desired.config outcome (rejected and ignored
	// keys are reported so an operator sees why a value did not take).
	Applied *Applied
	// System holds the gateway's system facts (hostname, OS, uptime, CPU
	// temperature, memory, disk); nil when not reported.
	System map[string]any
	// Children holds the state of the devices behind the gateway, by
	// child name; nil when there are none.
	Children map[string]any
}

// Time is how the shadow carries a time: RFC 3339 in UTC, or null (which
// removes the key) for the zero time.
func Time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// Reported is the reported section of the shadow for st at now. Uptime is
// reported in whole minutes so it changes at most once a minute. Optional
// values that are unset are null, which removes them from the shadow.
func Reported(st State, now time.Time) map[string]any {
	id := st.Identity
	rot := st.Rotation
	lastResult := map[string]any{
		"id": OptString(rot.LastID), "jobId": OptString(rot.LastJobID), "result": OptString(rot.LastResult),
		"reason": OptString(rot.LastReason), "at": Time(rot.LastRotatedAt),
	}
	rep := map[string]any{
		"agent": map[string]any{
			"version":       st.Agent.Version,
			"startedAt":     Time(st.Agent.StartedAt),
			"uptimeMinutes": int64(now.Sub(st.Agent.StartedAt) / time.Minute),
		},
		"identity": map[string]any{
			"certificateId":  id.CertificateID,
			"serial":         id.Serial,
			"notBefore":      Time(id.NotBefore),
			"notAfter":       Time(id.NotAfter),
			"keyStore":       id.KeyStore,
			"keyAlgorithm":   id.KeyAlgorithm,
			"hardwareBacked": id.HardwareBacked,
			"insecure":       id.Insecure,
			"slot":           id.Slot,
		},
		"rotation": map[string]any{
			"state":         rot.State,
			"last":          lastResult,
			"nextRenewalAt": Time(rot.NextRenewalAt),
			"renewalNote":   OptString(rot.RenewalNote),
		},
		"config": st.Settings.Config(),
		"connection": map[string]any{
			"lostCount":  st.Connection.LostCount,
			"lastLostAt": Time(st.Connection.LastLostAt),
			"lastError":  OptString(st.Connection.LastError),
		},
	}
	cfgStatus := map[string]any{"rejected": nil, "ignored": nil}
	if a := st.Applied; a != nil {
		if len(a.Rejected) > 0 {
			rej := map[string]any{}
			for k, v := range a.Rejected {
				rej[k] = v
			}
			cfgStatus["rejected"] = rej
		}
		if len(a.Ignored) > 0 {
			ig := make([]any, len(a.Ignored))
			for i, k := range a.Ignored {
				ig[i] = k
			}
			cfgStatus["ignored"] = ig
		}
	}
	rep["configStatus"] = cfgStatus
	// Absent keys are removed from the cloud by the Reporter.
	if len(st.System) > 0 {
		rep["system"] = st.System
	}
	if len(st.Children) > 0 {
		rep["children"] = st.Children
	}
	return rep
}

// OptString is s, or null (which removes the key) when s is empty.
func OptString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
