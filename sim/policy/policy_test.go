package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/policy"
)

const (
	region  = "us-east-1"
	account = "123456789012"
)

func arn(kind, name string) string { return policy.ARN(region, account, kind, name) }

// doc builds a 2012-10-17 document from statement JSON objects.
func doc(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

func named(t *testing.T, name, text string) policy.Named {
	t.Helper()
	d, err := policy.Parse(text)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", name, err, text)
	}
	return policy.Named{Name: name, Version: "1", Document: d}
}

// thing is the context of a client connected as the thing name, its
// certificate attached to it, with CN = name.
func thing(name string, attrs map[string]string) policy.Context {
	return policy.Context{ClientID: name, CertificateID: "cert-" + name,
		Thing:       &policy.Thing{Name: name, Attributes: attrs},
		Certificate: map[string][]string{"Subject.CommonName": {name}}}
}

type check struct {
	name     string
	ctx      policy.Context
	action   string
	resource string
	want     string // policy.Allowed, ExplicitDeny or ImplicitDeny
}

func runChecks(t *testing.T, policies []policy.Named, checks []check) {
	t.Helper()
	for _, c := range checks {
		d := policy.Evaluate(policies, policy.Request{Action: c.action, Resource: c.resource, Context: c.ctx})
		if d.Result != c.want || d.Allowed != (c.want == policy.Allowed) {
			t.Errorf("%s: %s %s as %q = %s (%s), want %s", c.name, c.action, c.resource, c.ctx.ClientID, d.Result, d.Reason(), c.want)
		}
	}
}

// The built-in device policy confines a thing to its own topics.
func TestDevicePolicy(t *testing.T) {
	ps := []policy.Named{named(t, policy.DevicePolicyName, policy.DevicePolicy(region, account))}
	a := thing("dev-a", nil)
	notAttached := policy.Context{ClientID: "dev-a", CertificateID: "cert-x"}
	asB := policy.Context{ClientID: "dev-b", CertificateID: "cert-dev-a"} // A's certificate is not attached to dev-b
	const (
		pub, sub, recv, conn = policy.ActionPublish, policy.ActionSubscribe, policy.ActionReceive, policy.ActionConnect
		allow, deny          = policy.Allowed, policy.ImplicitDeny
	)
	runChecks(t, ps, []check{
		{"connect as itself", a, conn, arn("client", "dev-a"), allow},
		{"connect as another thing", asB, conn, arn("client", "dev-b"), deny},
		{"connect with the certificate not attached", notAttached, conn, arn("client", "dev-a"), deny},
		{"own shadow update", a, pub, arn("topic", "$aws/things/dev-a/shadow/update"), allow},
		{"own named shadow", a, pub, arn("topic", "$aws/things/dev-a/shadow/name/cfg/update"), allow},
		{"own jobs", a, pub, arn("topic", "$aws/things/dev-a/jobs/$next/get"), allow},
		{"B's shadow", a, pub, arn("topic", "$aws/things/dev-b/shadow/update"), deny},
		{"B's jobs", a, pub, arn("topic", "$aws/things/dev-b/jobs/get"), deny},
		{"a prefix of its name", a, pub, arn("topic", "$aws/things/dev-a2/shadow/update"), deny},
		{"own tunnels", a, pub, arn("topic", "$aws/things/dev-a/tunnels/notify"), deny},
		{"shadow without a slash", a, pub, arn("topic", "$aws/things/dev-a/shadowy"), deny},
		{"CreateCertificateFromCsr", a, pub, arn("topic", "$aws/certificates/create-from-csr/json"), allow},
		{"CreateCertificateFromCsr reply", a, recv, arn("topic", "$aws/certificates/create-from-csr/json/accepted"), allow},
		{"CreateKeysAndCertificate", a, pub, arn("topic", "$aws/certificates/create/json"), deny},
		{"RegisterThing", a, pub, arn("topic", "$aws/provisioning-templates/thingd-rotation/provision/json"), allow},
		{"another template", a, pub, arn("topic", "$aws/provisioning-templates/other/provision/json"), deny},
		{"receive own accepted", a, recv, arn("topic", "$aws/things/dev-a/shadow/update/accepted"), allow},
		{"receive B's accepted", a, recv, arn("topic", "$aws/things/dev-b/shadow/update/accepted"), deny},
		{"subscribe own replies", a, sub, arn("topicfilter", "$aws/things/dev-a/shadow/update/+"), allow},
		{"subscribe own jobs #", a, sub, arn("topicfilter", "$aws/things/dev-a/jobs/#"), allow},
		{"subscribe B's replies", a, sub, arn("topicfilter", "$aws/things/dev-b/shadow/update/accepted"), deny},
		{"subscribe every thing (+)", a, sub, arn("topicfilter", "$aws/things/+/shadow/update/accepted"), deny},
		{"subscribe #", a, sub, arn("topicfilter", "#"), deny},
		{"subscribe own thing #", a, sub, arn("topicfilter", "$aws/things/dev-a/#"), deny},
		{"subscribe with a topic ARN", a, sub, arn("topic", "$aws/things/dev-a/shadow/update"), deny},
		{"publish with a topicfilter ARN", a, pub, arn("topicfilter", "$aws/things/dev-a/shadow/update"), deny},
		{"retain", a, policy.ActionRetainPublish, arn("topic", "$aws/things/dev-a/shadow/update"), deny},
		{"own topics, not attached", notAttached, pub, arn("topic", "$aws/things/dev-a/shadow/update"), deny},
		{"another account", a, pub, policy.ARN(region, "999999999999", "topic", "$aws/things/dev-a/shadow/update"), deny},
	})
}

