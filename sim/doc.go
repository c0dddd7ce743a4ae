// Package sim is thingsim, a local stand-in for AWS IoT Core: a mutual-TLS
// MQTT broker with AWS's admission rules, limits and lifecycle events
// (sim/broker), a thing, certificate and thing group registry in bbolt
// (sim/registry), a CA that signs device CSRs (sim/ca), the Jobs service
// (sim/jobs), the Device Shadow service with classic and named shadows
// (sim/shadow), fleet provisioning with the cloud half of thingd's
// certificate rotation (sim/provision) and an admin HTTP API with AWS IoT
// control-plane and shadow data-plane paths and shapes (sim/api). IoT
// policies (engine in sim/policy, stored in the registry) are enforced by
// the broker on connect, publish, subscribe and delivery; the built-in
// least-privilege thingd-device policy is attached to the certificates the
// simulator issues (Options.DefaultPolicy), thingd-gateway lets a thing act
// on things named after it ({thing}-*). Device Defender audits, with mitigation actions
// and thingsim's automatic remediation rules, are in sim/audit. It is a protocol peer of thingd and never imports
// agent, jobs or shadow.
//
// [Start] runs everything in process on one data directory; the thingsim
// command (sim/cmd/thingsim) is a thin wrapper around it and the API client.
//
// # Faults for tests
//
// [Server.SetFaults], [Options.Faults], PUT /thingsim/faults and
// `thingsim faults --set` make CreateCertificateFromCsr and RegisterThing
// misbehave on purpose (reject, no reply, a certificate for another key or
// CN, expired, from an untrusted CA; refuse registration, or deactivate the
// certificate right after it); see provision.Faults. A fault applies to the
// next Count requests of its operation, or with Count 0 until replaced.
//
// # Data directory
//
//	ca.pem, ca-key.pem          root CA (ECDSA P-256; key mode 0600) devices trust
//	crl.pem                     the root's revocation list (UpdateCertificate REVOKED, PUT /thingsim/ca/revocations/ID)
//	server.pem, server-key.pem  broker certificate for localhost, 127.0.0.1, ::1
//	admin-token                 bearer token of the admin API (mode 0600)
//	registry.db                 bbolt database: things, certificates, attachments, thing groups,
//	                            policies and their versions and targets, history; jobs and executions; shadows (deleted ones keep their
//	                            version); ownership tokens, pending retirements
//	api.json                    addresses of the running server ([Info]); removed on Close
package sim
