package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/registry"
)

func indent(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), "", "  "); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return b.String() + "\n"
}

// The completion notification goes to the webhook of the SNS target and
// to NotificationTopic, in the SNS message shape.
func TestNotification(t *testing.T) {
	f := newFixture(t)
	hook := newWebhook(t)
	_, err := f.svc.UpdateConfiguration(audit.Configuration{
		AuditNotificationTargetConfigurations: map[string]audit.NotificationTarget{"SNS": {TargetArn: hook.URL, RoleArn: "arn:aws:iam::123456789012:role/audit", Enabled: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.activeCert(t, "dev", 2*day)
	f.activeCert(t, "ok", 200*day)
	f.audit(t, audit.DeviceCertificateExpiring, audit.CACertificateExpiring)
	body := hook.next(t)
	golden(t, "notification.golden", indent(t, body))
	if got := f.pub.on(audit.NotificationTopic); len(got) != 1 || got[0] != body {
		t.Errorf("published on %s: %q, want the webhook's body once", audit.NotificationTopic, got)
	}
}

// A disabled or URL-less SNS target gets nothing; the topic still does.
func TestNotificationWithoutWebhook(t *testing.T) {
	f := newFixture(t)
	hook := newWebhook(t)
	_, err := f.svc.UpdateConfiguration(audit.Configuration{
		AuditNotificationTargetConfigurations: map[string]audit.NotificationTarget{"SNS": {TargetArn: hook.URL, Enabled: false}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.audit(t, audit.CACertificateExpiring)
	if got := f.pub.on(audit.NotificationTopic); len(got) != 1 {
		t.Errorf("%d notifications on %s, want 1", len(got), audit.NotificationTopic)
	}
	select {
	case b := <-hook.bodies:
		t.Errorf("disabled target got %s", b)
	case <-time.After(50 * time.Millisecond):
	}
}

// mitigate runs a mitigation actions task on an audit task and returns it
// with its executions.
func mitigate(t *testing.T, f *fixture, id, auditTask string, mapping map[string][]string) (audit.MitigationTask, []audit.Execution) {
	t.Helper()
	if _, err := f.svc.StartMitigationTask(id, audit.MitigationTarget{AuditTaskID: auditTask}, mapping); err != nil {
		t.Fatal(err)
	}
	mt, err := f.svc.WaitMitigationTask(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	execs, err := f.svc.MitigationExecutions(id, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return mt, execs
}

func createAction(t *testing.T, f *fixture, name string, params audit.ActionParams) {
	t.Helper()
	if _, err := f.svc.CreateMitigationAction(name, "", params); err != nil {
		t.Fatal(err)
	}
}

// rotationGroup creates the thing group "rotate" with a continuous
// rotate-certificate job.
func rotationGroup(t *testing.T, f *fixture) {
	t.Helper()
	if _, _, err := f.reg.CreateThingGroup("rotate", "", now); err != nil {
		t.Fatal(err)
	}
	_, err := f.jobs.CreateJob(jobs.CreateJobInput{JobID: "rotate-certificate", Targets: []string{registry.ThingGroupARN("rotate")},
		Document: `{"operation":"rotate-certificate"}`, TargetSelection: jobs.Continuous})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMitigationActions(t *testing.T) {
	addToGroup := audit.ActionParams{AddThingsToThingGroupParams: &audit.AddThingsToThingGroupParams{ThingGroupNames: []string{"rotate"}}}
	tests := []struct {
		name   string
		check  string
		params audit.ActionParams
		setup  func(*testing.T, *fixture) string // returns the resource
		verify func(t *testing.T, f *fixture, resource string, e audit.Execution)
		status string
	}{
		{
			name: "deactivate certificate", check: audit.DeviceCertificateExpiring, status: audit.ExecutionCompleted,
			params: audit.ActionParams{UpdateDeviceCertificateParams: &audit.UpdateCertificateParams{Action: "DEACTIVATE"}},
			setup:  func(t *testing.T, f *fixture) string { return f.activeCert(t, "dev", 2*day) },
			verify: func(t *testing.T, f *fixture, id string, _ audit.Execution) {
				if c, _ := f.reg.Certificate(id); c.Status != registry.StatusInactive {
					t.Errorf("certificate status %s, want INACTIVE", c.Status)
				}
				if !slices.Contains(f.disconnected, id) {
					t.Errorf("connections of %s not closed (disconnected %q)", id, f.disconnected)
				}
			},
		},
		{
			name: "add thing to group", check: audit.DeviceCertificateExpiring, status: audit.ExecutionCompleted, params: addToGroup,
			setup: func(t *testing.T, f *fixture) string {
				rotationGroup(t, f)
				return f.activeCert(t, "dev", 2*day)
			},
			verify: func(t *testing.T, f *fixture, _ string, _ audit.Execution) {
				if things, _ := f.reg.GroupThings("rotate"); !slices.Equal(things, []string{"dev"}) {
					t.Errorf("group rotate has %q, want dev", things)
				}
				if e, err := f.jobs.Execution("dev", "rotate-certificate", 0); err != nil || e.Status != jobs.StatusQueued {
					t.Errorf("rotate-certificate execution on dev: %+v, %v; want QUEUED", e, err)
				}
			},
		},
		{
			name: "add thing to missing group", check: audit.DeviceCertificateExpiring, status: audit.ExecutionFailed, params: addToGroup,
			setup: func(t *testing.T, f *fixture) string { return f.activeCert(t, "dev", 2*day) },
			verify: func(t *testing.T, _ *fixture, _ string, e audit.Execution) {
				if e.ErrorCode != "ResourceNotFoundException" {
					t.Errorf("errorCode %q, want ResourceNotFoundException", e.ErrorCode)
				}
			},
		},
		{
			name: "replace default policy version", check: audit.PolicyOverlyPermissive, status: audit.ExecutionCompleted,
			params: audit.ActionParams{ReplaceDefaultPolicyVersionParams: &audit.ReplaceDefaultPolicyVersionParams{TemplateName: "BLANK_POLICY"}},
			setup: func(t *testing.T, f *fixture) string {
				open := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`
				policyWith(t, f, "open", open)
				for range 4 {
					if _, err := f.reg.CreatePolicyVersion("open", open, true, now); err != nil {
						t.Fatal(err)
					}
				}
				return "open"
			},
			verify: func(t *testing.T, f *fixture, name string, _ audit.Execution) {
				versions, err := f.reg.PolicyVersions(name)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, v := range versions {
					ids = append(ids, v.VersionID)
					if v.IsDefault && (v.VersionID != "6" || v.Document != devicePolicy()) {
						t.Errorf("default version %s is %s, want version 6 with the thingd-device document", v.VersionID, v.Document)
					}
				}
				if want := []string{"2", "3", "4", "5", "6"}; !slices.Equal(ids, want) {
					t.Errorf("versions %q, want %q (the oldest deleted, 5 kept)", ids, want)
				}
			},
		},
		{
			name: "publish finding", check: audit.DeviceCertificateExpiring, status: audit.ExecutionCompleted,
			params: audit.ActionParams{PublishFindingToSNSParams: &audit.PublishFindingToSNSParams{TopicArn: "arn:aws:sns:us-east-1:123456789012:findings"}},
			setup:  func(t *testing.T, f *fixture) string { return f.activeCert(t, "dev", 2*day) },
			verify: func(t *testing.T, f *fixture, id string, _ audit.Execution) {
				msgs := f.pub.on(audit.FindingTopic)
				if len(msgs) != 1 {
					t.Fatalf("%d messages on %s, want 1", len(msgs), audit.FindingTopic)
				}
				var m audit.FindingMessage
				if err := json.Unmarshal([]byte(msgs[0]), &m); err != nil || m.Finding.NonCompliantResource.ResourceIdentifier.DeviceCertificateID != id ||
					m.ActionName != "act" || m.MitigationActionsTaskID != "m1" || m.AccountID != registry.AccountID {
					t.Errorf("finding message %s (%v), want the finding of %s from action act, task m1", msgs[0], err, id)
				}
			},
		},
		{
			name: "action not for the check", check: audit.PolicyOverlyPermissive, status: audit.ExecutionSkipped,
			params: audit.ActionParams{UpdateDeviceCertificateParams: &audit.UpdateCertificateParams{Action: "DEACTIVATE"}},
			setup: func(t *testing.T, f *fixture) string {
				policyWith(t, f, "open", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`)
				return "open"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			resource := tt.setup(t, f)
			createAction(t, f, "act", tt.params)
			task, findings := f.audit(t, tt.check)
			if len(findings) != 1 {
				t.Fatalf("%d findings, want 1: %+v", len(findings), findings)
			}
			mt, execs := mitigate(t, f, "m1", task.TaskID, map[string][]string{tt.check: {"act"}})
			if len(execs) != 1 || execs[0].Status != tt.status || execs[0].FindingID != findings[0].FindingID || execs[0].ActionName != "act" {
				t.Fatalf("executions %+v, want one %s of act on finding %s", execs, tt.status, findings[0].FindingID)
			}
			stats := mt.TaskStatistics[tt.check]
			wantStats := audit.FindingsStatistics{TotalFindingsCount: 1}
			wantStatus := audit.TaskCompleted
			switch tt.status {
			case audit.ExecutionCompleted:
				wantStats.SucceededFindingsCount = 1
			case audit.ExecutionFailed:
				wantStats.FailedFindingsCount, wantStatus = 1, audit.TaskFailed
			case audit.ExecutionSkipped:
				wantStats.SkippedFindingsCount = 1
			}
			if diff := cmp.Diff(wantStats, stats); diff != "" || mt.TaskStatus != wantStatus {
				t.Errorf("task %s, statistics (-want +got):\n%s", mt.TaskStatus, diff)
			}
			if tt.verify != nil {
				tt.verify(t, f, resource, execs[0])
			}
			// The next audit: resolved findings are gone.
			if tt.name == "deactivate certificate" || tt.name == "replace default policy version" {
				if _, again := f.audit(t, tt.check); len(again) != 0 {
					t.Errorf("second audit found %+v, want nothing", summarize(again))
				}
			}
		})
	}
}

// The remediation rule of the expiring check adds the thing to the group
// of a continuous rotate-certificate job when the audit completes: an
// execution is QUEUED for the thing.
func TestRemediation(t *testing.T) {
	f := newFixture(t)
	rotationGroup(t, f)
	createAction(t, f, "rotate", audit.ActionParams{AddThingsToThingGroupParams: &audit.AddThingsToThingGroupParams{ThingGroupNames: []string{"rotate"}}})
	if _, err := f.svc.SetRemediationRule(audit.DeviceCertificateExpiring, []string{"rotate"}); err != nil {
		t.Fatal(err)
	}
	f.activeCert(t, "dev", 2*day)
	f.activeCert(t, "fine", 300*day)
	task, _ := f.audit(t, audit.DeviceCertificateExpiring, audit.CACertificateExpiring)
	mt, err := f.svc.WaitMitigationTask(t.Context(), audit.RemediationTaskID(task.TaskID))
	if err != nil {
		t.Fatal(err)
	}
	if mt.TaskStatus != audit.TaskCompleted || mt.TaskStatistics[audit.DeviceCertificateExpiring].SucceededFindingsCount != 1 {
		t.Errorf("remediation task %+v, want COMPLETED with one finding remediated", mt)
	}
	e, err := f.jobs.Execution("dev", "rotate-certificate", 0)
	if err != nil || e.Status != jobs.StatusQueued {
		t.Errorf("rotate-certificate execution on dev: %+v, %v; want QUEUED", e, err)
	}
	if _, err := f.jobs.Execution("fine", "rotate-certificate", 0); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("rotate-certificate execution on fine: %v, want none", err)
	}

	// A compliant audit starts no remediation.
	rules, _ := f.svc.RemediationRules()
	if len(rules) != 1 {
		t.Fatalf("rules %+v", rules)
	}
	task, _ = f.audit(t, audit.CACertificateExpiring)
	if _, err := f.svc.DescribeMitigationTask(audit.RemediationTaskID(task.TaskID)); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("remediation after a compliant audit: %v, want none", err)
	}
}

func TestRemediationRuleValidation(t *testing.T) {
	f := newFixture(t)
	createAction(t, f, "deactivate", audit.ActionParams{UpdateDeviceCertificateParams: &audit.UpdateCertificateParams{Action: "DEACTIVATE"}})
	for _, tt := range []struct {
		check   string
		actions []string
	}{
		{audit.PolicyOverlyPermissive, []string{"deactivate"}}, // does not apply
		{audit.DeviceCertificateExpiring, []string{"nope"}},    // does not exist
		{"LOGGING_DISABLED_CHECK", []string{"deactivate"}},     // not implemented
		{audit.DeviceCertificateExpiring, nil},
	} {
		if _, err := f.svc.SetRemediationRule(tt.check, tt.actions); err == nil {
			t.Errorf("SetRemediationRule(%s, %q) succeeded, want an error", tt.check, tt.actions)
		}
	}
	if _, err := f.svc.SetRemediationRule(audit.DeviceCertificateShared, []string{"deactivate"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteMitigationAction("deactivate"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("deleting an action a rule uses: %v, want ErrInvalid", err)
	}
}

func TestConfiguration(t *testing.T) {
	f := newFixture(t)
	cfg, err := f.svc.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AuditCheckConfigurations[audit.DeviceCertificateAge].Enabled || !cfg.AuditCheckConfigurations[audit.DeviceCertificateExpiring].Enabled {
		t.Errorf("default configuration %+v: want every check enabled but the age check", cfg.AuditCheckConfigurations)
	}
	for _, bad := range []map[string]audit.CheckConfiguration{
		{audit.DeviceCertificateExpiring: {Enabled: true, Configuration: map[string]string{audit.ExpirationThresholdKey: "29"}}},
		{audit.DeviceCertificateAge: {Enabled: true, Configuration: map[string]string{audit.AgeThresholdKey: "3653"}}},
		{audit.DeviceCertificateAge: {Enabled: true, Configuration: map[string]string{audit.ExpirationThresholdKey: "60"}}},
		{"LOGGING_DISABLED_CHECK": {Enabled: true}},
	} {
		if _, err := f.svc.UpdateConfiguration(audit.Configuration{AuditCheckConfigurations: bad}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("UpdateConfiguration(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	// The SDK spelling is accepted; a disabled check cannot be audited.
	_, err = f.svc.UpdateConfiguration(audit.Configuration{AuditCheckConfigurations: map[string]audit.CheckConfiguration{
		"IOT_POLICY_POTENTIAL_MIS_CONFIGURATION_CHECK": {Enabled: false},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.StartOnDemandAuditTask([]string{audit.PolicyPotentialMisconfiguration}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("auditing a disabled check: %v, want ErrInvalid", err)
	}
	// A check a scheduled audit uses cannot be disabled.
	if _, err := f.svc.CreateScheduledAudit(audit.ScheduledAudit{ScheduledAuditName: "daily", Frequency: audit.Daily,
		TargetCheckNames: []string{audit.DeviceCertificateExpiring}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.UpdateConfiguration(audit.Configuration{AuditCheckConfigurations: map[string]audit.CheckConfiguration{audit.DeviceCertificateExpiring: {Enabled: false}}})
	if !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("disabling a scheduled check: %v, want ErrInvalid", err)
	}
}

func TestScheduledAudits(t *testing.T) {
	f := newFixture(t) // now is Saturday 2025-03-01 12:00 UTC
	for i, tt := range []struct {
		sa   audit.ScheduledAudit
		next time.Time
	}{
		{audit.ScheduledAudit{Frequency: audit.Daily}, time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)},
		{audit.ScheduledAudit{Frequency: audit.Weekly, DayOfWeek: "MON"}, time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)},
		{audit.ScheduledAudit{Frequency: audit.Biweekly, DayOfWeek: "SAT"}, time.Date(2025, 3, 8, 0, 0, 0, 0, time.UTC)},
		{audit.ScheduledAudit{Frequency: audit.Monthly, DayOfMonth: "LAST"}, time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)},
		{audit.ScheduledAudit{Frequency: audit.Monthly, DayOfMonth: "1"}, time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)},
	} {
		tt.sa.ScheduledAuditName = fmt.Sprintf("s%d", i)
		tt.sa.TargetCheckNames = []string{audit.CACertificateExpiring}
		got, err := f.svc.CreateScheduledAudit(tt.sa)
		if err != nil {
			t.Fatal(err)
		}
		if !got.NextRunTime.Equal(tt.next) {
			t.Errorf("%s %s%s: next run %v, want %v", tt.sa.Frequency, tt.sa.DayOfWeek, tt.sa.DayOfMonth, got.NextRunTime.Time, tt.next)
		}
	}
	if _, err := f.svc.CreateScheduledAudit(audit.ScheduledAudit{ScheduledAuditName: "sixth", Frequency: audit.Daily,
		TargetCheckNames: []string{audit.CACertificateExpiring}}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("a sixth scheduled audit: %v, want ErrInvalid", err)
	}
	for _, bad := range []audit.ScheduledAudit{
		{ScheduledAuditName: "w", Frequency: audit.Weekly, TargetCheckNames: []string{audit.CACertificateExpiring}},
		{ScheduledAuditName: "x", Frequency: "HOURLY", TargetCheckNames: []string{audit.CACertificateExpiring}},
		{ScheduledAuditName: "bad name", Frequency: audit.Daily, TargetCheckNames: []string{audit.CACertificateExpiring}},
		{ScheduledAuditName: "y", Frequency: audit.Daily, ThingsimInterval: "soon", TargetCheckNames: []string{audit.CACertificateExpiring}},
	} {
		if _, err := f.svc.CreateScheduledAudit(bad); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("CreateScheduledAudit(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// A scheduled audit with a thingsim interval runs by itself, as a
// SCHEDULED_AUDIT_TASK naming it.
func TestScheduledAuditRuns(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateScheduledAudit(audit.ScheduledAudit{ScheduledAuditName: "often", Frequency: audit.Daily,
		ThingsimInterval: "10ms", TargetCheckNames: []string{audit.CACertificateExpiring}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := f.svc.ListAuditTasks(audit.TaskFilter{TaskType: audit.ScheduledTask, TaskStatus: audit.TaskCompleted})
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) >= 2 {
			if tasks[0].ScheduledAuditName != "often" || tasks[0].TaskStatistics.CompliantChecks != 1 {
				t.Errorf("scheduled task %+v, want one compliant check from 'often'", tasks[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d scheduled tasks completed, want 2 or more", len(tasks))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.svc.DeleteScheduledAudit("often"); err != nil {
		t.Fatal(err)
	}
}
