package sim_test

import (
	stdcmp "cmp"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

const (
	createTopic   = "$aws/certificates/create-from-csr/json"
	registerTopic = "$aws/provisioning-templates/thingd-rotation/provision/json"
)

// issued is an accepted CreateCertificateFromCsr reply with the key of its
// CSR.
type issued struct {
	CertificateID             string `json:"certificateId"`
	CertificatePem            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
	key                       *ecdsa.PrivateKey
	reply                     []byte
}

// createCert asks for a certificate for a new key with CN cn and fails the
// test unless it is accepted.
func (d *device) createCert(t *testing.T, cn string) issued {
	t.Helper()
	key, csr := simtest.NewCSR(t, cn)
	suffix, reply := d.request(t, createTopic, map[string]string{"certificateSigningRequest": csr})
	if suffix != "accepted" {
		t.Fatalf("CreateCertificateFromCsr: %s %s", suffix, reply)
	}
	var out issued
	if err := json.Unmarshal(reply, &out); err != nil {
		t.Fatal(err)
	}
	out.key, out.reply = key, reply
	return out
}

func (i issued) params(thing string) map[string]any {
	return map[string]any{"certificateOwnershipToken": i.CertificateOwnershipToken, "parameters": map[string]string{"ThingName": thing}}
}

func (i issued) tlsCertificate(t *testing.T) *tls.Certificate {
	t.Helper()
	c := simtest.TLSCertificate(t, []byte(i.CertificatePem), i.key)
	return &c
}

func (i issued) parsed(t *testing.T) *x509.Certificate {
	t.Helper()
	c, err := ca.ParseCertificatePEM([]byte(i.CertificatePem))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// The rotation half of fleet provisioning: a CSR becomes a
// PENDING_ACTIVATION certificate, RegisterThing activates it and attaches
// it to the caller's thing, and it then connects.
func TestProvisioningRotation(t *testing.T) {
	const validity = 48 * time.Hour
	s := simtest.StartWith(t, sim.Options{DeviceCertValidity: validity})
	old := s.NewDevice(t, "dev1")
	d := dialDevice(t, s, old)
	tr := &transcript{}

	before := time.Now()
	n := d.createCert(t, "dev1")
	tr.replace(n.CertificateID, "<certificateId>")
	tr.replace(n.CertificateOwnershipToken, "<token>")
	pemJSON, _ := json.Marshal(n.CertificatePem)
	tr.replace(strings.Trim(string(pemJSON), `"`), "<certificatePem>")
	tr.message(createTopic+"/accepted", n.reply)

	cert := n.parsed(t)
	if cert.Subject.CommonName != "dev1" || !cert.PublicKey.(*ecdsa.PublicKey).Equal(n.key.Public()) {
		t.Errorf("certificate for CN %q and another key; want the CSR's CN dev1 and key", cert.Subject.CommonName)
	}
	if got := cert.NotAfter.Sub(before); got < validity-time.Minute || got > validity+time.Minute {
		t.Errorf("certificate valid for %v, want about %v (Options.DeviceCertValidity)", got, validity)
	}
	if ca.CertificateID(cert.Raw) != n.CertificateID {
		t.Error("certificateId is not the SHA-256 of the certificate")
	}
	if got := s.CertificateStatus(t, n.CertificateID); got != registry.StatusPendingActivation {
		t.Errorf("new certificate is %s, want PENDING_ACTIVATION", got)
	}
	if _, err := dial(t, s, "dev1", n.tlsCertificate(t)); err == nil {
		t.Error("a PENDING_ACTIVATION certificate was admitted")
	}

	req := n.params("dev1")
	req["parameters"].(map[string]string)["SerialNumber"] = fmt.Sprintf("%x", cert.SerialNumber)
	suffix, reply := d.request(t, registerTopic, req)
	tr.message(registerTopic+"/"+suffix, reply)
	if got := s.CertificateStatus(t, n.CertificateID); got != registry.StatusActive {
		t.Errorf("registered certificate is %s, want ACTIVE", got)
	}
	if got := s.ThingPrincipals(t, "dev1"); !sameSet(got, []string{old.CertificateID, n.CertificateID}) {
		t.Errorf("dev1 principals = %v, want the old and the new certificate", got)
	}

	// The token is single use.
	suffix, reply = d.request(t, registerTopic, n.params("dev1"))
	tr.message(registerTopic+"/"+suffix, reply)
	tr.check(t, "provisioning-rotation")

	if _, err := dial(t, s, "dev1", n.tlsCertificate(t)); err != nil {
		t.Errorf("connect with the registered certificate: %v", err)
	}
}

// RegisterThing refuses to hand a certificate to another thing than the
// caller's, and bad requests; the certificate stays PENDING_ACTIVATION.
func TestRegisterThingRefused(t *testing.T) {
	clock := newFrozenClock()
	s := clock.start(t)
	dev1 := s.NewDevice(t, "dev1")
	s.NewDevice(t, "dev2")
	d := dialDevice(t, s, dev1)
	tr := &transcript{}
	tr.replace(dev1.CertificateID, "<dev1 certificateId>")

	for _, tc := range []struct {
		name  string
		cn    string
		topic string
		req   func(issued) any
		setup func(t *testing.T) (undo func())
	}{
		{name: "another thing", cn: "dev2", req: func(i issued) any { return i.params("dev2") }},
		{name: "CN of another thing", cn: "dev2", req: func(i issued) any { return i.params("dev1") }},
		{name: "caller's certificate not attached", cn: "dev1", req: func(i issued) any { return i.params("dev1") },
			setup: func(t *testing.T) func() {
				if err := s.Client().DetachThingPrincipal(t.Context(), "dev1", registry.CertificateARN(dev1.CertificateID)); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := s.Client().AttachThingPrincipal(t.Context(), "dev1", registry.CertificateARN(dev1.CertificateID)); err != nil {
						t.Fatal(err)
					}
				}
			}},
		{name: "unknown token", cn: "dev1", req: func(issued) any {
			return map[string]any{"certificateOwnershipToken": "bogus", "parameters": map[string]string{"ThingName": "dev1"}}
		}},
		{name: "empty token", cn: "dev1", req: func(issued) any { return map[string]any{"parameters": map[string]string{"ThingName": "dev1"}} }},
		{name: "expired token", cn: "dev1", req: func(i issued) any { return i.params("dev1") },
			setup: func(*testing.T) func() {
				clock.Add(time.Hour + time.Second)
				return func() { clock.Add(-time.Hour - time.Second) }
			}},
		{name: "missing ThingName", cn: "dev1", req: func(i issued) any { return map[string]any{"certificateOwnershipToken": i.CertificateOwnershipToken} }},
		{name: "wrong SerialNumber", cn: "dev1", req: func(i issued) any {
			return map[string]any{"certificateOwnershipToken": i.CertificateOwnershipToken, "parameters": map[string]string{"ThingName": "dev1", "SerialNumber": "42"}}
		}},
		{name: "not JSON", cn: "dev1", req: func(issued) any { return "{" }},
		{name: "unknown template", cn: "dev1", topic: "$aws/provisioning-templates/other/provision/json", req: func(i issued) any { return i.params("dev1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := d.createCert(t, tc.cn)
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			topic := stdcmp.Or(tc.topic, registerTopic)
			suffix, reply := d.request(t, topic, tc.req(n))
			if suffix != "rejected" {
				t.Fatalf("RegisterThing: %s %s, want rejected", suffix, reply)
			}
			tr.note("%s", tc.name)
			tr.message(topic+"/"+suffix, reply)
			if got := s.CertificateStatus(t, n.CertificateID); got != registry.StatusPendingActivation {
				t.Errorf("certificate is %s after a refused RegisterThing, want PENDING_ACTIVATION", got)
			}
		})
	}
	tr.check(t, "provisioning-register-refused")
}

func TestCreateCertificateFromCSRRefused(t *testing.T) {
	s := simtest.Start(t)
	d := dialDevice(t, s, s.NewDevice(t, "dev1"))
	tr := &transcript{}
	for _, payload := range []any{
		"not json",
		map[string]string{},
		map[string]string{"certificateSigningRequest": "garbage"},
	} {
		suffix, reply := d.request(t, createTopic, payload)
		if suffix != "rejected" {
			t.Errorf("CreateCertificateFromCsr(%v): %s %s, want rejected", payload, suffix, reply)
		}
		tr.note("%v", payload)
		tr.message(createTopic+"/"+suffix, reply)
	}
	tr.check(t, "provisioning-create-refused")
}

func TestProvisioningFaults(t *testing.T) {
	s := simtest.Start(t)
	dev := s.NewDevice(t, "dev1")
	d := dialDevice(t, s, dev)
	simCA, err := ca.ParseCertificatePEM(s.CAPEM())
	if err != nil {
		t.Fatal(err)
	}

	csrCases := []struct {
		kind  string
		check func(t *testing.T, suffix string, reply []byte, key *ecdsa.PrivateKey)
	}{
		{provision.CSRReject, func(t *testing.T, suffix string, reply []byte, _ *ecdsa.PrivateKey) {
			if suffix != "rejected" || !strings.Contains(string(reply), `"statusCode":400`) || !strings.Contains(string(reply), "go away") {
				t.Errorf("reply %s %s, want rejected 400 with the fault's message", suffix, reply)
			}
		}},
		{provision.CSROtherKey, func(t *testing.T, _ string, reply []byte, key *ecdsa.PrivateKey) {
			if c := certOf(t, reply); c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Error("certificate is for the CSR's key")
			}
		}},
		{provision.CSROtherCN, func(t *testing.T, _ string, reply []byte, _ *ecdsa.PrivateKey) {
			if c := certOf(t, reply); c.Subject.CommonName != "dev1-other" {
				t.Errorf("CN = %q, want dev1-other", c.Subject.CommonName)
			}
		}},
		{provision.CSRExpired, func(t *testing.T, _ string, reply []byte, _ *ecdsa.PrivateKey) {
			if c := certOf(t, reply); !c.NotAfter.Before(time.Now()) {
				t.Errorf("notAfter = %v, want in the past", c.NotAfter)
			}
		}},
		{provision.CSRUntrustedCA, func(t *testing.T, _ string, reply []byte, _ *ecdsa.PrivateKey) {
			if c := certOf(t, reply); c.CheckSignatureFrom(simCA) == nil {
				t.Error("certificate is signed by the simulator's CA")
			}
		}},
	}
	for _, tc := range csrCases {
		t.Run("createFromCsr "+tc.kind, func(t *testing.T) {
			s.SetFaults(t, sim.Faults{CreateFromCSR: provision.Fault{Kind: tc.kind, Count: 1, Message: "go away"}})
			key, csr := simtest.NewCSR(t, "dev1")
			suffix, reply := d.request(t, createTopic, map[string]string{"certificateSigningRequest": csr})
			tc.check(t, suffix, reply, key)
			if f := s.Faults(); f.CreateFromCSR.Kind != "" {
				t.Errorf("fault still in force after its one use: %+v", f)
			}
			d.createCert(t, "dev1") // the next request is served normally
		})
	}

	t.Run("createFromCsr no-reply", func(t *testing.T) {
		s.SetFaults(t, sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRNoReply, Count: 2}})
		_, csr := simtest.NewCSR(t, "dev1")
		d.publish(t, createTopic, map[string]string{"certificateSigningRequest": csr})
		for _, m := range d.flush(t) {
			t.Errorf("received %s despite the no-reply fault", m.topic)
		}
		if f := s.Faults(); f.CreateFromCSR.Count != 1 {
			t.Errorf("faults after one use = %+v, want count 1 left", f)
		}
		s.SetFaults(t, sim.Faults{})
		d.createCert(t, "dev1")
	})

	t.Run("registerThing reject until cleared", func(t *testing.T) {
		if err := s.Server.SetFaults(sim.Faults{RegisterThing: provision.Fault{Kind: provision.RegisterReject}}); err != nil {
			t.Fatal(err)
		}
		n := d.createCert(t, "dev1")
		for range 2 {
			suffix, reply := d.request(t, registerTopic, n.params("dev1"))
			if suffix != "rejected" || !strings.Contains(string(reply), `"statusCode":403`) {
				t.Errorf("RegisterThing: %s %s, want rejected 403", suffix, reply)
			}
		}
		s.SetFaults(t, sim.Faults{})
		if suffix, reply := d.request(t, registerTopic, n.params("dev1")); suffix != "accepted" {
			t.Errorf("RegisterThing after clearing the fault: %s %s", suffix, reply)
		}
	})

	t.Run("registerThing deactivate", func(t *testing.T) {
		s.SetFaults(t, sim.Faults{RegisterThing: provision.Fault{Kind: provision.RegisterDeactivate, Count: 1}})
		n := d.createCert(t, "dev1")
		if suffix, reply := d.request(t, registerTopic, n.params("dev1")); suffix != "accepted" {
			t.Fatalf("RegisterThing: %s %s, want accepted", suffix, reply)
		}
		if got := s.CertificateStatus(t, n.CertificateID); got != registry.StatusInactive {
			t.Errorf("certificate is %s, want INACTIVE", got)
		}
		if !slices.Contains(s.ThingPrincipals(t, "dev1"), n.CertificateID) {
			t.Error("certificate not attached to dev1")
		}
		if _, err := dial(t, s, "dev1", n.tlsCertificate(t)); err == nil {
			t.Error("the deactivated certificate was admitted")
		}
	})
}

