// Package jobs is thingsim's AWS IoT Jobs service: jobs targeting things and
// static thing groups (SNAPSHOT or CONTINUOUS), one execution per targeted
// thing, the device MQTT API on $aws/things/{thingName}/jobs/..., the
// notify and notify-next notifications and the job execution events. Jobs
// and executions are stored in the registry's bbolt database and survive a
// restart, step timers included. It is a protocol peer of thingd's jobs
// package and shares no code with it.
//
// # Device MQTT API (aws-iot-protocol.md §1)
//
//	$aws/things/T/jobs/get                 GetPendingJobExecutions
//	$aws/things/T/jobs/start-next          StartNextPendingJobExecution
//	$aws/things/T/jobs/{jobId|$next}/get   DescribeJobExecution (includeJobDocument defaults to true)
//	$aws/things/T/jobs/{jobId}/update      UpdateJobExecution
//
// Replies go to request topic + "/accepted" or "/rejected", straight to the
// requesting connection (see broker.Request.Reply), with the request's
// clientToken and a timestamp in epoch seconds. Rejections carry the AWS
// codes InvalidTopic, InvalidJson, InvalidRequest, InvalidStateTransition,
// ResourceNotFound, VersionMismatch, TerminalStateReached and InternalError;
// InvalidStateTransition and VersionMismatch carry the current
// executionState.
//
// # Choices where AWS's documentation is silent (aws-iot-protocol.md §9)
//
//   - An empty request payload counts as {} (no field of get, start-next or
//     describe is required).
//   - A device may move a QUEUED execution straight to SUCCEEDED, FAILED or
//     REJECTED. It may set only IN_PROGRESS, SUCCEEDED, FAILED and REJECTED;
//     the other statuses are InvalidStateTransition, unknown ones
//     InvalidRequest. Nothing leaves a terminal status.
//   - versionNumber starts at 1 and grows by one with every change of the
//     execution, by the device (each accepted update) or by the service
//     (TIMED_OUT, CANCELED, REMOVED).
//   - statusDetails in an update replace the stored map; absent means
//     unchanged.
//   - $next/get and start-next with nothing pending answer accepted without
//     an execution. {jobId}/get of a terminal execution is rejected with
//     TerminalStateReached. InvalidTopic goes to the request topic +
//     "/rejected".
//   - Each thing keeps the latest execution of a job only: executionNumber
//     is 1, or one more when a thing re-enters a continuous job after its
//     execution was REMOVED.
//
// # Notifications (§1.5)
//
// After every change, for every thing it touched: notify is published when
// the set of pending (QUEUED or IN_PROGRESS) executions changed, notify-next
// when the execution $next designates changed (timestamp only when none is
// left). The order is IN_PROGRESS first, then queue order; lists hold at most
// 10 executions. Terminal transitions also publish
// $aws/events/jobExecution/{jobId}/{succeeded|failed|...}, and a job that
// completes or is canceled $aws/events/job/{jobId}/{completed|canceled}.
//
// # Timeouts
//
// stepTimeoutInMinutes (start-next, update; -1 in an update clears it) and
// the job's timeoutConfig.inProgressTimeoutInMinutes move an execution that
// is still pending at its deadline to TIMED_OUT. The length of a "minute" is
// Options.TimeoutUnit so that tests can use milliseconds.
package jobs
