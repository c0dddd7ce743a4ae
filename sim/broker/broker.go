// Package broker is thingsim's MQTT broker: mochi-mqtt behind a TLS listener
// that requires client certificates, with hooks that admit a connection only
// for a registered ACTIVE certificate attached to the thing named by the
// ClientID, apply the AWS IoT Core limits, and publish the AWS lifecycle
// events on $aws/events/presence/{connected,disconnected}/{clientId}.
//
// # AWS behaviour and how it is done with mochi
//
//   - Admission runs in OnConnect; a refusal sends CONNACK "not authorized"
//     (MQTT 3.1.1 code 5) or "identifier rejected" (code 2) and is logged with
//     the failed rule, ClientID and certificate id. Certificate problems found
//     in the TLS handshake are logged by the listener the same way.
//   - Duplicate ClientID: mochi's session takeover disconnects the older
//     connection; its stop cause (session taken over) becomes the
//     DUPLICATE_CLIENTID disconnect event.
//   - Keep-alive: OnConnect replaces the client's keep-alive with
//     [ClampKeepAlive]; mochi then enforces 1.5 × keep-alive as a read
//     deadline, whose expiry becomes MQTT_KEEP_ALIVE_TIMEOUT.
//   - QoS 2: OnPacketRead turns a QoS 2 PUBLISH, or a SUBSCRIBE asking for
//     QoS 2 on any filter, into a no-op packet (a PUBACK for packet id 0,
//     which mochi ignores), so neither PUBACK/PUBREC nor SUBACK is sent and
//     the message is not delivered. CONNACK advertises Maximum QoS 1 to MQTT 5
//     clients.
//   - Payload over 128 KB or a PUBLISH topic over the limits: OnPacketRead
//     rejects the packet, mochi closes the connection, the event says
//     CLIENT_ERROR. A subscription filter over the limits is refused in its
//     SUBACK (0x80) instead.
//   - IoT policies (package policy) are enforced on CONNECT (iot:Connect,
//     after admission), PUBLISH (iot:Publish, and iot:RetainPublish for a
//     retained message), SUBSCRIBE (iot:Subscribe per filter, matched on the
//     filter string; a refused filter gets SUBACK 0x80) and every delivery,
//     replies of the services included (iot:Receive: a message the client
//     may not receive is not delivered). The policies in force are those
//     attached to the certificate and, when the ClientID is a thing the
//     certificate is attached to, to that thing's groups; changes apply at
//     once (AWS caches them for minutes). A refused publish is answered as
//     AWS does: QoS 0 dropped, MQTT 3 at QoS 1 disconnected, MQTT 5 PUBACK
//     0x87. Refusals are logged with the statement that denied or "no
//     statement allowed". See [Authorizer] for thingsim's own rules: no
//     client publishes to $aws/events/; every client may read
//     $aws/events/presence/ unless Options.StrictLifecycleEvents; and a
//     certificate with no policy at all is in open mode, the rules from
//     before policies (everything but another thing's
//     $aws/things/{thingName}/jobs/ and .../shadow/ topics), where AWS
//     would deny everything.
//   - Requests to the simulator's services (Jobs, Shadow, provisioning) are
//     PUBLISH packets that [Options.OnRequest] claims in OnPublish. They are
//     acknowledged but not delivered to subscribers. Jobs and provisioning
//     answer through [Request.Reply], which writes the reply straight onto
//     the requesting connection (QoS 0), whether or not it subscribed: AWS
//     sends those accepted/rejected replies only to the requester, and even
//     unsolicited. Shadow replies go to the reply topics' subscribers
//     ([Broker.Publish]), as on AWS.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/thingd/thingd/sim/registry"
)

// Options configure a Broker.
type Options struct {
	// Addr is the TCP address to listen on; port 0 picks a free port.
	Addr string
	// ServerCert is the broker's TLS certificate (chain and key).
	ServerCert tls.Certificate
	// Roots are the CAs device certificates may chain to, in addition to the
	// CA certificates registered in Registry.
	Roots []*x509.Certificate
	// Registry holds things, certificates and attachments, and receives the
	// connection history.
	Registry *registry.Registry
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// ConnectTimeout bounds the TLS handshake plus the CONNECT packet;
	// zero means 10 s.
	ConnectTimeout time.Duration
	// Now is the clock for event timestamps; nil means time.Now.
	Now func() time.Time
	// OnRequest, if set, is offered every PUBLISH from an admitted client
	// and reports whether it handled it (see Request). It runs on the
	// client's read goroutine, so a client's requests are handled in order.
	OnRequest func(*Request) bool
	// StrictLifecycleEvents subjects subscribing to and receiving
	// $aws/events/presence/ to the policies, as on AWS. By default every
	// admitted client may read them (RuleLifecycleEvents).
	StrictLifecycleEvents bool
}

