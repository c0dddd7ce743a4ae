package jobs

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func FuzzParseJobDocument(f *testing.F) {
	for _, seed := range []string{
		`{"operation":"rotate-certificate","keyAlgorithm":"ECDSA_P256"}`,
		`{"operation":""}`,
		`{"operation":5}`,
		`[]`,
		`null`,
		`{"operation":"a","operation":"b"}`,
		"{\"operation\":\"\\u0000\"}",
	} {
		f.Add([]byte(seed), 64)
	}
	f.Fuzz(func(t *testing.T, doc []byte, maxBytes int) {
		if maxBytes <= 0 || maxBytes > 1<<16 {
			maxBytes = DefaultMaxDocumentBytes
		}
		op, err := parseJobDocument(doc, maxBytes)
		if err != nil {
			if op != "" {
				t.Errorf("parseJobDocument(%q) = %q with error %v", doc, op, err)
			}
			return
		}
		if op == "" || len(doc) > maxBytes || !json.Valid(doc) {
			t.Errorf("parseJobDocument(%q, %d) accepted it with operation %q", doc, maxBytes, op)
		}
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil || m["operation"] != op {
			t.Errorf("parseJobDocument(%q) = %q, but the document says %v (%v)", doc, op, m["operation"], err)
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, seed := range []string{
		"$aws/things/dev-1/jobs/get",
		"$aws/things/dev-1/jobs/start-next/accepted",
		"$aws/things/dev:1/jobs/$next/get/rejected",
		"$aws/things/dev-1/jobs/job_1/update/accepted",
		"$aws/things/dev-1/jobs/notify-next",
		"$aws/things/dev-1/jobs/get/get",
		"$aws/things/dev-1/shadow/get",
		"$aws/things/dev-1/jobs//update",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := ParseTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrNotJobsTopic) {
				t.Errorf("ParseTopic(%q) error %v does not wrap ErrNotJobsTopic", topic, err)
			}
			return
		}
		if s := got.String(); s != topic {
			t.Errorf("ParseTopic(%q).String() = %q", topic, s)
		}
		if strings.ContainsAny(got.ThingName+got.JobID, "/+#") {
			t.Errorf("ParseTopic(%q) = %+v: a name holds a topic separator or wildcard", topic, got)
		}
	})
}

func FuzzTrimStatusDetails(f *testing.F) {
	f.Add("reason", "line one\nline two", "k y", "\xff\u200b")
	f.Add("", "", "step", "ok")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		d := map[string]string{k1: v1, k2: v2}
		if err := ValidateStatusDetails(TrimStatusDetails(d)); err != nil {
			t.Errorf("ValidateStatusDetails(TrimStatusDetails(%q)) = %v", d, err)
		}
	})
}
