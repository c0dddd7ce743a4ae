package jobs

import (
	"encoding/json"
	"fmt"
	"sync"
)

// state is what the Engine persists, as JSON:
//
//	{"jobId":"job-1","executionNumber":1,"versionNumber":2,"operation":"rotate-certificate"}
//
// before a handler runs (versionNumber as of that moment), and with
//
//	"outcome":{"status":"SUCCEEDED","statusDetails":{"step":"committed"}}
//
// added once the handler has returned and until the cloud has accepted (or
// refused for good) the terminal report. Nothing in flight is written as {}.
type state struct {
	JobID           string   `json:"jobId,omitempty"`
	ExecutionNumber int64    `json:"executionNumber,omitempty"`
	VersionNumber   int64    `json:"versionNumber,omitempty"`
	Operation       string   `json:"operation,omitempty"`
	Outcome         *outcome `json:"outcome,omitempty"`
}

// outcome is a terminal report not yet accepted by the cloud.
type outcome struct {
	Status        Status            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
}

// decodeState parses persisted state; empty data is the zero state.
func decodeState(data []byte) (state, error) {
	var s state
	if len(data) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return state{}, fmt.Errorf("decode: %w", err)
	}
	if s.JobID == "" && s.Outcome != nil {
		return state{}, fmt.Errorf("outcome %s without a jobId", s.Outcome.Status)
	}
	if s.Outcome != nil && !s.Outcome.Status.Terminal() {
		return state{}, fmt.Errorf("outcome status %q is not terminal", s.Outcome.Status)
	}
	return s, nil
}

// memPersister keeps state in memory; the Engine uses it when
// EngineOptions.Persister is nil.
type memPersister struct {
	mu   sync.Mutex // guards data
	data []byte
}

// Read implements Persister.
func (m *memPersister) Read() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data, nil
}

// Write implements Persister.
func (m *memPersister) Write(data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), data...)
	return nil
}
