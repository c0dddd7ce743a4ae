package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// MQTT is what the shadow client needs from a connection. agent/mqttconn.Conn
// satisfies it. Subscribe must remember the subscription across reconnects.
// A caller that receives shadow messages some other way (a wider
// subscription, or messages that arrive without one) hands them to
// Client.HandleMessage.
type MQTT interface {
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	Subscribe(ctx context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error
}

// State is the state part of an update request. Each section is a JSON
// object given as a json.RawMessage, a map or any value encoding/json turns
// into an object; only the fields it lists change (nested objects merge, a
// field set to null is removed, an array replaces the whole array). A nil
// section is left out and stays as it is. json.RawMessage("null") removes
// the whole section; any other value that encodes to null (a nil map, a nil
// pointer) is refused, so that a forgotten map cannot wipe the section.
type State struct {
	// Desired is the state the cloud side wants the device to have.
	Desired any
	// Reported is the state the device reports it has.
	Reported any
}

// Document is a shadow document as the service sends it: the accepted reply
// of a get (the whole shadow, with delta) or of an update (only the sections
// and fields the request named).
type Document struct {
	// State holds the sections.
	State DocumentState `json:"state"`
	// Metadata mirrors State with a {"timestamp": T} for every leaf; nil if
	// the reply had none.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Version is the shadow's version after the request; it goes up by one
	// with every accepted update.
	Version int64 `json:"version"`
	// Timestamp is when the reply was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ClientToken is the request's token, echoed.
	ClientToken string `json:"clientToken,omitempty"`
}

// DocumentState holds the sections of a Document. Each is a JSON object,
// JSON null (an update that removed the section) or nil (absent).
type DocumentState struct {
	// Desired is the desired section.
	Desired json.RawMessage `json:"desired,omitempty"`
	// Reported is the reported section.
	Reported json.RawMessage `json:"reported,omitempty"`
	// Delta is set only in get replies, and only when desired has fields
	// whose value differs from reported (see Delta).
	Delta json.RawMessage `json:"delta,omitempty"`
}

// Delta is what the desired state asks for and the reported state does not
// have yet: every desired field whose value differs from reported or is
// missing there, with its full path (arrays compare whole). Each delta
// carries all the differences at its version, not only the latest change,
// so a newer Delta supersedes an older one.
type Delta struct {
	// State is a JSON object with the differing desired fields.
	State json.RawMessage `json:"state"`
	// Metadata holds a {"timestamp": T} for each field of State; nil for a
	// delta taken from a get reply.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Version is the shadow version the delta belongs to.
	Version int64 `json:"version"`
	// Timestamp is when it was sent, in seconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ClientToken is the token of the request that caused it, if known.
	ClientToken string `json:"clientToken,omitempty"`
}

// Errors a request can be tested for with errors.Is.
var (
	// ErrNotFound: the shadow (or the thing) does not exist (code 404).
	ErrNotFound = errors.New("shadow: not found")
	// ErrVersionConflict: the update's expected version is not the
	// shadow's version (code 409).
	ErrVersionConflict = errors.New("shadow: version conflict")
	// ErrInvalidState: the update breaks a rule of the service (size,
	// nesting, null in an array, not an object) and was not sent.
	ErrInvalidState = errors.New("shadow: invalid state document")
)

// Operation names a request of the shadow MQTT API.
type Operation string

// The shadow request operations; the values are the topic segments.
const (
	OpGet    Operation = "get"
	OpUpdate Operation = "update"
	OpDelete Operation = "delete"
)

// ErrorResponse is a rejected reply (the error document on a .../rejected
// topic) returned as an error. errors.Is matches ErrNotFound for code 404
// and ErrVersionConflict for code 409.
type ErrorResponse struct {
	// Code is an HTTP status: 400, 401, 403, 404, 409, 413, 415, 429 or 500
	// (aws-iot-protocol.md §2.6).
	Code int `json:"code"`
	// Message is the service's explanation, e.g. "Version conflict".
	Message string `json:"message,omitempty"`
	// Timestamp is when the reply was sent, in seconds since the epoch; 0
	// if the service left it out.
	Timestamp int64 `json:"timestamp,omitempty"`
	// ClientToken is the request's token, echoed.
	ClientToken string `json:"clientToken,omitempty"`

	// Operation, ThingName and ShadowName (empty for the classic shadow)
	// say which request was rejected; the Client fills them in, the service
	// does not send them.
	Operation  Operation `json:"-"`
	ThingName  string    `json:"-"`
	ShadowName string    `json:"-"`
}

// Error returns e.g. "shadow: update of gw-1 rejected: 409 Version
// conflict"; a named shadow shows as gw-1/name.
func (e *ErrorResponse) Error() string {
	op := string(e.Operation)
	if op == "" {
		op = "request"
	}
	s := fmt.Sprintf("shadow: %s of %s rejected: %d", op, displayName(e.ThingName, e.ShadowName), e.Code)
	if e.Message != "" {
		s += " " + e.Message
	}
	return s
}

// Is reports whether e is ErrNotFound (404) or ErrVersionConflict (409).
func (e *ErrorResponse) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == 404
	case ErrVersionConflict:
		return e.Code == 409
	}
	return false
}

// invalidStateError is an update refused before it was sent.
type invalidStateError struct {
	what   string // "update of gw-1"
	reason string
}

func (e *invalidStateError) Error() string        { return "shadow: " + e.what + ": " + e.reason }
func (e *invalidStateError) Is(target error) bool { return target == ErrInvalidState }

// displayName is how errors and logs name a shadow: the thing name for the
// classic shadow, thing/shadow for a named one. Neither name may contain a
// '/', so this cannot be ambiguous.
func displayName(thing, shadow string) string {
	if shadow == "" {
		return thing
	}
	return thing + "/" + shadow
}
