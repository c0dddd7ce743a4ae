package jobs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateJobID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"job-1", true},
		{"A_b-9", true},
		{strings.Repeat("j", 64), true},
		{"", false},
		{strings.Repeat("j", 65), false},
		{"$next", false},
		{"job:1", false},
		{"job/1", false},
		{"jöb", false},
	}
	for _, tt := range tests {
		if err := ValidateJobID(tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidateJobID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestValidateThingName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"gw:1_a-B", true},
		{strings.Repeat("t", 128), true},
		{"", false},
		{strings.Repeat("t", 129), false},
		{"a/b", false},
		{"a+b", false},
	}
	for _, tt := range tests {
		if err := ValidateThingName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateThingName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func manyDetails(n int) map[string]string {
	d := map[string]string{}
	for i := range n {
		d[fmt.Sprintf("k%02d", i)] = "v"
	}
	return d
}

func TestValidateStatusDetails(t *testing.T) {
	tests := []struct {
		name    string
		d       map[string]string
		wantErr string // substring; empty means valid
	}{
		{"nil", nil, ""},
		{"ten pairs", manyDetails(10), ""},
		{"key chars", map[string]string{"a:b_c-D9": "x"}, ""},
		{"max key", map[string]string{strings.Repeat("k", 128): "x"}, ""},
		{"max value", map[string]string{"k": strings.Repeat("é", 1024)}, ""},
		{"spaces and unicode", map[string]string{"k": "new cert: ✓ ok\u00a0done"}, ""},
		{"eleven pairs", manyDetails(11), "11 pairs"},
		{"empty key", map[string]string{"": "x"}, "statusDetails key"},
		{"long key", map[string]string{strings.Repeat("k", 129): "x"}, "statusDetails key"},
		{"bad key", map[string]string{"a b": "x"}, `character ' '`},
		{"empty value", map[string]string{"k": ""}, "0 characters"},
		{"long value", map[string]string{"k": strings.Repeat("v", 1025)}, "1025 characters"},
		{"newline", map[string]string{"k": "a\nb"}, "control"},
		{"tab", map[string]string{"k": "a\tb"}, "control"},
		{"format char", map[string]string{"k": "a\u200bb"}, "control"},
		{"invalid utf-8", map[string]string{"k": "a\xffb"}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		err := ValidateStatusDetails(tt.d)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: ValidateStatusDetails = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: ValidateStatusDetails = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestTrimStatusDetails(t *testing.T) {
	twelve := manyDetails(12)
	twelve["reason"] = "why"
	twelve["step"] = "where"
	wantTwelve := map[string]string{"reason": "why", "step": "where"}
	for i := range 8 {
		wantTwelve[fmt.Sprintf("k%02d", i)] = "v"
	}
	tests := []struct {
		name string
		in   map[string]string
		want map[string]string
	}{
		{"nil", nil, nil},
		{"valid unchanged", map[string]string{"step": "one", "a:b": "x y"}, map[string]string{"step": "one", "a:b": "x y"}},
		{"reason and step kept first", twelve, wantTwelve},
		{"control chars to spaces", map[string]string{"reason": "line1\nline2\ttab\x00"}, map[string]string{"reason": "line1 line2 tab "}},
		{"invalid utf-8", map[string]string{"k": "a\xffb"}, map[string]string{"k": "a\uFFFDb"}},
		{"bad key chars", map[string]string{"new cert id": "x"}, map[string]string{"new_cert_id": "x"}},
		{"long key", map[string]string{strings.Repeat("k", 200): "x"}, map[string]string{strings.Repeat("k", 128): "x"}},
		{"long value", map[string]string{"k": strings.Repeat("ü", 2000)}, map[string]string{"k": strings.Repeat("ü", 1023) + "…"}},
		{"empty value dropped", map[string]string{"k": "", "j": "x"}, map[string]string{"j": "x"}},
		{"empty key dropped", map[string]string{"": "x"}, nil},
		{"key clash keeps first", map[string]string{"a b": "1", "a_b": "2"}, map[string]string{"a_b": "1"}},
	}
	for _, tt := range tests {
		got := TrimStatusDetails(tt.in)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: TrimStatusDetails mismatch (-want +got):\n%s", tt.name, diff)
		}
		if err := ValidateStatusDetails(got); err != nil {
			t.Errorf("%s: ValidateStatusDetails(TrimStatusDetails(...)) = %v", tt.name, err)
		}
	}
}

func TestParseJobDocument(t *testing.T) {
	big := `{"operation":"x","pad":"` + strings.Repeat("p", DefaultMaxDocumentBytes) + `"}`
	tests := []struct {
		name, doc string
		wantOp    string
		wantErr   string
	}{
		{"minimal", `{"operation":"rotate-certificate"}`, "rotate-certificate", ""},
		{"extra fields", `{"operation":"reboot","delay":5,"nested":{"operation":1}}`, "reboot", ""},
		{"whitespace", " {\n \"operation\" : \"x\" } ", "x", ""},
		{"at the limit", `{"operation":"x","p":"` + strings.Repeat("p", DefaultMaxDocumentBytes-24) + `"}`, "x", ""},
		{"empty", ``, "", "no job document"},
		{"too big", big, "", "more than the 32768"},
		{"array", `["operation"]`, "", "not a JSON object"},
		{"string", `"operation"`, "", "not a JSON object"},
		{"null", `null`, "", "not a JSON object"},
		{"broken", `{"operation":`, "", "not a JSON object"},
		{"no operation", `{"op":"x"}`, "", `no "operation"`},
		{"number operation", `{"operation":5}`, "", "not a string"},
		{"null operation", `{"operation":null}`, "", "is empty"},
		{"empty operation", `{"operation":""}`, "", "is empty"},
	}
	for _, tt := range tests {
		op, err := parseJobDocument([]byte(tt.doc), DefaultMaxDocumentBytes)
		if tt.wantErr == "" {
			if err != nil || op != tt.wantOp {
				t.Errorf("%s: parseJobDocument = %q, %v; want %q, nil", tt.name, op, err, tt.wantOp)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: parseJobDocument = %q, %v; want an error containing %q", tt.name, op, err, tt.wantErr)
		}
	}
}
