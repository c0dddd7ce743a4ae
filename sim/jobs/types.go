package jobs

import (
	"encoding/json"
	"time"
)

// Job execution statuses (aws-iot-protocol.md §1.7).
const (
	StatusQueued     = "QUEUED"
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusTimedOut   = "TIMED_OUT"
	StatusRejected   = "REJECTED"
	StatusRemoved    = "REMOVED"
	StatusCanceled   = "CANCELED"
)

// ExecutionStatuses lists every execution status.
var ExecutionStatuses = []string{StatusQueued, StatusInProgress, StatusSucceeded, StatusFailed,
	StatusTimedOut, StatusRejected, StatusRemoved, StatusCanceled}

// Job statuses. Snapshot jobs become COMPLETED once every execution is
// terminal; continuous jobs stay IN_PROGRESS until canceled.
const (
	JobInProgress = "IN_PROGRESS"
	JobCompleted  = "COMPLETED"
	JobCanceled   = "CANCELED"
)

// Target selections.
const (
	Snapshot   = "SNAPSHOT"
	Continuous = "CONTINUOUS"
)

// Limits (aws-iot-protocol.md §1.8).
const (
	MaxDocumentBytes     = 32768
	MaxStatusDetails     = 10
	MaxDetailValueChars  = 1024
	MaxTimeoutMinutes    = 10080
	MaxPendingInResponse = 10
	MaxDescriptionChars  = 2028
)

// IsTerminal reports whether status is terminal.
func IsTerminal(status string) bool {
	switch status {
	case StatusSucceeded, StatusFailed, StatusTimedOut, StatusRejected, StatusRemoved, StatusCanceled:
		return true
	}
	return false
}

// Job is a stored job.
type Job struct {
	ID                       string    `json:"jobId"`
	Targets                  []string  `json:"targets"` // thing and thing group ARNs
	Document                 string    `json:"document"`
	Description              string    `json:"description,omitempty"`
	TargetSelection          string    `json:"targetSelection"`
	Status                   string    `json:"status"`
	ForceCanceled            bool      `json:"forceCanceled,omitempty"`
	ReasonCode               string    `json:"reasonCode,omitempty"`
	Comment                  string    `json:"comment,omitempty"`
	InProgressTimeoutMinutes int64     `json:"inProgressTimeoutInMinutes,omitempty"`
	CreatedAt                time.Time `json:"createdAt"`
	LastUpdatedAt            time.Time `json:"lastUpdatedAt"`
	CompletedAt              time.Time `json:"completedAt,omitzero"`
}

// Execution is a stored job execution: the latest one of a job on a thing.
type Execution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        time.Time         `json:"queuedAt"`
	StartedAt       time.Time         `json:"startedAt,omitzero"`
	LastUpdatedAt   time.Time         `json:"lastUpdatedAt"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
	ForceCanceled   bool              `json:"forceCanceled,omitempty"`
	// Seq orders executions queued at the same time (queue order).
	Seq uint64 `json:"seq"`
	// StepDeadline and InProgressDeadline are when a pending execution
	// times out (zero: no timer).
	StepDeadline       time.Time `json:"stepDeadline,omitzero"`
	InProgressDeadline time.Time `json:"inProgressDeadline,omitzero"`
}

// Deadline returns the earlier non-zero of the execution's timeouts, or zero.
func (e Execution) Deadline() time.Time {
	switch {
	case e.StepDeadline.IsZero():
		return e.InProgressDeadline
	case e.InProgressDeadline.IsZero() || e.StepDeadline.Before(e.InProgressDeadline):
		return e.StepDeadline
	}
	return e.InProgressDeadline
}

// Terminal is what Options.OnTerminal receives when an execution reaches a
// terminal status.
type Terminal struct {
	Execution Execution
	Document  string // the job document
}

// The device API's JSON shapes (aws-iot-protocol.md §1.3–1.6), the
// simulator's own structs.

// wireExecution is a JobExecution.
type wireExecution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	JobDocument     json.RawMessage   `json:"jobDocument,omitempty"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        int64             `json:"queuedAt"`
	StartedAt       int64             `json:"startedAt,omitempty"`
	LastUpdatedAt   int64             `json:"lastUpdatedAt"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
}

// wireSummary is a JobExecutionSummary.
type wireSummary struct {
	JobID           string `json:"jobId"`
	QueuedAt        int64  `json:"queuedAt"`
	StartedAt       int64  `json:"startedAt,omitempty"`
	LastUpdatedAt   int64  `json:"lastUpdatedAt"`
	VersionNumber   int64  `json:"versionNumber"`
	ExecutionNumber int64  `json:"executionNumber"`
}

// wireState is a JobExecutionState.
type wireState struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

// request holds the fields of every device request; each operation reads
// its own.
type request struct {
	ClientToken              string            `json:"clientToken"`
	Status                   string            `json:"status"`
	StatusDetails            map[string]string `json:"statusDetails"`
	ExpectedVersion          *int64            `json:"expectedVersion"`
	ExecutionNumber          *int64            `json:"executionNumber"`
	IncludeJobDocument       *bool             `json:"includeJobDocument"`
	IncludeJobExecutionState bool              `json:"includeJobExecutionState"`
	StepTimeoutInMinutes     *int64            `json:"stepTimeoutInMinutes"`
}

type pendingResponse struct {
	InProgressJobs []wireSummary `json:"inProgressJobs"`
	QueuedJobs     []wireSummary `json:"queuedJobs"`
	Timestamp      int64         `json:"timestamp"`
	ClientToken    string        `json:"clientToken,omitempty"`
}

type executionResponse struct {
	Execution   *wireExecution `json:"execution,omitempty"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

