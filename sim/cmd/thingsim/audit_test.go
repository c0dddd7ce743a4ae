package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/simtest"
)

func TestAuditCommands(t *testing.T) {
	s := simtest.Start(t)
	dir := s.Dir()
	s.NewDeviceValidFor(t, "dev", 2)
	expiring := audit.DeviceCertificateExpiring

	r := runCLI(t, "audit", "config", "set", "--dir", dir, "--expiring-days", "60", "--enable", audit.DeviceCertificateAge).ok(t)
	var cfg api.AuditConfiguration
	if err := json.Unmarshal([]byte(r.stdout), &cfg); err != nil || cfg.AuditCheckConfigurations[expiring].Configuration[audit.ExpirationThresholdKey] != "60" ||
		!cfg.AuditCheckConfigurations[audit.DeviceCertificateAge].Enabled {
		t.Errorf("audit config set printed %s (%v), want the configuration with the threshold and the age check", r.stdout, err)
	}
	runCLI(t, "group", "create", "rotate", "--dir", dir).ok(t)
	runCLI(t, "mitigation", "action", "create", "rot", "--dir", dir, "--type", audit.ActionAddThingsToThingGroup, "--groups", "rotate").ok(t)
	runCLI(t, "mitigation", "action", "create", "pub", "--dir", dir, "--type", audit.ActionPublishFindingToSNS, "--topic", "arn:aws:sns:us-east-1:123456789012:t").ok(t)
	r = runCLI(t, "mitigation", "action", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"actionName": "rot"`) || !strings.Contains(r.stdout, `"actionName": "pub"`) {
		t.Errorf("mitigation action list printed %s", r.stdout)
	}
	runCLI(t, "remediation", "set", expiring, "rot", "--dir", dir).ok(t)
	r = runCLI(t, "remediation", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"checkName": "`+expiring+`"`) {
		t.Errorf("remediation list printed %s", r.stdout)
	}

	r = runCLI(t, "audit", "run", "--dir", dir, "--checks", expiring+","+audit.CACertificateExpiring).ok(t)
	m := regexp.MustCompile(`audit task ([0-9a-f]{32})`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("audit run printed %s, want the task id", r.stdout)
	}
	task := m[1]
	for _, want := range []string{expiring + "  COMPLETED_NON_COMPLIANT  1", "COMPLETED: 2 checks, 1 compliant, 1 non-compliant",
		"mitigation actions task remediation-" + task + ": COMPLETED", "rot     COMPLETED"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit run printed:\n%s\nwant %q", r.stdout, want)
		}
	}
	r = runCLI(t, "audit", "findings", task, "--dir", dir).ok(t)
	var findings api.ListAuditFindingsResponse
	if err := json.Unmarshal([]byte(r.stdout), &findings); err != nil || len(findings.Findings) != 1 || findings.Findings[0].CheckName != expiring {
		t.Errorf("audit findings printed %s (%v), want one expiring finding", r.stdout, err)
	}
	r = runCLI(t, "audit", "describe", "--dir", dir, task).ok(t)
	if !strings.Contains(r.stdout, `"taskStatus": "COMPLETED"`) {
		t.Errorf("audit describe printed %s", r.stdout)
	}
	r = runCLI(t, "audit", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, task) {
		t.Errorf("audit list printed %s", r.stdout)
	}
	r = runCLI(t, "mitigation", "run", "--dir", dir, "--task", task, "--actions", "pub", "--id", "m1").ok(t)
	if !strings.Contains(r.stdout, "mitigation actions task m1: COMPLETED") || !strings.Contains(r.stdout, "pub     COMPLETED") {
		t.Errorf("mitigation run printed %s", r.stdout)
	}
	r = runCLI(t, "audit", "schedule", "create", "nightly", "--dir", dir, "--every", "1h", "--checks", expiring).ok(t)
	if !strings.Contains(r.stdout, `"thingsimInterval": "1h"`) {
		t.Errorf("audit schedule create printed %s", r.stdout)
	}
	runCLI(t, "audit", "schedule", "delete", "nightly", "--dir", dir).ok(t)

	for _, args := range [][]string{
		{"audit", "frob"},
		{"audit", "run", "extra"},
		{"mitigation", "run"},
		{"remediation", "set", expiring},
		{"mitigation", "action", "create", "x", "--type", "NOPE"},
	} {
		if r := runCLI(t, append(args, "--dir", dir)...); r.code != 2 {
			t.Errorf("%q: exit %d (stderr %s), want 2", args, r.code, r.stderr)
		}
	}
}
