package shadow

import (
	"encoding/json"
	"strings"
	"testing"
)

// obj parses a JSON object (or null) for a test table.
func obj(t testing.TB, s string) map[string]any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	m, _ := v.(map[string]any)
	return m
}

// js encodes a state or metadata value as compact JSON, "null" for nil.
func js(v any) string {
	if m, ok := v.(map[string]any); ok && m == nil {
		return "null"
	}
	return string(marshal(v))
}

func TestMerge(t *testing.T) {
	for _, tt := range []struct {
		name, dst, patch, want string
	}{
		{"add keys", `{"a":1}`, `{"b":"x","c":true}`, `{"a":1,"b":"x","c":true}`},
		{"replace a value", `{"a":1,"b":2}`, `{"a":3}`, `{"a":3,"b":2}`},
		{"null deletes a key", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"null on a missing key", `{"a":1}`, `{"z":null}`, `{"a":1}`},
		{"arrays are replaced whole", `{"a":[1,2,3]}`, `{"a":[4]}`, `{"a":[4]}`},
		{"an array replaces an object", `{"a":{"x":1}}`, `{"a":[{"x":2}]}`, `{"a":[{"x":2}]}`},
		{"nested objects merge", `{"a":{"x":1,"y":2}}`, `{"a":{"y":3,"z":4}}`, `{"a":{"x":1,"y":3,"z":4}}`},
		{"deep merge", `{"a":{"b":{"c":1,"d":2}},"e":5}`, `{"a":{"b":{"d":3}}}`, `{"a":{"b":{"c":1,"d":3}},"e":5}`},
		{"nested null", `{"a":{"x":1,"y":2}}`, `{"a":{"x":null}}`, `{"a":{"y":2}}`},
		{"an emptied object is removed", `{"a":{"x":1},"b":1}`, `{"a":{"x":null}}`, `{"b":1}`},
		{"emptied up the tree", `{"a":{"b":{"c":1}},"d":1}`, `{"a":{"b":{"c":null}}}`, `{"d":1}`},
		{"everything removed", `{"a":1}`, `{"a":null}`, `null`},
		{"an object replaces a value", `{"a":1}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{"a value replaces an object", `{"a":{"x":1}}`, `{"a":5}`, `{"a":5}`},
		{"nulls in a new object are dropped", `{}`, `{"a":{"x":null,"y":1}}`, `{"a":{"y":1}}`},
		{"a new object of nulls adds nothing", `null`, `{"a":{"x":null}}`, `null`},
		{"an empty object merges nothing", `{"a":{"x":1}}`, `{"a":{}}`, `{"a":{"x":1}}`},
		{"an empty object removes a value", `{"a":1,"b":2}`, `{"a":{}}`, `{"b":2}`},
		{"empty patch", `{"a":1}`, `{}`, `{"a":1}`},
		{"into nothing", `null`, `{"a":[1,{"b":null}]}`, `{"a":[1,{"b":null}]}`},
		{"numbers keep their digits", `{"a":1}`, `{"a":1.50,"b":12345678901234567890}`, `{"a":1.50,"b":12345678901234567890}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := obj(t, tt.dst)
			before := js(dst)
			if got := js(merge(dst, obj(t, tt.patch))); got != tt.want {
				t.Errorf("merge(%s, %s) = %s, want %s", tt.dst, tt.patch, got, tt.want)
			}
			if after := js(dst); after != before {
				t.Errorf("merge changed its input from %s to %s", before, after)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	for _, tt := range []struct {
		name, desired, reported, want string
	}{
		{"equal", `{"a":1,"b":{"c":"x"}}`, `{"a":1,"b":{"c":"x"}}`, `null`},
		{"missing from reported", `{"a":1,"b":2}`, `{"a":1}`, `{"b":2}`},
		{"reported only is never in it", `{"a":1}`, `{"a":1,"z":9}`, `null`},
		{"different value", `{"a":1,"b":"on"}`, `{"a":1,"b":"off"}`, `{"b":"on"}`},
		{"only the differing leaves, with their path", `{"cfg":{"a":1,"b":2,"c":{"d":1,"e":2}}}`, `{"cfg":{"a":1,"b":3,"c":{"d":1,"e":3}}}`, `{"cfg":{"b":2,"c":{"e":2}}}`},
		{"a nested object missing from reported", `{"cfg":{"a":{"b":1}}}`, `{"cfg":{"x":1}}`, `{"cfg":{"a":{"b":1}}}`},
		{"arrays equal", `{"t":[1,{"a":2}]}`, `{"t":[1,{"a":2}]}`, `null`},
		{"arrays compared whole", `{"t":[1,2,3]}`, `{"t":[1,2,4]}`, `{"t":[1,2,3]}`},
		{"arrays of different length", `{"t":[1]}`, `{"t":[1,1]}`, `{"t":[1]}`},
		{"numbers by value", `{"a":1,"b":100,"c":0,"d":0.5,"e":12.30}`, `{"a":1.0,"b":1e2,"c":-0,"d":5e-1,"e":1.23E1}`, `null`},
		{"numbers that differ", `{"a":1,"b":9007199254740993}`, `{"a":1.01,"b":9007199254740992}`, `{"a":1,"b":9007199254740993}`},
		{"a string is not a number", `{"a":"1"}`, `{"a":1}`, `{"a":"1"}`},
		{"false is not absent", `{"a":false}`, `{}`, `{"a":false}`},
		{"object against value", `{"a":{"x":1}}`, `{"a":5}`, `{"a":{"x":1}}`},
		{"value against object", `{"a":5}`, `{"a":{"x":1}}`, `{"a":5}`},
		{"no reported section", `{"a":1,"b":{"c":2}}`, `null`, `{"a":1,"b":{"c":2}}`},
		{"no desired section", `null`, `{"a":1}`, `null`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := js(delta(obj(t, tt.desired), obj(t, tt.reported))); got != tt.want {
				t.Errorf("delta(%s, %s) = %s, want %s", tt.desired, tt.reported, got, tt.want)
			}
		})
	}
}

func TestCanonicalNumber(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"0", "0"}, {"-0", "0"}, {"0.000", "0"}, {"0e99", "0"},
		{"1", "1e0"}, {"1.0", "1e0"}, {"10", "1e1"}, {"1e1", "1e1"}, {"100E-2", "1e0"},
		{"-12.5", "-125e-1"}, {"0.125", "125e-3"}, {"1.5e+3", "15e2"},
	} {
		if got, ok := canonicalNumber(tt.in); !ok || got != tt.want {
			t.Errorf("canonicalNumber(%s) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := canonicalNumber("1e99999999999"); ok {
		t.Error("canonicalNumber accepted an exponent beyond 32 bits")
	}
}

// Every leaf written gets the update's timestamp; the others keep theirs;
// arrays get one entry per element; the delta's metadata is desired's.
func TestMetadataTimestamps(t *testing.T) {
	var state, meta map[string]any
	steps := []struct {
		ts                  stamp
		patch               string
		wantState, wantMeta string
	}{
		{1, `{"a":1,"cfg":{"x":1,"y":2},"arr":[1,{"k":2}]}`,
			`{"a":1,"arr":[1,{"k":2}],"cfg":{"x":1,"y":2}}`,
			`{"a":{"timestamp":1},"arr":[{"timestamp":1},{"k":{"timestamp":1}}],"cfg":{"x":{"timestamp":1},"y":{"timestamp":1}}}`},
		{2, `{"cfg":{"y":3}}`,
			`{"a":1,"arr":[1,{"k":2}],"cfg":{"x":1,"y":3}}`,
			`{"a":{"timestamp":1},"arr":[{"timestamp":1},{"k":{"timestamp":1}}],"cfg":{"x":{"timestamp":1},"y":{"timestamp":2}}}`},
		{3, `{"arr":[5],"cfg":{"x":null},"a":{"b":true}}`,
			`{"a":{"b":true},"arr":[5],"cfg":{"y":3}}`,
			`{"a":{"b":{"timestamp":3}},"arr":[{"timestamp":3}],"cfg":{"y":{"timestamp":2}}}`},
		{4, `{"a":7,"cfg":{"y":3,"z":{"deep":1}}}`,
			`{"a":7,"arr":[5],"cfg":{"y":3,"z":{"deep":1}}}`,
			`{"a":{"timestamp":4},"arr":[{"timestamp":3}],"cfg":{"y":{"timestamp":4},"z":{"deep":{"timestamp":4}}}}`},
		{5, `{"a":null,"arr":null,"cfg":null}`, `null`, `null`},
	}
	for _, st := range steps {
		u := update{state: map[string]any{desiredKey: obj(t, st.patch)}}
		state, meta = apply(u, desiredKey, state, meta, st.ts)
		if got := js(state); got != st.wantState {
			t.Errorf("after %s at %d: state %s, want %s", st.patch, st.ts, got, st.wantState)
		}
		if got := js(meta); got != st.wantMeta {
			t.Errorf("after %s at %d: metadata %s, want %s", st.patch, st.ts, got, st.wantMeta)
		}
	}

	desired := obj(t, `{"a":1,"cfg":{"x":1,"y":2},"t":[1,2]}`)
	dmeta := mergeMeta(desired, nil, desired, 7)
	d := delta(desired, obj(t, `{"a":1,"cfg":{"x":1,"y":3},"t":[1]}`))
	if got, want := js(project(d, dmeta)), `{"cfg":{"y":{"timestamp":7}},"t":[{"timestamp":7},{"timestamp":7}]}`; got != want {
		t.Errorf("delta metadata = %s, want %s", got, want)
	}
}

// Stored metadata reads back as it was written.
func TestLoadMetaRoundTrip(t *testing.T) {
	state := obj(t, `{"a":1,"b":{"c":[1,{"d":"x"},[2]]},"timestamp":{"timestamp":5}}`)
	meta := metaOf(state, 42).(map[string]any)
	raw := obj(t, js(meta))
	if got, want := js(loadMeta(state, raw)), js(meta); got != want {
		t.Errorf("loadMeta = %s, want %s", got, want)
	}
}

func TestParseUpdate(t *testing.T) {
	lim := limits{maxDepth: DefaultMaxDepth, maxBytes: DefaultMaxStateBytes}
	big := `{"state":{"desired":{"s":"` + strings.Repeat("x", 8200) + `"}}}`
	fits := `{"state":{"desired":{"s":"` + strings.Repeat("x", 8192-len(`{"s":""}`)) + `"}}}`
	for _, tt := range []struct {
		name, payload string
		want          *Error
		token         string
	}{
		{"desired and reported", `{"state":{"desired":{"a":1},"reported":{"b":2}},"clientToken":"t","version":3}`, nil, "t"},
		{"empty state", `{"state":{}}`, nil, ""},
		{"state null", `{"state":null}`, nil, ""},
		{"sections null", `{"state":{"desired":null,"reported":null}}`, nil, ""},
		{"version null", `{"state":{},"version":null}`, nil, ""},
		{"other top-level fields ignored", `{"state":{},"metadata":{"x":1},"timestamp":5}`, nil, ""},
		{"five levels of keys", `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":1}}}}}}}`, nil, ""},
		{"exactly 8192 bytes", fits, nil, ""},
		{"not JSON", `{"state":`, errInvalidJSON, ""},
		{"empty payload", ``, errInvalidJSON, ""},
		{"not an object", `[{"state":{}}]`, errInvalidJSON, ""},
		{"not UTF-8", "{\"state\":{\"desired\":{\"a\":\"\xff\"}}}", errUnsupportedEncoding, ""},
		{"no state", `{"clientToken":"t"}`, errMissingState, "t"},
		{"state is an array", `{"state":[]}`, errStateNotObject, ""},
		{"desired is a string", `{"state":{"desired":"on"}}`, errDesiredNotObject, ""},
		{"reported is an array", `{"state":{"reported":[1]}}`, errReportedNotObject, ""},
		{"delta in state", `{"state":{"delta":{"a":1}},"clientToken":"t"}`, errInvalidNode("delta"), "t"},
		{"unknown node in state", `{"state":{"desired":{},"foo":1}}`, errInvalidNode("foo"), ""},
		{"version is a string", `{"state":{},"version":"1"}`, errInvalidVersion, ""},
		{"version is negative", `{"state":{},"version":-1}`, errInvalidVersion, ""},
		{"version is a fraction", `{"state":{},"version":1.5}`, errInvalidVersion, ""},
		{"clientToken too long", `{"state":{},"clientToken":"` + strings.Repeat("t", 65) + `"}`, errInvalidClientToken, ""},
		{"clientToken not a string", `{"state":{},"clientToken":5}`, errInvalidClientToken, ""},
		{"null in an array", `{"state":{"reported":{"a":[1,null]}}}`, errInvalidJSON, ""},
		{"null deep in an array", `{"state":{"reported":{"a":[{"b":null}]}}}`, errInvalidJSON, ""},
		{"six levels of keys", `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`, errTooDeep(6), ""},
		{"arrays count as levels", `{"state":{"desired":{"a":[[[[[1]]]]]}}}`, errTooDeep(6), ""},
		{"too large", big, errTooLarge, ""},
		{"too large across sections", `{"state":{"desired":{"s":"` + strings.Repeat("x", 4100) + `"},"reported":{"s":"` + strings.Repeat("x", 4100) + `"}}}`, errTooLarge, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, rej := parseUpdate([]byte(tt.payload), lim)
			if (rej == nil) != (tt.want == nil) || rej != nil && *rej != *tt.want {
				t.Errorf("parseUpdate(%.80s) = %v, want %v", tt.payload, rej, tt.want)
			}
			if u.clientToken != tt.token {
				t.Errorf("parseUpdate(%.80s) clientToken = %q, want %q", tt.payload, u.clientToken, tt.token)
			}
		})
	}
}

// The nesting limit is configurable and named in the message.
func TestParseUpdateMaxDepth(t *testing.T) {
	lim := limits{maxDepth: 3, maxBytes: DefaultMaxStateBytes}
	if _, rej := parseUpdate([]byte(`{"state":{"desired":{"a":{"b":1}}}}`), lim); rej != nil {
		t.Errorf("depth 3 with MaxDepth 3: %v", rej)
	}
	_, rej := parseUpdate([]byte(`{"state":{"desired":{"a":{"b":{"c":1}}}}}`), lim)
	if rej == nil || rej.Message != "JSON contains too many levels of nesting; maximum is 3" {
		t.Errorf("depth 4 with MaxDepth 3: %v", rej)
	}
}

// stateSeeds are objects for the fuzz targets' corpora.
var stateSeeds = []string{
	`{}`, `{"a":1}`, `{"a":{"b":{"c":[1,2,{"d":null}]}},"e":"x"}`, `{"a":1.0,"b":1e2,"c":-0}`,
	`{"cfg":{"interval":60,"level":"info"},"tags":["a","b"]}`, `{"a":{},"b":[]}`, `{"a":null,"b":{"c":null}}`,
}

// stored normalizes a fuzz input into what the service stores: no nulls and
// no empty objects outside arrays. ok is false for non-objects.
func stored(data string) (map[string]any, bool) {
	v, err := decodeJSON([]byte(data))
	if err != nil || !json.Valid([]byte(data)) {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	return merge(nil, m), true
}

// checkStored fails unless v holds no null and no empty object outside
// arrays.
func checkStored(t *testing.T, v map[string]any, path string) {
	t.Helper()
	if v != nil && len(v) == 0 {
		t.Fatalf("empty object at %s", path)
	}
	for k, c := range v {
		switch x := c.(type) {
		case nil:
			t.Fatalf("null at %s.%s", path, k)
		case map[string]any:
			checkStored(t, x, path+"."+k)
		}
	}
}

// checkMetaShape fails unless meta mirrors v: maps for objects with the
// same keys, slices of the same length for arrays, stamps in want (the
// timestamps the test wrote) elsewhere.
func checkMetaShape(t *testing.T, v, meta any, path string, want ...stamp) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		m, ok := meta.(map[string]any)
		if !ok || len(m) != len(x) {
			t.Fatalf("metadata at %s is %s for %s", path, js(meta), js(v))
		}
		for k, c := range x {
			checkMetaShape(t, c, m[k], path+"."+k, want...)
		}
	case []any:
		s, ok := meta.([]any)
		if !ok || len(s) != len(x) {
			t.Fatalf("metadata at %s is %s for %s", path, js(meta), js(v))
		}
		for i, c := range x {
			checkMetaShape(t, c, s[i], path, want...)
		}
	default:
		ts, ok := meta.(stamp)
		if !ok {
			t.Fatalf("metadata at %s is %s for the value %s", path, js(meta), js(v))
		}
		for _, w := range want {
			if ts == w {
				return
			}
		}
		t.Fatalf("metadata at %s has timestamp %d, want one of %v", path, ts, want)
	}
}

