package agent_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/testpki"
	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
)

// device is a thing with a SoftHSM key and a certificate from ca.
type device struct {
	thing    string
	keyURI   string
	certFile string
	id       *identity.Identity
	store    keystore.Store
}

func newDevice(t *testing.T, ca *testpki.CA, thing string) *device {
	t.Helper()
	tok := keystoretest.NewSoftHSMToken(t, "thingd")
	uriStr := tok.URI("device")
	uri := keystore.MustParseURI(uriStr)
	ctx := context.Background()
	store, err := keys.OpenStore(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key, err := store.Generate(ctx, uri, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := ca.Issue(t, thing, key.Public(), time.Now().Add(-time.Hour), time.Now().AddDate(0, 0, 30))
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := identity.New(thing, key, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &device{thing: thing, keyURI: uriStr, certFile: certFile, id: id, store: store}
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
