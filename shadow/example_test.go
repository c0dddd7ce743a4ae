package shadow

import (
	"context"
	"fmt"
)

// A Reporter keeps the classic shadow's reported section equal to what the
// agent sets. Here the MQTT connection is an in-memory fake of the Shadow
// service; in thingd it is the agent's connection, which also calls
// Reporter.Connected after each connect.
func ExampleReporter() {
	conn := newFakeService("gw-1")
	c := NewClient("gw-1", "", conn, ClientOptions{})
	if err := c.Start(context.Background()); err != nil {
		fmt.Println("start:", err)
		return
	}
	r := NewReporter(c, ReporterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	r.Set(map[string]any{"fw": "1.2", "uptime": 10, "net": map[string]any{"rssi": -60}})
	r.Connected()
	fmt.Println("flush:", r.Flush(ctx))
	fmt.Println(conn.stored(""))

	r.Set(map[string]any{"fw": "1.2", "uptime": 70}) // sends {"net":null,"uptime":70}
	fmt.Println("flush:", r.Flush(ctx))
	fmt.Println(conn.stored(""))

	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// flush: <nil>
	// {"reported":{"fw":"1.2","net":{"rssi":-60},"uptime":10}} 1
	// flush: <nil>
	// {"reported":{"fw":"1.2","uptime":70}} 2
	// run: context canceled
}
