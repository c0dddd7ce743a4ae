package registry_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/thingd/thingd/sim/registry"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func open(t *testing.T) (*registry.Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	r, err := registry.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, path
}

// certID returns a well-formed certificate id derived from s.
func certID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func addCert(t *testing.T, r *registry.Registry, name, status string, created time.Time) string {
	t.Helper()
	id := certID(name)
	c := registry.Certificate{ID: id, PEM: "-----BEGIN CERTIFICATE-----\n" + name + "\n-----END CERTIFICATE-----\n",
		Status: status, CreatedAt: created, LastModified: created}
	if err := r.AddCertificate(c); err != nil {
		t.Fatal(err)
	}
	return id
}

func mustThing(t *testing.T, r *registry.Registry, name string) registry.Thing {
	t.Helper()
	th, _, err := r.CreateThing(name, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %v, want one matching %v", what, err, want)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestValidateThingName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"gw-1", true},
		{"a", true},
		{"Gw_1:prod-2", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"gw 1", false},
		{"gw/1", false},
		{"gw.1", false},
		{"gw+1", false},
		{"gw\x001", false},
		{"gw-ü", false},
	} {
		t.Run(fmt.Sprintf("%.20q", tc.name), func(t *testing.T) {
			err := registry.ValidateThingName(tc.name)
			if tc.ok {
				wantErr(t, fmt.Sprintf("ValidateThingName(%q)", tc.name), err, nil)
			} else {
				wantErr(t, fmt.Sprintf("ValidateThingName(%q)", tc.name), err, registry.ErrInvalid)
			}
		})
	}
}

func TestARNs(t *testing.T) {
	if got, want := registry.ThingARN("gw-1"), "arn:aws:iot:us-east-1:123456789012:thing/gw-1"; got != want {
		t.Errorf("ThingARN = %q, want %q", got, want)
	}
	id := certID("c")
	if got, want := registry.CertificateARN(id), "arn:aws:iot:us-east-1:123456789012:cert/"+id; got != want {
		t.Errorf("CertificateARN = %q, want %q", got, want)
	}
}

func TestCertificateIDFromPrincipal(t *testing.T) {
	id := certID("p")
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{id, id, nil},
		{strings.ToUpper(id), id, nil},
		{registry.CertificateARN(id), id, nil},
		{"arn:aws:iot:eu-west-1:999999999999:cert/" + id, id, nil},
		{"arn:aws:iot:us-east-1:123456789012:thing/gw-1", "", registry.ErrInvalid},
		{"arn:aws:iot:us-east-1:123456789012:cert/" + id[:63], "", registry.ErrInvalid},
		{id[:63], "", registry.ErrInvalid},
		{id + "0", "", registry.ErrInvalid},
		{strings.Repeat("g", 64), "", registry.ErrInvalid},
		{"", "", registry.ErrInvalid},
	} {
		t.Run(fmt.Sprintf("%.24q", tc.in), func(t *testing.T) {
			got, err := registry.CertificateIDFromPrincipal(tc.in)
			wantErr(t, fmt.Sprintf("CertificateIDFromPrincipal(%q)", tc.in), err, tc.err)
			if got != tc.want {
				t.Errorf("CertificateIDFromPrincipal(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCreateThing(t *testing.T) {
	r, _ := open(t)
	attrs := map[string]string{"model": "gw", "site": "a"}
	first, created, err := r.CreateThing("gw-1", attrs, t0.In(time.FixedZone("X", 3600)))
	if err != nil || !created {
		t.Fatalf("CreateThing = created %v, %v; want created", created, err)
	}
	if first.Name != "gw-1" || first.ARN != registry.ThingARN("gw-1") || first.Version != 1 || !uuidRE.MatchString(first.ID) {
		t.Errorf("new thing = %+v", first)
	}
	if !first.CreatedAt.Equal(t0) || first.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", first.CreatedAt, t0)
	}

	for _, tc := range []struct {
		desc    string
		name    string
		attrs   map[string]string
		created bool
		err     error
	}{
		{"same attributes again", "gw-1", map[string]string{"site": "a", "model": "gw"}, false, nil},
		{"different attributes", "gw-1", map[string]string{"model": "gw"}, false, registry.ErrAlreadyExists},
		{"no attributes vs some", "gw-1", nil, false, registry.ErrAlreadyExists},
		{"second thing", "gw-2", nil, true, nil},
		{"nil vs empty attributes", "gw-2", map[string]string{}, false, nil},
		{"bad name", "gw 3", nil, false, registry.ErrInvalid},
		{"empty name", "", nil, false, registry.ErrInvalid},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			th, created, err := r.CreateThing(tc.name, tc.attrs, t0.Add(time.Hour))
			wantErr(t, fmt.Sprintf("CreateThing(%q, %v)", tc.name, tc.attrs), err, tc.err)
			if created != tc.created {
				t.Errorf("CreateThing(%q, %v) created = %v, want %v", tc.name, tc.attrs, created, tc.created)
			}
			if tc.err == nil && th.Name != tc.name {
				t.Errorf("CreateThing(%q, %v) returned thing %q", tc.name, tc.attrs, th.Name)
			}
		})
	}

	again, err := r.Thing("gw-1")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !again.CreatedAt.Equal(t0) || len(again.Attributes) != 2 || again.Attributes["site"] != "a" {
		t.Errorf("Thing(gw-1) = %+v, want the first one %+v", again, first)
	}
	other, err := r.Thing("gw-2")
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Errorf("two things share id %s", other.ID)
	}
	if _, err := r.Thing("nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Thing(nope) error = %v, want ErrNotFound", err)
	}
}

