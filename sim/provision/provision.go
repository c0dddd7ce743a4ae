// Package provision is thingsim's fleet provisioning MQTT API and the cloud
// half of thingd's certificate rotation contract (design.md §4):
//
//	$aws/certificates/create-from-csr/json                      CreateCertificateFromCsr
//	$aws/provisioning-templates/thingd-rotation/provision/json  RegisterThing
//
// Replies go to request topic + "/accepted" or "/rejected", straight to the
// requesting connection; errors have the AWS shape {statusCode, errorCode,
// errorMessage}. Only the json format is served.
//
// CreateCertificateFromCsr signs the CSR with the simulator's CA (subject
// from the CSR, validity Options.CertValidity), registers the certificate
// PENDING_ACTIVATION and returns it with an ownership token valid for an
// hour (stored in the database, single use). Like AWS, it does not check who
// asks. Since the validity counts from now, a new certificate outlives the
// caller's current one whenever that one was issued with the same validity
// earlier.
//
// The one provisioning template, thingd-rotation, takes the parameters
// ThingName and SerialNumber (optional; the new certificate's serial in
// decimal or hex). It refuses with 403 when the caller's ClientID is not
// ThingName, the caller's certificate is not attached to that thing, or the
// new certificate's CN is not that thing; on AWS these checks belong in the
// template's pre-provisioning hook. Otherwise it attaches the new
// certificate to the thing and to the thing's current policies (those
// attached to the caller's certificate), sets it ACTIVE and answers
// {"thingName": ..., "deviceConfiguration": {}}.
//
// When a rotate-certificate job execution reaches SUCCEEDED with the
// statusDetails newCertificateId and oldCertificateId, RotationSucceeded
// schedules the old certificate's retirement after Options.RotationGrace:
// it is set INACTIVE (its connections are dropped) and detached from the
// thing, provided it is attached to that thing and the new certificate is
// ACTIVE and attached too. Scheduled retirements survive a restart.
//
// Faults (see Faults) make both operations misbehave on purpose for tests.
package provision

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/internal/timers"
	"github.com/thingd/thingd/sim/registry"
)

// Defaults and fixed values.
const (
	DefaultCertValidity  = 365 * 24 * time.Hour
	DefaultRotationGrace = 60 * time.Second
	TokenLifetime        = time.Hour
	// RotationTemplate is the provisioning template thingd rotates with.
	RotationTemplate = "thingd-rotation"
	// RotateOperation is the job document operation of a rotation.
	RotateOperation = "rotate-certificate"

	TopicCreateFromCSR = "$aws/certificates/create-from-csr/json"
	templatePrefix     = "$aws/provisioning-templates/"
)

var (
	bucketTokens      = []byte("ProvisioningTokens") // token → ownership
	bucketRetirements = []byte("Retirements")        // thing \x00 old certificate id → retirement
)

// Options configure a Service.
type Options struct {
	// Registry holds things and certificates; the service keeps its tokens
	// and scheduled retirements in its database. Required.
	Registry *registry.Registry
	// CA signs the certificates. Required.
	CA *ca.CA
	// Disconnect drops the live connections of a certificate that is no
	// longer ACTIVE (the broker's DisconnectCertificate). Required.
	Disconnect func(certID string) int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// CertValidity is the lifetime of issued certificates; zero means
	// DefaultCertValidity (365 days).
	CertValidity time.Duration
	// RotationGrace is how long after a rotation's SUCCEEDED the old
	// certificate is retired; zero means DefaultRotationGrace (60 s), a
	// negative value at once.
	RotationGrace time.Duration
}

// Service is the provisioning service. It is safe for concurrent use.
type Service struct {
	reg        *registry.Registry
	ca         *ca.CA
	db         *bolt.DB
	disconnect func(string) int
	now        func() time.Time
	log        *slog.Logger
	validity   time.Duration
	grace      time.Duration
	timers     *timers.Set // retirements, by key

	// mu guards the following.
	mu        sync.Mutex
	faults    Faults
	untrusted *ca.CA // throwaway CA of the untrusted-ca fault, made on first use
}

