package broker

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

var notAuthorized = packets.ErrNotAuthorized

// hook implements admission, AWS limits and lifecycle events on mochi.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "thingsim" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnPacketRead,
		mqtt.OnSubscribe,
		mqtt.OnSubscribed,
		mqtt.OnACLCheck,
		mqtt.OnPublish,
	}, []byte{b})
}

// refusal is a failed admission rule.
type refusal struct {
	rule   string
	code   packets.Code
	detail string
}

// admit applies the admission rules to a ClientID and certificate id.
func (b *Broker) admit(clientID, certID string) *refusal {
	if err := CheckClientID(clientID); err != nil {
		return &refusal{"invalid-client-id", packets.ErrClientIdentifierNotValid, err.Error()}
	}
	cert, err := b.reg.Certificate(certID)
	if errors.Is(err, registry.ErrNotFound) {
		return &refusal{"certificate-not-registered", notAuthorized, "the certificate is not registered"}
	} else if err != nil {
		return &refusal{"registry-error", packets.ErrServerUnavailable, err.Error()}
	}
	if cert.Status != registry.StatusActive {
		return &refusal{"certificate-not-active", notAuthorized, "the certificate is " + cert.Status}
	}
	ok, err := b.reg.IsAttached(clientID, certID)
	if err != nil {
		return &refusal{"registry-error", packets.ErrServerUnavailable, err.Error()}
	}
	if !ok {
		return &refusal{"client-id-not-attached-thing", notAuthorized,
			"the client id is not the name of a thing the certificate is attached to"}
	}
	return nil
}

// OnConnect admits or refuses the connection and clamps its keep-alive.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	pc, ok := cl.Net.Conn.(*peerConn)
	if !ok {
		return fmt.Errorf("connection of type %T did not come through the TLS listener", cl.Net.Conn)
	}
	clientID := pk.Connect.ClientIdentifier
	sess := &session{Client: Client{
		ClientID: clientID, CertificateID: pc.certID, SessionID: registry.NewSessionID(), IPAddress: pc.ip,
	}, certVars: pc.certVars}
	r := b.admit(clientID, pc.certID)
	if r == nil && !b.authorize(sess, policy.ActionConnect, "client", clientID) {
		r = &refusal{"policy-denied", notAuthorized, "the policies do not allow iot:Connect as this client id"}
	}
	if r != nil {
		b.log.Warn("connection refused", "rule", r.rule, "clientId", clientID, "certificateId", pc.certID,
			"remote", pc.ip, "reason", r.detail)
		now := b.now().UTC()
		b.recordHistory(registry.Connection{
			ClientID: clientID, CertificateID: pc.certID, SessionID: registry.NewSessionID(), IPAddress: pc.ip,
			ConnectedAt: now, DisconnectedAt: now, DisconnectReason: ReasonAuthError, Refused: r.rule,
		})
		_ = b.srv.SendConnack(cl, connackCode(pk.ProtocolVersion, r.code), false, nil)
		return fmt.Errorf("connection refused (%s): %s", r.rule, r.detail)
	}
	if ka := ClampKeepAlive(pk.Connect.Keepalive); ka != cl.State.Keepalive {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true // MQTT 5 clients learn it from CONNACK
	}
	pc.sess = sess
	return nil
}

// connackCode returns the CONNACK code for a refusal in the client's
// protocol version: mochi maps only some MQTT 5 codes to MQTT 3 return codes,
// and paho reports an unknown one (such as 0x87) as success.
func connackCode(version byte, code packets.Code) packets.Code {
	if version >= 5 {
		return code
	}
	if v3, ok := packets.V5CodesToV3[code]; ok {
		return v3
	}
	return packets.Err3NotAuthorized
}

// OnConnectAuthenticate accepts: admission already ran in OnConnect.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionEstablished records the live session and publishes "connected".
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	b := h.b
	pc := cl.Net.Conn.(*peerConn)
	s := pc.sess
	s.mc = cl
	s.Since = b.now().UTC()
	b.mu.Lock()
	s.version = b.versions[s.ClientID]
	b.versions[s.ClientID]++
	b.live[s.SessionID] = s
	b.mu.Unlock()

	b.log.Info("client connected", "clientId", s.ClientID, "certificateId", s.CertificateID,
		"session", s.SessionID, "remote", s.IPAddress, "keepAlive", cl.State.Keepalive)
	defer b.recheckCertificate(s)
	b.recordHistory(registry.Connection{
		ClientID: s.ClientID, CertificateID: s.CertificateID, SessionID: s.SessionID,
		IPAddress: s.IPAddress, ConnectedAt: s.Since,
	})
	b.publishEvent(PresenceEvent{
		ClientID: s.ClientID, Timestamp: s.Since.UnixMilli(), EventType: "connected",
		SessionIdentifier: s.SessionID, PrincipalIdentifier: s.CertificateID,
		IPAddress: s.IPAddress, VersionNumber: s.version,
	})
}

// recheckCertificate closes a session whose certificate stopped being ACTIVE
// between admission and the session becoming live, which
// DisconnectCertificate could not have seen.
func (b *Broker) recheckCertificate(s *session) {
	c, err := b.reg.Certificate(s.CertificateID)
	if err == nil && c.Status == registry.StatusActive {
		return
	}
	s.setForced(ReasonAuthError)
	b.log.Info("disconnecting client: certificate no longer active", "clientId", s.ClientID, "certificateId", s.CertificateID)
	_ = b.srv.DisconnectClient(s.mc, notAuthorized)
}

