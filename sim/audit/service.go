package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/internal/timers"
	"github.com/thingd/thingd/sim/registry"
)

// ErrClosed: the service has been closed.
var ErrClosed = errors.New("audit: service closed")

var (
	bucketConfig       = []byte("AuditConfiguration")
	bucketTasks        = []byte("AuditTasks")
	bucketFindings     = []byte("AuditFindings") // taskId \x00 %06d → Finding
	bucketScheduled    = []byte("ScheduledAudits")
	bucketActions      = []byte("MitigationActions")
	bucketMitigation   = []byte("AuditMitigationTasks")
	bucketExecutions   = []byte("AuditMitigationExecutions") // taskId \x00 %06d → Execution
	bucketRemediation  = []byte("RemediationRules")
	configKey          = "account"
	auditHistoryWindow = 31 * 24 * time.Hour // on-demand connection history window
	maxRunningOnDemand = 10
	maxScheduledAudits = 5
	defaultHTTPTimeout = 10 * time.Second
	nameRE             = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	taskIDRE           = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
)

// Policies is what the audit needs from the policy service: the policy
// checks read the default versions, REPLACE_DEFAULT_POLICY_VERSION writes a
// new one.
type Policies interface {
	// DefaultPolicyVersions returns the default version of every policy.
	DefaultPolicyVersions() ([]PolicyVersion, error)
	// PolicyVersions returns a policy's versions, oldest first.
	PolicyVersions(policyName string) ([]PolicyVersion, error)
	// CreatePolicyVersion adds a version (failing when the policy has 5).
	CreatePolicyVersion(policyName, document string, setAsDefault bool) (PolicyVersion, error)
	// DeletePolicyVersion deletes a non-default version.
	DeletePolicyVersion(policyName, versionID string) error
	// RestrictiveDocument returns the document that replaces an overly
	// permissive default version: the built-in least-privilege device
	// policy.
	RestrictiveDocument() string
}

// Options configure a Service.
type Options struct {
	// Registry holds certificates, connections, things and groups; the
	// service keeps its own buckets in its database. Required.
	Registry *registry.Registry
	// CA is the simulator's CA: its root is audited with the registered CA
	// certificates and its revocation list is what
	// REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK compares with. Required.
	CA *ca.CA
	// Publish sends a message to an MQTT topic's subscribers (the broker's
	// in-process publish). Required.
	Publish func(topic string, payload []byte) error
	// Disconnect closes the live connections of a certificate that was
	// deactivated (UPDATE_DEVICE_CERTIFICATE); nil means none are closed.
	Disconnect func(certID string) int
	// ThingAddedToGroup is told after ADD_THINGS_TO_THING_GROUP added a
	// thing to a group, so that continuous jobs start on it; nil means
	// nobody is told.
	ThingAddedToGroup func(group, thing string) error
	// Policies gives the policy checks their policies; nil means there are
	// none (and REPLACE_DEFAULT_POLICY_VERSION fails).
	Policies Policies
	// HTTPClient delivers webhook notifications; nil means a client with a
	// 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// NewID returns task, finding and action ids; nil means 32 random hex
	// digits. Tests make them predictable.
	NewID func() string
}

// Service is the Device Defender audit service. It is safe for concurrent
// use.
type Service struct {
	opts   Options
	db     *bolt.DB
	reg    *registry.Registry
	log    *slog.Logger
	now    func() time.Time
	newID  func() string
	http   *http.Client
	timers *timers.Set // scheduled audits, by name

	ctx    context.Context // canceled by Close: webhook deliveries
	cancel context.CancelFunc

	// mu serializes the changes that read before they write (task limits,
	// configuration merges); it guards closed.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // tasks running
}

// New returns a service storing its data in opts.Registry's database.
// Start arms the scheduled audits.
func New(opts Options) (*Service, error) {
	if opts.Registry == nil || opts.CA == nil || opts.Publish == nil {
		return nil, errors.New("audit: Options.Registry, CA and Publish are required")
	}
	s := &Service{opts: opts, db: opts.Registry.DB(), reg: opts.Registry, log: opts.Logger, now: opts.Now, newID: opts.NewID, http: opts.HTTPClient}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = randomID
	}
	if s.http == nil {
		s.http = &http.Client{Timeout: defaultHTTPTimeout}
	}
	s.timers = timers.New(s.now)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	err := opts.Registry.CreateBuckets(bucketConfig, bucketTasks, bucketFindings, bucketScheduled, bucketActions,
		bucketMitigation, bucketExecutions, bucketRemediation)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return s, nil
}

