package shadow

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says what a shadow topic carries.
type Kind string

// Topic kinds. Delta and documents exist only for OpUpdate.
const (
	KindRequest   Kind = "request"   // .../get, .../update, .../delete (published by the device)
	KindAccepted  Kind = "accepted"  // .../{op}/accepted
	KindRejected  Kind = "rejected"  // .../{op}/rejected
	KindDelta     Kind = "delta"     // .../update/delta
	KindDocuments Kind = "documents" // .../update/documents
)

// ErrNotShadowTopic is wrapped by ParseTopic's error for a topic that is not
// one of the Device Shadow MQTT topics.
var ErrNotShadowTopic = errors.New("not a Device Shadow topic")

const thingsRoot = "$aws/things/"

// Topic is a parsed Device Shadow topic (aws-iot-protocol.md §2.1). Its zero
// value is not a valid topic.
type Topic struct {
	// ThingName is the thing the shadow belongs to.
	ThingName string
	// ShadowName names a named shadow; empty for the classic shadow.
	ShadowName string
	// Operation is get, update or delete.
	Operation Operation
	// Kind is request, accepted, rejected, delta or documents.
	Kind Kind
}

// Prefix returns the topic prefix of a shadow: $aws/things/{thing}/shadow
// for the classic shadow (shadowName ""), and
// $aws/things/{thing}/shadow/name/{shadowName} for a named one.
func Prefix(thingName, shadowName string) string {
	if shadowName == "" {
		return thingsRoot + thingName + "/shadow"
	}
	return thingsRoot + thingName + "/shadow/name/" + shadowName
}

// String returns the MQTT topic name of t. ParseTopic(t.String()) gives t
// back for every t that ParseTopic returned.
func (t Topic) String() string {
	s := Prefix(t.ThingName, t.ShadowName) + "/" + string(t.Operation)
	if t.Kind != KindRequest {
		s += "/" + string(t.Kind)
	}
	return s
}

// ParseTopic parses a Device Shadow topic, classic or named. It checks the
// thing and shadow names against their patterns. An error wraps
// ErrNotShadowTopic.
func ParseTopic(topic string) (Topic, error) {
	bad := func(why string) (Topic, error) {
		return Topic{}, fmt.Errorf("shadow: topic %q: %s: %w", topic, why, ErrNotShadowTopic)
	}
	rest, ok := strings.CutPrefix(topic, thingsRoot)
	if !ok {
		return bad("does not start with " + thingsRoot)
	}
	var t Topic
	t.ThingName, rest, _ = strings.Cut(rest, "/")
	if rest, ok = strings.CutPrefix(rest, "shadow/"); !ok {
		return bad("not under $aws/things/{thingName}/shadow/")
	}
	if named, ok := strings.CutPrefix(rest, "name/"); ok {
		if t.ShadowName, rest, ok = strings.Cut(named, "/"); !ok {
			return bad("a named shadow topic without an operation")
		}
		if err := ValidateShadowName(t.ShadowName); err != nil {
			return bad(err.Error())
		}
	}
	if err := ValidateThingName(t.ThingName); err != nil {
		return bad(err.Error())
	}
	op, kind, replied := strings.Cut(rest, "/")
	switch t.Operation = Operation(op); t.Operation {
	case OpGet, OpUpdate, OpDelete:
	default:
		return bad(fmt.Sprintf("%q is not get, update or delete", op))
	}
	t.Kind = KindRequest
	if replied {
		switch t.Kind = Kind(kind); t.Kind {
		case KindAccepted, KindRejected:
		case KindDelta, KindDocuments:
			if t.Operation != OpUpdate {
				return bad(kind + " exists only under update")
			}
		default:
			return bad(fmt.Sprintf("%q is not accepted, rejected, delta or documents", kind))
		}
	}
	return t, nil
}

// SubscriptionFilters returns the topics Client.Start subscribes to, in this
// order: the accepted and rejected replies of get, update and delete, then
// update/delta and update/documents. They are exact topics: AWS advises
// against wildcards under the shadow tree.
func SubscriptionFilters(thingName, shadowName string) []string {
	var filters []string
	for _, op := range []Operation{OpGet, OpUpdate, OpDelete} {
		for _, k := range []Kind{KindAccepted, KindRejected} {
			filters = append(filters, Topic{thingName, shadowName, op, k}.String())
		}
	}
	for _, k := range []Kind{KindDelta, KindDocuments} {
		filters = append(filters, Topic{thingName, shadowName, OpUpdate, k}.String())
	}
	return filters
}