// The gateway policy lets gw act on the shadows of gw-* and nothing else.
func TestGatewayPolicy(t *testing.T) {
	ps := []policy.Named{named(t, policy.GatewayPolicyName, policy.GatewayPolicy(region, account))}
	gw, child := thing("gw", nil), thing("gw-1", nil)
	const pub, sub, allow, deny = policy.ActionPublish, policy.ActionSubscribe, policy.Allowed, policy.ImplicitDeny
	runChecks(t, ps, []check{
		{"connect as gw", gw, policy.ActionConnect, arn("client", "gw"), allow},
		{"connect as gw-1 with gw's certificate", policy.Context{ClientID: "gw-1"}, policy.ActionConnect, arn("client", "gw-1"), deny},
		{"own shadow", gw, pub, arn("topic", "$aws/things/gw/shadow/update"), allow},
		{"gw-1 shadow", gw, pub, arn("topic", "$aws/things/gw-1/shadow/update"), allow},
		{"gw-sensor named shadow", gw, pub, arn("topic", "$aws/things/gw-sensor/shadow/name/gw-sensor/update"), allow},
		{"own jobs", gw, pub, arn("topic", "$aws/things/gw/jobs/get"), allow},
		{"gw-1 jobs: not the children's jobs", gw, pub, arn("topic", "$aws/things/gw-1/jobs/get"), deny},
		{"subscribe gw-1 jobs", gw, sub, arn("topicfilter", "$aws/things/gw-1/jobs/notify-next"), deny},
		{"subscribe gw-1 replies", gw, sub, arn("topicfilter", "$aws/things/gw-1/shadow/update/accepted"), allow},
		{"gwx (no dash)", gw, pub, arn("topic", "$aws/things/gwx/shadow/update"), deny},
		{"another thing", gw, pub, arn("topic", "$aws/things/dev1/shadow/update"), deny},
		{"any topic", gw, pub, arn("topic", "gw-1/telemetry"), deny},
		{"gw-1 with the policy acts on gw-1-*", child, pub, arn("topic", "$aws/things/gw-1-a/shadow/update"), allow},
		{"gw-1 with the policy, not on gw-2", child, pub, arn("topic", "$aws/things/gw-2/shadow/update"), deny},
		{"gw-1 with the policy, not on gw", child, pub, arn("topic", "$aws/things/gw/shadow/update"), deny},
	})
}

