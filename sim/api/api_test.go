package api_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/shadow"
	"github.com/thingd/thingd/sim/simtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const token = "test-token"

type fakeBroker struct {
	mu           sync.Mutex
	disconnected []string
	published    []string // topics
}

func (f *fakeBroker) Publish(topic string, _ []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, topic)
	return nil
}

func (f *fakeBroker) Clients() []broker.Client {
	return []broker.Client{{ClientID: "dev1", CertificateID: "c0ffee", SessionID: "s-1", IPAddress: "127.0.0.1", Since: now}}
}

func (f *fakeBroker) DisconnectCertificate(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnected = append(f.disconnected, id)
	return 1
}

// newServer starts the admin API on a fresh registry; opts may change the
// handler's options (add services) first.
func newServer(t *testing.T, opts ...func(*api.Options)) (*httptest.Server, *fakeBroker, *registry.Registry) {
	t.Helper()
	dir := t.TempDir()
	authority, err := ca.LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	fb := &fakeBroker{}
	clock := func() time.Time { return now }
	js, err := jobs.New(jobs.Options{Registry: reg, Publish: fb.Publish, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(js.Close)
	sh, err := shadow.New(shadow.Options{Registry: reg, Publish: fb.Publish, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.Close)
	prov, err := provision.New(provision.Options{Registry: reg, CA: authority, Disconnect: fb.DisconnectCertificate, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.Close)
	o := api.Options{Registry: reg, CA: authority, Broker: fb, Jobs: js, Shadow: sh, Provisioning: prov, Token: token, Now: clock}
	for _, opt := range opts {
		opt(&o)
	}
	h, err := api.NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, fb, reg
}

func csrPEM(t *testing.T, cn string) string {
	t.Helper()
	_, csr := simtest.NewCSR(t, cn)
	return csr
}

// TestGolden runs one request per operation, in order, and compares status,
// error type and JSON body with testdata/NN-name.golden. Random values
// (certificate id and PEM, thing id) are replaced by placeholders.
func TestGolden(t *testing.T) {
	srv, fb, _ := newServer(t)
	var placeholders []string // actual, placeholder pairs, longest first
	var certID, certArn string
	extract := func(name string, body []byte) {
		switch name {
		case "create-thing":
			var r api.CreateThingResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			placeholders = append(placeholders, r.ThingID, "<thingId>")
		case "create-certificate":
			var r api.CreateCertificateFromCSRResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			certID, certArn = r.CertificateID, r.CertificateArn
			pemJSON, _ := json.Marshal(r.CertificatePem)
			placeholders = append(placeholders,
				strings.Trim(string(pemJSON), `"`), "<certificatePem>",
				certID, "<certificateId>",
				certID[:32], "<generationId>")
		case "describe-certificate":
			var r api.DescribeCertificateResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			placeholders = append(placeholders, r.CertificateDescription.CACertificateID, "<caCertificateId>")
		case "create-thing-group":
			var r api.CreateThingGroupResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			placeholders = append(placeholders, r.ThingGroupID, "<thingGroupId>")
		}
	}

	type step struct {
		name, method, path string
		header             map[string]string
		body               any
		raw                string // body sent as is
		noAuth             bool
	}
	run := func(n int, s step) {
		t.Helper()
		var rd io.Reader
		if s.body != nil {
			data, _ := json.Marshal(s.body)
			rd = strings.NewReader(string(data))
		} else if s.raw != "" {
			rd = strings.NewReader(s.raw)
		}
		req, err := http.NewRequest(s.method, srv.URL+s.path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if !s.noAuth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range s.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q, want application/json", s.name, ct)
		}
		var parsed any
		if err := json.Unmarshal(body, &parsed); err != nil {
			t.Errorf("%s: body is not JSON: %v\n%s", s.name, err, body)
		}
		extract(s.name, body)
		got := fmt.Sprintf("%s %s\nHTTP %d\nx-amzn-ErrorType: %s\n\n%s", s.method, s.path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), body)
		for i := 0; i < len(placeholders); i += 2 {
			got = strings.ReplaceAll(got, placeholders[i], placeholders[i+1])
		}
		golden := filepath.Join("testdata", fmt.Sprintf("%02d-%s.golden", n, s.name))
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		}
	}

	steps := []step{
		{name: "no-token", method: "GET", path: "/things", noAuth: true},
		{name: "wrong-token", method: "GET", path: "/things", noAuth: true, header: map[string]string{"Authorization": "Bearer nope"}},
		{name: "create-thing", method: "POST", path: "/things/dev1", body: api.CreateThingRequest{AttributePayload: &api.AttributePayload{Attributes: map[string]string{"model": "gw1"}}}},
		{name: "create-thing-idempotent", method: "POST", path: "/things/dev1", body: api.CreateThingRequest{AttributePayload: &api.AttributePayload{Attributes: map[string]string{"model": "gw1"}}}},
		{name: "create-thing-conflict", method: "POST", path: "/things/dev1", body: api.CreateThingRequest{}},
		{name: "create-thing-bad-name", method: "POST", path: "/things/bad%20name"},
		{name: "create-thing-bad-json", method: "POST", path: "/things/dev2", body: "not an object"},
		{name: "describe-thing", method: "GET", path: "/things/dev1"},
		{name: "describe-thing-missing", method: "GET", path: "/things/nope"},
		{name: "list-things", method: "GET", path: "/things"},
		{name: "create-certificate", method: "POST", path: "/certificates?setAsActive=true", body: api.CreateCertificateFromCSRRequest{CertificateSigningRequest: csrPEM(t, "dev1")}},
		{name: "create-certificate-bad-csr", method: "POST", path: "/certificates?setAsActive=true", body: api.CreateCertificateFromCSRRequest{CertificateSigningRequest: "garbage"}},
		{name: "create-certificate-bad-days", method: "POST", path: "/certificates?validityDays=0", body: api.CreateCertificateFromCSRRequest{CertificateSigningRequest: csrPEM(t, "dev1")}},
		{name: "describe-certificate", method: "GET", path: "/certificates/CERTID"},
		{name: "describe-certificate-missing", method: "GET", path: "/certificates/" + strings.Repeat("0", 64)},
		{name: "describe-certificate-bad-id", method: "GET", path: "/certificates/xyz"},
		{name: "list-certificates", method: "GET", path: "/certificates"},
		{name: "attach-principal", method: "PUT", path: "/things/dev1/principals", header: map[string]string{"x-amzn-principal": "CERTARN"}},
		{name: "attach-principal-missing-header", method: "PUT", path: "/things/dev1/principals"},
		{name: "attach-principal-missing-thing", method: "PUT", path: "/things/nope/principals", header: map[string]string{"x-amzn-principal": "CERTARN"}},
		{name: "list-thing-principals", method: "GET", path: "/things/dev1/principals"},
		{name: "list-principal-things", method: "GET", path: "/principals/things", header: map[string]string{"x-amzn-principal": "CERTARN"}},
		{name: "delete-thing-with-principal", method: "DELETE", path: "/things/dev1"},
		{name: "update-certificate-inactive", method: "PUT", path: "/certificates/CERTID?newStatus=INACTIVE"},
		{name: "update-certificate-reserved", method: "PUT", path: "/certificates/CERTID?newStatus=PENDING_TRANSFER"},
		{name: "update-certificate-missing-status", method: "PUT", path: "/certificates/CERTID"},
		{name: "update-certificate-revoked", method: "PUT", path: "/certificates/CERTID?newStatus=REVOKED"},
		{name: "update-certificate-revoked-to-active", method: "PUT", path: "/certificates/CERTID?newStatus=ACTIVE"},
		{name: "detach-principal", method: "DELETE", path: "/things/dev1/principals", header: map[string]string{"x-amzn-principal": "CERTARN"}},
		{name: "delete-thing", method: "DELETE", path: "/things/dev1"},
		{name: "thingsim-clients", method: "GET", path: "/thingsim/clients"},
		{name: "unknown-operation", method: "GET", path: "/nothing/here"},

		{name: "create-thing-group", method: "POST", path: "/thing-groups/fleet", body: api.CreateThingGroupRequest{ThingGroupProperties: &api.ThingGroupProperties{ThingGroupDescription: "all gateways"}}},
		{name: "create-thing-group-nested", method: "POST", path: "/thing-groups/sub", body: api.CreateThingGroupRequest{ParentGroupName: "fleet"}},
		{name: "describe-thing-group", method: "GET", path: "/thing-groups/fleet"},
		{name: "create-thing", method: "POST", path: "/things/dev2"},
		{name: "add-thing-to-thing-group", method: "PUT", path: "/thing-groups/addThingToThingGroup", body: api.ThingGroupMembershipRequest{ThingGroupName: "fleet", ThingName: "dev2"}},
		{name: "add-thing-to-thing-group-by-arn", method: "PUT", path: "/thing-groups/addThingToThingGroup", body: api.ThingGroupMembershipRequest{ThingGroupArn: registry.ThingGroupARN("fleet"), ThingArn: registry.ThingARN("dev2")}},
		{name: "add-missing-thing-to-thing-group", method: "PUT", path: "/thing-groups/addThingToThingGroup", body: api.ThingGroupMembershipRequest{ThingGroupName: "fleet", ThingName: "nope"}},
		{name: "add-thing-to-thing-group-no-group", method: "PUT", path: "/thing-groups/addThingToThingGroup", body: api.ThingGroupMembershipRequest{ThingName: "dev2"}},
		{name: "list-things-in-thing-group", method: "GET", path: "/thing-groups/fleet/things"},
		{name: "list-thing-groups", method: "GET", path: "/thing-groups"},
		{name: "create-job", method: "PUT", path: "/jobs/job1", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `{"operation":"rotate-certificate"}`, Description: "rotate dev2"}},
		{name: "create-job-conflict", method: "PUT", path: "/jobs/job1", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `{}`}},
		{name: "create-job-bad-id", method: "PUT", path: "/jobs/bad.id", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `{}`}},
		{name: "create-job-document-too-large", method: "PUT", path: "/jobs/big", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `{"x":"` + strings.Repeat("x", 32768) + `"}`}},
		{name: "create-job-document-not-object", method: "PUT", path: "/jobs/arr", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `[1]`}},
		{name: "create-job-bad-target", method: "PUT", path: "/jobs/bad", body: api.CreateJobRequest{Targets: []string{"dev2"}, Document: `{}`}},
		{name: "create-job-missing-thing", method: "PUT", path: "/jobs/missing", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("nope")}, Document: `{}`}},
		{name: "create-job-bad-selection", method: "PUT", path: "/jobs/sel", body: api.CreateJobRequest{Targets: []string{registry.ThingARN("dev2")}, Document: `{}`, TargetSelection: "SOMETIMES"}},
		{name: "create-job-continuous", method: "PUT", path: "/jobs/job2", body: api.CreateJobRequest{Targets: []string{registry.ThingGroupARN("fleet")}, Document: `{"operation":"noop"}`, TargetSelection: "CONTINUOUS", TimeoutConfig: &api.TimeoutConfig{InProgressTimeoutInMinutes: 30}}},
		{name: "describe-job", method: "GET", path: "/jobs/job1"},
		{name: "describe-job-missing", method: "GET", path: "/jobs/nope"},
		{name: "get-job-document", method: "GET", path: "/jobs/job1/job-document"},
		{name: "list-jobs", method: "GET", path: "/jobs"},
		{name: "list-jobs-continuous", method: "GET", path: "/jobs?targetSelection=CONTINUOUS"},
		{name: "describe-job-execution", method: "GET", path: "/things/dev2/jobs/job1"},
		{name: "describe-job-execution-missing", method: "GET", path: "/things/dev2/jobs/nope"},
		{name: "list-job-executions-for-thing", method: "GET", path: "/things/dev2/jobs"},
		{name: "list-job-executions-for-thing-bad-status", method: "GET", path: "/things/dev2/jobs?status=DONE"},
		{name: "list-job-executions-for-job", method: "GET", path: "/jobs/job2/things"},
		{name: "cancel-job", method: "PUT", path: "/jobs/job1/cancel", body: api.CancelJobRequest{ReasonCode: "OBSOLETE", Comment: "not needed"}},
		{name: "cancel-job-again", method: "PUT", path: "/jobs/job1/cancel"},
		{name: "describe-job-canceled", method: "GET", path: "/jobs/job1"},
		{name: "describe-job-execution-canceled", method: "GET", path: "/things/dev2/jobs/job1"},
		{name: "remove-thing-from-thing-group", method: "PUT", path: "/thing-groups/removeThingFromThingGroup", body: api.ThingGroupMembershipRequest{ThingGroupName: "fleet", ThingName: "dev2"}},
		{name: "list-job-executions-for-job-removed", method: "GET", path: "/jobs/job2/things"},
		{name: "get-faults", method: "GET", path: "/thingsim/faults"},
		{name: "set-faults", method: "PUT", path: "/thingsim/faults", body: provision.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSROtherKey, Count: 2}, RegisterThing: provision.Fault{Kind: provision.RegisterReject, Message: "no"}}},
		{name: "set-faults-bad-kind", method: "PUT", path: "/thingsim/faults", body: map[string]any{"createFromCsr": map[string]any{"kind": "explode"}}},
		{name: "clear-faults", method: "PUT", path: "/thingsim/faults", body: provision.Faults{}},

		{name: "get-thing-shadow-missing", method: "GET", path: "/things/dev2/shadow"},
		{name: "update-thing-shadow", method: "POST", path: "/things/dev2/shadow", raw: `{"state":{"desired":{"interval":60,"tags":["a","b"]},"reported":{"interval":30}},"clientToken":"c1"}`},
		{name: "update-thing-shadow-named", method: "POST", path: "/things/dev2/shadow?name=cfg", raw: `{"state":{"reported":{"mode":"eco"}},"version":0}`},
		{name: "update-thing-shadow-named-2", method: "POST", path: "/things/dev2/shadow?name=alpha", raw: `{"state":{"desired":{"on":true}}}`},
		{name: "get-thing-shadow", method: "GET", path: "/things/dev2/shadow"},
		{name: "get-thing-shadow-named", method: "GET", path: "/things/dev2/shadow?name=cfg"},
		{name: "update-thing-shadow-version-conflict", method: "POST", path: "/things/dev2/shadow", raw: `{"state":{"reported":{"interval":60}},"version":5}`},
		{name: "update-thing-shadow-bad-json", method: "POST", path: "/things/dev2/shadow", raw: `{"state":`},
		{name: "update-thing-shadow-missing-state", method: "POST", path: "/things/dev2/shadow", raw: `{"clientToken":"c2"}`},
		{name: "update-thing-shadow-too-large", method: "POST", path: "/things/dev2/shadow", raw: `{"state":{"desired":{"blob":"` + strings.Repeat("x", 8192) + `"}}}`},
		{name: "update-thing-shadow-bad-name", method: "POST", path: "/things/dev2/shadow?name=bad.name", raw: `{"state":{}}`},
		{name: "list-named-shadows-for-thing", method: "GET", path: "/api/things/shadow/ListNamedShadowsForThing/dev2"},
		{name: "list-named-shadows-for-thing-page", method: "GET", path: "/api/things/shadow/ListNamedShadowsForThing/dev2?pageSize=1"},
		{name: "list-named-shadows-for-thing-next", method: "GET", path: "/api/things/shadow/ListNamedShadowsForThing/dev2?pageSize=1&nextToken=alpha"},
		{name: "list-named-shadows-for-thing-bad-page", method: "GET", path: "/api/things/shadow/ListNamedShadowsForThing/dev2?pageSize=0"},
		{name: "delete-thing-shadow", method: "DELETE", path: "/things/dev2/shadow"},
		{name: "delete-thing-shadow-again", method: "DELETE", path: "/things/dev2/shadow"},
		{name: "get-thing-shadow-deleted", method: "GET", path: "/things/dev2/shadow"},
		{name: "update-thing-shadow-after-delete", method: "POST", path: "/things/dev2/shadow", raw: `{"state":{"reported":{"interval":60}},"version":1}`},
	}
	for i, s := range steps {
		s.path = strings.ReplaceAll(s.path, "CERTID", certID)
		for k, v := range s.header {
			s.header[k] = strings.ReplaceAll(v, "CERTARN", certArn)
		}
		run(i, s)
	}
	if diff := cmp.Diff([]string{certID, certID}, fb.disconnected); diff != "" {
		t.Errorf("DisconnectCertificate calls (-want +got):\n%s", diff)
	}
	// Jobs published their notifications and events through the broker, and
	// the shadow service its messages.
	for _, topic := range []string{"$aws/things/dev2/jobs/notify-next", "$aws/events/jobExecution/job1/canceled", "$aws/events/job/job1/canceled", "$aws/events/jobExecution/job2/removed",
		"$aws/things/dev2/shadow/update/accepted", "$aws/things/dev2/shadow/update/delta", "$aws/things/dev2/shadow/update/documents",
		"$aws/things/dev2/shadow/name/cfg/update/accepted", "$aws/things/dev2/shadow/delete/accepted"} {
		if !slices.Contains(fb.published, topic) {
			t.Errorf("nothing published on %s; published: %q", topic, fb.published)
		}
	}
}

