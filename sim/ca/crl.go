package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Revocation is one entry of the CA's revocation list.
type Revocation struct {
	SerialNumber *big.Int
	RevokedAt    time.Time
}

// revocations is the CA's certificate revocation list: what Device
// Defender's REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK compares the
// registry with. A CA loaded from a directory keeps it there as crl.pem, a
// real X.509 CRL signed by the root; an ephemeral CA in memory only.
type revocations struct {
	mu      sync.Mutex // guards the following
	entries []Revocation
	number  int64 // CRL number of the last list written
}

// loadCRL reads DIR/crl.pem if there is one; it must be signed by the root.
func (c *CA) loadCRL() error {
	data, err := os.ReadFile(filepath.Join(c.dir, CRLFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("ca: read revocation list: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return fmt.Errorf("ca: %s: no PEM X509 CRL block", CRLFile)
	}
	list, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return fmt.Errorf("ca: parse %s: %w", CRLFile, err)
	}
	if err := list.CheckSignatureFrom(c.cert); err != nil {
		return fmt.Errorf("ca: %s is not signed by the root: %w", CRLFile, err)
	}
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	for _, e := range list.RevokedCertificateEntries {
		c.crl.entries = append(c.crl.entries, Revocation{SerialNumber: e.SerialNumber, RevokedAt: e.RevocationTime})
	}
	if list.Number != nil {
		c.crl.number = list.Number.Int64()
	}
	return nil
}

// Revoke adds a serial number to the CA's revocation list (and rewrites
// crl.pem); added is false if it was there already. Revoking does not change
// the certificate's status in the registry: that is UpdateCertificate's job,
// and a certificate revoked here but still ACTIVE there is what the audit
// check REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK finds.
func (c *CA) Revoke(serial *big.Int, now time.Time) (added bool, err error) {
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	if c.isRevokedLocked(serial) {
		return false, nil
	}
	entries := append(slices.Clone(c.crl.entries), Revocation{SerialNumber: new(big.Int).Set(serial), RevokedAt: now.UTC().Truncate(time.Second)})
	if c.dir != "" {
		if err := c.writeCRL(entries, c.crl.number+1, now); err != nil {
			return false, err
		}
	}
	c.crl.entries = entries
	c.crl.number++
	return true, nil
}

// IsRevoked reports whether the serial number is on the CA's revocation list.
func (c *CA) IsRevoked(serial *big.Int) bool {
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	return c.isRevokedLocked(serial)
}

func (c *CA) isRevokedLocked(serial *big.Int) bool {
	return slices.ContainsFunc(c.crl.entries, func(r Revocation) bool { return r.SerialNumber.Cmp(serial) == 0 })
}

// Revocations returns the revocation list, oldest first.
func (c *CA) Revocations() []Revocation {
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	out := make([]Revocation, len(c.crl.entries))
	for i, r := range c.crl.entries {
		out[i] = Revocation{SerialNumber: new(big.Int).Set(r.SerialNumber), RevokedAt: r.RevokedAt}
	}
	return out
}

// Issued reports whether the certificate was signed by this CA.
func (c *CA) Issued(cert *x509.Certificate) bool {
	return cert.CheckSignatureFrom(c.cert) == nil
}

// writeCRL signs the entries into a CRL numbered number, valid for 30 days
// from now, and writes it to crl.pem.
func (c *CA) writeCRL(entries []Revocation, number int64, now time.Time) error {
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: now.UTC().Add(-time.Minute),
		NextUpdate: now.UTC().Add(30 * 24 * time.Hour),
	}
	for _, e := range entries {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: e.SerialNumber, RevocationTime: e.RevokedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		return fmt.Errorf("ca: sign revocation list: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(c.dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("ca: write revocation list: %w", err)
	}
	return nil
}
