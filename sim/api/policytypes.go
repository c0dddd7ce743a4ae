package api

// IoT policy operations (AWS shapes): CreatePolicy, GetPolicy, ListPolicies,
// DeletePolicy, CreatePolicyVersion, GetPolicyVersion, ListPolicyVersions,
// SetDefaultPolicyVersion, DeletePolicyVersion, AttachPolicy, DetachPolicy,
// ListAttachedPolicies, ListTargetsForPolicy and TestAuthorization.

// Policy error types (x-amzn-ErrorType) and their HTTP statuses.
const (
	ErrMalformedPolicy       = "MalformedPolicyException"       // 400
	ErrVersionsLimitExceeded = "VersionsLimitExceededException" // 409
	ErrDeleteConflict        = "DeleteConflictException"        // 409
	ErrLimitExceeded         = "LimitExceededException"         // 410
)

// PolicyDocumentRequest is the body of CreatePolicy (POST
// /policies/{policyName}) and CreatePolicyVersion (POST
// /policies/{policyName}/version?setAsDefault=).
type PolicyDocumentRequest struct {
	PolicyDocument string `json:"policyDocument"`
}

// CreatePolicyResponse is CreatePolicy's response.
type CreatePolicyResponse struct {
	PolicyName      string `json:"policyName"`
	PolicyArn       string `json:"policyArn"`
	PolicyDocument  string `json:"policyDocument"`
	PolicyVersionID string `json:"policyVersionId"`
}

// GetPolicyResponse is GetPolicy's response (the default version's document).
type GetPolicyResponse struct {
	PolicyName       string  `json:"policyName"`
	PolicyArn        string  `json:"policyArn"`
	PolicyDocument   string  `json:"policyDocument"`
	DefaultVersionID string  `json:"defaultVersionId"`
	CreationDate     float64 `json:"creationDate"`
	LastModifiedDate float64 `json:"lastModifiedDate"`
	GenerationID     string  `json:"generationId"`
}

// PolicySummary is one entry of ListPolicies and ListAttachedPolicies.
type PolicySummary struct {
	PolicyName string `json:"policyName"`
	PolicyArn  string `json:"policyArn"`
}

// ListPoliciesResponse is the response of ListPolicies (GET /policies) and
// ListAttachedPolicies (POST /attached-policies/{target}).
type ListPoliciesResponse struct {
	Policies   []PolicySummary `json:"policies"`
	NextMarker string          `json:"nextMarker,omitempty"`
}

// CreatePolicyVersionResponse is CreatePolicyVersion's response.
type CreatePolicyVersionResponse struct {
	PolicyArn        string `json:"policyArn"`
	PolicyDocument   string `json:"policyDocument"`
	PolicyVersionID  string `json:"policyVersionId"`
	IsDefaultVersion bool   `json:"isDefaultVersion"`
}

// GetPolicyVersionResponse is GetPolicyVersion's response.
type GetPolicyVersionResponse struct {
	PolicyArn        string  `json:"policyArn"`
	PolicyName       string  `json:"policyName"`
	PolicyDocument   string  `json:"policyDocument"`
	PolicyVersionID  string  `json:"policyVersionId"`
	IsDefaultVersion bool    `json:"isDefaultVersion"`
	CreationDate     float64 `json:"creationDate"`
	LastModifiedDate float64 `json:"lastModifiedDate"`
	GenerationID     string  `json:"generationId"`
}

// PolicyVersionSummary is one entry of ListPolicyVersions.
type PolicyVersionSummary struct {
	VersionID        string  `json:"versionId"`
	IsDefaultVersion bool    `json:"isDefaultVersion"`
	CreateDate       float64 `json:"createDate"`
}

// ListPolicyVersionsResponse is ListPolicyVersions' response, oldest first.
type ListPolicyVersionsResponse struct {
	PolicyVersions []PolicyVersionSummary `json:"policyVersions"`
}

// PolicyTargetRequest is the body of AttachPolicy (PUT
// /target-policies/{policyName}) and DetachPolicy (POST
// /target-policies/{policyName}): a certificate or thing group ARN.
type PolicyTargetRequest struct {
	Target string `json:"target"`
}

// ListTargetsForPolicyResponse is ListTargetsForPolicy's response (POST
// /policy-targets/{policyName}).
type ListTargetsForPolicyResponse struct {
	Targets    []string `json:"targets"`
	NextMarker string   `json:"nextMarker,omitempty"`
}

// AuthInfo is an action type (CONNECT, PUBLISH, SUBSCRIBE, RECEIVE;
// thingsim adds RETAIN_PUBLISH) on resources (ARNs).
type AuthInfo struct {
	ActionType string   `json:"actionType"`
	Resources  []string `json:"resources"`
}

// TestAuthorizationRequest is the body of POST
// /test-authorization?clientId=: principal is a certificate ARN.
type TestAuthorizationRequest struct {
	Principal         string     `json:"principal"`
	AuthInfos         []AuthInfo `json:"authInfos"`
	PolicyNamesToAdd  []string   `json:"policyNamesToAdd,omitempty"`
	PolicyNamesToSkip []string   `json:"policyNamesToSkip,omitempty"`
}

// PolicyList is a list of policies in an AuthResult.
type PolicyList struct {
	Policies []PolicySummary `json:"policies"`
}

// Denied is an AuthResult's denial: the policies that denied explicitly
// and those that did not allow.
type Denied struct {
	ImplicitDeny PolicyList `json:"implicitDeny"`
	ExplicitDeny PolicyList `json:"explicitDeny"`
}

// AuthResult is the decision on one AuthInfo. Explanation is thingsim's
// addition.
type AuthResult struct {
	AuthInfo             AuthInfo      `json:"authInfo"`
	Allowed              PolicyList    `json:"allowed"`
	Denied               Denied        `json:"denied"`
	AuthDecision         string        `json:"authDecision"` // ALLOWED, EXPLICIT_DENY or IMPLICIT_DENY
	MissingContextValues []string      `json:"missingContextValues"`
	Explanation          []Explanation `json:"thingsimExplanation"`
}

// Explanation is thingsim's account of a decision on one resource: the rule
// or statements that decided, the variables and the policies in force.
type Explanation struct {
	Resource string `json:"resource"`
	Allowed  bool   `json:"allowed"`
	// Rule is the thingsim rule that decided instead of the policies
	// (events-reserved, lifecycle-events, open-mode), if any.
	Rule      string           `json:"rule,omitempty"`
	Reason    string           `json:"reason"`
	Allows    []StatementRef   `json:"allowedBy"`
	Denies    []StatementRef   `json:"deniedBy"`
	Variables []PolicyVariable `json:"variables"`
	InForce   []PolicyInForce  `json:"policiesInForce"`
}

// StatementRef names a statement of a policy version.
type StatementRef struct {
	PolicyName      string `json:"policyName"`
	PolicyVersionID string `json:"policyVersionId"`
	Statement       int    `json:"statement"` // 1-based
	Sid             string `json:"sid,omitempty"`
}

// PolicyVariable is a policy variable and what it resolved to.
type PolicyVariable struct {
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	Resolved bool   `json:"resolved"`
}

// PolicyInForce is a policy evaluated for the principal, with the target
// (certificate or thing group ARN) it is attached to.
type PolicyInForce struct {
	PolicyName      string `json:"policyName"`
	PolicyVersionID string `json:"policyVersionId"`
	Target          string `json:"target"`
}

// TestAuthorizationResponse is TestAuthorization's response.
type TestAuthorizationResponse struct {
	AuthResults []AuthResult `json:"authResults"`
}
