package keystoretest

import (
	"crypto"
	"crypto/rsa"

	"github.com/thingd/thingd/keystore"
)

// SignCase is one way of signing with one algorithm, for the backends'
// benchmarks; the names are shared so the figures line up across stores.
type SignCase struct {
	Name string
	Alg  keystore.Algorithm
	PSS  bool
}

// SignCases are the signing benchmarks every store runs.
var SignCases = []SignCase{
	{"ecdsa-p256", keystore.ECDSAP256, false},
	{"ecdsa-p384", keystore.ECDSAP384, false},
	{"rsa-2048", keystore.RSA2048, false},
	{"rsa-2048-pss", keystore.RSA2048, true},
	{"rsa-3072", keystore.RSA3072, false},
	{"rsa-3072-pss", keystore.RSA3072, true},
}

// Opts are the signer options of the case: SHA-256, with PSS (salt length
// equal to the hash) when PSS is set, as TLS 1.3 asks.
func (c SignCase) Opts() crypto.SignerOpts {
	if c.PSS {
		return &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	}
	return crypto.SHA256
}