func TestThingsSortedAndDelete(t *testing.T) {
	r, _ := open(t)
	if things, err := r.Things(); err != nil || len(things) != 0 {
		t.Fatalf("empty registry: Things = %v, %v", things, err)
	}
	for _, n := range []string{"c", "a", "b-2", "b"} {
		mustThing(t, r, n)
	}
	names := func() []string {
		things, err := r.Things()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, th := range things {
			out = append(out, th.Name)
		}
		return out
	}
	if got, want := names(), []string{"a", "b", "b-2", "c"}; !slices.Equal(got, want) {
		t.Errorf("Things = %v, want %v", got, want)
	}

	id := addCert(t, r, "b", registry.StatusActive, t0)
	if err := r.AttachPrincipal("b", id); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		name string
		err  error
	}{
		{"with a principal attached", "b", registry.ErrInvalid},
		{"plain", "a", nil},
		{"again (missing is fine, as on AWS)", "a", nil},
		{"never existed", "zz", nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			wantErr(t, fmt.Sprintf("DeleteThing(%q)", tc.name), r.DeleteThing(tc.name), tc.err)
		})
	}
	if got, want := names(), []string{"b", "b-2", "c"}; !slices.Equal(got, want) {
		t.Errorf("after deletes Things = %v, want %v", got, want)
	}
	if err := r.DetachPrincipal("b", id); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteThing("b"); err != nil {
		t.Fatalf("DeleteThing after detach: %v", err)
	}
	if _, err := r.Thing("b"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("deleted thing still there: %v", err)
	}
	// The certificate outlives the thing and is attached to nothing.
	if things, err := r.PrincipalThings(id); err != nil || len(things) != 0 {
		t.Errorf("PrincipalThings after delete = %v, %v", things, err)
	}
}

