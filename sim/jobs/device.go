package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thingd/thingd/sim/broker"
)

// HandleRequest serves a device's publish on its $aws/things/{thingName}/jobs/
// topics and reports whether the topic was one of them. Publishes on the
// reply and notification topics are swallowed without an answer.
func (s *Service) HandleRequest(req *broker.Request) bool {
	rest, ok := strings.CutPrefix(req.Topic, "$aws/things/")
	if !ok {
		return false
	}
	thing, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, "jobs/")
	if !ok {
		return false
	}
	if thing != req.ClientID && !req.Authorized() { // another thing's: a gateway's, if the policies allow it
		s.log.Warn("jobs request for another thing ignored", "clientId", req.ClientID, "topic", req.Topic)
		return true
	}
	if rest == "notify" || rest == "notify-next" || strings.HasSuffix(rest, "/accepted") || strings.HasSuffix(rest, "/rejected") {
		s.log.Warn("publish to a jobs reply topic ignored", "clientId", req.ClientID, "topic", req.Topic)
		return true
	}
	r, rej := decodeRequest(req.Payload)
	if rej != nil {
		s.rejectRequest(req, r.ClientToken, rej)
		return true
	}
	jobID, op, _ := strings.Cut(rest, "/")
	switch {
	case rest == "get":
		s.getPending(req, thing, r)
	case rest == "start-next":
		s.startNext(req, thing, r)
	case op == "get" && (jobID == "$next" || ValidateJobID(jobID) == nil):
		s.describe(req, thing, jobID, r)
	case op == "update" && ValidateJobID(jobID) == nil:
		s.update(req, thing, jobID, r)
	default:
		s.rejectRequest(req, r.ClientToken, reject(codeInvalidTopic, fmt.Sprintf("topic %s maps to no Jobs operation", req.Topic)))
	}
	return true
}

// decodeRequest parses a request payload; an empty one counts as {}.
func decodeRequest(payload []byte) (request, *rejection) {
	var r request
	if len(bytes.TrimSpace(payload)) == 0 {
		return r, nil
	}
	if !utf8.Valid(payload) || !json.Valid(payload) {
		return r, reject(codeInvalidJSON, "the payload is not valid UTF-8 JSON")
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, reject(codeInvalidRequest, "the payload does not match the request: "+err.Error())
	}
	return r, nil
}

func (s *Service) timestamp() int64 { return s.now().Unix() }

func (s *Service) replyJSON(req *broker.Request, topic string, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode jobs reply", "topic", topic, "error", err)
		return
	}
	req.Reply(topic, payload)
}

// rejectRequest answers on the request topic + "/rejected".
func (s *Service) rejectRequest(req *broker.Request, clientToken string, r *rejection) {
	s.log.Info("jobs request rejected", "clientId", req.ClientID, "topic", req.Topic, "code", r.code, "message", r.message)
	s.replyJSON(req, req.Topic+"/rejected", errorResponse{
		Code: r.code, Message: r.message, ClientToken: clientToken, Timestamp: s.timestamp(), ExecutionState: r.state,
	})
}

// fail answers a request whose change failed: with its rejection, or
// InternalError.
func (s *Service) fail(req *broker.Request, clientToken string, err error) {
	var rej *rejection
	if !errors.As(err, &rej) {
		s.log.Error("jobs request failed", "clientId", req.ClientID, "topic", req.Topic, "error", err)
		rej = reject(codeInternalError, "internal error")
	}
	s.rejectRequest(req, clientToken, rej)
}

func (s *Service) accept(req *broker.Request, v any) func() {
	return func() { s.replyJSON(req, req.Topic+"/accepted", v) }
}

// getPending is GetPendingJobExecutions.
func (s *Service) getPending(req *broker.Request, thing string, r request) {
	resp := pendingResponse{InProgressJobs: []wireSummary{}, QueuedJobs: []wireSummary{}, Timestamp: s.timestamp(), ClientToken: r.ClientToken}
	err := s.view(func(c *change) error {
		pending, err := c.pending(thing)
		for _, e := range pending[:min(len(pending), MaxPendingInResponse)] {
			if e.Status == StatusInProgress {
				resp.InProgressJobs = append(resp.InProgressJobs, e.summary())
			} else {
				resp.QueuedJobs = append(resp.QueuedJobs, e.summary())
			}
		}
		return err
	})
	if err != nil {
		s.fail(req, r.ClientToken, err)
		return
	}
	s.accept(req, resp)()
}

// checkStart validates the statusDetails and stepTimeoutInMinutes of
// start-next and update.
func checkStart(r request, clearAllowed bool) *rejection {
	if r.StatusDetails != nil {
		if err := ValidateStatusDetails(r.StatusDetails); err != nil {
			return reject(codeInvalidRequest, err.Error())
		}
	}
	if r.StepTimeoutInMinutes != nil {
		if err := validateTimeout("stepTimeoutInMinutes", *r.StepTimeoutInMinutes, clearAllowed); err != nil {
			return reject(codeInvalidRequest, err.Error())
		}
	}
	return nil
}

// start moves a QUEUED execution to IN_PROGRESS and arms the job's
// in-progress timeout.
func (c *change) start(e *Execution, j Job, unit time.Duration) {
	e.Status, e.StartedAt = StatusInProgress, c.now
	if j.InProgressTimeoutMinutes > 0 {
		e.InProgressDeadline = c.now.Add(time.Duration(j.InProgressTimeoutMinutes) * unit)
	}
}

