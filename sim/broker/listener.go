package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/policy"
)

// certError is a refused client certificate, with the admission rule that
// failed.
type certError struct {
	rule   string
	certID string
	err    error
}

func (e *certError) Error() string {
	if e.certID == "" {
		return e.rule + ": " + e.err.Error()
	}
	return fmt.Sprintf("%s: certificate %s: %v", e.rule, e.certID, e.err)
}

func (e *certError) Unwrap() error { return e.err }

// peerConn is an accepted, handshaken TLS connection with the identity of its
// client certificate. mochi sees it as cl.Net.Conn.
type peerConn struct {
	*tls.Conn
	certID   string
	certVars map[string][]string // policy variables of the client certificate
	ip       string
	sess     *session // set by OnConnect once admitted; read in the client's goroutine
}

// tlsListener is a mochi listener that terminates TLS itself so it can verify
// client certificates against the current trust anchors, log refusals, and
// put a deadline on the handshake and the CONNECT packet (mochi sets none
// before CONNECT).
type tlsListener struct {
	id             string
	ln             net.Listener
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	log            *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTLSListener(ln net.Listener, cert tls.Certificate, roots func() (*x509.CertPool, error), connectTimeout time.Duration, log *slog.Logger) *tlsListener {
	l := &tlsListener{id: "mqtts", ln: ln, connectTimeout: connectTimeout, log: log, conns: map[net.Conn]struct{}{}}
	l.tlsConfig = &tls.Config{
		MinVersion:             tls.VersionTLS12,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequestClientCert, // verified in VerifyConnection, to name the failed rule
		SessionTicketsDisabled: true,                  // AWS IoT does not support session tickets either
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyClient(cs, roots)
		},
	}
	return l
}

// verifyClient requires a client certificate chaining to one of roots.
func verifyClient(cs tls.ConnectionState, roots func() (*x509.CertPool, error)) error {
	if len(cs.PeerCertificates) == 0 {
		return &certError{rule: "no-client-certificate", err: errors.New("the client sent no certificate")}
	}
	leaf := cs.PeerCertificates[0]
	id := ca.CertificateID(leaf.Raw)
	pool, err := roots()
	if err != nil {
		return &certError{rule: "trust-anchors", certID: id, err: err}
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return &certError{rule: "untrusted-certificate", certID: id, err: err}
	}
	return nil
}

func (l *tlsListener) ID() string                { return l.id }
func (l *tlsListener) Address() string           { return l.ln.Addr().String() }
func (l *tlsListener) Protocol() string          { return "mqtts" }
func (l *tlsListener) Init(_ *slog.Logger) error { return nil } // already listening

// Serve accepts connections until the listener is closed.
func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.track(conn) {
			conn.Close()
			return
		}
		go func() {
			defer l.wg.Done()
			defer l.untrack(conn)
			l.handle(conn, establish)
		}()
	}
}

func (l *tlsListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	// The deadline covers the TLS handshake and the CONNECT packet; mochi
	// replaces it with 1.5 × keep-alive once CONNECT has been read.
	_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	tc := tls.Server(conn, l.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), l.connectTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		attrs := []any{"remote", conn.RemoteAddr().String(), "error", err}
		if ce := (*certError)(nil); errors.As(err, &ce) {
			attrs = append(attrs, "rule", ce.rule, "certificateId", ce.certID)
		} else {
			attrs = append(attrs, "rule", "tls-handshake")
		}
		l.log.Warn("connection refused", attrs...)
		tc.Close()
		return
	}
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	pc := &peerConn{Conn: tc, certID: ca.CertificateID(leaf.Raw), certVars: policy.CertificateVariables(leaf)}
	if host, _, err := net.SplitHostPort(conn.RemoteAddr().String()); err == nil {
		pc.ip = host
	}
	if err := establish(l.id, pc); err != nil {
		l.log.Debug("connection ended", "remote", pc.ip, "certificateId", pc.certID, "error", err)
	}
}

func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Close disconnects the admitted clients (through mochi), stops accepting,
// closes connections still in handshake or CONNECT, and waits for all
// connection goroutines.
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()

	closeClients(l.id)
	_ = l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
