// Package identity holds the device's current identity — its key in the key
// store and its certificate — and serves it to TLS through
// GetClientCertificate, so a rotation swaps it without rebuilding any
// connection setup.
package identity

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/thingd/thingd/keystore"
)

// Identity is a key and the certificate issued for it.
type Identity struct {
	// ThingName is the thing the certificate names (its Subject CN).
	ThingName string
	// Key signs for the identity; it stays in its module.
	Key keystore.Key
	// Leaf is the device certificate; Chain is it followed by any
	// intermediates, DER-encoded.
	Leaf  *x509.Certificate
	Chain [][]byte
	// CertificateID is the AWS IoT certificate id: lowercase hex SHA-256 of
	// the leaf's DER.
	CertificateID string
	tlsCert       tls.Certificate
}

// CertificateID returns the AWS IoT id of a DER certificate.
func CertificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParseChain decodes PEM certificates, leaf first.
func ParseChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("identity: no PEM certificate found")
	}
	return certs, nil
}

// New checks that certPEM was issued to thingName for key and returns the
// identity. It refuses a certificate whose CN is not the thing name or whose
// public key is not the key's: connecting with either can only fail, or
// worse, succeed as another thing.
func New(thingName string, key keystore.Key, certPEM []byte) (*Identity, error) {
	certs, err := ParseChain(certPEM)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != thingName {
		return nil, fmt.Errorf("identity: certificate CN %q does not match thing name %q", leaf.Subject.CommonName, thingName)
	}
	if !keystore.SamePublicKey(key.Public(), leaf.PublicKey) {
		fpKey, _ := keystore.Fingerprint(key.Public())
		fpCert, _ := keystore.Fingerprint(leaf.PublicKey)
		return nil, fmt.Errorf("identity: certificate public key (sha256 %s) does not match the key at %s (sha256 %s)",
			short(fpCert), key.Info().Location, short(fpKey))
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	id := &Identity{
		ThingName:     thingName,
		Key:           key,
		Leaf:          leaf,
		Chain:         chain,
		CertificateID: CertificateID(leaf.Raw),
	}
	id.tlsCert = keystore.TLSCertificate(key, chain)
	return id, nil
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// Load reads the certificate file and builds the identity with New.
func Load(thingName string, key keystore.Key, certFile string) (*Identity, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("identity: read certificate: %w", err)
	}
	id, err := New(thingName, key, data)
	if err != nil {
		return nil, fmt.Errorf("%w (certificate file %s)", err, certFile)
	}
	return id, nil
}

// TimeCheck is what the clock says about a certificate.
type TimeCheck struct {
	// Trusted is false while the clock is before the certificate's notBefore
	// or before the build time: nothing may be rotated or deleted on its word.
	Trusted bool
	// Expired and NotYetValid describe the certificate at now.
	Expired, NotYetValid bool
	// Warning is a sentence for logs and status, empty when all is well.
	Warning string
}

// CheckTime judges cert at now. buildTime is when thingd was built (a clock
// earlier than that is certainly wrong); zero skips that check.
func CheckTime(cert *x509.Certificate, now, buildTime time.Time) TimeCheck {
	tc := TimeCheck{Trusted: true}
	if now.Before(cert.NotBefore) {
		tc.NotYetValid = true
		tc.Trusted = false
		tc.Warning = fmt.Sprintf("certificate is not valid until %s but the clock says %s: the clock is probably wrong; connecting anyway, rotation and deletion are suspended until time is trusted",
			cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	} else if now.After(cert.NotAfter) {
		tc.Expired = true
		tc.Warning = fmt.Sprintf("certificate expired at %s (clock says %s): connecting anyway and letting the server decide",
			cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !buildTime.IsZero() && now.Before(buildTime) {
		tc.Trusted = false
		w := fmt.Sprintf("clock says %s, before this build of thingd (%s): time is untrusted, rotation and deletion are suspended",
			now.UTC().Format(time.RFC3339), buildTime.UTC().Format(time.RFC3339))
		if tc.Warning == "" {
			tc.Warning = w
		} else {
			tc.Warning += "; " + w
		}
	}
	return tc
}

// Holder keeps the current identity for concurrent readers. Its
// GetClientCertificate method is set on tls.Config, so every handshake uses
// whatever identity is current at that moment.
type Holder struct {
	mu  sync.RWMutex
	cur *Identity
}

// NewHolder returns a holder with id current.
func NewHolder(id *Identity) *Holder { return &Holder{cur: id} }

// Current returns the current identity.
func (h *Holder) Current() *Identity {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// Set makes id current for the next handshake and returns the previous one.
func (h *Holder) Set(id *Identity) *Identity {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.cur
	h.cur = id
	return old
}

// GetClientCertificate serves the current identity to crypto/tls.
func (h *Holder) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	id := h.Current()
	if id == nil {
		return nil, errors.New("identity: no identity loaded")
	}
	c := id.tlsCert
	return &c, nil
}

// SerialHex formats a certificate serial number as openssl does: upper-case
// hex with an even number of digits.
func SerialHex(c *x509.Certificate) string {
	s := strings.ToUpper(c.SerialNumber.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}