// Wildcards are IAM's: * spans levels, ? is one character, + and # are
// plain characters; deny wins; no matching statement denies.
func TestMatching(t *testing.T) {
	ps := []policy.Named{named(t, "p", doc(
		`{"Effect":"Allow","Action":"iot:Subscribe","Resource":["`+arn("topicfilter", "a/+/c")+`","`+arn("topicfilter", "b/*")+`","`+arn("topicfilter", "q/???/x")+`"]}`,
		`{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["`+arn("topic", "a/#")+`","`+arn("topic", "building/*")+`"]}`,
		`{"Effect":"Deny","Action":"iot:Publish","Resource":"`+arn("topic", "building/control_room/#")+`"}`,
		`{"Effect":"Deny","Action":"iot:*","Resource":"`+arn("topic", "building/secret/*")+`"}`,
	))}
	c := thing("dev1", nil)
	const pub, sub, recv = policy.ActionPublish, policy.ActionSubscribe, policy.ActionReceive
	runChecks(t, ps, []check{
		{"+ is literal: exactly a/+/c", c, sub, arn("topicfilter", "a/+/c"), policy.Allowed},
		{"+ is literal: not a/b/c", c, sub, arn("topicfilter", "a/b/c"), policy.ImplicitDeny},
		{"* allows +", c, sub, arn("topicfilter", "b/+/x"), policy.Allowed},
		{"* allows # and several levels", c, sub, arn("topicfilter", "b/x/y/#"), policy.Allowed},
		{"* needs the prefix", c, sub, arn("topicfilter", "bb/x"), policy.ImplicitDeny},
		{"? is one character", c, sub, arn("topicfilter", "q/abc/x"), policy.Allowed},
		{"? is not two", c, sub, arn("topicfilter", "q/ab/x"), policy.ImplicitDeny},
		{"? is not a level", c, sub, arn("topicfilter", "q/a/b/x"), policy.Allowed},
		{"# is literal: not a/b", c, pub, arn("topic", "a/b"), policy.ImplicitDeny},
		{"# is literal: a/# itself", c, pub, arn("topic", "a/#"), policy.Allowed},
		{"a deny with # does not deny the subtopics", c, pub, arn("topic", "building/control_room/data1"), policy.Allowed},
		{"deny wins over allow", c, pub, arn("topic", "building/secret/plans"), policy.ExplicitDeny},
		{"deny wins for receive too", c, recv, arn("topic", "building/secret/plans"), policy.ExplicitDeny},
		{"receive allowed", c, recv, arn("topic", "building/lobby"), policy.Allowed},
		{"no statement: default deny", c, policy.ActionConnect, arn("client", "dev1"), policy.ImplicitDeny},
	})
	if d := policy.Evaluate(nil, policy.Request{Action: pub, Resource: arn("topic", "x"), Context: c}); d.Allowed || d.Result != policy.ImplicitDeny {
		t.Errorf("no policy at all: %s, want IMPLICIT_DENY", d.Result)
	}
}

// Decisions name the statements and explain themselves.
func TestDecisionReason(t *testing.T) {
	ps := []policy.Named{
		named(t, "open", doc(`{"Sid":"All","Effect":"Allow","Action":"iot:*","Resource":"*"}`)),
		named(t, "closed", doc(`{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}`, `{"Sid":"NoSecrets","Effect":"Deny","Action":"iot:Publish","Resource":"`+arn("topic", "secret")+`"}`)),
	}
	c := thing("dev1", nil)
	for _, tc := range []struct {
		resource, reason string
	}{
		{arn("topic", "secret"), `explicitly denied by policy closed version 1, statement 2 ("NoSecrets")`},
		{arn("topic", "public"), `allowed by policy open version 1, statement 1 ("All")`},
	} {
		d := policy.Evaluate(ps, policy.Request{Action: policy.ActionPublish, Resource: tc.resource, Context: c})
		if got := d.Reason(); got != tc.reason {
			t.Errorf("reason for %s = %q, want %q", tc.resource, got, tc.reason)
		}
	}
	d := policy.Evaluate(ps[1:], policy.Request{Action: policy.ActionPublish, Resource: arn("topic", "public"), Context: c})
	if d.Reason() != "no statement allowed" {
		t.Errorf("implicit deny reason = %q", d.Reason())
	}
}

