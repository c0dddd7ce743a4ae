package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/keystore"
)

// memKey is an in-memory keystore.Key for unit tests of logic.
type memKey struct{ *ecdsa.PrivateKey }

func (k memKey) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return k.PrivateKey.Sign(r, d, o)
}
func (k memKey) Info() keystore.KeyInfo {
	return keystore.KeyInfo{Algorithm: keystore.ECDSAP256, Kind: keystore.KindFile, Location: "mem:test", Insecure: true}
}

func newKey(t *testing.T) memKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return memKey{k}
}

func certFor(t *testing.T, cn string, pub crypto.PublicKey, nb, na time.Time) []byte {
	t.Helper()
	ca := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestNew(t *testing.T) {
	now := time.Now()
	k, other := newKey(t), newKey(t)
	cases := []struct {
		name string
		pem  []byte
		want string
	}{
		{"ok", certFor(t, "gw-1", k.Public(), now, now.Add(time.Hour)), ""},
		{"cn mismatch", certFor(t, "gw-7", k.Public(), now, now.Add(time.Hour)), `certificate CN "gw-7" does not match thing name "gw-1"`},
		{"key mismatch", certFor(t, "gw-1", other.Public(), now, now.Add(time.Hour)), "does not match the key at mem:test"},
		{"junk", []byte("not pem"), "no PEM certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := New("gw-1", k, c.pem)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(id.CertificateID) != 64 || id.CertificateID != CertificateID(id.Leaf.Raw) {
					t.Fatalf("certificate id %q", id.CertificateID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestCheckTime(t *testing.T) {
	nb := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	na := nb.AddDate(1, 0, 0)
	build := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: nb, NotAfter: na}
	cases := []struct {
		name                  string
		now                   time.Time
		trusted, expired, nyv bool
		warn                  string
	}{
		{"valid", nb.AddDate(0, 1, 0), true, false, false, ""},
		{"rtc reset to 1970", time.Unix(0, 0), false, false, true, "not valid until"},
		{"before build, after notBefore", nb.Add(time.Hour), true, false, false, ""},
		{"expired", na.Add(time.Hour), true, true, false, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := CheckTime(cert, c.now, build)
			if tc.Trusted != c.trusted || tc.Expired != c.expired || tc.NotYetValid != c.nyv || !strings.Contains(tc.Warning, c.warn) || (c.warn == "" && tc.Warning != "") {
				t.Fatalf("CheckTime = %+v", tc)
			}
		})
	}
	// A clock before the build time is untrusted even if the certificate
	// is already valid.
	early := &x509.Certificate{NotBefore: time.Unix(0, 0), NotAfter: na}
	if tc := CheckTime(early, build.Add(-time.Hour), build); tc.Trusted || !strings.Contains(tc.Warning, "before this build") {
		t.Fatalf("clock before build: %+v", tc)
	}
}

func TestHolderSwap(t *testing.T) {
	now := time.Now()
	k1, k2 := newKey(t), newKey(t)
	id1, err := New("gw-1", k1, certFor(t, "gw-1", k1.Public(), now, now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	id2, err := New("gw-1", k2, certFor(t, "gw-1", k2.Public(), now, now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(id1)
	cfg := &tls.Config{GetClientCertificate: h.GetClientCertificate}
	c, _ := cfg.GetClientCertificate(nil)
	if c.Leaf == nil || CertificateID(c.Certificate[0]) != id1.CertificateID {
		t.Fatal("first identity not served")
	}
	if old := h.Set(id2); old != id1 {
		t.Fatal("Set did not return the previous identity")
	}
	c, _ = cfg.GetClientCertificate(nil)
	if CertificateID(c.Certificate[0]) != id2.CertificateID || c.PrivateKey != crypto.PrivateKey(k2) {
		t.Fatal("the same tls.Config did not pick up the new identity")
	}
	if _, err := (&Holder{}).GetClientCertificate(nil); err == nil {
		t.Fatal("empty holder served a certificate")
	}
}

func TestSerialHex(t *testing.T) {
	cases := []struct {
		serial int64
		want   string
	}{{7, "07"}, {0xabc, "0ABC"}, {0x1234, "1234"}}
	for _, c := range cases {
		if got := SerialHex(&x509.Certificate{SerialNumber: big.NewInt(c.serial)}); got != c.want {
			t.Errorf("SerialHex(%#x) = %q, want %q", c.serial, got, c.want)
		}
	}
}