func TestAddCertificate(t *testing.T) {
	r, _ := open(t)
	id := certID("one")
	for _, tc := range []struct {
		desc string
		c    registry.Certificate
		err  error
	}{
		{"ok", registry.Certificate{ID: id, PEM: "pem", Status: registry.StatusActive, CreatedAt: t0}, nil},
		{"duplicate", registry.Certificate{ID: id, PEM: "pem2", Status: registry.StatusInactive}, registry.ErrAlreadyExists},
		{"no id", registry.Certificate{PEM: "pem", Status: registry.StatusActive}, registry.ErrInvalid},
		{"no PEM", registry.Certificate{ID: certID("two"), Status: registry.StatusActive}, registry.ErrInvalid},
		{"no status", registry.Certificate{ID: certID("two"), PEM: "pem"}, registry.ErrInvalid},
		{"bad status", registry.Certificate{ID: certID("two"), PEM: "pem", Status: "active"}, registry.ErrInvalid},
		{"pending", registry.Certificate{ID: certID("three"), PEM: "pem", Status: registry.StatusPendingActivation}, nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			wantErr(t, "AddCertificate", r.AddCertificate(tc.c), tc.err)
		})
	}
	c, err := r.Certificate(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.PEM != "pem" || c.Status != registry.StatusActive || c.ARN != registry.CertificateARN(id) || !c.CreatedAt.Equal(t0) {
		t.Errorf("Certificate = %+v", c)
	}
	if _, err := r.Certificate(certID("two")); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("refused certificate was stored: %v", err)
	}
}

func TestCertificatesOldestFirst(t *testing.T) {
	r, _ := open(t)
	// Added in another order than created; ids (the bucket keys) are hashes,
	// so key order is unrelated to either.
	addCert(t, r, "late", registry.StatusActive, t0.Add(2*time.Hour))
	addCert(t, r, "early", registry.StatusActive, t0)
	addCert(t, r, "middle", registry.StatusActive, t0.Add(time.Hour))
	want := []string{certID("early"), certID("middle"), certID("late")}
	certs, err := r.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range certs {
		got = append(got, c.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Certificates order = %v, want %v", got, want)
	}
}

func TestSetCertificateStatus(t *testing.T) {
	r, _ := open(t)
	id := addCert(t, r, "c", registry.StatusPendingActivation, t0)
	steps := []struct {
		desc     string
		id       string
		status   string
		previous string
		err      error
	}{
		{"activate", id, registry.StatusActive, registry.StatusPendingActivation, nil},
		{"same status", id, registry.StatusActive, registry.StatusActive, nil},
		{"deactivate", id, registry.StatusInactive, registry.StatusActive, nil},
		{"reactivate", id, registry.StatusActive, registry.StatusInactive, nil},
		{"lowercase status", id, "inactive", "", registry.ErrInvalid},
		{"unknown status", id, "REVOKED_BY_CA", "", registry.ErrInvalid},
		{"empty status", id, "", "", registry.ErrInvalid},
		{"missing certificate", certID("missing"), registry.StatusInactive, "", registry.ErrNotFound},
		{"revoke", id, registry.StatusRevoked, registry.StatusActive, nil},
		{"revoked stays revoked", id, registry.StatusRevoked, registry.StatusRevoked, nil},
		{"revoked cannot be activated", id, registry.StatusActive, "", registry.ErrState},
		{"revoked cannot be deactivated", id, registry.StatusInactive, "", registry.ErrState},
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i+1) * time.Minute)
		before, _ := r.Certificate(id)
		prev, err := r.SetCertificateStatus(s.id, s.status, now)
		wantErr(t, s.desc, err, s.err)
		if prev != s.previous {
			t.Errorf("%s: previous = %q, want %q", s.desc, prev, s.previous)
		}
		after, err := r.Certificate(id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.err == nil && s.id == id && s.previous != s.status:
			if after.Status != s.status || !after.LastModified.Equal(now) {
				t.Errorf("%s: stored %s modified %v, want %s modified %v", s.desc, after.Status, after.LastModified, s.status, now)
			}
		default: // nothing may change
			if after.Status != before.Status || !after.LastModified.Equal(before.LastModified) {
				t.Errorf("%s: certificate changed from %s/%v to %s/%v", s.desc, before.Status, before.LastModified, after.Status, after.LastModified)
			}
		}
	}
}

