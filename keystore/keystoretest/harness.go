// Package keystoretest is the conformance suite every keystore backend runs:
// one test body, run against SoftHSM, the TPM simulator, swtpm and the file
// store alike.
package keystoretest

import (
	"testing"

	"github.com/thingd/thingd/keystore"
)

// Harness is what a backend gives the suite. Setup functions are called once
// per subtest, so each subtest gets a fresh module (a new SoftHSM token, a new
// TPM simulator state, a new directory).
type Harness struct {
	// Name is used in failure messages (e.g. "softhsm").
	Name string
	// NewStore opens a new Store on the module, as a restarted process would.
	// The suite closes every store it opens.
	NewStore func(t *testing.T) keystore.Store
	// KeyURI returns the URI of key slot n (0, 1, 2, ...) in the module. The
	// same n gives the same key; different n give different keys.
	KeyURI func(t *testing.T, n int) *keystore.URI
	// Algorithms lists what Generate supports; every other algorithm in
	// keystore.Algorithms must fail with keystore.ErrUnsupported.
	Algorithms []keystore.Algorithm
	// CheckNonExtractable asserts, through the vendor interface and not through
	// our own code, that the private key at uri cannot leave the module
	// (PKCS#11: reading CKA_VALUE fails and CKA_EXTRACTABLE is false; TPM: the
	// public area carries fixedTPM|fixedParent|sensitiveDataOrigin). Nil for
	// the file store, whose Info must then report Insecure.
	CheckNonExtractable func(t *testing.T, s keystore.Store, uri *keystore.URI)
	// Resources returns the number of module resources the store holds open
	// (PKCS#11 sessions, TPM transient handles). The suite checks that it
	// stays bounded under concurrent signing and comes back to its idle
	// value. Nil when the backend has none.
	Resources func(t *testing.T, s keystore.Store) int
	// Kind is the kind every KeyInfo must report.
	Kind keystore.Kind
	// ConcurrentSigns is the number of signs per goroutine in the concurrency
	// test (8 goroutines). Zero means 1,000, the conformance bar.
	ConcurrentSigns int
}

// Setup builds a fresh Harness for one subtest.
type Setup func(t *testing.T) *Harness
