package jobs

import (
	"context"
	"encoding/json"
)

// MQTT is what the jobs client needs from a connection. agent/mqttconn.Conn
// satisfies it. Subscribe must remember the subscription across reconnects;
// messages on reply topics that arrive without a subscription (AWS sends
// accepted/rejected replies to the requester unsolicited) are handed to the
// client by the caller through Client.HandleMessage.
type MQTT interface {
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	Subscribe(ctx context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error
}

// Status is a job execution status.
type Status string

// Job execution statuses (aws-iot-protocol.md §1.7).
const (
	StatusQueued     Status = "QUEUED"
	StatusInProgress Status = "IN_PROGRESS"
	StatusSucceeded  Status = "SUCCEEDED"
	StatusFailed     Status = "FAILED"
	StatusTimedOut   Status = "TIMED_OUT"
	StatusRejected   Status = "REJECTED"
	StatusRemoved    Status = "REMOVED"
	StatusCanceled   Status = "CANCELED"
)

// Terminal reports whether s is a terminal status.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusTimedOut, StatusRejected, StatusRemoved, StatusCanceled:
		return true
	}
	return false
}

// Execution is a JobExecution as the Jobs service sends it over MQTT.
type Execution struct {
	// JobID names the job.
	JobID string `json:"jobId"`
	// ThingName is the thing the execution runs on.
	ThingName string `json:"thingName,omitempty"`
	// JobDocument is the job document (a JSON object over MQTT); nil when
	// the request asked to leave it out.
	JobDocument json.RawMessage `json:"jobDocument,omitempty"`
	// Status is the execution's status.
	Status Status `json:"status"`
	// StatusDetails are its details; nil when it has none.
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	// QueuedAt, StartedAt (0 until started) and LastUpdatedAt are in
	// seconds since the epoch.
	QueuedAt      int64 `json:"queuedAt,omitempty"`
	StartedAt     int64 `json:"startedAt,omitempty"`
	LastUpdatedAt int64 `json:"lastUpdatedAt,omitempty"`
	// VersionNumber goes up by one with every accepted update; an update's
	// expectedVersion must equal it.
	VersionNumber int64 `json:"versionNumber"`
	// ExecutionNumber tells apart the executions of one job on one thing.
	ExecutionNumber int64 `json:"executionNumber,omitempty"`
}

// Result is how a Handler ends an execution.
type Result struct {
	// Status is SUCCEEDED, FAILED or REJECTED.
	Status Status
	// Details become the execution's statusDetails (≤ 10 pairs, values
	// ≤ 1024 characters; the engine trims what does not fit).
	Details map[string]string
	// OnReported, if set, is called once the terminal status has been
	// accepted by the cloud (err nil) or has been given up on (err set), e.g.
	// to delete an old key only after the cloud has seen SUCCEEDED. It is
	// called from the Engine's goroutine with Run's context and should not
	// block for long. A function does not survive a restart: for an
	// outcome saved by an earlier run of thingd and delivered after the
	// restart, the Engine calls the handler's Reported instead, if the
	// handler is a ReportObserver.
	OnReported func(ctx context.Context, err error)
}

// Progress lets a Handler report IN_PROGRESS step details while it works.
type Progress interface {
	// Step sets statusDetails (IN_PROGRESS) on the execution. An error means
	// the cloud did not accept it; handlers usually go on regardless.
	Step(ctx context.Context, details map[string]string) error
}

// Handler runs the executions of one job document operation.
type Handler interface {
	// Handle runs ex to a terminal result; ex.JobDocument is the job
	// document. Handle must return (never panic; the Engine reports a panic
	// as FAILED) and must honour ctx, which is cancelled when the Engine
	// stops or the execution ends in the cloud.
	Handle(ctx context.Context, ex Execution, p Progress) Result
}

// Resumer is implemented by a Handler that can take over an execution that
// was IN_PROGRESS when thingd stopped. Without it the engine reports such an
// execution FAILED with a reason saying the agent restarted.
type Resumer interface {
	Resume(ctx context.Context, ex Execution, p Progress) Result
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ex Execution, p Progress) Result

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, ex Execution, p Progress) Result {
	return f(ctx, ex, p)
}

// Persister keeps the engine's small state (the in-flight execution and an
// undelivered terminal report) across restarts. Write must be atomic.
// Read returns (nil, nil) when nothing was written yet.
type Persister interface {
	Read() ([]byte, error)
	Write(data []byte) error
}
