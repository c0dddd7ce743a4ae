// Package jobs is the device side of AWS IoT Jobs (aws-iot-protocol.md §1):
// wire types and topics, a client (get-pending, start-next, describe, update
// with expectedVersion) and an engine that dispatches a job document's
// operation to a Handler. It imports nothing of thingd's own; it declares the
// small MQTT interface it needs.
//
// # Topics and wire types
//
// ParseTopic and the topic builders (StartNextTopic, UpdateTopic, ...) cover
// every topic of the device API. The request and reply structs carry the
// service's exact JSON field names; a rejected reply becomes a
// *RejectedError with one of the Code... constants.
//
// # Client
//
// A Client publishes requests and matches replies to them by a random
// clientToken. AWS sends accepted/rejected replies to the requester even
// without a subscription, so the caller hands every unsolicited message to
// Client.HandleMessage; Client.Start also subscribes to the reply topics and
// to notify and notify-next. Requests are checked against the service's
// limits (job id, statusDetails, step timeout) before they are sent. A
// request with no reply within ClientOptions.Timeout fails with an error
// naming the topic.
//
// # Engine
//
// An Engine runs one execution at a time. After every Connected call and
// every notify-next naming an execution it calls start-next, reads the job
// document's "operation" and calls the registered Handler. A document that
// is too large, not an object or names no known operation is REJECTED with a
// "reason"; a handler that panics is FAILED. While the handler runs it may
// report steps through its Progress (IN_PROGRESS updates with
// expectedVersion). If the execution ends in the cloud meanwhile (canceled,
// removed, timed out), the handler's context is cancelled.
//
// # Persistence and restarts
//
// Through a Persister the engine saves, as JSON, the execution before its
// handler runs ({"jobId","executionNumber","versionNumber","operation"}) and
// the terminal outcome before it is sent ("outcome":{"status",
// "statusDetails"}). An outcome that could not be delivered (offline, no
// reply) is retried every RetryDelay and after each Connected call, also
// after a restart, until the cloud accepts it or says the execution has
// already ended. An execution found still IN_PROGRESS after a restart is
// handed to the handler's Resume if it is a Resumer, and reported FAILED
// (RestartedReason) otherwise.
package jobs