// OnDisconnect forgets the session and publishes "disconnected".
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	b := h.b
	pc, ok := cl.Net.Conn.(*peerConn)
	if !ok || pc.sess == nil || pc.sess.mc == nil {
		return
	}
	s := pc.sess
	reason, byClient := disconnectReason(err, cl.StopCause(), s.forcedReason())
	now := b.now().UTC()
	b.mu.Lock()
	delete(b.live, s.SessionID)
	b.mu.Unlock()

	b.log.Info("client disconnected", "clientId", s.ClientID, "certificateId", s.CertificateID,
		"session", s.SessionID, "reason", reason, "error", err)
	b.recordHistory(registry.Connection{
		ClientID: s.ClientID, CertificateID: s.CertificateID, SessionID: s.SessionID,
		IPAddress: s.IPAddress, ConnectedAt: s.Since, DisconnectedAt: now, DisconnectReason: reason,
	})
	b.publishEvent(PresenceEvent{
		ClientID: s.ClientID, Timestamp: now.UnixMilli(), EventType: "disconnected",
		SessionIdentifier: s.SessionID, PrincipalIdentifier: s.CertificateID,
		VersionNumber: s.version, ClientInitiatedDisconnect: &byClient, DisconnectReason: reason,
	})
}

// noop is a packet mochi processes without answering: a PUBACK for packet id
// 0, which is never in flight.
func noop(pk packets.Packet) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: pk.ProtocolVersion}
}

// reject makes mochi close the connection (CLIENT_ERROR).
func reject(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", packets.ErrRejectPacket, errClient, fmt.Sprintf(format, args...))
}

// OnPacketRead enforces the payload and topic limits on PUBLISH and swallows
// QoS 2 PUBLISH and SUBSCRIBE packets.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if n := len(pk.Payload); n > MaxPayloadBytes {
			h.b.log.Warn("disconnecting client: payload too large", "clientId", cl.ID, "topic", pk.TopicName, "bytes", n)
			return pk, reject("payload of %d bytes exceeds %d", n, MaxPayloadBytes)
		}
		if pk.TopicName != "" { // empty with an MQTT 5 topic alias
			if err := CheckTopic(pk.TopicName); err != nil {
				h.b.log.Warn("disconnecting client: publish topic over the limits", "clientId", cl.ID, "error", err)
				return pk, reject("publish: %v", err)
			}
		}
		if pk.FixedHeader.Qos == 2 {
			h.b.log.Info("ignoring QoS 2 publish (AWS IoT does not support QoS 2)", "clientId", cl.ID, "topic", pk.TopicName)
			return noop(pk), nil
		}
		h.b.checkRetain(cl, pk)
	case packets.Subscribe:
		for _, f := range pk.Filters {
			if f.Qos == 2 {
				h.b.log.Info("ignoring QoS 2 subscribe (AWS IoT does not support QoS 2)", "clientId", cl.ID, "filter", f.Filter)
				return noop(pk), nil
			}
		}
	}
	return pk, nil
}

// OnSubscribe refuses (SUBACK 0x80) filters over the topic limits by
// blanking them, which mochi answers as an invalid filter, and those the
// policies refuse (see authorizeSubscribe).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	for i, f := range filters {
		if err := CheckTopic(f.Filter); err != nil {
			h.b.log.Warn("subscription refused", "clientId", cl.ID, "filter", f.Filter, "error", err)
			filters[i].Filter = ""
		}
	}
	h.b.authorizeSubscribe(cl, filters)
	pk.Filters = filters
	return pk
}

// OnSubscribed ends the SUBACK's authorization.
func (h *hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if s := sessionOf(cl); s != nil {
		s.subscribed()
	}
}

// OnACLCheck enforces the policies on publishes, subscriptions and
// deliveries (see enforce.go). For a subscription, topic is the filter.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return h.b.aclCheck(cl, topic, write)
}

// ThingOfReservedTopic returns the thing name of a topic (or filter) under a
// thing's reserved Jobs or Shadow namespace, $aws/things/{thingName}/jobs/...
// or $aws/things/{thingName}/shadow/..., which in open mode (no policy in
// force) only a client whose ClientID is that thing name may use.
func ThingOfReservedTopic(topic string) (thing string, ok bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return "", false
	}
	thing, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	service, _, _ := strings.Cut(rest, "/")
	switch service {
	case "jobs", "shadow", "#", "+":
		return thing, true
	}
	return "", false
}

// OnPublish offers a client's PUBLISH to Options.OnRequest; one it handles is
// acknowledged but not delivered to subscribers.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	if cl.Net.Inline || b.onRequest == nil {
		return pk, nil
	}
	pc, ok := cl.Net.Conn.(*peerConn)
	if !ok {
		return pk, nil
	}
	req := NewRequest(cl.ID, pc.certID, pk.TopicName, pk.Payload, b.replyTo(cl))
	req.authorized = true // OnACLCheck allowed it
	if b.onRequest(req) {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}
