package keystore

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// CreateCSR builds a PKCS #10 certificate request with Subject CN = thingName,
// signed by key inside its module, and returns it PEM-encoded. RSA keys sign
// with PKCS #1 v1.5 and SHA-256; ECDSA P-256 with SHA-256, P-384 with SHA-384.
func CreateCSR(key crypto.Signer, thingName string) ([]byte, error) {
	return createCSR(rand.Reader, key, thingName)
}

func createCSR(r io.Reader, key crypto.Signer, thingName string) ([]byte, error) {
	if thingName == "" {
		return nil, errors.New("keystore: csr: empty thing name")
	}
	if len(thingName) > 128 {
		return nil, fmt.Errorf("keystore: csr: thing name is %d bytes, at most 128 allowed", len(thingName))
	}
	alg, err := AlgorithmOf(key.Public())
	if err != nil {
		return nil, fmt.Errorf("keystore: csr: %w", err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: thingName}}
	switch alg {
	case ECDSAP256:
		tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	case ECDSAP384:
		tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
	default:
		tmpl.SignatureAlgorithm = x509.SHA256WithRSA
	}
	der, err := x509.CreateCertificateRequest(r, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("keystore: csr: sign request for %q: %w", thingName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR decodes a PEM certificate request and checks its signature.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("keystore: csr: no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keystore: csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("keystore: csr: signature: %w", err)
	}
	return csr, nil
}

// SamePublicKey reports whether a and b are the same public key.
func SamePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
