package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/thingd/thingd/sim/provision"
)

// Error is an error answered by the admin API (AWS error shape).
type Error struct {
	StatusCode int    // HTTP status
	Type       string // x-amzn-ErrorType, e.g. ResourceNotFoundException
	Message    string
}

// Error formats the error as "Type: message (HTTP status)".
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Type, e.Message, e.StatusCode)
}

// Client calls a thingsim admin API.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
}

// NewClient returns a client for the API at addr (host:port or http:// URL)
// authenticating with token. A nil httpClient means http.DefaultClient.
func NewClient(addr, token string, httpClient *http.Client) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{baseURL: strings.TrimRight(addr, "/"), token: token, http: httpClient}
}

// do sends a request and decodes a JSON response into out (if non-nil).
// A []byte body is sent as is, anything else encoded as JSON.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, header http.Header, body, out any) error {
	var rd io.Reader
	if raw, ok := body.([]byte); ok { // sent as is
		rd = bytes.NewReader(raw)
	} else if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("api: encode %s %s request: %w", method, path, err)
		}
		rd = bytes.NewReader(data)
	}
	u := c.baseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("api: build %s %s request: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("api: read %s %s response: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{StatusCode: resp.StatusCode, Type: resp.Header.Get("x-amzn-ErrorType")}
		var body ErrorResponse
		if json.Unmarshal(data, &body) == nil {
			e.Message = body.Message
		} else {
			e.Message = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("api: %s %s: %w", method, path, e)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("api: decode %s %s response: %w", method, path, err)
		}
	}
	return nil
}

// CreateThing creates a thing (POST /things/{thingName}).
func (c *Client) CreateThing(ctx context.Context, name string, attrs map[string]string) (CreateThingResponse, error) {
	var req CreateThingRequest
	if len(attrs) > 0 {
		req.AttributePayload = &AttributePayload{Attributes: attrs}
	}
	var out CreateThingResponse
	err := c.do(ctx, http.MethodPost, "/things/"+url.PathEscape(name), nil, nil, req, &out)
	return out, err
}

// DescribeThing describes a thing (GET /things/{thingName}).
func (c *Client) DescribeThing(ctx context.Context, name string) (DescribeThingResponse, error) {
	var out DescribeThingResponse
	err := c.do(ctx, http.MethodGet, "/things/"+url.PathEscape(name), nil, nil, nil, &out)
	return out, err
}

// DeleteThing deletes a thing (DELETE /things/{thingName}).
func (c *Client) DeleteThing(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/things/"+url.PathEscape(name), nil, nil, nil, nil)
}

// ListThings lists things (GET /things).
func (c *Client) ListThings(ctx context.Context) (ListThingsResponse, error) {
	var out ListThingsResponse
	err := c.do(ctx, http.MethodGet, "/things", nil, nil, nil, &out)
	return out, err
}

// CreateCertificateFromCSR signs a CSR with the simulator's CA and registers
// the certificate (POST /certificates?setAsActive=...&validityDays=...).
// validityDays 0 means the default (365).
func (c *Client) CreateCertificateFromCSR(ctx context.Context, csrPEM string, setAsActive bool, validityDays int) (CreateCertificateFromCSRResponse, error) {
	q := url.Values{"setAsActive": {strconv.FormatBool(setAsActive)}}
	if validityDays != 0 {
		q.Set("validityDays", strconv.Itoa(validityDays))
	}
	var out CreateCertificateFromCSRResponse
	err := c.do(ctx, http.MethodPost, "/certificates", q, nil, CreateCertificateFromCSRRequest{CertificateSigningRequest: csrPEM}, &out)
	return out, err
}

// DescribeCertificate describes a certificate (GET /certificates/{id}).
func (c *Client) DescribeCertificate(ctx context.Context, id string) (DescribeCertificateResponse, error) {
	var out DescribeCertificateResponse
	err := c.do(ctx, http.MethodGet, "/certificates/"+url.PathEscape(id), nil, nil, nil, &out)
	return out, err
}

