package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/simtest"
)

// withAudit adds an audit service with predictable ids to the handler.
func withAudit(t *testing.T, svc **audit.Service) func(*api.Options) {
	return func(o *api.Options) {
		n := 0
		var mu sync.Mutex
		s, err := audit.New(audit.Options{
			Registry: o.Registry, CA: o.CA, Publish: func(string, []byte) error { return nil }, Now: o.Now,
			Disconnect: o.Broker.DisconnectCertificate, ThingAddedToGroup: o.Jobs.ThingAddedToGroup,
			Policies: audit.RegistryPolicies(o.Registry, o.Now),
			NewID: func() string {
				mu.Lock()
				defer mu.Unlock()
				n++
				return fmt.Sprintf("%032d", n)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		o.Audit, *svc = s, s
	}
}

// auditStep is one request of TestAuditGolden; after runs once it is
// answered.
type auditStep struct {
	name, method, path string
	body               any
	after              func(body []byte)
}

// TestAuditGolden runs the audit, mitigation and remediation operations in
// order and compares each answer with testdata/audit/NN-name.golden.
func TestAuditGolden(t *testing.T) {
	var svc *audit.Service
	srv, _, _ := newServer(t, withAudit(t, &svc))
	c := api.NewClient(srv.URL, token, nil)
	ctx := t.Context()

	// A thing with a certificate expiring in 2 days.
	if _, err := c.CreateThing(ctx, "dev1", nil); err != nil {
		t.Fatal(err)
	}
	cert, err := c.CreateCertificateFromCSR(ctx, csrPEM(t, "dev1"), true, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AttachThingPrincipal(ctx, "dev1", cert.CertificateArn); err != nil {
		t.Fatal(err)
	}
	parsed, err := ca.ParseCertificatePEM([]byte(cert.CertificatePem))
	if err != nil {
		t.Fatal(err)
	}
	placeholders := strings.NewReplacer(cert.CertificateID, "<certificateId>", parsed.SerialNumber.String(), "<serialNumber>")
	waitTask := func(wait func(context.Context, string) error) func([]byte) {
		return func(body []byte) {
			var r api.TaskIDResponse
			if err := json.Unmarshal(body, &r); err != nil || r.TaskID == "" {
				t.Fatalf("no task id in %s", body)
			}
			if err := wait(ctx, r.TaskID); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitAudit := waitTask(func(ctx context.Context, id string) error { _, err := svc.WaitAuditTask(ctx, id); return err })
	waitMitigation := waitTask(func(ctx context.Context, id string) error { _, err := svc.WaitMitigationTask(ctx, id); return err })
	expiring, ca30 := audit.DeviceCertificateExpiring, audit.CACertificateExpiring
	deactivate := audit.ActionParams{UpdateDeviceCertificateParams: &audit.UpdateCertificateParams{Action: "DEACTIVATE"}}
	publish := audit.ActionParams{PublishFindingToSNSParams: &audit.PublishFindingToSNSParams{TopicArn: "arn:aws:sns:us-east-1:123456789012:findings"}}
	const task1 = "00000000000000000000000000000001"

	steps := []auditStep{
		{name: "describe-audit-configuration-default", method: "GET", path: "/audit/configuration"},
		{name: "update-audit-configuration", method: "PATCH", path: "/audit/configuration", body: api.AuditConfiguration{
			RoleArn:                               "arn:aws:iam::123456789012:role/audit",
			AuditNotificationTargetConfigurations: map[string]audit.NotificationTarget{"SNS": {TargetArn: "arn:aws:sns:us-east-1:123456789012:audit", Enabled: true}},
			AuditCheckConfigurations:              map[string]audit.CheckConfiguration{expiring: {Enabled: true, Configuration: map[string]string{audit.ExpirationThresholdKey: "60"}}}}},
		{name: "update-audit-configuration-bad-threshold", method: "PATCH", path: "/audit/configuration", body: api.AuditConfiguration{
			AuditCheckConfigurations: map[string]audit.CheckConfiguration{expiring: {Enabled: true, Configuration: map[string]string{audit.ExpirationThresholdKey: "7"}}}}},
		{name: "update-audit-configuration-unsupported-check", method: "PATCH", path: "/audit/configuration", body: api.AuditConfiguration{
			AuditCheckConfigurations: map[string]audit.CheckConfiguration{"LOGGING_DISABLED_CHECK": {Enabled: true}}}},
		{name: "describe-audit-configuration", method: "GET", path: "/audit/configuration"},
		{name: "start-audit-task", method: "POST", path: "/audit/tasks", body: api.StartOnDemandAuditTaskRequest{TargetCheckNames: []string{expiring, ca30}}, after: waitAudit},
		{name: "start-audit-task-disabled-check", method: "POST", path: "/audit/tasks", body: api.StartOnDemandAuditTaskRequest{TargetCheckNames: []string{audit.DeviceCertificateAge}}},
		{name: "start-audit-task-unknown-check", method: "POST", path: "/audit/tasks", body: api.StartOnDemandAuditTaskRequest{TargetCheckNames: []string{"NOPE_CHECK"}}},
		{name: "describe-audit-task", method: "GET", path: "/audit/tasks/" + task1},
		{name: "describe-audit-task-missing", method: "GET", path: "/audit/tasks/nope"},
		{name: "list-audit-tasks", method: "GET", path: "/audit/tasks?taskType=ON_DEMAND_AUDIT_TASK"},
		{name: "list-audit-findings", method: "POST", path: "/audit/findings", body: api.ListAuditFindingsRequest{TaskID: task1}},
		{name: "list-audit-findings-other-check", method: "POST", path: "/audit/findings", body: api.ListAuditFindingsRequest{TaskID: task1, CheckName: ca30}},
		{name: "list-audit-findings-bad-token", method: "POST", path: "/audit/findings", body: api.ListAuditFindingsRequest{TaskID: task1, NextToken: "x"}},
		{name: "create-mitigation-action", method: "POST", path: "/mitigationactions/actions/deactivate", body: api.CreateMitigationActionRequest{ActionParams: deactivate}},
		{name: "create-mitigation-action-exists", method: "POST", path: "/mitigationactions/actions/deactivate", body: api.CreateMitigationActionRequest{ActionParams: deactivate}},
		{name: "create-mitigation-action-two-types", method: "POST", path: "/mitigationactions/actions/two", body: api.CreateMitigationActionRequest{
			ActionParams: audit.ActionParams{UpdateDeviceCertificateParams: deactivate.UpdateDeviceCertificateParams, PublishFindingToSNSParams: publish.PublishFindingToSNSParams}}},
		{name: "create-mitigation-action-unsupported", method: "POST", path: "/mitigationactions/actions/logs", body: api.CreateMitigationActionRequest{
			ActionParams: audit.ActionParams{EnableIoTLoggingParams: &audit.EnableIoTLoggingParams{RoleArnForLogging: "arn:aws:iam::123456789012:role/logs", LogLevel: "INFO"}}}},
		{name: "create-mitigation-action-publish", method: "POST", path: "/mitigationactions/actions/publish", body: api.CreateMitigationActionRequest{ActionParams: publish}},
		{name: "describe-mitigation-action", method: "GET", path: "/mitigationactions/actions/deactivate"},
		{name: "list-mitigation-actions", method: "GET", path: "/mitigationactions/actions"},
		{name: "set-remediation-rule", method: "PUT", path: "/thingsim/remediation/" + expiring, body: api.RemediationRuleRequest{ActionNames: []string{"publish"}}},
		{name: "set-remediation-rule-not-applicable", method: "PUT", path: "/thingsim/remediation/" + audit.PolicyOverlyPermissive, body: api.RemediationRuleRequest{ActionNames: []string{"deactivate"}}},
		{name: "list-remediation-rules", method: "GET", path: "/thingsim/remediation"},
		{name: "start-mitigation-task", method: "POST", path: "/audit/mitigationactions/tasks/fix-1", body: api.StartAuditMitigationActionsTaskRequest{
			Target: audit.MitigationTarget{AuditTaskID: task1}, AuditCheckToActionsMapping: map[string][]string{expiring: {"deactivate"}}}, after: waitMitigation},
		{name: "start-mitigation-task-again", method: "POST", path: "/audit/mitigationactions/tasks/fix-1", body: api.StartAuditMitigationActionsTaskRequest{
			Target: audit.MitigationTarget{AuditTaskID: task1}, AuditCheckToActionsMapping: map[string][]string{expiring: {"deactivate"}}}},
		{name: "start-mitigation-task-no-target", method: "POST", path: "/audit/mitigationactions/tasks/fix-2", body: api.StartAuditMitigationActionsTaskRequest{
			AuditCheckToActionsMapping: map[string][]string{expiring: {"deactivate"}}}},
		{name: "describe-mitigation-task", method: "GET", path: "/audit/mitigationactions/tasks/fix-1"},
		{name: "list-mitigation-tasks", method: "GET", path: "/audit/mitigationactions/tasks?auditTaskId=" + task1},
		{name: "list-mitigation-executions", method: "GET", path: "/audit/mitigationactions/executions?taskId=fix-1"},
		{name: "list-mitigation-executions-no-task", method: "GET", path: "/audit/mitigationactions/executions"},
		{name: "list-certificates-deactivated", method: "GET", path: "/certificates"},
		{name: "create-scheduled-audit", method: "POST", path: "/audit/scheduledaudits/weekly", body: api.ScheduledAudit{
			Frequency: audit.Weekly, DayOfWeek: "MON", TargetCheckNames: []string{expiring}}},
		{name: "create-scheduled-audit-no-day", method: "POST", path: "/audit/scheduledaudits/bad", body: api.ScheduledAudit{
			Frequency: audit.Weekly, TargetCheckNames: []string{expiring}}},
		{name: "describe-scheduled-audit", method: "GET", path: "/audit/scheduledaudits/weekly"},
		{name: "list-scheduled-audits", method: "GET", path: "/audit/scheduledaudits"},
		{name: "delete-scheduled-audit", method: "DELETE", path: "/audit/scheduledaudits/weekly"},
		{name: "delete-scheduled-audit-missing", method: "DELETE", path: "/audit/scheduledaudits/weekly"},
		{name: "revoke-at-ca", method: "PUT", path: "/thingsim/ca/revocations/CERTID"},
		{name: "ca-revocations", method: "GET", path: "/thingsim/ca/revocations"},
		{name: "delete-remediation-rule", method: "DELETE", path: "/thingsim/remediation/" + expiring},
		{name: "delete-mitigation-action", method: "DELETE", path: "/mitigationactions/actions/publish"},
	}
	for i, s := range steps {
		s.path = strings.ReplaceAll(s.path, "CERTID", cert.CertificateID)
		body := auditRequest(t, srv.URL, s)
		got := placeholders.Replace(fmt.Sprintf("%s %s\n\n%s", s.method, s.path, body))
		simtest.Golden(t, filepath.Join("testdata", "audit", fmt.Sprintf("%02d-%s.golden", i, s.name)), got, *update)
	}
}

// auditRequest sends a step's request and returns the status line, error
// type and body.
func auditRequest(t *testing.T, base string, s auditStep) string {
	t.Helper()
	var rd io.Reader
	if s.body != nil {
		data, err := json.Marshal(s.body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(data))
	}
	req, err := http.NewRequest(s.method, base+s.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && s.after != nil {
		s.after(body)
	}
	return fmt.Sprintf("HTTP %d %s\n%s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), body)
}
