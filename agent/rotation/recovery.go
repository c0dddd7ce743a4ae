package rotation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/jobs"
)

// Recover reads the journal at start-up, before anything connects, and
// settles what can be settled offline (design §4):
//
//   - stopped before registered: roll back (the new key and certificate go,
//     the active slot is untouched);
//   - registered or verifying: try the new identity first; fallback is the
//     old one, which Run switches back to if the new one does not prove
//     itself within the verify timeout;
//   - committed: the new slot is active (recorded again, idempotently);
//     reporting and cleanup follow once connected;
//   - cleaned or rolled back: finish deleting what is left.
//
// It returns the identity to start with and, while a rotation is
// unverified, the one to fall back to.
func (r *Rotator) Recover(ctx context.Context) (active identity.Active, fallback *identity.Active, err error) {
	active, err = identity.LoadActive(r.cfg.StateDir, r.cfg.ConfigCertificate)
	if err != nil {
		return active, nil, err
	}
	j := r.current()
	if j == nil {
		return active, nil, nil
	}
	r.log.Warn("rotation journal found at start-up", "rotation", j.ID, "step", string(j.Step))
	switch j.Step {
	case StepStarted, StepKeyGenerated, StepCSRSent, StepCertReceived:
		r.rollbackOffline(ctx, j, fmt.Sprintf("thingd stopped during step %s; rolled back to the previous certificate", j.Step))
		return active, nil, nil
	case StepRolledBack:
		r.undo(ctx, j)
		if j.JobID == "" {
			r.finishRolledBack()
		}
		return active, nil, nil
	case StepRegistered, StepVerifying:
		if active.Slot == j.To {
			return active, nil, nil // cannot happen: commit is journaled first
		}
		if _, err := os.Stat(j.NewCertificate); err != nil {
			r.rollbackOffline(ctx, j, "thingd stopped during step "+string(j.Step)+" and the new certificate is missing; rolled back to the previous certificate")
			return active, nil, nil
		}
		old := active
		return identity.Active{Slot: j.To, CertificateFile: j.NewCertificate, CertificateID: j.NewCertificateID}, &old, nil
	case StepCommitted, StepCleaned:
		na := identity.Active{Slot: j.To, CertificateFile: j.NewCertificate, CertificateID: j.NewCertificateID, Since: j.UpdatedAt}
		if active.Slot != j.To {
			if err := identity.SaveActive(r.cfg.StateDir, na); err != nil {
				return active, nil, err
			}
		}
		if j.Step == StepCleaned || j.JobID == "" {
			r.cleanup(ctx)
		}
		return na, nil, nil
	}
	return active, nil, fmt.Errorf("rotation: journal has unknown step %q", j.Step)
}

// rollbackOffline rolls back without touching the connection (nothing is
// connected yet).
func (r *Rotator) rollbackOffline(ctx context.Context, j *Journal, reason string) {
	j.FailedStep, j.Reason = j.Step, reason
	if err := r.journal(j, StepRolledBack); err != nil {
		r.log.Error("rotation: journal rollback", "err", err)
	}
	r.undo(ctx, j)
	if j.JobID == "" {
		r.finishRolledBack()
	}
}

// SetFallback gives the identity to return to if a recovered, unverified
// rotation fails its proof (see Recover).
func (r *Rotator) SetFallback(old *identity.Identity) {
	r.mu.Lock()
	r.old = old
	r.mu.Unlock()
}

// RollbackUnloadable is called by the agent when the new identity of a
// recovered rotation cannot even be loaded: it rolls back at once.
func (r *Rotator) RollbackUnloadable(ctx context.Context, cause error) {
	if j := r.current(); j != nil {
		r.rollbackOffline(ctx, j, "the new identity could not be loaded after a restart ("+cause.Error()+"); rolled back to the previous certificate")
	}
}

// settle brings the journal to an end state (committed or rolled back) and
// returns the outcome. Callers hold r.sem.
func (r *Rotator) settle(ctx context.Context) *Outcome {
	j := r.current()
	if j == nil {
		if last := r.Status().Last; last != nil {
			return last
		}
		return &Outcome{Result: string(jobs.StatusFailed), Step: StepStarted, Reason: "no rotation to resume"}
	}
	switch j.Step {
	case StepRegistered, StepVerifying:
		r.mu.Lock()
		old := r.old
		r.mu.Unlock()
		if f := r.verify(ctx, j, r.deps.Holder.Current(), false, stepper{}); f != nil {
			return r.rollback(ctx, j, old, f)
		}
		return r.commit(j)
	case StepCommitted, StepCleaned:
		return &Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusSucceeded), Step: StepCommitted,
			NewCertificateID: j.NewCertificateID, OldCertificateID: j.OldCertificateID}
	case StepRolledBack:
		return &Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusFailed), Step: j.FailedStep, Reason: j.Reason,
			NewCertificateID: j.NewCertificateID, OldCertificateID: j.OldCertificateID}
	}
	// Steps before registered were rolled back by Recover.
	return r.rollback(ctx, j, nil, fail(j.Step, "thingd stopped during step %s", j.Step))
}

