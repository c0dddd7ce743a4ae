package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// State values are what encoding/json decodes with UseNumber: map[string]any
// for objects, []any for arrays, string, json.Number, bool and nil. Numbers
// stay json.Number so that a document comes back with the digits it was
// sent with.
//
// Metadata mirrors the state it describes: a map for an object, a slice (one
// entry per element) for an array and a stamp for any other value.

// stamp is the metadata of a leaf: the time it was last written, in epoch
// seconds. It encodes as {"timestamp": T}.
type stamp int64

// MarshalJSON encodes the stamp as AWS does.
func (s stamp) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"timestamp":%d}`, int64(s)), nil
}

// decodeJSON parses one JSON value, keeping numbers as json.Number. The
// caller has checked json.Valid.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// marshal encodes v compactly without HTML escaping (AWS returns documents
// as they were sent). Documents are plain values, which always encode.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("shadow: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// sectionBytes is how much a state section counts toward the document size
// limit: the length of its compact JSON, 0 when absent.
func sectionBytes(section map[string]any) int {
	if section == nil {
		return 0
	}
	return len(marshal(section))
}

// merge applies an update's section (patch) to a stored section and returns
// the result, which shares no map with dst that it changed: null removes a
// key, an object is merged key by key, anything else (arrays included)
// replaces the value whole. An object left empty is removed, so stored
// state never holds empty objects; nil stands for an empty section.
func merge(dst, patch map[string]any) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = make(map[string]any, len(patch))
	}
	for k, p := range patch {
		switch pv := p.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			old, _ := out[k].(map[string]any)
			if m := merge(old, pv); m != nil {
				out[k] = m
			} else {
				delete(out, k)
			}
		default:
			out[k] = pv
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// metaOf returns the metadata of a value written at ts: a stamp per leaf
// (null included), maps for objects, one entry per element for arrays.
func metaOf(v any, ts stamp) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, c := range x {
			m[k] = metaOf(c, ts)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, c := range x {
			s[i] = metaOf(c, ts)
		}
		return s
	}
	return ts
}

// mergeMeta returns the metadata of state, the result of merging patch into
// a section whose metadata was old: what patch wrote gets ts, the rest keeps
// its old timestamps.
func mergeMeta(state, old, patch map[string]any, ts stamp) map[string]any {
	if state == nil {
		return nil
	}
	out := make(map[string]any, len(state))
	for k, v := range state {
		p, touched := patch[k]
		if !touched {
			if m, ok := old[k]; ok {
				out[k] = m
				continue
			}
			p = v // metadata missing from a damaged record: as if written now
		}
		sub, isObj := v.(map[string]any)
		pm, patchIsObj := p.(map[string]any)
		if isObj && patchIsObj {
			oldSub, _ := old[k].(map[string]any) // nil if it was a leaf or an array
			out[k] = mergeMeta(sub, oldSub, pm, ts)
		} else {
			out[k] = metaOf(v, ts)
		}
	}
	return out
}

// loadMeta rebuilds the metadata of a stored value from its JSON form (raw,
// as decoded), guided by the value's shape; missing timestamps read as 0.
func loadMeta(v, raw any) any {
	switch x := v.(type) {
	case map[string]any:
		r, _ := raw.(map[string]any)
		m := make(map[string]any, len(x))
		for k, c := range x {
			m[k] = loadMeta(c, r[k])
		}
		return m
	case []any:
		r, _ := raw.([]any)
		s := make([]any, len(x))
		for i, c := range x {
			var ri any
			if i < len(r) {
				ri = r[i]
			}
			s[i] = loadMeta(c, ri)
		}
		return s
	}
	r, _ := raw.(map[string]any)
	n, _ := r["timestamp"].(json.Number)
	t, _ := n.Int64()
	return stamp(t)
}

// delta returns the desired values that reported does not have equal: for
// objects in both, only the differing leaves (with their path); anything
// else (arrays included) whole. nil means no difference.
func delta(desired, reported map[string]any) map[string]any {
	var out map[string]any
	for k, d := range desired {
		var diff any
		r, ok := reported[k]
		dm, dIsObj := d.(map[string]any)
		rm, rIsObj := r.(map[string]any)
		switch {
		case !ok:
			diff = d
		case dIsObj && rIsObj:
			if sub := delta(dm, rm); sub != nil {
				diff = sub
			}
		case !equal(d, r):
			diff = d
		}
		if diff != nil {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = diff
		}
	}
	return out
}

// project returns the part of metadata meta (of desired) that describes the
// delta d: delta metadata equals the desired metadata of its values.
func project(d, meta map[string]any) map[string]any {
	if d == nil {
		return nil
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		sub, isObj := v.(map[string]any)
		sm, metaIsObj := meta[k].(map[string]any)
		if isObj && metaIsObj {
			out[k] = project(sub, sm)
		} else {
			out[k] = meta[k]
		}
	}
	return out
}

// equal reports whether two state values are equal, numbers compared by
// value (1, 1.0 and 1e0 are equal).
func equal(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numberEqual(x, y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// numberEqual compares two JSON numbers exactly, in decimal.
func numberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	ca, oka := canonicalNumber(string(a))
	cb, okb := canonicalNumber(string(b))
	return oka && okb && ca == cb
}

// canonicalNumber rewrites a JSON number as sign, significant digits and
// exponent ("-12e3" for -12000, "0" for any zero), so that equal values get
// equal strings. ok is false for what is not a JSON number or has an
// exponent too large to handle.
func canonicalNumber(s string) (string, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	var exp int64
	if hasExp {
		var err error
		if exp, err = strconv.ParseInt(expPart, 10, 32); err != nil {
			return "", false
		}
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	exp -= int64(len(frac))
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	digits = strings.TrimLeft(digits, "0")
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	if trimmed == "" {
		return "0", true
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + strconv.FormatInt(exp, 10), true
}

// depth is the nesting depth of a value: 0 for a scalar, one more than its
// deepest member for an object or array.
func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			d = max(d, depth(c))
		}
	case []any:
		for _, c := range x {
			d = max(d, depth(c))
		}
	default:
		return 0
	}
	return d + 1
}

// nullInArray reports whether an array inside v holds a null, at any depth.
func nullInArray(v any, inArray bool) bool {
	switch x := v.(type) {
	case nil:
		return inArray
	case map[string]any:
		for _, c := range x {
			if nullInArray(c, inArray) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if nullInArray(c, true) {
				return true
			}
		}
	}
	return false
}

// update is a parsed /update request.
type update struct {
	// state holds the sections present in the request, as sent: a nil
	// value (JSON null) deletes the section, a map is merged into it.
	state       map[string]any
	clientToken string
	version     *int64
}

func (u update) section(name string) (patch map[string]any, present bool) {
	v, present := u.state[name]
	patch, _ = v.(map[string]any)
	return patch, present
}

// Section names.
const (
	desiredKey  = "desired"
	reportedKey = "reported"
)

// tokenOf returns the clientToken of a request payload (a JSON object), or
// a rejection if it is not a string of at most 64 bytes. Anything that is
// not a JSON object has no token.
func tokenOf(obj map[string]any) (string, *Error) {
	v, ok := obj["clientToken"]
	if !ok {
		return "", nil
	}
	tok, isString := v.(string)
	if !isString || len(tok) > MaxClientTokenBytes {
		return "", errInvalidClientToken
	}
	return tok, nil
}

// decodeObject parses a request payload that must be UTF-8 JSON.
func decodeObject(payload []byte) (map[string]any, *Error) {
	if !utf8.Valid(payload) {
		return nil, errUnsupportedEncoding
	}
	if !json.Valid(payload) {
		return nil, errInvalidJSON
	}
	v, err := decodeJSON(payload)
	obj, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, errInvalidJSON
	}
	return obj, nil
}

// parseUpdate parses and checks an /update request against the limits.
// The returned update carries the clientToken even with a rejection, when
// it could be read.
func parseUpdate(payload []byte, lim limits) (update, *Error) {
	var u update
	obj, rej := decodeObject(payload)
	if rej != nil {
		return u, rej
	}
	if u.clientToken, rej = tokenOf(obj); rej != nil {
		return u, rej
	}
	if v, ok := obj["version"]; ok && v != nil {
		n, isNumber := v.(json.Number)
		ver, err := n.Int64()
		if !isNumber || err != nil || ver < 0 {
			return u, errInvalidVersion
		}
		u.version = &ver
	}
	st, ok := obj["state"]
	switch s := st.(type) {
	case nil:
		if !ok {
			return u, errMissingState
		}
		u.state = map[string]any{desiredKey: nil, reportedKey: nil} // "state": null clears both
	case map[string]any:
		u.state = s
	default:
		return u, errStateNotObject
	}
	if rej := checkSections(u.state); rej != nil {
		return u, rej
	}
	if nullInArray(u.state, false) {
		return u, errInvalidJSON
	}
	if depth(u.state) > lim.maxDepth {
		return u, errTooDeep(lim.maxDepth)
	}
	desired, _ := u.section(desiredKey)
	reported, _ := u.section(reportedKey)
	if sectionBytes(desired)+sectionBytes(reported) > lim.maxBytes {
		return u, errTooLarge
	}
	return u, nil
}

// checkSections checks that state holds only desired and reported, each an
// object or null.
func checkSections(state map[string]any) *Error {
	for _, k := range slices.Sorted(maps.Keys(state)) {
		var rej *Error
		switch k {
		case desiredKey:
			rej = errDesiredNotObject
		case reportedKey:
			rej = errReportedNotObject
		default:
			return errInvalidNode(k)
		}
		switch state[k].(type) {
		case nil, map[string]any:
		default:
			return rej
		}
	}
	return nil
}
