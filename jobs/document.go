package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
)

// parseJobDocument returns the "operation" of a job document: a JSON object
// of at most maxBytes bytes with a non-empty string field "operation". Its
// errors are sentences for a person (they become the "reason" of a
// REJECTED execution).
func parseJobDocument(doc []byte, maxBytes int) (string, error) {
	if len(doc) == 0 {
		return "", errors.New("the job execution has no job document")
	}
	if len(doc) > maxBytes {
		return "", fmt.Errorf("the job document is %d bytes, more than the %d this device accepts", len(doc), maxBytes)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil || fields == nil {
		return "", errors.New("the job document is not a JSON object")
	}
	raw, ok := fields["operation"]
	if !ok {
		return "", errors.New(`the job document has no "operation" field`)
	}
	var op string
	if err := json.Unmarshal(raw, &op); err != nil {
		return "", errors.New(`the job document's "operation" is not a string`)
	}
	if op == "" {
		return "", errors.New(`the job document's "operation" is empty`)
	}
	return op, nil
}
