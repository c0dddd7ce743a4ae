package agent_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/testpki"
	"github.com/thingd/thingd/agent/mqttconn"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
)

// mosquitto is a real mosquitto broker started by a test with mutual TLS:
// require_certificate, use_identity_as_username, use_username_as_clientid.
type mosquitto struct {
	Port int
	log  *syncBuffer
	cmd  *exec.Cmd
}

func startMosquitto(t *testing.T, ca *testpki.CA) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/mosquitto"); e != nil {
			t.Fatalf("mosquitto is not installed: run `make deps` (%v)", err)
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM())
	certFile, keyFile := ca.ServerFiles(t, dir, "localhost", "127.0.0.1")
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	user := ""
	if os.Getuid() == 0 {
		// Keep root: the test's temporary directories are not readable by
		// the mosquitto user it would otherwise drop to.
		user = "user root\n"
	}
	testpki.WriteFile(t, conf, fmt.Appendf(nil, `%sper_listener_settings false
allow_anonymous false
set_tcp_nodelay true
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
use_username_as_clientid true
tls_version tlsv1.2
log_dest stderr
log_type all
`, user, port, caFile, certFile, keyFile))
	m := &mosquitto{Port: port, log: &syncBuffer{}}
	m.cmd = exec.Command(bin, "-c", conf)
	m.cmd.Stderr = m.log
	m.cmd.Stdout = m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log.String())
		}
	})
	waitFor(t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return m
}

func TestMosquittoSoftHSM(t *testing.T) {
	ca := testpki.NewCA(t, "mosquitto test CA")
	m := startMosquitto(t, ca)
	dev := newDevice(t, ca, "gw-1")

	// The watcher is another client with a file key, subscribed to the
	// device's topic.
	wpath := filepath.Join(t.TempDir(), "watcher.pem")
	wuri := keystore.MustParseURI("file:" + wpath)
	wk, err := filestore.New().Generate(context.Background(), wuri, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	wcert := ca.Issue(t, "watcher", wk.Public(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	wid, err := identity.New("watcher", wk, wcert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	got := make(chan string, 4)
	watcher := startConn(ctx, t, mqttconn.Options{Host: "127.0.0.1", Port: m.Port, ClientID: "watcher", RootCAs: pool,
		GetClientCertificate: identity.NewHolder(wid).GetClientCertificate})
	if err := watcher.Subscribe(ctx, "gw-1/telemetry", 1, func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
		t.Fatal(err)
	}

	device := startConn(ctx, t, mqttconn.Options{Host: "127.0.0.1", Port: m.Port, ClientID: "gw-1", RootCAs: pool,
		GetClientCertificate: identity.NewHolder(dev.id).GetClientCertificate})
	if err := device.Publish(ctx, "gw-1/telemetry", 1, []byte(`{"temp":21}`)); err != nil {
		t.Fatalf("publish with the SoftHSM key: %v", err)
	}
	select {
	case msg := <-got:
		if msg != `gw-1/telemetry {"temp":21}` {
			t.Fatalf("watcher got %q", msg)
		}
	case <-ctx.Done():
		t.Fatal("the watcher never received the device's publish")
	}
	// mosquitto took the client id from the certificate CN.
	if !strings.Contains(m.log.String(), "as gw-1") {
		t.Fatalf("mosquitto did not log client gw-1:\n%s", m.log.String())
	}
}

// startConn runs a Conn until the test ends and waits for it to connect.
func startConn(ctx context.Context, t *testing.T, opts mqttconn.Options) *mqttconn.Conn {
	t.Helper()
	if opts.Backoff.Base == 0 {
		opts.Backoff = mqttconn.Backoff{Base: 100 * time.Millisecond, Cap: time.Second, ResetAfter: time.Second}
	}
	c := mqttconn.New(opts)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 20*time.Second, opts.ClientID+" connected", func() bool { return c.Status().State == mqttconn.StateConnected })
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe buffer for process output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Lines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestThingdAgainstMosquitto runs the thingd binary with a SoftHSM key
// against mosquitto as an independent broker.
func TestThingdAgainstMosquitto(t *testing.T) {
	ca := testpki.NewCA(t, "mosquitto test CA")
	m := startMosquitto(t, ca)
	dev := newDevice(t, ca, "gw-1")
	dev.store.Close() // thingd opens the token itself
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM())
	cfg := writeConfig(t, configOpts{thing: "gw-1", endpoint: fmt.Sprintf("localhost:%d", m.Port),
		serverCA: caFile, key: dev.keyURI, cert: dev.certFile})
	p := startThingd(t, cfg)
	p.waitLog(t, 20*time.Second, "mqtt connected")
	waitFor(t, 10*time.Second, "mosquitto sees gw-1", func() bool { return strings.Contains(m.log.String(), "as gw-1") })
	r := thingdStatus(t, cfg)
	if r.Daemon != "running" || r.Connection == nil || r.Connection.State != mqttconn.StateConnected {
		t.Fatalf("status: %+v", r)
	}
	if r.CertificateID != dev.id.CertificateID || r.KeyStore != keystore.KindPKCS11 {
		t.Fatalf("status identity: %+v", r)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("thingd exit after SIGTERM: %v", err)
	}
	waitFor(t, 10*time.Second, "mosquitto logs a clean disconnect", func() bool {
		return strings.Contains(m.log.String(), "Client gw-1 disconnected.")
	})
}
