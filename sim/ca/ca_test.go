package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/ca"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func load(t *testing.T, dir string, now time.Time) *ca.CA {
	t.Helper()
	c, err := ca.LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serverLeaf(t *testing.T, c *ca.CA) *x509.Certificate {
	t.Helper()
	sc := c.ServerCertificate()
	if len(sc.Certificate) == 0 {
		t.Fatal("no server certificate")
	}
	leaf, err := x509.ParseCertificate(sc.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestLoadOrCreateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim") // created by LoadOrCreate
	c := load(t, dir, t0)
	for _, tc := range []struct {
		file string
		mode os.FileMode
		typ  string
	}{
		{ca.CertFile, 0o644, "CERTIFICATE"},
		{ca.KeyFile, 0o600, "PRIVATE KEY"},
		{ca.ServerCertFile, 0o644, "CERTIFICATE"},
		{ca.ServerKeyFile, 0o600, "PRIVATE KEY"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %#o, want %#o", fi.Mode().Perm(), tc.mode)
			}
			if b, _ := pem.Decode(readFile(t, path)); b == nil || b.Type != tc.typ {
				t.Errorf("not a PEM %s block", tc.typ)
			}
		})
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %#o, want 0700", fi.Mode().Perm())
	}
	if got, want := c.CertPath(), filepath.Join(dir, ca.CertFile); got != want {
		t.Errorf("CertPath = %q, want %q", got, want)
	}
	if !bytes.Equal(c.CertificatePEM(), readFile(t, c.CertPath())) {
		t.Error("CertificatePEM differs from ca.pem")
	}
	// CertificatePEM returns a copy.
	p := c.CertificatePEM()
	p[0] = 'X'
	if c.CertificatePEM()[0] == 'X' {
		t.Error("CertificatePEM returned the CA's own buffer")
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover file %s", e.Name())
		}
	}
}

func TestRootCertificate(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	root := c.Certificate()
	if !root.IsCA || !root.BasicConstraintsValid || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root: IsCA %v, key usage %b", root.IsCA, root.KeyUsage)
	}
	if root.Subject.CommonName != "thingsim root CA" {
		t.Errorf("root CN = %q", root.Subject.CommonName)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", root.PublicKey)
	}
	if !root.NotBefore.Before(t0) || root.NotAfter.Before(t0.AddDate(10, 0, 0)) {
		t.Errorf("root validity %v..%v around %v", root.NotBefore, root.NotAfter, t0)
	}
	pooled := c.Pool()
	if _, err := root.Verify(x509.VerifyOptions{Roots: pooled, CurrentTime: t0}); err != nil {
		t.Errorf("root does not verify against Pool(): %v", err)
	}
}

func TestServerCertificate(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	sc := c.ServerCertificate()
	if len(sc.Certificate) != 2 || !bytes.Equal(sc.Certificate[1], c.Certificate().Raw) {
		t.Fatalf("server chain has %d certificates, want leaf + root", len(sc.Certificate))
	}
	if sc.PrivateKey == nil {
		t.Fatal("server certificate has no private key")
	}
	leaf := serverLeaf(t, c)
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("server ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.Pool(), CurrentTime: t0,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	for _, name := range []string{"example.com", "10.0.0.1", "iot.us-east-1.amazonaws.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.Pool(), CurrentTime: t0}); err == nil {
			t.Errorf("server certificate verifies for %s", name)
		}
	}
	if !slices.Equal(ca.ServerNames, []string{"localhost", "127.0.0.1", "::1"}) {
		t.Errorf("ServerNames = %v", ca.ServerNames)
	}
}

