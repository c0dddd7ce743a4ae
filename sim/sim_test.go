package sim_test

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/simtest"
)

func TestRestartKeepsCATokenAndRegistry(t *testing.T) {
	dir := t.TempDir()
	s1, err := sim.Start(t.Context(), sim.Options{Dir: dir, MQTTAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := sim.ReadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.MQTTAddress != s1.MQTTAddr() || info.APIAddress != s1.APIAddr() || info.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("api.json = %+v, want the bound addresses %s, %s", info, s1.MQTTAddr(), s1.APIAddr())
	}
	for _, f := range []string{"ca-key.pem", "server-key.pem", sim.TokenFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	caPEM, token := s1.CAPEM(), s1.Token()
	_, csr := simtest.NewCSR(t, "dev1")
	_, certID, err := s1.IssueThingCertificate(t.Context(), "dev1", csr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, sim.InfoFile)); !os.IsNotExist(err) {
		t.Errorf("api.json still exists after Close (err=%v)", err)
	}

	s2 := simtest.StartIn(t, dir)
	if !bytes.Equal(s2.CAPEM(), caPEM) {
		t.Error("ca.pem changed across a restart")
	}
	if s2.Token() != token {
		t.Error("admin token changed across a restart")
	}
	desc, err := s2.Client().DescribeCertificate(t.Context(), certID)
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.CertificateDescription.Status; got != registry.StatusActive {
		t.Errorf("certificate status after restart = %s, want ACTIVE", got)
	}
	principals, err := s2.Client().ListThingPrincipals(t.Context(), "dev1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{registry.CertificateARN(certID)}, principals.Principals); diff != "" {
		t.Errorf("principals after restart (-want +got):\n%s", diff)
	}
}

func TestAdmission(t *testing.T) {
	s := simtest.Start(t)
	dev1 := s.NewDevice(t, "dev1")
	dev2 := s.NewDevice(t, "dev2")
	foreign := signedBy(t, t.TempDir(), "dev1")
	unregistered := signedBy(t, s.Dir(), "dev1") // the sim's own CA, never registered
	inactive := s.NewDevice(t, "dev3")
	if err := s.Client().UpdateCertificate(t.Context(), inactive.CertificateID, registry.StatusInactive); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		clientID string
		cert     *tls.Certificate
		connErr  string   // in paho's error ("" for TLS refusals, whose wording varies)
		logged   []string // parts of the refusal log line
	}{
		{"no client certificate", "dev1", nil, "", []string{"rule=no-client-certificate"}},
		{"foreign CA", "dev1", &foreign, "", []string{"rule=untrusted-certificate"}},
		{"unregistered certificate", "dev1", &unregistered, "not Authorized", []string{"rule=certificate-not-registered", "clientId=dev1"}},
		{"inactive certificate", "dev3", &inactive.TLSCertificate, "not Authorized", []string{"rule=certificate-not-active", "certificateId=" + inactive.CertificateID}},
		{"client id of another thing", "dev2", &dev1.TLSCertificate, "not Authorized", []string{"rule=client-id-not-attached-thing", "clientId=dev2", "certificateId=" + dev1.CertificateID}},
		{"client id of no thing", "nobody", &dev1.TLSCertificate, "not Authorized", []string{"rule=client-id-not-attached-thing", "clientId=nobody"}},
		{"client id starting with $", "$dev1", &dev1.TLSCertificate, "identifier rejected", []string{"rule=invalid-client-id"}},
		{"client id over 128 bytes", strings.Repeat("d", 129), &dev1.TLSCertificate, "identifier rejected", []string{"rule=invalid-client-id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(t, s, tc.clientID, tc.cert)
			if err == nil {
				c.Disconnect(0)
				t.Fatalf("connection as %q was admitted", tc.clientID)
			}
			if !strings.Contains(err.Error(), tc.connErr) {
				t.Errorf("connect error %q does not contain %q", err, tc.connErr)
			}
			s.WaitLog(t, append([]string{"connection refused"}, tc.logged...)...)
		})
	}

	t.Run("own thing admitted", func(t *testing.T) {
		mustDial(t, s, dev1)
		mustDial(t, s, dev2)
		clients := waitClients(t, s, "dev1", "dev2")
		if clients[0].CertificateID != dev1.CertificateID || clients[1].CertificateID != dev2.CertificateID {
			t.Errorf("Clients() = %+v, want dev1 and dev2 with their certificates", clients)
		}
	})

	t.Run("registered foreign CA", func(t *testing.T) {
		caDir := t.TempDir()
		cert := signedBy(t, caDir, "dev9")
		caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterCACertificate(caPEM); err != nil {
			t.Fatal(err)
		}
		id, err := s.RegisterCertificate(ca.EncodeCertificate(cert.Certificate[0]), registry.StatusActive)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Client().CreateThing(t.Context(), "dev9", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Client().AttachThingPrincipal(t.Context(), "dev9", registry.CertificateARN(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := dial(t, s, "dev9", &cert); err != nil {
			t.Fatalf("certificate from a registered CA refused: %v", err)
		}
	})
}

func TestPresenceEventsAndHistory(t *testing.T) {
	s := simtest.Start(t)
	m := newMonitor(t, s)
	dev := s.NewDevice(t, "dev1")

	before := time.Now().UnixMilli()
	c := mustDial(t, s, dev)
	connected := m.next(t, "dev1", "connected")
	c.Disconnect(100)
	disconnected := m.next(t, "dev1", "disconnected")
	after := time.Now().UnixMilli()

	for _, ev := range []map[string]any{connected, disconnected} {
		ts, ok := ev["timestamp"].(float64)
		if !ok || int64(ts) < before || int64(ts) > after {
			t.Errorf("%s timestamp = %v, want ms between %d and %d", ev["eventType"], ev["timestamp"], before, after)
		}
	}
	session, _ := connected["sessionIdentifier"].(string)
	if len(session) < 16 {
		t.Errorf("sessionIdentifier %q looks empty", session)
	}
	wantConnected := map[string]any{
		"_topic": "$aws/events/presence/connected/dev1", "clientId": "dev1", "eventType": "connected",
		"timestamp": connected["timestamp"], "sessionIdentifier": session, "principalIdentifier": dev.CertificateID,
		"ipAddress": "127.0.0.1", "versionNumber": float64(0),
	}
	if diff := cmp.Diff(wantConnected, connected); diff != "" {
		t.Errorf("connected event (-want +got):\n%s", diff)
	}
	wantDisconnected := map[string]any{
		"_topic": "$aws/events/presence/disconnected/dev1", "clientId": "dev1", "eventType": "disconnected",
		"timestamp": disconnected["timestamp"], "sessionIdentifier": session, "principalIdentifier": dev.CertificateID,
		"versionNumber": float64(0), "clientInitiatedDisconnect": true, "disconnectReason": "CLIENT_INITIATED_DISCONNECT",
	}
	if diff := cmp.Diff(wantDisconnected, disconnected); diff != "" {
		t.Errorf("disconnected event (-want +got):\n%s", diff)
	}

	// A second session gets the next version number.
	c = mustDial(t, s, dev)
	if v := m.next(t, "dev1", "connected")["versionNumber"]; v != float64(1) {
		t.Errorf("second session versionNumber = %v, want 1", v)
	}
	c.Disconnect(100)
	m.next(t, "dev1", "disconnected")

	hist, err := s.Client().Connections(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hist.Connections {
		if h.ClientID == "dev1" {
			got = append(got, h.CertificateID[:8]+" "+h.DisconnectReason)
			if h.ConnectedAt.IsZero() || h.DisconnectedAt.Before(h.ConnectedAt) {
				t.Errorf("history entry with bad times: %+v", h)
			}
		}
	}
	want := []string{dev.CertificateID[:8] + " CLIENT_INITIATED_DISCONNECT", dev.CertificateID[:8] + " CLIENT_INITIATED_DISCONNECT"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("connection history for dev1 (-want +got):\n%s", diff)
	}
}

func TestDuplicateClientIDKicksOlder(t *testing.T) {
	s := simtest.Start(t)
	m := newMonitor(t, s)
	dev := s.NewDevice(t, "dev1")

	old := mustDial(t, s, dev)
	first := m.next(t, "dev1", "connected")
	newer := mustDial(t, s, dev)
	old.waitLost(t)

	second := m.next(t, "dev1", "connected")
	kicked := m.next(t, "dev1", "disconnected")
	if kicked["sessionIdentifier"] != first["sessionIdentifier"] {
		t.Errorf("disconnected event is for session %v, want the older session %v", kicked["sessionIdentifier"], first["sessionIdentifier"])
	}
	if kicked["disconnectReason"] != "DUPLICATE_CLIENTID" || kicked["clientInitiatedDisconnect"] != false {
		t.Errorf("disconnected event = %v, want DUPLICATE_CLIENTID not initiated by the client", kicked)
	}
	if second["sessionIdentifier"] == first["sessionIdentifier"] {
		t.Error("the two sessions have the same sessionIdentifier")
	}
	if !newer.IsConnectionOpen() {
		t.Error("the newer connection was closed too")
	}
	wait(t, newer.Publish("dev1/ping", 1, false, "x"), "publish on the newer connection")
	if cl := waitClients(t, s, "dev1", "monitor"); cl[0].SessionID != second["sessionIdentifier"] {
		t.Errorf("Clients() = %+v, want the newer dev1 session", cl)
	}
}

func TestDeactivatingCertificateDropsConnection(t *testing.T) {
	for _, status := range []string{registry.StatusInactive, registry.StatusRevoked} {
		t.Run(status, func(t *testing.T) {
			s := simtest.Start(t)
			m := newMonitor(t, s)
			dev := s.NewDevice(t, "dev1")
			c := mustDial(t, s, dev)
			m.next(t, "dev1", "connected")

			if err := s.Client().UpdateCertificate(t.Context(), dev.CertificateID, status); err != nil {
				t.Fatal(err)
			}
			c.waitLost(t)
			ev := m.next(t, "dev1", "disconnected")
			if ev["disconnectReason"] != "AUTH_ERROR" {
				t.Errorf("disconnectReason = %v, want AUTH_ERROR", ev["disconnectReason"])
			}
			if _, err := dial(t, s, "dev1", &dev.TLSCertificate); err == nil {
				t.Errorf("reconnect with a %s certificate was admitted", status)
			}
		})
	}
}

func TestPayloadLimit(t *testing.T) {
	s := simtest.Start(t)
	m := newMonitor(t, s)
	dev := s.NewDevice(t, "dev1")
	c := mustDial(t, s, dev)
	wait(t, c.Publish("dev1/big", 1, false, make([]byte, 128*1024)), "publish of exactly 128 KB")

	c.Publish("dev1/big", 0, false, make([]byte, 128*1024+1))
	c.waitLost(t)
	m.next(t, "dev1", "connected")
	if ev := m.next(t, "dev1", "disconnected"); ev["disconnectReason"] != "CLIENT_ERROR" {
		t.Errorf("disconnectReason = %v, want CLIENT_ERROR", ev["disconnectReason"])
	}
}

func TestTopicLimits(t *testing.T) {
	s := simtest.Start(t)
	dev := s.NewDevice(t, "dev1")
	c := mustDial(t, s, dev)

	ok, tooDeep := "dev1/1/2/3/4/5/6/7", "dev1/1/2/3/4/5/6/7/8"
	tok := c.SubscribeMultiple(map[string]byte{ok: 1, tooDeep: 1}, nil)
	wait(t, tok, "subscribe")
	got := tok.(*paho.SubscribeToken).Result()
	if diff := cmp.Diff(map[string]byte{ok: 1, tooDeep: 0x80}, got); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	wait(t, c.Publish(ok, 1, false, "x"), "publish with 7 slashes")

	c.Publish(tooDeep, 1, false, "x")
	c.waitLost(t)
	s.WaitLog(t, "publish topic over the limits", "clientId=dev1")
}

func TestQoS2NotAcknowledged(t *testing.T) {
	s := simtest.Start(t)
	dev := s.NewDevice(t, "dev1")
	c := mustDial(t, s, dev)

	received := make(chan string, 10)
	wait(t, c.Subscribe("dev1/#", 1, func(_ paho.Client, m paho.Message) { received <- m.Topic() }), "subscribe QoS 1")

	pub2 := c.Publish("dev1/q2", 2, false, "x")
	sub2 := c.Subscribe("dev1/other", 2, nil)
	// A QoS 1 exchange after them proves the broker has processed both.
	wait(t, c.Publish("dev1/q1", 1, false, "x"), "publish QoS 1")
	if got := <-received; got != "dev1/q1" {
		t.Errorf("received %s first, want dev1/q1 (the QoS 2 message must not be delivered)", got)
	}
	if pub2.WaitTimeout(300 * time.Millisecond) {
		t.Errorf("QoS 2 publish was acknowledged (err=%v)", pub2.Error())
	}
	if sub2.WaitTimeout(10 * time.Millisecond) {
		t.Errorf("QoS 2 subscribe was acknowledged (err=%v)", sub2.Error())
	}
	if !c.IsConnectionOpen() {
		t.Error("connection closed after QoS 2 requests; AWS just does not acknowledge them")
	}
}

func TestPublishToEventTopicsRefused(t *testing.T) {
	s := simtest.Start(t)
	m := newMonitor(t, s)
	dev := s.NewDevice(t, "dev1")
	c := mustDial(t, s, dev)
	m.next(t, "dev1", "connected")
	c.Publish("$aws/events/presence/connected/fake", 0, false, `{"clientId":"fake","eventType":"connected"}`)
	wait(t, c.Publish("$aws/things/dev1/shadow/update", 1, false, "{}"), "publish to a device $aws topic")
	select {
	case ev := <-m.events:
		t.Errorf("monitor received %v; clients must not publish lifecycle events", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestCloseDisconnectsClients(t *testing.T) {
	s := simtest.Start(t)
	dev := s.NewDevice(t, "dev1")
	c := mustDial(t, s, dev)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.waitLost(t)
	s.WaitLog(t, "client disconnected", "clientId=dev1", "reason=SERVER_INITIATED_DISCONNECT")
}
