package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/simtest"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr: %s", r.code, r.stderr)
	}
	return r
}

func writeCSR(t *testing.T, dir, cn string) string {
	t.Helper()
	_, csr := simtest.NewCSR(t, cn)
	path := filepath.Join(dir, cn+".csr")
	if err := os.WriteFile(path, []byte(csr), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommands(t *testing.T) {
	s := simtest.Start(t)
	dir := s.Dir()

	r := runCLI(t, "thing", "create", "dev1", "--dir", dir, "--attr", "model=gw1").ok(t)
	var created api.CreateThingResponse
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.ThingName != "dev1" {
		t.Errorf("thing create printed %q (err %v), want the CreateThing JSON", r.stdout, err)
	}
	r = runCLI(t, "thing", "describe", "--dir", dir, "dev1").ok(t)
	if !strings.Contains(r.stdout, `"model": "gw1"`) {
		t.Errorf("thing describe printed %q, want the attributes", r.stdout)
	}
	r = runCLI(t, "thing", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"thingName": "dev1"`) {
		t.Errorf("thing list printed %q", r.stdout)
	}

	// cert create: PEM on stdout, id on stderr; the thing is created if missing.
	r = runCLI(t, "cert", "create", "--dir", dir, "--thing", "dev2", "--csr", writeCSR(t, dir, "dev2"), "--days", "10").ok(t)
	cert, err := ca.ParseCertificatePEM([]byte(r.stdout))
	if err != nil {
		t.Fatalf("cert create stdout is not a certificate: %v\n%s", err, r.stdout)
	}
	id := ca.CertificateID(cert.Raw)
	if !strings.Contains(r.stderr, id) {
		t.Errorf("cert create stderr %q does not name the certificate id %s", r.stderr, id)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 10*24*time.Hour || d > 10*24*time.Hour+2*time.Hour {
		t.Errorf("certificate lifetime %v, want about 10 days", d)
	}
	principals, err := s.Client().ListThingPrincipals(t.Context(), "dev2")
	if err != nil || len(principals.Principals) != 1 {
		t.Errorf("dev2 principals = %v, %v; want the new certificate attached", principals, err)
	}
	r = runCLI(t, "cert", "create", "--dir", dir, "--thing", "dev2", "--csr", writeCSR(t, dir, "dev2b"), "--json").ok(t)
	var issued api.CreateCertificateFromCSRResponse
	if err := json.Unmarshal([]byte(r.stdout), &issued); err != nil || len(issued.CertificateID) != 64 {
		t.Errorf("cert create --json printed %q (err %v)", r.stdout, err)
	}

	r = runCLI(t, "cert", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, id) {
		t.Errorf("cert list does not show %s:\n%s", id, r.stdout)
	}
	runCLI(t, "cert", "update", "--dir", dir, "--id", id, "--status", "INACTIVE").ok(t)
	r = runCLI(t, "cert", "describe", "--dir", dir, "--id", id).ok(t)
	if !strings.Contains(r.stdout, `"status": "INACTIVE"`) {
		t.Errorf("cert describe after update:\n%s", r.stdout)
	}

	r = runCLI(t, "clients", "--dir", dir).ok(t)
	if !strings.HasPrefix(r.stdout, "CLIENT ID") {
		t.Errorf("clients printed %q, want a table", r.stdout)
	}
	r = runCLI(t, "clients", "--dir", dir, "--api", s.APIAddr(), "--json").ok(t)
	if strings.TrimSpace(r.stdout) != `{
  "clients": []
}` {
		t.Errorf("clients --json printed %q", r.stdout)
	}

	// Errors: clear messages and non-zero exits.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"thing", "describe", "nope", "--dir", dir}, 1, "ResourceNotFoundException"},
		{[]string{"cert", "update", "--dir", dir, "--id", id, "--status", "BOGUS"}, 1, "InvalidRequestException"},
		{[]string{"thing", "list"}, 2, "--dir is required"},
		{[]string{"thing", "list", "--dir", t.TempDir()}, 1, "admin token"},
		{[]string{"thing", "describe", "--dir", dir}, 2, "exactly one thing name"},
		{[]string{"cert", "create", "--dir", dir, "--thing", "x"}, 2, "--csr"},
		{[]string{"cert", "create", "--dir", dir, "--thing", "x", "--csr", filepath.Join(dir, "missing.csr")}, 1, "read CSR"},
		{[]string{"thing", "list", "--dir", dir, "--api", "127.0.0.1:1"}, 1, "connection refused"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{}, 2, "missing command"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("thingsim %q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb simtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--mqtt", "127.0.0.1:0", "--api", "127.0.0.1:0", "--cert-days", "2", "--rotation-grace", "0"}, &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := sim.ReadInfo(dir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not write api.json; stderr:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	runCLI(t, "thing", "create", "dev1", "--dir", dir).ok(t)
	r := runCLI(t, "cert", "create", "--dir", dir, "--thing", "dev1", "--csr", writeCSR(t, t.TempDir(), "dev1")).ok(t)
	if cert, err := ca.ParseCertificatePEM([]byte(r.stdout)); err != nil {
		t.Error(err)
	} else if d := cert.NotAfter.Sub(cert.NotBefore); d != 2*24*time.Hour+time.Hour {
		t.Errorf("certificate lifetime %v with serve --cert-days 2, want 49h (valid from an hour ago)", d)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d; stderr:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
	if _, err := os.Stat(filepath.Join(dir, sim.InfoFile)); !os.IsNotExist(err) {
		t.Errorf("api.json left behind after shutdown")
	}
	if !strings.Contains(errb.String(), "thingsim stopped") {
		t.Errorf("serve logs lack the shutdown line:\n%s", errb.String())
	}
	if r := runCLI(t, "serve"); r.code != 2 || !strings.Contains(r.stderr, "--dir is required") {
		t.Errorf("serve without --dir: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, "serve", "--dir", dir, "--api", "0.0.0.0:0"); r.code != 1 || !strings.Contains(r.stderr, "not a loopback address") {
		t.Errorf("serve on a public API address: exit %d, %q", r.code, r.stderr)
	}
	for _, bad := range [][]string{{"--cert-days", "0"}, {"--rotation-grace", "-1s"}, {"--rotation-grace", "soon"}} {
		if r := runCLI(t, append([]string{"serve", "--dir", dir}, bad...)...); r.code != 2 || !strings.Contains(r.stderr, bad[0]) {
			t.Errorf("serve %q: exit %d, %q; want a usage error naming the flag", bad, r.code, r.stderr)
		}
	}
}

func TestJobAndGroupCommands(t *testing.T) {
	s := simtest.Start(t)
	dir := s.Dir()
	s.NewDevice(t, "dev1")
	s.NewDevice(t, "dev2")
	doc := filepath.Join(t.TempDir(), "rotate.json")
	if err := os.WriteFile(doc, []byte(`{"operation":"rotate-certificate"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "job", "create", "--dir", dir, "--thing", "dev1", "--document", doc, "--job-id", "rot1").ok(t)
	var created api.CreateJobResponse
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.JobID != "rot1" {
		t.Errorf("job create printed %q (err %v), want the CreateJob JSON", r.stdout, err)
	}
	r = runCLI(t, "job", "create", "--dir", dir, "--thing", "dev1", "--document", doc).ok(t)
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || !strings.HasPrefix(created.JobID, "job-") {
		t.Errorf("job create without --job-id printed %q, want a generated job id", r.stdout)
	}
	runCLI(t, "job", "cancel", created.JobID, "--dir", dir).ok(t)

	runCLI(t, "group", "create", "fleet", "--dir", dir).ok(t)
	runCLI(t, "job", "create", "--dir", dir, "--group", "fleet", "--document", doc, "--job-id", "cont", "--continuous").ok(t)
	runCLI(t, "group", "add", "fleet", "--thing", "dev2", "--dir", dir).ok(t)
	s.WaitJobExecution(t, "dev2", "cont", "QUEUED", time.Second)
	r = runCLI(t, "group", "list", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"groupName": "fleet"`) {
		t.Errorf("group list printed %q", r.stdout)
	}

	r = runCLI(t, "job", "describe", "rot1", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"numberOfQueuedThings": 1`) {
		t.Errorf("job describe printed %q", r.stdout)
	}
	r = runCLI(t, "job", "describe", "cont", "--thing", "dev2", "--dir", dir).ok(t)
	if !strings.Contains(r.stdout, `"status": "QUEUED"`) {
		t.Errorf("job describe --thing printed %q", r.stdout)
	}
	r = runCLI(t, "job", "list", "--dir", dir).ok(t)
	for _, id := range []string{"rot1", "cont", created.JobID} {
		if !strings.Contains(r.stdout, `"jobId": "`+id+`"`) {
			t.Errorf("job list does not show %s:\n%s", id, r.stdout)
		}
	}

	r = runCLI(t, "faults", "--dir", dir, "--set", `{"registerThing":{"kind":"reject","count":1}}`).ok(t)
	if !strings.Contains(r.stdout, `"kind": "reject"`) || s.Faults().RegisterThing.Kind != "reject" {
		t.Errorf("faults --set printed %q; faults in force %+v", r.stdout, s.Faults())
	}
	runCLI(t, "faults", "--dir", dir, "--clear").ok(t)
	if f := s.Faults(); f != (sim.Faults{}) {
		t.Errorf("faults after --clear = %+v", f)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"job", "create", "--dir", dir, "--document", doc}, 2, "one of --thing and --group"},
		{[]string{"job", "create", "--dir", dir, "--thing", "dev1", "--group", "fleet", "--document", doc}, 2, "one of --thing and --group"},
		{[]string{"job", "create", "--dir", dir, "--thing", "dev1", "--document", filepath.Join(dir, "missing.json")}, 1, "read job document"},
		{[]string{"job", "create", "--dir", dir, "--thing", "dev1", "--document", doc, "--job-id", "rot1"}, 1, "ResourceAlreadyExistsException"},
		{[]string{"job", "cancel", "rot1", "--dir", dir, "--force"}, 0, ""},
		{[]string{"job", "cancel", "rot1", "--dir", dir}, 1, "InvalidStateTransitionException"},
		{[]string{"job", "describe", "--dir", dir}, 2, "exactly one job id"},
		{[]string{"group", "add", "fleet", "--dir", dir}, 2, "--thing"},
		{[]string{"group", "add", "nope", "--thing", "dev1", "--dir", dir}, 1, "ResourceNotFoundException"},
		{[]string{"faults", "--dir", dir, "--set", `{"createFromCsr":{"kind":"explode"}}`}, 1, "InvalidRequestException"},
		{[]string{"faults", "--dir", dir, "--set", "{"}, 2, "--set"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("thingsim %q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}
