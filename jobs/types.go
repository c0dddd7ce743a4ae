package jobs

import (
	"encoding/json"
	"errors"
	"strings"
)

// ExecutionState is a JobExecutionState: what update replies and rejected
// errors carry about an execution.
type ExecutionState struct {
	// Status is the execution's status.
	Status Status `json:"status"`
	// StatusDetails are its details; nil when it has none.
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	// VersionNumber goes up by one with every accepted update.
	VersionNumber int64 `json:"versionNumber"`
}

// ExecutionSummary is a JobExecutionSummary, as listed by get-pending and
// the notify topic.
type ExecutionSummary struct {
	// JobID names the job.
	JobID string `json:"jobId"`
	// QueuedAt, StartedAt (0 until started) and LastUpdatedAt are in
	// seconds since the epoch.
	QueuedAt      int64 `json:"queuedAt,omitempty"`
	StartedAt     int64 `json:"startedAt,omitempty"`
	LastUpdatedAt int64 `json:"lastUpdatedAt,omitempty"`
	// VersionNumber is the execution's version (see ExecutionState).
	VersionNumber int64 `json:"versionNumber"`
	// ExecutionNumber tells apart the executions of one job on one thing.
	ExecutionNumber int64 `json:"executionNumber,omitempty"`
}

// GetPendingRequest is the payload of GetPendingJobExecutions.
type GetPendingRequest struct {
	// ClientToken is set by the Client; a caller's value is replaced.
	ClientToken string `json:"clientToken,omitempty"`
}

// PendingExecutions is the accepted reply of GetPendingJobExecutions.
type PendingExecutions struct {
	// InProgressJobs and QueuedJobs list the pending executions, in queue
	// order (the service lists at most 10, or 15 with a scheduling config).
	InProgressJobs []ExecutionSummary `json:"inProgressJobs"`
	QueuedJobs     []ExecutionSummary `json:"queuedJobs"`
	// Timestamp is when the reply was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ClientToken is the request's token, echoed.
	ClientToken string `json:"clientToken,omitempty"`
}

// StartNextRequest is the payload of StartNextPendingJobExecution. All
// fields are optional.
type StartNextRequest struct {
	// StatusDetails are set on the execution if it moves from QUEUED to
	// IN_PROGRESS (≤ 10 pairs; see ValidateStatusDetails).
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	// StepTimeoutInMinutes starts the step timer: 1–10080; 0 means none.
	StepTimeoutInMinutes int64 `json:"stepTimeoutInMinutes,omitempty"`
	// ClientToken is set by the Client; a caller's value is replaced.
	ClientToken string `json:"clientToken,omitempty"`
}

// DescribeRequest is the payload of DescribeJobExecution. All fields are
// optional.
type DescribeRequest struct {
	// ExecutionNumber selects an execution; 0 means the latest.
	ExecutionNumber int64 `json:"executionNumber,omitempty"`
	// IncludeJobDocument: nil leaves the service default, which over MQTT
	// is to include the document.
	IncludeJobDocument *bool `json:"includeJobDocument,omitempty"`
	// ClientToken is set by the Client; a caller's value is replaced.
	ClientToken string `json:"clientToken,omitempty"`
}

// UpdateRequest is the payload of UpdateJobExecution.
type UpdateRequest struct {
	// Status is required: IN_PROGRESS, SUCCEEDED, FAILED or REJECTED.
	Status Status `json:"status"`
	// StatusDetails replace the execution's details; nil leaves them.
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	// ExpectedVersion, if not 0, must equal the execution's versionNumber
	// or the update is rejected with VersionMismatch.
	ExpectedVersion int64 `json:"expectedVersion,omitempty"`
	// ExecutionNumber selects an execution; 0 means the latest.
	ExecutionNumber int64 `json:"executionNumber,omitempty"`
	// IncludeJobExecutionState asks for executionState in the reply.
	IncludeJobExecutionState bool `json:"includeJobExecutionState,omitempty"`
	// IncludeJobDocument asks for jobDocument in the reply.
	IncludeJobDocument bool `json:"includeJobDocument,omitempty"`
	// StepTimeoutInMinutes (re)starts the step timer: 1–10080; -1 clears
	// it; 0 sends nothing.
	StepTimeoutInMinutes int64 `json:"stepTimeoutInMinutes,omitempty"`
	// ClientToken is set by the Client; a caller's value is replaced.
	ClientToken string `json:"clientToken,omitempty"`
}

