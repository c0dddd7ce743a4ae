package sim_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

// dialPolicyDevice connects as d with an inbox for everything it receives,
// without the barrier subscription of dialDevice (which a least-privilege
// policy refuses).
func dialPolicyDevice(t *testing.T, s *simtest.Sim, d simtest.Device) *device {
	t.Helper()
	in := &inbox{notify: make(chan struct{}, 1)}
	c, err := dial(t, s, d.Name, &d.TLSCertificate, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(in.add) })
	if err != nil {
		t.Fatalf("connect as %s: %v", d.Name, err)
	}
	return &device{conn: c, name: d.Name, in: in}
}

// subscribeCodes subscribes to filters in one SUBSCRIBE and returns the
// SUBACK code of each (QoS 1 granted: 1; refused: 0x80).
func (d *device) subscribeCodes(t *testing.T, filters ...string) []byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := d.SubscribeMultiple(m, d.in.add)
	wait(t, tok, "subscribe")
	res := tok.(*paho.SubscribeToken).Result()
	codes := make([]byte, len(filters))
	for i, f := range filters {
		codes[i] = res[f]
	}
	return codes
}

// expectNothing checks that no message on topic arrived.
func (d *device) expectNothing(t *testing.T, topic string) {
	t.Helper()
	if m, ok := d.in.take(func(m received) bool { return m.topic == topic }, 0); ok {
		t.Errorf("%s received %s: %s", d.name, m.topic, m.payload)
	}
}

// expect waits for a message on topic.
func (d *device) expect(t *testing.T, topic string) received {
	t.Helper()
	m, ok := d.in.take(func(m received) bool { return m.topic == topic }, 5*time.Second)
	if !ok {
		t.Fatalf("%s did not receive %s", d.name, topic)
	}
	return m
}

func shadowMissing(t *testing.T, s *simtest.Sim, thing string) bool {
	t.Helper()
	_, err := s.Client().GetThingShadow(t.Context(), thing, "")
	var e *api.Error
	return errors.As(err, &e) && e.Type == api.ErrResourceNotFound
}

const granted, refused = 1, 0x80

