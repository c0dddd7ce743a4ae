package api

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/thingd/thingd/sim/jobs"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
)

func (h *handler) createJob(r *http.Request) (any, error) {
	var req CreateJobRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.DocumentSource != "" {
		return nil, invalid("documentSource is not supported by thingsim; pass the document itself")
	}
	in := jobs.CreateJobInput{
		JobID: r.PathValue("jobId"), Targets: req.Targets, Document: req.Document,
		Description: req.Description, TargetSelection: req.TargetSelection,
	}
	if req.TimeoutConfig != nil {
		in.InProgressTimeoutMinutes = req.TimeoutConfig.InProgressTimeoutInMinutes
	}
	j, err := h.Jobs.CreateJob(in)
	if err != nil {
		return nil, err
	}
	return CreateJobResponse{JobArn: registry.JobARN(j.ID), JobID: j.ID, Description: j.Description}, nil
}

func (h *handler) describeJob(r *http.Request) (any, error) {
	j, err := h.Jobs.Job(r.PathValue("jobId"))
	if err != nil {
		return nil, err
	}
	execs, err := h.Jobs.JobExecutions(j.ID)
	if err != nil {
		return nil, err
	}
	d := JobDescription{
		JobArn: registry.JobARN(j.ID), JobID: j.ID, TargetSelection: j.TargetSelection, Status: j.Status,
		ForceCanceled: j.ForceCanceled, ReasonCode: j.ReasonCode, Comment: j.Comment, Targets: j.Targets,
		Description: j.Description, CreatedAt: epochSeconds(j.CreatedAt), LastUpdatedAt: epochSeconds(j.LastUpdatedAt),
		CompletedAt: epochSeconds(j.CompletedAt), JobProcessDetails: processDetails(execs),
	}
	if j.InProgressTimeoutMinutes > 0 {
		d.TimeoutConfig = &TimeoutConfig{InProgressTimeoutInMinutes: j.InProgressTimeoutMinutes}
	}
	return DescribeJobResponse{Job: d}, nil
}

func processDetails(execs []jobs.Execution) JobProcessDetails {
	d := JobProcessDetails{ProcessingTargets: []string{}}
	counters := map[string]*int{
		jobs.StatusCanceled: &d.NumberOfCanceledThings, jobs.StatusSucceeded: &d.NumberOfSucceededThings,
		jobs.StatusFailed: &d.NumberOfFailedThings, jobs.StatusRejected: &d.NumberOfRejectedThings,
		jobs.StatusQueued: &d.NumberOfQueuedThings, jobs.StatusInProgress: &d.NumberOfInProgressThings,
		jobs.StatusRemoved: &d.NumberOfRemovedThings, jobs.StatusTimedOut: &d.NumberOfTimedOutThings,
	}
	for _, e := range execs {
		*counters[e.Status]++
	}
	return d
}

func (h *handler) getJobDocument(r *http.Request) (any, error) {
	j, err := h.Jobs.Job(r.PathValue("jobId"))
	if err != nil {
		return nil, err
	}
	return GetJobDocumentResponse{Document: j.Document}, nil
}

func (h *handler) listJobs(r *http.Request) (any, error) {
	all, err := h.Jobs.Jobs()
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	group := q.Get("thingGroupName")
	resp := ListJobsResponse{Jobs: []JobSummary{}}
	for _, j := range all {
		if !matches(q.Get("status"), j.Status) || !matches(q.Get("targetSelection"), j.TargetSelection) ||
			group != "" && !slices.Contains(j.Targets, registry.ThingGroupARN(group)) {
			continue
		}
		resp.Jobs = append(resp.Jobs, JobSummary{
			JobArn: registry.JobARN(j.ID), JobID: j.ID, TargetSelection: j.TargetSelection, Status: j.Status,
			CreatedAt: epochSeconds(j.CreatedAt), LastUpdatedAt: epochSeconds(j.LastUpdatedAt), CompletedAt: epochSeconds(j.CompletedAt),
		})
	}
	return resp, nil
}

