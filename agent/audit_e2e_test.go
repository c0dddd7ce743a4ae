package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/simtest"
)

const permissivePolicy = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}`

// TestAuditClosedLoop: the cloud half of the security story, end to end
// with thingd and SoftHSM. A device whose certificate expires in 2 days runs
// under an overly permissive policy; an audit finds both; the remediation
// rules replace the policy's default version with the restrictive device
// policy and put the thing in a group with a continuous rotate-certificate
// job; thingd rotates (under the restrictive policy); the next audit has no
// findings.
func TestAuditClosedLoop(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	certFile, oldID := issueDevice(t, s, "gw-1", a, 2)
	s.CreatePolicy(t, "fleet-permissive", permissivePolicy)
	s.DetachAllPolicies(t, oldID)
	s.AttachPolicy(t, "fleet-permissive", oldID)
	s.RotateExpiringCertificates(t)
	s.ReplacePermissivePolicies(t)

	_, port, _ := strings.Cut(s.MQTTAddr(), ":")
	cfg := writeConfig(t, configOpts{thing: "gw-1", endpoint: "localhost:" + port, serverCA: s.CAPath(), key: a, cert: certFile,
		extra: fmt.Sprintf("\n[rotation]\nkey_b = %q\n\n[renewal]\nenabled = false\n", b)})
	p := startThingd(t, cfg)
	waitConnectedAs(t, cfg, oldID)

	task := s.RunAudit(t)
	got := map[string]string{}
	for _, f := range s.AuditFindings(t, task.TaskID) {
		id := f.NonCompliantResource.ResourceIdentifier
		got[f.CheckName] = id.DeviceCertificateID
		if pv := id.PolicyVersionIdentifier; pv != nil {
			got[f.CheckName] = fmt.Sprintf("%+v", *pv)
		}
	}
	if !strings.Contains(got["DEVICE_CERTIFICATE_EXPIRING_CHECK"], oldID) || !strings.Contains(got["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"], "fleet-permissive") {
		t.Fatalf("first audit findings: %v", got)
	}
	s.WaitRemediation(t, task.TaskID, 30*time.Second)

	// The device rotates on the job the group gave it, under the policy that
	// is now restrictive.
	ex := s.WaitJobExecution(t, "gw-1", simtest.RotationJob, "SUCCEEDED", 60*time.Second)
	newID := ex.StatusDetails.DetailsMap["newCertificateId"]
	p.waitLog(t, 20*time.Second, "old key deleted")
	waitConnectedAs(t, cfg, newID)
	s.WaitCertificateStatus(t, oldID, "INACTIVE", 30*time.Second)
	res := s.TestAuthorization(t, newID, "gw-1", "PUBLISH", "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/gw-2/shadow/update")
	if res.AuthDecision == "ALLOWED" {
		t.Fatalf("after remediation gw-1 may still publish to gw-2's shadow: %+v", res)
	}

	task2 := s.RunAudit(t)
	if f := s.AuditFindings(t, task2.TaskID); len(f) != 0 {
		t.Fatalf("second audit has %d findings: %+v", len(f), f)
	}
}