// Policy variables resolve from the connection; unresolvable ones make
// their statement not match.
func TestVariables(t *testing.T) {
	c := policy.Context{ClientID: "dev1", CertificateID: "abc123", SourceIP: "10.0.0.7",
		Thing: &policy.Thing{Name: "dev1", TypeName: "sensor", Attributes: map[string]string{"site": "paris"}},
		Certificate: map[string][]string{
			"Subject.CommonName":   {"dev1"},
			"Subject.Organization": {"Acme", "Acme Labs"},
			"Issuer.CommonName":    {"thingsim CA"},
			"Subject.Title":        {"a+b"},
			"SerialNumber":         {"1234"},
		}}
	notThing := c
	notThing.Thing = nil
	allow := func(resource string) string {
		return doc(`{"Effect":"Allow","Action":"iot:Publish","Resource":"` + resource + `"}`)
	}
	for _, tc := range []struct {
		name     string
		resource string // policy resource (topic/ prefix added)
		ctx      policy.Context
		topic    string
		want     bool
	}{
		{"ClientId", "t/${iot:ClientId}", c, "t/dev1", true},
		{"ClientId of another", "t/${iot:ClientId}", c, "t/dev2", false},
		{"CertificateId", "t/${iot:CertificateId}", c, "t/abc123", true},
		{"ThingName", "t/${iot:Connection.Thing.ThingName}/x", c, "t/dev1/x", true},
		{"ThingName unresolvable", "t/${iot:Connection.Thing.ThingName}/x", notThing, "t/dev1/x", false},
		{"ThingTypeName", "t/${iot:Connection.Thing.ThingTypeName}", c, "t/sensor", true},
		{"attribute", "t/${iot:Connection.Thing.Attributes[site]}/*", c, "t/paris/a/b", true},
		{"missing attribute", "t/${iot:Connection.Thing.Attributes[floor]}", c, "t/", false},
		{"IsAttached", "t/${iot:Connection.Thing.IsAttached}", c, "t/true", true},
		{"IsAttached false", "t/${iot:Connection.Thing.IsAttached}", notThing, "t/false", true},
		{"Subject CN", "t/${iot:Certificate.Subject.CommonName}", c, "t/dev1", true},
		{"Issuer CN", "t/${iot:Certificate.Issuer.CommonName}", c, "t/thingsim CA", true},
		{"first value", "t/${iot:Certificate.Subject.Organization}", c, "t/Acme", true},
		{"second value", "t/${iot:Certificate.Subject.Organization.2}", c, "t/Acme Labs", true},
		{"index past the end", "t/${iot:Certificate.Subject.Organization.3}", c, "t/", false},
		{"serial", "t/${iot:Certificate.SerialNumber}", c, "t/1234", true},
		{"value with + is not substituted", "t/${iot:Certificate.Subject.Title}", c, "t/a+b", false},
		{"... the ${} text stays", "t/${iot:Certificate.Subject.Title}", c, "t/${iot:Certificate.Subject.Title}", true},
		{"SourceIp", "t/${aws:SourceIp}", c, "t/10.0.0.7", true},
		{"unknown variable", "t/${iot:Nope}", c, "t/", false},
		{"literal *", "t/${*}", c, "t/*", true},
		{"literal * is not a wildcard", "t/${*}", c, "t/x", false},
		{"literal ?", "t/${?}", c, "t/?", true},
		{"literal $", "t/${$}x", c, "t/$x", true},
		{"substituted * is literal", "t/${iot:ClientId}", policy.Context{ClientID: "a*"}, "t/abc", false},
	} {
		ps := []policy.Named{named(t, "p", allow(arn("topic", tc.resource)))}
		d := policy.Evaluate(ps, policy.Request{Action: policy.ActionPublish, Resource: arn("topic", tc.topic), Context: tc.ctx})
		if d.Allowed != tc.want {
			t.Errorf("%s: %s against %s = %v (%s, variables %+v), want %v", tc.name, tc.resource, tc.topic, d.Allowed, d.Reason(), d.Variables, tc.want)
		}
	}

	// Version 2008-10-17 has no variables: ${...} is text.
	old := `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"` + arn("topic", "t/${iot:ClientId}") + `"}}`
	ps := []policy.Named{named(t, "old", old)}
	for topic, want := range map[string]bool{"t/dev1": false, "t/${iot:ClientId}": true} {
		if d := policy.Evaluate(ps, policy.Request{Action: policy.ActionPublish, Resource: arn("topic", topic), Context: c}); d.Allowed != want {
			t.Errorf("2008-10-17 document on %s: allowed %v, want %v", topic, d.Allowed, want)
		}
	}

	// The decision reports the variables it met.
	ps = []policy.Named{named(t, "p", allow(arn("topic", "t/${iot:Connection.Thing.ThingName}/${iot:ClientId}")))}
	d := policy.Evaluate(ps, policy.Request{Action: policy.ActionPublish, Resource: arn("topic", "t/x"), Context: notThing})
	want := []policy.Variable{{Name: "iot:Connection.Thing.ThingName"}}
	if diff := cmp.Diff(want, d.Variables); diff != "" {
		t.Errorf("variables (-want +got):\n%s", diff)
	}
	// A deny statement with an unresolvable variable does not deny.
	ps = []policy.Named{named(t, "p", doc(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*"}`,
		`{"Effect":"Deny","Action":"iot:Publish","Resource":"`+arn("topic", "t/${iot:Connection.Thing.ThingName}")+`"}`))}
	if d := policy.Evaluate(ps, policy.Request{Action: policy.ActionPublish, Resource: arn("topic", "t/dev1"), Context: notThing}); !d.Allowed {
		t.Errorf("an unresolvable deny denied: %s", d.Reason())
	}
}

