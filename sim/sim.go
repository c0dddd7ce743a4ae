package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/shadow"
)

// Default listen addresses.
const (
	DefaultMQTTAddr = "127.0.0.1:8883"
	DefaultAPIAddr  = "127.0.0.1:8443"
)

// File names in the data directory (the CA's are in package ca).
const (
	TokenFile    = "admin-token"
	DatabaseFile = "registry.db"
	InfoFile     = "api.json"
)

// Options configure a simulator.
type Options struct {
	// Dir is the data directory (required); it is created if missing.
	Dir string
	// MQTTAddr is the broker's listen address; "" means DefaultMQTTAddr.
	// Port 0 picks a free port (see Server.MQTTAddr).
	MQTTAddr string
	// APIAddr is the admin API's listen address, which must be a loopback
	// address; "" means DefaultAPIAddr. Port 0 picks a free port.
	APIAddr string
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for certificates, registry dates and events; nil
	// means time.Now.
	Now func() time.Time
	// ConnectTimeout bounds an MQTT connection's TLS handshake plus CONNECT
	// packet; zero means 10 s.
	ConnectTimeout time.Duration
	// DeviceCertValidity is the lifetime of the device certificates the
	// simulator issues when none is asked for: CreateCertificateFromCsr
	// over MQTT, and the admin API's without validityDays. Zero means 365
	// days.
	DeviceCertValidity time.Duration
	// RotationGrace is how long after a rotate-certificate job execution
	// SUCCEEDED the old certificate is set INACTIVE and detached; zero means
	// 60 s, a negative value at once.
	RotationGrace time.Duration
	// JobTimeoutUnit is the length of a "minute" in the Jobs timeouts
	// (stepTimeoutInMinutes, inProgressTimeoutInMinutes); zero means a
	// minute. Tests shorten it.
	JobTimeoutUnit time.Duration
	// Faults are the provisioning faults in force at start (see
	// Server.SetFaults).
	Faults provision.Faults
	// ShadowMaxDepth is the nesting limit of a shadow update's state node,
	// the state object counting as level 1; zero means
	// shadow.DefaultMaxDepth (6).
	ShadowMaxDepth int
	// DefaultPolicy is the policy attached to the certificates the
	// simulator issues (admin API CreateCertificateFromCsr, hence
	// IssueThingCertificate and `thingsim cert create`) and registers
	// (RegisterCertificate): "" means the built-in least-privilege
	// thingd-device, NoDefaultPolicy none. Certificates from RegisterThing
	// get the policies of the caller's certificate instead.
	DefaultPolicy string
	// StrictLifecycleEvents makes reading $aws/events/presence/ need
	// iot:Subscribe and iot:Receive, as on AWS; by default every admitted
	// client may read the lifecycle events.
	StrictLifecycleEvents bool
}

// Faults are the provisioning faults a test can inject (see package
// provision).
type Faults = provision.Faults

// Info is what a running simulator writes to DIR/api.json so that CLI
// commands and tests started as other processes can find it.
type Info struct {
	APIAddress  string `json:"apiAddress"`  // host:port of the admin API (plain HTTP)
	MQTTAddress string `json:"mqttAddress"` // host:port of the MQTT broker (TLS)
	CAFile      string `json:"caFile"`      // absolute path of ca.pem
	PID         int    `json:"pid"`
}

// Server is a running simulator.
type Server struct {
	dir    string
	log    *slog.Logger
	ca     *ca.CA
	reg    *registry.Registry
	broker *broker.Broker
	jobs   *jobs.Service
	shadow *shadow.Service
	prov   *provision.Service
	audit  *audit.Service
	http   *http.Server
	apiLn  net.Listener
	token  string
	client *api.Client

	defaultPolicies []string // attached to issued certificates
	now             func() time.Time

	serveErr  chan error
	closeOnce sync.Once
	closeErr  error
}

