package jobs

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/thingd/thingd/sim/registry"
)

// CreateJobInput is what CreateJob needs.
type CreateJobInput struct {
	JobID       string
	Targets     []string // thing and thing group ARNs
	Document    string   // JSON object, at most 32768 bytes
	Description string
	// TargetSelection is SNAPSHOT (the default) or CONTINUOUS: a continuous
	// job also runs on things added to a target group later.
	TargetSelection string
	// InProgressTimeoutMinutes (1–10080, 0: none) times out an execution
	// that stays IN_PROGRESS that long.
	InProgressTimeoutMinutes int64
}

// CreateJob creates a job and queues an execution on every targeted thing
// (members of target groups included).
func (s *Service) CreateJob(in CreateJobInput) (Job, error) {
	j, err := s.createJob(in)
	if err != nil {
		return Job{}, fmt.Errorf("jobs: create job: %w", err)
	}
	return j, nil
}

func (s *Service) createJob(in CreateJobInput) (Job, error) {
	if err := ValidateJobID(in.JobID); err != nil {
		return Job{}, err
	}
	if err := ValidateDocument(in.Document); err != nil {
		return Job{}, err
	}
	if n := utf8.RuneCountInString(in.Description); n > MaxDescriptionChars {
		return Job{}, fmt.Errorf("%w: description is %d characters, at most %d", registry.ErrInvalid, n, MaxDescriptionChars)
	}
	switch in.TargetSelection {
	case "":
		in.TargetSelection = Snapshot
	case Snapshot, Continuous:
	default:
		return Job{}, fmt.Errorf("%w: targetSelection %q must be SNAPSHOT or CONTINUOUS", registry.ErrInvalid, in.TargetSelection)
	}
	if in.InProgressTimeoutMinutes != 0 {
		if err := validateTimeout("inProgressTimeoutInMinutes", in.InProgressTimeoutMinutes, false); err != nil {
			return Job{}, fmt.Errorf("%w: %v", registry.ErrInvalid, err)
		}
	}
	if len(in.Targets) == 0 {
		return Job{}, fmt.Errorf("%w: targets must name at least one thing or thing group", registry.ErrInvalid)
	}
	for _, t := range in.Targets {
		if _, _, err := registry.ParseTargetARN(t); err != nil {
			return Job{}, err
		}
	}
	var j Job
	err := s.change(func(c *change) error {
		if _, exists, err := c.job(in.JobID); err != nil {
			return err
		} else if exists {
			return fmt.Errorf("%w: job %s", registry.ErrAlreadyExists, in.JobID)
		}
		things, err := c.targetThings(in.Targets)
		if err != nil {
			return err
		}
		j = Job{
			ID: in.JobID, Targets: slices.Clone(in.Targets), Document: in.Document, Description: in.Description,
			TargetSelection: in.TargetSelection, Status: JobInProgress,
			InProgressTimeoutMinutes: in.InProgressTimeoutMinutes, CreatedAt: c.now, LastUpdatedAt: c.now,
		}
		if err := c.putJob(j); err != nil {
			return err
		}
		for _, thing := range things {
			if err := c.queue(j, thing, 1); err != nil {
				return err
			}
		}
		c.jobChanged(j.ID) // a snapshot job without things completes at once
		return nil
	})
	if err != nil {
		return Job{}, err
	}
	s.log.Info("job created", "job_id", j.ID, "targetSelection", j.TargetSelection, "targets", j.Targets)
	return s.Job(j.ID)
}

