package simtest

import (
	"errors"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
)

// Device Defender audit shortcuts, through the admin API. All of them fail
// the test on an error.

// NewDeviceValidFor is NewDevice with a certificate valid for days days
// (at least 1), e.g. one the expiring-certificate audit check flags.
func (s *Sim) NewDeviceValidFor(t testing.TB, name string, days int) Device {
	t.Helper()
	key, csr := NewCSR(t, name)
	certPEM, id, err := s.IssueThingCertificate(t.Context(), name, csr, days)
	if err != nil {
		t.Fatalf("issue certificate for %s: %v", name, err)
	}
	return Device{Name: name, Key: key, CertificateID: id, CertificatePEM: certPEM, TLSCertificate: TLSCertificate(t, []byte(certPEM), key)}
}

// ConfigureAudit merges a change into the account audit configuration
// (UpdateAccountAuditConfiguration).
func (s *Sim) ConfigureAudit(t testing.TB, change api.AuditConfiguration) {
	t.Helper()
	if err := s.Client().UpdateAccountAuditConfiguration(t.Context(), change); err != nil {
		t.Fatalf("update audit configuration: %v", err)
	}
}

// RunAudit runs an on-demand audit of the checks (every enabled check if
// none) and waits up to 30 s for it to complete. It returns the task; its
// findings are AuditFindings(task.TaskID).
func (s *Sim) RunAudit(t testing.TB, checks ...string) api.AuditTask {
	t.Helper()
	id, err := s.Client().StartOnDemandAuditTask(t.Context(), checks)
	if err != nil {
		t.Fatalf("start audit of %q: %v", checks, err)
	}
	return s.WaitAuditTask(t, id, 30*time.Second)
}

// WaitAuditTask waits until an audit task is no longer IN_PROGRESS.
func (s *Sim) WaitAuditTask(t testing.TB, id string, timeout time.Duration) api.AuditTask {
	t.Helper()
	return poll(t, timeout, "audit task "+id, func() (api.AuditTask, bool) {
		task, err := s.Client().DescribeAuditTask(t.Context(), id)
		if err != nil {
			t.Fatalf("describe audit task %s: %v", id, err)
		}
		return task, task.TaskStatus != audit.TaskInProgress
	})
}

// AuditFindings returns every finding of an audit task.
func (s *Sim) AuditFindings(t testing.TB, taskID string) []api.AuditFinding {
	t.Helper()
	var out []api.AuditFinding
	req := api.ListAuditFindingsRequest{TaskID: taskID}
	for {
		resp, err := s.Client().ListAuditFindings(t.Context(), req)
		if err != nil {
			t.Fatalf("list findings of audit task %s: %v", taskID, err)
		}
		out = append(out, resp.Findings...)
		if resp.NextToken == "" {
			return out
		}
		req.NextToken = resp.NextToken
	}
}

// CreateMitigationAction creates a mitigation action.
func (s *Sim) CreateMitigationAction(t testing.TB, name string, params audit.ActionParams) {
	t.Helper()
	if _, err := s.Client().CreateMitigationAction(t.Context(), name, params); err != nil {
		t.Fatalf("create mitigation action %s: %v", name, err)
	}
}

// SetRemediation sets the remediation rule of a check: the mitigation
// actions run on its findings when an audit completes.
func (s *Sim) SetRemediation(t testing.TB, check string, actions ...string) {
	t.Helper()
	if _, err := s.Client().SetRemediationRule(t.Context(), check, actions); err != nil {
		t.Fatalf("set remediation rule of %s: %v", check, err)
	}
}

// Remediation names used by RotateExpiringCertificates and
// ReplacePermissivePolicies.
const (
	RotationGroup       = "rotate-certificate"
	RotationJob         = "rotate-certificate"
	RotationAction      = "add-to-rotation-group"
	ReplacePolicyAction = "replace-default-policy"
	RotationJobDocument = `{"operation":"rotate-certificate"}`
)

// RotateExpiringCertificates sets up the remediation of expiring
// certificates: the thing group RotationGroup with the continuous job
// RotationJob (document {"operation":"rotate-certificate"}), the mitigation
// action RotationAction adding things to it, and the remediation rule of
// DEVICE_CERTIFICATE_EXPIRING_CHECK running it. After an audit finds a
// thing's certificate expiring, the thing gets a QUEUED rotation.
func (s *Sim) RotateExpiringCertificates(t testing.TB) {
	t.Helper()
	s.CreateThingGroup(t, RotationGroup)
	s.CreateGroupJob(t, RotationJob, RotationGroup, RotationJobDocument, true)
	s.CreateMitigationAction(t, RotationAction, audit.ActionParams{
		AddThingsToThingGroupParams: &audit.AddThingsToThingGroupParams{ThingGroupNames: []string{RotationGroup}}})
	s.SetRemediation(t, audit.DeviceCertificateExpiring, RotationAction)
}

// ReplacePermissivePolicies sets up the remediation of overly permissive
// policies: the mitigation action ReplacePolicyAction
// (REPLACE_DEFAULT_POLICY_VERSION: the new default version is the
// thingd-device policy) and the remediation rule of
// IOT_POLICY_OVERLY_PERMISSIVE_CHECK running it.
func (s *Sim) ReplacePermissivePolicies(t testing.TB) {
	t.Helper()
	s.CreateMitigationAction(t, ReplacePolicyAction, audit.ActionParams{
		ReplaceDefaultPolicyVersionParams: &audit.ReplaceDefaultPolicyVersionParams{TemplateName: "BLANK_POLICY"}})
	s.SetRemediation(t, audit.PolicyOverlyPermissive, ReplacePolicyAction)
}

// WaitRemediation waits for the remediation the rules started after an
// audit task (the mitigation actions task audit.RemediationTaskID) to
// finish and returns it with its executions. It fails the test if there is
// none.
func (s *Sim) WaitRemediation(t testing.TB, auditTaskID string, timeout time.Duration) (api.MitigationActionsTask, []api.MitigationActionsExecution) {
	t.Helper()
	id := audit.RemediationTaskID(auditTaskID)
	task := poll(t, timeout, "mitigation actions task "+id, func() (api.MitigationActionsTask, bool) {
		task, err := s.Client().DescribeAuditMitigationActionsTask(t.Context(), id)
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Type == api.ErrResourceNotFound {
			t.Fatalf("no remediation after audit task %s (are remediation rules set and was a ruled check non-compliant?)", auditTaskID)
		} else if err != nil {
			t.Fatalf("describe mitigation actions task %s: %v", id, err)
		}
		return task, task.TaskStatus != audit.TaskInProgress
	})
	execs, err := s.Client().ListAuditMitigationActionsExecutions(t.Context(), id, "")
	if err != nil {
		t.Fatalf("list executions of %s: %v", id, err)
	}
	return task, execs.ActionsExecutions
}

// RevokeAtCA puts a certificate on the simulator CA's revocation list
// without changing its registry status, which the check
// REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK then flags.
func (s *Sim) RevokeAtCA(t testing.TB, certID string) {
	t.Helper()
	if _, err := s.Client().RevokeAtCA(t.Context(), certID); err != nil {
		t.Fatalf("revoke %s at the CA: %v", certID, err)
	}
}

// poll calls get every 20 ms until it reports done, and fails the test
// after timeout.
func poll[T any](t testing.TB, timeout time.Duration, what string, get func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, done := get()
		if done {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in progress after %v: %+v", what, timeout, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
