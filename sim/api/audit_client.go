package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/thingd/thingd/sim/audit"
)

// Device Defender audit and mitigation operations, and thingsim's
// remediation rules and CA revocation list.

// StartOnDemandAuditTask starts an audit of the named checks (every
// enabled check if none) and returns the task id (POST /audit/tasks).
func (c *Client) StartOnDemandAuditTask(ctx context.Context, checks []string) (string, error) {
	resp, err := call[TaskIDResponse](ctx, c, http.MethodPost, "/audit/tasks", nil, StartOnDemandAuditTaskRequest{TargetCheckNames: checks})
	return resp.TaskID, err
}

// DescribeAuditTask describes an audit task (GET /audit/tasks/{taskId}).
func (c *Client) DescribeAuditTask(ctx context.Context, taskID string) (AuditTask, error) {
	return call[AuditTask](ctx, c, http.MethodGet, "/audit/tasks/"+url.PathEscape(taskID), nil, nil)
}

// ListAuditTasks lists audit tasks, newest first, filtered by type and
// status when not empty (GET /audit/tasks).
func (c *Client) ListAuditTasks(ctx context.Context, taskType, taskStatus string) (ListAuditTasksResponse, error) {
	return call[ListAuditTasksResponse](ctx, c, http.MethodGet, "/audit/tasks", filters("taskType", taskType, "taskStatus", taskStatus), nil)
}

// ListAuditFindings lists findings (POST /audit/findings), one page.
func (c *Client) ListAuditFindings(ctx context.Context, req ListAuditFindingsRequest) (ListAuditFindingsResponse, error) {
	return call[ListAuditFindingsResponse](ctx, c, http.MethodPost, "/audit/findings", nil, req)
}

// DescribeAccountAuditConfiguration returns the audit configuration (GET
// /audit/configuration).
func (c *Client) DescribeAccountAuditConfiguration(ctx context.Context) (AuditConfiguration, error) {
	return call[AuditConfiguration](ctx, c, http.MethodGet, "/audit/configuration", nil, nil)
}

// UpdateAccountAuditConfiguration merges a configuration change (PATCH
// /audit/configuration): the checks and targets named replace theirs.
func (c *Client) UpdateAccountAuditConfiguration(ctx context.Context, req AuditConfiguration) error {
	return c.do(ctx, http.MethodPatch, "/audit/configuration", nil, nil, req, nil)
}

// CreateScheduledAudit creates a scheduled audit (POST
// /audit/scheduledaudits/{name}) and returns its ARN.
func (c *Client) CreateScheduledAudit(ctx context.Context, name string, req ScheduledAudit) (string, error) {
	resp, err := call[ScheduledAuditArnResponse](ctx, c, http.MethodPost, "/audit/scheduledaudits/"+url.PathEscape(name), nil, req)
	return resp.ScheduledAuditArn, err
}

// DescribeScheduledAudit describes a scheduled audit.
func (c *Client) DescribeScheduledAudit(ctx context.Context, name string) (ScheduledAudit, error) {
	return call[ScheduledAudit](ctx, c, http.MethodGet, "/audit/scheduledaudits/"+url.PathEscape(name), nil, nil)
}

// ListScheduledAudits lists the scheduled audits.
func (c *Client) ListScheduledAudits(ctx context.Context) (ListScheduledAuditsResponse, error) {
	return call[ListScheduledAuditsResponse](ctx, c, http.MethodGet, "/audit/scheduledaudits", nil, nil)
}

// DeleteScheduledAudit deletes a scheduled audit.
func (c *Client) DeleteScheduledAudit(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/audit/scheduledaudits/"+url.PathEscape(name), nil, nil, nil, nil)
}

// CreateMitigationAction creates a mitigation action (POST
// /mitigationactions/actions/{actionName}); its type is the member of
// params that is set.
func (c *Client) CreateMitigationAction(ctx context.Context, name string, params audit.ActionParams) (CreateMitigationActionResponse, error) {
	return call[CreateMitigationActionResponse](ctx, c, http.MethodPost, "/mitigationactions/actions/"+url.PathEscape(name), nil,
		CreateMitigationActionRequest{ActionParams: params})
}

