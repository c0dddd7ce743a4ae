package registry_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// policyDoc is a valid document allowing publishing to topic.
func policyDoc(topic string) string {
	return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/` + topic + `"}]}`
}

func TestPolicyVersions(t *testing.T) {
	r, _ := open(t)
	p, err := r.CreatePolicy("p1", policyDoc("v1"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.ARN != "arn:aws:iot:us-east-1:123456789012:policy/p1" || p.DefaultVersionID != "1" || p.Document != policyDoc("v1") {
		t.Errorf("created policy = %+v", p)
	}
	_, err = r.CreatePolicy("p1", policyDoc("v1"), t0)
	wantErr(t, "create twice", err, registry.ErrAlreadyExists)
	_, err = r.CreatePolicy("bad name!", policyDoc("v1"), t0)
	wantErr(t, "bad name", err, registry.ErrInvalid)
	_, err = r.CreatePolicy("p2", `{"Version":"2012-10-17"}`, t0)
	wantErr(t, "malformed", err, registry.ErrMalformedPolicy)

	// Versions 2..5; the 6th is refused until one is deleted.
	for i := 2; i <= policy.MaxVersions; i++ {
		v, err := r.CreatePolicyVersion("p1", policyDoc(fmt.Sprint("v", i)), i == 3, t0)
		if err != nil {
			t.Fatal(err)
		}
		if v.VersionID != fmt.Sprint(i) || v.IsDefault != (i == 3) {
			t.Errorf("version %d = %+v", i, v)
		}
	}
	_, err = r.CreatePolicyVersion("p1", policyDoc("v6"), false, t0)
	wantErr(t, "6th version", err, registry.ErrVersionsLimitExceeded)
	_, err = r.CreatePolicyVersion("p1", "{}", false, t0)
	wantErr(t, "malformed version", err, registry.ErrMalformedPolicy)
	_, err = r.CreatePolicyVersion("nope", policyDoc("x"), false, t0)
	wantErr(t, "version of a missing policy", err, registry.ErrNotFound)

	if p, _ = r.Policy("p1"); p.DefaultVersionID != "3" || p.Document != policyDoc("v3") {
		t.Errorf("after setAsDefault: %+v", p)
	}
	wantErr(t, "delete the default version", r.DeletePolicyVersion("p1", "3", t0), registry.ErrDeleteConflict)
	wantErr(t, "delete a missing version", r.DeletePolicyVersion("p1", "9", t0), registry.ErrNotFound)
	wantErr(t, "delete a bad version id", r.DeletePolicyVersion("p1", "01", t0), registry.ErrInvalid)
	wantErr(t, "delete version 1", r.DeletePolicyVersion("p1", "1", t0), nil)
	v6, err := r.CreatePolicyVersion("p1", policyDoc("v6"), false, t0)
	if err != nil || v6.VersionID != "6" {
		t.Fatalf("version after a deletion = %+v, %v; want id 6 (ids are not reused)", v6, err)
	}
	wantErr(t, "set default", r.SetDefaultPolicyVersion("p1", "6", t0), nil)
	wantErr(t, "set a missing default", r.SetDefaultPolicyVersion("p1", "1", t0), registry.ErrNotFound)

	vs, err := r.PolicyVersions("p1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%s%s", v.VersionID, map[bool]string{true: "*"}[v.IsDefault]))
	}
	if diff := cmp.Diff([]string{"2", "3", "4", "5", "6*"}, got); diff != "" {
		t.Errorf("versions, default starred (-want +got):\n%s", diff)
	}
	if v, err := r.PolicyVersion("p1", "4"); err != nil || v.Document != policyDoc("v4") || v.IsDefault {
		t.Errorf("PolicyVersion(p1, 4) = %+v, %v", v, err)
	}

	// DeletePolicy needs the non-default versions gone.
	wantErr(t, "delete a policy with versions", r.DeletePolicy("p1"), registry.ErrDeleteConflict)
	for _, id := range []string{"2", "3", "4", "5"} {
		wantErr(t, "delete version "+id, r.DeletePolicyVersion("p1", id, t0), nil)
	}
	wantErr(t, "delete the policy", r.DeletePolicy("p1"), nil)
	_, err = r.Policy("p1")
	wantErr(t, "deleted policy", err, registry.ErrNotFound)
	if ps, err := r.Policies(); err != nil || len(ps) != 0 {
		t.Errorf("policies after delete = %v, %v", ps, err)
	}
}

