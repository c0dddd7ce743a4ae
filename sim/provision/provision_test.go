package provision

import (
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newService(t *testing.T, grace time.Duration) *Service {
	t.Helper()
	dir := t.TempDir()
	authority, err := ca.LoadOrCreate(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Registry: reg, CA: authority, Disconnect: func(string) int { return 0 }, RotationGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		reg.Close()
	})
	return s
}

func TestSerialMatches(t *testing.T) {
	serial, _ := new(big.Int).SetString("1fa03c", 16) // 2072636
	for param, want := range map[string]bool{
		"2072636": true, "1fa03c": true, "1FA03C": true, "0x1fa03c": true, "1f:a0:3c": true, "001fa03c": true,
		"2072637": false, "": false, "serial": false, "1fa03d": false,
	} {
		if got := serialMatches(param, serial); got != want {
			t.Errorf("serialMatches(%q, 0x1fa03c) = %v, want %v", param, got, want)
		}
	}
}

func TestFaultsValidate(t *testing.T) {
	for _, tc := range []struct {
		f  Faults
		ok bool
	}{
		{Faults{}, true},
		{Faults{CreateFromCSR: Fault{Kind: CSRUntrustedCA, Count: 3}, RegisterThing: Fault{Kind: RegisterDeactivate}}, true},
		{Faults{CreateFromCSR: Fault{Kind: RegisterDeactivate}}, false},
		{Faults{RegisterThing: Fault{Kind: CSRNoReply}}, false},
		{Faults{RegisterThing: Fault{Kind: RegisterReject, Count: -1}}, false},
	} {
		if err := tc.f.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.f, err, tc.ok)
		}
	}
}

// A fault with a count applies to that many requests and then disappears;
// one without applies until replaced.
func TestFaultCounts(t *testing.T) {
	s := newService(t, 0)
	csr := func(f *Faults) *Fault { return &f.CreateFromCSR }
	reg := func(f *Faults) *Fault { return &f.RegisterThing }
	if err := s.SetFaults(Faults{CreateFromCSR: Fault{Kind: CSRReject, Count: 2}, RegisterThing: Fault{Kind: RegisterReject}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		got = append(got, s.takeFault(csr).Kind, s.takeFault(reg).Kind)
	}
	want := []string{CSRReject, RegisterReject, CSRReject, RegisterReject, "", RegisterReject}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("faults taken = %q, want %q", got, want)
		}
	}
	if f := s.Faults(); f.CreateFromCSR != (Fault{}) || f.RegisterThing.Kind != RegisterReject {
		t.Errorf("faults left = %+v", f)
	}
	if err := s.SetFaults(Faults{CreateFromCSR: Fault{Kind: "explode"}}); err == nil {
		t.Error("SetFaults accepted an unknown kind")
	}
}

// Only rotate-certificate documents with both certificate ids schedule a
// retirement.
func TestRotationSucceededSchedules(t *testing.T) {
	s := newService(t, time.Hour)
	ids := map[string]string{"newCertificateId": "n", "oldCertificateId": "o"}
	s.RotationSucceeded("dev1", `{"operation":"reboot"}`, ids)
	s.RotationSucceeded("dev1", `not json`, ids)
	s.RotationSucceeded("dev1", `{"operation":"rotate-certificate"}`, map[string]string{"newCertificateId": "n"})
	if n := s.scheduled(); n != 0 {
		t.Fatalf("%d retirements scheduled for non-rotations", n)
	}
	s.RotationSucceeded("dev1", `{"operation":"rotate-certificate","keyAlgorithm":"ECDSA_P256"}`, ids)
	if n := s.scheduled(); n != 1 {
		t.Errorf("%d retirements scheduled, want 1", n)
	}
}

func (s *Service) scheduled() int { return s.timers.Len() }
