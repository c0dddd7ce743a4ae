package tpmstore_test

import (
	"fmt"
	"testing"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// What each TPM implements (measured: the go-tpm-tools simulator is built
// without RSA-3072; swtpm 0.7.1 / libtpms has all four).
var (
	simulatorAlgorithms = []keystore.Algorithm{keystore.ECDSAP256, keystore.ECDSAP384, keystore.RSA2048}
	swtpmAlgorithms     = []keystore.Algorithm{keystore.ECDSAP256, keystore.ECDSAP384, keystore.RSA2048, keystore.RSA3072}
)

// concurrentSigns is the suite's bar: 8 goroutines x 1,000 signs. A TPM
// signs in about 1 ms whatever the transport, so this costs ~9 s per TPM.
const concurrentSigns = 1000

func checkNonExtractable(t *testing.T, s keystore.Store, uri *keystore.URI) {
	t.Helper()
	attrs, err := s.(*tpmstore.Store).PublicAttributes(ctxT(t), uri)
	if err != nil {
		t.Fatalf("PublicAttributes(%s): %v", uri, err)
	}
	if !attrs.FixedTPM || !attrs.FixedParent || !attrs.SensitiveDataOrigin {
		t.Fatalf("public area of %s: fixedTPM=%v fixedParent=%v sensitiveDataOrigin=%v, want all set",
			uri, attrs.FixedTPM, attrs.FixedParent, attrs.SensitiveDataOrigin)
	}
	if !attrs.NoDA || !attrs.SignEncrypt || attrs.Decrypt || attrs.Restricted {
		t.Fatalf("public area of %s: noDA=%v sign=%v decrypt=%v restricted=%v, want an unrestricted noDA signing key",
			uri, attrs.NoDA, attrs.SignEncrypt, attrs.Decrypt, attrs.Restricted)
	}
}

func transientResources(t *testing.T, s keystore.Store) int {
	t.Helper()
	n, err := s.(*tpmstore.Store).TransientHandles(ctxT(t))
	if err != nil {
		t.Fatalf("TransientHandles: %v", err)
	}
	return n
}

// TestConformanceSimulator runs the keystore suite on a fresh in-process
// simulator per subtest, injected through Options.Transport.
func TestConformanceSimulator(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) *keystoretest.Harness {
		sim := newSimulator(t)
		return &keystoretest.Harness{
			Name:       "tpm-simulator",
			Kind:       keystore.KindTPM,
			Algorithms: simulatorAlgorithms,
			NewStore:   func(t *testing.T) keystore.Store { return openSimStore(t, sim) },
			KeyURI: func(t *testing.T, n int) *keystore.URI {
				return keystore.MustParseURI(fmt.Sprintf("tpm:handle=%#x", 0x81000100+uint32(n)))
			},
			CheckNonExtractable: checkNonExtractable,
			Resources:           transientResources,
			ConcurrentSigns:     concurrentSigns,
		}
	})
}

// TestConformanceSwtpm runs the keystore suite on a real swtpm process per
// subtest, reached through the key URI (device=unix:...), as the agent does.
// The unixio transport connects once per command, so several Stores can
// share the swtpm (the suite reopens keys while the first Store is open);
// over tcp: swtpm serves one connection at a time, which the tests in
// tpmstore_test.go cover.
func TestConformanceSwtpm(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) *keystoretest.Harness {
		p := keystoretest.StartSwtpm(t, keystoretest.SwtpmUnix)
		return &keystoretest.Harness{
			Name:                "swtpm",
			Kind:                keystore.KindTPM,
			Algorithms:          swtpmAlgorithms,
			NewStore:            func(t *testing.T) keystore.Store { return openSwtpm(t, p) },
			KeyURI:              func(t *testing.T, n int) *keystore.URI { return swtpmURI(p, 0x81000100+uint32(n)) },
			CheckNonExtractable: checkNonExtractable,
			Resources:           transientResources,
			ConcurrentSigns:     concurrentSigns,
		}
	})
}
