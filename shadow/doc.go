// Package shadow is the device side of the AWS IoT Device Shadow service:
// wire types and topics, a client for classic and named shadows and a reporter
// that coalesces reported state while offline. It imports nothing of thingd's
// own.
//
// The package is laid out by the repository foundation; its code arrives with
// the Shadow issue.
package shadow
