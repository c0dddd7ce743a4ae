package ca_test

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/ca"
)

// Revoke keeps a CRL signed by the root in crl.pem, which survives a
// reload.
func TestRevocationList(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c, err := ca.LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsRevoked(big.NewInt(7)) || len(c.Revocations()) != 0 {
		t.Fatal("a new CA has revocations")
	}
	for i, serial := range []int64{7, 9, 7} {
		added, err := c.Revoke(big.NewInt(serial), now.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; added != want {
			t.Errorf("Revoke(%d) added = %v, want %v", serial, added, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, ca.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	list, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.CheckSignatureFrom(c.Certificate()); err != nil || len(list.RevokedCertificateEntries) != 2 || list.Number.Int64() != 2 {
		t.Errorf("crl.pem: %d entries, number %v, signature %v; want 2 entries, number 2, signed by the root",
			len(list.RevokedCertificateEntries), list.Number, err)
	}
	reloaded, err := ca.LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	got := reloaded.Revocations()
	if len(got) != 2 || got[0].SerialNumber.Int64() != 7 || !got[1].RevokedAt.Equal(now.Add(time.Minute)) || !reloaded.IsRevoked(big.NewInt(9)) {
		t.Errorf("reloaded revocations %+v, want 7 and 9", got)
	}
	if added, err := reloaded.Revoke(big.NewInt(11), now); err != nil || !added {
		t.Errorf("Revoke after reload = %v, %v", added, err)
	}

	eph, err := ca.NewEphemeral("x", now)
	if err != nil {
		t.Fatal(err)
	}
	if added, err := eph.Revoke(big.NewInt(1), now); err != nil || !added || !eph.IsRevoked(big.NewInt(1)) {
		t.Errorf("ephemeral CA: Revoke = %v, %v", added, err)
	}
}