// New returns a provisioning service. Start arms the stored retirements.
func New(opts Options) (*Service, error) {
	if opts.Registry == nil || opts.CA == nil || opts.Disconnect == nil {
		return nil, errors.New("provision: Options.Registry, CA and Disconnect are required")
	}
	s := &Service{
		reg: opts.Registry, ca: opts.CA, db: opts.Registry.DB(), disconnect: opts.Disconnect,
		now: opts.Now, log: opts.Logger, validity: opts.CertValidity, grace: opts.RotationGrace,
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.timers = timers.New(s.now)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.validity <= 0 {
		s.validity = DefaultCertValidity
	}
	switch {
	case s.grace == 0:
		s.grace = DefaultRotationGrace
	case s.grace < 0:
		s.grace = 0
	}
	if err := opts.Registry.CreateBuckets(bucketTokens, bucketRetirements); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return s, nil
}

// HandleRequest serves a publish on the provisioning topics and reports
// whether the topic was under $aws/certificates/ or
// $aws/provisioning-templates/; unsupported ones there are swallowed.
func (s *Service) HandleRequest(req *broker.Request) bool {
	if req.Topic == TopicCreateFromCSR {
		s.createFromCSR(req)
		return true
	}
	if rest, ok := strings.CutPrefix(req.Topic, templatePrefix); ok {
		if template, ok := strings.CutSuffix(rest, "/provision/json"); ok && !strings.Contains(template, "/") {
			s.registerThing(req, template)
			return true
		}
	} else if !strings.HasPrefix(req.Topic, "$aws/certificates/") {
		return false
	}
	s.log.Warn("provisioning publish ignored: thingsim serves only CreateCertificateFromCsr and RegisterThing in json",
		"clientId", req.ClientID, "topic", req.Topic)
	return true
}

// apiError is a rejected reply.
type apiError struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.StatusCode, e.ErrorCode, e.ErrorMessage)
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{StatusCode: status, ErrorCode: code, ErrorMessage: fmt.Sprintf(format, args...)}
}

// Error codes.
const (
	codeInvalidPayload = "InvalidPayload"
	codeInvalidCSR     = "InvalidCertificateSigningRequest"
	codeInvalidToken   = "InvalidCertificateOwnershipToken"
	codeInvalidParams  = "InvalidParameters"
	codeNotFound       = "ResourceNotFoundException"
	codeAccessDenied   = "AccessDeniedException"
	codeInternal       = "InternalFailure"
)

// answer sends the accepted reply, or the rejected one if err is set.
func (s *Service) answer(req *broker.Request, v any, err error) {
	topic := req.Topic + "/accepted"
	if err != nil {
		var e *apiError
		if !errors.As(err, &e) {
			s.log.Error("provisioning request failed", "clientId", req.ClientID, "topic", req.Topic, "error", err)
			e = errorf(http.StatusInternalServerError, codeInternal, "internal error")
		} else {
			s.log.Info("provisioning request rejected", "clientId", req.ClientID, "topic", req.Topic, "error", e)
		}
		topic, v = req.Topic+"/rejected", e
	}
	payload, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode provisioning reply", "error", err)
		return
	}
	req.Reply(topic, payload)
}

type createRequest struct {
	CertificateSigningRequest string `json:"certificateSigningRequest"`
}

type createResponse struct {
	CertificateID             string `json:"certificateId"`
	CertificatePem            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
}

// ownership is a stored certificate ownership token.
type ownership struct {
	CertificateID string    `json:"certificateId"`
	ClientID      string    `json:"clientId"` // who asked, for the logs
	ExpiresAt     time.Time `json:"expiresAt"`
}

func (s *Service) createFromCSR(req *broker.Request) {
	fault := s.takeFault(func(f *Faults) *Fault { return &f.CreateFromCSR })
	if fault.Kind == CSRNoReply {
		s.log.Info("fault: no reply to CreateCertificateFromCsr", "clientId", req.ClientID)
		return
	}
	resp, err := s.issue(req, fault)
	s.answer(req, resp, err)
}