// matches reports whether a list filter (empty: none) admits value.
func matches(filter, value string) bool { return filter == "" || filter == value }

func (h *handler) cancelJob(r *http.Request) (any, error) {
	force, err := boolParam("force", r.URL.Query().Get("force"))
	if err != nil {
		return nil, err
	}
	var req CancelJobRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	j, err := h.Jobs.CancelJob(r.PathValue("jobId"), force, req.ReasonCode, req.Comment)
	if err != nil {
		return nil, err
	}
	return CreateJobResponse{JobArn: registry.JobARN(j.ID), JobID: j.ID, Description: j.Description}, nil
}

func (h *handler) describeJobExecution(r *http.Request) (any, error) {
	var number int64
	if v := r.URL.Query().Get("executionNumber"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return nil, invalid("executionNumber %q must be a positive whole number", v)
		}
		number = n
	}
	e, err := h.Jobs.Execution(r.PathValue("thingName"), r.PathValue("jobId"), number)
	if err != nil {
		return nil, err
	}
	out := JobExecution{
		JobID: e.JobID, Status: e.Status, ForceCanceled: e.ForceCanceled,
		StatusDetails: JobExecutionStatusDetails{DetailsMap: nonNil(e.StatusDetails)},
		ThingArn:      registry.ThingARN(e.ThingName), QueuedAt: epochSeconds(e.QueuedAt), StartedAt: epochSeconds(e.StartedAt),
		LastUpdatedAt: epochSeconds(e.LastUpdatedAt), ExecutionNumber: e.ExecutionNumber, VersionNumber: e.VersionNumber,
	}
	if d := e.Deadline(); !d.IsZero() {
		out.ApproximateSecondsBeforeTimedOut = max(int64(d.Sub(h.Now()).Seconds()), 0)
	}
	return DescribeJobExecutionResponse{Execution: out}, nil
}

func (h *handler) listJobExecutionsForThing(r *http.Request) (any, error) {
	thing := r.PathValue("thingName")
	if _, err := h.Registry.Thing(thing); err != nil {
		return nil, err
	}
	execs, err := h.Jobs.ThingExecutions(thing)
	return executionSummaries(r, execs, err, func(e jobs.Execution) JobExecutionSummaryEntry {
		return JobExecutionSummaryEntry{JobID: e.JobID}
	})
}

func (h *handler) listJobExecutionsForJob(r *http.Request) (any, error) {
	execs, err := h.Jobs.JobExecutions(r.PathValue("jobId"))
	return executionSummaries(r, execs, err, func(e jobs.Execution) JobExecutionSummaryEntry {
		return JobExecutionSummaryEntry{ThingArn: registry.ThingARN(e.ThingName)}
	})
}

// executionSummaries lists executions, filtered by the status query
// parameter, each entry started by entry.
func executionSummaries(r *http.Request, execs []jobs.Execution, err error, entry func(jobs.Execution) JobExecutionSummaryEntry) (any, error) {
	if err != nil {
		return nil, err
	}
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains(jobs.ExecutionStatuses, status) {
		return nil, invalid("status %q is not a job execution status", status)
	}
	resp := ListJobExecutionsResponse{ExecutionSummaries: []JobExecutionSummaryEntry{}}
	for _, e := range execs {
		if !matches(status, e.Status) {
			continue
		}
		s := entry(e)
		s.JobExecutionSummary = JobExecutionSummary{
			Status: e.Status, QueuedAt: epochSeconds(e.QueuedAt), StartedAt: epochSeconds(e.StartedAt),
			LastUpdatedAt: epochSeconds(e.LastUpdatedAt), ExecutionNumber: e.ExecutionNumber,
		}
		resp.ExecutionSummaries = append(resp.ExecutionSummaries, s)
	}
	return resp, nil
}

