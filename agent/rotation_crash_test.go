package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/simtest"
)

// TestRotationCrashMatrix kills thingd with SIGKILL right after each
// rotation journal write (a thingd built with the crashhook tag), restarts
// it, and checks every case ends connected with a working identity, one key
// in the token and the job in a terminal state.
func TestRotationCrashMatrix(t *testing.T) {
	s := simtest.Start(t)
	tests := []struct {
		step string
		want string // terminal job status after the restart
		// newIdentity: the device ends on the new certificate.
		newIdentity bool
	}{
		{"started", "FAILED", false},
		{"key-generated", "FAILED", false},
		{"csr-sent", "FAILED", false},
		{"cert-received", "FAILED", false},
		{"registered", "FAILED", false}, // crashed before RegisterThing went out: the new certificate never works
		{"verifying", "SUCCEEDED", true},
		{"committed", "SUCCEEDED", true},
		{"cleaned", "SUCCEEDED", true},
	}
	for i, tc := range tests {
		t.Run(tc.step, func(t *testing.T) {
			thing := fmt.Sprintf("gw-crash-%d", i)
			a, b := softHSMKey(t, "device")
			d := newRotationDevice(t, s, thing, a, b, "verify_timeout = \"5s\"\n")
			d.config = strings.Replace(readFile(t, d.config), "verify_timeout = \"10s\"\n", "", 1)
			p := startThingdBin(t, crashBin, []string{"THINGD_TEST_CRASH_AFTER=" + tc.step}, writeFile(t, d.config))
			cfg := p.config
			waitConnectedAs(t, cfg, d.certID)
			job := "crash-" + tc.step
			s.CreateJob(t, job, thing, rotateDoc)
			err, done := p.exited(60 * time.Second)
			if !done || err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("thingd did not die at step %s: done=%v err=%v", tc.step, done, err)
			}
			p2 := startThingd(t, cfg)
			ex := s.WaitJobExecution(t, thing, job, tc.want, 60*time.Second)
			wantID := d.certID
			if tc.newIdentity {
				wantID = ex.StatusDetails.DetailsMap["newCertificateId"]
			}
			if tc.want == "FAILED" && ex.StatusDetails.DetailsMap["reason"] == "" {
				t.Fatalf("FAILED without a reason: %v", ex.StatusDetails.DetailsMap)
			}
			waitConnectedAs(t, cfg, wantID)
			waitFor(t, 20*time.Second, "rotation idle and the other key gone", func() bool {
				return thingdStatus(t, cfg).Rotation.State == "idle"
			})
			if got := s.CertificateStatus(t, wantID); got != "ACTIVE" {
				t.Fatalf("certificate in use is %s", got)
			}
			activeKey, otherKey := a, b
			if tc.newIdentity {
				activeKey, otherKey = b, a
			}
			if err := p2.stop(t); err != nil {
				t.Fatal(err)
			}
			if !keyExists(t, activeKey) || keyExists(t, otherKey) {
				t.Fatalf("token must hold exactly the active key (%s)", activeKey)
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "thingd.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRotationBrokerRestart: the broker goes away while thingd waits for
// the create-from-csr reply; the rotation rolls back cleanly, the FAILED
// report reaches the restarted cloud, and the next job succeeds.
func TestRotationBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	s := simtest.StartWith(t, sim.Options{Dir: dir})
	addr := s.MQTTAddr()
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	p := startThingd(t, d.config)
	waitConnectedAs(t, d.config, d.certID)

	s.SetFaults(t, sim.Faults{CreateFromCSR: provision.Fault{Kind: provision.CSRNoReply, Count: 1}})
	s.CreateJob(t, "during-restart", "gw-1", rotateDoc)
	p.waitLog(t, 20*time.Second, "step=csr-sent")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	s2 := simtest.StartWith(t, sim.Options{Dir: dir, MQTTAddr: addr})
	ex := s2.WaitJobExecution(t, "gw-1", "during-restart", "FAILED", 60*time.Second)
	if ex.StatusDetails.DetailsMap["step"] != "csr-sent" {
		t.Fatalf("statusDetails %v", ex.StatusDetails.DetailsMap)
	}
	waitConnectedAs(t, d.config, d.certID)
	s2.CreateJob(t, "after-restart", "gw-1", rotateDoc)
	ex = s2.WaitJobExecution(t, "gw-1", "after-restart", "SUCCEEDED", 60*time.Second)
	waitConnectedAs(t, d.config, ex.StatusDetails.DetailsMap["newCertificateId"])
}

// TestRenewalWithoutJob: a certificate inside its renewal window is renewed
// by thingd itself, with no job: new certificate ACTIVE and attached, the
// device connected with it, the old key deleted.
func TestRenewalWithoutJob(t *testing.T) {
	// Certificates issued over MQTT or without a validity live 3 minutes
	// (plus the sim's one hour of backdating): already in the window.
	s := simtest.StartWith(t, sim.Options{DeviceCertValidity: 3 * time.Minute})
	a, b := softHSMKey(t, "device")
	certFile, certID := issueDevice(t, s, "gw-1", a, 0)
	_, port, _ := strings.Cut(s.MQTTAddr(), ":")
	cfg := writeConfig(t, configOpts{thing: "gw-1", endpoint: "localhost:" + port, serverCA: s.CAPath(), key: a, cert: certFile,
		extra: fmt.Sprintf("\n[rotation]\nkey_b = %q\n\n[renewal]\nfraction = 0.9\ncheck_interval = \"1h\"\n", b)})
	// The sim's certificates have whole-second validity: let a second pass
	// so the renewed one really expires later (thingd refuses one that
	// does not).
	time.Sleep(1100 * time.Millisecond)
	p := startThingd(t, cfg)
	p.waitLog(t, 60*time.Second, "renewing without a job")
	p.waitLog(t, 60*time.Second, "old key deleted")
	r := thingdStatus(t, cfg)
	if r.CertificateID == certID || r.Rotation.Last == nil || !strings.HasPrefix(r.Rotation.Last.ID, "renewal-") ||
		r.Rotation.Last.Result != "SUCCEEDED" || r.Rotation.Last.OldCertificateID != certID {
		t.Fatalf("status after renewal: %+v", r)
	}
	waitConnectedAs(t, cfg, r.CertificateID)
	if got := s.CertificateStatus(t, r.CertificateID); got != "ACTIVE" {
		t.Fatalf("new certificate %s", got)
	}
	if pr := s.ThingPrincipals(t, "gw-1"); len(pr) != 2 {
		t.Fatalf("principals %v (the old certificate is retired by the cloud only after a job)", pr)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	if keyExists(t, a) || !keyExists(t, b) {
		t.Fatal("old key left after renewal")
	}
}