func (s *Service) issue(req *broker.Request, fault Fault) (createResponse, error) {
	if fault.Kind == CSRReject {
		return createResponse{}, errorf(http.StatusBadRequest, codeInvalidCSR, "%s", faultMessage(fault, "CreateCertificateFromCsr"))
	}
	var in createRequest
	if err := json.Unmarshal(req.Payload, &in); err != nil {
		return createResponse{}, errorf(http.StatusBadRequest, codeInvalidPayload, "the payload is not a CreateCertificateFromCsr request: %v", err)
	}
	if in.CertificateSigningRequest == "" {
		return createResponse{}, errorf(http.StatusBadRequest, codeInvalidCSR, "certificateSigningRequest is required")
	}
	csr, err := ca.ParseCSR([]byte(in.CertificateSigningRequest))
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return createResponse{}, errorf(http.StatusBadRequest, codeInvalidCSR, "certificateSigningRequest: %v", err)
	}
	now := s.now()
	der, issuer, err := s.sign(csr, now, fault.Kind)
	if err != nil {
		return createResponse{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return createResponse{}, fmt.Errorf("parse issued certificate: %w", err)
	}
	id := ca.CertificateID(der)
	err = s.reg.AddCertificate(registry.Certificate{
		ID: id, PEM: string(ca.EncodeCertificate(der)), Status: registry.StatusPendingActivation,
		CACertID: ca.CertificateID(issuer.Certificate().Raw), CreatedAt: now.UTC(), LastModified: now.UTC(),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
	})
	if err != nil {
		return createResponse{}, err
	}
	token, err := s.newToken(ownership{CertificateID: id, ClientID: req.ClientID, ExpiresAt: now.Add(TokenLifetime)}, now)
	if err != nil {
		return createResponse{}, err
	}
	s.log.Info("certificate created from CSR", "clientId", req.ClientID, "certificateId", id,
		"subject", cert.Subject.CommonName, "not_after", cert.NotAfter, "fault", fault.Kind)
	return createResponse{CertificateID: id, CertificatePem: string(ca.EncodeCertificate(der)), CertificateOwnershipToken: token}, nil
}

// sign issues the certificate for a CSR, as the fault kind says.
func (s *Service) sign(csr *x509.CertificateRequest, now time.Time, kind string) (der []byte, issuer *ca.CA, err error) {
	pub, subject, issuer := csr.PublicKey, csr.Subject, s.ca
	notBefore, notAfter := now.Add(-time.Hour), now.Add(s.validity)
	switch kind {
	case CSROtherKey:
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
		pub = key.Public()
	case CSROtherCN:
		subject.CommonName += "-other"
	case CSRExpired:
		notBefore, notAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	case CSRUntrustedCA:
		if issuer, err = s.untrustedCA(now); err != nil {
			return nil, nil, err
		}
	}
	der, err = issuer.Issue(pub, subject, notBefore, notAfter)
	return der, issuer, err
}

func (s *Service) untrustedCA(now time.Time) (*ca.CA, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.untrusted == nil {
		c, err := ca.NewEphemeral("thingsim untrusted CA", now)
		if err != nil {
			return nil, err
		}
		s.untrusted = c
	}
	return s.untrusted, nil
}

// newToken stores a new ownership token, dropping expired ones.
func (s *Service) newToken(o ownership, now time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	data, err := json.Marshal(o)
	if err != nil {
		return "", err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketTokens)
		var expired [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			var old ownership
			if json.Unmarshal(v, &old) != nil || !now.Before(old.ExpiresAt) {
				expired = append(expired, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return bk.Put([]byte(token), data)
	})
	if err != nil {
		return "", fmt.Errorf("store ownership token: %w", err)
	}
	return token, nil
}

// token returns a valid stored ownership token.
func (s *Service) token(token string) (ownership, error) {
	var o ownership
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketTokens).Get([]byte(token))
		if found = data != nil; found {
			return json.Unmarshal(data, &o)
		}
		return nil
	})
	if err != nil {
		return ownership{}, fmt.Errorf("read ownership token: %w", err)
	}
	if !found || !s.now().Before(o.ExpiresAt) {
		return ownership{}, errorf(http.StatusBadRequest, codeInvalidToken, "the certificate ownership token is unknown or expired (tokens live %v)", TokenLifetime)
	}
	return o, nil
}

func (s *Service) deleteToken(token string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Delete([]byte(token)) })
}

type registerRequest struct {
	CertificateOwnershipToken string            `json:"certificateOwnershipToken"`
	Parameters                map[string]string `json:"parameters"`
}

type registerResponse struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

func (s *Service) registerThing(req *broker.Request, template string) {
	fault := s.takeFault(func(f *Faults) *Fault { return &f.RegisterThing })
	resp, err := s.register(req, template, fault)
	s.answer(req, resp, err)
}

