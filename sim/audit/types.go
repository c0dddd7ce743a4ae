package audit

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/thingd/thingd/sim/registry"
)

// Check names (the API spelling, aws-iot-protocol.md §5.1).
const (
	DeviceCertificateExpiring           = "DEVICE_CERTIFICATE_EXPIRING_CHECK"
	DeviceCertificateAge                = "DEVICE_CERTIFICATE_AGE_CHECK"
	CACertificateExpiring               = "CA_CERTIFICATE_EXPIRING_CHECK"
	DeviceCertificateShared             = "DEVICE_CERTIFICATE_SHARED_CHECK"
	ConflictingClientIDs                = "CONFLICTING_CLIENT_IDS_CHECK"
	PolicyOverlyPermissive              = "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"
	PolicyPotentialMisconfiguration     = "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK"
	RevokedDeviceCertificateStillActive = "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK"

	// policyMisconfigurationSDK is the SDK enum spelling of
	// PolicyPotentialMisconfiguration, accepted as an alias.
	policyMisconfigurationSDK = "IOT_POLICY_POTENTIAL_MIS_CONFIGURATION_CHECK"
)

// Severities.
const (
	SeverityCritical = "CRITICAL"
	SeverityHigh     = "HIGH"
	SeverityMedium   = "MEDIUM"
	SeverityLow      = "LOW"
)

// Resource types of findings.
const (
	ResourceDeviceCertificate = "DEVICE_CERTIFICATE"
	ResourceCACertificate     = "CA_CERTIFICATE"
	ResourceIoTPolicy         = "IOT_POLICY"
	ResourceClientID          = "CLIENT_ID"
)

// Reason codes.
const (
	ReasonApproachingExpiration    = "CERTIFICATE_APPROACHING_EXPIRATION"
	ReasonPastExpiration           = "CERTIFICATE_PAST_EXPIRATION"
	ReasonPastAgeThreshold         = "CERTIFICATE_PAST_AGE_THRESHOLD"
	ReasonSharedByMultipleDevices  = "CERTIFICATE_SHARED_BY_MULTIPLE_DEVICES"
	ReasonDuplicateClientID        = "DUPLICATE_CLIENT_ID_ACROSS_CONNECTIONS"
	ReasonRevokedByIssuer          = "CERTIFICATE_REVOKED_BY_ISSUER"
	ReasonBroadDataPlaneAccess     = "ALLOWS_BROAD_ACCESS_TO_IOT_DATA_PLANE_ACTIONS"
	ReasonMQTTWildcardsInDeny      = "POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT"
	ReasonDenyBypassedWithWildcard = "TOPIC_FILTERS_INTENDED_TO_DENY_ALLOWED_USING_WILDCARDS"
)

// Configuration keys of the certificate checks and their bounds.
const (
	ExpirationThresholdKey     = "CERT_EXPIRATION_THRESHOLD_IN_DAYS"
	AgeThresholdKey            = "CERT_AGE_THRESHOLD_IN_DAYS"
	DefaultExpirationThreshold = 30  // days
	DefaultAgeThreshold        = 365 // days
	MinThresholdDays           = 30
	MaxThresholdDays           = 3652
)

// Task types and statuses (§5.3).
const (
	OnDemandTask  = "ON_DEMAND_AUDIT_TASK"
	ScheduledTask = "SCHEDULED_AUDIT_TASK"

	TaskInProgress = "IN_PROGRESS"
	TaskCompleted  = "COMPLETED"
	TaskFailed     = "FAILED"
	TaskCanceled   = "CANCELED"
)

// Check run statuses (§5.3).
const (
	CheckInProgress   = "IN_PROGRESS"
	CheckCompliant    = "COMPLETED_COMPLIANT"
	CheckNonCompliant = "COMPLETED_NON_COMPLIANT"
	CheckFailed       = "FAILED"
	CheckCanceled     = "CANCELED"
)

// MQTT topics on which the simulator publishes (thingsim's own, not AWS's:
// AWS delivers these through SNS).
const (
	// NotificationTopic carries the audit completion notification
	// (Notification), published at the end of every audit task.
	NotificationTopic = "thingsim/audit/notifications"
	// FindingTopic carries the findings the PUBLISH_FINDING_TO_SNS
	// mitigation action publishes (FindingMessage).
	FindingTopic = "thingsim/audit/findings"
)

const arnPrefix = "arn:aws:iot:" + registry.Region + ":" + registry.AccountID + ":"

// Time is a timestamp that is JSON epoch seconds with a millisecond
// fraction, as in AWS's REST JSON protocol. The zero Time is 0.
type Time struct{ time.Time }

// At returns t as a Time, in UTC and truncated to milliseconds.
func At(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

// MarshalJSON encodes epoch seconds.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("0"), nil
	}
	return strconv.AppendFloat(nil, float64(t.UnixMilli())/1000, 'f', -1, 64), nil
}

// UnmarshalJSON decodes epoch seconds.
func (t *Time) UnmarshalJSON(data []byte) error {
	var f float64
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	if f == 0 {
		*t = Time{}
		return nil
	}
	*t = Time{time.UnixMilli(int64(f*1000 + 0.5)).UTC()}
	return nil
}

// ResourceIdentifier names the resource of a finding; one field is set.
type ResourceIdentifier struct {
	DeviceCertificateID     string                   `json:"deviceCertificateId,omitempty"`
	CACertificateID         string                   `json:"caCertificateId,omitempty"`
	ClientID                string                   `json:"clientId,omitempty"`
	PolicyVersionIdentifier *PolicyVersionIdentifier `json:"policyVersionIdentifier,omitempty"`
	Account                 string                   `json:"account,omitempty"`
}