func TestAttachDetach(t *testing.T) {
	r, _ := open(t)
	mustThing(t, r, "gw")
	mustThing(t, r, "gw-1") // shares a prefix with gw: must not leak into gw's listings
	c1 := addCert(t, r, "c1", registry.StatusActive, t0)
	c2 := addCert(t, r, "c2", registry.StatusInactive, t0.Add(time.Second))
	missing := certID("missing")

	for _, tc := range []struct {
		desc, thing, cert string
		err               error
	}{
		{"c1 to gw", "gw", c1, nil},
		{"twice is fine", "gw", c1, nil},
		{"c2 to gw (inactive certificates attach too)", "gw", c2, nil},
		{"c2 to gw-1 (one certificate, two things)", "gw-1", c2, nil},
		{"missing thing", "nope", c1, registry.ErrNotFound},
		{"missing certificate", "gw", missing, registry.ErrNotFound},
	} {
		t.Run("attach "+tc.desc, func(t *testing.T) {
			wantErr(t, fmt.Sprintf("AttachPrincipal(%q, %.8s)", tc.thing, tc.cert), r.AttachPrincipal(tc.thing, tc.cert), tc.err)
		})
	}

	checkLists := func(stage string, want map[string][]string) {
		t.Helper()
		byCert := map[string][]string{}
		for _, thing := range []string{"gw", "gw-1"} {
			got, err := r.ThingPrincipals(thing)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			w := slices.Clone(want[thing])
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Errorf("%s: ThingPrincipals(%s) = %v, want %v", stage, thing, got, w)
			}
			for _, c := range w {
				byCert[c] = append(byCert[c], thing)
			}
			for _, c := range []string{c1, c2} {
				ok, err := r.IsAttached(thing, c)
				if err != nil {
					t.Fatal(err)
				}
				if ok != slices.Contains(w, c) {
					t.Errorf("%s: IsAttached(%s, %.8s) = %v", stage, thing, c, ok)
				}
			}
		}
		for _, c := range []string{c1, c2} {
			got, err := r.PrincipalThings(c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, byCert[c]) {
				t.Errorf("%s: PrincipalThings(%.8s) = %v, want %v", stage, c, got, byCert[c])
			}
		}
	}
	checkLists("after attach", map[string][]string{"gw": {c1, c2}, "gw-1": {c2}})

	for _, tc := range []struct {
		desc, thing, cert string
		err               error
	}{
		{"c2 from gw", "gw", c2, nil},
		{"c2 from gw again (not attached)", "gw", c2, nil},
		{"missing thing", "nope", c1, registry.ErrNotFound},
		{"missing certificate", "gw", missing, registry.ErrNotFound},
	} {
		t.Run("detach "+tc.desc, func(t *testing.T) {
			wantErr(t, fmt.Sprintf("DetachPrincipal(%q, %.8s)", tc.thing, tc.cert), r.DetachPrincipal(tc.thing, tc.cert), tc.err)
		})
	}
	checkLists("after detach", map[string][]string{"gw": {c1}, "gw-1": {c2}})

	if _, err := r.ThingPrincipals("nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("ThingPrincipals(missing thing) error = %v, want ErrNotFound", err)
	}
	if _, err := r.PrincipalThings(missing); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("PrincipalThings(missing certificate) error = %v, want ErrNotFound", err)
	}
	if ok, err := r.IsAttached("nope", missing); err != nil || ok {
		t.Errorf("IsAttached(missing, missing) = %v, %v", ok, err)
	}
}

