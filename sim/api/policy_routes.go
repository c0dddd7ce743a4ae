package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// policyRoutes are the IoT policy operations (AWS paths). It also gives the
// handler an Authorizer if Options had none.
func (h *handler) policyRoutes() map[string]func(*http.Request) (any, error) {
	if h.Authorizer == nil {
		h.Authorizer = broker.NewAuthorizer(h.Registry, false)
	}
	return map[string]func(*http.Request) (any, error){
		"POST /policies/{policyName}":                             h.createPolicy,
		"GET /policies/{policyName}":                              h.getPolicy,
		"DELETE /policies/{policyName}":                           h.deletePolicy,
		"GET /policies":                                           h.listPolicies,
		"POST /policies/{policyName}/version":                     h.createPolicyVersion,
		"GET /policies/{policyName}/version":                      h.listPolicyVersions,
		"GET /policies/{policyName}/version/{policyVersionId}":    h.getPolicyVersion,
		"PATCH /policies/{policyName}/version/{policyVersionId}":  h.setDefaultPolicyVersion,
		"DELETE /policies/{policyName}/version/{policyVersionId}": h.deletePolicyVersion,
		"PUT /target-policies/{policyName}":                       h.attachPolicy,
		"POST /target-policies/{policyName}":                      h.detachPolicy,
		"POST /attached-policies/{target...}":                     h.listAttachedPolicies,
		"POST /policy-targets/{policyName}":                       h.listTargetsForPolicy,
		"POST /test-authorization":                                h.testAuthorization,
	}
}

// policyError maps the registry's policy errors to AWS error types; nil
// for other errors.
func policyError(err error) *Error {
	for _, m := range []struct {
		err    error
		status int
		typ    string
	}{
		{registry.ErrMalformedPolicy, http.StatusBadRequest, ErrMalformedPolicy},
		{registry.ErrVersionsLimitExceeded, http.StatusConflict, ErrVersionsLimitExceeded},
		{registry.ErrDeleteConflict, http.StatusConflict, ErrDeleteConflict},
		{registry.ErrLimitExceeded, http.StatusGone, ErrLimitExceeded},
	} {
		if errors.Is(err, m.err) {
			return &Error{StatusCode: m.status, Type: m.typ, Message: err.Error()}
		}
	}
	return nil
}

// attachDefaultPolicies attaches Options.DefaultPolicies to a certificate
// the API issued.
func (h *handler) attachDefaultPolicies(certID string) error {
	for _, name := range h.DefaultPolicies {
		if err := h.Registry.AttachPolicy(name, registry.CertificateARN(certID)); err != nil {
			return err
		}
	}
	return nil
}

// generationID identifies a policy version's content.
func generationID(doc string) string {
	sum := sha256.Sum256([]byte(doc))
	return hex.EncodeToString(sum[:16])
}

func (h *handler) policyDocument(r *http.Request) (string, error) {
	var req PolicyDocumentRequest
	if err := decodeBody(r, &req); err != nil {
		return "", err
	}
	if req.PolicyDocument == "" {
		return "", invalid("policyDocument is required")
	}
	return req.PolicyDocument, nil
}

func (h *handler) createPolicy(r *http.Request) (any, error) {
	doc, err := h.policyDocument(r)
	if err != nil {
		return nil, err
	}
	p, err := h.Registry.CreatePolicy(r.PathValue("policyName"), doc, h.Now())
	if err != nil {
		return nil, err
	}
	h.Logger.Info("policy created", "policy", p.Name)
	return CreatePolicyResponse{PolicyName: p.Name, PolicyArn: p.ARN, PolicyDocument: p.Document, PolicyVersionID: p.DefaultVersionID}, nil
}

func (h *handler) getPolicy(r *http.Request) (any, error) {
	p, err := h.Registry.Policy(r.PathValue("policyName"))
	if err != nil {
		return nil, err
	}
	return GetPolicyResponse{
		PolicyName: p.Name, PolicyArn: p.ARN, PolicyDocument: p.Document, DefaultVersionID: p.DefaultVersionID,
		CreationDate: epochSeconds(p.CreatedAt), LastModifiedDate: epochSeconds(p.LastModified), GenerationID: generationID(p.Document),
	}, nil
}

func (h *handler) deletePolicy(r *http.Request) (any, error) {
	return nil, h.Registry.DeletePolicy(r.PathValue("policyName"))
}

func policySummaries(ps []registry.Policy) ListPoliciesResponse {
	resp := ListPoliciesResponse{Policies: []PolicySummary{}}
	for _, p := range ps {
		resp.Policies = append(resp.Policies, PolicySummary{PolicyName: p.Name, PolicyArn: p.ARN})
	}
	return resp
}

func (h *handler) listPolicies(*http.Request) (any, error) {
	ps, err := h.Registry.Policies()
	if err != nil {
		return nil, err
	}
	return policySummaries(ps), nil
}

