package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// The shadow and job HTTP actions, whose resource is thing/{thingName}.
var shadowJobActions = []string{"iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow",
	"iot:DescribeJobExecution", "iot:GetPendingJobExecutions", "iot:UpdateJobExecution", "iot:StartNextPendingJobExecution"}

// OverlyPermissive applies the IOT_POLICY_OVERLY_PERMISSIVE_CHECK criteria
// (aws-iot-protocol.md §5.1) to a policy and returns what is too broad, one
// line per allowed action and resource, or nothing for a compliant policy.
// An Allow statement is too broad when it grants
//   - iot:Connect on any client ID (client/* or a leading wildcard), or on
//     client/${iot:ClientId} without the condition
//     iot:Connection.Thing.IsAttached = true;
//   - iot:Publish on any thing's reserved topics (topic/$aws/things/* ...),
//     or on every topic;
//   - iot:Subscribe on a filter reaching any thing's reserved topics
//     (topicfilter/$aws/things/*, .../$aws/things/#, .../$aws/things/+/...),
//     or on every filter;
//   - the shadow and job HTTP actions on thing/* (any thing).
//
// A wildcard after a specific prefix (thing/MyThing*) is limited, and
// iot:Receive is never flagged (delivery also needs a subscription). A
// resource is matched literally: policy variables are not expanded.
func OverlyPermissive(doc *policy.Document) []string {
	var out []string
	for _, st := range doc.Statements {
		if st.Effect != policy.Allow {
			continue
		}
		resources := st.Resources
		if len(st.NotResources) > 0 {
			resources = []string{"*"} // everything but a few: broad
		}
		attached := requiresAttached(st)
		for _, res := range resources {
			for _, a := range []struct {
				action, kind string
				broad        func(string) bool
			}{
				{"iot:Connect", "client", func(rest string) bool { return wildStart(rest) || rest == "${iot:ClientId}" && !attached }},
				{"iot:Publish", "topic", broadTopic},
				{"iot:Subscribe", "topicfilter", broadFilter},
			} {
				if !allows(st, a.action) {
					continue
				}
				if rest, ok := resourceOf(res, a.kind); ok && a.broad(rest) {
					out = append(out, fmt.Sprintf("%s on %s", a.action, res))
				}
			}
			for _, action := range shadowJobActions {
				if rest, ok := resourceOf(res, "thing"); ok && allows(st, action) && wildStart(rest) {
					out = append(out, fmt.Sprintf("%s on %s", action, res))
				}
			}
		}
	}
	return slices.Compact(out)
}

// MisconfigurationFinding is a IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK
// finding: a reason code and what causes it.
type MisconfigurationFinding struct {
	Code   string
	Detail string
}

// Misconfigured applies the IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK
// criteria to a policy:
//   - POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT: a Deny statement's
//     topic or topicfilter resource contains + or #, which are literal in
//     policies, so the statement denies much less than it seems to;
//   - TOPIC_FILTERS_INTENDED_TO_DENY_ALLOWED_USING_WILDCARDS: a topic filter
//     denied to Subscribe (with no Receive deny for it) can still be reached
//     by subscribing to an MQTT wildcard filter (such as a/# or a/+/c) that
//     an Allow statement grants and no Deny refuses.
func Misconfigured(doc *policy.Document) []MisconfigurationFinding {
	literal := literalDocument(doc)
	var out []MisconfigurationFinding
	for _, st := range doc.Statements {
		if st.Effect != policy.Deny {
			continue
		}
		for _, res := range st.Resources {
			for _, kind := range []string{"topic", "topicfilter"} {
				if rest, ok := resourceOf(res, kind); ok && strings.ContainsAny(rest, "+#") {
					out = append(out, MisconfigurationFinding{ReasonMQTTWildcardsInDeny, "Deny statement with MQTT wildcards: " + res})
				}
			}
			rest, ok := resourceOf(res, "topicfilter")
			if !ok || !allows(st, policy.ActionSubscribe) || strings.ContainsAny(rest, "+#*?") ||
				decide(literal, policy.ActionReceive, "topic", rest).Result == policy.ExplicitDeny {
				continue
			}
			for _, f := range coveringFilters(rest) {
				if decide(literal, policy.ActionSubscribe, "topicfilter", f).Allowed {
					out = append(out, MisconfigurationFinding{ReasonDenyBypassedWithWildcard,
						fmt.Sprintf("topic filter %s is denied but subscribing to %s is allowed", rest, f)})
					break
				}
			}
		}
	}
	return slices.CompactFunc(out, func(a, b MisconfigurationFinding) bool { return a == b })
}