// ListCertificates lists certificates (GET /certificates).
func (c *Client) ListCertificates(ctx context.Context) (ListCertificatesResponse, error) {
	var out ListCertificatesResponse
	err := c.do(ctx, http.MethodGet, "/certificates", nil, nil, nil, &out)
	return out, err
}

// UpdateCertificate sets a certificate's status (PUT
// /certificates/{id}?newStatus=...). A status other than ACTIVE drops the
// certificate's live MQTT connections.
func (c *Client) UpdateCertificate(ctx context.Context, id, newStatus string) error {
	return c.do(ctx, http.MethodPut, "/certificates/"+url.PathEscape(id), url.Values{"newStatus": {newStatus}}, nil, nil, nil)
}

func principalHeader(principal string) http.Header {
	return http.Header{"X-Amzn-Principal": {principal}}
}

// AttachThingPrincipal attaches a certificate (ARN) to a thing.
func (c *Client) AttachThingPrincipal(ctx context.Context, thing, principal string) error {
	return c.do(ctx, http.MethodPut, "/things/"+url.PathEscape(thing)+"/principals", nil, principalHeader(principal), nil, nil)
}

// DetachThingPrincipal detaches a certificate (ARN) from a thing.
func (c *Client) DetachThingPrincipal(ctx context.Context, thing, principal string) error {
	return c.do(ctx, http.MethodDelete, "/things/"+url.PathEscape(thing)+"/principals", nil, principalHeader(principal), nil, nil)
}

// ListThingPrincipals lists the certificate ARNs attached to a thing.
func (c *Client) ListThingPrincipals(ctx context.Context, thing string) (ListThingPrincipalsResponse, error) {
	var out ListThingPrincipalsResponse
	err := c.do(ctx, http.MethodGet, "/things/"+url.PathEscape(thing)+"/principals", nil, nil, nil, &out)
	return out, err
}

// ListPrincipalThings lists the things a certificate (ARN) is attached to.
func (c *Client) ListPrincipalThings(ctx context.Context, principal string) (ListPrincipalThingsResponse, error) {
	var out ListPrincipalThingsResponse
	err := c.do(ctx, http.MethodGet, "/principals/things", nil, principalHeader(principal), nil, &out)
	return out, err
}

// Clients lists the live MQTT connections (GET /thingsim/clients).
func (c *Client) Clients(ctx context.Context) (ClientsResponse, error) {
	var out ClientsResponse
	err := c.do(ctx, http.MethodGet, "/thingsim/clients", nil, nil, nil, &out)
	return out, err
}

// Connections returns the connection history (GET /thingsim/connections).
func (c *Client) Connections(ctx context.Context) (ConnectionsResponse, error) {
	var out ConnectionsResponse
	err := c.do(ctx, http.MethodGet, "/thingsim/connections", nil, nil, nil, &out)
	return out, err
}

// IssueThingCertificate is the whole device onboarding in one call: it
// creates the thing if it does not exist, signs the CSR into an ACTIVE
// certificate valid for validityDays (0: default) and attaches it to the
// thing.
func (c *Client) IssueThingCertificate(ctx context.Context, thing, csrPEM string, validityDays int) (CreateCertificateFromCSRResponse, error) {
	if _, err := c.DescribeThing(ctx, thing); err != nil {
		if e := (*Error)(nil); !errors.As(err, &e) || e.Type != ErrResourceNotFound {
			return CreateCertificateFromCSRResponse{}, err
		}
		if _, err := c.CreateThing(ctx, thing, nil); err != nil {
			return CreateCertificateFromCSRResponse{}, err
		}
	}
	cert, err := c.CreateCertificateFromCSR(ctx, csrPEM, true, validityDays)
	if err != nil {
		return CreateCertificateFromCSRResponse{}, err
	}
	if err := c.AttachThingPrincipal(ctx, thing, cert.CertificateArn); err != nil {
		return CreateCertificateFromCSRResponse{}, err
	}
	return cert, nil
}

// call sends a request and decodes its JSON response into a T.
func call[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any) (T, error) {
	var out T
	err := c.do(ctx, method, path, query, nil, body, &out)
	return out, err
}

