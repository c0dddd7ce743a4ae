package jobs

import (
	"context"
	"fmt"
)

// An Engine runs a "reboot" handler for the executions of one thing. Here
// the MQTT connection is an in-memory fake of the Jobs service; in thingd it
// is the agent's connection, which also hands every unsolicited message to
// Client.HandleMessage and calls Engine.Connected after each connect.
func ExampleEngine() {
	conn := newFakeJobs("gateway-1")
	conn.add("job-1", `{"operation":"reboot"}`)

	c := NewClient("gateway-1", conn, ClientOptions{})
	conn.setUnsolicited(func(topic string, payload []byte) { c.HandleMessage(topic, payload) })
	e := NewEngine(c, EngineOptions{})
	reported := make(chan error, 1)
	e.Register("reboot", HandlerFunc(func(ctx context.Context, ex Execution, p Progress) Result {
		_ = p.Step(ctx, map[string]string{"step": "rebooting"}) // progress is best effort
		return Result{
			Status:     StatusSucceeded,
			Details:    map[string]string{"step": "done"},
			OnReported: func(ctx context.Context, err error) { reported <- err },
		}
	}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	e.Connected()
	fmt.Println("reported:", <-reported)
	cancel()
	fmt.Println("run:", <-done)

	ex := conn.get("job-1")
	fmt.Println(ex.jobID, ex.status, ex.details)
	// Output:
	// reported: <nil>
	// run: context canceled
	// job-1 SUCCEEDED map[step:done]
}
