package api_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

// sensorsPolicy allows the thing's site topics and denies their admin
// subtopics; tag makes versions differ.
func sensorsPolicy(tag string) string {
	return `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"Site` + tag + `","Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"` + broker.ResourceARN("topic", "sensors/${iot:Connection.Thing.Attributes[site]}/*") + `"},` +
		`{"Sid":"NoAdmin","Effect":"Deny","Action":"iot:Publish","Resource":"` + broker.ResourceARN("topic", "sensors/*/admin") + `"}]}`
}

func authInfo(action string, resources ...string) api.TestAuthorizationRequest {
	return api.TestAuthorizationRequest{Principal: "CERTARN", AuthInfos: []api.AuthInfo{{ActionType: action, Resources: resources}}}
}

// TestPolicyGolden runs the policy operations in order and compares each
// answer with testdata/policy/NN-name.golden.
func TestPolicyGolden(t *testing.T) {
	srv, _, _ := newServer(t, func(o *api.Options) { o.DefaultPolicies = []string{policy.DevicePolicyName} })
	c := api.NewClient(srv.URL, token, nil)
	ctx := t.Context()
	if _, err := c.CreatePolicy(ctx, policy.DevicePolicyName, policy.DevicePolicy(registry.Region, registry.AccountID)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateThing(ctx, "dev1", map[string]string{"site": "paris"}); err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueThingCertificate(ctx, "dev1", csrPEM(t, "dev1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	placeholders := strings.NewReplacer(cert.CertificateID, "<certificateId>")
	tooLarge := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"` +
		broker.ResourceARN("topic", strings.Repeat("t", 2048)) + `"}}`
	doc := func(d string) api.PolicyDocumentRequest { return api.PolicyDocumentRequest{PolicyDocument: d} }
	target := func(arn string) api.PolicyTargetRequest { return api.PolicyTargetRequest{Target: arn} }
	shadowUpdate := func(thing string) string { return broker.ResourceARN("topic", "$aws/things/"+thing+"/shadow/update") }

	steps := []auditStep{
		{name: "list-attached-policies-default", method: "POST", path: "/attached-policies/CERTARN"},
		{name: "create-policy", method: "POST", path: "/policies/sensors", body: doc(sensorsPolicy("1"))},
		{name: "create-policy-exists", method: "POST", path: "/policies/sensors", body: doc(sensorsPolicy("1"))},
		{name: "create-policy-malformed", method: "POST", path: "/policies/bad", body: doc(`{"Version":"2012-10-17","Statement":{"Effect":"Allow"}}`)},
		{name: "create-policy-too-large", method: "POST", path: "/policies/big", body: doc(tooLarge)},
		{name: "create-policy-bad-name", method: "POST", path: "/policies/no%20spaces", body: doc(sensorsPolicy("1"))},
		{name: "create-policy-no-document", method: "POST", path: "/policies/empty"},
		{name: "get-policy", method: "GET", path: "/policies/sensors"},
		{name: "get-policy-missing", method: "GET", path: "/policies/nope"},
		{name: "list-policies", method: "GET", path: "/policies"},
		{name: "create-policy-version-2", method: "POST", path: "/policies/sensors/version", body: doc(sensorsPolicy("2"))},
		{name: "create-policy-version-3", method: "POST", path: "/policies/sensors/version?setAsDefault=true", body: doc(sensorsPolicy("3"))},
		{name: "create-policy-version-4", method: "POST", path: "/policies/sensors/version", body: doc(sensorsPolicy("4"))},
		{name: "create-policy-version-5", method: "POST", path: "/policies/sensors/version", body: doc(sensorsPolicy("5"))},
		{name: "create-policy-version-limit", method: "POST", path: "/policies/sensors/version", body: doc(sensorsPolicy("6"))},
		{name: "list-policy-versions", method: "GET", path: "/policies/sensors/version"},
		{name: "get-policy-version", method: "GET", path: "/policies/sensors/version/2"},
		{name: "get-policy-version-missing", method: "GET", path: "/policies/sensors/version/9"},
		{name: "get-policy-default-3", method: "GET", path: "/policies/sensors"},
		{name: "delete-policy-version-default", method: "DELETE", path: "/policies/sensors/version/3"},
		{name: "set-default-policy-version", method: "PATCH", path: "/policies/sensors/version/1"},
		{name: "delete-policy-version", method: "DELETE", path: "/policies/sensors/version/2"},
		{name: "list-policy-versions-after", method: "GET", path: "/policies/sensors/version"},
		{name: "attach-policy", method: "PUT", path: "/target-policies/sensors", body: target("CERTARN")},
		{name: "attach-policy-missing-certificate", method: "PUT", path: "/target-policies/sensors", body: target(registry.CertificateARN(strings.Repeat("0", 64)))},
		{name: "attach-policy-thing", method: "PUT", path: "/target-policies/sensors", body: target(registry.ThingARN("dev1"))},
		{name: "attach-policy-no-target", method: "PUT", path: "/target-policies/sensors"},
		{name: "list-attached-policies", method: "POST", path: "/attached-policies/CERTARN"},
		{name: "list-targets-for-policy", method: "POST", path: "/policy-targets/sensors"},
		{name: "test-authorization-allowed", method: "POST", path: "/test-authorization", body: authInfo("PUBLISH", shadowUpdate("dev1"))},
		{name: "test-authorization-other-thing", method: "POST", path: "/test-authorization", body: authInfo("SUBSCRIBE", broker.ResourceARN("topicfilter", "$aws/things/dev2/shadow/#"))},
		{name: "test-authorization-variables", method: "POST", path: "/test-authorization", body: authInfo("PUBLISH", broker.ResourceARN("topic", "sensors/paris/temp"))},
		{name: "test-authorization-explicit-deny", method: "POST", path: "/test-authorization", body: authInfo("PUBLISH", broker.ResourceARN("topic", "sensors/paris/temp"), broker.ResourceARN("topic", "sensors/paris/admin"))},
		{name: "test-authorization-connect-as-other", method: "POST", path: "/test-authorization?clientId=dev2", body: authInfo("CONNECT", broker.ResourceARN("client", "dev2"))},
		{name: "test-authorization-bad-action", method: "POST", path: "/test-authorization", body: authInfo("DANCE", shadowUpdate("dev1"))},
		{name: "delete-policy-attached", method: "DELETE", path: "/policies/sensors"},
		{name: "detach-policy", method: "POST", path: "/target-policies/sensors", body: target("CERTARN")},
		{name: "delete-policy-with-versions", method: "DELETE", path: "/policies/sensors"},
		{name: "delete-policy-version-3", method: "DELETE", path: "/policies/sensors/version/3"},
		{name: "delete-policy-version-4", method: "DELETE", path: "/policies/sensors/version/4"},
		{name: "delete-policy-version-5", method: "DELETE", path: "/policies/sensors/version/5"},
		{name: "delete-policy", method: "DELETE", path: "/policies/sensors"},
		{name: "list-policies-after", method: "GET", path: "/policies"},
	}
	for i, s := range steps {
		s.path = strings.ReplaceAll(s.path, "CERTARN", strings.ReplaceAll(cert.CertificateArn, "/", "%2F"))
		if r, ok := s.body.(api.TestAuthorizationRequest); ok {
			r.Principal = cert.CertificateArn
			s.body = r
		}
		if r, ok := s.body.(api.PolicyTargetRequest); ok && r.Target == "CERTARN" {
			s.body = target(cert.CertificateArn)
		}
		body := auditRequest(t, srv.URL, s)
		got := placeholders.Replace(fmt.Sprintf("%s %s\n\n%s", s.method, s.path, body))
		simtest.Golden(t, filepath.Join("testdata", "policy", fmt.Sprintf("%02d-%s.golden", i, s.name)), got, *update)
	}
}
