package shadow

import (
	"encoding/json"
	"testing"
)

// mustTree decodes a JSON object into a tree, keeping null members (a
// patch needs them).
func mustTree(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := fakeDecodeNumbers([]byte(s), &m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func encode(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	return string(b)
}

func TestDiffAndMerge(t *testing.T) {
	tests := []struct {
		name, from, to, patch string
	}{
		{"equal", `{"a":1,"b":{"c":[1,2]}}`, `{"b":{"c":[1,2]},"a":1}`, `{}`},
		{"from nothing", `{}`, `{"a":1,"b":{"c":true}}`, `{"a":1,"b":{"c":true}}`},
		{"to nothing", `{"a":1,"b":{"c":true}}`, `{}`, `{"a":null,"b":null}`},
		{"changed leaf deep inside", `{"a":{"b":{"c":1,"d":2}}}`, `{"a":{"b":{"c":1,"d":3}}}`, `{"a":{"b":{"d":3}}}`},
		{"removed leaf deep inside", `{"a":{"b":{"c":1,"d":2}}}`, `{"a":{"b":{"c":1}}}`, `{"a":{"b":{"d":null}}}`},
		{"arrays replace whole", `{"a":[1,2,3]}`, `{"a":[1,2]}`, `{"a":[1,2]}`},
		{"array of objects", `{"a":[{"x":1}]}`, `{"a":[{"x":2}]}`, `{"a":[{"x":2}]}`},
		{"object becomes scalar", `{"a":{"b":1}}`, `{"a":"b"}`, `{"a":"b"}`},
		{"scalar becomes object", `{"a":"b"}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{"object emptied", `{"a":{"b":1}}`, `{"a":{}}`, `{"a":{"b":null}}`},
		{"empty object added", `{}`, `{"a":{}}`, `{"a":{}}`},
		{"numbers by value", `{"a":1.0,"b":1e2,"c":-0}`, `{"a":1,"b":100,"c":0}`, `{}`},
		{"large integers exactly", `{"a":9007199254740993}`, `{"a":9007199254740992}`, `{"a":9007199254740992}`},
		{"types differ", `{"a":1,"b":"1","c":true,"d":[]}`, `{"a":"1","b":1,"c":"true","d":{}}`, `{"a":"1","b":1,"c":"true","d":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := mustTree(t, tt.from), mustTree(t, tt.to)
			patch := diffTree(from, to)
			if got := encode(t, patch); got != tt.patch {
				t.Errorf("diffTree(%s, %s) = %s, want %s", tt.from, tt.to, got, tt.patch)
			}
			merged := mergeTree(from, patch)
			if !equalValue(map[string]any(merged), map[string]any(to)) {
				t.Errorf("mergeTree(%s, %s) = %s, want %s", tt.from, encode(t, patch), encode(t, merged), tt.to)
			}
			if got := encode(t, from); got != encode(t, mustTree(t, tt.from)) {
				t.Errorf("mergeTree changed its base to %s", got)
			}
		})
	}
}

func TestMergeLikeTheService(t *testing.T) {
	tests := []struct {
		name, base, patch, want string
	}{
		{"null removes", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"null of a missing key", `{"b":2}`, `{"a":null}`, `{"b":2}`},
		{"objects merge", `{"a":{"b":1,"c":2}}`, `{"a":{"c":3,"d":4}}`, `{"a":{"b":1,"c":3,"d":4}}`},
		{"object into a scalar", `{"a":5}`, `{"a":{"b":1,"c":null}}`, `{"a":{"b":1}}`},
		{"arrays replace", `{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
	}
	for _, tt := range tests {
		base := mustTree(t, tt.base)
		got := encode(t, mergeTree(base, mustTree(t, tt.patch)))
		if got != tt.want {
			t.Errorf("%s: mergeTree(%s, %s) = %s, want %s", tt.name, tt.base, tt.patch, got, tt.want)
		}
		// The fake service merges the same way.
		fakeBase := fakeCopy(mustTree(t, tt.base))
		fakeApply(fakeBase, mustTree(t, tt.patch))
		if fake := encode(t, fakeBase); fake != tt.want {
			t.Errorf("%s: the fake merges to %s, want %s", tt.name, fake, tt.want)
		}
	}
}

func TestDecodeTree(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{``, `{}`, false},
		{`null`, `{}`, false},
		{` {"a":null,"b":{"c":null,"d":[null]}} `, `{"b":{"d":[null]}}`, false},
		{`{"n":1.50}`, `{"n":1.50}`, false},
		{`[1]`, ``, true},
		{`"a"`, ``, true},
		{`{"a":1} {}`, ``, true},
		{`{"a":`, ``, true},
	}
	for _, tt := range tests {
		got, err := decodeTree([]byte(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("decodeTree(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || encode(t, got) != tt.want {
			t.Errorf("decodeTree(%q) = %s, %v; want %s", tt.in, encode(t, got), err, tt.want)
		}
	}
}

func TestEqualNumber(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1", "1", true},
		{"1", "1.0", true},
		{"100", "1e2", true},
		{"-0", "0", true},
		{"9007199254740993", "9007199254740992", false},
		{"1.5", "1.50", true},
		{"1.5", "1.6", false},
		{"1e400", "1e400", true},
		{"1e400", "1E400", false}, // out of range: compared as text
	}
	for _, tt := range tests {
		if got := equalNumber(json.Number(tt.a), json.Number(tt.b)); got != tt.want {
			t.Errorf("equalNumber(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
