// Package api is thingsim's admin HTTP API and its Go client. Where AWS IoT
// has a control-plane operation for the same thing, the path, query, headers
// and JSON shapes are AWS's (CreateThing, DescribeThing, ListThings,
// DeleteThing, CreateCertificateFromCsr, DescribeCertificate,
// ListCertificates, UpdateCertificate, AttachThingPrincipal,
// DetachThingPrincipal, ListThingPrincipals, ListPrincipalThings; Jobs:
// CreateJob, DescribeJob, GetJobDocument, ListJobs, CancelJob,
// DescribeJobExecution, ListJobExecutionsForThing, ListJobExecutionsForJob;
// thing groups: CreateThingGroup, DescribeThingGroup, ListThingGroups,
// ListThingsInThingGroup, AddThingToThingGroup, RemoveThingFromThingGroup;
// the Device Shadow data plane: GetThingShadow, UpdateThingShadow and
// DeleteThingShadow on /things/{thingName}/shadow?name=, and
// ListNamedShadowsForThing on
// /api/things/shadow/ListNamedShadowsForThing/{thingName}), so AWS SDK
// clients can later be pointed at thingsim. Job targets are thing
// and thing group ARNs; documentSource (S3), nested groups, rollout and abort
// configurations are not supported. Errors use the AWS shape: the
// HTTP status, an x-amzn-ErrorType header and {"message": "..."}.
//
// Non-AWS additions live under /thingsim/: GET /thingsim/clients (live MQTT
// connections), GET /thingsim/connections (connection history), GET and PUT
// /thingsim/faults (provisioning faults for tests, provision.Faults as JSON),
// and the validityDays query parameter of CreateCertificateFromCsr (default
// 365 days, or the simulator's configured device certificate validity).
//
// Device Defender audit (package audit): StartOnDemandAuditTask POST
// /audit/tasks, DescribeAuditTask GET /audit/tasks/{taskId}, ListAuditTasks
// GET /audit/tasks, ListAuditFindings POST /audit/findings,
// Describe/UpdateAccountAuditConfiguration GET/PATCH /audit/configuration,
// Create/Describe/Delete/ListScheduledAudit(s) /audit/scheduledaudits[/{name}]
// (plus thingsimInterval), Create/Describe/Delete/ListMitigationAction(s)
// /mitigationactions/actions[/{actionName}], StartAuditMitigationActionsTask
// POST and DescribeAuditMitigationActionsTask GET
// /audit/mitigationactions/tasks/{taskId}, ListAuditMitigationActionsTasks
// GET /audit/mitigationactions/tasks, ListAuditMitigationActionsExecutions
// GET /audit/mitigationactions/executions?taskId=. thingsim's own:
// remediation rules PUT/DELETE /thingsim/remediation/{checkName} and GET
// /thingsim/remediation, and the CA's revocation list: GET
// /thingsim/ca/revocations, PUT /thingsim/ca/revocations/{certificateId}
// (revoked at the CA only; UpdateCertificate REVOKED also revokes there).
//
// IoT policies (policytypes.go): CreatePolicy POST, GetPolicy GET and
// DeletePolicy DELETE /policies/{policyName}, ListPolicies GET /policies,
// CreatePolicyVersion POST (?setAsDefault=) and ListPolicyVersions GET
// /policies/{policyName}/version, GetPolicyVersion GET,
// SetDefaultPolicyVersion PATCH and DeletePolicyVersion DELETE
// /policies/{policyName}/version/{policyVersionId}, AttachPolicy PUT and
// DetachPolicy POST /target-policies/{policyName} {"target"},
// ListAttachedPolicies POST /attached-policies/{target},
// ListTargetsForPolicy POST /policy-targets/{policyName}, and
// TestAuthorization POST /test-authorization?clientId= with thingsim's
// thingsimExplanation of each decision (rule or statements, variables,
// policies in force). Certificates from CreateCertificateFromCsr get
// Options.DefaultPolicies.
//
// Every request needs "Authorization: Bearer TOKEN" (401
// UnauthorizedException otherwise). Timestamps in AWS shapes are epoch
// seconds (JSON numbers with millisecond fractions), as in AWS's REST JSON
// protocol, whole seconds in shadow documents; the /thingsim/ endpoints use
// RFC 3339 strings. Shadow refusals carry the shadow service's message with
// the status's AWS type (400 InvalidRequestException, 404
// ResourceNotFoundException, 409 ConflictException, 413
// RequestEntityTooLargeException, 415
// UnsupportedDocumentEncodingException).
package api

import (
	"time"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/registry"
)

// AttributePayload is the attributes part of CreateThing's request.
type AttributePayload struct {
	Attributes map[string]string `json:"attributes,omitempty"`
	Merge      bool              `json:"merge,omitempty"`
}

// CreateThingRequest is the body of POST /things/{thingName}.
type CreateThingRequest struct {
	ThingTypeName    string            `json:"thingTypeName,omitempty"`
	AttributePayload *AttributePayload `json:"attributePayload,omitempty"`
}

