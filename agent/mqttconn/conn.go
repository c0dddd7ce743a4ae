// Package mqttconn keeps thingd's MQTT session over mutual TLS: it dials with
// the current identity, reconnects with capped exponential backoff and full
// jitter, restores subscriptions after every connect and can be told to
// reconnect at a moment of the caller's choosing (a rotation switching
// identity). It wraps github.com/eclipse/paho.mqtt.golang with paho's own
// reconnect logic turned off.
package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ALPNProtocol is what AWS IoT Core requires to speak MQTT with an X.509
// client certificate on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

// Options configure a Conn.
type Options struct {
	// Host and Port of the broker.
	Host string
	Port int
	// ClientID is the MQTT client id (the thing name).
	ClientID string
	// RootCAs verifies the broker's certificate; the host name verified is
	// Host.
	RootCAs *x509.CertPool
	// GetClientCertificate returns the identity to present at each handshake.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Backoff bounds reconnect delays.
	Backoff Backoff
	// KeepAlive for MQTT; zero means 60 s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one dial + TLS + CONNECT; zero means 20 s.
	ConnectTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// OnState, if set, is called (from the Conn's goroutine) at every state
	// change.
	OnState func(Status)
	// OnConnect, if set, is called after every successful connect, once
	// subscriptions are restored. It must not block for long.
	OnConnect func()
	// Rand returns a number in [0, 1) for jitter; nil uses math/rand/v2.
	Rand func() float64
	// OnUnsolicited, if set, receives messages that match no subscription.
	// AWS IoT sends the accepted/rejected replies of Jobs and fleet
	// provisioning requests to the requester even if it never subscribed.
	OnUnsolicited Handler
}

// State is the connection state.
type State string

// Connection states.
const (
	StateDisconnected State = "disconnected"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateStopped      State = "stopped"
)

// Status is a snapshot of the connection for status reports.
type Status struct {
	State State     `json:"state"`
	Since time.Time `json:"since"`
	// Attempt is the number of consecutive failed attempts.
	Attempt int `json:"attempt"`
	// LastError is the last connect or connection-lost error.
	LastError string `json:"lastError,omitempty"`
	// NextAttempt is when the next connect is due (while disconnected).
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
}

// Handler receives messages on a subscription.
type Handler = func(topic string, payload []byte)

type subscription struct {
	qos     byte
	handler Handler
}

// ErrNotConnected is returned by Publish and Subscribe while offline.
var ErrNotConnected = errors.New("mqttconn: not connected")

// Conn is a managed MQTT connection. Create it with New, then call Run.
type Conn struct {
	opts Options
	log  *slog.Logger

	reconnect chan struct{}

	mu      sync.Mutex // guards the fields below
	client  paho.Client
	subs    map[string]subscription
	status  Status
	changed chan struct{} // closed and replaced at every status change
}

// New returns a Conn; nothing is dialled until Run.
func New(opts Options) *Conn {
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 60 * time.Second
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 20 * time.Second
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		opts:      opts,
		log:       log,
		reconnect: make(chan struct{}, 1),
		subs:      map[string]subscription{},
		status:    Status{State: StateDisconnected, Since: time.Now()},
		changed:   make(chan struct{}),
	}
}

// TLSConfig returns the TLS configuration used for the broker: TLS 1.2
// minimum, server verified against RootCAs and Host, client certificate from
// GetClientCertificate, ALPN x-amzn-mqtt-ca on port 443.
func (c *Conn) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              c.opts.RootCAs,
		ServerName:           c.opts.Host,
		GetClientCertificate: c.opts.GetClientCertificate,
	}
	if c.opts.Port == 443 {
		cfg.NextProtos = []string{ALPNProtocol}
	}
	return cfg
}

func (c *Conn) addr() string { return net.JoinHostPort(c.opts.Host, strconv.Itoa(c.opts.Port)) }

// Status returns the current connection status.
func (c *Conn) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Conn) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	st := c.status
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.opts.OnState != nil {
		c.opts.OnState(st)
	}
}

