package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the Jobs device API (aws-iot-protocol.md §1.8).
const (
	MaxThingNameLen         = 128   // thing name: 1–128 of [a-zA-Z0-9:_-]
	MaxJobIDLen             = 64    // job id: 1–64 of [a-zA-Z0-9_-]
	MaxStatusDetails        = 10    // statusDetails pairs
	MaxStatusDetailKeyLen   = 128   // key: 1–128 of [a-zA-Z0-9:_-]
	MaxStatusDetailValueLen = 1024  // value: 1–1024 characters, no control characters
	MaxStepTimeoutMinutes   = 10080 // stepTimeoutInMinutes: 1–10080 (7 days)
	DefaultMaxDocumentBytes = 32768 // job document size limit
)

// idChar reports whether r may appear in a job id; withColon also allows ':'
// (thing names and statusDetails keys).
func idChar(r rune, withColon bool) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '_' || r == '-' || withColon && r == ':'
}

func checkName(what, s string, max int, withColon bool) error {
	pattern := "[a-zA-Z0-9_-]"
	if withColon {
		pattern = "[a-zA-Z0-9:_-]"
	}
	if len(s) == 0 || len(s) > max {
		return fmt.Errorf("%s %q: must be 1 to %d characters of %s", what, s, max, pattern)
	}
	for _, r := range s {
		if !idChar(r, withColon) {
			return fmt.Errorf("%s %q: character %q is not one of %s", what, s, r, pattern)
		}
	}
	return nil
}

// ValidateJobID reports whether id is a valid job id (1–64 of
// [a-zA-Z0-9_-]). NextJobID is not; callers that allow it check for it.
func ValidateJobID(id string) error { return checkName("job id", id, MaxJobIDLen, false) }

// ValidateThingName reports whether name is a valid thing name (1–128 of
// [a-zA-Z0-9:_-]).
func ValidateThingName(name string) error {
	return checkName("thing name", name, MaxThingNameLen, true)
}

// valueRune reports whether r may appear in a statusDetails value: anything
// but the Unicode "Other" categories (control, format, private use,
// surrogate, unassigned), i.e. AWS's [^\p{C}].
func valueRune(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// ValidateStatusDetails checks d against the service's limits: at most 10
// pairs, keys 1–128 of [a-zA-Z0-9:_-], values 1–1024 characters of valid
// UTF-8 with no control (Unicode "Other") characters.
func ValidateStatusDetails(d map[string]string) error {
	if len(d) > MaxStatusDetails {
		return fmt.Errorf("statusDetails has %d pairs, more than %d", len(d), MaxStatusDetails)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if err := checkName("statusDetails key", k, MaxStatusDetailKeyLen, true); err != nil {
			errs = append(errs, err)
			continue
		}
		v := d[k]
		if n := utf8.RuneCountInString(v); n == 0 || n > MaxStatusDetailValueLen {
			errs = append(errs, fmt.Errorf("statusDetails[%q]: value has %d characters, want 1 to %d", k, n, MaxStatusDetailValueLen))
			continue
		}
		if !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("statusDetails[%q]: value is not valid UTF-8", k))
			continue
		}
		for i, r := range v {
			if !valueRune(r) {
				errs = append(errs, fmt.Errorf("statusDetails[%q]: value has a control character %q at byte %d", k, r, i))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// TrimStatusDetails returns a copy of d that ValidateStatusDetails accepts:
// invalid key characters become '_', keys are cut to 128 characters, control
// characters in values become spaces, values are cut to 1024 characters
// (ending in "…"), empty keys and values are dropped, and at most 10 pairs
// are kept ("reason" and "step" first, then in key order). It returns nil
// when nothing is left.
func TrimStatusDetails(d map[string]string) map[string]string {
	if len(d) == 0 {
		return nil
	}
	rank := func(k string) int {
		switch k {
		case "reason":
			return 0
		case "step":
			return 1
		}
		return 2
	}
	keys := slices.Collect(maps.Keys(d))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	out := make(map[string]string, min(len(d), MaxStatusDetails))
	for _, k := range keys {
		if len(out) == MaxStatusDetails {
			break
		}
		nk := trimKey(k)
		if _, dup := out[nk]; dup || nk == "" {
			continue
		}
		if nv := trimValue(d[k]); nv != "" {
			out[nk] = nv
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func trimKey(k string) string {
	k = strings.Map(func(r rune) rune {
		if idChar(r, true) {
			return r
		}
		return '_'
	}, k)
	if len(k) > MaxStatusDetailKeyLen { // all ASCII now
		k = k[:MaxStatusDetailKeyLen]
	}
	return k
}

func trimValue(v string) string {
	v = strings.Map(func(r rune) rune {
		if valueRune(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(v, "\uFFFD"))
	if utf8.RuneCountInString(v) <= MaxStatusDetailValueLen {
		return v
	}
	r := []rune(v)
	return string(r[:MaxStatusDetailValueLen-1]) + "…"
}
