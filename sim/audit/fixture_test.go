package audit_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// now is the fixtures' clock.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// published is a fake broker: the messages published in process.
type published struct {
	mu   sync.Mutex
	msgs []message
}

type message struct {
	Topic   string
	Payload string
}

func (p *published) Publish(topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, message{topic, string(payload)})
	return nil
}

func (p *published) on(topic string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.msgs {
		if m.Topic == topic {
			out = append(out, m.Payload)
		}
	}
	return out
}

// fixture is an audit service on a fresh registry and CA, with a fake
// broker, a real Jobs service and predictable ids.
type fixture struct {
	reg          *registry.Registry
	ca           *ca.CA
	svc          *audit.Service
	jobs         *jobs.Service
	pub          *published
	mu           sync.Mutex
	disconnected []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{pub: &published{}}
	var err error
	if f.ca, err = ca.LoadOrCreate(dir, now.Add(-400*day)); err != nil {
		t.Fatal(err)
	}
	if f.reg, err = registry.Open(filepath.Join(dir, "registry.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.reg.Close() })
	clock := func() time.Time { return now }
	if f.jobs, err = jobs.New(jobs.Options{Registry: f.reg, Publish: f.pub.Publish, Now: clock}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.jobs.Close)
	n := 0
	var idMu sync.Mutex
	f.svc, err = audit.New(audit.Options{
		Registry: f.reg, CA: f.ca, Publish: f.pub.Publish, Now: clock,
		Disconnect: func(id string) int {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.disconnected = append(f.disconnected, id)
			return 1
		},
		ThingAddedToGroup: f.jobs.ThingAddedToGroup,
		Policies:          audit.RegistryPolicies(f.reg, clock),
		NewID: func() string {
			idMu.Lock()
			defer idMu.Unlock()
			n++
			return fmt.Sprintf("id%04d", n)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.svc.Close)
	return f
}

// cert issues a device certificate with the fixture's CA valid from
// notBefore to notAfter, registers it with status (created at createdAt)
// and attaches it to thing (created if needed) unless thing is "".
func (f *fixture) cert(t *testing.T, thing, status string, notBefore, notAfter, createdAt time.Time) (id string, serial *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := f.ca.Issue(key.Public(), pkix.Name{CommonName: thing}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	id = ca.CertificateID(der)
	err = f.reg.AddCertificate(registry.Certificate{ID: id, PEM: string(ca.EncodeCertificate(der)), Status: status,
		CreatedAt: createdAt, LastModified: createdAt, NotBefore: parsed.NotBefore, NotAfter: parsed.NotAfter})
	if err != nil {
		t.Fatal(err)
	}
	if thing != "" {
		if _, _, err := f.reg.CreateThing(thing, nil, now); err != nil {
			t.Fatal(err)
		}
		if err := f.reg.AttachPrincipal(thing, id); err != nil {
			t.Fatal(err)
		}
	}
	return id, parsed.SerialNumber
}

// activeCert is cert for an ACTIVE certificate created 10 days ago that
// expires after d.
func (f *fixture) activeCert(t *testing.T, thing string, d time.Duration) string {
	t.Helper()
	id, _ := f.cert(t, thing, registry.StatusActive, now.Add(-10*day), now.Add(d), now.Add(-10*day))
	return id
}

func (f *fixture) enable(t *testing.T, checks ...string) {
	t.Helper()
	cfg := audit.Configuration{AuditCheckConfigurations: map[string]audit.CheckConfiguration{}}
	for _, c := range checks {
		cfg.AuditCheckConfigurations[c] = audit.CheckConfiguration{Enabled: true}
	}
	if _, err := f.svc.UpdateConfiguration(cfg); err != nil {
		t.Fatal(err)
	}
}

// audit runs an on-demand audit of the checks to completion.
func (f *fixture) audit(t *testing.T, checks ...string) (audit.Task, []audit.Finding) {
	t.Helper()
	id, err := f.svc.StartOnDemandAuditTask(checks)
	if err != nil {
		t.Fatal(err)
	}
	task, err := f.svc.WaitAuditTask(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	findings, err := f.svc.ListAuditFindings(audit.FindingFilter{TaskID: id})
	if err != nil {
		t.Fatal(err)
	}
	return task, findings
}

// webhook is an httptest server recording the bodies POSTed to it.
type webhook struct {
	*httptest.Server
	bodies chan string
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{bodies: make(chan string, 16)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s with Content-Type %q, want a JSON POST", r.Method, r.Header.Get("Content-Type"))
		}
		body, _ := io.ReadAll(r.Body)
		w.bodies <- string(body)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhook) next(t *testing.T) string {
	t.Helper()
	select {
	case b := <-w.bodies:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("nothing POSTed to the webhook")
		return ""
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	simtest.Golden(t, filepath.Join("testdata", name), got, *update)
}