// Start creates or reopens the data directory and starts the broker and the
// admin API. Close stops them.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.Dir == "" {
		return nil, errors.New("sim: Options.Dir is required")
	}
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = DefaultMQTTAddr
	}
	if opts.APIAddr == "" {
		opts.APIAddr = DefaultAPIAddr
	}
	if err := checkLoopback(opts.APIAddr); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("sim: data directory %s: %w", opts.Dir, err)
	}
	s := &Server{dir: dir, log: log, now: now, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if s.ca, err = ca.LoadOrCreate(dir, now()); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if s.token, err = loadOrCreateToken(filepath.Join(dir, TokenFile)); err != nil {
		return nil, err
	}
	if s.reg, err = registry.Open(filepath.Join(dir, DatabaseFile)); err != nil {
		return nil, fmt.Errorf("sim: %w (is another thingsim using %s?)", err, dir)
	}
	if err := s.ensurePolicies(opts); err != nil {
		return nil, err
	}
	if err := s.startServices(ctx, opts); err != nil {
		return nil, err
	}
	h, err := api.NewHandler(api.Options{
		Registry: s.reg, CA: s.ca, Broker: s.broker, Jobs: s.jobs, Shadow: s.shadow, Provisioning: s.prov, Audit: s.audit, Token: s.token,
		Authorizer: s.broker.Authorizer(), DefaultPolicies: s.defaultPolicies,
		Logger: log.With("component", "api"), Now: now, DefaultValidity: opts.DeviceCertValidity,
	})
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	var lc net.ListenConfig
	if s.apiLn, err = lc.Listen(ctx, "tcp", opts.APIAddr); err != nil {
		return nil, fmt.Errorf("sim: admin API listen on %s: %w", opts.APIAddr, err)
	}
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { s.serveErr <- s.http.Serve(s.apiLn) }()
	s.client = api.NewClient(s.APIAddr(), s.token, nil)

	info, err := json.MarshalIndent(s.Info(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sim: encode %s: %w", InfoFile, err)
	}
	if err := ca.WriteFileAtomic(filepath.Join(dir, InfoFile), append(info, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("sim: write %s: %w", InfoFile, err)
	}
	log.Info("thingsim started", "dir", dir, "mqtt", s.MQTTAddr(), "api", s.APIAddr(), "ca", s.CAPath())
	return s, nil
}

// startServices builds the broker, the Jobs, Shadow and provisioning
// services that answer requests through it, then starts listening and arms the services'
// stored timers.
func (s *Server) startServices(ctx context.Context, opts Options) (err error) {
	s.broker, err = broker.New(broker.Options{
		Addr:                  opts.MQTTAddr,
		ServerCert:            s.ca.ServerCertificate(),
		Roots:                 []*x509.Certificate{s.ca.Certificate()},
		Registry:              s.reg,
		Logger:                s.log.With("component", "broker"),
		ConnectTimeout:        opts.ConnectTimeout,
		Now:                   s.now,
		StrictLifecycleEvents: opts.StrictLifecycleEvents,
		OnRequest: func(r *broker.Request) bool {
			return s.jobs.HandleRequest(r) || s.shadow.HandleRequest(r) || s.prov.HandleRequest(r)
		},
	})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	s.prov, err = provision.New(provision.Options{
		Registry: s.reg, CA: s.ca, Disconnect: s.broker.DisconnectCertificate, Now: s.now,
		Logger: s.log.With("component", "provisioning"), CertValidity: opts.DeviceCertValidity, RotationGrace: opts.RotationGrace,
	})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := s.prov.SetFaults(opts.Faults); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	s.jobs, err = jobs.New(jobs.Options{
		Registry: s.reg, Publish: s.broker.Publish, Now: s.now, Logger: s.log.With("component", "jobs"),
		TimeoutUnit: opts.JobTimeoutUnit,
		OnTerminal: func(t jobs.Terminal) {
			if t.Execution.Status == jobs.StatusSucceeded {
				s.prov.RotationSucceeded(t.Execution.ThingName, t.Document, t.Execution.StatusDetails)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	s.shadow, err = shadow.New(shadow.Options{
		Registry: s.reg, Publish: s.broker.Publish, Now: s.now, Logger: s.log.With("component", "shadow"),
		MaxDepth: opts.ShadowMaxDepth,
	})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if s.audit, err = s.newAudit(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := s.broker.Listen(ctx); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := s.jobs.Start(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := s.prov.Start(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := s.audit.Start(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// SetFaults replaces the provisioning faults in force (the zero value clears
// them); see provision.Faults for what each does and how long it lasts.
func (s *Server) SetFaults(f Faults) error { return s.prov.SetFaults(f) }

// Faults returns the provisioning faults in force, with the counts left.
func (s *Server) Faults() Faults { return s.prov.Faults() }

// Close stops the admin API and the broker (clients get a
// SERVER_INITIATED_DISCONNECT), closes the database and removes api.json.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("sim: stop admin API: %w", err))
			}
			cancel()
			if err := <-s.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, fmt.Errorf("sim: admin API: %w", err))
			}
			_ = os.Remove(filepath.Join(s.dir, InfoFile))
		} else if s.apiLn != nil {
			s.apiLn.Close()
		}
		if s.broker != nil {
			errs = append(errs, s.broker.Close())
		}
		if s.jobs != nil {
			s.jobs.Close()
		}
		if s.shadow != nil {
			s.shadow.Close()
		}
		if s.prov != nil {
			s.prov.Close()
		}
		if s.audit != nil {
			s.audit.Close()
		}
		if s.reg != nil {
			errs = append(errs, s.reg.Close())
		}
		s.closeErr = errors.Join(errs...)
		s.log.Info("thingsim stopped", "dir", s.dir)
	})
	return s.closeErr
}

// Dir returns the absolute data directory.
func (s *Server) Dir() string { return s.dir }

// MQTTAddr returns the broker's bound address (host:port).
func (s *Server) MQTTAddr() string { return s.broker.Addr() }

// APIAddr returns the admin API's bound address (host:port).
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// Token returns the admin API bearer token.
func (s *Server) Token() string { return s.token }

// CAPath returns the path of ca.pem, the CA devices must trust for the
// broker and whose certificates the broker accepts.
func (s *Server) CAPath() string { return s.ca.CertPath() }

// CAPEM returns the content of ca.pem.
func (s *Server) CAPEM() []byte { return s.ca.CertificatePEM() }

// CAPool returns a pool with the simulator's root CA, for a client's RootCAs.
func (s *Server) CAPool() *x509.CertPool { return s.ca.Pool() }

// Info returns what is written to api.json.
func (s *Server) Info() Info {
	return Info{APIAddress: s.APIAddr(), MQTTAddress: s.MQTTAddr(), CAFile: s.CAPath(), PID: os.Getpid()}
}

// Client returns an admin API client bound to this server.
func (s *Server) Client() *api.Client { return s.client }

// Clients returns the live MQTT connections.
func (s *Server) Clients() []broker.Client { return s.broker.Clients() }

// IssueThingCertificate creates the thing if needed, signs csrPEM into an
// ACTIVE certificate valid for validityDays (0: 365) and attaches it to the
// thing, through the admin API. It returns the certificate PEM and id.
func (s *Server) IssueThingCertificate(ctx context.Context, thing, csrPEM string, validityDays int) (certPEM, certID string, err error) {
	resp, err := s.client.IssueThingCertificate(ctx, thing, csrPEM, validityDays)
	if err != nil {
		return "", "", fmt.Errorf("sim: issue certificate for %s: %w", thing, err)
	}
	return resp.CertificatePem, resp.CertificateID, nil
}

// RegisterCACertificate makes the broker accept device certificates issued by
// another CA (they must still be registered and ACTIVE to connect).
func (s *Server) RegisterCACertificate(pemBytes []byte) error {
	cert, err := ca.ParseCertificatePEM(pemBytes)
	if err != nil {
		return fmt.Errorf("sim: register CA: %w", err)
	}
	if !cert.IsCA {
		return fmt.Errorf("sim: register CA: %s is not a CA certificate", cert.Subject)
	}
	return s.reg.AddCACertificate(ca.CertificateID(cert.Raw), pemBytes)
}

// RegisterCertificate registers a device certificate issued elsewhere (by a
// CA registered with RegisterCACertificate) with the given status and the
// default policy (Options.DefaultPolicy) attached, and returns its id. It is the in-process equivalent of AWS
// RegisterCertificate.
func (s *Server) RegisterCertificate(pemBytes []byte, status string) (string, error) {
	cert, err := ca.ParseCertificatePEM(pemBytes)
	if err != nil {
		return "", fmt.Errorf("sim: register certificate: %w", err)
	}
	id := ca.CertificateID(cert.Raw)
	now := s.now().UTC()
	err = s.reg.AddCertificate(registry.Certificate{
		ID: id, PEM: string(ca.EncodeCertificate(cert.Raw)), Status: status,
		CreatedAt: now, LastModified: now, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
	})
	if err != nil {
		return "", fmt.Errorf("sim: %w", err)
	}
	if err := s.attachDefaultPolicies(id); err != nil {
		return "", err
	}
	return id, nil
}

// ReadInfo reads DIR/api.json written by a running simulator.
func ReadInfo(dir string) (Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("sim: no running thingsim found in %s (%s is missing; start one with 'thingsim serve --dir %s')", dir, InfoFile, dir)
	} else if err != nil {
		return Info{}, fmt.Errorf("sim: read %s: %w", InfoFile, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return Info{}, fmt.Errorf("sim: decode %s: %w", filepath.Join(dir, InfoFile), err)
	}
	return info, nil
}

// ReadToken reads the admin API token from DIR/admin-token.
func ReadToken(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		return "", fmt.Errorf("sim: read admin token: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

func loadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		if tok := strings.TrimSpace(string(data)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sim: read admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sim: generate admin token: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	if err := ca.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("sim: write admin token: %w", err)
	}
	return tok, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sim: admin API address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("sim: admin API address %q is not a loopback address; the API is for local use only", addr)
}