// TestTLSHandshake runs a real TLS 1.3 handshake against the server
// certificate, trusting only ca.pem, as a device does.
func TestTLSHandshake(t *testing.T) {
	c := load(t, t.TempDir(), time.Now())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{c.ServerCertificate()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- conn.(*tls.Conn).Handshake()
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(readFile(t, c.CertPath())) {
		t.Fatal("ca.pem has no certificate")
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Errorf("server handshake: %v", err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	first := load(t, dir, t0)
	second := load(t, dir, t0.Add(24*time.Hour))
	if !bytes.Equal(first.Certificate().Raw, second.Certificate().Raw) {
		t.Error("reload made a new root")
	}
	if !bytes.Equal(first.ServerCertificate().Certificate[0], second.ServerCertificate().Certificate[0]) {
		t.Error("reload made a new server certificate although the old one is valid for years")
	}
	// A certificate issued by the first instance chains to the reloaded root.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := first.Issue(key.Public(), pkix.Name{CommonName: "gw-1"}, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := cert.CheckSignatureFrom(second.Certificate()); err != nil {
		t.Errorf("certificate from before the reload: %v", err)
	}
}

func TestServerReissue(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		prepare func(t *testing.T, dir string)
		now     time.Time
		reissue bool
		newRoot bool
	}{
		{"valid for long", func(*testing.T, string) {}, t0.AddDate(1, 0, 0), false, false},
		{"expires within 30 days", func(*testing.T, string) {}, t0.AddDate(2, 0, -20), true, false},
		{"server key missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ca.ServerKeyFile))
		}, t0, true, false},
		{"server certificate garbage", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ca.ServerCertFile), []byte("garbage"), 0o644)
		}, t0, true, false},
		{"root replaced", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ca.CertFile))
			os.Remove(filepath.Join(dir, ca.KeyFile))
		}, t0, true, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			before := load(t, dir, t0)
			oldLeaf := serverLeaf(t, before)
			tc.prepare(t, dir)
			after := load(t, dir, tc.now)
			newLeaf := serverLeaf(t, after)
			if reissued := !bytes.Equal(oldLeaf.Raw, newLeaf.Raw); reissued != tc.reissue {
				t.Errorf("server certificate reissued = %v, want %v", reissued, tc.reissue)
			}
			if replaced := !bytes.Equal(before.Certificate().Raw, after.Certificate().Raw); replaced != tc.newRoot {
				t.Errorf("root replaced = %v, want %v", replaced, tc.newRoot)
			}
			if err := newLeaf.CheckSignatureFrom(after.Certificate()); err != nil {
				t.Errorf("server certificate not signed by the current root: %v", err)
			}
			if !tc.now.Add(30 * 24 * time.Hour).Before(newLeaf.NotAfter) {
				t.Errorf("server certificate expires %v, within 30 days of %v", newLeaf.NotAfter, tc.now)
			}
			// What is on disk is what is served.
			onDisk, err := ca.ParseCertificatePEM(readFile(t, filepath.Join(dir, ca.ServerCertFile)))
			if err != nil || !bytes.Equal(onDisk.Raw, newLeaf.Raw) {
				t.Errorf("server.pem does not hold the served certificate (%v)", err)
			}
		})
	}
}

func TestLoadBroken(t *testing.T) {
	otherKey := func(t *testing.T) []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		desc    string
		prepare func(t *testing.T, dir string)
		errPart string
	}{
		{"only ca.pem", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ca.KeyFile)) }, "only one of"},
		{"only ca-key.pem", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ca.CertFile)) }, "only one of"},
		{"key of another CA", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ca.KeyFile), otherKey(t), 0o600)
		}, "does not match"},
		{"ca.pem not PEM", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ca.CertFile), []byte("not a certificate"), 0o644)
		}, "CERTIFICATE"},
		{"ca-key.pem not PEM", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ca.KeyFile), []byte("not a key"), 0o600)
		}, "PEM"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			load(t, dir, t0)
			tc.prepare(t, dir)
			_, err := ca.LoadOrCreate(dir, t0)
			if err == nil {
				t.Fatal("LoadOrCreate succeeded")
			}
			if !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("error %q does not mention %q", err, tc.errPart)
			}
		})
	}
}

