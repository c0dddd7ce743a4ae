package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

func TestParseAlgorithm(t *testing.T) {
	cases := []struct {
		in   string
		want Algorithm
		err  bool
	}{
		{"", ECDSAP256, false},
		{"ecdsa-p256", ECDSAP256, false},
		{"ECDSA_P384", ECDSAP384, false},
		{"RSA_2048", RSA2048, false},
		{"rsa-3072", RSA3072, false},
		{"rsa-1024", "", true},
		{"ed25519", "", true},
	}
	for _, c := range cases {
		got, err := ParseAlgorithm(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q, err=%v", c.in, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseAlgorithm(%q) error does not wrap ErrUnsupported", c.in)
		}
	}
}

func TestCheckDigest(t *testing.T) {
	cases := []struct {
		name   string
		n      int
		opts   crypto.SignerOpts
		errSub string
	}{
		{"sha256 ok", 32, crypto.SHA256, ""},
		{"sha384 ok", 48, crypto.SHA384, ""},
		{"pss ok", 64, &rsa.PSSOptions{Hash: crypto.SHA512}, ""},
		{"short", 31, crypto.SHA256, "digest is 31 bytes, SHA-256 needs 32"},
		{"raw", 32, crypto.Hash(0), "without a hash"},
		{"nil opts", 32, nil, "nil SignerOpts"},
	}
	for _, c := range cases {
		err := CheckDigest(make([]byte, c.n), c.opts)
		if c.errSub == "" && err != nil || c.errSub != "" && (err == nil || !strings.Contains(err.Error(), c.errSub)) {
			t.Errorf("%s: CheckDigest = %v, want %q", c.name, err, c.errSub)
		}
	}
}

func TestCreateCSR(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []crypto.Signer{ec, rk} {
		p, err := CreateCSR(k, "gw-1")
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ParseCSR(p)
		if err != nil {
			t.Fatal(err)
		}
		if csr.Subject.CommonName != "gw-1" || !SamePublicKey(csr.PublicKey, k.Public()) {
			t.Fatalf("CSR CN %q / key mismatch", csr.Subject.CommonName)
		}
	}
	if _, err := CreateCSR(ec, ""); err == nil {
		t.Fatal("empty thing name accepted")
	}
	if _, err := CreateCSR(ec, strings.Repeat("a", 129)); err == nil {
		t.Fatal("129-byte thing name accepted")
	}
	if _, err := ParseCSR([]byte("junk")); err == nil {
		t.Fatal("junk CSR accepted")
	}
}

func TestFingerprint(t *testing.T) {
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fa, err := Fingerprint(a.Public())
	if err != nil || len(fa) != 64 {
		t.Fatalf("Fingerprint = %q, %v", fa, err)
	}
	fa2, _ := Fingerprint(a.Public())
	fb, _ := Fingerprint(b.Public())
	if fa != fa2 || fa == fb {
		t.Fatal("fingerprint not stable or not distinct")
	}
}