// WaitConnected waits until a session that came up at or after since is
// connected, and returns nil then. When ctx ends first it returns an error
// carrying the last connect error, so a caller switching identity can say
// why the new one did not connect.
func (c *Conn) WaitConnected(ctx context.Context, since time.Time) error {
	for {
		c.mu.Lock()
		st, ch := c.status, c.changed
		c.mu.Unlock()
		if st.State == StateConnected && !st.Since.Before(since) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if st.LastError != "" {
				return fmt.Errorf("mqttconn: not connected: %s", st.LastError)
			}
			return fmt.Errorf("mqttconn: not connected: %w", ctx.Err())
		}
	}
}

// Reconnect asks Run to drop the current session and connect again (with
// whatever identity is current by then). It does not wait.
func (c *Conn) Reconnect() {
	select {
	case c.reconnect <- struct{}{}:
	default:
	}
}

// Run connects and keeps the session up until ctx is done; then it sends
// MQTT DISCONNECT and returns ctx's error.
func (c *Conn) Run(ctx context.Context) error {
	attempt := 0
	for {
		c.setStatus(func(s *Status) { s.State = StateConnecting; s.Since = time.Now(); s.NextAttempt = time.Time{} })
		lost := make(chan error, 1)
		client, err := c.connect(ctx, lost)
		var up time.Duration
		if err == nil {
			connectedAt := time.Now()
			c.log.Info("mqtt connected", "endpoint", c.addr(), "client_id", c.opts.ClientID)
			c.setStatus(func(s *Status) { s.State = StateConnected; s.Since = connectedAt; s.Attempt = 0; s.LastError = "" })
			if c.opts.OnConnect != nil {
				c.opts.OnConnect()
			}
			select {
			case <-ctx.Done():
				c.disconnect(client)
				c.setStatus(func(s *Status) { s.State = StateStopped; s.Since = time.Now() })
				return ctx.Err()
			case err = <-lost:
				c.log.Warn("mqtt connection lost", "endpoint", c.addr(), "err", err)
			case <-c.reconnect:
				c.log.Info("mqtt reconnect requested")
				c.disconnect(client)
				err = nil
			}
			up = time.Since(connectedAt)
			c.mu.Lock()
			c.client = nil
			c.mu.Unlock()
			if err == nil {
				// A requested reconnect goes at once, without backoff.
				attempt = 0
				continue
			}
		} else if ctx.Err() != nil {
			c.setStatus(func(s *Status) { s.State = StateStopped; s.Since = time.Now() })
			return ctx.Err()
		} else {
			c.log.Warn("mqtt connect failed", "endpoint", c.addr(), "client_id", c.opts.ClientID, "attempt", attempt+1, "err", err)
		}
		attempt = c.opts.Backoff.NextAttempt(attempt, up)
		delay := c.opts.Backoff.Delay(max(attempt-1, 0), c.opts.Rand())
		next := time.Now().Add(delay)
		errText := err.Error()
		c.setStatus(func(s *Status) {
			s.State = StateDisconnected
			s.Since = time.Now()
			s.Attempt = attempt
			s.LastError = errText
			s.NextAttempt = next
		})
		c.log.Info("mqtt reconnecting", "in", delay.Round(time.Millisecond), "attempt", attempt)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			c.setStatus(func(s *Status) { s.State = StateStopped; s.Since = time.Now() })
			return ctx.Err()
		case <-c.reconnect:
			t.Stop()
		case <-t.C:
		}
	}
}