func TestCACertificates(t *testing.T) {
	r, _ := open(t)
	if cas, err := r.CACertificates(); err != nil || len(cas) != 0 {
		t.Fatalf("no CAs yet: %q, %v", cas, err)
	}
	pems := map[string]string{certID("ca1"): "ca-one", certID("ca2"): "ca-two"}
	for id, p := range pems {
		if err := r.AddCACertificate(id, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	// Same id again replaces the PEM rather than adding a third entry.
	if err := r.AddCACertificate(certID("ca2"), []byte("ca-two-b")); err != nil {
		t.Fatal(err)
	}
	cas, err := r.CACertificates()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cas {
		got = append(got, string(c))
	}
	slices.Sort(got)
	if want := []string{"ca-one", "ca-two-b"}; !slices.Equal(got, want) {
		t.Errorf("CACertificates = %q, want %q", got, want)
	}
	// The returned slices are copies: changing one must not touch the store.
	cas[0][0] = 'X'
	again, _ := r.CACertificates()
	for _, c := range again {
		if c[0] == 'X' {
			t.Errorf("CACertificates returned memory shared with the database")
		}
	}
}

func TestConnections(t *testing.T) {
	r, _ := open(t)
	a := registry.Connection{ClientID: "gw-1", CertificateID: certID("c"), SessionID: "s-a", IPAddress: "127.0.0.1", ConnectedAt: t0.Add(time.Minute)}
	b := registry.Connection{ClientID: "gw-2", SessionID: "s-b", ConnectedAt: t0, Refused: "client id is not the thing name"}
	c := registry.Connection{ClientID: "gw-1", SessionID: "s-c", ConnectedAt: t0.Add(time.Hour)}
	for _, x := range []registry.Connection{a, b, c} {
		if err := r.PutConnection(x); err != nil {
			t.Fatal(err)
		}
	}
	// Closing session a updates its entry in place.
	a.DisconnectedAt, a.DisconnectReason = t0.Add(30*time.Minute), "CLIENT_INITIATED_DISCONNECT"
	if err := r.PutConnection(a); err != nil {
		t.Fatal(err)
	}
	got, err := r.Connections()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Connections = %d entries, want 3: %+v", len(got), got)
	}
	// JSON drops the monotonic clock reading; compare instants with Equal.
	if diff := cmp.Diff([]registry.Connection{b, a, c}, got, cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("Connections() mismatch (-want +got):\n%s", diff)
	}
	if !got[2].DisconnectedAt.IsZero() {
		t.Errorf("live session has DisconnectedAt %v", got[2].DisconnectedAt)
	}
}

func TestPersistence(t *testing.T) {
	r, path := open(t)
	th := mustThing(t, r, "gw-1")
	id := addCert(t, r, "c", registry.StatusActive, t0)
	if err := r.AttachPrincipal("gw-1", id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetCertificateStatus(id, registry.StatusInactive, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := r.AddCACertificate(certID("ca"), []byte("ca-pem")); err != nil {
		t.Fatal(err)
	}
	if err := r.PutConnection(registry.Connection{ClientID: "gw-1", SessionID: "s1", ConnectedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r2, err := registry.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, err := r2.Thing("gw-1")
	if err != nil || got.ID != th.ID || !got.CreatedAt.Equal(th.CreatedAt) {
		t.Errorf("after reopen Thing = %+v, %v; want %+v", got, err, th)
	}
	c, err := r2.Certificate(id)
	if err != nil || c.Status != registry.StatusInactive || !c.LastModified.Equal(t0.Add(time.Minute)) {
		t.Errorf("after reopen Certificate = %+v, %v", c, err)
	}
	if ok, err := r2.IsAttached("gw-1", id); err != nil || !ok {
		t.Errorf("after reopen IsAttached = %v, %v", ok, err)
	}
	if things, err := r2.PrincipalThings(id); err != nil || !slices.Equal(things, []string{"gw-1"}) {
		t.Errorf("after reopen PrincipalThings = %v, %v", things, err)
	}
	if cas, err := r2.CACertificates(); err != nil || len(cas) != 1 || string(cas[0]) != "ca-pem" {
		t.Errorf("after reopen CACertificates = %q, %v", cas, err)
	}
	if conns, err := r2.Connections(); err != nil || len(conns) != 1 || conns[0].SessionID != "s1" {
		t.Errorf("after reopen Connections = %+v, %v", conns, err)
	}
}

func TestOpenExclusive(t *testing.T) {
	_, path := open(t)
	// bbolt holds an exclusive lock: a second Open of the same file gives up
	// after its 2 s timeout instead of corrupting it.
	start := time.Now()
	r2, err := registry.Open(path)
	if err == nil {
		r2.Close()
		t.Fatal("second Open of a database in use succeeded")
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("second Open failed after %v, before the lock timeout: %v", d, err)
	}
	if _, err := registry.Open(filepath.Join(t.TempDir(), "missing-dir", "x.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func TestThingGroups(t *testing.T) {
	r, _ := open(t)
	mustThing(t, r, "gw-1")
	mustThing(t, r, "gw-2")
	g, created, err := r.CreateThingGroup("fleet", "all gateways", t0)
	if err != nil || !created || g.ARN != "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet" || !uuidRE.MatchString(g.ID) {
		t.Fatalf("CreateThingGroup = %+v, %v, %v", g, created, err)
	}
	for _, tc := range []struct {
		desc, name, descr string
		created           bool
		err               error
	}{
		{"same description", "fleet", "all gateways", false, nil},
		{"other description", "fleet", "some", false, registry.ErrAlreadyExists},
		{"bad name", "fleet/x", "", false, registry.ErrInvalid},
	} {
		_, created, err := r.CreateThingGroup(tc.name, tc.descr, t0)
		wantErr(t, "CreateThingGroup "+tc.desc, err, tc.err)
		if created != tc.created {
			t.Errorf("CreateThingGroup %s: created = %v", tc.desc, created)
		}
	}
	for _, tc := range []struct {
		desc, group, thing string
		added              bool
		err                error
	}{
		{"gw-1", "fleet", "gw-1", true, nil},
		{"gw-1 again", "fleet", "gw-1", false, nil},
		{"gw-2", "fleet", "gw-2", true, nil},
		{"missing group", "nope", "gw-1", false, registry.ErrNotFound},
		{"missing thing", "fleet", "nope", false, registry.ErrNotFound},
	} {
		added, err := r.AddThingToGroup(tc.group, tc.thing)
		wantErr(t, "AddThingToGroup "+tc.desc, err, tc.err)
		if added != tc.added {
			t.Errorf("AddThingToGroup %s: added = %v", tc.desc, added)
		}
	}
	if got, err := r.GroupThings("fleet"); err != nil || !slices.Equal(got, []string{"gw-1", "gw-2"}) {
		t.Errorf("GroupThings = %v, %v", got, err)
	}
	if got, err := r.GroupsOfThing("gw-1"); err != nil || !slices.Equal(got, []string{"fleet"}) {
		t.Errorf("GroupsOfThing = %v, %v", got, err)
	}
	if removed, err := r.RemoveThingFromGroup("fleet", "gw-2"); err != nil || !removed {
		t.Errorf("RemoveThingFromGroup = %v, %v", removed, err)
	}
	if removed, err := r.RemoveThingFromGroup("fleet", "gw-2"); err != nil || removed {
		t.Errorf("RemoveThingFromGroup again = %v, %v", removed, err)
	}
	// Deleting a thing drops its memberships.
	if err := r.DeleteThing("gw-1"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.GroupThings("fleet"); err != nil || len(got) != 0 {
		t.Errorf("GroupThings after deleting members = %v, %v", got, err)
	}
	if _, err := r.GroupThings("nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("GroupThings(missing) error = %v", err)
	}
}

func TestNewSessionID(t *testing.T) {
	a, b := registry.NewSessionID(), registry.NewSessionID()
	if !uuidRE.MatchString(a) || a == b {
		t.Errorf("NewSessionID = %q, %q", a, b)
	}
}
