package sim_test

import (
	"crypto/tls"
	"encoding/json"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/simtest"
)

// signedBy issues a certificate for a new key with the CA in dir, without
// registering it anywhere.
func signedBy(t *testing.T, caDir, cn string) tls.Certificate {
	t.Helper()
	authority, err := ca.LoadOrCreate(caDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, csrPEM := simtest.NewCSR(t, cn)
	csr, err := ca.ParseCSR([]byte(csrPEM))
	if err != nil {
		t.Fatal(err)
	}
	der, err := authority.SignCSR(csr, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return simtest.TLSCertificate(t, ca.EncodeCertificate(der), key)
}

// conn is a paho client with a channel that receives the connection-lost
// error.
type conn struct {
	paho.Client
	lost chan error
}

type connOpt func(*paho.ClientOptions)

// dial connects with the given ClientID and certificate (none if cert is
// nil) and returns the client or the connect error.
func dial(t *testing.T, s *simtest.Sim, clientID string, cert *tls.Certificate, opts ...connOpt) (*conn, error) {
	t.Helper()
	c := &conn{lost: make(chan error, 1)}
	o := paho.NewClientOptions().
		AddBroker("ssl://" + s.MQTTAddr()).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetTLSConfig(s.TLSConfig(cert)).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(60 * time.Second).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	for _, opt := range opts {
		opt(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("connect as %q did not finish", clientID)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustDial(t *testing.T, s *simtest.Sim, d simtest.Device) *conn {
	t.Helper()
	c, err := dial(t, s, d.Name, &d.TLSCertificate)
	if err != nil {
		t.Fatalf("connect as %s: %v", d.Name, err)
	}
	return c
}

// waitClients waits until the live connections are exactly clientIDs
// (sorted) and returns them.
func waitClients(t *testing.T, s *simtest.Sim, clientIDs ...string) []broker.Client {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		clients := s.Clients()
		var got []string
		for _, c := range clients {
			got = append(got, c.ClientID)
		}
		if slices.Equal(got, clientIDs) {
			return clients
		}
		if time.Now().After(deadline) {
			t.Fatalf("live clients = %q, want %q", got, clientIDs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLost waits for the connection to be lost.
func (c *conn) waitLost(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.lost:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("connection was not closed by the server")
		return nil
	}
}

func wait(t *testing.T, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("%s: no acknowledgement", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// monitor is an admitted client subscribed to the lifecycle events.
type monitor struct {
	events  chan map[string]any
	backlog []map[string]any // received, not yet returned by next
}

func newMonitor(t *testing.T, s *simtest.Sim) *monitor {
	t.Helper()
	d := s.NewDevice(t, "monitor")
	c := mustDial(t, s, d)
	m := &monitor{events: make(chan map[string]any, 100)}
	wait(t, c.Subscribe("$aws/events/presence/#", 1, func(_ paho.Client, msg paho.Message) {
		var ev map[string]any
		if err := json.Unmarshal(msg.Payload(), &ev); err != nil {
			t.Errorf("event on %s is not JSON: %v: %s", msg.Topic(), err, msg.Payload())
			return
		}
		ev["_topic"] = msg.Topic()
		m.events <- ev
	}), "subscribe to presence events")
	return m
}

// next returns the first event not yet returned for clientID with the given
// event type (events may arrive out of order, as on AWS).
func (m *monitor) next(t *testing.T, clientID, eventType string) map[string]any {
	t.Helper()
	match := func(ev map[string]any) bool { return ev["clientId"] == clientID && ev["eventType"] == eventType }
	for i, ev := range m.backlog {
		if match(ev) {
			m.backlog = slices.Delete(m.backlog, i, i+1)
			return ev
		}
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-m.events:
			if match(ev) {
				return ev
			}
			m.backlog = append(m.backlog, ev)
		case <-timeout:
			t.Fatalf("no %s event for %s", eventType, clientID)
			return nil
		}
	}
}
