package shadow

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Document
		wantErr  string
	}{
		{
			name: "get reply",
			in: `{"state":{"desired":{"a":1},"reported":{"a":0},"delta":{"a":1}},"metadata":{"desired":{"a":{"timestamp":1}}},
				"version":4,"timestamp":1591057529,"clientToken":"t","future":true}`,
			want: &Document{State: DocumentState{Desired: json.RawMessage(`{"a":1}`), Reported: json.RawMessage(`{"a":0}`), Delta: json.RawMessage(`{"a":1}`)},
				Metadata: json.RawMessage(`{"desired":{"a":{"timestamp":1}}}`), Version: 4, Timestamp: 1591057529, ClientToken: "t"},
		},
		{name: "an empty shadow", in: `{"version":2}`, want: &Document{Version: 2}},
		{name: "a removed section", in: `{"state":{"reported":null},"metadata":null,"version":3}`,
			want: &Document{State: DocumentState{Reported: json.RawMessage(`null`)}, Version: 3}},
		{name: "not an object", in: `[1]`, wantErr: "document is not a JSON object"},
		{name: "null", in: `null`, wantErr: "document is not a JSON object"},
		{name: "empty", in: ``, wantErr: "document is not a JSON object"},
		{name: "not JSON", in: `{"state":`, wantErr: "document: unexpected end of JSON input"},
		{name: "state not an object", in: `{"state":[1]}`, wantErr: "document: json: cannot unmarshal array"},
		{name: "desired not an object", in: `{"state":{"desired":"on"}}`, wantErr: "state.desired is not a JSON object"},
		{name: "delta not an object", in: `{"state":{"delta":[]}}`, wantErr: "state.delta is not a JSON object"},
		{name: "metadata not an object", in: `{"metadata":1}`, wantErr: "metadata is not a JSON object"},
		{name: "negative version", in: `{"version":-1}`, wantErr: "document: version -1 is negative"},
		{name: "fractional version", in: `{"version":1.5}`, wantErr: "cannot unmarshal number 1.5"},
	}
	for _, tt := range tests {
		got, err := parseDocument([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: parseDocument = %+v, %v; want an error saying %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: parseDocument: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: parseDocument mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestParseDelta(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Delta
		wantErr  string
	}{
		{
			name: "delta",
			in:   `{"state":{"mode":"eco"},"metadata":{"mode":{"timestamp":9}},"version":7,"timestamp":9,"clientToken":"app"}`,
			want: &Delta{State: json.RawMessage(`{"mode":"eco"}`), Metadata: json.RawMessage(`{"mode":{"timestamp":9}}`), Version: 7, Timestamp: 9, ClientToken: "app"},
		},
		{name: "bare", in: `{"state":{},"version":1,"metadata":null}`, want: &Delta{State: json.RawMessage(`{}`), Version: 1}},
		{name: "no state", in: `{"version":1}`, wantErr: "delta: no state"},
		{name: "null state", in: `{"state":null,"version":1}`, wantErr: "delta: no state"},
		{name: "state not an object", in: `{"state":"x","version":1}`, wantErr: "delta state is not a JSON object"},
		{name: "metadata not an object", in: `{"state":{},"metadata":[],"version":1}`, wantErr: "delta metadata is not a JSON object"},
		{name: "no version", in: `{"state":{}}`, wantErr: "delta: version 0: want a positive version"},
		{name: "not an object", in: `"x"`, wantErr: "delta is not a JSON object"},
	}
	for _, tt := range tests {
		got, err := parseDelta([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: parseDelta = %+v, %v; want an error saying %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: parseDelta: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: parseDelta mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
