package main

import (
	"context"
	"encoding/json"
	"io"

	"github.com/thingd/thingd/sim/api"
)

func shadowCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("shadow "+sub, stderr)
	client := clientFlags(fs)
	thing := fs.String("thing", "", "thing name (required)")
	var name, desired, reported *string
	if sub != "list" {
		name = fs.String("name", "", "named shadow (default: the classic shadow)")
	}
	if sub == "update" {
		desired = fs.String("desired", "", `JSON merged into the desired state, e.g. {"config":{"logLevel":"debug"}}; null removes it`)
		reported = fs.String("reported", "", "JSON merged into the reported state (as a device would report it)")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("shadow %s: unexpected argument %q", sub, pos[0])
	}
	if *thing == "" {
		return usagef("shadow %s needs --thing", sub)
	}
	var request []byte
	if sub == "update" {
		if request, err = shadowUpdate(*desired, *reported); err != nil {
			return err
		}
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch sub {
		case "get":
			return c.GetThingShadow(ctx, *thing, *name)
		case "update":
			return c.UpdateThingShadow(ctx, *thing, *name, request)
		case "delete":
			return c.DeleteThingShadow(ctx, *thing, *name)
		}
		return c.ListNamedShadowsForThing(ctx, *thing, "", 0)
	})
}

// shadowUpdate builds an update request from the --desired and --reported
// flags ("" when not given).
func shadowUpdate(desired, reported string) ([]byte, error) {
	state := map[string]json.RawMessage{}
	for _, f := range []struct{ name, value string }{{"desired", desired}, {"reported", reported}} {
		if f.value == "" {
			continue
		}
		if !json.Valid([]byte(f.value)) {
			return nil, usagef("shadow update: --%s is not JSON: %s", f.name, f.value)
		}
		state[f.name] = json.RawMessage(f.value)
	}
	if len(state) == 0 {
		return nil, usagef("shadow update needs --desired or --reported")
	}
	return json.Marshal(map[string]any{"state": state})
}
