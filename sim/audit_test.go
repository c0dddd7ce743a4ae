package sim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

const permissivePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// watcherPolicy lets a thing read the audit topics.
const watcherPolicy = `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/thingsim/audit/*"},
 {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:us-east-1:123456789012:topic/thingsim/audit/*"}]}`

// The audit end to end on a running simulator: the completion notification
// reaches an MQTT subscriber and the webhook, and the remediation rules
// replace a permissive policy and queue a rotation for an expiring
// certificate.
func TestAuditRemediation(t *testing.T) {
	s := simtest.Start(t)
	bodies := make(chan []byte, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
	}))
	t.Cleanup(hook.Close)
	s.ConfigureAudit(t, api.AuditConfiguration{
		AuditNotificationTargetConfigurations: map[string]audit.NotificationTarget{"SNS": {TargetArn: hook.URL, Enabled: true}}})

	s.CreatePolicy(t, "watcher", watcherPolicy)
	w := mustDial(t, s, s.NewPolicyDevice(t, "watcher", "watcher"))
	notes := make(chan []byte, 4)
	wait(t, w.Subscribe(audit.NotificationTopic, 1, func(_ paho.Client, m paho.Message) { notes <- m.Payload() }), "subscribe to notifications")

	dev := s.NewDeviceValidFor(t, "dev", 2)
	s.CreatePolicy(t, "open", permissivePolicy)
	s.AttachPolicy(t, "open", dev.CertificateID)
	s.RotateExpiringCertificates(t)
	s.ReplacePermissivePolicies(t)

	task := s.RunAudit(t, audit.DeviceCertificateExpiring, audit.PolicyOverlyPermissive)
	var fromMQTT, fromHook []byte
	for _, ch := range []struct {
		c   chan []byte
		dst *[]byte
	}{{notes, &fromMQTT}, {bodies, &fromHook}} {
		select {
		case *ch.dst = <-ch.c:
		case <-time.After(5 * time.Second):
			t.Fatal("no audit notification")
		}
	}
	if !bytes.Equal(fromMQTT, fromHook) {
		t.Errorf("MQTT notification %s differs from the webhook's %s", fromMQTT, fromHook)
	}
	var tr transcript
	tr.replace(task.TaskID, "<taskId>")
	tr.replace(strconv.FormatInt(task.TaskStartTime.UnixMilli(), 10), "<taskStartTime>")
	tr.message(audit.NotificationTopic, fromMQTT)
	tr.check(t, "audit-notification")

	mt, execs := s.WaitRemediation(t, task.TaskID, 10*time.Second)
	if mt.TaskStatus != audit.TaskCompleted || len(execs) != 2 {
		t.Fatalf("remediation %+v with executions %+v, want COMPLETED with 2", mt, execs)
	}
	for _, e := range execs {
		if e.Status != audit.ExecutionCompleted {
			t.Errorf("execution %+v, want COMPLETED", e)
		}
	}
	if ex := s.JobExecution(t, "dev", simtest.RotationJob); ex.Status != "QUEUED" {
		t.Errorf("rotation of dev is %s, want QUEUED", ex.Status)
	}
	p, err := s.Client().GetPolicy(t.Context(), "open")
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultVersionID != "2" || !sameJSON(p.PolicyDocument, policy.DevicePolicy(registry.Region, registry.AccountID)) {
		t.Errorf("policy open: default version %s %s, want 2 with the thingd-device document", p.DefaultVersionID, p.PolicyDocument)
	}
	// The policy is compliant now; the certificate is until dev rotates.
	again := s.RunAudit(t, audit.PolicyOverlyPermissive)
	if again.TaskStatistics.CompliantChecks != 1 || len(s.AuditFindings(t, again.TaskID)) != 0 {
		t.Errorf("second audit %+v, want compliant", again.TaskStatistics)
	}
}

// Revoking a certificate with UpdateCertificate puts it on the CA's
// revocation list; revoking it at the CA only is what the revoked-still-
// active check finds.
func TestAuditRevokedCertificate(t *testing.T) {
	s := simtest.Start(t)
	a, b := s.NewDevice(t, "a"), s.NewDevice(t, "b")
	if err := s.Client().UpdateCertificate(t.Context(), a.CertificateID, registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	s.RevokeAtCA(t, b.CertificateID)
	list, err := s.Client().CARevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Revocations) != 2 || list.Revocations[0].SerialNumber != a.TLSCertificate.Leaf.SerialNumber.String() {
		t.Errorf("revocations %+v, want a's and b's serials", list.Revocations)
	}
	task := s.RunAudit(t, audit.RevokedDeviceCertificateStillActive)
	findings := s.AuditFindings(t, task.TaskID)
	if len(findings) != 1 || findings[0].NonCompliantResource.ResourceIdentifier.DeviceCertificateID != b.CertificateID {
		t.Errorf("findings %+v, want b's certificate", findings)
	}
	// The list survives a restart (crl.pem).
	dir := s.Dir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := simtest.StartIn(t, dir)
	if list2, err := s2.Client().CARevocations(t.Context()); err != nil || len(list2.Revocations) != 2 {
		t.Errorf("after restart: %+v, %v; want 2 revocations", list2, err)
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && cmp.Equal(x, y)
}