// targetThings resolves target ARNs into the sorted, distinct names of the
// things they designate. Every target must exist.
func (c *change) targetThings(targets []string) ([]string, error) {
	var out []string
	for _, t := range targets {
		kind, name, err := registry.ParseTargetARN(t)
		if err != nil {
			return nil, err
		}
		if kind == registry.TargetThing {
			if !registry.ThingExistsTx(c.tx, name) {
				return nil, fmt.Errorf("%w: thing %s", registry.ErrNotFound, name)
			}
			out = append(out, name)
			continue
		}
		members, err := registry.GroupThingsTx(c.tx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, members...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CancelJob cancels an IN_PROGRESS job: its QUEUED executions become
// CANCELED, and with force its IN_PROGRESS ones too. A job that is not
// IN_PROGRESS fails with ErrInvalidStateTransition.
func (s *Service) CancelJob(id string, force bool, reasonCode, comment string) (Job, error) {
	err := s.change(func(c *change) error {
		j, err := c.mustJob(id)
		if err != nil {
			return err
		}
		if j.Status != JobInProgress {
			return fmt.Errorf("%w: job %s is %s", ErrInvalidStateTransition, id, j.Status)
		}
		execs, err := c.jobExecutions(id)
		if err != nil {
			return err
		}
		for _, e := range execs {
			if e.Status == StatusQueued || force && e.Status == StatusInProgress {
				e.Status, e.ForceCanceled = StatusCanceled, e.Status == StatusInProgress
				if err := c.save(&e); err != nil {
					return err
				}
			}
		}
		j.Status, j.ForceCanceled, j.ReasonCode, j.Comment = JobCanceled, force, reasonCode, comment
		j.LastUpdatedAt, j.CompletedAt = c.now, c.now
		c.jobEvent(j, "canceled")
		return c.putJob(j)
	})
	if err != nil {
		return Job{}, fmt.Errorf("jobs: cancel job: %w", err)
	}
	s.log.Info("job canceled", "job_id", id, "force", force)
	return s.Job(id)
}

// ThingAddedToGroup queues the executions of the IN_PROGRESS continuous jobs
// targeting group on thing, which has just been added to it (and again on a
// thing whose execution was REMOVED when it left the group). Call it after
// the registry change.
func (s *Service) ThingAddedToGroup(group, thing string) error {
	err := s.change(func(c *change) error {
		return c.forContinuousJobs(group, func(j Job) error {
			e, ok, err := c.execution(thing, j.ID)
			switch {
			case err != nil:
				return err
			case !ok:
				return c.queue(j, thing, 1)
			case e.Status == StatusRemoved:
				return c.queue(j, thing, e.ExecutionNumber+1)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("jobs: thing %s added to group %s: %w", thing, group, err)
	}
	return nil
}

// ThingRemovedFromGroup moves the pending executions of the IN_PROGRESS
// continuous jobs targeting group on thing to REMOVED, unless the job still
// targets the thing otherwise. Call it after the registry change.
func (s *Service) ThingRemovedFromGroup(group, thing string) error {
	err := s.change(func(c *change) error {
		return c.forContinuousJobs(group, func(j Job) error {
			e, ok, err := c.execution(thing, j.ID)
			if err != nil || !ok || IsTerminal(e.Status) {
				return err
			}
			if c.targets(j, thing) {
				return nil
			}
			e.Status = StatusRemoved
			return c.save(&e)
		})
	})
	if err != nil {
		return fmt.Errorf("jobs: thing %s removed from group %s: %w", thing, group, err)
	}
	return nil
}

// targets reports whether a job targets a thing, directly or through a
// group it is a member of.
func (c *change) targets(j Job, thing string) bool {
	if slices.Contains(j.Targets, registry.ThingARN(thing)) {
		return true
	}
	for _, g := range registry.GroupsOfThingTx(c.tx, thing) {
		if slices.Contains(j.Targets, registry.ThingGroupARN(g)) {
			return true
		}
	}
	return false
}

func (c *change) forContinuousJobs(group string, fn func(Job) error) error {
	all, err := c.allJobs()
	if err != nil {
		return err
	}
	arn := registry.ThingGroupARN(group)
	for _, j := range all {
		if j.Status == JobInProgress && j.TargetSelection == Continuous && slices.Contains(j.Targets, arn) {
			if err := fn(j); err != nil {
				return err
			}
		}
	}
	return nil
}

// Job returns a job.
func (s *Service) Job(id string) (Job, error) {
	var j Job
	err := s.view(func(c *change) (err error) {
		j, err = c.mustJob(id)
		return err
	})
	if err != nil {
		return Job{}, fmt.Errorf("jobs: %w", err)
	}
	return j, nil
}

// Jobs returns every job, by id.
func (s *Service) Jobs() ([]Job, error) {
	var out []Job
	err := s.view(func(c *change) (err error) {
		out, err = c.allJobs()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: list jobs: %w", err)
	}
	return out, nil
}

// JobExecutions returns the executions of a job, by thing name.
func (s *Service) JobExecutions(jobID string) ([]Execution, error) {
	var out []Execution
	err := s.view(func(c *change) error {
		if _, err := c.mustJob(jobID); err != nil {
			return err
		}
		var err error
		out, err = c.jobExecutions(jobID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: list executions of job: %w", err)
	}
	return out, nil
}

// ThingExecutions returns the executions on a thing, by job id.
func (s *Service) ThingExecutions(thing string) ([]Execution, error) {
	var out []Execution
	err := s.view(func(c *change) (err error) {
		out, err = c.thingExecutions(thing)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: list executions of thing: %w", err)
	}
	return out, nil
}

// Execution returns the execution of a job on a thing; executionNumber 0
// means the latest, another number must be the latest's.
func (s *Service) Execution(thing, jobID string, executionNumber int64) (Execution, error) {
	var e Execution
	err := s.view(func(c *change) error {
		var ok bool
		var err error
		e, ok, err = c.execution(thing, jobID)
		if err == nil && (!ok || executionNumber != 0 && executionNumber != e.ExecutionNumber) {
			err = fmt.Errorf("%w: no execution of job %s on thing %s", registry.ErrNotFound, jobID, thing)
		}
		return err
	})
	if err != nil {
		return Execution{}, fmt.Errorf("jobs: %w", err)
	}
	return e, nil
}
