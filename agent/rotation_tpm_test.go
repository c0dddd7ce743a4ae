package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/sim/simtest"
)

// TestRotationEndToEndTPM is TestRotationEndToEnd with the device key in a
// real TPM: swtpm over TCP, slot A at persistent handle 0x81000100 and slot
// B derived from it (0x81000101, no key_b in the config). A job rotates the
// certificate; thingsim shows the new certificate ACTIVE and the old
// INACTIVE and detached; the old persistent handle is evicted; thingd stays
// connected with the new certificate, also after a restart.
func TestRotationEndToEndTPM(t *testing.T) {
	tpm := keystoretest.StartSwtpm(t, keystoretest.SwtpmTCP)
	a, b := tpm.URI(0x81000100), tpm.URI(0x81000101)
	s := simtest.Start(t)
	d := newRotationDevice(t, s, "gw-tpm", a, "") // slot B derived: handle+1
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)
	if r := thingdStatus(t, d.config); r.KeyStore != keystore.KindTPM || r.Slot != "a" {
		t.Fatalf("status before rotation: keyStore %q, slot %q", r.KeyStore, r.Slot)
	}

	s.CreateJob(t, "rotate-tpm", "gw-tpm", rotateDoc)
	ex := s.WaitJobExecution(t, "gw-tpm", "rotate-tpm", "SUCCEEDED", 60*time.Second)
	details := ex.StatusDetails.DetailsMap
	newID := details["newCertificateId"]
	if details["oldCertificateId"] != d.certID || len(newID) != 64 || newID == d.certID || details["step"] != "committed" {
		t.Fatalf("statusDetails %v", details)
	}
	s.WaitCertificateStatus(t, newID, "ACTIVE", 10*time.Second)
	s.WaitCertificateStatus(t, d.certID, "INACTIVE", 30*time.Second)
	waitFor(t, 10*time.Second, "old certificate detached", func() bool {
		pr := s.ThingPrincipals(t, "gw-tpm")
		return len(pr) == 1 && pr[0] == newID
	})
	p.waitLog(t, 20*time.Second, "old key deleted")
	waitConnectedAs(t, d.config, newID)
	r := thingdStatus(t, d.config)
	if r.Slot != "b" || !strings.Contains(r.ActiveKey, "0x81000101") || r.Rotation.State != "idle" ||
		r.Rotation.Last == nil || r.Rotation.Last.Result != "SUCCEEDED" {
		t.Fatalf("status after rotation: %+v", r)
	}

	// swtpm serves one TCP client at a time and thingd holds the TPM while
	// it runs: stop it before looking at the persistent handles.
	if err := p.stop(t); err != nil {
		t.Fatalf("thingd exit: %v", err)
	}
	if keyExists(t, a) {
		t.Error("old key still at handle 0x81000100 after rotation")
	}
	if !keyExists(t, b) {
		t.Error("new key missing at derived slot B handle 0x81000101")
	}
	if t.Failed() {
		t.FailNow()
	}

	// A restart comes back on the new identity, from slot B.
	p = startThingd(t, d.config)
	waitConnectedAs(t, d.config, newID)
	if r := thingdStatus(t, d.config); r.Slot != "b" {
		t.Fatalf("slot after restart: %q", r.Slot)
	}
}