// Request is a message an admitted client published, offered to the
// simulator's services.
type Request struct {
	ClientID      string // the connection's ClientID (= thing name)
	CertificateID string // the certificate the connection authenticated with
	Topic         string
	Payload       []byte

	reply      func(topic string, payload []byte)
	authorized bool
}

// Authorized reports whether the broker's policies allowed the publish,
// which is the case for every request from the broker: a client may then
// use another thing's topics (a gateway its children's). Requests made with
// NewRequest are not authorized; services serve them for the ClientID's own
// thing only.
func (r *Request) Authorized() bool { return r.authorized }

// NewRequest returns a request whose Reply calls reply, for services driven
// without the broker (tests).
func NewRequest(clientID, certificateID, topic string, payload []byte, reply func(topic string, payload []byte)) *Request {
	return &Request{ClientID: clientID, CertificateID: certificateID, Topic: topic, Payload: payload, reply: reply}
}

// Reply sends a message to the requester only. From the broker, it writes a
// PUBLISH (QoS 0) straight onto the requesting connection, without a
// subscription and without going through other subscribers; a connection
// that has gone away is logged and otherwise ignored, as a lost reply on
// AWS.
func (r *Request) Reply(topic string, payload []byte) { r.reply(topic, payload) }

// replyTo returns the Reply function of requests from cl. A reply the
// client may not receive (iot:Receive) is withheld.
func (b *Broker) replyTo(cl *mqtt.Client) func(topic string, payload []byte) {
	return func(topic string, payload []byte) {
		if !b.aclCheck(cl, topic, false) {
			return
		}
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish},
			TopicName:   topic,
			Payload:     payload,
			Created:     time.Now().Unix(),
		}
		if err := cl.WritePacket(pk); err != nil {
			b.log.Info("reply not delivered", "clientId", cl.ID, "topic", topic, "error", err)
		}
	}
}

// Client is a live MQTT connection.
type Client struct {
	ClientID      string    `json:"clientId"`
	CertificateID string    `json:"certificateId"`
	SessionID     string    `json:"sessionIdentifier"`
	IPAddress     string    `json:"ipAddress"`
	Since         time.Time `json:"since"`
}

// session is the broker's state of one admitted connection.
type session struct {
	Client
	mc      *mqtt.Client
	version int64

	certVars map[string][]string // policy variables of the certificate

	mu           sync.Mutex
	forced       string         // disconnect reason set by the simulator before closing
	pending      map[string]int // filters of the SUBSCRIBE being processed that the policies allow
	retainDenied string         // topic of the PUBLISH being processed whose retain was refused
}

func (s *session) setForced(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced == "" {
		s.forced = reason
	}
}

func (s *session) forcedReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forced
}

// Broker is a running MQTT broker.
type Broker struct {
	srv       *mqtt.Server
	ln        *tlsListener
	reg       *registry.Registry
	roots     []*x509.Certificate
	log       *slog.Logger
	now       func() time.Time
	opts      Options
	onRequest func(*Request) bool
	authz     *Authorizer

	mu       sync.Mutex
	live     map[string]*session // by session id
	versions map[string]int64    // next versionNumber per ClientID
	closed   bool
}