func (h *handler) createPolicyVersion(r *http.Request) (any, error) {
	setAsDefault, err := boolParam("setAsDefault", r.URL.Query().Get("setAsDefault"))
	if err != nil {
		return nil, err
	}
	doc, err := h.policyDocument(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("policyName")
	v, err := h.Registry.CreatePolicyVersion(name, doc, setAsDefault, h.Now())
	if err != nil {
		return nil, err
	}
	h.Logger.Info("policy version created", "policy", name, "version", v.VersionID, "default", v.IsDefault)
	return CreatePolicyVersionResponse{PolicyArn: registry.PolicyARN(name), PolicyDocument: v.Document,
		PolicyVersionID: v.VersionID, IsDefaultVersion: v.IsDefault}, nil
}

func (h *handler) listPolicyVersions(r *http.Request) (any, error) {
	vs, err := h.Registry.PolicyVersions(r.PathValue("policyName"))
	if err != nil {
		return nil, err
	}
	resp := ListPolicyVersionsResponse{PolicyVersions: []PolicyVersionSummary{}}
	for _, v := range vs {
		resp.PolicyVersions = append(resp.PolicyVersions, PolicyVersionSummary{VersionID: v.VersionID,
			IsDefaultVersion: v.IsDefault, CreateDate: epochSeconds(v.CreatedAt)})
	}
	return resp, nil
}

func (h *handler) getPolicyVersion(r *http.Request) (any, error) {
	name := r.PathValue("policyName")
	v, err := h.Registry.PolicyVersion(name, r.PathValue("policyVersionId"))
	if err != nil {
		return nil, err
	}
	return GetPolicyVersionResponse{
		PolicyArn: registry.PolicyARN(name), PolicyName: name, PolicyDocument: v.Document, PolicyVersionID: v.VersionID,
		IsDefaultVersion: v.IsDefault, CreationDate: epochSeconds(v.CreatedAt), LastModifiedDate: epochSeconds(v.CreatedAt),
		GenerationID: generationID(v.Document),
	}, nil
}

func (h *handler) setDefaultPolicyVersion(r *http.Request) (any, error) {
	name, id := r.PathValue("policyName"), r.PathValue("policyVersionId")
	if err := h.Registry.SetDefaultPolicyVersion(name, id, h.Now()); err != nil {
		return nil, err
	}
	h.Logger.Info("default policy version set", "policy", name, "version", id)
	return nil, nil
}

func (h *handler) deletePolicyVersion(r *http.Request) (any, error) {
	return nil, h.Registry.DeletePolicyVersion(r.PathValue("policyName"), r.PathValue("policyVersionId"), h.Now())
}

// policyTarget runs op with the policy name and the target of the body.
func (h *handler) policyTarget(r *http.Request, op func(name, target string) error) (any, error) {
	var req PolicyTargetRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Target == "" {
		return nil, invalid("target (a certificate or thing group ARN) is required")
	}
	return nil, op(r.PathValue("policyName"), req.Target)
}

func (h *handler) attachPolicy(r *http.Request) (any, error) {
	return h.policyTarget(r, h.Registry.AttachPolicy)
}

func (h *handler) detachPolicy(r *http.Request) (any, error) {
	return h.policyTarget(r, h.Registry.DetachPolicy)
}

func (h *handler) listAttachedPolicies(r *http.Request) (any, error) {
	if _, err := boolParam("recursive", r.URL.Query().Get("recursive")); err != nil {
		return nil, err // thing groups have no parents here: recursive changes nothing
	}
	ps, err := h.Registry.AttachedPolicies(r.PathValue("target"))
	if err != nil {
		return nil, err
	}
	return policySummaries(ps), nil
}

func (h *handler) listTargetsForPolicy(r *http.Request) (any, error) {
	targets, err := h.Registry.PolicyTargets(r.PathValue("policyName"))
	if err != nil {
		return nil, err
	}
	return ListTargetsForPolicyResponse{Targets: nonNilSlice(targets)}, nil
}

// actionTypes maps TestAuthorization's action types to policy actions.
var actionTypes = map[string]string{
	"CONNECT": policy.ActionConnect, "PUBLISH": policy.ActionPublish, "SUBSCRIBE": policy.ActionSubscribe,
	"RECEIVE": policy.ActionReceive, "RETAIN_PUBLISH": policy.ActionRetainPublish,
}

func (h *handler) testAuthorization(r *http.Request) (any, error) {
	var req TestAuthorizationRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if len(req.PolicyNamesToAdd)+len(req.PolicyNamesToSkip) > 0 {
		return nil, invalid("policyNamesToAdd and policyNamesToSkip (custom authorization) are not supported")
	}
	if n := len(req.AuthInfos); n < 1 || n > 10 {
		return nil, invalid("authInfos must have 1 to 10 items, not %d", n)
	}
	if req.Principal == "" {
		return nil, invalid("principal (a certificate ARN) is required")
	}
	certID, err := registry.CertificateIDFromPrincipal(req.Principal)
	if err != nil {
		return nil, err
	}
	clientID, err := h.testClientID(certID, r.URL.Query().Get("clientId"))
	if err != nil {
		return nil, err
	}
	resp := TestAuthorizationResponse{AuthResults: []AuthResult{}}
	for _, info := range req.AuthInfos {
		action, ok := actionTypes[info.ActionType]
		if !ok {
			return nil, invalid("actionType %q is not one of CONNECT, PUBLISH, SUBSCRIBE, RECEIVE, RETAIN_PUBLISH", info.ActionType)
		}
		if len(info.Resources) == 0 {
			return nil, invalid("authInfo %s has no resources", info.ActionType)
		}
		res := AuthResult{AuthInfo: info}
		var azs []broker.Authorization
		for _, resource := range info.Resources {
			az, err := h.Authorizer.Authorize(broker.AuthRequest{CertificateID: certID, ClientID: clientID, Action: action, Resource: resource})
			if err != nil {
				return nil, err
			}
			azs = append(azs, az)
			res.Explanation = append(res.Explanation, explain(resource, az))
		}
		resp.AuthResults = append(resp.AuthResults, authResult(res, azs))
	}
	return resp, nil
}

// testClientID is the ClientID to test with: the one given, or the thing
// the certificate is attached to if there is exactly one.
func (h *handler) testClientID(certID, clientID string) (string, error) {
	if clientID != "" {
		return clientID, nil
	}
	things, err := h.Registry.PrincipalThings(certID)
	if err != nil {
		return "", err
	}
	if len(things) != 1 {
		return "", invalid("clientId is required: certificate %s is attached to %d things", certID, len(things))
	}
	return things[0], nil
}

// authResult sums up the decisions on an AuthInfo's resources: explicit
// deny if one was denied explicitly, implicit deny if one was not allowed.
func authResult(res AuthResult, azs []broker.Authorization) AuthResult {
	res.AuthDecision = policy.Allowed
	allowed, explicit, inForce := map[string]bool{}, map[string]bool{}, map[string]bool{}
	res.MissingContextValues = []string{}
	for _, az := range azs {
		switch {
		case az.Decision.Result == policy.ExplicitDeny:
			res.AuthDecision = policy.ExplicitDeny
		case !az.Allowed && res.AuthDecision == policy.Allowed:
			res.AuthDecision = policy.ImplicitDeny
		}
		for _, m := range az.Decision.Allows {
			allowed[m.Policy] = true
		}
		for _, m := range az.Decision.Denies {
			explicit[m.Policy] = true
		}
		for _, p := range az.Policies {
			inForce[p.Name] = true
		}
		for _, v := range az.Decision.Variables {
			if !v.Resolved && !slices.Contains(res.MissingContextValues, v.Name) {
				res.MissingContextValues = append(res.MissingContextValues, v.Name)
			}
		}
		for _, k := range az.Decision.MissingKeys {
			if !slices.Contains(res.MissingContextValues, k) {
				res.MissingContextValues = append(res.MissingContextValues, k)
			}
		}
	}
	implicit := map[string]bool{}
	if res.AuthDecision == policy.ImplicitDeny {
		for name := range inForce {
			if !allowed[name] && !explicit[name] {
				implicit[name] = true
			}
		}
	}
	if res.AuthDecision != policy.Allowed {
		allowed = nil
	}
	res.Allowed.Policies = policyRefs(allowed)
	res.Denied.ExplicitDeny.Policies = policyRefs(explicit)
	res.Denied.ImplicitDeny.Policies = policyRefs(implicit)
	return res
}

func policyRefs(names map[string]bool) []PolicySummary {
	out := []PolicySummary{}
	for name := range names {
		out = append(out, PolicySummary{PolicyName: name, PolicyArn: registry.PolicyARN(name)})
	}
	slices.SortFunc(out, func(a, b PolicySummary) int { return strings.Compare(a.PolicyName, b.PolicyName) })
	return out
}

func statementRefs(ms []policy.Match) []StatementRef {
	out := []StatementRef{}
	for _, m := range ms {
		out = append(out, StatementRef{PolicyName: m.Policy, PolicyVersionID: m.Version, Statement: m.Statement, Sid: m.Sid})
	}
	return out
}

func explain(resource string, az broker.Authorization) Explanation {
	e := Explanation{Resource: resource, Allowed: az.Allowed, Rule: az.Rule, Reason: az.Reason,
		Allows: statementRefs(az.Decision.Allows), Denies: statementRefs(az.Decision.Denies),
		Variables: []PolicyVariable{}, InForce: []PolicyInForce{}}
	for _, v := range az.Decision.Variables {
		e.Variables = append(e.Variables, PolicyVariable(v))
	}
	for _, p := range az.Policies {
		e.InForce = append(e.InForce, PolicyInForce{PolicyName: p.Name, PolicyVersionID: p.DefaultVersionID, Target: p.Target})
	}
	return e
}