// connect dials once and restores subscriptions.
func (c *Conn) connect(ctx context.Context, lost chan<- error) (paho.Client, error) {
	tlsCfg := c.TLSConfig()
	var dialErr error
	var dialMu sync.Mutex
	po := paho.NewClientOptions().
		AddBroker("tls://" + c.addr()).
		SetClientID(c.opts.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(c.opts.KeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(c.opts.ConnectTimeout).
		SetWriteTimeout(10 * time.Second).
		SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if c.opts.OnUnsolicited != nil {
				c.opts.OnUnsolicited(m.Topic(), m.Payload())
			} else {
				c.log.Debug("mqtt message without subscription dropped", "topic", m.Topic())
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(_ *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			conn, err := c.dialTLS(ctx, tlsCfg)
			dialMu.Lock()
			dialErr = err
			dialMu.Unlock()
			return conn, err
		})
	client := paho.NewClient(po)
	tok := client.Connect()
	if !waitToken(ctx, tok, c.opts.ConnectTimeout+5*time.Second) {
		client.Disconnect(0)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("mqttconn: connect to %s: timed out after %v", c.addr(), c.opts.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		dialMu.Lock()
		de := dialErr
		dialMu.Unlock()
		if de != nil {
			return nil, de
		}
		return nil, fmt.Errorf("mqttconn: connect to %s as %q: %w (the broker closed the connection: is the certificate registered, ACTIVE and attached to this thing?)", c.addr(), c.opts.ClientID, err)
	}
	c.mu.Lock()
	c.client = client
	subs := make(map[string]subscription, len(c.subs))
	for k, v := range c.subs {
		subs[k] = v
	}
	c.mu.Unlock()
	for filter, s := range subs {
		if err := c.subscribeOn(ctx, client, filter, s); err != nil {
			c.disconnect(client)
			c.mu.Lock()
			c.client = nil
			c.mu.Unlock()
			return nil, fmt.Errorf("mqttconn: restore subscription %q: %w", filter, err)
		}
	}
	return client, nil
}

// dialTLS opens TCP and completes the TLS handshake, turning TLS failures
// into errors that say what to check.
func (c *Conn) dialTLS(ctx context.Context, cfg *tls.Config) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	conn, err := d.DialContext(dctx, "tcp", c.addr())
	if err != nil {
		return nil, explainDialError(c.addr(), c.opts.Host, err)
	}
	return conn, nil
}

func explainDialError(addr, host string, err error) error {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("mqttconn: dial %s: server certificate is not signed by a CA in server_ca: %w", addr, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("mqttconn: dial %s: server certificate is not valid for host %q: %w", addr, host, err)
	case errors.As(err, &verr):
		return fmt.Errorf("mqttconn: dial %s: server certificate rejected: %w", addr, err)
	}
	return fmt.Errorf("mqttconn: dial %s: %w", addr, err)
}

func waitToken(ctx context.Context, tok paho.Token, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

func (c *Conn) disconnect(client paho.Client) {
	if client != nil && client.IsConnectionOpen() {
		client.Disconnect(500)
	}
}

func (c *Conn) current() paho.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.client
}

// Publish sends payload to topic and, for QoS 1, waits for the PUBACK.
func (c *Conn) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	client := c.current()
	if client == nil {
		return ErrNotConnected
	}
	tok := client.Publish(topic, qos, false, payload)
	if !waitToken(ctx, tok, 30*time.Second) {
		if ctx.Err() != nil {
			return fmt.Errorf("mqttconn: publish %s: %w", topic, ctx.Err())
		}
		return fmt.Errorf("mqttconn: publish %s: no PUBACK in 30s", topic)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("mqttconn: publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe registers handler for filter. The subscription is remembered and
// restored after every reconnect; if connected now it is made at once.
func (c *Conn) Subscribe(ctx context.Context, filter string, qos byte, handler Handler) error {
	s := subscription{qos: qos, handler: handler}
	c.mu.Lock()
	c.subs[filter] = s
	client := c.client
	c.mu.Unlock()
	if client == nil {
		return nil
	}
	return c.subscribeOn(ctx, client, filter, s)
}

// Unsubscribe forgets filter and unsubscribes if connected.
func (c *Conn) Unsubscribe(ctx context.Context, filter string) error {
	c.mu.Lock()
	delete(c.subs, filter)
	client := c.client
	c.mu.Unlock()
	if client == nil {
		return nil
	}
	tok := client.Unsubscribe(filter)
	if !waitToken(ctx, tok, 30*time.Second) {
		return fmt.Errorf("mqttconn: unsubscribe %s: no UNSUBACK", filter)
	}
	return tok.Error()
}

func (c *Conn) subscribeOn(ctx context.Context, client paho.Client, filter string, s subscription) error {
	tok := client.Subscribe(filter, s.qos, func(_ paho.Client, m paho.Message) {
		s.handler(m.Topic(), m.Payload())
	})
	if !waitToken(ctx, tok, 30*time.Second) {
		return fmt.Errorf("mqttconn: subscribe %s: no SUBACK in 30s", filter)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("mqttconn: subscribe %s: %w", filter, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code == 0x80 {
				return fmt.Errorf("mqttconn: subscribe %s: refused by the broker (SUBACK 0x80)", filter)
			}
		}
	}
	return nil
}
