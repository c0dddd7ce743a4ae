package jobs

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTopicBuilders(t *testing.T) {
	const p = "$aws/things/dev-1/jobs/"
	tests := []struct {
		name, got, want string
	}{
		{"get-pending", GetPendingTopic("dev-1"), p + "get"},
		{"get-pending accepted", AcceptedTopic(GetPendingTopic("dev-1")), p + "get/accepted"},
		{"get-pending rejected", RejectedTopic(GetPendingTopic("dev-1")), p + "get/rejected"},
		{"start-next", StartNextTopic("dev-1"), p + "start-next"},
		{"start-next accepted", AcceptedTopic(StartNextTopic("dev-1")), p + "start-next/accepted"},
		{"start-next rejected", RejectedTopic(StartNextTopic("dev-1")), p + "start-next/rejected"},
		{"describe", DescribeTopic("dev-1", "job-1"), p + "job-1/get"},
		{"describe $next", DescribeTopic("dev-1", NextJobID), p + "$next/get"},
		{"describe accepted", AcceptedTopic(DescribeTopic("dev-1", "job-1")), p + "job-1/get/accepted"},
		{"describe rejected", RejectedTopic(DescribeTopic("dev-1", "job-1")), p + "job-1/get/rejected"},
		{"update", UpdateTopic("dev-1", "job-1"), p + "job-1/update"},
		{"update accepted", AcceptedTopic(UpdateTopic("dev-1", "job-1")), p + "job-1/update/accepted"},
		{"update rejected", RejectedTopic(UpdateTopic("dev-1", "job-1")), p + "job-1/update/rejected"},
		{"notify", NotifyTopic("dev-1"), p + "notify"},
		{"notify-next", NotifyNextTopic("dev-1"), p + "notify-next"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestSubscriptionFilters(t *testing.T) {
	const p = "$aws/things/dev-1/jobs/"
	want := []string{
		p + "notify-next", p + "notify",
		p + "get/accepted", p + "get/rejected",
		p + "start-next/accepted", p + "start-next/rejected",
		p + "+/get/accepted", p + "+/get/rejected",
		p + "+/update/accepted", p + "+/update/rejected",
	}
	if diff := cmp.Diff(want, SubscriptionFilters("dev-1")); diff != "" {
		t.Errorf("SubscriptionFilters(dev-1) mismatch (-want +got):\n%s", diff)
	}
}

func TestParseTopic(t *testing.T) {
	const p = "$aws/things/dev:1/jobs/"
	tests := []struct {
		topic   string
		want    Topic
		wantErr bool
	}{
		{topic: p + "get", want: Topic{ThingName: "dev:1", Operation: OpGetPending, Kind: KindRequest}},
		{topic: p + "get/accepted", want: Topic{ThingName: "dev:1", Operation: OpGetPending, Kind: KindAccepted}},
		{topic: p + "get/rejected", want: Topic{ThingName: "dev:1", Operation: OpGetPending, Kind: KindRejected}},
		{topic: p + "start-next", want: Topic{ThingName: "dev:1", Operation: OpStartNext, Kind: KindRequest}},
		{topic: p + "start-next/accepted", want: Topic{ThingName: "dev:1", Operation: OpStartNext, Kind: KindAccepted}},
		{topic: p + "start-next/rejected", want: Topic{ThingName: "dev:1", Operation: OpStartNext, Kind: KindRejected}},
		{topic: p + "job-1/get", want: Topic{ThingName: "dev:1", JobID: "job-1", Operation: OpDescribe, Kind: KindRequest}},
		{topic: p + "$next/get/accepted", want: Topic{ThingName: "dev:1", JobID: "$next", Operation: OpDescribe, Kind: KindAccepted}},
		{topic: p + "job-1/get/rejected", want: Topic{ThingName: "dev:1", JobID: "job-1", Operation: OpDescribe, Kind: KindRejected}},
		{topic: p + "job_1/update", want: Topic{ThingName: "dev:1", JobID: "job_1", Operation: OpUpdate, Kind: KindRequest}},
		{topic: p + "job-1/update/accepted", want: Topic{ThingName: "dev:1", JobID: "job-1", Operation: OpUpdate, Kind: KindAccepted}},
		{topic: p + "job-1/update/rejected", want: Topic{ThingName: "dev:1", JobID: "job-1", Operation: OpUpdate, Kind: KindRejected}},
		{topic: p + "notify", want: Topic{ThingName: "dev:1", Kind: KindNotify}},
		{topic: p + "notify-next", want: Topic{ThingName: "dev:1", Kind: KindNotifyNext}},
		// Job ids that look like keywords are still job ids where a job id goes.
		{topic: p + "get/get", want: Topic{ThingName: "dev:1", JobID: "get", Operation: OpDescribe, Kind: KindRequest}},
		{topic: p + "notify/update/accepted", want: Topic{ThingName: "dev:1", JobID: "notify", Operation: OpUpdate, Kind: KindAccepted}},
		{topic: p + "accepted/get", want: Topic{ThingName: "dev:1", JobID: "accepted", Operation: OpDescribe, Kind: KindRequest}},

		{topic: "", wantErr: true},
		{topic: "$aws/things/dev-1/shadow/get", wantErr: true},
		{topic: "$aws/things//jobs/get", wantErr: true},
		{topic: "$aws/things/dev 1/jobs/get", wantErr: true},
		{topic: "things/dev-1/jobs/get", wantErr: true},
		{topic: p, wantErr: true},
		{topic: p + "accepted", wantErr: true},
		{topic: p + "notify/accepted", wantErr: true},
		{topic: p + "notify-next/rejected", wantErr: true},
		{topic: p + "get/accepted/accepted", wantErr: true},
		{topic: p + "$next/update", wantErr: true},
		{topic: p + "job.1/get", wantErr: true},
		{topic: p + "/get", wantErr: true},
		{topic: p + "job-1/delete", wantErr: true},
		{topic: p + "job-1/get/other", wantErr: true},
		{topic: p + "a/b/get", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTopic(tt.topic)
		if tt.wantErr {
			if err == nil || !errors.Is(err, ErrNotJobsTopic) {
				t.Errorf("ParseTopic(%q) = %+v, %v; want an error wrapping ErrNotJobsTopic", tt.topic, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTopic(%q): %v", tt.topic, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseTopic(%q) = %+v, want %+v", tt.topic, got, tt.want)
		}
		if s := got.String(); s != tt.topic {
			t.Errorf("ParseTopic(%q).String() = %q", tt.topic, s)
		}
	}
}
