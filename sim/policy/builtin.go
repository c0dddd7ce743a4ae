package policy

import "encoding/json"

// Built-in policies thingsim creates at first start.
const (
	// DevicePolicyName is the least-privilege device policy, attached to
	// the certificates thingsim issues unless configured otherwise.
	DevicePolicyName = "thingd-device"
	// GatewayPolicyName is the gateway policy: a thing acts on its own
	// topics and on those of the things named after it, {thing}-*.
	GatewayPolicyName = "thingd-gateway"
)

// The thing name variable, as written in policies.
const thingVar = "${iot:Connection.Thing.ThingName}"

// ProvisioningTopics are the fleet provisioning topic patterns a device
// rotating its certificate with the thingd-rotation template uses
// (requests and their accepted/rejected replies).
var ProvisioningTopics = []string{
	"$aws/certificates/create-from-csr/json*",
	"$aws/provisioning-templates/thingd-rotation/provision/json*",
}

// DevicePolicy returns the document of thingd-device for a region and
// account: connect only as its own thing, with the certificate attached to
// it; publish, receive and subscribe only on its own Shadow and Jobs topics
// and on the provisioning topics of certificate rotation.
func DevicePolicy(region, account string) string {
	return topicPolicy(region, account, ownTopics)
}

// GatewayPolicy returns the document of thingd-gateway: thingd-device's
// permissions, plus the Shadow topics (classic and named shadows) of every
// thing whose name is the gateway's followed by "-" (thing gw reports for
// gw-1, gw-sensor, ...). Not their Jobs: the gateway does not run jobs for
// the devices behind it.
func GatewayPolicy(region, account string) string {
	return topicPolicy(region, account, append(ownTopics, "$aws/things/"+thingVar+"-*/shadow/*"))
}

// ownTopics are the Shadow and Jobs topics of the connection's own thing.
var ownTopics = []string{"$aws/things/" + thingVar + "/shadow/*", "$aws/things/" + thingVar + "/jobs/*"}

// topicPolicy is a device policy on the given topics and those of
// certificate rotation.
func topicPolicy(region, account string, thingTopics []string) string {
	arn := func(kind, name string) string { return ARN(region, account, kind, name) }
	topics := append(append([]string(nil), thingTopics...), ProvisioningTopics...)
	resources := func(kind string) []string {
		out := make([]string, len(topics))
		for i, t := range topics {
			out[i] = arn(kind, t)
		}
		return out
	}
	type statement struct {
		Sid       string                       `json:"Sid"`
		Effect    string                       `json:"Effect"`
		Action    []string                     `json:"Action"`
		Resource  []string                     `json:"Resource"`
		Condition map[string]map[string]string `json:"Condition,omitempty"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{Version2012, []statement{
		{Sid: "ConnectAsOwnThing", Effect: Allow, Action: []string{ActionConnect},
			Resource:  []string{arn("client", thingVar)},
			Condition: map[string]map[string]string{"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
		{Sid: "PublishReceiveOwnTopics", Effect: Allow, Action: []string{ActionPublish, ActionReceive}, Resource: resources("topic")},
		{Sid: "SubscribeOwnTopics", Effect: Allow, Action: []string{ActionSubscribe}, Resource: resources("topicfilter")},
	}}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // static shape
	}
	return string(data)
}