func newCSR(t *testing.T, cn string, key any) (*x509.CertificateRequest, []byte) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignCSR(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := t0.Add(1500 * time.Millisecond) // not on a second: the certificate truncates
	for _, tc := range []struct {
		desc     string
		cn       string
		key      crypto.Signer
		validity time.Duration
	}{
		{"p256 one year", "gw-1", ecKey, 365 * 24 * time.Hour},
		{"p384 one day", "gw-2", p384, 24 * time.Hour},
		{"rsa one hour", "thing:with_colon", rsaKey, time.Hour},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			csr, _ := newCSR(t, tc.cn, tc.key)
			der, err := c.SignCSR(csr, now, tc.validity)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tc.cn)
			}
			if !cert.NotBefore.Equal(now.Add(-time.Hour).Truncate(time.Second)) {
				t.Errorf("NotBefore = %v, want %v", cert.NotBefore, now.Add(-time.Hour).Truncate(time.Second))
			}
			if !cert.NotAfter.Equal(now.Add(tc.validity).Truncate(time.Second)) {
				t.Errorf("NotAfter = %v, want %v", cert.NotAfter, now.Add(tc.validity).Truncate(time.Second))
			}
			if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(tc.key.Public()) {
				t.Error("certificate public key is not the CSR's")
			}
			if cert.IsCA {
				t.Error("device certificate is a CA")
			}
			opts := x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("does not chain to the CA as a client certificate: %v", err)
			}
			opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if _, err := cert.Verify(opts); err == nil {
				t.Error("device certificate is valid for server auth")
			}
			opts.KeyUsages, opts.CurrentTime = nil, now.Add(tc.validity+time.Second)
			if _, err := cert.Verify(opts); err == nil {
				t.Error("certificate still valid after its validity")
			}
			if got, want := ca.CertificateID(der), sha256.Sum256(der); got != hex.EncodeToString(want[:]) {
				t.Errorf("CertificateID = %s", got)
			}
		})
	}

	// Two certificates for the same CSR have different serials.
	csr, _ := newCSR(t, "gw-1", ecKey)
	a, _ := c.SignCSR(csr, now, time.Hour)
	b, _ := c.SignCSR(csr, now, time.Hour)
	ca1, _ := x509.ParseCertificate(a)
	ca2, _ := x509.ParseCertificate(b)
	if ca1.SerialNumber.Cmp(ca2.SerialNumber) == 0 || ca1.SerialNumber.Sign() <= 0 {
		t.Errorf("serials %v and %v", ca1.SerialNumber, ca2.SerialNumber)
	}
}

func TestSignCSRRefused(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := newCSR(t, "gw-1", key)
	tampered := *csr
	tampered.Signature = slices.Clone(csr.Signature)
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff
	// A CSR whose signature is by another key than the one it carries.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	swapped := *csr
	swapped.PublicKey = other.Public()
	for _, tc := range []struct {
		desc     string
		csr      *x509.CertificateRequest
		validity time.Duration
		errPart  string
	}{
		{"bad signature", &tampered, time.Hour, "CSR signature"},
		{"key not the signer", &swapped, time.Hour, "CSR signature"},
		{"zero validity", csr, 0, "validity"},
		{"negative validity", csr, -time.Hour, "validity"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			der, err := c.SignCSR(tc.csr, t0, tc.validity)
			if err == nil || der != nil {
				t.Fatalf("SignCSR(csr, %v) = %d bytes, %v; want an error", tc.validity, len(der), err)
			}
			if !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("SignCSR(csr, %v) error %q does not mention %q", tc.validity, err, tc.errPart)
			}
		})
	}
}

