// Package simtest runs thingsim in process for tests (ports 0, a temporary
// data directory, logs captured and printed when the test fails) and makes
// device keys, CSRs and certificates. End-to-end tests of the agent can use it
// as they would use httptest for an HTTP peer:
//
//	s := simtest.Start(t)
//	dev := s.NewDevice(t, "dev1")            // thing + ACTIVE certificate attached
//	cfg := s.TLSConfig(dev.TLSCertificate)   // for ssl://s.MQTTAddr()
//	s.CreateJob(t, "rotate-1", "dev1", `{"operation":"rotate-certificate"}`)
//	ex := s.WaitJobExecution(t, "dev1", "rotate-1", "SUCCEEDED", time.Minute)
//	s.WaitCertificateStatus(t, ex.StatusDetails.DetailsMap["oldCertificateId"], "INACTIVE", 5*time.Second)
//	s.UpdateDesired(t, "dev1", "", `{"config":{"logLevel":"debug"}}`) // classic shadow ("" name)
//	s.WaitReported(t, "dev1", "", 5*time.Second, func(r map[string]any) bool { return r["config"] != nil })
//
// The helpers fail the test (t.Fatal) on any error; the cloud-side ones go
// through the admin API, as the thingsim CLI does.
package simtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/ca"
)

// Buffer is a bytes.Buffer safe for concurrent writers (a log sink).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Sim is an in-process simulator with captured debug logs.
type Sim struct {
	*sim.Server
	Logs *Buffer
}

// DefaultRotationGrace is the rotation grace of the simulators started here
// unless Options say otherwise (the simulator's own default is 60 s).
const DefaultRotationGrace = time.Second

// Start starts a simulator in a new temporary directory; see StartWith.
func Start(t testing.TB) *Sim { return StartWith(t, sim.Options{}) }

// StartIn starts a simulator on dir; see StartWith.
func StartIn(t testing.TB, dir string) *Sim { return StartWith(t, sim.Options{Dir: dir}) }

// StartWith starts a simulator with opts, filling in what is unset: a new
// temporary Dir, the MQTT broker and admin API on free loopback ports, a
// debug Logger into Sim.Logs, and a RotationGrace of DefaultRotationGrace. It
// is closed when the test ends; its logs are printed if the test failed.
func StartWith(t testing.TB, opts sim.Options) *Sim {
	t.Helper()
	logs := &Buffer{}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = "127.0.0.1:0"
	}
	if opts.APIAddr == "" {
		opts.APIAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.RotationGrace == 0 {
		opts.RotationGrace = DefaultRotationGrace
	}
	srv, err := sim.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start thingsim: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close thingsim: %v", err)
		}
		if t.Failed() {
			t.Logf("thingsim logs:\n%s", logs)
		}
	})
	return &Sim{Server: srv, Logs: logs}
}

// WaitLog waits up to 5 s for a log line containing all of parts.
func (s *Sim) WaitLog(t testing.TB, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for line := range strings.SplitSeq(s.Logs.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no thingsim log line with %q", parts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Device is a thing's key and certificate.
type Device struct {
	Name           string
	Key            *ecdsa.PrivateKey
	CertificateID  string
	CertificatePEM string
	TLSCertificate tls.Certificate
}

// NewDevice creates (if needed) the thing name, issues an ACTIVE certificate
// with CN=name for a new in-memory ECDSA P-256 key and attaches it. The
// certificate has no policy attached, so it works in thingsim's open mode
// (any topic but other things' Jobs and Shadow topics; see package broker);
// NewPolicyDevice makes one under policies.
func (s *Sim) NewDevice(t testing.TB, name string) Device {
	t.Helper()
	d := s.issueDevice(t, name)
	s.DetachAllPolicies(t, d.CertificateID)
	return d
}

// issueDevice is NewDevice with the simulator's default policies.
func (s *Sim) issueDevice(t testing.TB, name string) Device {
	t.Helper()
	key, csr := NewCSR(t, name)
	certPEM, id, err := s.IssueThingCertificate(t.Context(), name, csr, 0)
	if err != nil {
		t.Fatalf("issue certificate for %s: %v", name, err)
	}
	return Device{Name: name, Key: key, CertificateID: id, CertificatePEM: certPEM, TLSCertificate: TLSCertificate(t, []byte(certPEM), key)}
}

// TLSConfig returns a client TLS configuration trusting the simulator's CA
// for "localhost" and presenting cert (none if cert is nil).
func (s *Sim) TLSConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: s.CAPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// NewCSR returns a new ECDSA P-256 key and a PEM CSR for it with CN=cn.
func NewCSR(t testing.TB, cn string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TLSCertificate pairs a PEM certificate with its key.
func TLSCertificate(t testing.TB, certPEM []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	c, err := ca.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}
