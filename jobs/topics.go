package jobs

import (
	"errors"
	"fmt"
	"strings"
)

// Operation names one of the four request operations of the Jobs device API
// (aws-iot-protocol.md §1.3).
type Operation string

// The Jobs request operations. The values are thingd's names, used in errors
// and logs; they are not sent on the wire.
const (
	OpGetPending Operation = "get-pending" // $aws/things/{thing}/jobs/get
	OpStartNext  Operation = "start-next"  // $aws/things/{thing}/jobs/start-next
	OpDescribe   Operation = "describe"    // $aws/things/{thing}/jobs/{jobId}/get
	OpUpdate     Operation = "update"      // $aws/things/{thing}/jobs/{jobId}/update
)

// Kind says what a Jobs topic carries: a request, its accepted or rejected
// reply, or one of the two notifications.
type Kind string

// Topic kinds.
const (
	KindRequest    Kind = "request"
	KindAccepted   Kind = "accepted"
	KindRejected   Kind = "rejected"
	KindNotify     Kind = "notify"      // $aws/things/{thing}/jobs/notify
	KindNotifyNext Kind = "notify-next" // $aws/things/{thing}/jobs/notify-next
)

// NextJobID is the job id that DescribeJobExecution accepts for "the next
// pending execution".
const NextJobID = "$next"

// ErrNotJobsTopic is wrapped by ParseTopic's error for a topic that is not
// one of the Jobs device API topics.
var ErrNotJobsTopic = errors.New("not a Jobs device API topic")

const (
	topicPrefix  = "$aws/things/"
	topicJobsSeg = "jobs"
)

// Topic is a parsed Jobs device API topic. Its zero value is not a valid
// topic.
type Topic struct {
	// ThingName is the thing the topic belongs to.
	ThingName string
	// JobID is set for OpDescribe (possibly NextJobID) and OpUpdate, empty
	// otherwise.
	JobID string
	// Operation is the request operation; empty for the notification kinds.
	Operation Operation
	// Kind is request, accepted, rejected, notify or notify-next.
	Kind Kind
}

// String returns the MQTT topic name of t. ParseTopic(t.String()) gives t
// back for every t that ParseTopic returned.
func (t Topic) String() string {
	var b strings.Builder
	b.WriteString(topicPrefix)
	b.WriteString(t.ThingName)
	b.WriteString("/" + topicJobsSeg + "/")
	switch t.Kind {
	case KindNotify, KindNotifyNext:
		b.WriteString(string(t.Kind))
		return b.String()
	}
	switch t.Operation {
	case OpGetPending:
		b.WriteString("get")
	case OpStartNext:
		b.WriteString("start-next")
	case OpDescribe:
		b.WriteString(t.JobID + "/get")
	case OpUpdate:
		b.WriteString(t.JobID + "/update")
	}
	if t.Kind == KindAccepted || t.Kind == KindRejected {
		b.WriteString("/" + string(t.Kind))
	}
	return b.String()
}

// request returns the request topic that t (a reply) answers.
func (t Topic) request() Topic {
	t.Kind = KindRequest
	return t
}

// what names the request for errors and logs: "update job-1", "start-next".
func (t Topic) what() string {
	if t.JobID == "" {
		return string(t.Operation)
	}
	return string(t.Operation) + " " + t.JobID
}