// FuzzMerge applies an update request's desired section to a stored
// section and checks what the service relies on: the input is untouched,
// the result keeps the stored invariants, every value the patch sets is
// there, the rest is unchanged, merging again changes nothing, and the
// metadata mirrors the state and survives storage.
func FuzzMerge(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add(s, `{"state":{"desired":`+s+`}}`)
		f.Add(`{"a":{"b":1,"c":2},"d":[1]}`, `{"state":{"desired":`+s+`}}`)
	}
	f.Add(`{"a":1}`, `{"state":{"desired":null}}`)
	f.Add(`{"a":{"b":1}}`, `{"state":{"desired":{"a":{"b":null}}},"version":3}`)
	f.Fuzz(func(t *testing.T, base, request string) {
		dst, ok := stored(base)
		if !ok {
			return
		}
		u, rej := parseUpdate([]byte(request), limits{maxDepth: 64, maxBytes: 1 << 20})
		if rej != nil {
			return
		}
		patch, present := u.section(desiredKey)
		if !present {
			return
		}
		dstMeta, _ := metaOf(dst, 1).(map[string]any)
		before := js(dst)
		merged, meta := apply(u, desiredKey, dst, dstMeta, 2)
		if js(dst) != before {
			t.Fatalf("merge changed the stored section from %s to %s", before, js(dst))
		}
		checkStored(t, merged, "desired")
		if merged != nil {
			checkMetaShape(t, merged, meta, "desired", 1, 2)
			if got := js(loadSection(merged, obj(t, js(meta)))); got != js(meta) {
				t.Fatalf("metadata %s reads back as %s", js(meta), got)
			}
		} else if meta != nil {
			t.Fatalf("metadata %s without state", js(meta))
		}
		if patch == nil {
			if merged != nil {
				t.Fatalf("a null section left %s", js(merged))
			}
			return
		}
		checkPatched(t, dst, patch, merged, "desired")
		if again := merge(merged, patch); !equal(mapOrNil(again), mapOrNil(merged)) {
			t.Fatalf("merging %s twice: %s, then %s", js(patch), js(merged), js(again))
		}
	})
}

