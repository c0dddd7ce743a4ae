// Package config reads thingd's TOML configuration file strictly (unknown
// keys are errors naming the file, line and key) and validates it whole
// before anything connects. Each subsystem takes its own options, derived
// from the Config here; none gets the whole file.
package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"

	"github.com/thingd/thingd/keystore"
)

// Defaults applied when a key is absent.
const (
	DefaultStateDir          = "/var/lib/thingd"
	DefaultBackoffBase       = time.Second
	DefaultBackoffCap        = 120 * time.Second
	DefaultBackoffResetAfter = 20 * time.Second
)

// Duration is a time.Duration written as a Go duration string ("1s", "2m").
type Duration time.Duration

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 1s, 2m30s)", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// file is the on-disk shape. Field names are the TOML keys.
type file struct {
	ThingName   string    `toml:"thing_name"`
	Endpoint    string    `toml:"endpoint"`
	ServerCA    string    `toml:"server_ca"`
	StateDir    string    `toml:"state_dir"`
	Key         string    `toml:"key"`
	Certificate string    `toml:"certificate"`
	LogLevel    string    `toml:"log_level"`
	Backoff     *backoff  `toml:"backoff"`
	Rotation    *rotation `toml:"rotation"`
	Renewal     *renewal  `toml:"renewal"`
	Shadow      *shadowT  `toml:"shadow"`
	Gateway     *gatewayT `toml:"gateway"`
	Children    []child   `toml:"child"`
}

type shadowT struct {
	Enabled        *bool     `toml:"enabled"`
	ReportInterval *Duration `toml:"report_interval"`
}

type rotation struct {
	KeyB          string    `toml:"key_b"`
	DeviceCA      string    `toml:"device_ca"`
	VerifyTimeout *Duration `toml:"verify_timeout"`
	ReplyTimeout  *Duration `toml:"reply_timeout"`
	ClockSkew     *Duration `toml:"clock_skew"`
}

type renewal struct {
	Enabled       *bool     `toml:"enabled"`
	Fraction      *float64  `toml:"fraction"`
	MaxBefore     *Duration `toml:"max_before"`
	CheckInterval *Duration `toml:"check_interval"`
}

type backoff struct {
	Base       *Duration `toml:"base"`
	Cap        *Duration `toml:"cap"`
	ResetAfter *Duration `toml:"reset_after"`
}

// Backoff bounds the reconnect delays: full jitter over an exponential
// schedule from Base up to Cap; the attempt counter is reset only after a
// session has stayed up ResetAfter.
type Backoff struct {
	Base, Cap, ResetAfter time.Duration
}

// Config is a validated configuration.
type Config struct {
	// Path is the file the config was read from.
	Path string
	// ThingName is the thing name, MQTT ClientID and certificate CN.
	ThingName string
	// Endpoint is host:port of the MQTT broker.
	Endpoint string
	// Host and Port are the parts of Endpoint.
	Host string
	Port int
	// ServerCAFile holds the CA certificates that sign the broker's
	// certificate; ServerCAs is the parsed pool.
	ServerCAFile string
	ServerCAs    *x509.CertPool
	// StateDir is where thingd keeps its state (status, journal, slots).
	StateDir string
	// Key is the device key URI.
	Key *keystore.URI
	// CertificateFile is the device certificate (PEM, leaf first).
	CertificateFile string
	// LogLevel is the slog level.
	LogLevel slog.Level
	// Backoff bounds reconnect delays.
	Backoff Backoff
	// Rotation configures certificate rotation.
	Rotation Rotation
	// Renewal configures renewal without a job.
	Renewal Renewal
	// Shadow configures the Device Shadow reports.
	Shadow Shadow
	// Gateway configures the gateway role: system facts and the serial
	// devices reported as their own things.
	Gateway Gateway
}

// Shadow configures what thingd reports in its classic shadow ([shadow]).
type Shadow struct {
	// Enabled turns shadow reports and desired config on (default true).
	Enabled bool
	// ReportInterval is how often the full state is reported (default
	// 5 min); the cloud may change it through desired.config.
	ReportInterval time.Duration
}

// DefaultReportInterval is the shadow report interval by default.
const DefaultReportInterval = 5 * time.Minute

// Rotation configures certificate rotation ([rotation]).
type Rotation struct {
	// KeyB is the URI of key slot B; nil means derived from Key (same
	// module: object "<name>-b", TPM handle + 1, file "<name>-b.pem").
	KeyB *keystore.URI
	// DeviceCAFile and DeviceCAs, if set, must sign every new device
	// certificate a rotation receives.
	DeviceCAFile string
	DeviceCAs    *x509.CertPool
	// VerifyTimeout bounds the proof that a new identity works.
	VerifyTimeout time.Duration
	// ReplyTimeout bounds each request to the cloud.
	ReplyTimeout time.Duration
	// ClockSkew tolerated when checking a new certificate's notBefore.
	ClockSkew time.Duration
}