func TestConditionsAndNots(t *testing.T) {
	c := thing("dev1", map[string]string{"site": "paris-3"})
	c.SourceIP = "192.168.1.20"
	c.Certificate["Subject.Organization"] = []string{"Acme", "Labs"}
	connect := func(cond string) string {
		return doc(`{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":` + cond + `}`)
	}
	for _, tc := range []struct {
		name, cond string
		ctx        policy.Context
		want       bool
	}{
		{"IsAttached true", `{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}`, c, true},
		{"IsAttached false", `{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}`, policy.Context{ClientID: "dev1"}, false},
		{"StringEquals", `{"StringEquals":{"iot:ClientId":"dev1"}}`, c, true},
		{"StringNotEquals", `{"StringNotEquals":{"iot:ClientId":["dev1","dev2"]}}`, c, false},
		{"StringLike attribute", `{"StringLike":{"iot:Connection.Thing.Attributes[site]":"paris-*"}}`, c, true},
		{"StringLike with a variable", `{"StringLike":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}`, c, true},
		{"StringEqualsIgnoreCase", `{"StringEqualsIgnoreCase":{"iot:Certificate.Subject.CommonName":"DEV1"}}`, c, true},
		{"missing key", `{"StringEquals":{"iot:Connection.Thing.Attributes[floor]":"3"}}`, c, false},
		{"IfExists on a missing key", `{"StringEqualsIfExists":{"iot:Connection.Thing.Attributes[floor]":"3"}}`, c, true},
		{"Null", `{"Null":{"iot:Connection.Thing.Attributes[floor]":"true"}}`, c, true},
		{"ForAnyValue", `{"ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":"Labs"}}`, c, true},
		{"ForAllValues", `{"ForAllValues:StringEquals":{"iot:Certificate.Subject.Organization.List":"Labs"}}`, c, false},
		{"IpAddress", `{"IpAddress":{"aws:SourceIp":"192.168.1.0/24"}}`, c, true},
		{"NotIpAddress", `{"NotIpAddress":{"aws:SourceIp":"192.168.1.0/24"}}`, c, false},
		{"two operators", `{"Bool":{"iot:Connection.Thing.IsAttached":"true"},"StringEquals":{"iot:ClientId":"x"}}`, c, false},
	} {
		ps := []policy.Named{named(t, "p", connect(tc.cond))}
		if d := policy.Evaluate(ps, policy.Request{Action: policy.ActionConnect, Resource: arn("client", "dev1"), Context: tc.ctx}); d.Allowed != tc.want {
			t.Errorf("%s: allowed %v, want %v (%s)", tc.name, d.Allowed, tc.want, d.Reason())
		}
	}

	ps := []policy.Named{named(t, "p", doc(
		`{"Effect":"Allow","NotAction":"iot:Connect","NotResource":"`+arn("topic", "admin/*")+`"}`))}
	runChecks(t, ps, []check{
		{"NotResource allows elsewhere", c, policy.ActionPublish, arn("topic", "data/x"), policy.Allowed},
		{"NotResource excludes", c, policy.ActionPublish, arn("topic", "admin/x"), policy.ImplicitDeny},
		{"NotAction excludes", c, policy.ActionConnect, arn("client", "dev1"), policy.ImplicitDeny},
	})
}

