package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

func policyPath(name string) string { return "/policies/" + url.PathEscape(name) }

func policyVersionPath(name, versionID string) string {
	return policyPath(name) + "/version/" + url.PathEscape(versionID)
}

// CreatePolicy creates a policy whose version 1 is document (POST
// /policies/{policyName}).
func (c *Client) CreatePolicy(ctx context.Context, name, document string) (CreatePolicyResponse, error) {
	return call[CreatePolicyResponse](ctx, c, http.MethodPost, policyPath(name), nil, PolicyDocumentRequest{PolicyDocument: document})
}

// GetPolicy returns a policy with its default version's document (GET
// /policies/{policyName}).
func (c *Client) GetPolicy(ctx context.Context, name string) (GetPolicyResponse, error) {
	return call[GetPolicyResponse](ctx, c, http.MethodGet, policyPath(name), nil, nil)
}

// ListPolicies lists the policies (GET /policies).
func (c *Client) ListPolicies(ctx context.Context) (ListPoliciesResponse, error) {
	return call[ListPoliciesResponse](ctx, c, http.MethodGet, "/policies", nil, nil)
}

// DeletePolicy deletes a policy attached to nothing, with only its default
// version (DELETE /policies/{policyName}).
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, policyPath(name), nil, nil, nil, nil)
}

// CreatePolicyVersion adds a version to a policy, the default one if
// setAsDefault (POST /policies/{policyName}/version?setAsDefault=).
func (c *Client) CreatePolicyVersion(ctx context.Context, name, document string, setAsDefault bool) (CreatePolicyVersionResponse, error) {
	return call[CreatePolicyVersionResponse](ctx, c, http.MethodPost, policyPath(name)+"/version",
		url.Values{"setAsDefault": {strconv.FormatBool(setAsDefault)}}, PolicyDocumentRequest{PolicyDocument: document})
}

// ListPolicyVersions lists a policy's versions, oldest first (GET
// /policies/{policyName}/version).
func (c *Client) ListPolicyVersions(ctx context.Context, name string) (ListPolicyVersionsResponse, error) {
	return call[ListPolicyVersionsResponse](ctx, c, http.MethodGet, policyPath(name)+"/version", nil, nil)
}

// GetPolicyVersion returns one version of a policy (GET
// /policies/{policyName}/version/{policyVersionId}).
func (c *Client) GetPolicyVersion(ctx context.Context, name, versionID string) (GetPolicyVersionResponse, error) {
	return call[GetPolicyVersionResponse](ctx, c, http.MethodGet, policyVersionPath(name, versionID), nil, nil)
}

// SetDefaultPolicyVersion makes a version the policy's default (PATCH
// /policies/{policyName}/version/{policyVersionId}).
func (c *Client) SetDefaultPolicyVersion(ctx context.Context, name, versionID string) error {
	return c.do(ctx, http.MethodPatch, policyVersionPath(name, versionID), nil, nil, nil, nil)
}

// DeletePolicyVersion deletes a version that is not the default (DELETE
// /policies/{policyName}/version/{policyVersionId}).
func (c *Client) DeletePolicyVersion(ctx context.Context, name, versionID string) error {
	return c.do(ctx, http.MethodDelete, policyVersionPath(name, versionID), nil, nil, nil, nil)
}

// AttachPolicy attaches a policy to a target, a certificate or thing group
// ARN (PUT /target-policies/{policyName}).
func (c *Client) AttachPolicy(ctx context.Context, name, target string) error {
	return c.do(ctx, http.MethodPut, "/target-policies/"+url.PathEscape(name), nil, nil, PolicyTargetRequest{Target: target}, nil)
}

// DetachPolicy detaches a policy from a target (POST
// /target-policies/{policyName}).
func (c *Client) DetachPolicy(ctx context.Context, name, target string) error {
	return c.do(ctx, http.MethodPost, "/target-policies/"+url.PathEscape(name), nil, nil, PolicyTargetRequest{Target: target}, nil)
}

// ListAttachedPolicies lists the policies attached to a target (POST
// /attached-policies/{target}).
func (c *Client) ListAttachedPolicies(ctx context.Context, target string) (ListPoliciesResponse, error) {
	return call[ListPoliciesResponse](ctx, c, http.MethodPost, "/attached-policies/"+url.PathEscape(target), nil, nil)
}

// ListTargetsForPolicy lists the targets a policy is attached to (POST
// /policy-targets/{policyName}).
func (c *Client) ListTargetsForPolicy(ctx context.Context, name string) (ListTargetsForPolicyResponse, error) {
	return call[ListTargetsForPolicyResponse](ctx, c, http.MethodPost, "/policy-targets/"+url.PathEscape(name), nil, nil)
}

// TestAuthorization asks whether a certificate connecting as clientID (""
// means the one thing it is attached to) may perform actions on resources
// (POST /test-authorization?clientId=), with thingsim's explanation.
func (c *Client) TestAuthorization(ctx context.Context, clientID string, req TestAuthorizationRequest) (TestAuthorizationResponse, error) {
	return call[TestAuthorizationResponse](ctx, c, http.MethodPost, "/test-authorization", filters("clientId", clientID), req)
}