// The certificate from CreateCertificateFromCsr is the CSR's key and subject,
// signed by the CA, with the requested validity, and its id is the SHA-256 of
// its DER.
func TestCreateCertificateFromCSR(t *testing.T) {
	srv, _, reg := newServer(t)
	c := api.NewClient(srv.URL, token, nil)
	resp, err := c.CreateCertificateFromCSR(t.Context(), csrPEM(t, "dev7"), false, 30)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ParseCertificatePEM([]byte(resp.CertificatePem))
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.CertificateID(cert.Raw); got != resp.CertificateID {
		t.Errorf("certificateId = %s, want SHA-256 of the DER %s", resp.CertificateID, got)
	}
	if cert.Subject.CommonName != "dev7" {
		t.Errorf("subject CN = %q, want dev7", cert.Subject.CommonName)
	}
	if want := now.Add(30 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("notAfter = %v, want %v", cert.NotAfter, want)
	}
	stored, err := reg.Certificate(resp.CertificateID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != registry.StatusInactive {
		t.Errorf("status without setAsActive = %s, want INACTIVE", stored.Status)
	}
}

func TestClientErrors(t *testing.T) {
	srv, _, _ := newServer(t)
	_, err := api.NewClient(srv.URL, token, nil).DescribeThing(t.Context(), "nope")
	var e *api.Error
	if !errors.As(err, &e) || e.StatusCode != 404 || e.Type != api.ErrResourceNotFound || !strings.Contains(e.Message, "nope") {
		t.Errorf("DescribeThing(nope) error = %v, want a 404 ResourceNotFoundException naming nope", err)
	}
	_, err = api.NewClient(srv.URL, "wrong", nil).ListThings(t.Context())
	if !errors.As(err, &e) || e.StatusCode != 401 || e.Type != api.ErrUnauthorized {
		t.Errorf("ListThings with a wrong token error = %v, want 401 UnauthorizedException", err)
	}
}
