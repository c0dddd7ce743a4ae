package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/shadow"
)

// Connections is what the API needs from the broker.
type Connections interface {
	// Clients returns the live connections.
	Clients() []broker.Client
	// DisconnectCertificate closes the live connections using a certificate.
	DisconnectCertificate(certID string) int
}

// Options configure the admin API handler.
type Options struct {
	Registry *registry.Registry
	CA       *ca.CA
	Broker   Connections
	// Jobs is the Jobs service behind the job and thing group operations.
	Jobs *jobs.Service
	// Shadow is the Device Shadow service behind the shadow operations.
	Shadow *shadow.Service
	// Provisioning holds the provisioning faults of /thingsim/faults.
	Provisioning *provision.Service
	// Audit is the Device Defender audit service behind /audit/,
	// /mitigationactions/ and /thingsim/remediation; nil leaves those
	// operations out.
	Audit *audit.Service
	// Authorizer answers TestAuthorization as the broker enforces the
	// policies; nil means one on Registry with the default rules.
	Authorizer *broker.Authorizer
	// DefaultPolicies are attached to every certificate
	// CreateCertificateFromCsr issues.
	DefaultPolicies []string
	// Token is the bearer token every request must carry.
	Token string
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock for creation dates and certificate validity; nil means time.Now.
	Now func() time.Time
	// DefaultValidity is the validity of certificates from
	// CreateCertificateFromCsr without validityDays; zero means
	// DefaultValidityDays.
	DefaultValidity time.Duration
}

type handler struct {
	Options
	mux *http.ServeMux
}

