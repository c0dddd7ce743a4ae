package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/internal/testpki"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
)

// TestThingdRefusesBeforeDialling checks the start-up refusals: each must
// exit non-zero with a message naming the cause and never dial the broker.
func TestThingdRefusesBeforeDialling(t *testing.T) {
	ca := testpki.NewCA(t, "refusal CA")
	dev := newDevice(t, ca, "gw-1")
	dev.store.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM())

	// A certificate for another key.
	other := keystore.MustParseURI("file:" + filepath.Join(t.TempDir(), "other.pem"))
	ok, err := filestore.New().Generate(context.Background(), other, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	otherCert := filepath.Join(t.TempDir(), "other-cert.pem")
	testpki.WriteFile(t, otherCert, ca.Issue(t, "gw-1", ok.Public(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))

	// The broker address is a port nobody listens on: a dial would be logged.
	endpoint := fmt.Sprintf("localhost:%d", freePort(t))
	wrongPIN := strings.Replace(dev.keyURI, "pin-source=file:", "pin-value=77777&x-unused=", 1)
	cases := []struct {
		name string
		o    configOpts
		want string
	}{
		{"clientid is not the certificate CN", configOpts{thing: "gw-2", key: dev.keyURI, cert: dev.certFile},
			`certificate CN "gw-1" does not match thing name "gw-2"`},
		{"certificate for another key", configOpts{thing: "gw-1", key: dev.keyURI, cert: otherCert},
			"certificate public key"},
		{"wrong PIN", configOpts{thing: "gw-1", key: wrongPIN, cert: dev.certFile}, "wrong PIN"},
		{"missing module", configOpts{thing: "gw-1", cert: dev.certFile,
			key: "pkcs11:token=thingd;object=device?module-path=/nonexistent/libp11.so&pin-value=1234"}, "/nonexistent/libp11.so"},
		{"missing key", configOpts{thing: "gw-1", cert: dev.certFile, key: strings.Replace(dev.keyURI, "object=device", "object=nothere", 1)},
			"not found"},
		{"missing certificate", configOpts{thing: "gw-1", key: dev.keyURI, cert: "/nonexistent/cert.pem"}, "/nonexistent/cert.pem"},
		{"unknown config key", configOpts{thing: "gw-1", key: dev.keyURI, cert: dev.certFile, extra: "colour = \"blue\"\n"},
			"colour: unknown key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.endpoint, c.o.serverCA = endpoint, caFile
			p := startThingd(t, writeConfig(t, c.o))
			err, done := p.exited(20 * time.Second)
			if !done {
				t.Fatal("thingd kept running")
			}
			if err == nil {
				t.Fatal("thingd exited 0")
			}
			log := p.stderr.String()
			if !strings.Contains(log, c.want) {
				t.Fatalf("log lacks %q:\n%s", c.want, log)
			}
			if strings.Contains(log, "mqtt") {
				t.Fatalf("thingd tried to connect before refusing:\n%s", log)
			}
			if strings.Contains(log, "77777") || strings.Contains(log, "ud-pin-4821") {
				t.Fatalf("a PIN appears in the log:\n%s", log)
			}
		})
	}
}
