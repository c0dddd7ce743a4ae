package shadow

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic   string
		want    Topic
		wantErr string // a part of the error
	}{
		{topic: "$aws/things/gw-1/shadow/get", want: Topic{"gw-1", "", OpGet, KindRequest}},
		{topic: "$aws/things/gw-1/shadow/update/accepted", want: Topic{"gw-1", "", OpUpdate, KindAccepted}},
		{topic: "$aws/things/gw-1/shadow/delete/rejected", want: Topic{"gw-1", "", OpDelete, KindRejected}},
		{topic: "$aws/things/gw:1_x/shadow/update/delta", want: Topic{"gw:1_x", "", OpUpdate, KindDelta}},
		{topic: "$aws/things/gw-1/shadow/update/documents", want: Topic{"gw-1", "", OpUpdate, KindDocuments}},
		{topic: "$aws/things/gw-1/shadow/name/config/get/accepted", want: Topic{"gw-1", "config", OpGet, KindAccepted}},
		{topic: "$aws/things/gw-1/shadow/name/$package/update", want: Topic{"gw-1", "$package", OpUpdate, KindRequest}},
		{topic: "$aws/things/gw-1/shadow/name/name/update/delta", want: Topic{"gw-1", "name", OpUpdate, KindDelta}},
		{topic: "$aws/things/gw-1/shadow/name/get/get", want: Topic{"gw-1", "get", OpGet, KindRequest}},

		{topic: "$aws/things/gw-1/jobs/get", wantErr: "not under $aws/things/{thingName}/shadow/"},
		{topic: "things/gw-1/shadow/get", wantErr: "does not start with $aws/things/"},
		{topic: "$aws/things/gw-1", wantErr: "not under"},
		{topic: "$aws/things/gw-1/shadow/", wantErr: `"" is not get, update or delete`},
		{topic: "$aws/things/gw-1/shadow/name", wantErr: `"name" is not get, update or delete`},
		{topic: "$aws/things/gw-1/shadow/name/get", wantErr: "a named shadow topic without an operation"},
		{topic: "$aws/things/gw-1/shadow/update/snapshot", wantErr: `"snapshot" is not accepted, rejected, delta or documents`},
		{topic: "$aws/things/gw-1/shadow/get/delta", wantErr: "delta exists only under update"},
		{topic: "$aws/things/gw-1/shadow/delete/documents", wantErr: "documents exists only under update"},
		{topic: "$aws/things/gw-1/shadow/update/accepted/x", wantErr: `"accepted/x" is not accepted`},
		{topic: "$aws/things/gw-1/shadow/GET", wantErr: `"GET" is not get`},
		{topic: "$aws/things/gw+1/shadow/get", wantErr: "thing name"},
		{topic: "$aws/things//shadow/get", wantErr: "thing name"},
		{topic: "$aws/things/gw-1/shadow/name/a#b/get", wantErr: "shadow name"},
		{topic: "$aws/things/gw-1/shadow/name//get", wantErr: "shadow name"},
		{topic: "$aws/things/" + strings.Repeat("t", 129) + "/shadow/get", wantErr: "must be 1 to 128 characters"},
		{topic: "$aws/things/gw-1/shadow/name/" + strings.Repeat("s", 65) + "/get", wantErr: "must be 1 to 64 characters"},
	}
	for _, tt := range tests {
		got, err := ParseTopic(tt.topic)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrNotShadowTopic) {
				t.Errorf("ParseTopic(%q) = %+v, %v; want an error wrapping ErrNotShadowTopic saying %q", tt.topic, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("ParseTopic(%q): %v", tt.topic, err)
		case got != tt.want || got.String() != tt.topic:
			t.Errorf("ParseTopic(%q) = %+v (String %q), want %+v", tt.topic, got, got.String(), tt.want)
		}
	}
}

func TestSubscriptionFilters(t *testing.T) {
	want := []string{
		"$aws/things/gw-1/shadow/name/config/get/accepted",
		"$aws/things/gw-1/shadow/name/config/get/rejected",
		"$aws/things/gw-1/shadow/name/config/update/accepted",
		"$aws/things/gw-1/shadow/name/config/update/rejected",
		"$aws/things/gw-1/shadow/name/config/delete/accepted",
		"$aws/things/gw-1/shadow/name/config/delete/rejected",
		"$aws/things/gw-1/shadow/name/config/update/delta",
		"$aws/things/gw-1/shadow/name/config/update/documents",
	}
	if diff := cmp.Diff(want, SubscriptionFilters("gw-1", "config")); diff != "" {
		t.Errorf("named filters mismatch (-want +got):\n%s", diff)
	}
	classic := SubscriptionFilters("gw-1", "")
	if len(classic) != 8 || classic[0] != "$aws/things/gw-1/shadow/get/accepted" || classic[7] != "$aws/things/gw-1/shadow/update/documents" {
		t.Errorf("classic filters = %q", classic)
	}
}

func TestValidateNames(t *testing.T) {
	tests := []struct {
		name   string
		thing  bool // ValidateThingName, else ValidateShadowName
		wantOK bool
	}{
		{"gw-1", true, true},
		{"a:b_c-D9", true, true},
		{strings.Repeat("t", 128), true, true},
		{strings.Repeat("t", 129), true, false},
		{"", true, false},
		{"$thing", true, false},
		{"gw 1", true, false},
		{"gw/1", true, false},
		{"thé", true, false},
		{"$package", false, true},
		{strings.Repeat("s", 64), false, true},
		{strings.Repeat("s", 65), false, false},
		{"", false, false},
		{"a+b", false, false},
	}
	for _, tt := range tests {
		validate, what := ValidateShadowName, "ValidateShadowName"
		if tt.thing {
			validate, what = ValidateThingName, "ValidateThingName"
		}
		if err := validate(tt.name); (err == nil) != tt.wantOK {
			t.Errorf("%s(%q) = %v, want ok %v", what, tt.name, err, tt.wantOK)
		}
	}
}
