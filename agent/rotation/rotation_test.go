package rotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/testpki"
	"github.com/thingd/thingd/jobs"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
)

const thing = "gw-1"

// fakeCloud is a hand-written stand-in for the cloud side: it signs CSRs
// with a test CA, registers certificates, and accepts connections from
// registered certificates only.
type fakeCloud struct {
	t  *testing.T
	ca *testpki.CA

	mu         sync.Mutex
	active     map[string]bool // certificate id -> ACTIVE
	pending    map[string]string
	fault      string
	holder     *identity.Holder
	reconnects int
	issued     int
	describes  []string
}

func (c *fakeCloud) CreateFromCSR(ctx context.Context, csrPEM string) (*CertificateResponse, error) {
	c.mu.Lock()
	fault := c.fault
	c.mu.Unlock()
	csr, err := keystore.ParseCSR([]byte(csrPEM))
	if err != nil {
		return nil, err
	}
	cn, pub := csr.Subject.CommonName, csr.PublicKey
	c.mu.Lock()
	c.issued++
	n := c.issued
	c.mu.Unlock()
	nb, na := time.Now().Add(-time.Minute), time.Now().Add(90*24*time.Hour+time.Duration(n)*time.Hour)
	ca := c.ca
	switch fault {
	case "csr-reject":
		return nil, &ProvisioningError{Operation: "create-from-csr", StatusCode: 400, ErrorCode: "InvalidCertificateSigningRequest", ErrorMessage: "bad csr"}
	case "csr-drop":
		<-ctx.Done()
		return nil, errors.New("no reply to create-from-csr in 1s")
	case "other-cn":
		cn = "gw-7"
	case "other-key":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub = k.Public()
	case "expired":
		nb, na = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	case "untrusted-ca":
		ca = testpki.NewCA(c.t, "rogue CA")
	case "shorter":
		na = time.Now().Add(time.Hour)
	}
	pemBytes := ca.Issue(c.t, cn, pub, nb, na)
	certs, _ := identity.ParseChain(pemBytes)
	id := identity.CertificateID(certs[0].Raw)
	c.mu.Lock()
	c.pending["tok-"+id] = id
	c.mu.Unlock()
	return &CertificateResponse{CertificateID: id, CertificatePEM: string(pemBytes), CertificateOwnershipToken: "tok-" + id}, nil
}

func (c *fakeCloud) Register(ctx context.Context, template string, req RegisterRequest) (*RegisterResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fault == "register-reject" {
		return nil, &ProvisioningError{Operation: "RegisterThing (" + template + ")", StatusCode: 403, ErrorCode: "AccessDenied", ErrorMessage: "not allowed"}
	}
	id, ok := c.pending[req.CertificateOwnershipToken]
	if !ok || req.Parameters["ThingName"] != thing {
		return nil, &ProvisioningError{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "unknown token"}
	}
	c.active[id] = c.fault != "deactivate-new"
	return &RegisterResponse{ThingName: thing}, nil
}

func (c *fakeCloud) Reconnect() {
	c.mu.Lock()
	c.reconnects++
	c.mu.Unlock()
}

func (c *fakeCloud) WaitConnected(ctx context.Context, since time.Time) error {
	id := c.holder.Current()
	c.mu.Lock()
	ok := c.active[id.CertificateID]
	c.mu.Unlock()
	if ok {
		return nil
	}
	<-ctx.Done()
	return errors.New("mqttconn: not connected: certificate not active")
}

func (c *fakeCloud) Describe(ctx context.Context, jobID string, req jobs.DescribeRequest) (*jobs.Execution, error) {
	c.mu.Lock()
	c.describes = append(c.describes, jobID)
	c.mu.Unlock()
	return &jobs.Execution{JobID: jobID, Status: jobs.StatusInProgress}, nil
}

// progress records the steps a handler reports.
type progress struct {
	mu    sync.Mutex
	steps []string
}

func (p *progress) Step(ctx context.Context, d map[string]string) error {
	p.mu.Lock()
	p.steps = append(p.steps, d["step"])
	p.mu.Unlock()
	return nil
}

type env struct {
	t       *testing.T
	dir     string
	store   keystore.Store
	slots   identity.Slots
	cloud   *fakeCloud
	holder  *identity.Holder
	old     *identity.Identity
	journal []Step
	crashAt Step
}