// CreateThingResponse is CreateThing's response.
type CreateThingResponse struct {
	ThingName string `json:"thingName"`
	ThingArn  string `json:"thingArn"`
	ThingID   string `json:"thingId"`
}

// DescribeThingResponse is DescribeThing's response.
type DescribeThingResponse struct {
	DefaultClientID string            `json:"defaultClientId"`
	ThingName       string            `json:"thingName"`
	ThingID         string            `json:"thingId"`
	ThingArn        string            `json:"thingArn"`
	Attributes      map[string]string `json:"attributes"`
	Version         int64             `json:"version"`
}

// ThingAttribute is one entry of ListThings.
type ThingAttribute struct {
	ThingName  string            `json:"thingName"`
	ThingArn   string            `json:"thingArn"`
	Attributes map[string]string `json:"attributes"`
	Version    int64             `json:"version"`
}

// ListThingsResponse is ListThings' response.
type ListThingsResponse struct {
	Things    []ThingAttribute `json:"things"`
	NextToken string           `json:"nextToken,omitempty"`
}

// CreateCertificateFromCSRRequest is the body of POST /certificates.
type CreateCertificateFromCSRRequest struct {
	CertificateSigningRequest string `json:"certificateSigningRequest"`
}

// CreateCertificateFromCSRResponse is CreateCertificateFromCsr's response.
type CreateCertificateFromCSRResponse struct {
	CertificateArn string `json:"certificateArn"`
	CertificateID  string `json:"certificateId"`
	CertificatePem string `json:"certificatePem"`
}

// CertificateValidity is DescribeCertificate's validity (epoch seconds).
type CertificateValidity struct {
	NotBefore float64 `json:"notBefore"`
	NotAfter  float64 `json:"notAfter"`
}

// CertificateDescription is DescribeCertificate's certificateDescription.
type CertificateDescription struct {
	CertificateArn   string              `json:"certificateArn"`
	CertificateID    string              `json:"certificateId"`
	CACertificateID  string              `json:"caCertificateId,omitempty"`
	Status           string              `json:"status"`
	CertificatePem   string              `json:"certificatePem"`
	OwnedBy          string              `json:"ownedBy"`
	CreationDate     float64             `json:"creationDate"`
	LastModifiedDate float64             `json:"lastModifiedDate"`
	CustomerVersion  int64               `json:"customerVersion"`
	GenerationID     string              `json:"generationId"`
	CertificateMode  string              `json:"certificateMode"`
	Validity         CertificateValidity `json:"validity"`
}

// DescribeCertificateResponse is DescribeCertificate's response.
type DescribeCertificateResponse struct {
	CertificateDescription CertificateDescription `json:"certificateDescription"`
}

// CertificateSummary is one entry of ListCertificates.
type CertificateSummary struct {
	CertificateArn  string  `json:"certificateArn"`
	CertificateID   string  `json:"certificateId"`
	Status          string  `json:"status"`
	CertificateMode string  `json:"certificateMode"`
	CreationDate    float64 `json:"creationDate"`
}

// ListCertificatesResponse is ListCertificates' response.
type ListCertificatesResponse struct {
	Certificates []CertificateSummary `json:"certificates"`
	NextMarker   string               `json:"nextMarker,omitempty"`
}

// ListThingPrincipalsResponse is ListThingPrincipals' response (certificate ARNs).
type ListThingPrincipalsResponse struct {
	Principals []string `json:"principals"`
	NextToken  string   `json:"nextToken,omitempty"`
}

// ListPrincipalThingsResponse is ListPrincipalThings' response (thing names).
type ListPrincipalThingsResponse struct {
	Things    []string `json:"things"`
	NextToken string   `json:"nextToken,omitempty"`
}

// ClientsResponse is GET /thingsim/clients: the live MQTT connections.
type ClientsResponse struct {
	Clients []broker.Client `json:"clients"`
}

// ConnectionsResponse is GET /thingsim/connections: the connection history.
type ConnectionsResponse struct {
	Connections []registry.Connection `json:"connections"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Message string `json:"message"`
}

// Error types (x-amzn-ErrorType) and their HTTP statuses.
const (
	ErrResourceNotFound      = "ResourceNotFoundException"      // 404
	ErrResourceAlreadyExists = "ResourceAlreadyExistsException" // 409
	ErrInvalidRequest        = "InvalidRequestException"        // 400
	ErrUnauthorized          = "UnauthorizedException"          // 401
	ErrCertificateState      = "CertificateStateException"      // 406
	ErrUnknownOperation      = "UnknownOperationException"      // 404
	ErrInternalFailure       = "InternalFailureException"       // 500
	// ErrInvalidStateTransition: e.g. canceling a job that is not IN_PROGRESS.
	ErrInvalidStateTransition = "InvalidStateTransitionException" // 409
)

// DefaultValidityDays is the validity of certificates from
// CreateCertificateFromCsr without a validityDays parameter.
const DefaultValidityDays = 365

func epochSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1000
}
