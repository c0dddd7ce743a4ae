package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/simtest"
)

// rotationDevice is a thing in an in-process thingsim whose key lives in
// SoftHSM (or wherever keyURI points), with thingd run as a process.
type rotationDevice struct {
	sim     *simtest.Sim
	thing   string
	keyURI  string
	slotB   string
	certID  string
	config  string
	baseKey *keystore.URI
}

// newRotationDevice provisions thing with a key at keyURI (generated here)
// and writes a thingd config for it; extra is appended to the config.
func newRotationDevice(t *testing.T, s *simtest.Sim, thing, keyURI, slotB string, extra ...string) *rotationDevice {
	t.Helper()
	uri := keystore.MustParseURI(keyURI)
	certFile, certID := issueDevice(t, s, thing, keyURI, 30)
	_, port, _ := strings.Cut(s.MQTTAddr(), ":")
	ex := "\n[rotation]\nverify_timeout = \"10s\"\nreply_timeout = \"5s\"\n" + strings.Join(extra, "")
	if slotB != "" {
		ex += fmt.Sprintf("key_b = %q\n", slotB)
	}
	cfg := writeConfig(t, configOpts{thing: thing, endpoint: "localhost:" + port, serverCA: s.CAPath(),
		key: keyURI, cert: certFile, extra: ex})
	return &rotationDevice{sim: s, thing: thing, keyURI: keyURI, slotB: slotB, certID: certID, config: cfg, baseKey: uri}
}

// issueDevice generates the key at keyURI, has thingsim issue thing's
// certificate for it (validity in days; 0: the sim's device validity) and
// writes it to a file; it returns the file and the certificate id.
func issueDevice(t *testing.T, s *simtest.Sim, thing, keyURI string, days int) (certFile, certID string) {
	t.Helper()
	ctx := context.Background()
	uri := keystore.MustParseURI(keyURI)
	if _, err := keys.Generate(ctx, uri, keystore.ECDSAP256, nil); err != nil {
		t.Fatal(err)
	}
	csr, err := keys.CSR(ctx, uri, thing, nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, certID, err := s.IssueThingCertificate(ctx, thing, string(csr), days)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, []byte(certPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, certID
}

// keyExists opens the key at uri in its module.
func keyExists(t *testing.T, uri string) bool {
	t.Helper()
	ctx := context.Background()
	u := keystore.MustParseURI(uri)
	store, err := keys.OpenStore(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = store.Open(ctx, u)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("open %s: %v", u.Redacted(), err)
	}
	return err == nil
}

// waitConnectedAs waits until thingd's status says connected with certID.
func waitConnectedAs(t *testing.T, cfg, certID string) {
	t.Helper()
	waitFor(t, 30*time.Second, "thingd connected with certificate "+certID[:12], func() bool {
		r := thingdStatus(t, cfg)
		return r.Daemon == "running" && r.Connection != nil && r.Connection.State == "connected" && r.CertificateID == certID
	})
}

const rotateDoc = `{"operation": "rotate-certificate"}`

func softHSMKey(t *testing.T, object string) (string, string) {
	tok := keystoretest.NewSoftHSMToken(t, "thingd")
	return tok.URI(object), tok.URI(object + "-slot-b")
}

// TestRotationEndToEnd: a job rotates the certificate of a thingd process
// with a SoftHSM key; thingsim shows the new certificate ACTIVE and the old
// INACTIVE and detached; the old key is gone from the token; thingd stays
// connected with the new certificate, also after a restart.
func TestRotationEndToEnd(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)

	s.CreateJob(t, "rotate-1", "gw-1", rotateDoc)
	ex := s.WaitJobExecution(t, "gw-1", "rotate-1", "SUCCEEDED", 60*time.Second)
	details := ex.StatusDetails.DetailsMap
	newID := details["newCertificateId"]
	if details["oldCertificateId"] != d.certID || len(newID) != 64 || details["step"] != "committed" {
		t.Fatalf("statusDetails %v", details)
	}
	s.WaitCertificateStatus(t, newID, "ACTIVE", 10*time.Second)
	// thingd works under the restrictive default device policy, which the
	// new certificate inherits from the old one.
	if pol := s.AttachedPolicies(t, newID); len(pol) != 1 || pol[0] != "thingd-device" {
		t.Fatalf("policies of the new certificate: %v", pol)
	}
	s.WaitCertificateStatus(t, d.certID, "INACTIVE", 30*time.Second)
	waitFor(t, 10*time.Second, "old certificate detached", func() bool {
		pr := s.ThingPrincipals(t, "gw-1")
		return len(pr) == 1 && pr[0] == newID
	})
	p.waitLog(t, 20*time.Second, "old key deleted")
	if keyExists(t, a) || !keyExists(t, b) {
		t.Fatal("after rotation the token must hold only the new key (slot B)")
	}
	waitConnectedAs(t, d.config, newID)
	r := thingdStatus(t, d.config)
	if r.Slot != "b" || r.Rotation.State != "idle" || r.Rotation.Last == nil || r.Rotation.Last.Result != "SUCCEEDED" ||
		r.Rotation.NextRenewal.IsZero() {
		t.Fatalf("status after rotation: %+v", r)
	}

	// A restart comes back on the new identity; a second rotation goes
	// back to slot A.
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	p = startThingd(t, d.config)
	waitConnectedAs(t, d.config, newID)
	s.CreateJob(t, "rotate-2", "gw-1", `{"operation": "rotate-certificate", "keyAlgorithm": "ECDSA_P384"}`)
	ex = s.WaitJobExecution(t, "gw-1", "rotate-2", "SUCCEEDED", 60*time.Second)
	third := ex.StatusDetails.DetailsMap["newCertificateId"]
	p.waitLog(t, 20*time.Second, "old key deleted")
	waitConnectedAs(t, d.config, third)
	if !keyExists(t, a) || keyExists(t, b) {
		t.Fatal("after the second rotation the token must hold only slot A")
	}
}

// TestRotationFaults: every cloud misbehaviour rolls back: FAILED with a
// reason naming the cause, the new key gone, the old identity still
// connected; a later clean job then succeeds.
func TestRotationFaults(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)

	tests := []struct {
		name   string
		faults sim.Faults
		step   string
		reason string
	}{
		{"csr rejected", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRReject, Count: 1, Message: "CSR refused by policy"}},
			"csr-sent", "400 InvalidCertificateSigningRequest: CSR refused by policy"},
		{"csr reply dropped", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRNoReply, Count: 1}},
			"csr-sent", "no reply to create-from-csr in 5s"},
		{"certificate for another key", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSROtherKey, Count: 1}},
			"cert-received", "for another public key than the new key"},
		{"certificate for another CN", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSROtherCN, Count: 1}},
			"cert-received", "certificate CN gw-1-other does not match thing name gw-1"},
		{"expired certificate", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRExpired, Count: 1}},
			"cert-received", "the new certificate expired at"},
		{"untrusted CA", sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRUntrustedCA, Count: 1}},
			"", ""}, // without device_ca the broker refuses it at verification; see TestRotationUntrustedCA
		{"RegisterThing rejected", sim.Faults{RegisterThing: provision.Fault{Kind: provision.RegisterReject, Count: 1}},
			"registered", "403 AccessDeniedException"},
		{"new certificate deactivated", sim.Faults{RegisterThing: provision.Fault{Kind: provision.RegisterDeactivate, Count: 1}},
			"verifying", "the new certificate did not connect within 10s"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.SetFaults(t, tc.faults)
			job := fmt.Sprintf("fault-%d", i)
			s.CreateJob(t, job, "gw-1", rotateDoc)
			ex := s.WaitJobExecution(t, "gw-1", job, "FAILED", 90*time.Second)
			got := ex.StatusDetails.DetailsMap
			if tc.step == "" {
				tc.step, tc.reason = "verifying", "the new certificate did not connect"
			}
			if got["step"] != tc.step || !strings.Contains(got["reason"], tc.reason) {
				t.Fatalf("statusDetails %v, want step %s and a reason containing %q", got, tc.step, tc.reason)
			}
			waitConnectedAs(t, d.config, d.certID)
			waitFor(t, 10*time.Second, "rotation idle", func() bool { return thingdStatus(t, d.config).Rotation.State == "idle" })
			if !keyExists(t, a) || keyExists(t, b) {
				t.Fatal("after rollback the token must hold only the old key")
			}
			if st := s.CertificateStatus(t, d.certID); st != "ACTIVE" {
				t.Fatalf("old certificate %s", st)
			}
		})
	}
	s.SetFaults(t, sim.Faults{})
	s.CreateJob(t, "after-faults", "gw-1", rotateDoc)
	s.WaitJobExecution(t, "gw-1", "after-faults", "SUCCEEDED", 60*time.Second)
	_ = p
}

