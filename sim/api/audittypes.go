package api

import (
	"time"

	"github.com/thingd/thingd/sim/audit"
)

// Device Defender audit shapes. Those the audit service returns as is are
// aliases of its types.
type (
	// AuditTask is DescribeAuditTask's response (with the taskId).
	AuditTask = audit.Task
	// AuditFinding is a finding of ListAuditFindings.
	AuditFinding = audit.Finding
	// AuditConfiguration is UpdateAccountAuditConfiguration's request and
	// DescribeAccountAuditConfiguration's response.
	AuditConfiguration = audit.Configuration
	// ScheduledAudit is DescribeScheduledAudit's response, and
	// CreateScheduledAudit's request (the name comes from the path).
	ScheduledAudit = audit.ScheduledAudit
	// MitigationAction is DescribeMitigationAction's response.
	MitigationAction = audit.MitigationAction
	// MitigationActionsTask is DescribeAuditMitigationActionsTask's
	// response (with the taskId).
	MitigationActionsTask = audit.MitigationTask
	// MitigationActionsExecution is an entry of
	// ListAuditMitigationActionsExecutions.
	MitigationActionsExecution = audit.Execution
	// RemediationRule is a thingsim remediation rule.
	RemediationRule = audit.RemediationRule
)

// StartOnDemandAuditTaskRequest is the body of POST /audit/tasks. No check
// names means every enabled check (thingsim's extension).
type StartOnDemandAuditTaskRequest struct {
	TargetCheckNames []string `json:"targetCheckNames"`
}

// TaskIDResponse is the response of StartOnDemandAuditTask and
// StartAuditMitigationActionsTask.
type TaskIDResponse struct {
	TaskID string `json:"taskId"`
}

// AuditTaskMetadata is an entry of ListAuditTasks.
type AuditTaskMetadata struct {
	TaskID     string `json:"taskId"`
	TaskStatus string `json:"taskStatus"`
	TaskType   string `json:"taskType"`
}

// ListAuditTasksResponse is ListAuditTasks' response.
type ListAuditTasksResponse struct {
	Tasks     []AuditTaskMetadata `json:"tasks"`
	NextToken string              `json:"nextToken,omitempty"`
}

// ListAuditFindingsRequest is the body of POST /audit/findings.
type ListAuditFindingsRequest struct {
	TaskID                 string                    `json:"taskId,omitempty"`
	CheckName              string                    `json:"checkName,omitempty"`
	ResourceIdentifier     *audit.ResourceIdentifier `json:"resourceIdentifier,omitempty"`
	MaxResults             int                       `json:"maxResults,omitempty"`
	NextToken              string                    `json:"nextToken,omitempty"`
	StartTime              audit.Time                `json:"startTime,omitzero"`
	EndTime                audit.Time                `json:"endTime,omitzero"`
	ListSuppressedFindings bool                      `json:"listSuppressedFindings,omitempty"`
}

// ListAuditFindingsResponse is ListAuditFindings' response.
type ListAuditFindingsResponse struct {
	Findings  []AuditFinding `json:"findings"`
	NextToken string         `json:"nextToken,omitempty"`
}

// ScheduledAuditArnResponse is CreateScheduledAudit's response.
type ScheduledAuditArnResponse struct {
	ScheduledAuditArn string `json:"scheduledAuditArn"`
}

// ListScheduledAuditsResponse is ListScheduledAudits' response.
type ListScheduledAuditsResponse struct {
	ScheduledAudits []ScheduledAudit `json:"scheduledAudits"`
	NextToken       string           `json:"nextToken,omitempty"`
}

// CreateMitigationActionRequest is the body of POST
// /mitigationactions/actions/{actionName}.
type CreateMitigationActionRequest struct {
	RoleArn      string             `json:"roleArn,omitempty"`
	ActionParams audit.ActionParams `json:"actionParams"`
}

// CreateMitigationActionResponse is CreateMitigationAction's response.
type CreateMitigationActionResponse struct {
	ActionArn string `json:"actionArn"`
	ActionID  string `json:"actionId"`
}

// MitigationActionIdentifier is an entry of ListMitigationActions.
type MitigationActionIdentifier struct {
	ActionName   string     `json:"actionName"`
	ActionArn    string     `json:"actionArn"`
	CreationDate audit.Time `json:"creationDate"`
}

// ListMitigationActionsResponse is ListMitigationActions' response.
type ListMitigationActionsResponse struct {
	ActionIdentifiers []MitigationActionIdentifier `json:"actionIdentifiers"`
	NextToken         string                       `json:"nextToken,omitempty"`
}

// StartAuditMitigationActionsTaskRequest is the body of POST
// /audit/mitigationactions/tasks/{taskId}.
type StartAuditMitigationActionsTaskRequest struct {
	Target                     audit.MitigationTarget `json:"target"`
	AuditCheckToActionsMapping map[string][]string    `json:"auditCheckToActionsMapping"`
	ClientRequestToken         string                 `json:"clientRequestToken,omitempty"`
}

// MitigationActionsTaskMetadata is an entry of
// ListAuditMitigationActionsTasks.
type MitigationActionsTaskMetadata struct {
	TaskID     string     `json:"taskId"`
	StartTime  audit.Time `json:"startTime"`
	TaskStatus string     `json:"taskStatus"`
}

// ListMitigationActionsTasksResponse is ListAuditMitigationActionsTasks'
// response.
type ListMitigationActionsTasksResponse struct {
	Tasks     []MitigationActionsTaskMetadata `json:"tasks"`
	NextToken string                          `json:"nextToken,omitempty"`
}

// ListMitigationActionsExecutionsResponse is
// ListAuditMitigationActionsExecutions' response.
type ListMitigationActionsExecutionsResponse struct {
	ActionsExecutions []MitigationActionsExecution `json:"actionsExecutions"`
	NextToken         string                       `json:"nextToken,omitempty"`
}

// RemediationRuleRequest is the body of PUT /thingsim/remediation/{checkName}.
type RemediationRuleRequest struct {
	ActionNames []string `json:"actionNames"`
}

// RemediationRulesResponse is GET /thingsim/remediation.
type RemediationRulesResponse struct {
	Rules []RemediationRule `json:"rules"`
}

// CARevocation is an entry of the simulator CA's revocation list.
type CARevocation struct {
	SerialNumber string    `json:"serialNumber"` // decimal
	RevokedAt    time.Time `json:"revokedAt"`
}

// CARevocationsResponse is GET /thingsim/ca/revocations.
type CARevocationsResponse struct {
	Revocations []CARevocation `json:"revocations"`
}
