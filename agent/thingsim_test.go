package agent_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/simtest"
)

// thingsimProc is thingsim running as a process.
type thingsimProc struct {
	dir  string
	mqtt string // address to ask for (kept across restarts)
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
	info sim.Info
	api  *api.Client
}

func startThingsim(t *testing.T, dir, mqttAddr string) *thingsimProc {
	t.Helper()
	if mqttAddr == "" {
		mqttAddr = "127.0.0.1:0"
	}
	s := &thingsimProc{dir: dir, mqtt: mqttAddr, log: &syncBuffer{}, done: make(chan error, 1)}
	os.Remove(filepath.Join(dir, "api.json"))
	s.cmd = exec.Command(thingsimBin, "serve", "--dir", dir, "--mqtt", mqttAddr, "--api", "127.0.0.1:0", "--log-level", "debug")
	s.cmd.Stderr, s.cmd.Stdout = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("thingsim log:\n%s", s.log.String())
		}
	})
	waitFor(t, 20*time.Second, "thingsim api.json", func() bool {
		info, err := sim.ReadInfo(dir)
		if err == nil && info.PID == s.cmd.Process.Pid {
			s.info = info
			return true
		}
		return false
	})
	tok, err := sim.ReadToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.api = api.NewClient(s.info.APIAddress, tok, nil)
	return s
}

func (s *thingsimProc) stop(t *testing.T) {
	select {
	case err := <-s.done:
		s.done <- err
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("thingsim did not stop within 15s of SIGTERM")
	}
}

func (s *thingsimProc) port() string {
	_, port, _ := net.SplitHostPort(s.info.MQTTAddress)
	return port
}

// simDevice is a thing registered in thingsim with a SoftHSM key.
type simDevice struct {
	thing, keyURI, certFile, certID string
}

// newSimDevice makes a SoftHSM key, a CSR with CN csrCN, and has thingsim
// issue and attach the certificate to thing.
func newSimDevice(t *testing.T, s *thingsimProc, thing, csrCN string) simDevice {
	t.Helper()
	ctx := context.Background()
	tok := keystoretest.NewSoftHSMToken(t, "thingd")
	uriStr := tok.URI("device-a")
	uri := keystore.MustParseURI(uriStr)
	d, err := keys.Generate(ctx, uri, keystore.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = d
	csr, err := keys.CSR(ctx, uri, csrCN, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.api.IssueThingCertificate(ctx, thing, string(csr), 30)
	if err != nil {
		t.Fatalf("issue certificate: %v", err)
	}
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, []byte(resp.CertificatePem), 0o644); err != nil {
		t.Fatal(err)
	}
	return simDevice{thing: csrCN, keyURI: uriStr, certFile: certFile, certID: resp.CertificateID}
}

func (d simDevice) config(t *testing.T, s *thingsimProc, extra ...string) string {
	return writeConfig(t, configOpts{thing: d.thing, endpoint: "localhost:" + s.port(), serverCA: s.info.CAFile,
		key: d.keyURI, cert: d.certFile, extra: strings.Join(extra, "")})
}

// presenceEvent is the AWS lifecycle event payload, decoded by the test
// from the wire on its own terms.
type presenceEvent struct {
	ClientID                  string `json:"clientId"`
	Timestamp                 int64  `json:"timestamp"`
	EventType                 string `json:"eventType"`
	SessionIdentifier         string `json:"sessionIdentifier"`
	PrincipalIdentifier       string `json:"principalIdentifier"`
	IPAddress                 string `json:"ipAddress"`
	VersionNumber             int64  `json:"versionNumber"`
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect"`
	DisconnectReason          string `json:"disconnectReason"`
}

// watcher is an in-memory-key client subscribed to presence events.
type watcher struct {
	mu     sync.Mutex
	events []presenceEvent
	client paho.Client
}

func newWatcher(t *testing.T, s *thingsimProc) *watcher {
	t.Helper()
	ctx := context.Background()
	key, csr := simtest.NewCSR(t, "watcher")
	resp, err := s.api.IssueThingCertificate(ctx, "watcher", csr, 1)
	if err != nil {
		t.Fatal(err)
	}
	cert := simtest.TLSCertificate(t, []byte(resp.CertificatePem), key)
	cfg := writeConfigCA(t, s.info.CAFile, cert)
	w := &watcher{}
	opts := paho.NewClientOptions().AddBroker("ssl://localhost:" + s.port()).SetClientID("watcher").
		SetTLSConfig(cfg).SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe("$aws/events/presence/#", 1, func(_ paho.Client, m paho.Message) {
				var ev presenceEvent
				if err := json.Unmarshal(m.Payload(), &ev); err == nil {
					w.mu.Lock()
					w.events = append(w.events, ev)
					w.mu.Unlock()
				}
			}).Wait()
		})
	w.client = paho.NewClient(opts)
	if tok := w.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.client.Disconnect(100) })
	time.Sleep(200 * time.Millisecond) // let the SUBACK land
	return w
}

