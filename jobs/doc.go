// Package jobs is the device side of AWS IoT Jobs: wire types and topics, a
// client (start-next, update with expectedVersion, describe) and an engine that
// dispatches a job document's operation to a Handler. It imports nothing of
// thingd's own; it declares the small MQTT interface it needs.
//
// The package is laid out by the repository foundation; its code arrives with
// the Jobs issue.
package jobs
