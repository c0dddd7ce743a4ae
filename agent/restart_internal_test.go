package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/config"
)

// A reload restarts the agent (identity kept) for what it cannot change
// live, the gateway's children among them, and not for live settings.
func TestRestartNeeded(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{ThingName: "gw-1", Endpoint: "localhost:8883", LogLevel: 0,
			Gateway: config.Gateway{SystemFacts: true, Children: []config.Child{{Name: "s", ThingName: "gw-1-s", Adapter: "line",
				PollInterval: time.Second}}}}
	}
	cases := []struct {
		name   string
		change func(c *config.Config)
		want   []string
	}{
		{"nothing", func(c *config.Config) {}, nil},
		{"log level", func(c *config.Config) { c.LogLevel = 4 }, nil},
		{"endpoint", func(c *config.Config) { c.Endpoint = "other:8883" }, []string{"endpoint"}},
		{"child poll interval", func(c *config.Config) { c.Gateway.Children[0].PollInterval = 2 * time.Second }, []string{"gateway"}},
		{"child added", func(c *config.Config) {
			c.Gateway.Children = append(c.Gateway.Children, config.Child{Name: "m", Adapter: "modbus"})
		}, []string{"gateway"}},
		{"system facts off", func(c *config.Config) { c.Gateway.SystemFacts = false }, []string{"gateway"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := base()
			tc.change(next)
			if got := restartNeeded(base(), next); !slices.Equal(got, tc.want) {
				t.Errorf("restartNeeded = %v, want %v", got, tc.want)
			}
		})
	}
}
