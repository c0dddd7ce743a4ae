package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var base = Settings{ReportInterval: 5 * time.Minute, RenewalFraction: 1.0 / 3, RenewalMaxBefore: 720 * time.Hour, LogLevel: "info"}

func TestApplyDesired(t *testing.T) {
	tests := []struct {
		name     string
		desired  string
		changed  []string
		rejected map[string]string // substring of the reason
		ignored  []string
		check    func(t *testing.T, s Settings)
	}{
		{name: "nothing", desired: ``},
		{name: "null", desired: `null`},
		{name: "report interval", desired: `{"reportInterval":"30s"}`, changed: []string{"reportInterval"},
			check: func(t *testing.T, s Settings) {
				if s.ReportInterval != 30*time.Second || s.Config()["reportInterval"] != "30s" {
					t.Fatalf("%+v", s)
				}
			}},
		{name: "same value is no change", desired: `{"logLevel":"info"}`},
		{name: "log level", desired: `{"logLevel":"debug"}`, changed: []string{"logLevel"}},
		{name: "renewal", desired: `{"renewal":{"fraction":0.5,"maxBefore":"240h"}}`, changed: []string{"renewal.fraction", "renewal.maxBefore"},
			check: func(t *testing.T, s Settings) {
				r := s.Config()["renewal"].(map[string]any)
				if s.RenewalFraction != 0.5 || s.RenewalMaxBefore != 240*time.Hour || r["maxBefore"] != "240h" {
					t.Fatalf("%+v", s)
				}
			}},
		{name: "interval too short", desired: `{"reportInterval":"1s"}`, rejected: map[string]string{"reportInterval": `"1s" is not between 10s and 24h0m0s`}},
		{name: "interval not a string", desired: `{"reportInterval":30}`, rejected: map[string]string{"reportInterval": "30 is not a duration string"}},
		{name: "bad level", desired: `{"logLevel":"loud"}`, rejected: map[string]string{"logLevel": `"loud" is not one of`}},
		{name: "bad fraction", desired: `{"renewal":{"fraction":2}}`, rejected: map[string]string{"renewal.fraction": "2 is not a number in (0, 0.9]"}},
		{name: "renewal not an object", desired: `{"renewal":7}`, rejected: map[string]string{"renewal": "must be an object"}},
		{name: "fixed keys", desired: `{"thingName":"gw-2","endpoint":"evil:8883","key":"file:/tmp/k"}`,
			rejected: map[string]string{"thingName": "cannot be changed from the cloud", "endpoint": "cannot be changed", "key": "cannot be changed"}},
		{name: "unknown keys", desired: `{"colour":"red","renewal":{"when":"now"}}`, ignored: []string{"colour", "renewal.when"}},
		{name: "mixed: valid applied, invalid rejected", desired: `{"reportInterval":"1m","logLevel":7}`, changed: []string{"reportInterval"},
			rejected: map[string]string{"logLevel": "7 is not one of"}},
		{name: "not an object", desired: `[1]`, rejected: map[string]string{"config": "not a JSON object"}},
		{name: "null key keeps the setting", desired: `{"reportInterval":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ApplyDesired(base, json.RawMessage(tc.desired))
			if diff := cmp.Diff(tc.changed, a.Changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ignored, a.Ignored); diff != "" {
				t.Errorf("ignored (-want +got):\n%s", diff)
			}
			if len(a.Rejected) != len(tc.rejected) {
				t.Errorf("rejected %v, want keys of %v", a.Rejected, tc.rejected)
			}
			for k, want := range tc.rejected {
				if !strings.Contains(a.Rejected[k], want) {
					t.Errorf("rejected[%s] = %q, want it to contain %q", k, a.Rejected[k], want)
				}
			}
			if len(tc.changed) == 0 && a.Settings.ReportInterval != base.ReportInterval {
				t.Errorf("settings changed without a change: %+v", a.Settings)
			}
			if tc.check != nil {
				tc.check(t, a.Settings)
			}
		})
	}
}

func TestReported(t *testing.T) {
	start := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	st := State{
		Agent:    Agent{Version: "1.2.3", StartedAt: start},
		Identity: Identity{CertificateID: "ab", Serial: "01", NotBefore: start, NotAfter: start.Add(time.Hour), KeyStore: "pkcs11", KeyAlgorithm: "ecdsa-p256", HardwareBacked: true, Slot: "a"},
		Rotation: Rotation{State: "idle", LastResult: "SUCCEEDED", LastID: "rot-1", LastRotatedAt: start},
		Settings: base,
		Applied:  &Applied{Rejected: map[string]string{"logLevel": "bad"}, Ignored: []string{"x"}},
	}
	got, err := json.Marshal(Reported(st, start.Add(125*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent":{"startedAt":"2026-12-03T08:00:00Z","uptimeMinutes":2,"version":"1.2.3"},` +
		`"config":{"logLevel":"info","renewal":{"fraction":0.3333333333333333,"maxBefore":"720h0m0s"},"reportInterval":"5m0s"},` +
		`"configStatus":{"ignored":["x"],"rejected":{"logLevel":"bad"}},` +
		`"connection":{"lastError":null,"lastLostAt":null,"lostCount":0},` +
		`"identity":{"certificateId":"ab","hardwareBacked":true,"insecure":false,"keyAlgorithm":"ecdsa-p256","keyStore":"pkcs11","notAfter":"2026-12-03T09:00:00Z","notBefore":"2026-12-03T08:00:00Z","serial":"01","slot":"a"},` +
		`"rotation":{"last":{"at":"2026-12-03T08:00:00Z","id":"rot-1","jobId":null,"reason":null,"result":"SUCCEEDED"},"nextRenewalAt":null,"renewalNote":null,"state":"idle"}}`
	if string(got) != want {
		t.Fatalf("reported:\n%s\nwant:\n%s", got, want)
	}

	// A gateway adds its system facts and children.
	st.System = map[string]any{"hostname": "gw"}
	st.Children = map[string]any{"temp": map[string]any{"connected": true}}
	rep := Reported(st, start)
	if sys, _ := rep["system"].(map[string]any); sys["hostname"] != "gw" {
		t.Errorf("system = %v", rep["system"])
	}
	if ch, _ := rep["children"].(map[string]any); ch["temp"] == nil {
		t.Errorf("children = %v", rep["children"])
	}
}

func FuzzApplyDesired(f *testing.F) {
	for _, s := range []string{`{"reportInterval":"30s"}`, `{"renewal":{"fraction":0.5}}`, `{"logLevel":"debug","x":1}`, `[]`, `null`, `{"renewal":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, desired string) {
		a := ApplyDesired(base, json.RawMessage(desired))
		s := a.Settings
		if s.ReportInterval < MinReportInterval || s.ReportInterval > MaxReportInterval || s.RenewalFraction <= 0 || s.RenewalFraction > 0.9 {
			t.Fatalf("invalid settings accepted from %q: %+v", desired, s)
		}
		if _, err := json.Marshal(s.Config()); err != nil {
			t.Fatal(err)
		}
	})
}