// Renewal configures renewal without a job ([renewal]).
type Renewal struct {
	// Enabled turns renewal without a job on (default true).
	Enabled bool
	// Fraction of the lifetime at its end that is the renewal window.
	Fraction float64
	// MaxBefore caps the window's length before notAfter.
	MaxBefore time.Duration
	// CheckInterval is how often the certificate is looked at.
	CheckInterval time.Duration
}

// Rotation and renewal defaults.
const (
	DefaultVerifyTimeout  = 30 * time.Second
	DefaultReplyTimeout   = 30 * time.Second
	DefaultClockSkew      = 5 * time.Minute
	DefaultRenewFraction  = 1.0 / 3
	DefaultRenewMaxBefore = 30 * 24 * time.Hour
	DefaultCheckInterval  = time.Hour
)

// Error is a configuration error. It names the file and, where known, the
// line and key.
type Error struct {
	Path string
	Line int    // 0 when unknown
	Key  string // "" when not about one key
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config ")
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates config data; path is used in errors.
func Parse(path string, data []byte) (*Config, error) {
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(path, data, err)
	}
	return validate(path, data, &f)
}

func decodeError(path string, data []byte, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		var errs []error
		for i := range sm.Errors {
			de := &sm.Errors[i]
			row, _ := de.Position()
			errs = append(errs, &Error{Path: path, Line: row, Key: strings.Join(de.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		return &Error{Path: path, Line: row, Key: strings.Join(de.Key(), "."), Msg: de.Error()}
	}
	return &Error{Path: path, Msg: err.Error()}
}

// lineOf finds the line where key is assigned, for validation errors.
func lineOf(data []byte, key string) int {
	short := key[strings.LastIndexByte(key, '.')+1:]
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == short {
			return i + 1
		}
	}
	return 0
}

func validate(path string, data []byte, f *file) (*Config, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Path: path, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	c := &Config{Path: path, ThingName: f.ThingName, Endpoint: f.Endpoint, StateDir: f.StateDir,
		CertificateFile: f.Certificate, ServerCAFile: f.ServerCA}

	if err := CheckThingName(f.ThingName); err != nil {
		bad("thing_name", "%v", err)
	}

	if f.Endpoint == "" {
		bad("endpoint", "missing (want host:port, e.g. xxxx-ats.iot.eu-west-1.amazonaws.com:8883)")
	} else if host, port, err := net.SplitHostPort(f.Endpoint); err != nil || host == "" {
		bad("endpoint", "%q is not host:port", f.Endpoint)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		bad("endpoint", "port %q is not a number 1-65535", port)
	} else {
		c.Host, c.Port = host, p
	}

	if f.ServerCA == "" {
		bad("server_ca", "missing (the PEM file with the CA that signs the broker's certificate)")
	} else if pool, err := loadCAs(f.ServerCA); err != nil {
		bad("server_ca", "%v", err)
	} else {
		c.ServerCAs = pool
	}

	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		bad("state_dir", "%q is not an absolute path", c.StateDir)
	}

	if f.Key == "" {
		bad("key", "missing (a pkcs11:, tpm: or file: key URI)")
	} else if u, err := keystore.ParseURI(f.Key); err != nil {
		bad("key", "%v", err)
	} else {
		c.Key = u
	}

	if f.Certificate == "" {
		bad("certificate", "missing (the device certificate PEM file)")
	} else if !filepath.IsAbs(f.Certificate) {
		bad("certificate", "%q is not an absolute path", f.Certificate)
	}

	switch strings.ToLower(f.LogLevel) {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", f.LogLevel)
	}

	c.Backoff = Backoff{Base: DefaultBackoffBase, Cap: DefaultBackoffCap, ResetAfter: DefaultBackoffResetAfter}
	if b := f.Backoff; b != nil {
		if b.Base != nil {
			c.Backoff.Base = time.Duration(*b.Base)
		}
		if b.Cap != nil {
			c.Backoff.Cap = time.Duration(*b.Cap)
		}
		if b.ResetAfter != nil {
			c.Backoff.ResetAfter = time.Duration(*b.ResetAfter)
		}
	}
	if c.Backoff.Base <= 0 {
		bad("backoff.base", "must be positive")
	}
	if c.Backoff.Cap < c.Backoff.Base {
		bad("backoff.cap", "%v is less than backoff.base %v", c.Backoff.Cap, c.Backoff.Base)
	}
	if c.Backoff.ResetAfter < 0 {
		bad("backoff.reset_after", "must not be negative")
	}
	validateRotation(c, f, bad)
	validateGateway(c, f, data, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func durationOr(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

func validateRotation(c *Config, f *file, bad func(key, format string, args ...any)) {
	ro := f.Rotation
	if ro == nil {
		ro = &rotation{}
	}
	c.Rotation = Rotation{
		VerifyTimeout: durationOr(ro.VerifyTimeout, DefaultVerifyTimeout),
		ReplyTimeout:  durationOr(ro.ReplyTimeout, DefaultReplyTimeout),
		ClockSkew:     durationOr(ro.ClockSkew, DefaultClockSkew),
		DeviceCAFile:  ro.DeviceCA,
	}
	if ro.KeyB != "" {
		if u, err := keystore.ParseURI(ro.KeyB); err != nil {
			bad("rotation.key_b", "%v", err)
		} else if c.Key != nil && u.Scheme != c.Key.Scheme {
			bad("rotation.key_b", "is a %s: key but key is a %s: key; both slots must be in the same module", u.Scheme, c.Key.Scheme)
		} else if c.Key != nil && u.Secret() == c.Key.Secret() {
			bad("rotation.key_b", "is the same key as key; slot B must be a different object")
		} else {
			c.Rotation.KeyB = u
		}
	}
	if ro.DeviceCA != "" {
		if pool, err := loadCAs(ro.DeviceCA); err != nil {
			bad("rotation.device_ca", "%v", err)
		} else {
			c.Rotation.DeviceCAs = pool
		}
	}
	if c.Rotation.VerifyTimeout < time.Second || c.Rotation.VerifyTimeout > time.Hour {
		bad("rotation.verify_timeout", "%v is not between 1s and 1h", c.Rotation.VerifyTimeout)
	}
	if c.Rotation.ReplyTimeout < time.Second || c.Rotation.ReplyTimeout > 10*time.Minute {
		bad("rotation.reply_timeout", "%v is not between 1s and 10m", c.Rotation.ReplyTimeout)
	}
	if c.Rotation.ClockSkew < 0 || c.Rotation.ClockSkew > 24*time.Hour {
		bad("rotation.clock_skew", "%v is not between 0 and 24h", c.Rotation.ClockSkew)
	}

	rn := f.Renewal
	if rn == nil {
		rn = &renewal{}
	}
	c.Renewal = Renewal{Enabled: true, Fraction: DefaultRenewFraction,
		MaxBefore:     durationOr(rn.MaxBefore, DefaultRenewMaxBefore),
		CheckInterval: durationOr(rn.CheckInterval, DefaultCheckInterval)}
	if rn.Enabled != nil {
		c.Renewal.Enabled = *rn.Enabled
	}
	if rn.Fraction != nil {
		c.Renewal.Fraction = *rn.Fraction
		if *rn.Fraction <= 0 || *rn.Fraction > 0.9 {
			bad("renewal.fraction", "%v is not in (0, 0.9]", *rn.Fraction)
		}
	}
	if c.Renewal.MaxBefore <= 0 {
		bad("renewal.max_before", "must be positive")
	}
	if c.Renewal.CheckInterval < time.Second {
		bad("renewal.check_interval", "%v is less than 1s", c.Renewal.CheckInterval)
	}

	sh := f.Shadow
	if sh == nil {
		sh = &shadowT{}
	}
	c.Shadow = Shadow{Enabled: true, ReportInterval: durationOr(sh.ReportInterval, DefaultReportInterval)}
	if sh.Enabled != nil {
		c.Shadow.Enabled = *sh.Enabled
	}
	if c.Shadow.ReportInterval < 10*time.Second || c.Shadow.ReportInterval > 24*time.Hour {
		bad("shadow.report_interval", "%v is not between 10s and 24h", c.Shadow.ReportInterval)
	}
}

// CheckThingName checks the AWS rules for a thing name that is also an MQTT
// ClientID: 1-128 bytes of [a-zA-Z0-9:_-], so never starting with '$'.
func CheckThingName(name string) error {
	if name == "" {
		return errors.New("missing")
	}
	if len(name) > 128 {
		return fmt.Errorf("%d bytes, at most 128 allowed", len(name))
	}
	if !utf8.ValidString(name) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-') {
			return fmt.Errorf("%q: character %q is not allowed (thing names use a-z A-Z 0-9 : _ -)", name, r)
		}
	}
	return nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
