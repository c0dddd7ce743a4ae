package tpmstore_test

import (
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// busyTPM answers the next n commands with code rc instead of passing them
// to the TPM, as a busy or self-testing TPM does.
type busyTPM struct {
	sharedTPM
	mu   sync.Mutex
	rc   tpm2.TPMRC
	n    int
	seen int
}

func (b *busyTPM) refuse(rc tpm2.TPMRC, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rc, b.n, b.seen = rc, n, 0
}

func (b *busyTPM) Send(cmd []byte) ([]byte, error) {
	b.mu.Lock()
	if b.n > 0 {
		b.n--
		b.seen++
		b.mu.Unlock()
		rsp := make([]byte, 10)
		binary.BigEndian.PutUint16(rsp[0:], uint16(tpm2.TPMSTNoSessions))
		binary.BigEndian.PutUint32(rsp[2:], 10)
		binary.BigEndian.PutUint32(rsp[6:], uint32(b.rc))
		return rsp, nil
	}
	b.mu.Unlock()
	return b.sharedTPM.Send(cmd)
}

func TestRetry(t *testing.T) {
	busy := &busyTPM{sharedTPM: newSimulator(t)}
	s, err := tpmstore.Open(ctxT(t), nil, tpmstore.Options{Transport: busy})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := generate(t, s, simKeyURI, keystore.ECDSAP256)
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting} {
		busy.refuse(rc, 3)
		signVerify(t, k)
		if busy.seen != 3 {
			t.Fatalf("%v: %d refusals seen, want 3", rc, busy.seen)
		}
	}
	// A TPM that stays busy: Sign gives up with the TPM's code.
	busy.refuse(tpm2.TPMRCRetry, 1000)
	_, err = k.Sign(nil, make([]byte, 32), crypto.SHA256)
	if !errors.Is(err, tpm2.TPMRCRetry) || !strings.Contains(err.Error(), "TPM2_Sign") {
		t.Fatalf("Sign on a TPM that stays busy: got %v, want TPM_RC_RETRY naming TPM2_Sign", err)
	}
	if busy.seen < 3 || busy.seen > 20 {
		t.Fatalf("Sign tried %d times, want a few", busy.seen)
	}
	busy.refuse(0, 0)
	// Other errors are not retried.
	busy.refuse(tpm2.TPMRCLockout, 1000)
	if _, err := k.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, tpm2.TPMRCLockout) || busy.seen != 1 {
		t.Fatalf("TPM_RC_LOCKOUT: got %v after %d tries, want it after 1", err, busy.seen)
	}
	busy.refuse(0, 0)
}

func TestContextCancelled(t *testing.T) {
	s := openSimStore(t, newSimulator(t))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 { // the lock is free: a racy select would sometimes take it
		if _, err := s.Generate(ctx, simKeyURI, keystore.ECDSAP256); !errors.Is(err, context.Canceled) {
			t.Fatalf("Generate with a cancelled context: %v", err)
		}
	}
	if _, err := s.Open(context.Background(), simKeyURI); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a cancelled Generate left something behind: %v", err)
	}
}

// TestProductionDeps checks that the package itself links neither the
// simulator nor cgo: it lists its dependencies with CGO_ENABLED=0.
func TestProductionDeps(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("CGO_ENABLED=0 go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/google/go-tpm-tools") || strings.HasSuffix(dep, "transport/simulator") {
			t.Errorf("tpmstore depends on %s", dep)
		}
	}
}
