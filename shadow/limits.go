package shadow

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Limits of the Device Shadow service (aws-iot-protocol.md §2.1, §2.7).
const (
	// MaxStateBytes bounds the state of a shadow: desired plus reported, as
	// compact JSON, metadata excluded. The Client checks each update's
	// sections against it; the service also checks the merged document.
	MaxStateBytes = 8192
	// DefaultMaxDepth is the deepest nesting the service accepts inside
	// desired or reported, counting the section object as level 1: in
	// {"a":{"b":1}} "b" is at level 2. Sources disagree (5, 6 or 8); the
	// service's own error says "maximum is 6". See ClientOptions.MaxDepth.
	DefaultMaxDepth = 6
	// MaxThingNameLen: a thing name is 1–128 of [a-zA-Z0-9:_-].
	MaxThingNameLen = 128
	// MaxShadowNameLen: a shadow name is 1–64 of [$a-zA-Z0-9:_-].
	MaxShadowNameLen = 64
)

// ValidateThingName reports whether name is a valid thing name.
func ValidateThingName(name string) error {
	return checkName("thing name", name, MaxThingNameLen, ":_-")
}

// ValidateShadowName reports whether name is a valid name of a named shadow
// (the classic shadow has none).
func ValidateShadowName(name string) error {
	return checkName("shadow name", name, MaxShadowNameLen, "$:_-")
}

// checkName checks that s is 1 to max characters of ASCII letters, digits
// and the punctuation in extra.
func checkName(what, s string, max int, extra string) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%s %q: must be 1 to %d characters of [a-zA-Z0-9%s]", what, s, max, extra)
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if !alnum && !strings.ContainsRune(extra, rune(b)) {
			return fmt.Errorf("%s %q: character %q is not allowed (want [a-zA-Z0-9%s])", what, s, s[i], extra)
		}
	}
	return nil
}

// encodeSection encodes one section of an update (name is "desired" or
// "reported") and checks it. It returns nil for a nil v (section left out).
// A refused section is reported through a reason; err is for a value
// encoding/json cannot encode.
func encodeSection(name string, v any, maxDepth int) (raw json.RawMessage, reason string, err error) {
	if v == nil {
		return nil, "", nil
	}
	raw, err = json.Marshal(v) // also validates and compacts a json.RawMessage
	if err != nil {
		return nil, "", fmt.Errorf("encode %s: %w", name, err)
	}
	if string(raw) == "null" {
		if _, ok := v.(json.RawMessage); ok {
			return raw, "", nil
		}
		return nil, fmt.Sprintf(`%s encodes to null; pass json.RawMessage("null") to remove the section`, name), nil
	}
	if raw[0] != '{' {
		return nil, fmt.Sprintf("%s must be a JSON object, not %.20s", name, raw), nil
	}
	depth, nullInArray := shape(raw)
	if depth > maxDepth {
		return nil, fmt.Sprintf("%s: JSON contains too many levels of nesting (%d); maximum is %d", name, depth, maxDepth), nil
	}
	if nullInArray {
		return nil, name + ": an array contains null, which the service rejects", nil
	}
	return raw, "", nil
}

// shape scans valid compact JSON and returns how deeply objects and arrays
// nest in it (0 for a scalar) and whether an array holds a null element.
func shape(raw []byte) (depth int, nullInArray bool) {
	var open []byte // the containers around the current position
	inString, escaped := false, false
	for _, b := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			open = append(open, b)
			depth = max(depth, len(open))
		case b == '}' || b == ']':
			open = open[:len(open)-1]
		case b == 'n': // outside a string, only null starts with n
			if len(open) > 0 && open[len(open)-1] == '[' {
				nullInArray = true
			}
		}
	}
	return depth, nullInArray
}