// CreateJob creates a job (PUT /jobs/{jobId}).
func (c *Client) CreateJob(ctx context.Context, jobID string, req CreateJobRequest) (CreateJobResponse, error) {
	return call[CreateJobResponse](ctx, c, http.MethodPut, "/jobs/"+url.PathEscape(jobID), nil, req)
}

// DescribeJob describes a job (GET /jobs/{jobId}).
func (c *Client) DescribeJob(ctx context.Context, jobID string) (DescribeJobResponse, error) {
	return call[DescribeJobResponse](ctx, c, http.MethodGet, "/jobs/"+url.PathEscape(jobID), nil, nil)
}

// GetJobDocument returns a job's document (GET /jobs/{jobId}/job-document).
func (c *Client) GetJobDocument(ctx context.Context, jobID string) (GetJobDocumentResponse, error) {
	return call[GetJobDocumentResponse](ctx, c, http.MethodGet, "/jobs/"+url.PathEscape(jobID)+"/job-document", nil, nil)
}

// ListJobs lists jobs (GET /jobs), filtered by status and targetSelection
// when not empty.
func (c *Client) ListJobs(ctx context.Context, status, targetSelection string) (ListJobsResponse, error) {
	return call[ListJobsResponse](ctx, c, http.MethodGet, "/jobs", filters("status", status, "targetSelection", targetSelection), nil)
}

// CancelJob cancels a job (PUT /jobs/{jobId}/cancel); force also cancels
// IN_PROGRESS executions.
func (c *Client) CancelJob(ctx context.Context, jobID string, force bool, req CancelJobRequest) (CreateJobResponse, error) {
	return call[CreateJobResponse](ctx, c, http.MethodPut, "/jobs/"+url.PathEscape(jobID)+"/cancel",
		url.Values{"force": {strconv.FormatBool(force)}}, req)
}

// DescribeJobExecution describes the latest execution of a job on a thing
// (GET /things/{thingName}/jobs/{jobId}).
func (c *Client) DescribeJobExecution(ctx context.Context, thing, jobID string) (DescribeJobExecutionResponse, error) {
	return call[DescribeJobExecutionResponse](ctx, c, http.MethodGet, "/things/"+url.PathEscape(thing)+"/jobs/"+url.PathEscape(jobID), nil, nil)
}

// ListJobExecutionsForThing lists the executions on a thing (GET
// /things/{thingName}/jobs), filtered by status when not empty.
func (c *Client) ListJobExecutionsForThing(ctx context.Context, thing, status string) (ListJobExecutionsResponse, error) {
	return call[ListJobExecutionsResponse](ctx, c, http.MethodGet, "/things/"+url.PathEscape(thing)+"/jobs", filters("status", status), nil)
}

// ListJobExecutionsForJob lists the executions of a job (GET
// /jobs/{jobId}/things), filtered by status when not empty.
func (c *Client) ListJobExecutionsForJob(ctx context.Context, jobID, status string) (ListJobExecutionsResponse, error) {
	return call[ListJobExecutionsResponse](ctx, c, http.MethodGet, "/jobs/"+url.PathEscape(jobID)+"/things", filters("status", status), nil)
}

// CreateThingGroup creates a static thing group (POST
// /thing-groups/{thingGroupName}).
func (c *Client) CreateThingGroup(ctx context.Context, name, description string) (CreateThingGroupResponse, error) {
	var req CreateThingGroupRequest
	if description != "" {
		req.ThingGroupProperties = &ThingGroupProperties{ThingGroupDescription: description}
	}
	return call[CreateThingGroupResponse](ctx, c, http.MethodPost, "/thing-groups/"+url.PathEscape(name), nil, req)
}

// DescribeThingGroup describes a thing group (GET /thing-groups/{thingGroupName}).
func (c *Client) DescribeThingGroup(ctx context.Context, name string) (DescribeThingGroupResponse, error) {
	return call[DescribeThingGroupResponse](ctx, c, http.MethodGet, "/thing-groups/"+url.PathEscape(name), nil, nil)
}

// ListThingGroups lists thing groups (GET /thing-groups).
func (c *Client) ListThingGroups(ctx context.Context) (ListThingGroupsResponse, error) {
	return call[ListThingGroupsResponse](ctx, c, http.MethodGet, "/thing-groups", nil, nil)
}

