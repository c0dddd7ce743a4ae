package api

// AWS IoT control-plane shapes of Jobs and thing groups.

// TimeoutConfig is a job's timeoutConfig.
type TimeoutConfig struct {
	InProgressTimeoutInMinutes int64 `json:"inProgressTimeoutInMinutes,omitempty"`
}

// CreateJobRequest is the body of PUT /jobs/{jobId}.
type CreateJobRequest struct {
	Targets         []string       `json:"targets"`            // thing and thing group ARNs
	Document        string         `json:"document,omitempty"` // the job document, a JSON object as a string
	DocumentSource  string         `json:"documentSource,omitempty"`
	Description     string         `json:"description,omitempty"`
	TargetSelection string         `json:"targetSelection,omitempty"` // SNAPSHOT (default) or CONTINUOUS
	TimeoutConfig   *TimeoutConfig `json:"timeoutConfig,omitempty"`
}

// CreateJobResponse is CreateJob's and CancelJob's response.
type CreateJobResponse struct {
	JobArn      string `json:"jobArn"`
	JobID       string `json:"jobId"`
	Description string `json:"description,omitempty"`
}

// CancelJobRequest is the body of PUT /jobs/{jobId}/cancel (?force=true
// also cancels IN_PROGRESS executions).
type CancelJobRequest struct {
	ReasonCode string `json:"reasonCode,omitempty"`
	Comment    string `json:"comment,omitempty"`
}

// JobProcessDetails counts a job's executions by status.
type JobProcessDetails struct {
	ProcessingTargets        []string `json:"processingTargets"`
	NumberOfCanceledThings   int      `json:"numberOfCanceledThings"`
	NumberOfSucceededThings  int      `json:"numberOfSucceededThings"`
	NumberOfFailedThings     int      `json:"numberOfFailedThings"`
	NumberOfRejectedThings   int      `json:"numberOfRejectedThings"`
	NumberOfQueuedThings     int      `json:"numberOfQueuedThings"`
	NumberOfInProgressThings int      `json:"numberOfInProgressThings"`
	NumberOfRemovedThings    int      `json:"numberOfRemovedThings"`
	NumberOfTimedOutThings   int      `json:"numberOfTimedOutThings"`
}

// JobDescription is DescribeJob's job.
type JobDescription struct {
	JobArn            string            `json:"jobArn"`
	JobID             string            `json:"jobId"`
	TargetSelection   string            `json:"targetSelection"`
	Status            string            `json:"status"`
	ForceCanceled     bool              `json:"forceCanceled"`
	ReasonCode        string            `json:"reasonCode,omitempty"`
	Comment           string            `json:"comment,omitempty"`
	Targets           []string          `json:"targets"`
	Description       string            `json:"description,omitempty"`
	CreatedAt         float64           `json:"createdAt"`
	LastUpdatedAt     float64           `json:"lastUpdatedAt"`
	CompletedAt       float64           `json:"completedAt,omitempty"`
	JobProcessDetails JobProcessDetails `json:"jobProcessDetails"`
	TimeoutConfig     *TimeoutConfig    `json:"timeoutConfig,omitempty"`
	IsConcurrent      bool              `json:"isConcurrent"`
}

// DescribeJobResponse is DescribeJob's response.
type DescribeJobResponse struct {
	Job JobDescription `json:"job"`
}

// GetJobDocumentResponse is GetJobDocument's response.
type GetJobDocumentResponse struct {
	Document string `json:"document"`
}

// JobSummary is one entry of ListJobs.
type JobSummary struct {
	JobArn          string  `json:"jobArn"`
	JobID           string  `json:"jobId"`
	TargetSelection string  `json:"targetSelection"`
	Status          string  `json:"status"`
	CreatedAt       float64 `json:"createdAt"`
	LastUpdatedAt   float64 `json:"lastUpdatedAt"`
	CompletedAt     float64 `json:"completedAt,omitempty"`
	IsConcurrent    bool    `json:"isConcurrent"`
}

// ListJobsResponse is ListJobs' response.
type ListJobsResponse struct {
	Jobs      []JobSummary `json:"jobs"`
	NextToken string       `json:"nextToken,omitempty"`
}

// JobExecutionStatusDetails is a control-plane execution's statusDetails.
type JobExecutionStatusDetails struct {
	DetailsMap map[string]string `json:"detailsMap"`
}

