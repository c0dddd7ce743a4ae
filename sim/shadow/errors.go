package shadow

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
)

// Limits (aws-iot-protocol.md §2.7).
const (
	// DefaultMaxStateBytes is the size limit of a shadow's state: the compact
	// JSON of desired plus that of reported, metadata excluded.
	DefaultMaxStateBytes = 8192
	// DefaultMaxDepth is the nesting limit of an update's state node,
	// counting the state object itself as level 1 and every object or
	// array inside it as one more: five levels of keys under desired or
	// reported (aws-iot-protocol.md §2.7 lists 5, 6 and 8; see the package
	// documentation).
	DefaultMaxDepth = 6
	// MaxClientTokenBytes is the longest clientToken accepted.
	MaxClientTokenBytes = 64
	// MaxShadowNameLength is the longest shadow name.
	MaxShadowNameLength = 64
	// DeletedVersionKept is how long a deleted shadow's version is kept: a
	// shadow created again within it continues the old version sequence,
	// later it starts again at 1.
	DeletedVersionKept = 48 * time.Hour
)

var shadowNameRE = regexp.MustCompile(`^[$a-zA-Z0-9:_-]{1,64}$`)

// ValidateShadowName checks the AWS shadow name pattern [$a-zA-Z0-9:_-]{1,64};
// the empty name is the classic shadow's and is valid.
func ValidateShadowName(name string) error {
	if name != "" && !shadowNameRE.MatchString(name) {
		return fmt.Errorf("shadow name %q must match [$a-zA-Z0-9:_-]{1,64}", name)
	}
	return nil
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("shadow: service closed")

// Error is a refused request, with the HTTP status code and message AWS
// uses (aws-iot-protocol.md §2.6). Over MQTT it becomes the rejected
// document {"code", "message", "timestamp", "clientToken"}.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("shadow: %d %s", e.Code, e.Message) }

func badRequest(msg string) *Error { return &Error{http.StatusBadRequest, msg} }

// The refusals of aws-iot-protocol.md §2.6.
var (
	errInvalidJSON         = badRequest("Invalid JSON")
	errMissingState        = badRequest("Missing required node: state")
	errStateNotObject      = badRequest("State node must be an object")
	errDesiredNotObject    = badRequest("Desired node must be an object")
	errReportedNotObject   = badRequest("Reported node must be an object")
	errInvalidVersion      = badRequest("Invalid version")
	errInvalidClientToken  = badRequest("Invalid clientToken")
	errInvalidShadowName   = badRequest("Invalid shadow name")
	errVersionConflict     = &Error{http.StatusConflict, "Version conflict"}
	errTooLarge            = &Error{http.StatusRequestEntityTooLarge, "The payload exceeds the maximum size allowed"}
	errUnsupportedEncoding = &Error{http.StatusUnsupportedMediaType, "Unsupported documented encoding; supported encoding is UTF-8"}
	errInternal            = &Error{http.StatusInternalServerError, "Internal service failure"}
)

func errInvalidNode(name string) *Error {
	return badRequest(fmt.Sprintf("State contains an invalid node: '%s'", name))
}

func errTooDeep(limit int) *Error {
	return badRequest(fmt.Sprintf("JSON contains too many levels of nesting; maximum is %d", limit))
}

// errNoShadow is the 404 of a shadow that does not exist; a classic
// shadow's name is its thing's name.
func errNoShadow(thing, name string) *Error {
	if name == "" {
		name = thing
	}
	return &Error{http.StatusNotFound, fmt.Sprintf("No shadow exists with name: '%s'", name)}
}

// limits are the service's configured limits.
type limits struct {
	maxDepth int
	maxBytes int
}