func certOf(t *testing.T, reply []byte) *x509.Certificate {
	t.Helper()
	var i issued
	if err := json.Unmarshal(reply, &i); err != nil || i.CertificatePem == "" {
		t.Fatalf("reply %s is not an accepted certificate (%v)", reply, err)
	}
	return i.parsed(t)
}

// rotate runs the device side of a rotation on d up to RegisterThing and
// returns the new certificate.
func rotate(t *testing.T, d *device, thing string) issued {
	t.Helper()
	n := d.createCert(t, thing)
	if suffix, reply := d.request(t, registerTopic, n.params(thing)); suffix != "accepted" {
		t.Fatalf("RegisterThing: %s %s", suffix, reply)
	}
	return n
}

func succeed(t *testing.T, d *device, thing, job string, details map[string]string) {
	t.Helper()
	if suffix, reply := d.request(t, jobsTopic(thing, job+"/update"), map[string]any{"status": "SUCCEEDED", "statusDetails": details}); suffix != "accepted" {
		t.Fatalf("update %s: %s %s", job, suffix, reply)
	}
}

const rotateDoc = `{"operation":"rotate-certificate"}`

// After a rotate-certificate execution SUCCEEDED, the old certificate is
// deactivated (dropping its connections) and detached after the grace.
func TestRotationRetiresOldCertificate(t *testing.T) {
	const grace = 500 * time.Millisecond
	s := simtest.StartWith(t, sim.Options{RotationGrace: grace})
	old := s.NewDevice(t, "dev1")
	d := dialDevice(t, s, old)
	s.CreateJob(t, "rot1", "dev1", rotateDoc)
	d.request(t, jobsTopic("dev1", "start-next"), `{"statusDetails":{"step":"started"}}`)
	n := rotate(t, d, "dev1")

	succeed(t, d, "dev1", "rot1", map[string]string{"step": "committed", "newCertificateId": n.CertificateID, "oldCertificateId": old.CertificateID})
	done := time.Now()
	if got := s.CertificateStatus(t, old.CertificateID); got != registry.StatusActive && time.Since(done) < grace {
		t.Errorf("old certificate is %s within the grace period, want ACTIVE", got)
	}
	d.waitLost(t)
	if waited := time.Since(done); waited < grace-50*time.Millisecond {
		t.Errorf("old certificate's connection dropped after %v, before the %v grace", waited, grace)
	}
	s.WaitLog(t, "old certificate retired: INACTIVE and detached", "certificateId="+old.CertificateID)
	if got := s.CertificateStatus(t, old.CertificateID); got != registry.StatusInactive {
		t.Errorf("old certificate is %s, want INACTIVE", got)
	}
	if diff := cmp.Diff([]string{n.CertificateID}, s.ThingPrincipals(t, "dev1")); diff != "" {
		t.Errorf("dev1 principals (-want +got):\n%s", diff)
	}
	if _, err := dial(t, s, "dev1", n.tlsCertificate(t)); err != nil {
		t.Errorf("connect with the new certificate: %v", err)
	}
}

