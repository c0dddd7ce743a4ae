package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/simtest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sitePolicy allows publishing to site/TAG/*.
func sitePolicy(tag string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"Site","Effect":"Allow","Action":"iot:Publish","Resource":%q}]}`,
		broker.ResourceARN("topic", "site/"+tag+"/*"))
}

func TestPolicyCommands(t *testing.T) {
	s := simtest.Start(t)
	dir := s.Dir()
	dev := s.NewPolicyDevice(t, "dev1")
	s.CreateThingGroup(t, "fleet")

	r := runCLI(t, "policy", "create", "site", "--dir", dir, "--document", writeFile(t, "v1.json", sitePolicy("v1"))).ok(t)
	var created api.CreatePolicyResponse
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.PolicyVersionID != "1" {
		t.Errorf("policy create printed %q (%v)", r.stdout, err)
	}
	r = runCLI(t, "policy", "list", "--dir", dir).ok(t)
	for _, name := range []string{"site", "thingd-device", "thingd-gateway"} {
		if !strings.Contains(r.stdout, `"policyName": "`+name+`"`) {
			t.Errorf("policy list does not show %s:\n%s", name, r.stdout)
		}
	}
	for i := 2; i <= 5; i++ {
		args := []string{"policy", "version", "create", "site", "--dir", dir, "--document", writeFile(t, "v.json", sitePolicy(fmt.Sprint("v", i)))}
		if i == 3 {
			args = append(args, "--set-default")
		}
		r = runCLI(t, args...).ok(t)
		if want := fmt.Sprintf(`"isDefaultVersion": %v`, i == 3); !strings.Contains(r.stdout, want) {
			t.Errorf("version create %d printed %s, want %s", i, r.stdout, want)
		}
	}
	r = runCLI(t, "policy", "get", "site", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"defaultVersionId": "3"`) || !strings.Contains(r.stdout, "site/v3/*") {
		t.Errorf("policy get after --set-default:\n%s", r.stdout)
	}
	runCLI(t, "policy", "version", "set-default", "site", "--version", "1", "--dir", dir).ok(t)
	r = runCLI(t, "policy", "version", "list", "site", "--dir", dir).ok(t)
	var versions api.ListPolicyVersionsResponse
	if err := json.Unmarshal([]byte(r.stdout), &versions); err != nil || len(versions.PolicyVersions) != 5 || !versions.PolicyVersions[0].IsDefaultVersion {
		t.Errorf("version list printed %s (%v); want 5 versions, 1 the default", r.stdout, err)
	}
	runCLI(t, "policy", "version", "delete", "site", "--version", "5", "--dir", dir).ok(t)
	r = runCLI(t, "policy", "version", "get", "site", "--version", "4", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, "site/v4/*") {
		t.Errorf("version get printed %s", r.stdout)
	}

	runCLI(t, "policy", "attach", "site", "--cert", dev.CertificateID, "--dir", dir).ok(t)
	runCLI(t, "policy", "attach", "site", "--group", "fleet", "--dir", dir).ok(t)
	r = runCLI(t, "policy", "attached", "--cert", dev.CertificateID, "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"policyName": "site"`) || !strings.Contains(r.stdout, `"policyName": "thingd-device"`) {
		t.Errorf("policy attached printed %s", r.stdout)
	}
	r = runCLI(t, "policy", "targets", "site", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, "thinggroup/fleet") || !strings.Contains(r.stdout, dev.CertificateID) {
		t.Errorf("policy targets printed %s", r.stdout)
	}

	certARN := "arn:aws:iot:us-east-1:123456789012:cert/" + dev.CertificateID
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--action", "publish", "--resource", "topic/$aws/things/dev1/shadow/update"}, `ALLOWED (ALLOWED): PUBLISH on arn:aws:iot:us-east-1:123456789012:topic/$aws/things/dev1/shadow/update
reason: allowed by policy thingd-device version 1, statement 2 ("PublishReceiveOwnTopics")
allowed by: policy thingd-device version 1, statement 2 (PublishReceiveOwnTopics)
policy in force: site version 1, attached to CERTARN
policy in force: thingd-device version 1, attached to CERTARN
variable ${iot:Connection.Thing.ThingName} = dev1
`},
		{[]string{"--action", "iot:Subscribe", "--resource", "topicfilter/$aws/things/+/shadow/#"}, `DENIED (IMPLICIT_DENY): SUBSCRIBE on arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/+/shadow/#
reason: no statement allowed
policy in force: site version 1, attached to CERTARN
policy in force: thingd-device version 1, attached to CERTARN
variable ${iot:Connection.Thing.ThingName} = dev1
`},
		{[]string{"--action", "CONNECT", "--resource", "client/dev2", "--client-id", "dev2"}, `DENIED (IMPLICIT_DENY): CONNECT on arn:aws:iot:us-east-1:123456789012:client/dev2
reason: no statement allowed
policy in force: site version 1, attached to CERTARN
policy in force: thingd-device version 1, attached to CERTARN
variable ${iot:Connection.Thing.ThingName} unresolved (its statements do not apply)
`},
		{[]string{"--action", "publish", "--resource", "topic/$aws/events/presence/connected/dev1"}, `DENIED (IMPLICIT_DENY): PUBLISH on arn:aws:iot:us-east-1:123456789012:topic/$aws/events/presence/connected/dev1
reason: $aws/events/ is reserved for the broker
decided by thingsim rule events-reserved
policies in force: none
`},
	} {
		r := runCLI(t, append([]string{"policy", "test", "--dir", dir, "--cert", dev.CertificateID}, tc.args...)...).ok(t)
		if diff := cmp.Diff(tc.want, strings.ReplaceAll(r.stdout, certARN, "CERTARN")); diff != "" {
			t.Errorf("policy test %q (-want +got):\n%s", tc.args, diff)
		}
	}
	r = runCLI(t, "policy", "test", "--dir", dir, "--cert", dev.CertificateID, "--action", "receive", "--resource", "topic/site/v1/x", "--json").ok(t)
	var resp api.TestAuthorizationResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.AuthResults[0].AuthDecision != "IMPLICIT_DENY" {
		t.Errorf("policy test --json printed %s (%v)", r.stdout, err)
	}

	runCLI(t, "policy", "detach", "site", "--cert", dev.CertificateID, "--dir", dir).ok(t)
	runCLI(t, "policy", "detach", "site", "--group", "fleet", "--dir", dir).ok(t)
	for _, v := range []string{"2", "3", "4"} {
		runCLI(t, "policy", "version", "delete", "site", "--version", v, "--dir", dir).ok(t)
	}
	runCLI(t, "policy", "delete", "site", "--dir", dir).ok(t)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"policy"}, 2, "needs a subcommand"},
		{[]string{"policy", "frob"}, 2, `unknown command "policy frob"`},
		{[]string{"policy", "version"}, 2, "needs a subcommand"},
		{[]string{"policy", "create", "x", "--dir", dir}, 2, "--document"},
		{[]string{"policy", "create", "x", "--dir", dir, "--document", writeFile(t, "bad.json", `{}`)}, 1, "MalformedPolicyException"},
		{[]string{"policy", "version", "set-default", "thingd-device", "--dir", dir}, 2, "--version"},
		{[]string{"policy", "attach", "thingd-device", "--dir", dir}, 2, "one of --cert and --group"},
		{[]string{"policy", "attach", "--cert", dev.CertificateID, "--dir", dir}, 2, "exactly one policy name"},
		{[]string{"policy", "get", "nope", "--dir", dir}, 1, "ResourceNotFoundException"},
		{[]string{"policy", "test", "--dir", dir, "--cert", dev.CertificateID}, 2, "--action and --resource"},
		{[]string{"policy", "test", "--dir", dir, "--cert", dev.CertificateID, "--action", "dance", "--resource", "topic/x"}, 1, "InvalidRequestException"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("thingsim %q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	// The version limit.
	for i := 2; i <= 6; i++ {
		r := runCLI(t, "policy", "version", "create", "thingd-gateway", "--dir", dir, "--document", writeFile(t, "v.json", sitePolicy("g")))
		if i < 6 && r.code != 0 || i == 6 && (r.code != 1 || !strings.Contains(r.stderr, "VersionsLimitExceededException")) {
			t.Errorf("version %d of thingd-gateway: exit %d, %s", i, r.code, r.stderr)
		}
	}
}
