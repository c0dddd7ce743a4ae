package tpmstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// sharedTPM hands Stores a TPM they must not close: Close is a no-op, so
// several Stores can be opened on one simulator, and Send is serialised
// because the simulator is not safe for concurrent use.
type sharedTPM struct {
	mu  *sync.Mutex
	tpm transport.TPM
}

func share(tpm transport.TPM) sharedTPM { return sharedTPM{mu: new(sync.Mutex), tpm: tpm} }

func (s sharedTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tpm.Send(cmd)
}

func (sharedTPM) Close() error { return nil }

// newSimulator starts a fresh go-tpm-tools simulator, closed in t.Cleanup.
// The simulator is process-global: a second one waits until the first is
// closed, so tests using it must not run in parallel.
func newSimulator(t testing.TB) sharedTPM {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return share(sim)
}

// openSimStore opens a Store on a shared simulator; closing the Store leaves
// the simulator running.
func openSimStore(t testing.TB, sim sharedTPM) *tpmstore.Store {
	t.Helper()
	s, err := tpmstore.Open(context.Background(), nil, tpmstore.Options{Transport: sim})
	if err != nil {
		t.Fatalf("tpmstore.Open(simulator): %v", err)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// swtpmURI returns the key URI for handle on p.
func swtpmURI(p *keystoretest.Swtpm, handle uint32) *keystore.URI {
	return keystore.MustParseURI(p.URI(handle))
}

// openSwtpm opens a Store on p through the URI, as the agent would.
func openSwtpm(t testing.TB, p *keystoretest.Swtpm) *tpmstore.Store {
	t.Helper()
	s, err := tpmstore.Open(ctxT(t), swtpmURI(p, 0x81000100), tpmstore.Options{})
	if err != nil {
		t.Fatalf("tpmstore.Open(%s): %v", p.Device(), err)
	}
	return s
}