// ParseTopic parses a topic of the Jobs device API (aws-iot-protocol.md
// §1.1): $aws/things/{thingName}/jobs/... . It checks the thing name and
// job id against their patterns; the job id may be "$next" only for
// describe. An error wraps ErrNotJobsTopic.
func ParseTopic(topic string) (Topic, error) {
	fail := func(why string) (Topic, error) {
		return Topic{}, fmt.Errorf("jobs: topic %q: %s: %w", topic, why, ErrNotJobsTopic)
	}
	rest, ok := strings.CutPrefix(topic, topicPrefix)
	if !ok {
		return fail("does not start with " + topicPrefix)
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 3 || segs[1] != topicJobsSeg {
		return fail("not under $aws/things/{thingName}/jobs/")
	}
	t := Topic{ThingName: segs[0]}
	if err := ValidateThingName(t.ThingName); err != nil {
		return fail(err.Error())
	}
	segs = segs[2:]
	// A reply ends in accepted or rejected; strip it and parse the request.
	t.Kind = KindRequest
	if n := len(segs); n >= 2 && (segs[n-1] == string(KindAccepted) || segs[n-1] == string(KindRejected)) {
		t.Kind = Kind(segs[n-1])
		segs = segs[:n-1]
	}
	switch {
	case len(segs) == 1 && segs[0] == "get":
		t.Operation = OpGetPending
	case len(segs) == 1 && segs[0] == "start-next":
		t.Operation = OpStartNext
	case len(segs) == 1 && t.Kind == KindRequest && (segs[0] == string(KindNotify) || segs[0] == string(KindNotifyNext)):
		t.Kind = Kind(segs[0])
	case len(segs) == 2 && segs[1] == "get":
		t.Operation, t.JobID = OpDescribe, segs[0]
		if t.JobID != NextJobID {
			if err := ValidateJobID(t.JobID); err != nil {
				return fail(err.Error())
			}
		}
	case len(segs) == 2 && segs[1] == "update":
		t.Operation, t.JobID = OpUpdate, segs[0]
		if err := ValidateJobID(t.JobID); err != nil {
			return fail(err.Error())
		}
	default:
		return fail("names no Jobs operation")
	}
	return t, nil
}

// GetPendingTopic is where GetPendingJobExecutions requests are published.
func GetPendingTopic(thingName string) string {
	return Topic{ThingName: thingName, Operation: OpGetPending, Kind: KindRequest}.String()
}

// StartNextTopic is where StartNextPendingJobExecution requests are
// published.
func StartNextTopic(thingName string) string {
	return Topic{ThingName: thingName, Operation: OpStartNext, Kind: KindRequest}.String()
}

// DescribeTopic is where DescribeJobExecution requests for jobID (or
// NextJobID) are published.
func DescribeTopic(thingName, jobID string) string {
	return Topic{ThingName: thingName, JobID: jobID, Operation: OpDescribe, Kind: KindRequest}.String()
}

// UpdateTopic is where UpdateJobExecution requests for jobID are published.
func UpdateTopic(thingName, jobID string) string {
	return Topic{ThingName: thingName, JobID: jobID, Operation: OpUpdate, Kind: KindRequest}.String()
}

// NotifyTopic carries JobExecutionsChanged (ListNotification) messages.
func NotifyTopic(thingName string) string {
	return Topic{ThingName: thingName, Kind: KindNotify}.String()
}

// NotifyNextTopic carries NextJobExecutionChanged (NextNotification)
// messages.
func NotifyNextTopic(thingName string) string {
	return Topic{ThingName: thingName, Kind: KindNotifyNext}.String()
}

// AcceptedTopic returns the accepted-reply topic of a request topic.
func AcceptedTopic(requestTopic string) string { return requestTopic + "/" + string(KindAccepted) }

// RejectedTopic returns the rejected-reply topic of a request topic.
func RejectedTopic(requestTopic string) string { return requestTopic + "/" + string(KindRejected) }

// SubscriptionFilters returns the topic filters Client.Start subscribes to:
// notify-next, notify and the accepted/rejected replies of the four
// operations (with a "+" for the job id).
func SubscriptionFilters(thingName string) []string {
	anyJob := func(op Operation) string {
		return Topic{ThingName: thingName, JobID: "+", Operation: op, Kind: KindRequest}.String()
	}
	requests := []string{
		GetPendingTopic(thingName),
		StartNextTopic(thingName),
		anyJob(OpDescribe),
		anyJob(OpUpdate),
	}
	filters := []string{NotifyNextTopic(thingName), NotifyTopic(thingName)}
	for _, r := range requests {
		filters = append(filters, AcceptedTopic(r), RejectedTopic(r))
	}
	return filters
}