type crash struct{}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	a := keystore.MustParseURI("file:" + filepath.Join(dir, "keys", "device.pem"))
	b, err := identity.DeriveSlotB(a)
	if err != nil {
		t.Fatal(err)
	}
	store := filestore.New()
	ctx := context.Background()
	key, err := store.Generate(ctx, a, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "device CA")
	certPEM := ca.Issue(t, thing, key.Public(), time.Now().Add(-time.Hour), time.Now().Add(30*24*time.Hour))
	certFile := filepath.Join(dir, "device.pem")
	testpki.WriteFile(t, certFile, certPEM)
	old, err := identity.New(thing, key, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	holder := identity.NewHolder(old)
	cloud := &fakeCloud{t: t, ca: ca, active: map[string]bool{old.CertificateID: true}, pending: map[string]string{}, holder: holder}
	return &env{t: t, dir: dir, store: store, slots: identity.Slots{A: a, B: b}, cloud: cloud, holder: holder, old: old}
}

func (e *env) config() Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.cloud.ca.Cert)
	return Config{ThingName: thing, StateDir: filepath.Join(e.dir, "state"), Slots: e.slots,
		ConfigCertificate: filepath.Join(e.dir, "device.pem"), DeviceCAs: pool,
		ReplyTimeout: time.Second, VerifyTimeout: time.Second}
}

