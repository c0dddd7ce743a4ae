// Package shadow is thingsim's AWS IoT Device Shadow service: the classic
// and named shadows of every thing, their MQTT API, and the operations the
// admin API serves as GetThingShadow, UpdateThingShadow, DeleteThingShadow
// and ListNamedShadowsForThing. Shadows are stored in the registry's bbolt
// database and survive a restart. It is a protocol peer of thingd's shadow
// package and shares no code with it.
//
// # MQTT API (aws-iot-protocol.md §2)
//
// With P = $aws/things/{thingName}/shadow (classic) or
// $aws/things/{thingName}/shadow/name/{shadowName} (named):
//
//	P/get     → P/get/accepted    (document: state with delta, metadata, version)  | P/get/rejected
//	P/update  → P/update/accepted (the request's sections, their metadata)          | P/update/rejected
//	            P/update/delta    (every desired value reported does not match)
//	            P/update/documents (previous and current, previous left out for a new shadow)
//	P/delete  → P/delete/accepted ({"version", "timestamp"})                       | P/delete/rejected
//
// Replies are published to the subscribers of the reply topic, not written
// to the requester alone: AWS lists the shadow reply topics as plain
// "Subscribe" topics (aws-iot-protocol.md §2.1), so a client must subscribe
// to .../accepted and .../rejected before it publishes a request, and every
// subscriber of a topic (any connection of that thing, here) sees the
// replies. Requests are not delivered to subscribers of the request topics.
// Only a thing's own connection (ClientID = thing name) may publish to,
// subscribe to or receive its shadow topics; the broker refuses the others
// as it does for Jobs. Updates through the admin API publish
// update/accepted, delta and documents the same way, deletes
// delete/accepted.
//
// Errors have the AWS shape {"code", "message", "timestamp", "clientToken"}
// and messages: 400 Invalid JSON, Missing required node: state, State node
// must be an object, Desired node must be an object, Reported node must be
// an object, Invalid version, Invalid clientToken (more than 64 bytes or not
// a string), JSON contains too many levels of nesting; maximum is 6, State
// contains an invalid node: 'NAME'; 404 No shadow exists with name: 'NAME'
// (the thing name for the classic shadow); 409 Version conflict; 413 The
// payload exceeds the maximum size allowed; 415 Unsupported documented
// encoding; supported encoding is UTF-8.
//
// # Documents
//
// An update merges state.desired and state.reported into the shadow: null
// removes a key (a section set to null, or "state": null, removes the
// section), objects merge key by key, arrays and other values replace the
// old value whole. Arrays may not contain null. Every written leaf gets
// metadata {"timestamp": T} (epoch seconds; arrays get one entry per
// element), and the version grows by one. A request "version" must equal
// the current version (409 otherwise). The delta is computed by walking
// desired: a value reported lacks or has different (numbers compared by
// value, arrays whole) is in it, nested objects only with their differing
// leaves; its metadata is desired's. Deleting a shadow keeps its version
// for 48 hours: an update in that time continues the sequence.
//
// Limits: desired plus reported (compact JSON, metadata excluded) at most
// 8192 bytes, in the request and in the merged shadow (413); nesting at
// most 6 levels counting the state object as one (Options.MaxDepth); shadow
// names match [$a-zA-Z0-9:_-]{1,64}.
//
// # Choices where AWS's documentation is silent or conflicting
//
//   - The depth limit: the error message says 6, the 2019 limits 5 levels
//     inside desired, a later summary 8. Counting the state object as level
//     1 reconciles the first two (AWS's own Greengrass shadow manager counts
//     so); Options.MaxDepth changes it.
//   - /update/delta is published after every accepted update that leaves a
//     delta, reported-only updates included (as the Greengrass shadow
//     manager does), with the update's clientToken.
//   - An object emptied by nulls is removed, so stored state never holds an
//     empty object; an update setting a key to {} therefore removes a
//     non-object value there.
//   - The state node may hold only desired and reported; any other key (not
//     only delta) is 400 State contains an invalid node.
//   - A null inside an array is 400 Invalid JSON. A "version" that is not a
//     whole number ≥ 0 is 400 Invalid version; "version": null counts as
//     absent.
//   - get and delete ignore their payload except for a clientToken in a
//     JSON object (which must be valid). A request on a named shadow whose
//     name breaks the pattern is rejected with 400 Invalid shadow name.
//   - Publishes on the reply topics are swallowed; in-flight (429) and rate
//     limits are not enforced.
//   - The admin API serves a thing's shadows whether or not the thing is
//     registered (AWS does not check either); over MQTT the thing always
//     exists, since only its own connection may publish.
package shadow