// wait returns the first event for clientID of eventType that match accepts.
func (w *watcher) wait(t *testing.T, d time.Duration, clientID, eventType string, match func(presenceEvent) bool) presenceEvent {
	t.Helper()
	var found presenceEvent
	waitFor(t, d, eventType+" event for "+clientID, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, ev := range w.events {
			if ev.ClientID == clientID && ev.EventType == eventType && (match == nil || match(ev)) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// last returns the most recent event of eventType for clientID seen so far.
func (w *watcher) last(clientID, eventType string) presenceEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.events) - 1; i >= 0; i-- {
		if ev := w.events[i]; ev.ClientID == clientID && ev.EventType == eventType {
			return ev
		}
	}
	return presenceEvent{}
}

// ended reports whether a disconnected event was seen for session.
func (w *watcher) ended(session string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.EventType == "disconnected" && ev.SessionIdentifier == session {
			return true
		}
	}
	return false
}

func (w *watcher) count(clientID, eventType string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ev := range w.events {
		if ev.ClientID == clientID && ev.EventType == eventType {
			n++
		}
	}
	return n
}

func writeConfigCA(t *testing.T, caFile string, cert tls.Certificate) *tls.Config {
	t.Helper()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := identity.ParseChain(pemData)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	cfg.RootCAs = poolOf(chain)
	return cfg
}

// TestThingsimEndToEnd: thingsim and thingd as real processes with a SoftHSM
// key: connect, presence event with the certificate id, thingsim lists the
// client, thingd status says connected, SIGTERM gives a clean disconnect.
func TestThingsimEndToEnd(t *testing.T) {
	s := startThingsim(t, t.TempDir(), "")
	w := newWatcher(t, s)
	dev := newSimDevice(t, s, "gw-1", "gw-1")
	cfg := dev.config(t, s)
	p := startThingd(t, cfg)

	ev := w.wait(t, 20*time.Second, "gw-1", "connected", nil)
	if ev.PrincipalIdentifier != dev.certID || ev.SessionIdentifier == "" || ev.Timestamp == 0 || ev.IPAddress == "" {
		t.Fatalf("connected event: %+v (want principalIdentifier %s)", ev, dev.certID)
	}
	clients, err := s.api.Clients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprintf("%+v", clients), dev.certID) {
		t.Fatalf("thingsim clients does not list gw-1 with its certificate: %+v", clients)
	}
	out, err := exec.Command(thingsimBin, "clients", "--dir", s.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "gw-1") {
		t.Fatalf("thingsim clients: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "thingd status connected", func() bool {
		r := thingdStatus(t, cfg)
		return r.Daemon == "running" && r.Connection != nil && r.Connection.State == "connected"
	})
	if r := thingdStatus(t, cfg); r.CertificateID != dev.certID || r.Thing != "gw-1" || r.KeyStore != keystore.KindPKCS11 ||
		strings.Contains(r.Key, "pin-value") {
		t.Fatalf("thingd status: %+v", r)
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("thingd exit status after SIGTERM: %v", err)
	}
	dis := w.wait(t, 10*time.Second, "gw-1", "disconnected", nil)
	if dis.DisconnectReason != "CLIENT_INITIATED_DISCONNECT" || dis.ClientInitiatedDisconnect == nil || !*dis.ClientInitiatedDisconnect {
		t.Fatalf("disconnected event after SIGTERM: %+v", dis)
	}
	if dis.SessionIdentifier != ev.SessionIdentifier || dis.PrincipalIdentifier != dev.certID {
		t.Fatalf("disconnect event does not match the session: %+v vs %+v", dis, ev)
	}
	if r := thingdStatus(t, cfg); r.Daemon != "not running" {
		t.Fatalf("status after stop: daemon %q", r.Daemon)
	}
}