// DescribeMitigationAction describes a mitigation action.
func (c *Client) DescribeMitigationAction(ctx context.Context, name string) (MitigationAction, error) {
	return call[MitigationAction](ctx, c, http.MethodGet, "/mitigationactions/actions/"+url.PathEscape(name), nil, nil)
}

// ListMitigationActions lists the mitigation actions.
func (c *Client) ListMitigationActions(ctx context.Context) (ListMitigationActionsResponse, error) {
	return call[ListMitigationActionsResponse](ctx, c, http.MethodGet, "/mitigationactions/actions", nil, nil)
}

// DeleteMitigationAction deletes a mitigation action.
func (c *Client) DeleteMitigationAction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/mitigationactions/actions/"+url.PathEscape(name), nil, nil, nil, nil)
}

// StartAuditMitigationActionsTask starts applying mitigation actions to
// findings (POST /audit/mitigationactions/tasks/{taskId}).
func (c *Client) StartAuditMitigationActionsTask(ctx context.Context, taskID string, req StartAuditMitigationActionsTaskRequest) error {
	return c.do(ctx, http.MethodPost, "/audit/mitigationactions/tasks/"+url.PathEscape(taskID), nil, nil, req, nil)
}

// DescribeAuditMitigationActionsTask describes a mitigation actions task.
func (c *Client) DescribeAuditMitigationActionsTask(ctx context.Context, taskID string) (MitigationActionsTask, error) {
	return call[MitigationActionsTask](ctx, c, http.MethodGet, "/audit/mitigationactions/tasks/"+url.PathEscape(taskID), nil, nil)
}

// ListAuditMitigationActionsTasks lists mitigation actions tasks, those of
// one audit task if auditTaskID is not empty.
func (c *Client) ListAuditMitigationActionsTasks(ctx context.Context, auditTaskID string) (ListMitigationActionsTasksResponse, error) {
	return call[ListMitigationActionsTasksResponse](ctx, c, http.MethodGet, "/audit/mitigationactions/tasks", filters("auditTaskId", auditTaskID), nil)
}

// ListAuditMitigationActionsExecutions lists a mitigation actions task's
// executions, of one finding when findingID is not empty.
func (c *Client) ListAuditMitigationActionsExecutions(ctx context.Context, taskID, findingID string) (ListMitigationActionsExecutionsResponse, error) {
	return call[ListMitigationActionsExecutionsResponse](ctx, c, http.MethodGet, "/audit/mitigationactions/executions",
		filters("taskId", taskID, "findingId", findingID), nil)
}

// SetRemediationRule sets the mitigation actions run on a check's findings
// after every audit (PUT /thingsim/remediation/{checkName}).
func (c *Client) SetRemediationRule(ctx context.Context, check string, actions []string) (RemediationRule, error) {
	return call[RemediationRule](ctx, c, http.MethodPut, "/thingsim/remediation/"+url.PathEscape(check), nil, RemediationRuleRequest{ActionNames: actions})
}

// DeleteRemediationRule removes a check's remediation rule.
func (c *Client) DeleteRemediationRule(ctx context.Context, check string) error {
	return c.do(ctx, http.MethodDelete, "/thingsim/remediation/"+url.PathEscape(check), nil, nil, nil, nil)
}

// RemediationRules lists the remediation rules (GET /thingsim/remediation).
func (c *Client) RemediationRules(ctx context.Context) (RemediationRulesResponse, error) {
	return call[RemediationRulesResponse](ctx, c, http.MethodGet, "/thingsim/remediation", nil, nil)
}

// RevokeAtCA puts a certificate the simulator's CA issued on the CA's
// revocation list without changing its registry status (PUT
// /thingsim/ca/revocations/{certificateId}) and returns the list.
func (c *Client) RevokeAtCA(ctx context.Context, certID string) (CARevocationsResponse, error) {
	return call[CARevocationsResponse](ctx, c, http.MethodPut, "/thingsim/ca/revocations/"+url.PathEscape(certID), nil, nil)
}

// CARevocations returns the CA's revocation list (GET /thingsim/ca/revocations).
func (c *Client) CARevocations(ctx context.Context) (CARevocationsResponse, error) {
	return call[CARevocationsResponse](ctx, c, http.MethodGet, "/thingsim/ca/revocations", nil, nil)
}