// The old certificate is retired only when the rotation really happened.
func TestRotationRetirementChecks(t *testing.T) {
	s := simtest.StartWith(t, sim.Options{RotationGrace: -1})
	for i, tc := range []struct {
		name    string
		doc     string
		details func(old, new, other string) map[string]string
		log     string
	}{
		{"old certificate of another thing", rotateDoc, func(_, n, other string) map[string]string {
			return map[string]string{"newCertificateId": n, "oldCertificateId": other}
		}, "the old certificate is not attached to the thing"},
		{"new certificate not attached", rotateDoc, func(old, _, other string) map[string]string {
			return map[string]string{"newCertificateId": other, "oldCertificateId": old}
		}, "the new certificate is not attached to the thing"},
		{"same certificate", rotateDoc, func(old, _, _ string) map[string]string {
			return map[string]string{"newCertificateId": old, "oldCertificateId": old}
		}, "the new and old certificates are the same"},
		{"no certificate ids", rotateDoc, func(string, string, string) map[string]string {
			return map[string]string{"step": "committed"}
		}, "rotation succeeded without newCertificateId and oldCertificateId"},
		{"not a rotation", `{"operation":"reboot"}`, func(old, n, _ string) map[string]string {
			return map[string]string{"newCertificateId": n, "oldCertificateId": old}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			thing := fmt.Sprintf("check%d", i)
			old := s.NewDevice(t, thing)
			other := s.NewDevice(t, thing+"-other")
			d := dialDevice(t, s, old)
			s.CreateJob(t, thing, thing, tc.doc)
			n := rotate(t, d, thing)
			succeed(t, d, thing, thing, tc.details(old.CertificateID, n.CertificateID, other.CertificateID))
			if tc.log != "" {
				s.WaitLog(t, tc.log, "thing="+thing)
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			if got := s.CertificateStatus(t, old.CertificateID); got != registry.StatusActive {
				t.Errorf("old certificate is %s, want ACTIVE (not retired)", got)
			}
			if got := s.ThingPrincipals(t, thing); !sameSet(got, []string{old.CertificateID, n.CertificateID}) {
				t.Errorf("principals = %v, want both certificates still attached", got)
			}
		})
	}
}

// A retirement scheduled before a restart happens after it.
func TestRotationRetirementSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s1 := simtest.StartWith(t, sim.Options{Dir: dir, RotationGrace: 300 * time.Millisecond})
	old := s1.NewDevice(t, "dev1")
	d := dialDevice(t, s1, old)
	s1.CreateJob(t, "rot", "dev1", rotateDoc)
	n := rotate(t, d, "dev1")
	succeed(t, d, "dev1", "rot", map[string]string{"newCertificateId": n.CertificateID, "oldCertificateId": old.CertificateID})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := simtest.StartWith(t, sim.Options{Dir: dir, RotationGrace: 300 * time.Millisecond})
	s2.WaitLog(t, "old certificate retired: INACTIVE and detached", "certificateId="+old.CertificateID)
	if got := s2.CertificateStatus(t, old.CertificateID); got != registry.StatusInactive {
		t.Errorf("old certificate is %s after the restart, want INACTIVE", got)
	}
	if diff := cmp.Diff([]string{n.CertificateID}, s2.ThingPrincipals(t, "dev1")); diff != "" {
		t.Errorf("dev1 principals (-want +got):\n%s", diff)
	}
}