// literalDocument returns doc for static analysis: conditions dropped and
// policy variables taken as plain text (Version 2008-10-17).
func literalDocument(doc *policy.Document) *policy.Document {
	out := &policy.Document{Version: policy.Version2008}
	for _, st := range doc.Statements {
		st.Conditions = nil
		out.Statements = append(out.Statements, st)
	}
	return out
}

// decide evaluates action on the resource kind/name of this account.
func decide(doc *policy.Document, action, kind, name string) policy.Decision {
	return policy.Evaluate([]policy.Named{{Document: doc}}, policy.Request{
		Action: action, Resource: policy.ARN(registry.Region, registry.AccountID, kind, name)})
}

// allows reports whether the statement's Action (or NotAction) covers
// action, whatever its effect, resources and conditions.
func allows(st policy.Statement, action string) bool {
	st.Effect, st.Resources, st.NotResources, st.Conditions = policy.Allow, []string{"*"}, nil, nil
	return decide(&policy.Document{Version: policy.Version2008, Statements: []policy.Statement{st}}, action, "client", "x").Allowed
}

// coveringFilters returns the MQTT wildcard filters that match topic: "#",
// each prefix followed by "/#", and topic with one level replaced by "+".
func coveringFilters(topic string) []string {
	levels := strings.Split(topic, "/")
	out := []string{"#"}
	for i := 1; i < len(levels); i++ {
		out = append(out, strings.Join(levels[:i], "/")+"/#")
	}
	for i := range levels {
		l := slices.Clone(levels)
		l[i] = "+"
		out = append(out, strings.Join(l, "/"))
	}
	return out
}

// requiresAttached reports whether the statement has the condition
// iot:Connection.Thing.IsAttached = true.
func requiresAttached(st policy.Statement) bool {
	return slices.ContainsFunc(st.Conditions, func(c policy.Condition) bool {
		return (strings.HasPrefix(c.Operator, "Bool") || strings.HasPrefix(c.Operator, "StringEquals")) &&
			strings.EqualFold(c.Key, "iot:Connection.Thing.IsAttached") && slices.Contains(c.Values, "true")
	})
}

// resourceOf returns the part of a resource after kind/ ("*" for a
// resource that designates everything), or ok false if it is of another
// kind. Both ARNs and bare kind/name resources are accepted.
func resourceOf(res, kind string) (rest string, ok bool) {
	if res == "*" {
		return "*", true
	}
	if strings.HasPrefix(res, "arn:") {
		parts := strings.SplitN(res, ":", 6)
		if len(parts) < 6 {
			return "", false
		}
		res = parts[5]
	}
	if wildStart(res) {
		return "*", true
	}
	return strings.CutPrefix(res, kind+"/")
}

// wildStart reports whether a resource name starts with an IAM wildcard,
// that is, is not limited by a specific prefix.
func wildStart(s string) bool { return strings.HasPrefix(s, "*") || strings.HasPrefix(s, "?") }

// broadTopic reports whether a Publish topic pattern reaches every topic or
// any thing's reserved topics.
func broadTopic(rest string) bool {
	if wildStart(rest) {
		return true
	}
	thing, ok := strings.CutPrefix(rest, "$aws/things/")
	return ok && (thing == "" || wildStart(thing))
}

// broadFilter is broadTopic for Subscribe filters, where the MQTT
// wildcards + and # in the filter string also reach every thing.
func broadFilter(rest string) bool {
	if wildStart(rest) || rest == "#" || strings.HasPrefix(rest, "+/") || rest == "$aws/#" {
		return true
	}
	thing, ok := strings.CutPrefix(rest, "$aws/things/")
	return ok && (thing == "" || wildStart(thing) || strings.HasPrefix(thing, "+") || strings.HasPrefix(thing, "#"))
}