// ListThingsInThingGroup lists a thing group's members (GET
// /thing-groups/{thingGroupName}/things).
func (c *Client) ListThingsInThingGroup(ctx context.Context, name string) (ListThingsInThingGroupResponse, error) {
	return call[ListThingsInThingGroupResponse](ctx, c, http.MethodGet, "/thing-groups/"+url.PathEscape(name)+"/things", nil, nil)
}

// AddThingToThingGroup adds a thing to a thing group (PUT
// /thing-groups/addThingToThingGroup); continuous jobs targeting the group
// start on it.
func (c *Client) AddThingToThingGroup(ctx context.Context, group, thing string) error {
	return c.do(ctx, http.MethodPut, "/thing-groups/addThingToThingGroup", nil, nil,
		ThingGroupMembershipRequest{ThingGroupName: group, ThingName: thing}, nil)
}

// RemoveThingFromThingGroup removes a thing from a thing group (PUT
// /thing-groups/removeThingFromThingGroup).
func (c *Client) RemoveThingFromThingGroup(ctx context.Context, group, thing string) error {
	return c.do(ctx, http.MethodPut, "/thing-groups/removeThingFromThingGroup", nil, nil,
		ThingGroupMembershipRequest{ThingGroupName: group, ThingName: thing}, nil)
}

// Faults returns the provisioning faults in force (GET /thingsim/faults).
func (c *Client) Faults(ctx context.Context) (provision.Faults, error) {
	return call[provision.Faults](ctx, c, http.MethodGet, "/thingsim/faults", nil, nil)
}

// SetFaults replaces the provisioning faults (PUT /thingsim/faults); the zero
// value clears them. It returns the faults now in force.
func (c *Client) SetFaults(ctx context.Context, f provision.Faults) (provision.Faults, error) {
	return call[provision.Faults](ctx, c, http.MethodPut, "/thingsim/faults", nil, f)
}

// filters builds list query parameters from name, value pairs, leaving out
// empty values.
func filters(pairs ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	return q
}

func shadowPath(thing string) string { return "/things/" + url.PathEscape(thing) + "/shadow" }

// GetThingShadow returns a shadow (GET /things/{thingName}/shadow?name=);
// name "" is the classic shadow.
func (c *Client) GetThingShadow(ctx context.Context, thing, name string) (ShadowDocument, error) {
	return call[ShadowDocument](ctx, c, http.MethodGet, shadowPath(thing), filters("name", name), nil)
}

// UpdateThingShadow sends an update request, e.g. {"state":{"desired":{...}}},
// to a shadow (POST /things/{thingName}/shadow?name=), which publishes
// update/accepted, delta and documents as an update over MQTT does. The
// payload is sent as is.
func (c *Client) UpdateThingShadow(ctx context.Context, thing, name string, payload []byte) (ShadowDocument, error) {
	return call[ShadowDocument](ctx, c, http.MethodPost, shadowPath(thing), filters("name", name), payload)
}

// DeleteThingShadow deletes a shadow (DELETE /things/{thingName}/shadow?name=).
func (c *Client) DeleteThingShadow(ctx context.Context, thing, name string) (DeleteThingShadowResponse, error) {
	return call[DeleteThingShadowResponse](ctx, c, http.MethodDelete, shadowPath(thing), filters("name", name), nil)
}

// ListNamedShadowsForThing lists a thing's named shadows (GET
// /api/things/shadow/ListNamedShadowsForThing/{thingName}), from nextToken
// on ("" for the first page); pageSize 0 means the largest page (100).
func (c *Client) ListNamedShadowsForThing(ctx context.Context, thing, nextToken string, pageSize int) (ListNamedShadowsForThingResponse, error) {
	q := filters("nextToken", nextToken)
	if pageSize != 0 {
		q.Set("pageSize", strconv.Itoa(pageSize))
	}
	return call[ListNamedShadowsForThingResponse](ctx, c, http.MethodGet, "/api/things/shadow/ListNamedShadowsForThing/"+url.PathEscape(thing), q, nil)
}
