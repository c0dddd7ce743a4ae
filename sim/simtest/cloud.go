package simtest

import (
	"errors"
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/registry"
)

// Admin API shortcuts for the cloud side of a test. All of them fail the
// test on an error.

// CreateJob creates a snapshot job for one thing with the JSON document.
func (s *Sim) CreateJob(t testing.TB, jobID, thing, document string) api.CreateJobResponse {
	t.Helper()
	return s.createJob(t, jobID, api.CreateJobRequest{Targets: []string{registry.ThingARN(thing)}, Document: document})
}

// CreateGroupJob creates a job for a thing group, continuous (it also runs
// on things added later) or snapshot.
func (s *Sim) CreateGroupJob(t testing.TB, jobID, group, document string, continuous bool) api.CreateJobResponse {
	t.Helper()
	req := api.CreateJobRequest{Targets: []string{registry.ThingGroupARN(group)}, Document: document, TargetSelection: "SNAPSHOT"}
	if continuous {
		req.TargetSelection = "CONTINUOUS"
	}
	return s.createJob(t, jobID, req)
}

func (s *Sim) createJob(t testing.TB, jobID string, req api.CreateJobRequest) api.CreateJobResponse {
	t.Helper()
	resp, err := s.Client().CreateJob(t.Context(), jobID, req)
	if err != nil {
		t.Fatalf("create job %s: %v", jobID, err)
	}
	return resp
}

// CreateThingGroup creates a thing group.
func (s *Sim) CreateThingGroup(t testing.TB, group string) {
	t.Helper()
	if _, err := s.Client().CreateThingGroup(t.Context(), group, ""); err != nil {
		t.Fatalf("create thing group %s: %v", group, err)
	}
}

// AddThingToThingGroup adds a thing to a thing group.
func (s *Sim) AddThingToThingGroup(t testing.TB, group, thing string) {
	t.Helper()
	if err := s.Client().AddThingToThingGroup(t.Context(), group, thing); err != nil {
		t.Fatalf("add %s to thing group %s: %v", thing, group, err)
	}
}

// JobExecution returns the latest execution of a job on a thing.
func (s *Sim) JobExecution(t testing.TB, thing, jobID string) api.JobExecution {
	t.Helper()
	resp, err := s.Client().DescribeJobExecution(t.Context(), thing, jobID)
	if err != nil {
		t.Fatalf("describe execution of job %s on %s: %v", jobID, thing, err)
	}
	return resp.Execution
}

// WaitJobExecution polls the execution of a job on a thing until its status
// is status and returns it (statusDetails in .StatusDetails.DetailsMap). It
// fails the test when the execution reaches another terminal status or the
// timeout passes, showing the last execution seen.
func (s *Sim) WaitJobExecution(t testing.TB, thing, jobID, status string, timeout time.Duration) api.JobExecution {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last api.JobExecution
	for {
		resp, err := s.Client().DescribeJobExecution(t.Context(), thing, jobID)
		var apiErr *api.Error
		switch {
		case err == nil:
			last = resp.Execution
			if last.Status == status {
				return last
			}
			if terminal(last.Status) {
				t.Fatalf("execution of job %s on %s is %s (statusDetails %v), want %s", jobID, thing, last.Status, last.StatusDetails.DetailsMap, status)
			}
		case !errors.As(err, &apiErr) || apiErr.Type != api.ErrResourceNotFound:
			t.Fatalf("describe execution of job %s on %s: %v", jobID, thing, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution of job %s on %s did not become %s within %v; last seen: %+v", jobID, thing, status, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func terminal(status string) bool {
	switch status {
	case "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED":
		return true
	}
	return false
}

// CertificateStatus returns a certificate's status (ACTIVE, INACTIVE,
// REVOKED or PENDING_ACTIVATION).
func (s *Sim) CertificateStatus(t testing.TB, id string) string {
	t.Helper()
	resp, err := s.Client().DescribeCertificate(t.Context(), id)
	if err != nil {
		t.Fatalf("describe certificate %s: %v", id, err)
	}
	return resp.CertificateDescription.Status
}

// WaitCertificateStatus polls a certificate until its status is status.
func (s *Sim) WaitCertificateStatus(t testing.TB, id, status string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.CertificateStatus(t, id)
		if got == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate %s is %s after %v, want %s", id, got, timeout, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ThingPrincipals returns the ids of the certificates attached to a thing.
func (s *Sim) ThingPrincipals(t testing.TB, thing string) []string {
	t.Helper()
	resp, err := s.Client().ListThingPrincipals(t.Context(), thing)
	if err != nil {
		t.Fatalf("list principals of %s: %v", thing, err)
	}
	ids := make([]string, 0, len(resp.Principals))
	for _, p := range resp.Principals {
		id, err := registry.CertificateIDFromPrincipal(p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// SetFaults replaces the provisioning faults (the zero value clears them)
// through the admin API; see provision.Faults.
func (s *Sim) SetFaults(t testing.TB, f sim.Faults) {
	t.Helper()
	if _, err := s.Client().SetFaults(t.Context(), f); err != nil {
		t.Fatalf("set faults: %v", err)
	}
}
