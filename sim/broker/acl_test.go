package broker_test

import (
	"testing"

	"github.com/thingd/thingd/sim/broker"
)

func TestThingOfReservedTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		thing string
		ok    bool
	}{
		{"$aws/things/dev1/jobs/get", "dev1", true},
		{"$aws/things/dev1/jobs/$next/get/accepted", "dev1", true},
		{"$aws/things/dev1/jobs/notify-next", "dev1", true},
		{"$aws/things/+/jobs/notify", "+", true},
		{"$aws/things/dev1/#", "dev1", true},
		{"$aws/things/dev1/+/notify", "dev1", true},
		{"$aws/things/dev1/shadow/update", "dev1", true},
		{"$aws/things/dev1/shadow/name/cfg/update/delta", "dev1", true},
		{"$aws/things/+/shadow/update/accepted", "+", true},
		{"$aws/things/dev1/shadowy", "", false},
		{"$aws/things/dev1/tunnels/notify", "", false},
		{"$aws/things/dev1", "", false},
		{"$aws/things/#", "", false},
		{"$aws/events/presence/connected/dev1", "", false},
		{"dev1/jobs/get", "", false},
	} {
		thing, ok := broker.ThingOfReservedTopic(tc.topic)
		if thing != tc.thing || ok != tc.ok {
			t.Errorf("ThingOfReservedTopic(%q) = %q, %v; want %q, %v", tc.topic, thing, ok, tc.thing, tc.ok)
		}
	}
}
