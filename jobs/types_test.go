package jobs

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The field names below are copied from aws-iot-protocol.md §1, not from
// the structs: a wrong tag must fail here.

func TestRequestJSON(t *testing.T) {
	no := false
	tests := []struct {
		name string
		req  any
		want string
	}{
		{"get-pending", GetPendingRequest{ClientToken: "t1"}, `{"clientToken":"t1"}`},
		{"start-next empty", StartNextRequest{}, `{}`},
		{"start-next", StartNextRequest{StatusDetails: map[string]string{"step": "s"}, StepTimeoutInMinutes: 30, ClientToken: "t2"},
			`{"statusDetails":{"step":"s"},"stepTimeoutInMinutes":30,"clientToken":"t2"}`},
		{"describe empty", DescribeRequest{}, `{}`},
		{"describe", DescribeRequest{ExecutionNumber: 3, IncludeJobDocument: &no, ClientToken: "t3"},
			`{"executionNumber":3,"includeJobDocument":false,"clientToken":"t3"}`},
		{"update minimal", UpdateRequest{Status: StatusSucceeded}, `{"status":"SUCCEEDED"}`},
		{"update", UpdateRequest{
			Status: StatusInProgress, StatusDetails: map[string]string{"step": "key-generated"}, ExpectedVersion: 2,
			ExecutionNumber: 1, IncludeJobExecutionState: true, IncludeJobDocument: true, StepTimeoutInMinutes: -1, ClientToken: "t4",
		}, `{"status":"IN_PROGRESS","statusDetails":{"step":"key-generated"},"expectedVersion":2,"executionNumber":1,` +
			`"includeJobExecutionState":true,"includeJobDocument":true,"stepTimeoutInMinutes":-1,"clientToken":"t4"}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if string(got) != tt.want {
			t.Errorf("%s: json.Marshal = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestReplyJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		into    any
		want    any
	}{
		{
			name: "get-pending accepted",
			payload: `{"inProgressJobs":[{"jobId":"a","queuedAt":1,"startedAt":2,"lastUpdatedAt":3,"versionNumber":4,"executionNumber":5}],` +
				`"queuedJobs":[{"jobId":"b","queuedAt":6,"lastUpdatedAt":6,"versionNumber":1,"executionNumber":1}],"timestamp":7,"clientToken":"t"}`,
			into: &PendingExecutions{},
			want: &PendingExecutions{
				InProgressJobs: []ExecutionSummary{{JobID: "a", QueuedAt: 1, StartedAt: 2, LastUpdatedAt: 3, VersionNumber: 4, ExecutionNumber: 5}},
				QueuedJobs:     []ExecutionSummary{{JobID: "b", QueuedAt: 6, LastUpdatedAt: 6, VersionNumber: 1, ExecutionNumber: 1}},
				Timestamp:      7, ClientToken: "t",
			},
		},
		{
			name: "start-next accepted",
			payload: `{"execution":{"jobId":"job1","thingName":"dev-1","status":"IN_PROGRESS","statusDetails":{"step":"x"},` +
				`"queuedAt":1517016947,"startedAt":1517016948,"lastUpdatedAt":1517016948,"versionNumber":2,"executionNumber":1,` +
				`"jobDocument":{"operation":"test"}},"timestamp":1517016949,"clientToken":"t"}`,
			into: &executionReply{},
			want: &executionReply{Execution: &Execution{
				JobID: "job1", ThingName: "dev-1", Status: StatusInProgress, StatusDetails: map[string]string{"step": "x"},
				QueuedAt: 1517016947, StartedAt: 1517016948, LastUpdatedAt: 1517016948, VersionNumber: 2, ExecutionNumber: 1,
				JobDocument: json.RawMessage(`{"operation":"test"}`),
			}, Timestamp: 1517016949, ClientToken: "t"},
		},
		{
			name:    "start-next accepted, nothing pending",
			payload: `{"timestamp":1,"clientToken":"t"}`,
			into:    &executionReply{},
			want:    &executionReply{Timestamp: 1, ClientToken: "t"},
		},
		{
			name:    "update accepted",
			payload: `{"executionState":{"status":"SUCCEEDED","statusDetails":{"a":"b"},"versionNumber":3},"jobDocument":{"operation":"x"},"timestamp":1,"clientToken":"t"}`,
			into:    &UpdateAccepted{},
			want: &UpdateAccepted{ExecutionState: &ExecutionState{Status: StatusSucceeded, StatusDetails: map[string]string{"a": "b"}, VersionNumber: 3},
				JobDocument: json.RawMessage(`{"operation":"x"}`), Timestamp: 1, ClientToken: "t"},
		},
		{
			name:    "rejected",
			payload: `{"code":"VersionMismatch","message":"m","clientToken":"t","timestamp":1,"executionState":{"status":"IN_PROGRESS","versionNumber":5}}`,
			into:    &RejectedError{},
			want: &RejectedError{Code: CodeVersionMismatch, Message: "m", ClientToken: "t", Timestamp: 1,
				ExecutionState: &ExecutionState{Status: StatusInProgress, VersionNumber: 5}},
		},
		{
			name:    "notify-next",
			payload: `{"timestamp":1517016948,"execution":{"jobId":"job1","status":"QUEUED","queuedAt":1517016947,"lastUpdatedAt":1517016947,"versionNumber":1,"executionNumber":1,"jobDocument":{"operation":"test"}}}`,
			into:    &NextNotification{},
			want: &NextNotification{Timestamp: 1517016948, Execution: &Execution{JobID: "job1", Status: StatusQueued, QueuedAt: 1517016947,
				LastUpdatedAt: 1517016947, VersionNumber: 1, ExecutionNumber: 1, JobDocument: json.RawMessage(`{"operation":"test"}`)}},
		},
		{
			name:    "notify-next, queue empty",
			payload: `{"timestamp":1517189551}`,
			into:    &NextNotification{},
			want:    &NextNotification{Timestamp: 1517189551},
		},
		{
			name:    "notify",
			payload: `{"timestamp":1517016948,"jobs":{"QUEUED":[{"jobId":"job1","queuedAt":1517016947,"lastUpdatedAt":1517016947,"executionNumber":1,"versionNumber":1}]}}`,
			into:    &ListNotification{},
			want: &ListNotification{Timestamp: 1517016948, Jobs: map[Status][]ExecutionSummary{
				StatusQueued: {{JobID: "job1", QueuedAt: 1517016947, LastUpdatedAt: 1517016947, ExecutionNumber: 1, VersionNumber: 1}},
			}},
		},
	}
	for _, tt := range tests {
		if err := json.Unmarshal([]byte(tt.payload), tt.into); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, tt.into); diff != "" {
			t.Errorf("%s: json.Unmarshal mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestRejectedErrorMessage(t *testing.T) {
	tests := []struct {
		err  RejectedError
		want string
	}{
		{RejectedError{Code: CodeVersionMismatch, Message: "expected 2", Operation: OpUpdate, JobID: "job-1"},
			"jobs: update job-1 rejected: VersionMismatch: expected 2"},
		{RejectedError{Code: CodeRequestThrottled, Operation: OpStartNext}, "jobs: start-next rejected: RequestThrottled"},
		{RejectedError{Code: CodeInternalError, Message: "x"}, "jobs: request rejected: InternalError: x"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
