package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
)

// A tree is a JSON object decoded with json.Number for numbers: its values
// are nil, bool, json.Number, string, []any and map[string]any. A tree is
// never changed once built; functions that derive one from another share
// the unchanged parts.

// toTree turns v (anything encoding/json encodes as an object or null) into
// a tree. Null members are left out: in a shadow, null means "remove".
func toTree(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeTree(raw)
}

// decodeTree decodes a JSON object (or null or nothing: an empty tree).
func decodeTree(raw []byte) (map[string]any, error) {
	t := map[string]any{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&t); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if t == nil { // it was null
		t = map[string]any{}
	}
	dropNulls(t)
	return t, nil
}

// dropNulls removes the null members of t and of the objects in it (not
// inside arrays, which are opaque values).
func dropNulls(t map[string]any) {
	for k, v := range t {
		switch v := v.(type) {
		case nil:
			delete(t, k)
		case map[string]any:
			dropNulls(v)
		}
	}
}

// diffTree returns the JSON merge patch that turns from into to in a
// shadow: the members of to that from lacks or holds with another value
// (for two objects, only their differing members, recursively), and null
// for the members of from that to lacks. It returns an empty map when the
// trees are equal.
func diffTree(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k, tv := range to {
		fv, ok := from[k]
		fm, fIsObj := fv.(map[string]any)
		tm, tIsObj := tv.(map[string]any)
		switch {
		case !ok:
			patch[k] = tv
		case fIsObj && tIsObj:
			if sub := diffTree(fm, tm); len(sub) > 0 {
				patch[k] = sub
			}
		case !equalValue(fv, tv):
			patch[k] = tv
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	return patch
}

// mergeTree applies patch to base as the shadow service does: a null
// member removes the key, an object merges into an object (or into nothing
// when base holds something else), anything else (arrays included)
// replaces. base is not changed.
func mergeTree(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, pv := range patch {
		switch pv := pv.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			under, _ := out[k].(map[string]any)
			out[k] = mergeTree(under, pv)
		default:
			out[k] = pv
		}
	}
	return out
}

// equalValue reports whether two tree values are equal; numbers compare by
// value (1 and 1.0 are equal, large integers exactly).
func equalValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equalValue(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && equalNumber(a, b)
	default: // nil, bool, string
		return a == b
	}
}

// equalNumber compares two JSON numbers: as integers when both are, as
// float64 otherwise.
func equalNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	ai, aErr := strconv.ParseInt(string(a), 10, 64)
	bi, bErr := strconv.ParseInt(string(b), 10, 64)
	if aErr == nil && bErr == nil {
		return ai == bi
	}
	af, aErr := strconv.ParseFloat(string(a), 64)
	bf, bErr := strconv.ParseFloat(string(b), 64)
	return aErr == nil && bErr == nil && af == bf
}
