package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

func startBroker(t *testing.T, connectTimeout time.Duration) (*broker.Broker, *ca.CA, *simtest.Buffer) {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.LoadOrCreate(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &simtest.Buffer{}
	b, err := broker.Start(t.Context(), broker.Options{
		Addr: "127.0.0.1:0", ServerCert: c.ServerCertificate(), Roots: []*x509.Certificate{c.Certificate()},
		Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)), ConnectTimeout: connectTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		reg.Close()
		if t.Failed() {
			t.Logf("broker logs:\n%s", logs)
		}
	})
	return b, c, logs
}

// expectClosed reads from conn until the server closes it, failing if that
// takes longer than limit.
func expectClosed(t *testing.T, conn net.Conn, limit time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not close the idle connection within %v", limit)
	}
}

// An idle TCP client that never handshakes, and a TLS client that never sends
// CONNECT, are both closed after the connect timeout (mochi sets no deadline
// before CONNECT).
func TestConnectDeadline(t *testing.T) {
	b, c, logs := startBroker(t, 300*time.Millisecond)

	raw, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	expectClosed(t, raw, 5*time.Second)

	// A TLS client without a certificate completes its side of a TLS 1.3
	// handshake; the server refuses it and says why in the log.
	tc, err := tls.Dial("tcp", b.Addr(), &tls.Config{RootCAs: c.Pool(), ServerName: "localhost"})
	if err == nil {
		defer tc.Close()
		expectClosed(t, tc, 5*time.Second)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "rule=no-client-certificate") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal with rule=no-client-certificate logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close returns promptly even with a connection idle before CONNECT.
func TestCloseWithIdleConnection(t *testing.T) {
	b, _, _ := startBroker(t, time.Minute)
	raw, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(50 * time.Millisecond) // let the listener accept it
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with an idle connection")
	}
}
