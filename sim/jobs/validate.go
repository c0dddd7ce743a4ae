package jobs

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/thingd/thingd/sim/registry"
)

var (
	jobIDRE     = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	detailKeyRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
)

// ValidateJobID checks the AWS job id pattern [a-zA-Z0-9_-]{1,64}.
func ValidateJobID(id string) error {
	if !jobIDRE.MatchString(id) {
		return fmt.Errorf("%w: job id %q must match [a-zA-Z0-9_-]{1,64}", registry.ErrInvalid, id)
	}
	return nil
}

// ValidateDocument checks a job document: a JSON object of at most 32768
// bytes.
func ValidateDocument(doc string) error {
	if doc == "" {
		return fmt.Errorf("%w: document is required", registry.ErrInvalid)
	}
	if len(doc) > MaxDocumentBytes {
		return fmt.Errorf("%w: document is %d bytes, more than the %d bytes AWS IoT Jobs allows", registry.ErrInvalid, len(doc), MaxDocumentBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		return fmt.Errorf("%w: document is not a JSON object: %v", registry.ErrInvalid, err)
	}
	return nil
}

// ValidateStatusDetails checks statusDetails against the Jobs limits: at
// most 10 pairs, keys matching [a-zA-Z0-9:_-]{1,128}, values of 1 to 1024
// characters without control characters.
func ValidateStatusDetails(details map[string]string) error {
	if len(details) > MaxStatusDetails {
		return fmt.Errorf("statusDetails has %d entries, at most %d are allowed", len(details), MaxStatusDetails)
	}
	keys := make([]string, 0, len(details))
	for k := range details {
		keys = append(keys, k)
	}
	slices.Sort(keys) // report the same key first every time
	for _, k := range keys {
		v := details[k]
		if !detailKeyRE.MatchString(k) {
			return fmt.Errorf("statusDetails key %q must match [a-zA-Z0-9:_-]{1,128}", k)
		}
		if n := utf8.RuneCountInString(v); n < 1 || n > MaxDetailValueChars {
			return fmt.Errorf("statusDetails value of %q is %d characters; it must be 1 to %d", k, n, MaxDetailValueChars)
		}
		for _, r := range v {
			if unicode.Is(unicode.C, r) || r == utf8.RuneError {
				return fmt.Errorf("statusDetails value of %q contains the control or invalid character %U", k, r)
			}
		}
	}
	return nil
}

// validateTimeout checks a stepTimeoutInMinutes or
// inProgressTimeoutInMinutes value; clear allows -1.
func validateTimeout(name string, minutes int64, clear bool) error {
	if minutes >= 1 && minutes <= MaxTimeoutMinutes || clear && minutes == -1 {
		return nil
	}
	if clear {
		return fmt.Errorf("%s %d must be -1 or between 1 and %d", name, minutes, MaxTimeoutMinutes)
	}
	return fmt.Errorf("%s %d must be between 1 and %d", name, minutes, MaxTimeoutMinutes)
}

// deviceStatus reports whether a device may set status with UpdateJobExecution.
func deviceStatus(status string) bool {
	switch status {
	case StatusInProgress, StatusSucceeded, StatusFailed, StatusRejected:
		return true
	}
	return false
}