// setStepTimeout applies a request's stepTimeoutInMinutes (-1 clears it).
func (c *change) setStepTimeout(e *Execution, minutes *int64, unit time.Duration) {
	switch {
	case minutes == nil:
	case *minutes == -1:
		e.StepDeadline = time.Time{}
	default:
		e.StepDeadline = c.now.Add(time.Duration(*minutes) * unit)
	}
}

// startNext is StartNextPendingJobExecution.
func (s *Service) startNext(req *broker.Request, thing string, r request) {
	if rej := checkStart(r, false); rej != nil {
		s.rejectRequest(req, r.ClientToken, rej)
		return
	}
	err := s.change(func(c *change) error {
		resp := executionResponse{Timestamp: c.now.Unix(), ClientToken: r.ClientToken}
		c.reply = s.accept(req, &resp)
		pending, err := c.pending(thing)
		if err != nil || len(pending) == 0 {
			return err
		}
		e := pending[0]
		j, err := c.mustJob(e.JobID)
		if err != nil {
			return err
		}
		if e.Status == StatusQueued {
			c.start(&e, j, s.unit)
			if r.StatusDetails != nil {
				e.StatusDetails = r.StatusDetails
			}
			c.setStepTimeout(&e, r.StepTimeoutInMinutes, s.unit)
			if err := c.save(&e); err != nil {
				return err
			}
		}
		resp.Execution = e.wire(j.Document)
		return nil
	})
	if err != nil {
		s.fail(req, r.ClientToken, err)
	}
}

// describe is DescribeJobExecution, jobID possibly $next.
func (s *Service) describe(req *broker.Request, thing, jobID string, r request) {
	resp := executionResponse{Timestamp: s.timestamp(), ClientToken: r.ClientToken}
	err := s.view(func(c *change) error {
		var e Execution
		if jobID == "$next" {
			pending, err := c.pending(thing)
			if err != nil || len(pending) == 0 {
				return err
			}
			e = pending[0]
		} else {
			var err error
			if e, err = c.requestedExecution(thing, jobID, r); err != nil {
				return err
			}
			if IsTerminal(e.Status) {
				return reject(codeTerminalStateReached, fmt.Sprintf("the execution of job %s is %s", jobID, e.Status))
			}
		}
		doc := ""
		if r.IncludeJobDocument == nil || *r.IncludeJobDocument {
			j, err := c.mustJob(e.JobID)
			if err != nil {
				return err
			}
			doc = j.Document
		}
		resp.Execution = e.wire(doc)
		return nil
	})
	if err != nil {
		s.fail(req, r.ClientToken, err)
		return
	}
	s.accept(req, resp)()
}

// requestedExecution finds the execution a describe or update names.
func (c *change) requestedExecution(thing, jobID string, r request) (Execution, error) {
	e, ok, err := c.execution(thing, jobID)
	switch {
	case err != nil:
		return Execution{}, err
	case !ok:
		return Execution{}, reject(codeResourceNotFound, fmt.Sprintf("no execution of job %s on thing %s", jobID, thing))
	case r.ExecutionNumber != nil && *r.ExecutionNumber != e.ExecutionNumber:
		return Execution{}, reject(codeResourceNotFound, fmt.Sprintf("no execution number %d of job %s on thing %s", *r.ExecutionNumber, jobID, thing))
	}
	return e, nil
}

// update is UpdateJobExecution.
func (s *Service) update(req *broker.Request, thing, jobID string, r request) {
	rej := checkStart(r, true)
	switch {
	case r.Status == "":
		rej = reject(codeInvalidRequest, "status is required")
	case !slices.Contains(ExecutionStatuses, r.Status):
		rej = reject(codeInvalidRequest, fmt.Sprintf("status %q is not a job execution status", r.Status))
	}
	if rej != nil {
		s.rejectRequest(req, r.ClientToken, rej)
		return
	}
	err := s.change(func(c *change) error {
		e, err := c.requestedExecution(thing, jobID, r)
		if err != nil {
			return err
		}
		if r.ExpectedVersion != nil && *r.ExpectedVersion != e.VersionNumber {
			return &rejection{codeVersionMismatch, fmt.Sprintf("expected version %d, the execution is at version %d", *r.ExpectedVersion, e.VersionNumber), e.state()}
		}
		if IsTerminal(e.Status) || !deviceStatus(r.Status) {
			return &rejection{codeInvalidStateTransition, fmt.Sprintf("a device cannot move the execution of job %s from %s to %s", jobID, e.Status, r.Status), e.state()}
		}
		j, err := c.mustJob(jobID)
		if err != nil {
			return err
		}
		if e.Status == StatusQueued && r.Status == StatusInProgress {
			c.start(&e, j, s.unit)
		}
		e.Status = r.Status
		if r.StatusDetails != nil {
			e.StatusDetails = r.StatusDetails
			if len(e.StatusDetails) == 0 {
				e.StatusDetails = nil
			}
		}
		c.setStepTimeout(&e, r.StepTimeoutInMinutes, s.unit)
		if err := c.save(&e); err != nil {
			return err
		}
		resp := updateResponse{Timestamp: c.now.Unix(), ClientToken: r.ClientToken}
		if r.IncludeJobExecutionState {
			resp.ExecutionState = e.state()
		}
		if r.IncludeJobDocument != nil && *r.IncludeJobDocument {
			resp.JobDocument = json.RawMessage(j.Document)
		}
		c.reply = s.accept(req, resp)
		return nil
	})
	if err != nil {
		s.fail(req, r.ClientToken, err)
	}
}