func (s *Service) register(req *broker.Request, template string, fault Fault) (registerResponse, error) {
	if fault.Kind == RegisterReject {
		return registerResponse{}, errorf(http.StatusForbidden, codeAccessDenied, "%s", faultMessage(fault, "RegisterThing"))
	}
	if template != RotationTemplate {
		return registerResponse{}, errorf(http.StatusNotFound, codeNotFound, "provisioning template %q does not exist (thingsim has %s)", template, RotationTemplate)
	}
	var in registerRequest
	if err := json.Unmarshal(req.Payload, &in); err != nil {
		return registerResponse{}, errorf(http.StatusBadRequest, codeInvalidPayload, "the payload is not a RegisterThing request: %v", err)
	}
	if in.CertificateOwnershipToken == "" {
		return registerResponse{}, errorf(http.StatusBadRequest, codeInvalidToken, "Certificate ownership token cannot be empty.")
	}
	o, err := s.token(in.CertificateOwnershipToken)
	if err != nil {
		return registerResponse{}, err
	}
	thing := in.Parameters["ThingName"]
	if thing == "" {
		return registerResponse{}, errorf(http.StatusBadRequest, codeInvalidParams, "template %s needs the parameter ThingName", template)
	}
	cert, err := s.checkRotation(req, thing, o.CertificateID)
	if err != nil {
		return registerResponse{}, err
	}
	if sn, ok := in.Parameters["SerialNumber"]; ok && !serialMatches(sn, cert.SerialNumber) {
		return registerResponse{}, errorf(http.StatusBadRequest, codeInvalidParams,
			"SerialNumber %q is not the new certificate's serial number (in decimal or hex)", sn)
	}
	if err := s.reg.AttachPrincipal(thing, o.CertificateID); err != nil {
		return registerResponse{}, err
	}
	if err := s.inheritPolicies(req.CertificateID, o.CertificateID); err != nil {
		return registerResponse{}, err
	}
	if _, err := s.reg.SetCertificateStatus(o.CertificateID, registry.StatusActive, s.now()); errors.Is(err, registry.ErrState) {
		return registerResponse{}, errorf(http.StatusForbidden, codeAccessDenied, "certificate %s is REVOKED", o.CertificateID)
	} else if err != nil {
		return registerResponse{}, err
	}
	if err := s.deleteToken(in.CertificateOwnershipToken); err != nil {
		return registerResponse{}, err
	}
	s.log.Info("certificate registered to thing", "thing", thing, "certificateId", o.CertificateID, "template", template)
	if fault.Kind == RegisterDeactivate {
		if _, err := s.reg.SetCertificateStatus(o.CertificateID, registry.StatusInactive, s.now()); err != nil {
			return registerResponse{}, err
		}
		s.disconnect(o.CertificateID)
		s.log.Info("fault: new certificate deactivated right after RegisterThing", "thing", thing, "certificateId", o.CertificateID)
	}
	return registerResponse{DeviceConfiguration: map[string]string{}, ThingName: thing}, nil
}

// inheritPolicies attaches the policies of the caller's certificate to the
// new one.
func (s *Service) inheritPolicies(from, to string) error {
	ps, err := s.reg.AttachedPolicies(registry.CertificateARN(from))
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := s.reg.AttachPolicy(p.Name, registry.CertificateARN(to)); err != nil {
			return err
		}
	}
	return nil
}

// checkRotation applies the thingd-rotation template's ownership checks and
// returns the new certificate.
func (s *Service) checkRotation(req *broker.Request, thing, newID string) (*x509.Certificate, error) {
	if req.ClientID != thing {
		return nil, errorf(http.StatusForbidden, codeAccessDenied, "client %s may not register a certificate for thing %s (ClientID must be the thing name)", req.ClientID, thing)
	}
	attached, err := s.reg.IsAttached(thing, req.CertificateID)
	if err != nil {
		return nil, err
	}
	if !attached {
		return nil, errorf(http.StatusForbidden, codeAccessDenied, "the caller's certificate %s is not attached to thing %s", req.CertificateID, thing)
	}
	stored, err := s.reg.Certificate(newID)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, errorf(http.StatusBadRequest, codeInvalidToken, "the certificate of this ownership token no longer exists")
	} else if err != nil {
		return nil, err
	}
	cert, err := ca.ParseCertificatePEM([]byte(stored.PEM))
	if err != nil {
		return nil, err
	}
	if cert.Subject.CommonName != thing {
		return nil, errorf(http.StatusForbidden, codeAccessDenied, "the new certificate's CN %q is not thing %s", cert.Subject.CommonName, thing)
	}
	return cert, nil
}

// serialMatches reports whether a SerialNumber parameter names serial, in
// decimal or hex (optionally 0x-prefixed or colon-separated).
func serialMatches(param string, serial *big.Int) bool {
	if d, ok := new(big.Int).SetString(param, 10); ok && d.Cmp(serial) == 0 {
		return true
	}
	hex := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(param), "0x"), ":", "")
	h, ok := new(big.Int).SetString(hex, 16)
	return ok && h.Cmp(serial) == 0
}

func faultMessage(f Fault, op string) string {
	if f.Message != "" {
		return f.Message
	}
	return "thingsim fault: " + op + " refused"
}