func (e *env) rotator() *Rotator {
	e.t.Helper()
	cfg := e.config()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	r, err := New(cfg, Deps{Store: e.store, Holder: e.holder, Conn: e.cloud, Jobs: e.cloud, Prov: e.cloud,
		AfterJournal: func(s Step) {
			e.journal = append(e.journal, s)
			if s == e.crashAt {
				panic(crash{})
			}
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) keyExists(u *keystore.URI) bool {
	_, err := e.store.Open(context.Background(), u)
	return err == nil
}

func execution(doc string) jobs.Execution {
	return jobs.Execution{JobID: "rot-1", Status: jobs.StatusInProgress, JobDocument: []byte(doc), VersionNumber: 2}
}

const rotateDoc = `{"operation":"rotate-certificate"}`

func TestRotateSucceeds(t *testing.T) {
	e := newEnv(t)
	r := e.rotator()
	p := &progress{}
	res := r.Handle(context.Background(), execution(rotateDoc), p)
	if res.Status != jobs.StatusSucceeded {
		t.Fatalf("status %s, details %v", res.Status, res.Details)
	}
	cur := e.holder.Current()
	if cur == e.old || res.Details["newCertificateId"] != cur.CertificateID || res.Details["oldCertificateId"] != e.old.CertificateID {
		t.Fatalf("details %v, current %s", res.Details, cur.CertificateID)
	}
	want := []Step{StepStarted, StepKeyGenerated, StepCSRSent, StepCertReceived, StepRegistered, StepVerifying, StepCommitted}
	if !slices.Equal(e.journal, want) {
		t.Fatalf("journal %v, want %v", e.journal, want)
	}
	if !slices.Contains(p.steps, "verifying") || p.steps[0] != "started" {
		t.Fatalf("reported steps %v", p.steps)
	}
	if e.cloud.describes[len(e.cloud.describes)-1] != "rot-1" {
		t.Fatalf("verification described %v", e.cloud.describes)
	}
	active, err := identity.LoadActive(r.cfg.StateDir, "")
	if err != nil || active.Slot != identity.SlotB || active.CertificateID != cur.CertificateID {
		t.Fatalf("active %+v %v", active, err)
	}
	// The old key stays until the cloud has seen SUCCEEDED.
	if !e.keyExists(e.slots.A) {
		t.Fatal("old key deleted before the report")
	}
	res.OnReported(context.Background(), nil)
	if e.keyExists(e.slots.A) {
		t.Fatal("old key still there after the report")
	}
	st := r.Status()
	if st.State != "idle" || st.Last == nil || st.Last.Result != "SUCCEEDED" {
		t.Fatalf("status %+v", st)
	}

	// A second rotation goes back to slot A, with the algorithm asked for.
	e.journal = nil
	res = r.Handle(context.Background(), jobs.Execution{JobID: "rot-2", JobDocument: []byte(`{"operation":"rotate-certificate","keyAlgorithm":"ECDSA_P384"}`)}, p)
	if res.Status != jobs.StatusSucceeded {
		t.Fatalf("second rotation: %v", res.Details)
	}
	res.OnReported(context.Background(), nil)
	if got := e.holder.Current().Key.Info().Algorithm; got != keystore.ECDSAP384 {
		t.Fatalf("algorithm %s", got)
	}
	if e.keyExists(e.slots.B) || !e.keyExists(e.slots.A) {
		t.Fatal("slots after the second rotation are wrong")
	}
}

func TestRotateFailuresRollBack(t *testing.T) {
	tests := []struct {
		fault, step, reason string
	}{
		{"csr-reject", "csr-sent", "400 InvalidCertificateSigningRequest: bad csr"},
		{"csr-drop", "csr-sent", "no reply to create-from-csr"},
		{"other-cn", "cert-received", "certificate CN gw-7 does not match thing name gw-1"},
		{"other-key", "cert-received", "for another public key than the new key"},
		{"expired", "cert-received", "the new certificate expired at"},
		{"untrusted-ca", "cert-received", "does not chain to the trusted device CAs"},
		{"shorter", "cert-received", "not later than the current one"},
		{"register-reject", "registered", "403 AccessDenied"},
		{"deactivate-new", "verifying", "the new certificate did not connect within 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.fault, func(t *testing.T) {
			e := newEnv(t)
			e.cloud.fault = tc.fault
			r := e.rotator()
			res := r.Handle(context.Background(), execution(rotateDoc), &progress{})
			if res.Status != jobs.StatusFailed || res.Details["step"] != tc.step || !strings.Contains(res.Details["reason"], tc.reason) {
				t.Fatalf("got %s %v, want FAILED at %s with %q", res.Status, res.Details, tc.step, tc.reason)
			}
			if e.holder.Current() != e.old {
				t.Fatal("not back on the old identity")
			}
			if e.keyExists(e.slots.B) || !e.keyExists(e.slots.A) {
				t.Fatal("new key left behind or old key gone")
			}
			if _, err := os.Stat(identity.SlotCertificatePath(r.cfg.StateDir, identity.SlotB)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("new certificate file left behind")
			}
			if active, _ := identity.LoadActive(r.cfg.StateDir, "cfg"); active.Slot != identity.SlotA {
				t.Fatalf("active slot %s", active.Slot)
			}
			if st := r.Status(); st.State != string(StepRolledBack) {
				t.Fatalf("state before report %q", st.State)
			}
			res.OnReported(context.Background(), nil)
			if st := r.Status(); st.State != "idle" || st.Last.Result != "FAILED" || st.Last.Reason != res.Details["reason"] {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestRejectedDocuments(t *testing.T) {
	for _, doc := range []string{
		`{"operation":"rotate-certificate","keyAlgorithm":"DSA"}`,
		`{"operation":"rotate-certificate","keyAlgorithm":7}`,
		`{"operation":"rotate-certificate","verifyTimeoutSeconds":"soon"}`,
		`{"operation":"rotate-certificate","provisioningTemplate":"a/b"}`,
		`[1,2]`,
	} {
		e := newEnv(t)
		res := e.rotator().Handle(context.Background(), execution(doc), &progress{})
		if res.Status != jobs.StatusRejected || res.Details["reason"] == "" {
			t.Errorf("%s: %s %v", doc, res.Status, res.Details)
		}
		if len(e.journal) != 0 {
			t.Errorf("%s: journal written for a rejected document", doc)
		}
	}
}

// TestCrashRecovery stops the rotation right after each journal write, as a
// power cut would, and starts a new Rotator on the same state.
func TestCrashRecovery(t *testing.T) {
	tests := []struct {
		step        Step
		wantSlot    identity.Slot
		wantResult  jobs.Status
		tryNewFirst bool
	}{
		{StepStarted, identity.SlotA, jobs.StatusFailed, false},
		{StepKeyGenerated, identity.SlotA, jobs.StatusFailed, false},
		{StepCSRSent, identity.SlotA, jobs.StatusFailed, false},
		{StepCertReceived, identity.SlotA, jobs.StatusFailed, false},
		{StepRegistered, identity.SlotA, jobs.StatusFailed, true}, // never registered: new cert does not connect
		{StepVerifying, identity.SlotB, jobs.StatusSucceeded, true},
		{StepCommitted, identity.SlotB, jobs.StatusSucceeded, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.step), func(t *testing.T) {
			e := newEnv(t)
			e.crashAt = tc.step
			r := e.rotator()
			func() {
				defer func() {
					if v := recover(); v != nil {
						if _, ok := v.(crash); !ok {
							panic(v)
						}
					}
				}()
				r.Handle(context.Background(), execution(rotateDoc), &progress{})
				t.Fatal("no crash")
			}()
			// Restart: a fresh holder, as thingd would build.
			e.crashAt = ""
			e.holder = identity.NewHolder(nil)
			e.cloud.holder = e.holder
			r2 := e.rotator()
			active, fallback, err := r2.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if (fallback != nil) != tc.tryNewFirst {
				t.Fatalf("fallback %v, want try-new-first %v", fallback, tc.tryNewFirst)
			}
			key, err := e.store.Open(context.Background(), e.slots.Key(active.Slot))
			if err != nil {
				t.Fatalf("active slot %s key: %v", active.Slot, err)
			}
			id, err := identity.Load(thing, key, active.CertificateFile)
			if err != nil {
				t.Fatal(err)
			}
			e.holder.Set(id)
			if fallback != nil {
				k, _ := e.store.Open(context.Background(), e.slots.Key(fallback.Slot))
				old, err := identity.Load(thing, k, fallback.CertificateFile)
				if err != nil {
					t.Fatal(err)
				}
				r2.SetFallback(old)
			}
			res := r2.Resume(context.Background(), execution(rotateDoc), &progress{})
			if res.Status != tc.wantResult {
				t.Fatalf("result %s %v", res.Status, res.Details)
			}
			res.OnReported(context.Background(), nil)
			final, _ := identity.LoadActive(r2.cfg.StateDir, e.config().ConfigCertificate)
			if final.Slot != tc.wantSlot || e.holder.Current().CertificateID != identity.CertificateID(mustLeaf(t, final.CertificateFile).Raw) {
				t.Fatalf("final slot %s (want %s), holder %s", final.Slot, tc.wantSlot, e.holder.Current().CertificateID)
			}
			if !e.keyExists(e.slots.Key(final.Slot)) || e.keyExists(e.slots.Key(final.Slot.Other())) {
				t.Fatal("exactly the active key must remain")
			}
			if st := r2.Status(); st.State != "idle" {
				t.Fatalf("journal left at %s", st.State)
			}
		})
	}
}

func mustLeaf(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := identity.ParseChain(b)
	if err != nil {
		t.Fatal(err)
	}
	return c[0]
}

func TestRenewalWithoutJob(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Renew = true
	cfg.CheckInterval = time.Hour
	_ = os.MkdirAll(cfg.StateDir, 0o700)
	now := time.Now().Add(29 * 24 * time.Hour) // inside the last third of 30 days
	r, err := New(cfg, Deps{Store: e.store, Holder: e.holder, Conn: e.cloud, Jobs: e.cloud, Prov: e.cloud,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	r.checkRenewal(context.Background())
	if e.holder.Current() == e.old {
		t.Fatal("not renewed")
	}
	if e.keyExists(e.slots.A) {
		t.Fatal("old key not cleaned up after a renewal without a job")
	}
	if st := r.Status(); st.Last == nil || st.Last.Result != "SUCCEEDED" || !strings.HasPrefix(st.Last.ID, "renewal-") {
		t.Fatalf("status %+v", st)
	}
	if e.cloud.describes[len(e.cloud.describes)-1] != "$next" {
		t.Fatalf("verified with %v", e.cloud.describes)
	}

	// A cloud issuing certificates already inside their window (here: a
	// window of 99% of the lifetime) must not make thingd renew in a loop:
	// no second renewal for a check interval, however often the loop
	// wakes, then one.
	r.SetWindow(Window{Fraction: 0.99, MaxBefore: 1000 * 24 * time.Hour, Jitter: 0.001})
	renewed := e.holder.Current()
	if !r.window().Decide(renewed.Leaf.NotBefore, renewed.Leaf.NotAfter, now, time.Time{}, 0.999).Due {
		t.Fatal("test setup: the renewed certificate should be due too")
	}
	for range 3 {
		if wait := r.checkRenewal(context.Background()); wait <= 0 || wait > time.Hour {
			t.Fatalf("held renewal waits %v", wait)
		}
	}
	if e.holder.Current() != renewed {
		t.Fatal("renewed again right after a renewal: a cloud issuing short certificates would make thingd loop")
	}
	now = now.Add(time.Hour + time.Second)
	r.checkRenewal(context.Background())
	if e.holder.Current() == renewed {
		t.Fatal("not renewed once the hold had passed")
	}

	// Untrusted time: a clock at 1970 never renews.
	e2 := newEnv(t)
	cfg2 := e2.config()
	cfg2.Renew = true
	_ = os.MkdirAll(cfg2.StateDir, 0o700)
	r2, _ := New(cfg2, Deps{Store: e2.store, Holder: e2.holder, Conn: e2.cloud, Jobs: e2.cloud, Prov: e2.cloud,
		Now: func() time.Time { return time.Unix(0, 0) }})
	r2.checkRenewal(context.Background())
	if e2.holder.Current() != e2.old || r2.Status().RenewalNote == "" {
		t.Fatalf("renewed on an untrusted clock: %+v", r2.Status())
	}
}