func (h *handler) createThingGroup(r *http.Request) (any, error) {
	var req CreateThingGroupRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.ParentGroupName != "" {
		return nil, invalid("parentGroupName: thingsim has no nested thing groups")
	}
	var desc string
	if req.ThingGroupProperties != nil {
		desc = req.ThingGroupProperties.ThingGroupDescription
	}
	g, _, err := h.Registry.CreateThingGroup(r.PathValue("thingGroupName"), desc, h.Now())
	if err != nil {
		return nil, err
	}
	return CreateThingGroupResponse{ThingGroupName: g.Name, ThingGroupArn: g.ARN, ThingGroupID: g.ID}, nil
}

func (h *handler) describeThingGroup(r *http.Request) (any, error) {
	g, err := h.Registry.ThingGroup(r.PathValue("thingGroupName"))
	if err != nil {
		return nil, err
	}
	return DescribeThingGroupResponse{
		ThingGroupName: g.Name, ThingGroupID: g.ID, ThingGroupArn: g.ARN, Version: g.Version,
		ThingGroupProperties: ThingGroupProperties{ThingGroupDescription: g.Description},
		ThingGroupMetadata:   ThingGroupMetadata{CreationDate: epochSeconds(g.CreatedAt)},
	}, nil
}

func (h *handler) listThingGroups(*http.Request) (any, error) {
	groups, err := h.Registry.ThingGroups()
	if err != nil {
		return nil, err
	}
	resp := ListThingGroupsResponse{ThingGroups: []GroupNameAndArn{}}
	for _, g := range groups {
		resp.ThingGroups = append(resp.ThingGroups, GroupNameAndArn{GroupName: g.Name, GroupArn: g.ARN})
	}
	return resp, nil
}

func (h *handler) listThingsInThingGroup(r *http.Request) (any, error) {
	things, err := h.Registry.GroupThings(r.PathValue("thingGroupName"))
	if err != nil {
		return nil, err
	}
	return ListThingsInThingGroupResponse{Things: nonNilSlice(things)}, nil
}

// membership decodes the group and thing of an add/remove request.
func membership(r *http.Request) (group, thing string, err error) {
	var req ThingGroupMembershipRequest
	if err := decodeBody(r, &req); err != nil {
		return "", "", err
	}
	if group, err = nameOrARN(req.ThingGroupName, req.ThingGroupArn, registry.TargetThingGroup, "thingGroup"); err != nil {
		return "", "", err
	}
	thing, err = nameOrARN(req.ThingName, req.ThingArn, registry.TargetThing, "thing")
	return group, thing, err
}

// nameOrARN returns the name given as field+"Name", or the name in the ARN
// given as field+"Arn", which must be of kind.
func nameOrARN(name, arn, kind, field string) (string, error) {
	switch {
	case name != "":
		return name, nil
	case arn == "":
		return "", invalid("%sName or %sArn is required", field, field)
	}
	k, n, err := registry.ParseTargetARN(arn)
	if err == nil && k != kind {
		err = invalid("%s is not a %s ARN", arn, kind)
	}
	return n, err
}

func (h *handler) addThingToThingGroup(r *http.Request) (any, error) {
	return nil, changeMembership(r, h.Registry.AddThingToGroup, h.Jobs.ThingAddedToGroup)
}

func (h *handler) removeThingFromThingGroup(r *http.Request) (any, error) {
	return nil, changeMembership(r, h.Registry.RemoveThingFromGroup, h.Jobs.ThingRemovedFromGroup)
}

// changeMembership applies a membership change to the registry, then tells
// the Jobs service (continuous jobs follow their groups).
func changeMembership(r *http.Request, change func(group, thing string) (bool, error), notify func(group, thing string) error) error {
	group, thing, err := membership(r)
	if err != nil {
		return err
	}
	if _, err := change(group, thing); err != nil {
		return err
	}
	return notify(group, thing)
}

func (h *handler) getFaults(*http.Request) (any, error) {
	return h.Provisioning.Faults(), nil
}

func (h *handler) setFaults(r *http.Request) (any, error) {
	var f provision.Faults
	if err := decodeBody(r, &f); err != nil {
		return nil, err
	}
	if err := h.Provisioning.SetFaults(f); err != nil {
		return nil, invalid("%v", err)
	}
	return h.Provisioning.Faults(), nil
}