// JobExecution is DescribeJobExecution's execution.
type JobExecution struct {
	JobID                            string                    `json:"jobId"`
	Status                           string                    `json:"status"`
	ForceCanceled                    bool                      `json:"forceCanceled"`
	StatusDetails                    JobExecutionStatusDetails `json:"statusDetails"`
	ThingArn                         string                    `json:"thingArn"`
	QueuedAt                         float64                   `json:"queuedAt"`
	StartedAt                        float64                   `json:"startedAt,omitempty"`
	LastUpdatedAt                    float64                   `json:"lastUpdatedAt"`
	ExecutionNumber                  int64                     `json:"executionNumber"`
	VersionNumber                    int64                     `json:"versionNumber"`
	ApproximateSecondsBeforeTimedOut int64                     `json:"approximateSecondsBeforeTimedOut,omitempty"`
}

// DescribeJobExecutionResponse is DescribeJobExecution's response.
type DescribeJobExecutionResponse struct {
	Execution JobExecution `json:"execution"`
}

// JobExecutionSummary is the summary of one execution in the list
// operations.
type JobExecutionSummary struct {
	Status          string  `json:"status"`
	QueuedAt        float64 `json:"queuedAt"`
	StartedAt       float64 `json:"startedAt,omitempty"`
	LastUpdatedAt   float64 `json:"lastUpdatedAt"`
	ExecutionNumber int64   `json:"executionNumber"`
}

// JobExecutionSummaryEntry is one entry of ListJobExecutionsForThing (with
// JobID) or ListJobExecutionsForJob (with ThingArn).
type JobExecutionSummaryEntry struct {
	JobID               string              `json:"jobId,omitempty"`
	ThingArn            string              `json:"thingArn,omitempty"`
	JobExecutionSummary JobExecutionSummary `json:"jobExecutionSummary"`
}

// ListJobExecutionsResponse is the response of ListJobExecutionsForThing and
// ListJobExecutionsForJob.
type ListJobExecutionsResponse struct {
	ExecutionSummaries []JobExecutionSummaryEntry `json:"executionSummaries"`
	NextToken          string                     `json:"nextToken,omitempty"`
}

// ThingGroupProperties is a thing group's properties.
type ThingGroupProperties struct {
	ThingGroupDescription string `json:"thingGroupDescription,omitempty"`
}

// CreateThingGroupRequest is the body of POST /thing-groups/{thingGroupName}.
type CreateThingGroupRequest struct {
	ParentGroupName      string                `json:"parentGroupName,omitempty"`
	ThingGroupProperties *ThingGroupProperties `json:"thingGroupProperties,omitempty"`
}

// CreateThingGroupResponse is CreateThingGroup's response.
type CreateThingGroupResponse struct {
	ThingGroupName string `json:"thingGroupName"`
	ThingGroupArn  string `json:"thingGroupArn"`
	ThingGroupID   string `json:"thingGroupId"`
}

// ThingGroupMetadata is DescribeThingGroup's thingGroupMetadata.
type ThingGroupMetadata struct {
	CreationDate float64 `json:"creationDate"`
}

// DescribeThingGroupResponse is DescribeThingGroup's response.
type DescribeThingGroupResponse struct {
	ThingGroupName       string               `json:"thingGroupName"`
	ThingGroupID         string               `json:"thingGroupId"`
	ThingGroupArn        string               `json:"thingGroupArn"`
	Version              int64                `json:"version"`
	ThingGroupProperties ThingGroupProperties `json:"thingGroupProperties"`
	ThingGroupMetadata   ThingGroupMetadata   `json:"thingGroupMetadata"`
}

// GroupNameAndArn is one entry of ListThingGroups.
type GroupNameAndArn struct {
	GroupName string `json:"groupName"`
	GroupArn  string `json:"groupArn"`
}

// ListThingGroupsResponse is ListThingGroups' response.
type ListThingGroupsResponse struct {
	ThingGroups []GroupNameAndArn `json:"thingGroups"`
	NextToken   string            `json:"nextToken,omitempty"`
}

// ThingGroupMembershipRequest is the body of PUT
// /thing-groups/addThingToThingGroup and removeThingFromThingGroup: a group
// by name or ARN and a thing by name or ARN.
type ThingGroupMembershipRequest struct {
	ThingGroupName string `json:"thingGroupName,omitempty"`
	ThingGroupArn  string `json:"thingGroupArn,omitempty"`
	ThingName      string `json:"thingName,omitempty"`
	ThingArn       string `json:"thingArn,omitempty"`
}

// ListThingsInThingGroupResponse is ListThingsInThingGroup's response.
type ListThingsInThingGroupResponse struct {
	Things    []string `json:"things"`
	NextToken string   `json:"nextToken,omitempty"`
}