func TestParse(t *testing.T) {
	big := doc(`{"Effect":"Allow","Action":"iot:Publish","Resource":"` + arn("topic", strings.Repeat("x", 2000)) + `"}`)
	spacious := `{"Version":"2012-10-17",` + strings.Repeat(" \n\t", 3000) + `"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}`
	for _, tc := range []struct {
		name, doc, err string // err "" means valid
	}{
		{"one statement object, string action", `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"iot:*","Resource":"*"}}`, ""},
		{"white space does not count", spacious, ""},
		{"too large", big, "more than the 2048 allowed"},
		{"not JSON", `{"Version":`, "not a policy"},
		{"no version", `{"Statement":[]}`, "Version is required"},
		{"bad version", `{"Version":"2020-01-01","Statement":[]}`, "Version"},
		{"no statement", `{"Version":"2012-10-17","Statement":[]}`, "no Statement"},
		{"bad effect", doc(`{"Effect":"Maybe","Action":"iot:*","Resource":"*"}`), "Effect"},
		{"no action", doc(`{"Effect":"Allow","Resource":"*"}`), "Action (or NotAction) is required"},
		{"both resources", doc(`{"Effect":"Allow","Action":"iot:*","Resource":"*","NotResource":"*"}`), "not both"},
		{"not an iot action", doc(`{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}`), "not an iot: action"},
		{"not an ARN", doc(`{"Effect":"Allow","Action":"iot:*","Resource":"topic/x"}`), "not an ARN"},
		{"unknown element", doc(`{"Effect":"Allow","Action":"iot:*","Resource":"*","Principal":"*"}`), "unknown field"},
		{"unknown operator", doc(`{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"NumericLessThan":{"x":"1"}}}`), "not supported"},
		{"action list of numbers", doc(`{"Effect":"Allow","Action":[1],"Resource":"*"}`), "string or a list"},
	} {
		_, err := policy.Parse(tc.doc)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		}
	}
	for _, d := range []string{policy.DevicePolicy(region, account), policy.GatewayPolicy(region, account)} {
		if n := policy.Size(d); n > policy.MaxDocumentChars {
			t.Errorf("built-in policy of %d characters over the limit", n)
		}
	}
}

func TestCertificateVariables(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4660),
		Subject: pkix.Name{CommonName: "dev1", Organization: []string{"Acme", "Labs"}, Country: []string{"FR"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 12}, Value: "gateway"}}},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"dev1.local"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"Subject.CommonName": {"dev1"}, "Subject.Organization": {"Acme", "Labs"}, "Subject.Country": {"FR"}, "Subject.Title": {"gateway"},
		"Issuer.CommonName": {"dev1"}, "Issuer.Organization": {"Acme", "Labs"}, "Issuer.Country": {"FR"}, "Issuer.Title": {"gateway"},
		"Subject.AlternativeName.DNSName": {"dev1.local"}, "Subject.AlternativeName.IPAddress": {"10.0.0.1"},
		"SerialNumber": {"4660"},
	}
	if diff := cmp.Diff(want, policy.CertificateVariables(cert)); diff != "" {
		t.Errorf("CertificateVariables (-want +got):\n%s", diff)
	}
}