// TestRotationUntrustedCA: with device_ca configured, a certificate from
// another CA is refused by thingd itself before it is registered.
func TestRotationUntrustedCA(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b, fmt.Sprintf("device_ca = %q\n", s.CAPath()))
	startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)
	s.SetFaults(t, sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRUntrustedCA, Count: 1}})
	s.CreateJob(t, "rogue", "gw-1", rotateDoc)
	ex := s.WaitJobExecution(t, "gw-1", "rogue", "FAILED", 60*time.Second)
	if got := ex.StatusDetails.DetailsMap; got["step"] != "cert-received" || !strings.Contains(got["reason"], "does not chain to the trusted device CAs") {
		t.Fatalf("statusDetails %v", got)
	}
	waitConnectedAs(t, d.config, d.certID)
}

// TestRotationRejectsBadDocument: a document thingd cannot act on is
// REJECTED with the reason; nothing changes.
func TestRotationRejectsBadDocument(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)
	s.CreateJob(t, "bad-alg", "gw-1", `{"operation": "rotate-certificate", "keyAlgorithm": "DSA_1024"}`)
	ex := s.WaitJobExecution(t, "gw-1", "bad-alg", "REJECTED", 30*time.Second)
	if !strings.Contains(ex.StatusDetails.DetailsMap["reason"], "keyAlgorithm") {
		t.Fatalf("statusDetails %v", ex.StatusDetails.DetailsMap)
	}
	s.CreateJob(t, "unknown-op", "gw-1", `{"operation": "reboot"}`)
	s.WaitJobExecution(t, "gw-1", "unknown-op", "REJECTED", 30*time.Second)
	if keyExists(t, b) {
		t.Fatal("a rejected job made a key")
	}
}
