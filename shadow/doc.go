// Package shadow is the device side of the AWS IoT Device Shadow service
// over MQTT (aws-iot-protocol.md §2): topics and wire types, a client for
// classic and named shadows, and a Reporter that keeps the reported state
// in the cloud, coalescing changes made while offline. It imports nothing
// of thingd's own; it declares the small MQTT interface it needs.
//
// # Topics and wire types
//
// ParseTopic, Prefix and SubscriptionFilters cover the topics of a shadow,
// $aws/things/{thing}/shadow/... for the classic shadow and
// $aws/things/{thing}/shadow/name/{name}/... for a named one. Document,
// Delta and ErrorResponse carry the service's JSON field names; the
// device-side parsers refuse documents whose known fields have the wrong
// shape.
//
// # Client
//
// A Client publishes get, update and delete requests and pairs replies with
// them by a random clientToken; replies of other clients (AWS sends accepted
// replies to every subscriber), other things and other shadows are not
// taken as answers. A rejected reply becomes an *ErrorResponse, which
// errors.Is matches to ErrNotFound (404) and ErrVersionConflict (409). An
// update is checked against the service's limits before it is sent
// (MaxStateBytes, the nesting depth, null in arrays); an update that fails
// them matches ErrInvalidState. A request with no reply within
// ClientOptions.Timeout fails with an error naming the topic.
//
// The Client tracks the highest version it has seen and delivers deltas on
// Client.Deltas, dropping any whose version is not newer than the last one
// delivered or the last get reply (the service does not promise ordering).
//
// # Reporter
//
// A Reporter is fed the full reported state by the agent (Reporter.Set)
// and sends only what changed since the last accepted report, as a merge
// patch (changed leaves, null for removed keys), with the version it last
// knew; a conflict makes it read the shadow and send the difference from
// what the cloud has. After each reconnect (Reporter.Connected) it reads
// the shadow once and repairs what differs.
package shadow
