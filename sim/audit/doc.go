// Package audit is thingsim's Device Defender audit (aws-iot-protocol.md
// §5): audit checks run on demand or on a schedule over the registry, the
// connection history the broker records, the simulator CA's revocation list
// and the IoT policies; tasks and findings with AWS's fields; the completion
// notification; mitigation actions and mitigation actions tasks; and
// thingsim's remediation rules, which apply mitigation actions by themselves
// when an audit completes. Everything is stored in the registry's bbolt
// database and survives a restart.
//
// # Checks
//
//	DEVICE_CERTIFICATE_EXPIRING_CHECK  MEDIUM    ACTIVE certificates expiring within
//	                                             CERT_EXPIRATION_THRESHOLD_IN_DAYS (30..3652, default 30) or expired
//	DEVICE_CERTIFICATE_AGE_CHECK       LOW       ACTIVE certificates registered (creationDate) at least
//	                                             CERT_AGE_THRESHOLD_IN_DAYS ago (30..3652, default 365); disabled by default
//	CA_CERTIFICATE_EXPIRING_CHECK      MEDIUM    the simulator's root and the registered CAs, fixed 30 days
//	DEVICE_CERTIFICATE_SHARED_CHECK    CRITICAL  a certificate authenticating sessions with different client IDs
//	                                             at the same time
//	CONFLICTING_CLIENT_IDS_CHECK       HIGH      a client ID whose sessions were taken over (DUPLICATE_CLIENTID)
//	                                             ConflictThreshold (2) or more times
//	REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK  MEDIUM  ACTIVE certificates on their issuer's revocation list
//	                                             (the simulator CA's; see ca.CA.Revoke)
//	IOT_POLICY_OVERLY_PERMISSIVE_CHECK CRITICAL  default policy versions, see OverlyPermissive
//	IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK  MEDIUM  default policy versions, see Misconfigured
//	                                             (the SDK spelling ..._MIS_CONFIGURATION_CHECK is accepted)
//
// The certificate checks apply to ACTIVE certificates only (AWS: ACTIVE or
// PENDING_TRANSFER), so a certificate retired INACTIVE after a rotation no
// longer counts: once a device has rotated, the next audit is compliant.
// totalResourcesCount is the number of resources a check looked at.
// The connection checks read the admitted sessions of the last 31 days (on
// demand) or since the scheduled audit's previous run, without AWS's data
// collection delay. Other AWS checks are refused by the configuration.
//
// # Configuration, tasks and schedules
//
// Until configured, every check above is enabled except
// DEVICE_CERTIFICATE_AGE_CHECK. An audit task (ON_DEMAND_AUDIT_TASK or
// SCHEDULED_AUDIT_TASK) runs in the background; naming no check means every
// enabled one. Scheduled audits run DAILY at midnight UTC, WEEKLY or
// BIWEEKLY on dayOfWeek, MONTHLY on dayOfMonth (or LAST), or, thingsim's
// extension for tests, every ScheduledAudit.ThingsimInterval.
//
// # Notifications
//
// When a task ends, its Notification (the SNS message shape, auditDetails an
// array, taskStartTime in milliseconds) is published on the MQTT topic
// NotificationTopic (thingsim/audit/notifications) and, when the SNS target
// is enabled and its targetArn is an http:// or https:// URL, POSTed there
// as JSON. PUBLISH_FINDING_TO_SNS publishes a FindingMessage on FindingTopic
// (thingsim/audit/findings) and POSTs it to its topicArn if that is a URL.
//
// # Mitigation and remediation
//
// Mitigation actions: UPDATE_DEVICE_CERTIFICATE (DEACTIVATE: INACTIVE, live
// connections closed), ADD_THINGS_TO_THING_GROUP (the things the
// certificate is attached to; continuous jobs of the group start on them),
// REPLACE_DEFAULT_POLICY_VERSION (templateName BLANK_POLICY: a new default
// version with Policies.RestrictiveDocument, the thingd-device policy; if
// the policy has 5 versions the oldest non-default one is deleted first) and
// PUBLISH_FINDING_TO_SNS. An action whose type does not apply to a check
// (§5.6) is SKIPPED for its findings. A remediation rule maps a check to
// actions; when an audit task completes with that check non-compliant, the
// mitigation actions task RemediationTaskID(taskId) applies them, created
// in the same transaction that completes the audit task.
package audit