func policyJSON(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

func stmt(effect, actions string, resources ...string) string {
	for i, r := range resources {
		kind, name, _ := strings.Cut(r, ":")
		resources[i] = `"` + broker.ResourceARN(kind, name) + `"`
	}
	return `{"Effect":"` + effect + `","Action":[` + actions + `],"Resource":[` + strings.Join(resources, ",") + `]}`
}

// Under the built-in device policy, a thing uses its own Shadow, Jobs and
// provisioning topics and nothing of another thing's.
func TestPolicyDeviceMatrix(t *testing.T) {
	s := simtest.Start(t)
	devA := s.NewPolicyDevice(t, "dev-a")
	devB := s.NewPolicyDevice(t, "dev-b")
	if got := s.AttachedPolicies(t, devA.CertificateID); !slices.Equal(got, []string{policy.DevicePolicyName}) {
		t.Fatalf("policies of a new certificate = %q, want the built-in device policy", got)
	}

	t.Run("cannot connect as another thing", func(t *testing.T) {
		if c, err := dial(t, s, "dev-b", &devA.TLSCertificate); err == nil {
			c.Disconnect(0)
			t.Fatal("dev-a's certificate connected as dev-b")
		}
		s.WaitLog(t, "connection refused", "clientId=dev-b", "certificateId="+devA.CertificateID)
	})

	a := dialPolicyDevice(t, s, devA)
	b := dialPolicyDevice(t, s, devB)

	t.Run("subscribe: own topics only", func(t *testing.T) {
		filters := []string{
			shadowTopic("dev-a", "", "update/accepted"), jobsTopic("dev-a", "notify-next"),
			"$aws/certificates/create-from-csr/json/+", "$aws/provisioning-templates/thingd-rotation/provision/json/accepted",
			shadowTopic("dev-b", "", "update/accepted"), jobsTopic("dev-b", "notify-next"),
			"$aws/things/+/shadow/update/accepted", "$aws/things/dev-a/#", "#", "dev-a/telemetry",
		}
		want := []byte{granted, granted, granted, granted, refused, refused, refused, refused, refused, refused}
		if diff := cmp.Diff(want, a.subscribeCodes(t, filters...)); diff != "" {
			t.Errorf("SUBACK codes for %q (-want +got):\n%s", filters, diff)
		}
		s.WaitLog(t, "subscription refused", "clientId=dev-a", "topicfilter=#", `reason="no statement allowed"`)
	})

	t.Run("own shadow and jobs work", func(t *testing.T) {
		if suffix, reply := a.request(t, shadowTopic("dev-a", "", "update"), `{"state":{"reported":{"ok":true}}}`); suffix != "accepted" {
			t.Fatalf("own shadow update: %s %s", suffix, reply)
		}
		if suffix, reply := a.request(t, jobsTopic("dev-a", "get"), `{}`); suffix != "accepted" {
			t.Fatalf("own jobs get: %s %s", suffix, reply)
		}
	})

	t.Run("cannot receive another thing's messages", func(t *testing.T) {
		// A may subscribe to every thing's accepted updates, but receive
		// its own only. B's update is published before A's own: A gets its
		// own accepted and never B's.
		s.CreatePolicy(t, "subscribe-anything", policyJSON(stmt("Allow", `"iot:Subscribe"`, "topicfilter:*")))
		s.AttachPolicy(t, "subscribe-anything", devA.CertificateID)
		defer s.DetachPolicy(t, "subscribe-anything", devA.CertificateID)
		if code := a.subscribeCodes(t, "$aws/things/+/shadow/update/accepted"); code[0] != granted {
			t.Fatalf("SUBACK %#x with subscribe-anything", code[0])
		}
		s.UpdateDesired(t, "dev-b", "", `{"x":1}`)
		a.publish(t, shadowTopic("dev-a", "", "update"), `{"state":{"reported":{"n":2}}}`)
		a.expect(t, shadowTopic("dev-a", "", "update/accepted"))
		a.expectNothing(t, shadowTopic("dev-b", "", "update/accepted"))
		s.WaitLog(t, "delivery withheld", "clientId=dev-a", "topic=$aws/things/dev-b/shadow/update/accepted", `reason="no statement allowed"`)
	})

	t.Run("QoS 0 publish to another thing is dropped", func(t *testing.T) {
		a.Publish(jobsTopic("dev-b", "get"), 0, false, `{}`).Wait()
		a.Publish(shadowTopic("dev-b", "", "update"), 0, false, `{"state":{"reported":{"evil":true}}}`).Wait()
		s.WaitLog(t, "publish refused", "clientId=dev-a", "topic=$aws/things/dev-b/shadow/update", `reason="no statement allowed"`)
		if !a.IsConnectionOpen() {
			t.Error("a refused QoS 0 publish closed the connection")
		}
		s.WaitReported(t, "dev-b", "", time.Second, func(r map[string]any) bool { return r == nil })
	})

	t.Run("QoS 1 publish to another thing disconnects", func(t *testing.T) {
		a.Publish(shadowTopic("dev-b", "", "update"), 1, false, `{"state":{"reported":{"evil":true}}}`)
		a.waitLost(t)
		s.WaitReported(t, "dev-b", "", time.Second, func(r map[string]any) bool { return r == nil })
		if _, ok := b.in.take(func(m received) bool { return true }, 0); ok {
			t.Error("dev-b received something from dev-a")
		}
	})

	t.Run("retained publish is refused", func(t *testing.T) {
		a := dialPolicyDevice(t, s, devA)
		a.Publish(shadowTopic("dev-a", "", "update"), 1, true, `{"state":{"reported":{"r":1}}}`)
		a.waitLost(t)
		s.WaitLog(t, "retained publish refused", "clientId=dev-a", "action=iot:RetainPublish")
	})

	t.Run("rotation keeps the policies", func(t *testing.T) {
		a := dialPolicyDevice(t, s, devA)
		n := rotate(t, a, "dev-a")
		if got := s.AttachedPolicies(t, n.CertificateID); !slices.Equal(got, []string{policy.DevicePolicyName}) {
			t.Errorf("policies of the rotated certificate = %q, want the caller's", got)
		}
		rotated := simtest.Device{Name: "dev-a", CertificateID: n.CertificateID, TLSCertificate: *n.tlsCertificate(t)}
		r := dialPolicyDevice(t, s, rotated)
		if suffix, reply := r.request(t, jobsTopic("dev-a", "get"), `{}`); suffix != "accepted" {
			t.Fatalf("jobs get with the new certificate: %s %s", suffix, reply)
		}
	})
}

// Connect is checked after admission: a policy that does not allow the
// ClientID refuses the connection.
func TestPolicyConnect(t *testing.T) {
	s := simtest.Start(t)
	s.CreatePolicy(t, "other-client", policyJSON(stmt("Allow", `"iot:Connect"`, "client:someone-else")))
	d := s.NewPolicyDevice(t, "dev1", "other-client")
	if c, err := dial(t, s, "dev1", &d.TLSCertificate); err == nil {
		c.Disconnect(0)
		t.Fatal("connection allowed without iot:Connect")
	} else if !strings.Contains(err.Error(), "not Authorized") {
		t.Errorf("connect error %v, want not authorized", err)
	}
	s.WaitLog(t, "connection refused", "rule=policy-denied", "clientId=dev1")
	s.WaitLog(t, "connect refused", "client=dev1", `reason="no statement allowed"`)
	conns, err := s.Client().Connections(t.Context())
	if err != nil || len(conns.Connections) == 0 || conns.Connections[len(conns.Connections)-1].Refused != "policy-denied" {
		t.Errorf("connection history = %+v, %v; want the refusal recorded", conns, err)
	}

	// Policies changed take effect at once.
	s.AttachPolicy(t, policy.DevicePolicyName, d.CertificateID)
	c, err := dial(t, s, "dev1", &d.TLSCertificate)
	if err != nil {
		t.Fatalf("connect with the device policy attached: %v", err)
	}
	c.Disconnect(0)
}

// + and # are literal in policies, * spans levels, and an explicit deny
// on Receive stops delivery to an allowed subscription.
func TestPolicyWildcardsAndDeny(t *testing.T) {
	s := simtest.Start(t)
	s.CreatePolicy(t, "lab", policyJSON(
		stmt("Allow", `"iot:Connect"`, "client:*"),
		stmt("Allow", `"iot:Subscribe"`, "topicfilter:lab/+/c", "topicfilter:lab/secret/*"),
		stmt("Allow", `"iot:Publish","iot:Receive"`, "topic:lab/*"),
		stmt("Deny", `"iot:Receive"`, "topic:lab/secret/*"),
	))
	d := dialPolicyDevice(t, s, s.NewPolicyDevice(t, "lab1", "lab"))
	filters := []string{"lab/+/c", "lab/b/c", "lab/#", "lab/secret/#"}
	if diff := cmp.Diff([]byte{granted, refused, refused, granted}, d.subscribeCodes(t, filters...)); diff != "" {
		t.Errorf("SUBACK codes for %q (-want +got):\n%s", filters, diff)
	}
	d.publish(t, "lab/secret/plans", "x")
	d.publish(t, "lab/x/c", "y")
	d.expect(t, "lab/x/c")
	d.expectNothing(t, "lab/secret/plans")
	s.WaitLog(t, "delivery withheld", "clientId=lab1", "topic=lab/secret/plans", "explicitly denied by policy lab version 1, statement 4")
}

// The gateway policy lets gw update the shadows of gw-* and nothing else
// (not other-*, not the jobs of gw-*).
func TestPolicyGateway(t *testing.T) {
	s := simtest.Start(t)
	for _, thing := range []string{"gw-1", "other", "other-1"} {
		if _, err := s.Client().CreateThing(t.Context(), thing, nil); err != nil {
			t.Fatal(err)
		}
	}
	gw := dialPolicyDevice(t, s, s.NewPolicyDevice(t, "gw", policy.GatewayPolicyName))
	filters := []string{shadowTopic("gw-1", "", "update/accepted"), shadowTopic("gw", "", "update/accepted"),
		shadowTopic("other", "", "update/accepted"), shadowTopic("other-1", "", "update/accepted"),
		"$aws/things/gw-1/shadow/+/+", "$aws/things/other-1/shadow/+/+", "$aws/things/+/shadow/+/+",
		"$aws/things/gw-1/jobs/notify-next"}
	if diff := cmp.Diff([]byte{granted, granted, refused, refused, granted, refused, refused, refused}, gw.subscribeCodes(t, filters...)); diff != "" {
		t.Errorf("SUBACK codes for %q (-want +got):\n%s", filters, diff)
	}
	if suffix, reply := gw.request(t, shadowTopic("gw-1", "", "update"), `{"state":{"reported":{"temp":21}}}`); suffix != "accepted" {
		t.Fatalf("gw updating gw-1's shadow: %s %s", suffix, reply)
	}
	s.WaitReported(t, "gw-1", "", time.Second, func(r map[string]any) bool { return r["temp"] == 21.0 })
	gw.Publish(shadowTopic("other", "", "update"), 0, false, `{"state":{"reported":{"temp":99}}}`).Wait()
	s.WaitLog(t, "publish refused", "clientId=gw", "topic=$aws/things/other/shadow/update")
	if !shadowMissing(t, s, "other") {
		t.Error("gw updated the shadow of other")
	}
	gw.Publish(shadowTopic("other-1", "", "update"), 0, false, `{"state":{"reported":{"temp":99}}}`).Wait()
	s.WaitLog(t, "publish refused", "clientId=gw", "topic=$aws/things/other-1/shadow/update")
	if !shadowMissing(t, s, "other-1") {
		t.Error("gw updated the shadow of other-1")
	}
	gw.Publish("gw-1/telemetry", 1, false, "x")
	gw.waitLost(t)
}

// Variables resolve from the connection's thing and certificate, and a
// thing group's policy applies to its things.
func TestPolicyVariablesAndGroups(t *testing.T) {
	s := simtest.Start(t)
	if _, err := s.Client().CreateThing(t.Context(), "dev1", map[string]string{"site": "paris"}); err != nil {
		t.Fatal(err)
	}
	s.CreatePolicy(t, "sites", policyJSON(
		stmt("Allow", `"iot:Connect"`, "client:${iot:Certificate.Subject.CommonName}"),
		stmt("Allow", `"iot:Subscribe"`, "topicfilter:sites/${iot:Connection.Thing.Attributes[site]}/*"),
	))
	s.CreateThingGroup(t, "sited")
	s.AttachGroupPolicy(t, "sites", "sited")
	d := s.NewDevice(t, "dev1") // no certificate policy: open mode until in the group
	c := dialPolicyDevice(t, s, d)
	if diff := cmp.Diff([]byte{granted, granted}, c.subscribeCodes(t, "sites/lyon/#", "#")); diff != "" {
		t.Errorf("open mode SUBACK codes (-want +got):\n%s", diff)
	}
	s.AddThingToThingGroup(t, "sited", "dev1")
	if diff := cmp.Diff([]byte{granted, refused, refused}, c.subscribeCodes(t, "sites/paris/#", "sites/lyon/#", "#")); diff != "" {
		t.Errorf("with the group policy, SUBACK codes (-want +got):\n%s", diff)
	}
	res := s.TestAuthorization(t, d.CertificateID, "", "SUBSCRIBE", broker.ResourceARN("topicfilter", "sites/paris/+"))
	if res.AuthDecision != policy.Allowed || len(res.Explanation) != 1 ||
		!slices.Contains(res.Explanation[0].Variables, api.PolicyVariable{Name: "iot:Connection.Thing.Attributes[site]", Value: "paris", Resolved: true}) ||
		res.Explanation[0].InForce[0].Target != registry.ThingGroupARN("sited") {
		out, _ := json.MarshalIndent(res, "", "  ")
		t.Errorf("TestAuthorization:\n%s", out)
	}
}

// Every client reads the lifecycle events unless StrictLifecycleEvents.
func TestPolicyLifecycleEvents(t *testing.T) {
	for _, strict := range []bool{false, true} {
		s := simtest.StartWith(t, sim.Options{StrictLifecycleEvents: strict})
		d := dialPolicyDevice(t, s, s.NewPolicyDevice(t, "dev1"))
		want := []byte{granted}
		if strict {
			want = []byte{refused}
		}
		if diff := cmp.Diff(want, d.subscribeCodes(t, "$aws/events/presence/#")); diff != "" {
			t.Errorf("strict %v: SUBACK (-want +got):\n%s", strict, diff)
		}
		other := s.NewPolicyDevice(t, "dev2")
		mustDial(t, s, other)
		if _, ok := d.in.take(func(m received) bool { return m.topic == broker.PresenceTopic("connected", "dev2") }, time.Second); ok == strict {
			t.Errorf("strict %v: connected event for dev2 received: %v", strict, ok)
		}
	}
}
