package agent_test

import (
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/simtest"
)

// path walks nested shadow maps.
func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// TestShadowEndToEnd: thingd (process, SoftHSM key) reports its identity in
// the classic shadow; a rotation shows up within one report; a desired
// report interval is applied and reported back (the delta clears); an
// invalid desired value is reported as rejected and not applied; a change
// made while the broker is down is delivered on reconnect.
func TestShadowEndToEnd(t *testing.T) {
	dir := t.TempDir()
	s := simtest.StartWith(t, sim.Options{Dir: dir})
	addr := s.MQTTAddr()
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)

	rep := s.WaitReported(t, "gw-1", "", 20*time.Second, func(r map[string]any) bool {
		return path(r, "identity", "certificateId") == d.certID
	})
	for _, c := range []struct {
		keys []string
		want any
	}{
		{[]string{"identity", "keyStore"}, "pkcs11"},
		{[]string{"identity", "keyAlgorithm"}, "ecdsa-p256"},
		{[]string{"identity", "hardwareBacked"}, true},
		{[]string{"identity", "insecure"}, false},
		{[]string{"identity", "slot"}, "a"},
		{[]string{"rotation", "state"}, "idle"},
		{[]string{"config", "reportInterval"}, "5m0s"},
		{[]string{"agent", "version"}, "0.1.0-dev"},
	} {
		if got := path(rep, c.keys...); got != c.want {
			t.Errorf("reported %v = %v, want %v", c.keys, got, c.want)
		}
	}
	if path(rep, "identity", "notAfter") == nil || path(rep, "rotation", "nextRenewalAt") == nil {
		t.Errorf("reported lacks notAfter / nextRenewalAt: %v", rep)
	}

	// A rotation is in the shadow right after it (not a report interval
	// later: the interval is 5 minutes).
	s.CreateJob(t, "rotate-1", "gw-1", rotateDoc)
	ex := s.WaitJobExecution(t, "gw-1", "rotate-1", "SUCCEEDED", 60*time.Second)
	newID := ex.StatusDetails.DetailsMap["newCertificateId"]
	st := thingdStatus(t, d.config)
	wantRenewal := st.Rotation.NextRenewal.UTC().Format(time.RFC3339)
	s.WaitReported(t, "gw-1", "", 15*time.Second, func(r map[string]any) bool {
		return path(r, "identity", "certificateId") == newID && path(r, "identity", "slot") == "b" &&
			path(r, "rotation", "last", "result") == "SUCCEEDED" && path(r, "rotation", "last", "jobId") == "rotate-1" &&
			path(r, "rotation", "nextRenewalAt") == wantRenewal // the new certificate's window, not the old one's
	})

	// Desired config: a valid report interval is applied and echoed, so
	// the delta clears.
	s.UpdateDesired(t, "gw-1", "", `{"config": {"reportInterval": "15s", "renewal": {"fraction": 0.5}}}`)
	s.WaitReported(t, "gw-1", "", 15*time.Second, func(r map[string]any) bool {
		return path(r, "config", "reportInterval") == "15s" && path(r, "config", "renewal", "fraction") == 0.5
	})
	p.waitLog(t, 5*time.Second, "desired config applied")
	waitFor(t, 10*time.Second, "shadow delta cleared", func() bool {
		doc, _ := s.GetShadow(t, "gw-1", "")
		return len(doc.State.Delta) == 0
	})

	// Invalid values and fixed keys are reported as rejected, not applied.
	s.UpdateDesired(t, "gw-1", "", `{"config": {"logLevel": "loud", "endpoint": "evil.example:8883", "colour": "red"}}`)
	rep = s.WaitReported(t, "gw-1", "", 15*time.Second, func(r map[string]any) bool {
		return path(r, "configStatus", "rejected", "logLevel") != nil && path(r, "configStatus", "rejected", "endpoint") != nil
	})
	if path(rep, "config", "logLevel") != "debug" || path(rep, "config", "reportInterval") != "15s" {
		t.Fatalf("settings changed by an invalid desired state: %v", path(rep, "config"))
	}
	if ig, _ := path(rep, "configStatus", "ignored").([]any); len(ig) != 1 || ig[0] != "colour" {
		t.Fatalf("ignored keys: %v", path(rep, "configStatus"))
	}
	waitConnectedAs(t, d.config, newID) // still running, same identity

	// Broker down: the lost connection is recorded while offline and
	// delivered once thingd is back.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, 20*time.Second, "mqtt connection lost")
	s2 := simtest.StartWith(t, sim.Options{Dir: dir, MQTTAddr: addr})
	s2.WaitReported(t, "gw-1", "", 30*time.Second, func(r map[string]any) bool {
		n, _ := path(r, "connection", "lostCount").(float64)
		return n >= 1 && path(r, "connection", "lastLostAt") != nil
	})
	// The settings applied from desired survive the reconnect.
	doc, _ := s2.GetShadow(t, "gw-1", "")
	if path(doc.State.Reported, "config", "reportInterval") != "15s" {
		t.Fatalf("reported config after reconnect: %v", path(doc.State.Reported, "config"))
	}
}