// UpdateAccepted is the accepted reply of UpdateJobExecution.
type UpdateAccepted struct {
	// ExecutionState is present if the request set IncludeJobExecutionState.
	ExecutionState *ExecutionState `json:"executionState,omitempty"`
	// JobDocument is present if the request set IncludeJobDocument.
	JobDocument json.RawMessage `json:"jobDocument,omitempty"`
	// Timestamp is when the reply was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ClientToken is the request's token, echoed.
	ClientToken string `json:"clientToken,omitempty"`
}

// executionReply is the accepted reply of start-next and describe.
type executionReply struct {
	Execution   *Execution `json:"execution,omitempty"`
	Timestamp   int64      `json:"timestamp,omitempty"`
	ClientToken string     `json:"clientToken,omitempty"`
}

// NextNotification is a message on the notify-next topic
// (NextJobExecutionChanged). Execution is nil when nothing is pending.
type NextNotification struct {
	// Timestamp is when it was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp"`
	// Execution is the next pending execution, with its job document; nil
	// when the queue is empty.
	Execution *Execution `json:"execution,omitempty"`
}

// ListNotification is a message on the notify topic (JobExecutionsChanged):
// the pending executions by status (IN_PROGRESS, QUEUED); a status with none
// is left out.
type ListNotification struct {
	// Timestamp is when it was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp"`
	// Jobs holds the pending executions by status; empty when none.
	Jobs map[Status][]ExecutionSummary `json:"jobs"`
}

// ErrorCode is the code of a rejected reply (aws-iot-protocol.md §1.6).
type ErrorCode string

// Rejected reply codes.
const (
	// CodeInvalidTopic: the request went to a Jobs topic that maps to no API.
	CodeInvalidTopic ErrorCode = "InvalidTopic"
	// CodeInvalidJSON: the payload is not valid UTF-8 JSON.
	CodeInvalidJSON ErrorCode = "InvalidJson"
	// CodeInvalidRequest: the payload's content is invalid.
	CodeInvalidRequest ErrorCode = "InvalidRequest"
	// CodeInvalidStateTransition: the status change is not allowed, e.g. out
	// of a terminal status.
	CodeInvalidStateTransition ErrorCode = "InvalidStateTransition"
	// CodeResourceNotFound: the job execution does not exist.
	CodeResourceNotFound ErrorCode = "ResourceNotFound"
	// CodeVersionMismatch: expectedVersion is not the stored version.
	CodeVersionMismatch ErrorCode = "VersionMismatch"
	// CodeInternalError: the service failed.
	CodeInternalError ErrorCode = "InternalError"
	// CodeRequestThrottled: the request was throttled.
	CodeRequestThrottled ErrorCode = "RequestThrottled"
	// CodeTerminalStateReached: describe of an execution already terminal.
	CodeTerminalStateReached ErrorCode = "TerminalStateReached"
)

// RejectedError is a rejected reply (ErrorResponse) returned as an error.
type RejectedError struct {
	// Code says why (one of the Code... constants).
	Code ErrorCode `json:"code"`
	// Message is the service's explanation.
	Message string `json:"message,omitempty"`
	// ClientToken is the request's token, echoed.
	ClientToken string `json:"clientToken,omitempty"`
	// Timestamp is when the reply was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ExecutionState is sent with InvalidStateTransition and
	// VersionMismatch.
	ExecutionState *ExecutionState `json:"executionState,omitempty"`

	// Operation and JobID say which request was rejected; they are filled
	// in by the Client, not sent by the service.
	Operation Operation `json:"-"`
	JobID     string    `json:"-"`
}

// Error returns e.g. "jobs: update job-1 rejected: VersionMismatch: ...".
func (e *RejectedError) Error() string {
	var b strings.Builder
	b.WriteString("jobs: ")
	if e.Operation == "" {
		b.WriteString("request")
	} else {
		b.WriteString(string(e.Operation))
	}
	if e.JobID != "" {
		b.WriteString(" " + e.JobID)
	}
	b.WriteString(" rejected: " + string(e.Code))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// endedRemotely reports whether err is a rejection saying the execution is
// no longer pending in the cloud (terminal, canceled, removed or gone), and
// returns it.
func endedRemotely(err error) (*RejectedError, bool) {
	var rej *RejectedError
	if !errors.As(err, &rej) {
		return nil, false
	}
	switch rej.Code {
	case CodeInvalidStateTransition, CodeResourceNotFound, CodeTerminalStateReached:
		return rej, true
	case CodeVersionMismatch:
		return rej, rej.ExecutionState != nil && rej.ExecutionState.Status.Terminal()
	}
	return rej, false
}
