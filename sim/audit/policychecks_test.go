package audit_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

const arn = "arn:aws:iot:us-east-1:123456789012:"

// doc builds a policy document from statements written as JSON objects.
func doc(t *testing.T, statements ...string) *policy.Document {
	t.Helper()
	d, err := policy.Parse(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func allow(action, resource string) string {
	return `{"Effect":"Allow","Action":"` + action + `","Resource":"` + resource + `"}`
}

func deny(action, resource string) string {
	return `{"Effect":"Deny","Action":"` + action + `","Resource":"` + resource + `"}`
}

func TestOverlyPermissive(t *testing.T) {
	attached := `{"Effect":"Allow","Action":"iot:Connect","Resource":"` + arn + `client/${iot:ClientId}","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}`
	tests := []struct {
		name       string
		statements []string
		want       []string
	}{
		{"everything", []string{allow("iot:*", "*")}, []string{"iot:Connect on *", "iot:Publish on *", "iot:Subscribe on *",
			"iot:GetThingShadow on *", "iot:UpdateThingShadow on *", "iot:DeleteThingShadow on *", "iot:DescribeJobExecution on *",
			"iot:GetPendingJobExecutions on *", "iot:UpdateJobExecution on *", "iot:StartNextPendingJobExecution on *"}},
		{"connect any client", []string{allow("iot:Connect", arn+"client/*")}, []string{"iot:Connect on " + arn + "client/*"}},
		{"connect as client id without attachment", []string{allow("iot:Connect", arn+"client/${iot:ClientId}")},
			[]string{"iot:Connect on " + arn + "client/${iot:ClientId}"}},
		{"connect as client id attached", []string{attached}, nil},
		{"connect as thing", []string{allow("iot:Connect", arn+"client/${iot:Connection.Thing.ThingName}")}, nil},
		{"connect with a prefix", []string{allow("iot:Connect", arn+"client/sensor-*")}, nil},
		{"publish any shadow update", []string{allow("iot:Publish", arn+"topic/$aws/things/*/shadow/update")},
			[]string{"iot:Publish on " + arn + "topic/$aws/things/*/shadow/update"}},
		{"publish every thing topic", []string{allow("iot:Publish", arn+"topic/$aws/things/*")}, []string{"iot:Publish on " + arn + "topic/$aws/things/*"}},
		{"publish own shadow", []string{allow("iot:Publish", arn+"topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*")}, nil},
		{"publish with a thing prefix", []string{allow("iot:Publish", arn+"topic/$aws/things/MyThing*/shadow/update")}, nil},
		{"publish + is literal", []string{allow("iot:Publish", arn+"topic/$aws/things/+/shadow/update")}, nil},
		{"subscribe every thing", []string{allow("iot:Subscribe", arn+"topicfilter/$aws/things/*")}, []string{"iot:Subscribe on " + arn + "topicfilter/$aws/things/*"}},
		{"subscribe #", []string{allow("iot:Subscribe", arn+"topicfilter/$aws/things/#")}, []string{"iot:Subscribe on " + arn + "topicfilter/$aws/things/#"}},
		{"subscribe +", []string{allow("iot:Subscribe", arn+"topicfilter/$aws/things/+/shadow/update")},
			[]string{"iot:Subscribe on " + arn + "topicfilter/$aws/things/+/shadow/update"}},
		{"receive every thing is fine", []string{allow("iot:Receive", arn+"topic/$aws/things/*")}, nil},
		{"shadow API on any thing", []string{allow("iot:UpdateThingShadow", arn+"thing/*")}, []string{"iot:UpdateThingShadow on " + arn + "thing/*"}},
		{"shadow API on a prefix", []string{allow("iot:GetThingShadow", arn+"thing/MyThing*")}, nil},
		{"deny is never permissive", []string{deny("iot:*", "*")}, nil},
		{"thingd-device", nil, nil},
		{"thingd-gateway", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d *policy.Document
			switch tt.name {
			case "thingd-device":
				d = parsed(t, policy.DevicePolicy(registry.Region, registry.AccountID))
			case "thingd-gateway":
				d = parsed(t, policy.GatewayPolicy(registry.Region, registry.AccountID))
			default:
				d = doc(t, tt.statements...)
			}
			if diff := cmp.Diff(tt.want, audit.OverlyPermissive(d)); diff != "" {
				t.Errorf("OverlyPermissive(%s) (-want +got):\n%s", tt.statements, diff)
			}
		})
	}
}

func parsed(t *testing.T, document string) *policy.Document {
	t.Helper()
	d, err := policy.Parse(document)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMisconfigured(t *testing.T) {
	tests := []struct {
		name       string
		statements []string
		want       []string // reason codes
	}{
		{"mqtt wildcard in deny filter", []string{allow("iot:*", "*"), deny("iot:Subscribe", arn+"topicfilter/building/control_room/#")},
			[]string{audit.ReasonMQTTWildcardsInDeny}},
		{"mqtt wildcard in deny topic", []string{deny("iot:Publish", arn+"topic/building/+/data")}, []string{audit.ReasonMQTTWildcardsInDeny}},
		{"denied filter reachable through a wildcard", []string{
			allow("iot:Subscribe", arn+"topicfilter/building/*"), deny("iot:Subscribe", arn+"topicfilter/building/control_room")},
			[]string{audit.ReasonDenyBypassedWithWildcard}},
		{"denied filter and receive", []string{
			allow("iot:Subscribe", arn+"topicfilter/building/*"), allow("iot:Receive", arn+"topic/*"),
			deny("iot:Subscribe", arn+"topicfilter/building/control_room"), deny("iot:Receive", arn+"topic/building/control_room")}, nil},
		{"denied filter, only exact filters allowed", []string{
			allow("iot:Subscribe", arn+"topicfilter/building/lobby"), deny("iot:Subscribe", arn+"topicfilter/building/control_room")}, nil},
		{"IAM wildcard deny", []string{allow("iot:*", "*"), deny("iot:Subscribe", arn+"topicfilter/building/*")}, nil},
		{"no deny", []string{allow("iot:Subscribe", arn+"topicfilter/building/#")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range audit.Misconfigured(doc(t, tt.statements...)) {
				got = append(got, f.Code)
				if f.Detail == "" {
					t.Errorf("finding %s without detail", f.Code)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Misconfigured(%s) (-want +got):\n%s", tt.statements, diff)
			}
		})
	}
}
