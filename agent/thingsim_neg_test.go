package agent_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/testpki"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/p11store"
)

// countLines counts log lines containing substr.
func countLines(s, substr string) int { return strings.Count(s, substr) }

func TestThingsimServerCAMismatch(t *testing.T) {
	s := startThingsim(t, t.TempDir(), "")
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	testpki.WriteFile(t, other, testpki.NewCA(t, "some other CA").PEM())
	cfg := writeConfig(t, configOpts{thing: "gw-1", endpoint: "localhost:" + s.port(), serverCA: other,
		key: dev.keyURI, cert: dev.certFile})
	p := startThingd(t, cfg)
	p.waitLog(t, 20*time.Second, "server certificate is not signed by a CA in server_ca")
	// It keeps trying with backoff rather than exiting.
	waitFor(t, 20*time.Second, "a second attempt", func() bool { return countLines(p.stderr.String(), "mqtt connect failed") >= 2 })
	if _, done := p.exited(0); done {
		t.Fatal("thingd exited on a TLS failure")
	}
	r := thingdStatus(t, cfg)
	if r.Connection == nil || r.Connection.State == "connected" || !strings.Contains(r.Connection.LastError, "server_ca") {
		t.Fatalf("status: %+v", r.Connection)
	}
}

func TestThingsimHostNameMismatch(t *testing.T) {
	// thingsim's server certificate names localhost, 127.0.0.1 and ::1;
	// listening on every address lets thingd dial 127.0.0.2 instead.
	s := startThingsim(t, t.TempDir(), "0.0.0.0:0")
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	cfg := writeConfig(t, configOpts{thing: "gw-1", endpoint: "127.0.0.2:" + s.port(), serverCA: s.info.CAFile,
		key: dev.keyURI, cert: dev.certFile})
	p := startThingd(t, cfg)
	p.waitLog(t, 20*time.Second, `server certificate is not valid for host \"127.0.0.2\"`)
}

func TestThingsimInactiveCertificate(t *testing.T) {
	s := startThingsim(t, t.TempDir(), "")
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	p := startThingd(t, dev.config(t, s))
	p.waitLog(t, 20*time.Second, "mqtt connected")
	ctx := context.Background()
	if err := s.api.UpdateCertificate(ctx, dev.certID, "INACTIVE"); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, 10*time.Second, "mqtt connection lost")
	// Refused, then backoff: several failed attempts, with growing attempt numbers.
	waitFor(t, 30*time.Second, "three refused attempts", func() bool { return countLines(p.stderr.String(), "mqtt connect failed") >= 3 })
	log := p.stderr.String()
	if !strings.Contains(log, "not Authorized") || !strings.Contains(log, "attempt=3") {
		t.Fatalf("thingd log does not show refusals with backoff:\n%s", log)
	}
	if !strings.Contains(s.log.String(), "rule=certificate-not-active") {
		t.Fatal("thingsim did not log the certificate-not-active refusal")
	}
	// Re-activated: thingd gets back on its own.
	if err := s.api.UpdateCertificate(ctx, dev.certID, "ACTIVE"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reconnect after re-activation", func() bool {
		return countLines(p.stderr.String(), "mqtt connected") >= 2
	})
}

func TestThingsimClientIDOfAnotherThing(t *testing.T) {
	s := startThingsim(t, t.TempDir(), "")
	ctx := context.Background()
	if _, err := s.api.CreateThing(ctx, "gw-2", nil); err != nil {
		t.Fatal(err)
	}
	// The certificate says gw-2 but is attached to gw-1 only.
	dev := newSimDevice(t, s, "gw-1", "gw-2")
	p := startThingd(t, dev.config(t, s))
	p.waitLog(t, 20*time.Second, "mqtt connect failed")
	if !strings.Contains(p.stderr.String(), "not Authorized") {
		t.Fatalf("thingd log:\n%s", p.stderr.String())
	}
	waitFor(t, 5*time.Second, "thingsim refusal log", func() bool {
		return strings.Contains(s.log.String(), "rule=client-id-not-attached-thing")
	})
}

func TestThingsimDuplicateClientID(t *testing.T) {
	s := startThingsim(t, t.TempDir(), "")
	w := newWatcher(t, s)
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	p := startThingd(t, dev.config(t, s))
	// Wait until thingd has finished its connect (subscriptions restored):
	// an impostor arriving earlier makes the connect attempt fail instead of
	// dropping an established session, which is a different path.
	p.waitLog(t, 20*time.Second, "mqtt connected")
	var first presenceEvent
	waitFor(t, 20*time.Second, "presence event of thingd's live session", func() bool {
		first = w.last("gw-1", "connected")
		return first.SessionIdentifier != "" && !w.ended(first.SessionIdentifier)
	})

	// An impostor with the same identity (same token, same key) connects
	// once, without reconnecting.
	ctx := context.Background()
	uri := keystore.MustParseURI(dev.keyURI)
	store, err := p11store.Open(ctx, uri, p11store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	key, err := store.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(dev.certFile)
	id, err := identity.New("gw-1", key, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfigCA(t, s.info.CAFile, tls.Certificate{})
	cfg.Certificates = nil
	cfg.GetClientCertificate = identity.NewHolder(id).GetClientCertificate
	imp := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://localhost:" + s.port()).SetClientID("gw-1").
		SetTLSConfig(cfg).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := imp.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("impostor connect: %v", tok.Error())
	}
	defer imp.Disconnect(0)

	// The older session (thingd's) is kicked and says so on both sides.
	kicked := w.wait(t, 20*time.Second, "gw-1", "disconnected", func(ev presenceEvent) bool {
		return ev.SessionIdentifier == first.SessionIdentifier
	})
	if kicked.DisconnectReason != "DUPLICATE_CLIENTID" {
		t.Fatalf("older session's disconnect reason = %q", kicked.DisconnectReason)
	}
	p.waitLog(t, 20*time.Second, "mqtt connection lost")
	// thingd comes back within its backoff cap (2 s) and in turn kicks the
	// impostor, which does not reconnect.
	waitFor(t, 20*time.Second, "thingd reconnects", func() bool { return countLines(p.stderr.String(), "mqtt connected") >= 2 })
	waitFor(t, 20*time.Second, "impostor kicked", func() bool { return !imp.IsConnectionOpen() })
}

func TestThingsimBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	s := startThingsim(t, dir, "")
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	p := startThingd(t, dev.config(t, s))
	p.waitLog(t, 20*time.Second, "mqtt connected")

	addr := s.info.MQTTAddress
	s.stop(t)
	p.waitLog(t, 10*time.Second, "mqtt connection lost")
	time.Sleep(1500 * time.Millisecond) // a few failed attempts while it is down
	s2 := startThingsim(t, dir, addr)
	restartedAt := time.Now()
	// The backoff cap is 2 s: thingd must be back well within cap + connect time.
	waitFor(t, 8*time.Second, "reconnect after broker restart", func() bool {
		return countLines(p.stderr.String(), "mqtt connected") >= 2
	})
	t.Logf("reconnected %v after the broker came back", time.Since(restartedAt).Round(time.Millisecond))
	if !strings.Contains(s2.log.String(), "gw-1") {
		t.Fatal("the restarted thingsim did not see gw-1")
	}
}
