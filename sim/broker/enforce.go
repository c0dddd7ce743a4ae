package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/thingd/thingd/sim/policy"
)

// How the policies are enforced on mochi (see the package doc):
//
//   - CONNECT: OnConnect, after admission, checks iot:Connect on
//     client/{clientId}.
//   - PUBLISH: OnACLCheck (write) checks iot:Publish on topic/{topic};
//     OnPacketRead checks iot:RetainPublish first for a retained message
//     and leaves its refusal for OnACLCheck, which mochi calls next on the
//     same goroutine. mochi answers a refusal as AWS does: QoS 0 dropped,
//     QoS 1 from MQTT 3 disconnects, MQTT 5 gets PUBACK 0x87.
//   - SUBSCRIBE: OnSubscribe checks iot:Subscribe on topicfilter/{filter}
//     for every filter; a refused filter is replaced by a marker that
//     OnACLCheck refuses, so its SUBACK code is 0x80 (MQTT 3) or 0x87
//     (MQTT 5). mochi then calls OnACLCheck (read) with each filter; the
//     allowed ones are recognised as pending and accepted.
//   - Delivery: every other OnACLCheck (read) is a delivery (to a
//     subscriber, or of a retained message): iot:Receive on topic/{topic}.
//     Replies of the services written straight to a requester
//     (Request.Reply) are checked the same way.

// deniedFilter marks a filter OnSubscribe refused; a client cannot send it
// (MQTT strings may not contain U+0000) and OnACLCheck refuses it.
const deniedFilter = "\x00denied"

// authorize decides a session's request and logs a refusal (a refused
// delivery at Info, the rest at Warn). A registry failure refuses.
func (b *Broker) authorize(s *session, action, kind, name string) bool {
	az, err := b.authz.Authorize(AuthRequest{
		CertificateID: s.CertificateID, ClientID: s.ClientID, SourceIP: s.IPAddress,
		CertificateVariables: s.certVars, Action: action, Resource: ResourceARN(kind, name),
	})
	if err != nil {
		b.log.Error("authorization failed", "clientId", s.ClientID, "action", action, kind, name, "error", err)
		return false
	}
	if az.Allowed {
		return true
	}
	level, msg := slog.LevelWarn, map[string]string{
		policy.ActionConnect: "connect refused", policy.ActionPublish: "publish refused",
		policy.ActionSubscribe: "subscription refused", policy.ActionRetainPublish: "retained publish refused",
		policy.ActionReceive: "delivery withheld",
	}[action]
	if action == policy.ActionReceive {
		level = slog.LevelInfo
	}
	attrs := []any{"clientId", s.ClientID, "certificateId", s.CertificateID, kind, name, "action", action, "reason", az.Reason}
	if az.Rule != "" {
		attrs = append(attrs, "rule", az.Rule)
	}
	b.log.Log(context.Background(), level, msg, attrs...)
	return false
}

// sessionOf returns the admitted session of a (non-inline) client.
func sessionOf(cl *mqtt.Client) *session {
	if pc, ok := cl.Net.Conn.(*peerConn); ok {
		return pc.sess
	}
	return nil
}

// checkRetain runs in OnPacketRead for a PUBLISH with RETAIN set.
func (b *Broker) checkRetain(cl *mqtt.Client, pk packets.Packet) {
	if s := sessionOf(cl); s != nil && pk.FixedHeader.Retain && pk.TopicName != "" &&
		!b.authorize(s, policy.ActionRetainPublish, "topic", pk.TopicName) {
		s.mu.Lock()
		s.retainDenied = pk.TopicName
		s.mu.Unlock()
	}
}

// authorizeSubscribe checks every filter of a SUBSCRIBE, marking the refused
// ones and recording the allowed ones as pending for OnACLCheck.
func (b *Broker) authorizeSubscribe(cl *mqtt.Client, filters packets.Subscriptions) {
	s := sessionOf(cl)
	if s == nil {
		return
	}
	for i, f := range filters {
		if f.Filter == "" {
			continue // refused by the limits already
		}
		if !b.authorize(s, policy.ActionSubscribe, "topicfilter", f.Filter) {
			filters[i].Filter = deniedFilter
			continue
		}
		s.mu.Lock()
		if s.pending == nil {
			s.pending = map[string]int{}
		}
		s.pending[f.Filter]++
		s.mu.Unlock()
	}
}

// subscribed forgets what authorizeSubscribe left pending.
func (s *session) subscribed() {
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
}

// takePending consumes a pending allowed filter.
func (s *session) takePending(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[filter] == 0 {
		return false
	}
	s.pending[filter]--
	return true
}

// takeRetainDenied reports (once) whether OnPacketRead refused retaining a
// publish to topic.
func (s *session) takeRetainDenied(topic string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	denied := s.retainDenied == topic && topic != ""
	s.retainDenied = ""
	return denied
}

// aclCheck is OnACLCheck: a publish (write), a subscription filter that
// OnSubscribe allowed or refused, or a delivery.
func (b *Broker) aclCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := sessionOf(cl)
	switch {
	case s == nil:
		return false
	case write:
		return !s.takeRetainDenied(topic) && b.authorize(s, policy.ActionPublish, "topic", topic)
	case topic == deniedFilter:
		return false
	case s.takePending(topic):
		return true
	}
	return b.authorize(s, policy.ActionReceive, "topic", topic)
}