func TestPolicyAttachments(t *testing.T) {
	r, _ := open(t)
	mustThing(t, r, "dev1")
	c1 := addCert(t, r, "c1", registry.StatusActive, t0)
	c2 := addCert(t, r, "c2", registry.StatusActive, t0)
	if err := r.AttachPrincipal("dev1", c1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.CreateThingGroup("fleet", "", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddThingToGroup("fleet", "dev1"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "g"} {
		if _, err := r.CreatePolicy(name, policyDoc(name), t0); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "attach a to c1", r.AttachPolicy("a", registry.CertificateARN(c1)), nil)
	wantErr(t, "attach b to c1 by id", r.AttachPolicy("b", c1), nil)
	wantErr(t, "attach a twice", r.AttachPolicy("a", registry.CertificateARN(c1)), nil)
	wantErr(t, "attach g to the group", r.AttachPolicy("g", registry.ThingGroupARN("fleet")), nil)
	wantErr(t, "attach a to the group", r.AttachPolicy("a", registry.ThingGroupARN("fleet")), nil)
	wantErr(t, "attach a missing policy", r.AttachPolicy("nope", c1), registry.ErrNotFound)
	wantErr(t, "attach to a missing certificate", r.AttachPolicy("a", certID("nope")), registry.ErrNotFound)
	wantErr(t, "attach to a missing group", r.AttachPolicy("a", registry.ThingGroupARN("nope")), registry.ErrNotFound)
	wantErr(t, "attach to a thing", r.AttachPolicy("a", registry.ThingARN("dev1")), registry.ErrInvalid)

	names := func(ps []registry.Policy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	if ps, err := r.AttachedPolicies(registry.CertificateARN(c1)); err != nil || !cmp.Equal(names(ps), []string{"a", "b"}) {
		t.Errorf("policies of c1 = %v, %v", names(ps), err)
	}
	if targets, err := r.PolicyTargets("a"); err != nil || !cmp.Equal(targets, []string{registry.CertificateARN(c1), registry.ThingGroupARN("fleet")}) {
		t.Errorf("targets of a = %v, %v", targets, err)
	}
	wantErr(t, "delete an attached policy", r.DeletePolicy("a"), registry.ErrDeleteConflict)

	// The principal: certificate policies, then the thing's groups' (once
	// each), only when connecting as the thing it is attached to.
	pr, err := r.Principal(c1, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pr.Policies {
		got = append(got, p.Name+"@"+strings.TrimPrefix(p.Target, "arn:aws:iot:us-east-1:123456789012:")[:4])
	}
	if diff := cmp.Diff([]string{"a@cert", "b@cert", "g@thin"}, got); diff != "" || pr.Thing == nil || pr.Thing.Name != "dev1" {
		t.Errorf("principal c1 as dev1: thing %v, policies (-want +got):\n%s", pr.Thing, diff)
	}
	pr, err = r.Principal(c1, "other")
	if err != nil || pr.Thing != nil || len(pr.Policies) != 2 {
		t.Errorf("principal c1 as other = %+v, %v; want no thing and the certificate's 2 policies", pr, err)
	}
	pr, err = r.Principal(c2, "dev1")
	if err != nil || pr.Thing != nil || len(pr.Policies) != 0 {
		t.Errorf("principal c2 (not attached) as dev1 = %+v, %v; want nothing", pr, err)
	}

	wantErr(t, "detach b", r.DetachPolicy("b", registry.CertificateARN(c1)), nil)
	if ps, _ := r.AttachedPolicies(c1); !cmp.Equal(names(ps), []string{"a"}) {
		t.Errorf("policies of c1 after detach = %v", names(ps))
	}

	// At most 10 policies per target.
	for i := range registry.MaxPoliciesPerTarget {
		name := fmt.Sprint("p", i)
		if _, err := r.CreatePolicy(name, policyDoc(name), t0); err != nil {
			t.Fatal(err)
		}
		err := r.AttachPolicy(name, c2)
		wantErr(t, "attach "+name, err, nil)
	}
	if _, err := r.CreatePolicy("p10", policyDoc("p10"), t0); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "11th policy", r.AttachPolicy("p10", c2), registry.ErrLimitExceeded)
	wantErr(t, "re-attach the 10th", r.AttachPolicy("p9", c2), nil)
}

func TestEnsurePolicy(t *testing.T) {
	r, path := open(t)
	created, err := r.EnsurePolicy("builtin", policyDoc("a"), t0)
	if err != nil || !created {
		t.Fatalf("EnsurePolicy first = %v, %v", created, err)
	}
	if _, err := r.CreatePolicyVersion("builtin", policyDoc("b"), true, t0); err != nil {
		t.Fatal(err)
	}
	created, err = r.EnsurePolicy("builtin", policyDoc("a"), t0)
	if err != nil || created {
		t.Fatalf("EnsurePolicy again = %v, %v", created, err)
	}
	r.Close()
	r2, err := registry.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if p, err := r2.Policy("builtin"); err != nil || p.Document != policyDoc("b") || p.DefaultVersionID != "2" {
		t.Errorf("policy after reopening = %+v, %v; want the operator's version 2 kept", p, err)
	}
}