func TestIssueWithoutChecks(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// Already expired, and for any subject: Issue is for injected faults.
	der, err := c.Issue(key.Public(), pkix.Name{CommonName: "someone-else", Organization: []string{"x"}}, t0.Add(-48*time.Hour), t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if cert.Subject.CommonName != "someone-else" || !cert.NotAfter.Equal(t0.Add(-24*time.Hour)) {
		t.Errorf("issued %q until %v", cert.Subject.CommonName, cert.NotAfter)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("expired certificate verifies")
	}
	if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
}

func TestNewEphemeral(t *testing.T) {
	persistent := load(t, t.TempDir(), t0)
	eph, err := ca.NewEphemeral("rogue CA", t0)
	if err != nil {
		t.Fatal(err)
	}
	if eph.CertPath() != "" {
		t.Errorf("ephemeral CertPath = %q", eph.CertPath())
	}
	if len(eph.ServerCertificate().Certificate) != 0 {
		t.Error("ephemeral CA has a server certificate")
	}
	if eph.Certificate().Subject.CommonName != "rogue CA" || !eph.Certificate().IsCA {
		t.Errorf("ephemeral root %q IsCA %v", eph.Certificate().Subject.CommonName, eph.Certificate().IsCA)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := newCSR(t, "gw-1", key)
	der, err := eph.SignCSR(csr, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: eph.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not chain to the ephemeral root: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: persistent.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("certificate of the ephemeral CA chains to the thingsim root")
	}
	two, _ := ca.NewEphemeral("rogue CA", t0)
	if bytes.Equal(two.Certificate().Raw, eph.Certificate().Raw) {
		t.Error("two ephemeral CAs are the same")
	}
}

func TestParseCSR(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, csrPEM := newCSR(t, "gw-1", key)
	block, _ := pem.Decode(csrPEM)
	newStyle := pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: block.Bytes})
	asCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x01, 0x01, 0x00}})
	for _, tc := range []struct {
		desc string
		in   []byte
		ok   bool
	}{
		{"CERTIFICATE REQUEST", csrPEM, true},
		{"with text before", append([]byte("subject=CN=gw-1\n"), csrPEM...), true},
		{"NEW CERTIFICATE REQUEST", newStyle, true},
		{"CERTIFICATE block", asCert, false},
		{"bad DER", garbage, false},
		{"not PEM", []byte("hello"), false},
		{"empty", nil, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			csr, err := ca.ParseCSR(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseCSR(%.30q) error = %v, want ok %v", tc.in, err, tc.ok)
			}
			if tc.ok && csr.Subject.CommonName != "gw-1" {
				t.Errorf("ParseCSR(%.30q) CN = %q, want gw-1", tc.in, csr.Subject.CommonName)
			}
		})
	}
}

func TestCertificatePEMHelpers(t *testing.T) {
	c := load(t, t.TempDir(), t0)
	der := c.Certificate().Raw
	p := ca.EncodeCertificate(der)
	if !bytes.HasPrefix(p, []byte("-----BEGIN CERTIFICATE-----\n")) {
		t.Errorf("EncodeCertificate = %q", p)
	}
	back, err := ca.ParseCertificatePEM(p)
	if err != nil || !bytes.Equal(back.Raw, der) {
		t.Errorf("ParseCertificatePEM(EncodeCertificate) = %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("x"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})} {
		if _, err := ca.ParseCertificatePEM(bad); err == nil {
			t.Errorf("ParseCertificatePEM(%q) succeeded", bad)
		}
	}
	if id := ca.CertificateID(der); len(id) != 64 || strings.ToLower(id) != id {
		t.Errorf("CertificateID = %q, want 64 lowercase hex digits", id)
	}
	if ca.CertificateID(der) == ca.CertificateID(serverLeaf(t, c).Raw) {
		t.Error("two certificates share an id")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		mode os.FileMode
	}{
		{"first", 0o600},
		{"second, longer than the first", 0o644},
		{"3", 0o600},
	} {
		if err := ca.WriteFileAtomic(path, []byte(tc.data), tc.mode); err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, path)); got != tc.data {
			t.Errorf("content %q, want %q", got, tc.data)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != tc.mode {
			t.Errorf("mode %#o, want %#o", fi.Mode().Perm(), tc.mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only f", len(entries))
	}
	if err := ca.WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

// The server certificate names are addresses the broker listens on.
func TestServerNamesParse(t *testing.T) {
	leaf := serverLeaf(t, load(t, t.TempDir(), t0))
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, net.ParseIP("127.0.0.1").String()) || !slices.Contains(ips, "::1") || !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("server certificate names: DNS %v, IP %v", leaf.DNSNames, ips)
	}
}