// NewHandler returns the admin API as an http.Handler.
func NewHandler(opts Options) (http.Handler, error) {
	if opts.Registry == nil || opts.CA == nil || opts.Broker == nil || opts.Jobs == nil || opts.Shadow == nil || opts.Provisioning == nil {
		return nil, errors.New("api: Registry, CA, Broker, Jobs, Shadow and Provisioning are required")
	}
	if opts.DefaultValidity <= 0 {
		opts.DefaultValidity = DefaultValidityDays * 24 * time.Hour
	}
	if opts.Token == "" {
		return nil, errors.New("api: Token is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{Options: opts, mux: http.NewServeMux()}
	routes := map[string]func(*http.Request) (any, error){
		"POST /things/{thingName}":              h.createThing,
		"GET /things/{thingName}":               h.describeThing,
		"DELETE /things/{thingName}":            h.deleteThing,
		"GET /things":                           h.listThings,
		"POST /certificates":                    h.createCertificateFromCSR,
		"GET /certificates":                     h.listCertificates,
		"GET /certificates/{certificateId}":     h.describeCertificate,
		"PUT /certificates/{certificateId}":     h.updateCertificate,
		"PUT /things/{thingName}/principals":    h.attachThingPrincipal,
		"DELETE /things/{thingName}/principals": h.detachThingPrincipal,
		"GET /things/{thingName}/principals":    h.listThingPrincipals,
		"GET /principals/things":                h.listPrincipalThings,
		"GET /thingsim/clients":                 h.clients,
		"GET /thingsim/connections":             h.connections,

		"PUT /jobs/{jobId}":                           h.createJob,
		"GET /jobs/{jobId}":                           h.describeJob,
		"GET /jobs/{jobId}/job-document":              h.getJobDocument,
		"GET /jobs":                                   h.listJobs,
		"PUT /jobs/{jobId}/cancel":                    h.cancelJob,
		"GET /jobs/{jobId}/things":                    h.listJobExecutionsForJob,
		"GET /things/{thingName}/jobs/{jobId}":        h.describeJobExecution,
		"GET /things/{thingName}/jobs":                h.listJobExecutionsForThing,
		"POST /thing-groups/{thingGroupName}":         h.createThingGroup,
		"GET /thing-groups/{thingGroupName}":          h.describeThingGroup,
		"GET /thing-groups":                           h.listThingGroups,
		"GET /thing-groups/{thingGroupName}/things":   h.listThingsInThingGroup,
		"PUT /thing-groups/addThingToThingGroup":      h.addThingToThingGroup,
		"PUT /thing-groups/removeThingFromThingGroup": h.removeThingFromThingGroup,
		"GET /thingsim/faults":                        h.getFaults,
		"PUT /thingsim/faults":                        h.setFaults,

		"GET /things/{thingName}/shadow":                              h.getThingShadow,
		"POST /things/{thingName}/shadow":                             h.updateThingShadow,
		"DELETE /things/{thingName}/shadow":                           h.deleteThingShadow,
		"GET /api/things/shadow/ListNamedShadowsForThing/{thingName}": h.listNamedShadowsForThing,
	}
	for pattern, fn := range h.auditRoutes() {
		routes[pattern] = fn
	}
	for pattern, fn := range h.policyRoutes() {
		routes[pattern] = fn
	}
	for pattern, fn := range routes {
		h.mux.HandleFunc(pattern, h.wrap(fn))
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{StatusCode: http.StatusNotFound, Type: ErrUnknownOperation,
			Message: fmt.Sprintf("no operation for %s %s", r.Method, r.URL.Path)})
	})
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := r.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+h.Token)) != 1 {
		writeError(w, &Error{StatusCode: http.StatusUnauthorized, Type: ErrUnauthorized,
			Message: "missing or wrong bearer token (see the admin-token file in the thingsim directory)"})
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) wrap(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := fn(r)
		if err != nil {
			apiErr := toAPIError(err)
			if apiErr.StatusCode >= 500 {
				h.Logger.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			} else {
				h.Logger.Debug("admin API request refused", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeError(w, apiErr)
			return
		}
		if resp == nil {
			resp = struct{}{}
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("x-amzn-ErrorType", e.Type)
	writeJSON(w, e.StatusCode, ErrorResponse{Message: e.Message})
}

// toAPIError maps registry errors to AWS error types.
func toAPIError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, registry.ErrNotFound):
		return &Error{StatusCode: http.StatusNotFound, Type: ErrResourceNotFound, Message: err.Error()}
	case errors.Is(err, registry.ErrAlreadyExists):
		return &Error{StatusCode: http.StatusConflict, Type: ErrResourceAlreadyExists, Message: err.Error()}
	case errors.Is(err, registry.ErrInvalid):
		return &Error{StatusCode: http.StatusBadRequest, Type: ErrInvalidRequest, Message: err.Error()}
	case errors.Is(err, registry.ErrState):
		return &Error{StatusCode: http.StatusNotAcceptable, Type: ErrCertificateState, Message: err.Error()}
	case errors.Is(err, jobs.ErrInvalidStateTransition):
		return &Error{StatusCode: http.StatusConflict, Type: ErrInvalidStateTransition, Message: err.Error()}
	}
	if e := policyError(err); e != nil {
		return e
	}
	var se *shadow.Error
	if errors.As(err, &se) {
		return &Error{StatusCode: se.Code, Type: shadowErrorType(se.Code), Message: se.Message}
	}
	return &Error{StatusCode: http.StatusInternalServerError, Type: ErrInternalFailure, Message: err.Error()}
}