// Close stops the schedules, cancels webhook deliveries and waits for the
// tasks running. Later calls to start tasks fail with ErrClosed.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.timers.Close()
	s.cancel()
	s.wg.Wait()
}

// goRun runs fn in a goroutine Close waits for, unless the service is
// closed.
func (s *Service) goRun(fn func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Configuration returns the account audit configuration: the stored one
// over the defaults (every check thingsim implements, enabled except
// DEVICE_CERTIFICATE_AGE_CHECK, without configuration; no notification
// target).
func (s *Service) Configuration() (Configuration, error) {
	var c Configuration
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		c, err = configurationTx(tx)
		return err
	})
	if err != nil {
		return Configuration{}, fmt.Errorf("audit: read configuration: %w", err)
	}
	return c, nil
}

func configurationTx(tx *bolt.Tx) (Configuration, error) {
	c := Configuration{AuditNotificationTargetConfigurations: map[string]NotificationTarget{}, AuditCheckConfigurations: map[string]CheckConfiguration{}}
	for name, spec := range checks {
		c.AuditCheckConfigurations[name] = CheckConfiguration{Enabled: !spec.disabled}
	}
	var stored Configuration
	if ok, err := getJSON(tx.Bucket(bucketConfig), configKey, &stored); err != nil || !ok {
		return c, err
	}
	c.RoleArn = stored.RoleArn
	maps.Copy(c.AuditNotificationTargetConfigurations, stored.AuditNotificationTargetConfigurations)
	maps.Copy(c.AuditCheckConfigurations, stored.AuditCheckConfigurations)
	return c, nil
}

// UpdateConfiguration merges an UpdateAccountAuditConfiguration request
// into the configuration: the checks and targets it names replace their
// entries, the others are kept. It refuses checks thingsim does not
// implement (when enabled), thresholds out of 30..3652 days, notification
// targets other than SNS, and disabling a check a scheduled audit uses.
func (s *Service) UpdateConfiguration(req Configuration) (Configuration, error) {
	for name, cfg := range req.AuditCheckConfigurations {
		canon := CanonicalCheckName(name)
		if _, ok := checks[canon]; !ok && cfg.Enabled {
			return Configuration{}, fmt.Errorf("%w: thingsim does not implement the audit check %s (it implements %v)", registry.ErrInvalid, name, CheckNames())
		}
		for k, v := range cfg.Configuration {
			if err := validateThreshold(canon, k, v); err != nil {
				return Configuration{}, err
			}
		}
		if canon != name {
			delete(req.AuditCheckConfigurations, name)
			req.AuditCheckConfigurations[canon] = cfg
		}
	}
	for k := range req.AuditNotificationTargetConfigurations {
		if k != "SNS" {
			return Configuration{}, fmt.Errorf("%w: notification target type %q (only SNS)", registry.ErrInvalid, k)
		}
	}
	var out Configuration
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, err := configurationTx(tx)
		if err != nil {
			return err
		}
		scheduled, err := listJSON[ScheduledAudit](tx, bucketScheduled)
		if err != nil {
			return err
		}
		for name, cfg := range req.AuditCheckConfigurations {
			for _, sa := range scheduled {
				if !cfg.Enabled && slices.Contains(sa.TargetCheckNames, name) {
					return fmt.Errorf("%w: check %s is used by scheduled audit %s and cannot be disabled", registry.ErrInvalid, name, sa.ScheduledAuditName)
				}
			}
		}
		if req.RoleArn != "" {
			cur.RoleArn = req.RoleArn
		}
		maps.Copy(cur.AuditNotificationTargetConfigurations, req.AuditNotificationTargetConfigurations)
		maps.Copy(cur.AuditCheckConfigurations, req.AuditCheckConfigurations)
		out = cur
		return putJSON(tx.Bucket(bucketConfig), configKey, cur)
	})
	if err != nil {
		return Configuration{}, fmt.Errorf("audit: update configuration: %w", err)
	}
	s.log.Info("audit configuration updated")
	return out, nil
}

func validateThreshold(check, key, value string) error {
	want := map[string]string{DeviceCertificateExpiring: ExpirationThresholdKey, DeviceCertificateAge: AgeThresholdKey}[check]
	if key != want {
		return fmt.Errorf("%w: check %s has no configuration %s", registry.ErrInvalid, check, key)
	}
	var days int
	if _, err := fmt.Sscanf(value, "%d", &days); err != nil || fmt.Sprint(days) != value || days < MinThresholdDays || days > MaxThresholdDays {
		return fmt.Errorf("%w: %s.%s %q must be a whole number of days from %d to %d", registry.ErrInvalid, check, key, value, MinThresholdDays, MaxThresholdDays)
	}
	return nil
}