// PolicyVersionIdentifier names a policy version.
type PolicyVersionIdentifier struct {
	PolicyName      string `json:"policyName"`
	PolicyVersionID string `json:"policyVersionId"`
}

// Resource is a finding's nonCompliantResource or one of its
// relatedResources.
type Resource struct {
	ResourceType       string             `json:"resourceType"`
	ResourceIdentifier ResourceIdentifier `json:"resourceIdentifier"`
	AdditionalInfo     map[string]string  `json:"additionalInfo,omitempty"`
}

// Finding is an audit finding (§5.4).
type Finding struct {
	FindingID                  string     `json:"findingId"`
	TaskID                     string     `json:"taskId"`
	CheckName                  string     `json:"checkName"`
	TaskStartTime              Time       `json:"taskStartTime"`
	FindingTime                Time       `json:"findingTime"`
	Severity                   string     `json:"severity"`
	NonCompliantResource       Resource   `json:"nonCompliantResource"`
	RelatedResources           []Resource `json:"relatedResources,omitempty"`
	ReasonForNonCompliance     string     `json:"reasonForNonCompliance"`
	ReasonForNonComplianceCode string     `json:"reasonForNonComplianceCode"`
	IsSuppressed               bool       `json:"isSuppressed"`
}

// CheckDetails is a check's entry in a task's auditDetails.
type CheckDetails struct {
	CheckRunStatus                       string `json:"checkRunStatus"`
	CheckCompliant                       *bool  `json:"checkCompliant,omitempty"`
	TotalResourcesCount                  int64  `json:"totalResourcesCount"`
	NonCompliantResourcesCount           int64  `json:"nonCompliantResourcesCount"`
	SuppressedNonCompliantResourcesCount int64  `json:"suppressedNonCompliantResourcesCount"`
	ErrorCode                            string `json:"errorCode,omitempty"`
	Message                              string `json:"message,omitempty"`
}

// TaskStatistics counts a task's checks by outcome.
type TaskStatistics struct {
	TotalChecks                    int `json:"totalChecks"`
	InProgressChecks               int `json:"inProgressChecks"`
	WaitingForDataCollectionChecks int `json:"waitingForDataCollectionChecks"`
	CompliantChecks                int `json:"compliantChecks"`
	NonCompliantChecks             int `json:"nonCompliantChecks"`
	FailedChecks                   int `json:"failedChecks"`
	CanceledChecks                 int `json:"canceledChecks"`
}

// Task is an audit task as DescribeAuditTask returns it (plus its id).
type Task struct {
	TaskID             string                  `json:"taskId"`
	TaskStatus         string                  `json:"taskStatus"`
	TaskType           string                  `json:"taskType"`
	TaskStartTime      Time                    `json:"taskStartTime"`
	TaskStatistics     TaskStatistics          `json:"taskStatistics"`
	ScheduledAuditName string                  `json:"scheduledAuditName,omitempty"`
	AuditDetails       map[string]CheckDetails `json:"auditDetails"`
}

// NotificationTarget is the SNS entry of auditNotificationTargetConfigurations.
// thingsim POSTs the notification to TargetArn when it is an http:// or
// https:// URL (a webhook standing in for the SNS topic).
type NotificationTarget struct {
	TargetArn string `json:"targetArn,omitempty"`
	RoleArn   string `json:"roleArn,omitempty"`
	Enabled   bool   `json:"enabled"`
}

// CheckConfiguration is one check's entry in auditCheckConfigurations.
type CheckConfiguration struct {
	Enabled       bool              `json:"enabled"`
	Configuration map[string]string `json:"configuration,omitempty"`
}

// Configuration is the account audit configuration
// (DescribeAccountAuditConfiguration).
type Configuration struct {
	RoleArn                               string                        `json:"roleArn,omitempty"`
	AuditNotificationTargetConfigurations map[string]NotificationTarget `json:"auditNotificationTargetConfigurations"`
	AuditCheckConfigurations              map[string]CheckConfiguration `json:"auditCheckConfigurations"`
}

// NotificationDetail is one check of a Notification.
type NotificationDetail struct {
	CheckName                  string `json:"checkName"`
	CheckRunStatus             string `json:"checkRunStatus"`
	NonCompliantResourcesCount int64  `json:"nonCompliantResourcesCount"`
	TotalResourcesCount        int64  `json:"totalResourcesCount"`
	Message                    string `json:"message,omitempty"`
	ErrorCode                  string `json:"errorCode,omitempty"`
}

// Notification is the audit completion message (§5.5, schema
// arn:aws:iot:::schema:auditnotification/1.0): auditDetails is an array and
// taskStartTime epoch milliseconds here.
type Notification struct {
	AccountID               string               `json:"accountId"`
	TaskID                  string               `json:"taskId"`
	TaskStatus              string               `json:"taskStatus"`
	TaskType                string               `json:"taskType"`
	ScheduledAuditName      string               `json:"scheduledAuditName,omitempty"`
	FailedChecksCount       int                  `json:"failedChecksCount"`
	CanceledChecksCount     int                  `json:"canceledChecksCount"`
	NonCompliantChecksCount int                  `json:"nonCompliantChecksCount"`
	CompliantChecksCount    int                  `json:"compliantChecksCount"`
	TotalChecksCount        int                  `json:"totalChecksCount"`
	TaskStartTime           int64                `json:"taskStartTime"`
	AuditDetails            []NotificationDetail `json:"auditDetails"`
}

// FindingMessage is what PUBLISH_FINDING_TO_SNS sends (thingsim's shape:
// AWS documents no payload for it).
type FindingMessage struct {
	AccountID               string  `json:"accountId"`
	MitigationActionsTaskID string  `json:"mitigationActionsTaskId"`
	ActionName              string  `json:"actionName"`
	Finding                 Finding `json:"finding"`
}