func invalid(format string, args ...any) error {
	return &Error{StatusCode: http.StatusBadRequest, Type: ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// decodeBody decodes an optional JSON body (empty means zero value).
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return invalid("read request body: %v", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return invalid("request body is not valid JSON for this operation: %v", err)
	}
	return nil
}

func (h *handler) createThing(r *http.Request) (any, error) {
	var req CreateThingRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	var attrs map[string]string
	if req.AttributePayload != nil {
		attrs = req.AttributePayload.Attributes
	}
	t, _, err := h.Registry.CreateThing(r.PathValue("thingName"), attrs, h.Now())
	if err != nil {
		return nil, err
	}
	return CreateThingResponse{ThingName: t.Name, ThingArn: t.ARN, ThingID: t.ID}, nil
}

func (h *handler) describeThing(r *http.Request) (any, error) {
	t, err := h.Registry.Thing(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	return DescribeThingResponse{
		DefaultClientID: t.Name, ThingName: t.Name, ThingID: t.ID, ThingArn: t.ARN,
		Attributes: nonNil(t.Attributes), Version: t.Version,
	}, nil
}

func (h *handler) deleteThing(r *http.Request) (any, error) {
	return nil, h.Registry.DeleteThing(r.PathValue("thingName"))
}

func (h *handler) listThings(*http.Request) (any, error) {
	things, err := h.Registry.Things()
	if err != nil {
		return nil, err
	}
	resp := ListThingsResponse{Things: []ThingAttribute{}}
	for _, t := range things {
		resp.Things = append(resp.Things, ThingAttribute{ThingName: t.Name, ThingArn: t.ARN, Attributes: nonNil(t.Attributes), Version: t.Version})
	}
	return resp, nil
}

func (h *handler) createCertificateFromCSR(r *http.Request) (any, error) {
	q := r.URL.Query()
	active, err := boolParam("setAsActive", q.Get("setAsActive"))
	if err != nil {
		return nil, err
	}
	validity := h.DefaultValidity
	if v := q.Get("validityDays"); v != "" {
		days, err := strconv.Atoi(v)
		if err != nil || days < 1 || days > 36500 {
			return nil, invalid("validityDays %q must be a whole number of days between 1 and 36500", v)
		}
		validity = time.Duration(days) * 24 * time.Hour
	}
	var req CreateCertificateFromCSRRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.CertificateSigningRequest == "" {
		return nil, invalid("certificateSigningRequest is required")
	}
	csr, err := ca.ParseCSR([]byte(req.CertificateSigningRequest))
	if err != nil {
		return nil, invalid("certificateSigningRequest: %v", err)
	}
	now := h.Now()
	der, err := h.CA.SignCSR(csr, now, validity)
	if err != nil {
		return nil, invalid("%v", err)
	}
	cert := registry.Certificate{
		ID:        ca.CertificateID(der),
		PEM:       string(ca.EncodeCertificate(der)),
		Status:    registry.StatusInactive,
		CACertID:  ca.CertificateID(h.CA.Certificate().Raw),
		CreatedAt: now.UTC(), LastModified: now.UTC(),
	}
	if active {
		cert.Status = registry.StatusActive
	}
	if parsed, err := ca.ParseCertificatePEM([]byte(cert.PEM)); err == nil {
		cert.NotBefore, cert.NotAfter = parsed.NotBefore, parsed.NotAfter
	}
	if err := h.Registry.AddCertificate(cert); err != nil {
		return nil, err
	}
	if err := h.attachDefaultPolicies(cert.ID); err != nil {
		return nil, err
	}
	h.Logger.Info("certificate issued", "certificateId", cert.ID, "subject", csr.Subject.CommonName, "status", cert.Status, "validity", validity)
	return CreateCertificateFromCSRResponse{
		CertificateArn: registry.CertificateARN(cert.ID), CertificateID: cert.ID, CertificatePem: cert.PEM,
	}, nil
}

func (h *handler) describeCertificate(r *http.Request) (any, error) {
	id, err := certificateIDParam(r)
	if err != nil {
		return nil, err
	}
	c, err := h.Registry.Certificate(id)
	if err != nil {
		return nil, err
	}
	return DescribeCertificateResponse{CertificateDescription: CertificateDescription{
		CertificateArn: c.ARN, CertificateID: c.ID, CACertificateID: c.CACertID, Status: c.Status,
		CertificatePem: c.PEM, OwnedBy: registry.AccountID,
		CreationDate: epochSeconds(c.CreatedAt), LastModifiedDate: epochSeconds(c.LastModified),
		CustomerVersion: 1, GenerationID: c.ID[:32], CertificateMode: "DEFAULT",
		Validity: CertificateValidity{NotBefore: epochSeconds(c.NotBefore), NotAfter: epochSeconds(c.NotAfter)},
	}}, nil
}

func (h *handler) listCertificates(*http.Request) (any, error) {
	certs, err := h.Registry.Certificates()
	if err != nil {
		return nil, err
	}
	resp := ListCertificatesResponse{Certificates: []CertificateSummary{}}
	for _, c := range certs {
		resp.Certificates = append(resp.Certificates, CertificateSummary{
			CertificateArn: c.ARN, CertificateID: c.ID, Status: c.Status,
			CertificateMode: "DEFAULT", CreationDate: epochSeconds(c.CreatedAt),
		})
	}
	return resp, nil
}

func (h *handler) updateCertificate(r *http.Request) (any, error) {
	id, err := certificateIDParam(r)
	if err != nil {
		return nil, err
	}
	status := r.URL.Query().Get("newStatus")
	switch status {
	case registry.StatusActive, registry.StatusInactive, registry.StatusRevoked:
	case "":
		return nil, invalid("newStatus is required")
	case "PENDING_TRANSFER", "PENDING_ACTIVATION", "REGISTER_INACTIVE":
		return nil, invalid("newStatus %s is reserved for AWS IoT's internal use", status)
	default:
		return nil, invalid("newStatus %q is not one of ACTIVE, INACTIVE, REVOKED", status)
	}
	prev, err := h.Registry.SetCertificateStatus(id, status, h.Now())
	if err != nil {
		return nil, err
	}
	h.Logger.Info("certificate status updated", "certificateId", id, "from", prev, "to", status)
	if status == registry.StatusRevoked {
		if err := h.revokeAtCA(id); err != nil {
			return nil, err
		}
	}
	if status != registry.StatusActive {
		h.Broker.DisconnectCertificate(id)
	}
	return nil, nil
}

func (h *handler) principal(r *http.Request) (string, error) {
	p := r.Header.Get("x-amzn-principal")
	if p == "" {
		return "", invalid("the x-amzn-principal header (certificate ARN) is required")
	}
	return registry.CertificateIDFromPrincipal(p)
}

func (h *handler) attachThingPrincipal(r *http.Request) (any, error) {
	id, err := h.principal(r)
	if err != nil {
		return nil, err
	}
	return nil, h.Registry.AttachPrincipal(r.PathValue("thingName"), id)
}

func (h *handler) detachThingPrincipal(r *http.Request) (any, error) {
	id, err := h.principal(r)
	if err != nil {
		return nil, err
	}
	return nil, h.Registry.DetachPrincipal(r.PathValue("thingName"), id)
}

func (h *handler) listThingPrincipals(r *http.Request) (any, error) {
	ids, err := h.Registry.ThingPrincipals(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	resp := ListThingPrincipalsResponse{Principals: []string{}}
	for _, id := range ids {
		resp.Principals = append(resp.Principals, registry.CertificateARN(id))
	}
	return resp, nil
}

func (h *handler) listPrincipalThings(r *http.Request) (any, error) {
	id, err := h.principal(r)
	if err != nil {
		return nil, err
	}
	things, err := h.Registry.PrincipalThings(id)
	if err != nil {
		return nil, err
	}
	return ListPrincipalThingsResponse{Things: nonNilSlice(things)}, nil
}

func (h *handler) clients(*http.Request) (any, error) {
	return ClientsResponse{Clients: nonNilSlice(h.Broker.Clients())}, nil
}

func (h *handler) connections(*http.Request) (any, error) {
	c, err := h.Registry.Connections()
	if err != nil {
		return nil, err
	}
	return ConnectionsResponse{Connections: nonNilSlice(c)}, nil
}

func certificateIDParam(r *http.Request) (string, error) {
	id := strings.TrimPrefix(r.PathValue("certificateId"), "0x")
	if len(id) != 64 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
		return "", invalid("certificateId %q must be 64 hex digits", id)
	}
	return strings.ToLower(id), nil
}

func boolParam(name, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid("%s %q must be true or false", name, v)
	}
	return b, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
