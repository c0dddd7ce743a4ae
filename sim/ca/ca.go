// Package ca is thingsim's certificate authority: a root CA (ECDSA P-256), the
// broker's server certificate for localhost, and signing of device CSRs. Keys
// and certificates live as PEM files in the simulator's data directory and
// are reused on restart.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the data directory.
const (
	CertFile       = "ca.pem"         // root CA certificate devices must trust
	CRLFile        = "crl.pem"        // certificate revocation list of the root (see Revoke)
	KeyFile        = "ca-key.pem"     // root CA private key (mode 0600)
	ServerCertFile = "server.pem"     // broker certificate, signed by the root
	ServerKeyFile  = "server-key.pem" // broker private key (mode 0600)
)

// ServerNames are the DNS names and IP addresses in the broker certificate.
var ServerNames = []string{"localhost", "127.0.0.1", "::1"}

// CA is a loaded root CA with its server certificate. It is safe for
// concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	server  tls.Certificate
	dir     string

	crl revocations // guarded by its own mutex; see crl.go
}

// LoadOrCreate loads the CA and server certificate from dir, creating any
// that are missing. A server certificate that expires within 30 days, or that
// was not signed by the current root, is reissued.
func LoadOrCreate(dir string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create directory: %w", err)
	}
	c := &CA{dir: dir}
	if err := c.loadOrCreateRoot(now); err != nil {
		return nil, err
	}
	if err := c.loadOrCreateServer(now); err != nil {
		return nil, err
	}
	if err := c.loadCRL(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CA) loadOrCreateRoot(now time.Time) error {
	certPath, keyPath := filepath.Join(c.dir, CertFile), filepath.Join(c.dir, KeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("ca: load root from %s: %w", c.dir, err)
		}
		c.cert, c.certPEM, c.key = cert, certPEM, key
		return nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return fmt.Errorf("ca: read root certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return fmt.Errorf("ca: read root key: %w", keyErr)
	default:
		return fmt.Errorf("ca: only one of %s and %s exists in %s; remove the other or restore it", CertFile, KeyFile, c.dir)
	}

	key, err := c.generateRoot("thingsim root CA", now)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := WriteFileAtomic(certPath, c.certPEM, 0o644); err != nil {
		return fmt.Errorf("ca: write root certificate: %w", err)
	}
	return nil
}

// generateRoot makes a new self-signed root key and certificate for c.
func (c *CA) generateRoot(commonName string, now time.Time) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"thingsim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse new root certificate: %w", err)
	}
	c.cert, c.certPEM, c.key = cert, EncodeCertificate(der), key
	return key, nil
}

// NewEphemeral returns a throwaway root CA that lives only in memory: no
// files, no server certificate (ServerCertificate returns an empty one,
// CertPath ""). Nothing trusts it; the simulator uses it to hand out
// certificates from an untrusted issuer on purpose.
func NewEphemeral(commonName string, now time.Time) (*CA, error) {
	c := &CA{}
	if _, err := c.generateRoot(commonName, now); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CA) loadOrCreateServer(now time.Time) error {
	certPath, keyPath := filepath.Join(c.dir, ServerCertFile), filepath.Join(c.dir, ServerKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	if certErr == nil && keyErr == nil {
		cert, _, err := parsePair(certPEM, keyPEM)
		if err == nil && cert.CheckSignatureFrom(c.cert) == nil && now.Add(30*24*time.Hour).Before(cert.NotAfter) {
			pair, err := tls.X509KeyPair(append(certPEM, c.certPEM...), keyPEM)
			if err != nil {
				return fmt.Errorf("ca: load server key pair: %w", err)
			}
			c.server = pair
			return nil
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"thingsim"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return fmt.Errorf("ca: create server certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := WriteFileAtomic(certPath, EncodeCertificate(der), 0o644); err != nil {
		return fmt.Errorf("ca: write server certificate: %w", err)
	}
	c.server = tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key}
	return nil
}

// Certificate returns the root CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertificatePEM returns the root CA certificate in PEM form (the content of
// ca.pem).
func (c *CA) CertificatePEM() []byte { return append([]byte(nil), c.certPEM...) }

// CertPath returns the path of ca.pem, the file devices must trust ("" for
// an ephemeral CA).
func (c *CA) CertPath() string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, CertFile)
}

// Pool returns a new pool holding only the root CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ServerCertificate returns the broker's TLS certificate (chain includes the
// root).
func (c *CA) ServerCertificate() tls.Certificate { return c.server }

// SignCSR checks the CSR's signature and issues a client certificate for its
// public key and subject, valid from now-1h until now+validity. It returns the
// certificate in DER form.
func (c *CA) SignCSR(csr *x509.CertificateRequest, now time.Time, validity time.Duration) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: CSR signature: %w", err)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("ca: validity %v must be positive", validity)
	}
	return c.Issue(csr.PublicKey, csr.Subject, now.Add(-time.Hour), now.Add(validity))
}

// Issue signs a client certificate for pub and subject valid from notBefore
// to notAfter (truncated to seconds), without any checks: the simulator uses
// it for the faults it injects (a certificate for another key, another
// subject, or one already expired). It returns the certificate in DER form.
func (c *CA) Issue(pub crypto.PublicKey, subject pkix.Name, notBefore, notAfter time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    notBefore.Truncate(time.Second),
		NotAfter:     notAfter.Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign certificate for %q: %w", subject.CommonName, err)
	}
	return der, nil
}

// ParseCSR decodes a PEM "CERTIFICATE REQUEST" block.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, errors.New("ca: no PEM CERTIFICATE REQUEST block found")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: parse CSR: %w", err)
	}
	return csr, nil
}

// ParseCertificatePEM decodes the first PEM CERTIFICATE block.
func ParseCertificatePEM(pemBytes []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("ca: no PEM CERTIFICATE block found")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: parse certificate: %w", err)
	}
	return cert, nil
}

// CertificateID returns the AWS IoT certificate id of a DER certificate: the
// lowercase hex SHA-256 of the DER bytes.
func CertificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// EncodeCertificate returns der as a PEM CERTIFICATE block.
func EncodeCertificate(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// WriteFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: marshal key: %w", err)
	}
	if err := WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("ca: write key %s: %w", path, err)
	}
	return nil
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("no PEM block in key file")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return cert, signer, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: random serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