type updateResponse struct {
	ExecutionState *wireState      `json:"executionState,omitempty"`
	JobDocument    json.RawMessage `json:"jobDocument,omitempty"`
	Timestamp      int64           `json:"timestamp"`
	ClientToken    string          `json:"clientToken,omitempty"`
}

type errorResponse struct {
	Code           string     `json:"code"`
	Message        string     `json:"message"`
	ClientToken    string     `json:"clientToken,omitempty"`
	Timestamp      int64      `json:"timestamp"`
	ExecutionState *wireState `json:"executionState,omitempty"`
}

type notifyPayload struct {
	Timestamp int64                    `json:"timestamp"`
	Jobs      map[string][]wireSummary `json:"jobs"`
}

type notifyNextPayload struct {
	Timestamp int64          `json:"timestamp"`
	Execution *wireExecution `json:"execution,omitempty"`
}

// executionEvent is the body of $aws/events/jobExecution/{jobId}/{operation}.
type executionEvent struct {
	EventType     string            `json:"eventType"`
	EventID       string            `json:"eventId"`
	Timestamp     int64             `json:"timestamp"`
	Operation     string            `json:"operation"`
	JobID         string            `json:"jobId"`
	ThingArn      string            `json:"thingArn"`
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
}

// jobEvent is the body of $aws/events/job/{jobId}/{operation}.
type jobEvent struct {
	EventType       string `json:"eventType"`
	EventID         string `json:"eventId"`
	Timestamp       int64  `json:"timestamp"`
	Operation       string `json:"operation"`
	JobID           string `json:"jobId"`
	Status          string `json:"status"`
	TargetSelection string `json:"targetSelection"`
}

// Rejection codes (aws-iot-protocol.md §1.6).
const (
	codeInvalidTopic           = "InvalidTopic"
	codeInvalidJSON            = "InvalidJson"
	codeInvalidRequest         = "InvalidRequest"
	codeInvalidStateTransition = "InvalidStateTransition"
	codeResourceNotFound       = "ResourceNotFound"
	codeVersionMismatch        = "VersionMismatch"
	codeTerminalStateReached   = "TerminalStateReached"
	codeInternalError          = "InternalError"
)

// rejection is a device request refused with an AWS error code.
type rejection struct {
	code    string
	message string
	state   *wireState
}

func (r *rejection) Error() string { return r.code + ": " + r.message }

func reject(code, message string) *rejection { return &rejection{code: code, message: message} }

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (e Execution) wire(document string) *wireExecution {
	w := &wireExecution{
		JobID: e.JobID, ThingName: e.ThingName, Status: e.Status, StatusDetails: e.StatusDetails,
		QueuedAt: epoch(e.QueuedAt), StartedAt: epoch(e.StartedAt), LastUpdatedAt: epoch(e.LastUpdatedAt),
		VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber,
	}
	if document != "" {
		w.JobDocument = json.RawMessage(document)
	}
	return w
}

func (e Execution) summary() wireSummary {
	return wireSummary{
		JobID: e.JobID, QueuedAt: epoch(e.QueuedAt), StartedAt: epoch(e.StartedAt), LastUpdatedAt: epoch(e.LastUpdatedAt),
		VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber,
	}
}

func (e Execution) state() *wireState {
	return &wireState{Status: e.Status, StatusDetails: e.StatusDetails, VersionNumber: e.VersionNumber}
}