// Start listens on opts.Addr and serves MQTT over TLS until Close: New
// followed by Listen.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := b.Listen(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// New returns a broker that does not listen yet, so that services using
// Publish can be built before the first client arrives. Listen starts it;
// Close stops it.
func New(opts Options) (*Broker, error) {
	if opts.Registry == nil {
		return nil, errors.New("broker: Options.Registry is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Broker{
		reg:       opts.Registry,
		roots:     opts.Roots,
		log:       log,
		now:       opts.Now,
		opts:      opts,
		onRequest: opts.OnRequest,
		authz:     NewAuthorizer(opts.Registry, opts.StrictLifecycleEvents),
		live:      map[string]*session{},
		versions:  map[string]int64{},
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MaximumPacketSize = maxPacketBytes
	caps.MaximumSessionExpiryInterval = 3600 // AWS default persistent session expiry
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true, // publishes the lifecycle events
		Logger:                 log.With("lib", "mochi"),
		SysTopicResendInterval: 24 * 3600,
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	return b, nil
}

// Listen listens on Options.Addr and serves MQTT over TLS until Close.
func (b *Broker) Listen(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", b.opts.Addr)
	if err != nil {
		return fmt.Errorf("broker: listen on %s: %w", b.opts.Addr, err)
	}
	b.ln = newTLSListener(ln, b.opts.ServerCert, b.rootPool, b.opts.ConnectTimeout, b.log)
	if err := b.srv.AddListener(b.ln); err != nil {
		ln.Close()
		return fmt.Errorf("broker: add listener: %w", err)
	}
	if err := b.srv.Serve(); err != nil {
		ln.Close()
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("mqtt broker listening", "address", b.Addr())
	return nil
}

// Authorizer returns the authorizer the broker enforces, for
// TestAuthorization.
func (b *Broker) Authorizer() *Authorizer { return b.authz }

// Addr returns the address the broker listens on (host:port), "" before
// Listen.
func (b *Broker) Addr() string {
	if b.ln == nil {
		return ""
	}
	return b.ln.Address()
}

// Publish sends a message from the broker itself (QoS 1) to the subscribers
// of topic, subject to their receive permissions: what the AWS services do
// for notifications and events.
func (b *Broker) Publish(topic string, payload []byte) error {
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("broker: publish to %s: %w", topic, err)
	}
	return nil
}

// Close disconnects every client (SERVER_INITIATED_DISCONNECT), stops the
// listener and waits for connection goroutines to end.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// Clients returns the live connections sorted by ClientID.
func (b *Broker) Clients() []Client {
	b.mu.Lock()
	out := make([]Client, 0, len(b.live))
	for _, s := range b.live {
		out = append(out, s.Client)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(a, c Client) int {
		if n := strings.Compare(a.ClientID, c.ClientID); n != 0 {
			return n
		}
		return a.Since.Compare(c.Since)
	})
	return out
}

// DisconnectCertificate closes every live connection authenticated with the
// certificate unless the registry says it is ACTIVE, with disconnect reason
// AUTH_ERROR (the certificate no longer authenticates anyone), and returns how
// many connections used the certificate. Call it after changing the status.
func (b *Broker) DisconnectCertificate(certID string) int {
	b.mu.Lock()
	var victims []*session
	for _, s := range b.live {
		if s.CertificateID == certID {
			victims = append(victims, s)
		}
	}
	b.mu.Unlock()
	for _, s := range victims {
		b.recheckCertificate(s)
	}
	return len(victims)
}

// rootPool returns the trust anchors for device certificates: Options.Roots
// plus the CA certificates registered in the registry.
func (b *Broker) rootPool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, c := range b.roots {
		pool.AddCert(c)
	}
	extra, err := b.reg.CACertificates()
	if err != nil {
		return nil, err
	}
	for _, p := range extra {
		pool.AppendCertsFromPEM(p)
	}
	return pool, nil
}

// PresenceEvent is the payload of $aws/events/presence/{connected,disconnected}/{clientId}.
type PresenceEvent struct {
	ClientID                  string `json:"clientId"`
	Timestamp                 int64  `json:"timestamp"` // milliseconds since the epoch
	EventType                 string `json:"eventType"` // "connected" or "disconnected"
	SessionIdentifier         string `json:"sessionIdentifier"`
	PrincipalIdentifier       string `json:"principalIdentifier"` // certificate id
	IPAddress                 string `json:"ipAddress,omitempty"` // connected only
	VersionNumber             int64  `json:"versionNumber"`
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect,omitempty"` // disconnected only
	DisconnectReason          string `json:"disconnectReason,omitempty"`          // disconnected only
}

// PresenceTopic returns the lifecycle event topic for an event type
// ("connected" or "disconnected") and ClientID.
func PresenceTopic(eventType, clientID string) string {
	return "$aws/events/presence/" + eventType + "/" + clientID
}

func (b *Broker) publishEvent(ev PresenceEvent) {
	if strings.ContainsAny(ev.ClientID, "#+") {
		return // AWS sends no lifecycle events for such ClientIDs
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		b.log.Error("encode lifecycle event", "error", err)
		return
	}
	if err := b.Publish(PresenceTopic(ev.EventType, ev.ClientID), payload); err != nil {
		b.log.Error("publish lifecycle event", "clientId", ev.ClientID, "event", ev.EventType, "error", err)
	}
}

func (b *Broker) recordHistory(c registry.Connection) {
	if err := b.reg.PutConnection(c); err != nil {
		b.log.Error("record connection history", "clientId", c.ClientID, "error", err)
	}
}
