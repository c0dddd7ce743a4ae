package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func FuzzParseDocument(f *testing.F) {
	for _, seed := range []string{
		`{"state":{"desired":{"a":1},"reported":{"a":0},"delta":{"a":1}},"metadata":{"desired":{"a":{"timestamp":1}}},"version":4,"timestamp":1,"clientToken":"t"}`,
		`{"state":{"reported":null},"version":3}`,
		`{}`,
		`{"state":{"desired":"x"}}`,
		`{"version":-1}`,
		`{"version":1e3}`,
		`{"state":{"desired":{"<a>":"\u2028"}}, "metadata":null}`,
		`[]`,
		`null`,
		"{\"clientToken\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		doc, err := parseDocument(payload)
		if err != nil {
			if doc != nil {
				t.Errorf("parseDocument(%q) = %+v with error %v", payload, doc, err)
			}
			return
		}
		if !json.Valid(payload) || doc.Version < 0 {
			t.Errorf("parseDocument(%q) accepted it: %+v", payload, doc)
		}
		for _, s := range []json.RawMessage{doc.State.Desired, doc.State.Reported, doc.State.Delta, doc.Metadata} {
			if s != nil && string(s) != "null" && !bytes.HasPrefix(bytes.TrimSpace(s), []byte("{")) {
				t.Errorf("parseDocument(%q) has a section that is not an object: %s", payload, s)
			}
		}
		// What it returns encodes to a document it parses the same way.
		once := mustMarshal(t, doc)
		again, err := parseDocument(once)
		if err != nil {
			t.Fatalf("parseDocument(%s) (the encoding of a parsed %q): %v", once, payload, err)
		}
		if twice := mustMarshal(t, again); !bytes.Equal(once, twice) {
			t.Errorf("parseDocument is not stable: %s, then %s", once, twice)
		}
	})
}

func FuzzParseDelta(f *testing.F) {
	for _, seed := range []string{
		`{"state":{"mode":"eco"},"metadata":{"mode":{"timestamp":9}},"version":7,"timestamp":9,"clientToken":"app"}`,
		`{"state":{},"version":1}`,
		`{"state":{"a":1}}`,
		`{"state":null,"version":3}`,
		`{"state":"x","version":3}`,
		`{"state":{},"version":1,"metadata":[]}`,
		`[1]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := parseDelta(payload)
		if err != nil {
			if d != nil {
				t.Errorf("parseDelta(%q) = %+v with error %v", payload, d, err)
			}
			return
		}
		if !json.Valid(payload) || d.Version <= 0 || !bytes.HasPrefix(d.State, []byte("{")) {
			t.Errorf("parseDelta(%q) accepted it: %+v", payload, d)
		}
		if d.Metadata != nil && !bytes.HasPrefix(d.Metadata, []byte("{")) {
			t.Errorf("parseDelta(%q): metadata %s is not an object", payload, d.Metadata)
		}
		once := mustMarshal(t, d)
		again, err := parseDelta(once)
		if err != nil {
			t.Fatalf("parseDelta(%s) (the encoding of a parsed %q): %v", once, payload, err)
		}
		if twice := mustMarshal(t, again); !bytes.Equal(once, twice) {
			t.Errorf("parseDelta is not stable: %s, then %s", once, twice)
		}
	})
}

// FuzzDiff: the patch from one reported tree to another, applied to the
// first (by mergeTree and by the fake service, after a trip through JSON),
// gives the second.
func FuzzDiff(f *testing.F) {
	for _, seed := range [][2]string{
		{`{}`, `{"a":1}`},
		{`{"a":{"b":1,"c":[1,2]},"d":"x"}`, `{"a":{"c":[2]},"e":{"f":{}}}`},
		{`{"a":{"b":1}}`, `{"a":5}`},
		{`{"a":5}`, `{"a":{"b":{"c":null}}}`},
		{`{"n":1.0,"m":9007199254740993}`, `{"n":1,"m":9007199254740992}`},
		{`{"a":[null]}`, `{"a":[{"b":null}]}`},
		{`null`, `{"\u00ff":true}`},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, fromJSON, toJSON []byte) {
		from, err := decodeTree(fromJSON)
		if err != nil {
			return
		}
		to, err := decodeTree(toJSON)
		if err != nil {
			return
		}
		before := string(mustMarshal(t, from))
		patch := diffTree(from, to)
		if got := mergeTree(from, patch); !equalValue(got, to) {
			t.Errorf("mergeTree(%s, diffTree(…) = %s) = %s, want %s", before, mustMarshal(t, patch), mustMarshal(t, got), mustMarshal(t, to))
		}
		if after := string(mustMarshal(t, from)); after != before {
			t.Errorf("diff or merge changed the base: %s, now %s", before, after)
		}
		if same := diffTree(to, to); len(same) != 0 {
			t.Errorf("diffTree(x, x) = %s for x = %s", mustMarshal(t, same), mustMarshal(t, to))
		}
		// The patch as sent on the wire, merged by the fake service.
		var wire map[string]any
		if err := fakeDecodeNumbers(mustMarshal(t, patch), &wire); err != nil {
			t.Fatalf("decode the patch: %v", err)
		}
		stored := fakeCopy(from)
		fakeApply(stored, wire)
		if !equalValue(stored, to) {
			t.Errorf("the service would hold %s after the patch %s, want %s", mustMarshal(t, stored), mustMarshal(t, wire), mustMarshal(t, to))
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, seed := range []string{
		"$aws/things/gw-1/shadow/get",
		"$aws/things/gw-1/shadow/update/delta",
		"$aws/things/gw-1/shadow/name/$package/delete/rejected",
		"$aws/things/gw-1/shadow/name/get",
		"$aws/things/gw-1/shadow/name//update",
		"$aws/things/gw-1/jobs/get",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := ParseTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrNotShadowTopic) {
				t.Errorf("ParseTopic(%q) error %v does not wrap ErrNotShadowTopic", topic, err)
			}
			return
		}
		// A parsed topic is rebuilt exactly, its names are valid (so hold
		// no topic separator or wildcard), and a reply topic is one that
		// Client.Start subscribes to.
		if s := got.String(); s != topic {
			t.Errorf("ParseTopic(%q).String() = %q", topic, s)
		}
		if ValidateThingName(got.ThingName) != nil || got.ShadowName != "" && ValidateShadowName(got.ShadowName) != nil {
			t.Errorf("ParseTopic(%q) = %+v with an invalid name", topic, got)
		}
		if subscribed := slices.Contains(SubscriptionFilters(got.ThingName, got.ShadowName), topic); subscribed == (got.Kind == KindRequest) {
			t.Errorf("ParseTopic(%q) = %+v, and Start subscribes to it: %v", topic, got, subscribed)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %#v: %v", v, err)
	}
	return b
}