func mapOrNil(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// checkPatched checks merged = dst + patch key by key.
func checkPatched(t *testing.T, dst, patch, merged map[string]any, path string) {
	t.Helper()
	for k, old := range dst {
		if _, touched := patch[k]; !touched && !equal(merged[k], old) {
			t.Fatalf("%s.%s changed from %s to %s without being in the patch", path, k, js(old), js(merged[k]))
		}
	}
	for k, p := range patch {
		got, has := merged[k]
		switch pv := p.(type) {
		case nil:
			if has {
				t.Fatalf("%s.%s set to null is still %s", path, k, js(got))
			}
		case map[string]any:
			old, _ := dst[k].(map[string]any)
			want := merge(old, pv)
			if want == nil {
				if has {
					t.Fatalf("%s.%s should be gone, is %s", path, k, js(got))
				}
				continue
			}
			g, _ := got.(map[string]any)
			checkPatched(t, old, pv, g, path+"."+k)
		default:
			if !has || !equal(got, pv) {
				t.Fatalf("%s.%s = %s, want %s", path, k, js(got), js(pv))
			}
		}
	}
}

// FuzzDelta checks the delta of stored sections: it is part of desired,
// empty exactly when reported already holds every desired value, gone once
// the device reports it, and its metadata mirrors it.
func FuzzDelta(f *testing.F) {
	for _, d := range stateSeeds {
		for _, r := range stateSeeds {
			f.Add(d, r)
		}
	}
	f.Add(`{"a":{"b":1,"c":[1,2]},"n":100}`, `{"a":{"b":2,"c":[1,2]},"n":1e2}`)
	f.Fuzz(func(t *testing.T, desiredJSON, reportedJSON string) {
		desired, ok1 := stored(desiredJSON)
		reported, ok2 := stored(reportedJSON)
		if !ok1 || !ok2 {
			return
		}
		d := delta(desired, reported)
		checkSubset(t, d, desired, "delta")
		covered := equal(mapOrNil(merge(reported, desired)), mapOrNil(reported))
		if (d == nil) != covered {
			t.Fatalf("delta(%s, %s) = %s, but reported covers desired: %v", js(desired), js(reported), js(d), covered)
		}
		if d == nil {
			return
		}
		if again := delta(desired, merge(reported, d)); again != nil {
			t.Fatalf("after reporting the delta %s, delta is %s", js(d), js(again))
		}
		desiredMeta, _ := metaOf(desired, 9).(map[string]any)
		checkMetaShape(t, d, project(d, desiredMeta), "delta", 9)
	})
}

// checkSubset fails unless every value of d is at the same path in desired.
func checkSubset(t *testing.T, d, desired map[string]any, path string) {
	t.Helper()
	for k, v := range d {
		w, ok := desired[k]
		if !ok {
			t.Fatalf("%s.%s is not in desired", path, k)
		}
		sub, isObj := v.(map[string]any)
		wm, wIsObj := w.(map[string]any)
		if isObj && wIsObj {
			checkSubset(t, sub, wm, path+"."+k)
		} else if !equal(v, w) {
			t.Fatalf("%s.%s = %s, desired has %s", path, k, js(v), js(w))
		}
	}
}