// Run settles a rotation recovered at start-up and then renews the
// certificate by itself when it enters its renewal window and no rotation
// job has done it. It returns when ctx ends.
func (r *Rotator) Run(ctx context.Context) error {
	if j := r.current(); j != nil {
		r.settleRecovered(ctx, j)
	}
	for {
		wait := r.checkRenewal(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-r.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// settleRecovered finishes a journal found at start-up once connected.
func (r *Rotator) settleRecovered(ctx context.Context, j *Journal) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	o := r.settle(ctx)
	<-r.sem
	if ctx.Err() != nil {
		return
	}
	if j.JobID == "" {
		r.closeOut(ctx, o)
		return
	}
	// A job rotation is closed by the engine (Resume, then the report). If
	// the cloud no longer has the execution in progress (cancelled, timed
	// out), nobody will resume it: close it here.
	if err := r.deps.Conn.WaitConnected(ctx, time.Time{}); err != nil {
		return
	}
	t := time.NewTimer(2 * r.cfg.ReplyTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	cur := r.current()
	if cur == nil || cur.ID != j.ID {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.ReplyTimeout)
	ex, err := r.deps.Jobs.Describe(dctx, j.JobID, jobs.DescribeRequest{})
	cancel()
	var rej *jobs.RejectedError
	if (err == nil && ex != nil && ex.Status.Terminal()) || errors.As(err, &rej) {
		r.closeOut(ctx, o)
	}
}

// closeOut ends a rotation no job report is waited for.
func (r *Rotator) closeOut(ctx context.Context, o *Outcome) {
	if o.Result == string(jobs.StatusSucceeded) {
		r.cleanup(ctx)
	} else {
		r.finishRolledBack()
	}
}

// checkRenewal renews if due and returns how long to wait before the next
// check.
func (r *Rotator) checkRenewal(ctx context.Context) time.Duration {
	cur := r.deps.Holder.Current()
	if cur == nil {
		return r.cfg.CheckInterval
	}
	if !r.cfg.Renew {
		r.mu.Lock()
		r.note = "renewal without a job is disabled ([renewal] enabled = false)"
		r.mu.Unlock()
		return r.cfg.CheckInterval
	}
	now := r.now()
	d := r.window().Decide(cur.Leaf.NotBefore, cur.Leaf.NotAfter, now, r.cfg.BuildTime,
		DeviceJitter(r.cfg.ThingName, identity.SerialHex(cur.Leaf)))
	r.mu.Lock()
	changed := !r.renewAt.Equal(d.At) || r.note != d.Reason
	r.renewAt, r.note = d.At, d.Reason
	st := r.statusLocked()
	r.mu.Unlock()
	if changed && r.deps.OnChange != nil {
		r.deps.OnChange(st)
	}
	if !d.Due {
		if d.At.IsZero() {
			return r.cfg.CheckInterval
		}
		return min(r.cfg.CheckInterval, max(d.At.Sub(now), time.Second))
	}
	if r.current() != nil {
		return r.cfg.CheckInterval
	}
	r.mu.Lock()
	hold := r.holdUntil
	r.mu.Unlock()
	if now.Before(hold) {
		r.log.Warn("certificate already in its renewal window right after a rotation or a failed renewal; "+
			"waiting before renewing again (does the cloud issue certificates shorter than the window?)",
			"not_after", cur.Leaf.NotAfter.UTC().Format(time.RFC3339), "next_attempt", hold.UTC().Format(time.RFC3339))
		return min(r.cfg.CheckInterval, max(hold.Sub(now), time.Second))
	}
	if err := r.deps.Conn.WaitConnected(ctx, time.Time{}); err != nil {
		return time.Second
	}
	select {
	case r.sem <- struct{}{}:
	default:
		return r.cfg.CheckInterval // a rotation job is running
	}
	defer func() { <-r.sem }()
	if r.current() != nil || r.deps.Holder.Current() != cur {
		return time.Second
	}
	id := "renewal-" + strconv.FormatInt(now.Unix(), 10)
	r.log.Info("certificate in its renewal window, renewing without a job", "renew_at", d.At.UTC().Format(time.RFC3339),
		"not_after", cur.Leaf.NotAfter.UTC().Format(time.RFC3339))
	o := r.rotate(ctx, id, "", Document{Template: DefaultTemplate}, nil)
	if ctx.Err() != nil && o.Result != string(jobs.StatusSucceeded) {
		return 0
	}
	r.closeOut(ctx, o)
	if o.Result != string(jobs.StatusSucceeded) {
		r.hold()
		r.log.Warn("renewal failed; will try again", "reason", o.Reason, "in", r.cfg.CheckInterval)
	}
	// Even after a success, wait a whole interval: a cloud that issues
	// certificates already inside their window must not make thingd rotate
	// in a loop.
	return r.cfg.CheckInterval
}

// Reported is told (jobs.ReportObserver) that a terminal report saved by an
// earlier run of thingd has now been delivered or given up on: the rotation
// it closes can be finished (old key deleted after SUCCEEDED).
func (r *Rotator) Reported(ctx context.Context, jobID string, status jobs.Status, err error) {
	j := r.current()
	if j == nil || j.JobID != jobID {
		return
	}
	switch {
	case status == jobs.StatusSucceeded && (j.Step == StepCommitted || j.Step == StepCleaned):
		r.cleanup(ctx)
	case j.Step == StepRolledBack:
		r.finishRolledBack()
	}
}
