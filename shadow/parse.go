package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The device-side parsers of what the service sends. They accept fields
// they do not know (the service may add some) but refuse a document whose
// known fields have the wrong shape, so that callers never see a "desired"
// that is a string or a negative version.

// parseDocument parses the accepted reply of a get or an update.
func parseDocument(payload []byte) (*Document, error) {
	if err := checkObject("document", payload); err != nil {
		return nil, err
	}
	var d Document
	if err := json.Unmarshal(payload, &d); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	for _, s := range []struct {
		name string
		raw  json.RawMessage
	}{{"desired", d.State.Desired}, {"reported", d.State.Reported}, {"delta", d.State.Delta}} {
		if s.raw != nil && string(s.raw) != "null" {
			if err := checkObject("state."+s.name, s.raw); err != nil {
				return nil, err
			}
		}
	}
	if string(d.Metadata) == "null" {
		d.Metadata = nil
	}
	if d.Metadata != nil {
		if err := checkObject("metadata", d.Metadata); err != nil {
			return nil, err
		}
	}
	if d.Version < 0 {
		return nil, fmt.Errorf("document: version %d is negative", d.Version)
	}
	return &d, nil
}

// parseDelta parses a message of the update/delta topic. Its state must be
// an object and its version positive: without a version a delta cannot be
// ordered.
func parseDelta(payload []byte) (*Delta, error) {
	if err := checkObject("delta", payload); err != nil {
		return nil, err
	}
	var d Delta
	if err := json.Unmarshal(payload, &d); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if d.State == nil || string(d.State) == "null" {
		return nil, errors.New("delta: no state")
	}
	if err := checkObject("delta state", d.State); err != nil {
		return nil, err
	}
	if string(d.Metadata) == "null" {
		d.Metadata = nil
	}
	if d.Metadata != nil {
		if err := checkObject("delta metadata", d.Metadata); err != nil {
			return nil, err
		}
	}
	if d.Version <= 0 {
		return nil, fmt.Errorf("delta: version %d: want a positive version", d.Version)
	}
	return &d, nil
}

// replyHead is what every reply may carry whatever its topic: the token
// that pairs it with a request and, for accepted replies, the version.
type replyHead struct {
	ClientToken string `json:"clientToken"`
	Version     int64  `json:"version"`
}

// documentsMessage is the part of an update/documents message the client
// uses: the version of the current document.
type documentsMessage struct {
	Current *struct {
		Version int64 `json:"version"`
	} `json:"current"`
}

// checkObject reports whether raw is a JSON object (leading and trailing
// whitespace allowed); what names it in the error.
func checkObject(what string, raw []byte) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%s is not a JSON object", what)
	}
	return nil
}
