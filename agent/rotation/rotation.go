// Package rotation is thingd's certificate rotation: the state machine of
// design §4 as a jobs.Handler for "rotate-certificate" jobs, the same flow
// run by thingd itself when the certificate enters its renewal window, and
// start-up recovery from the journal so that a crash or power cut at any
// step leaves the device with a working identity.
//
// The active key slot is never touched: the new key goes into the other
// slot, and only a verified, committed rotation makes it active.
package rotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/atomicfile"
	"github.com/thingd/thingd/jobs"
	"github.com/thingd/thingd/keystore"
)

// Conn is the connection the rotation switches identity on
// (agent/mqttconn.Conn).
type Conn interface {
	// Reconnect drops the session and connects again with whatever identity
	// the holder has by then.
	Reconnect()
	// WaitConnected waits for a session that came up at or after since.
	WaitConnected(ctx context.Context, since time.Time) error
}

// JobsAPI proves a new identity by a Jobs describe round trip (jobs.Client).
type JobsAPI interface {
	Describe(ctx context.Context, jobID string, req jobs.DescribeRequest) (*jobs.Execution, error)
}

// Provisioning is the fleet provisioning API (Provisioner).
type Provisioning interface {
	CreateFromCSR(ctx context.Context, csrPEM string) (*CertificateResponse, error)
	Register(ctx context.Context, template string, req RegisterRequest) (*RegisterResponse, error)
}

// Config is what the rotation needs to know.
type Config struct {
	ThingName string
	StateDir  string
	Slots     identity.Slots
	// ConfigCertificate is the configured certificate of slot A, used until
	// a rotation has recorded an active slot.
	ConfigCertificate string
	// DeviceCAs, if set, must sign every new certificate.
	DeviceCAs *x509.CertPool
	// ClockSkew tolerated when checking a new certificate's validity
	// (default 5 min).
	ClockSkew time.Duration
	// ReplyTimeout bounds each cloud request (default 30 s).
	ReplyTimeout time.Duration
	// VerifyTimeout bounds the proof that the new identity works (default
	// 30 s; a job document may set its own).
	VerifyTimeout time.Duration
	// Window is the renewal policy for renewals without a job.
	Window Window
	// Renew turns renewal without a job on.
	Renew bool
	// CheckInterval is how often the renewal loop looks at the certificate
	// (default 1 h; it also wakes at the renewal time).
	CheckInterval time.Duration
	// BuildTime of thingd: a clock before it is untrusted.
	BuildTime time.Time
}

// Deps are the parts the rotation drives.
type Deps struct {
	Store  keystore.Store
	Holder *identity.Holder
	Conn   Conn
	Jobs   JobsAPI
	Prov   Provisioning
	Log    *slog.Logger
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// AfterJournal, if set, is called right after each journal write (a
	// test hook for the crash matrix; nil in production).
	AfterJournal func(Step)
	// OnChange, if set, is called after every journal write (status).
	OnChange func(Status)
}

// Status is the rotation part of thingd's status.
type Status struct {
	// State is "idle", a journal step, or "rolled-back".
	State       string    `json:"state"`
	ID          string    `json:"id,omitempty"`
	JobID       string    `json:"jobId,omitempty"`
	NextRenewal time.Time `json:"nextRenewal,omitzero"`
	// RenewalNote says why no renewal is scheduled (untrusted time).
	RenewalNote string   `json:"renewalNote,omitempty"`
	Last        *Outcome `json:"last,omitempty"`
}

// Rotator runs rotations. Create it with New; call Recover before the
// connection starts, and Run alongside it.
type Rotator struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	sem  chan struct{} // one rotation at a time
	kick chan struct{} // wakes the renewal loop (settings changed)

	mu      sync.Mutex
	rec     Record
	old     *identity.Identity // identity to fall back to while a recovered rotation is unverified
	renewAt time.Time
	note    string
	// holdUntil is the earliest time a renewal without a job may start:
	// a whole check interval after a rotation was committed or a renewal
	// failed, so that a cloud issuing certificates already inside their
	// renewal window cannot make thingd rotate in a loop.
	holdUntil time.Time
}

// New returns a Rotator.
func New(cfg Config, deps Deps) (*Rotator, error) {
	if cfg.ThingName == "" || cfg.StateDir == "" || cfg.Slots.A == nil || cfg.Slots.B == nil {
		return nil, errors.New("rotation: thing name, state directory and both key slots are required")
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 5 * time.Minute
	}
	if cfg.ReplyTimeout == 0 {
		cfg.ReplyTimeout = 30 * time.Second
	}
	if cfg.VerifyTimeout == 0 {
		cfg.VerifyTimeout = 30 * time.Second
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Hour
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	rec, err := ReadRecord(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Rotator{cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, sem: make(chan struct{}, 1),
		kick: make(chan struct{}, 1), rec: rec}, nil
}

// StateDir is the state directory the rotation keeps its journal in.
func (r *Rotator) StateDir() string { return r.cfg.StateDir }

// SetWindow changes the renewal window (desired config from the shadow);
// the renewal loop re-checks at once.
func (r *Rotator) SetWindow(w Window) {
	r.mu.Lock()
	r.cfg.Window = w
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// hold keeps renewals without a job from starting for a check interval.
func (r *Rotator) hold() {
	r.mu.Lock()
	r.holdUntil = r.now().Add(r.cfg.CheckInterval)
	r.mu.Unlock()
}

func (r *Rotator) window() Window {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.Window
}

// Status returns the rotation status.
func (r *Rotator) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statusLocked()
}

func (r *Rotator) statusLocked() Status {
	st := Status{State: "idle", NextRenewal: r.renewAt, RenewalNote: r.note, Last: r.rec.Last}
	if j := r.rec.Journal; j != nil {
		st.State, st.ID, st.JobID = string(j.Step), j.ID, j.JobID
	}
	return st
}

// journal records j at step (before the step is acted on).
func (r *Rotator) journal(j *Journal, step Step) error {
	j.Step = step
	j.UpdatedAt = r.now().UTC()
	cp := *j // j is the caller's working copy; readers see only this snapshot
	r.mu.Lock()
	r.rec.Journal = &cp
	err := writeRecord(r.cfg.StateDir, r.rec)
	st := r.statusLocked()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.log.Info("rotation step", "rotation", j.ID, "step", string(step))
	if r.deps.AfterJournal != nil {
		r.deps.AfterJournal(step)
	}
	if r.deps.OnChange != nil {
		r.deps.OnChange(st)
	}
	return nil
}

// finish clears the journal and records the outcome.
func (r *Rotator) finish(o Outcome) {
	o.At = r.now().UTC()
	r.mu.Lock()
	r.rec = Record{Last: &o}
	err := writeRecord(r.cfg.StateDir, r.rec)
	st := r.statusLocked()
	r.mu.Unlock()
	if err != nil {
		r.log.Error("rotation: record outcome", "err", err)
	}
	if r.deps.OnChange != nil {
		r.deps.OnChange(st)
	}
}

func (r *Rotator) current() *Journal {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec.Journal == nil {
		return nil
	}
	j := *r.rec.Journal
	return &j
}

// failure is a rotation step that went wrong, with a reason for people.
type failure struct {
	step   Step
	reason string
}

func (f *failure) Error() string { return string(f.step) + ": " + f.reason }

func fail(step Step, format string, args ...any) *failure {
	return &failure{step: step, reason: fmt.Sprintf(format, args...)}
}

// Handle runs a rotate-certificate job execution (jobs.Handler).
func (r *Rotator) Handle(ctx context.Context, ex jobs.Execution, p jobs.Progress) jobs.Result {
	doc, err := ParseDocument(ex.JobDocument)
	if err != nil {
		return jobs.Result{Status: jobs.StatusRejected, Details: map[string]string{"reason": err.Error()}}
	}
	if j := r.current(); j != nil && j.JobID == ex.JobID {
		return r.Resume(ctx, ex, p)
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return jobs.Result{Status: jobs.StatusFailed, Details: map[string]string{"step": string(StepStarted), "reason": "thingd stopped before the rotation could start"}}
	}
	defer func() { <-r.sem }()
	if j := r.current(); j != nil {
		return jobs.Result{Status: jobs.StatusFailed, Details: map[string]string{"step": string(StepStarted),
			"reason": fmt.Sprintf("another rotation (%s) is unfinished at step %s", j.ID, j.Step)}}
	}
	return r.toResult(ctx, r.rotate(ctx, ex.JobID, ex.JobID, doc, p))
}

// Resume takes over an execution that was IN_PROGRESS when thingd stopped
// (jobs.Resumer): the journal, already recovered at start-up, says how it
// ended or what is left to do.
func (r *Rotator) Resume(ctx context.Context, ex jobs.Execution, p jobs.Progress) jobs.Result {
	j := r.current()
	if j == nil || j.JobID != ex.JobID {
		last := r.Status().Last
		if last != nil && last.JobID == ex.JobID {
			return r.toResult(ctx, last)
		}
		return jobs.Result{Status: jobs.StatusFailed, Details: map[string]string{"step": string(StepStarted),
			"reason": "thingd restarted before this rotation was journaled; run the job again"}}
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return jobs.Result{Status: jobs.StatusFailed, Details: map[string]string{"step": string(j.Step), "reason": "thingd stopped"}}
	}
	defer func() { <-r.sem }()
	return r.toResult(ctx, r.settle(ctx))
}

// toResult turns an outcome into the job result; a success deletes the old
// key once the cloud has seen SUCCEEDED.
func (r *Rotator) toResult(ctx context.Context, o *Outcome) jobs.Result {
	if o.Result != string(jobs.StatusSucceeded) {
		res := jobs.Result{Status: jobs.StatusFailed, Details: map[string]string{"step": string(o.Step), "reason": o.Reason}}
		res.OnReported = func(context.Context, error) { r.finishRolledBack() }
		return res
	}
	return jobs.Result{
		Status: jobs.StatusSucceeded,
		Details: map[string]string{"step": string(StepCommitted),
			"newCertificateId": o.NewCertificateID, "oldCertificateId": o.OldCertificateID},
		OnReported: func(ctx context.Context, err error) {
			if err != nil {
				r.log.Warn("rotation: SUCCEEDED not acknowledged; cleaning up anyway, the new identity is verified", "err", err)
			}
			r.cleanup(ctx)
		},
	}
}

// finishRolledBack closes a rolled-back journal once its FAILED report is
// done.
func (r *Rotator) finishRolledBack() {
	j := r.current()
	if j == nil || j.Step != StepRolledBack {
		return
	}
	r.finish(Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusFailed), Step: j.FailedStep, Reason: j.Reason,
		OldCertificateID: j.OldCertificateID, NewCertificateID: j.NewCertificateID})
}

// stepper sends IN_PROGRESS step details; failures to report are logged,
// never fatal.
type stepper struct {
	p   jobs.Progress
	log *slog.Logger
}

func (s stepper) step(ctx context.Context, st Step) {
	if s.p == nil {
		return
	}
	if err := s.p.Step(ctx, map[string]string{"step": string(st)}); err != nil {
		s.log.Warn("rotation: could not report step", "step", string(st), "err", err)
	}
}

// rotate runs design §4 steps 1-7. It returns the outcome: committed
// (SUCCEEDED) or rolled back (FAILED). id names the rotation; jobID is ""
// for a renewal without a job.
func (r *Rotator) rotate(ctx context.Context, id, jobID string, doc Document, p jobs.Progress) *Outcome {
	old := r.deps.Holder.Current()
	active, err := identity.LoadActive(r.cfg.StateDir, r.cfg.ConfigCertificate)
	if err != nil {
		return &Outcome{ID: id, JobID: jobID, Result: string(jobs.StatusFailed), Step: StepStarted, Reason: err.Error()}
	}
	alg := doc.Algorithm
	if alg == "" {
		alg = old.Key.Info().Algorithm
	}
	verify := doc.VerifyTimeout
	if verify == 0 {
		verify = r.cfg.VerifyTimeout
	}
	oldCertFile := active.CertificateFile
	j := &Journal{
		ID: id, JobID: jobID, From: active.Slot, To: active.Slot.Other(), Algorithm: alg, Template: doc.Template,
		VerifyTimeout: Duration(verify), OldCertificateID: old.CertificateID, OldCertificate: oldCertFile,
		NewCertificate: identity.SlotCertificatePath(r.cfg.StateDir, active.Slot.Other()), StartedAt: r.now().UTC(),
	}
	st := stepper{p: p, log: r.log}
	if err := r.journal(j, StepStarted); err != nil {
		return &Outcome{ID: id, JobID: jobID, Result: string(jobs.StatusFailed), Step: StepStarted, Reason: err.Error()}
	}
	st.step(ctx, StepStarted)
	newID, f := r.forward(ctx, j, old, st)
	if f == nil {
		f = r.verify(ctx, j, newID, true, st)
	}
	if f != nil {
		return r.rollback(ctx, j, old, f)
	}
	return r.commit(j)
}

// forward runs steps 2-5: new key, CSR, certificate, registration.
func (r *Rotator) forward(ctx context.Context, j *Journal, old *identity.Identity, st stepper) (*identity.Identity, *failure) {
	target := r.cfg.Slots.Key(j.To)
	if err := r.journal(j, StepKeyGenerated); err != nil {
		return nil, fail(StepKeyGenerated, "%v", err)
	}
	st.step(ctx, StepKeyGenerated)
	// The inactive slot may hold a leftover of an earlier attempt; it is
	// never the active key.
	if err := r.deps.Store.Delete(ctx, target); err != nil {
		return nil, fail(StepKeyGenerated, "could not clear the inactive key slot %s: %v", target.Redacted(), err)
	}
	key, err := r.deps.Store.Generate(ctx, target, j.Algorithm)
	if err != nil {
		return nil, fail(StepKeyGenerated, "could not generate a %s key in %s: %v", j.Algorithm, target.Redacted(), err)
	}
	csr, err := keystore.CreateCSR(key, r.cfg.ThingName)
	if err != nil {
		return nil, fail(StepKeyGenerated, "could not sign the CSR with the new key: %v", err)
	}

	if err := r.journal(j, StepCSRSent); err != nil {
		return nil, fail(StepCSRSent, "%v", err)
	}
	st.step(ctx, StepCSRSent)
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ReplyTimeout)
	resp, err := r.deps.Prov.CreateFromCSR(cctx, string(csr))
	cancel()
	if err != nil {
		return nil, fail(StepCSRSent, "%v", err)
	}

	newID, f := r.checkCertificate(key, old, resp)
	if f != nil {
		return nil, f
	}
	j.NewCertificateID = newID.CertificateID
	if err := r.journal(j, StepCertReceived); err != nil {
		return nil, fail(StepCertReceived, "%v", err)
	}
	st.step(ctx, StepCertReceived)
	if err := writeFileAtomic(j.NewCertificate, []byte(resp.CertificatePEM)); err != nil {
		return nil, fail(StepCertReceived, "could not store the new certificate: %v", err)
	}

	if err := r.journal(j, StepRegistered); err != nil {
		return nil, fail(StepRegistered, "%v", err)
	}
	st.step(ctx, StepRegistered)
	rctx, cancel := context.WithTimeout(ctx, r.cfg.ReplyTimeout)
	reg, err := r.deps.Prov.Register(rctx, j.Template, RegisterRequest{
		CertificateOwnershipToken: resp.CertificateOwnershipToken,
		Parameters:                map[string]string{"ThingName": r.cfg.ThingName, "SerialNumber": identity.SerialHex(newID.Leaf)},
	})
	cancel()
	if err != nil {
		return nil, fail(StepRegistered, "%v", err)
	}
	if reg.ThingName != "" && reg.ThingName != r.cfg.ThingName {
		return nil, fail(StepRegistered, "RegisterThing answered for thing %q, not %q", reg.ThingName, r.cfg.ThingName)
	}
	return newID, nil
}

// checkCertificate applies design §4 step 4 to the cloud's reply.
func (r *Rotator) checkCertificate(key keystore.Key, old *identity.Identity, resp *CertificateResponse) (*identity.Identity, *failure) {
	certs, err := identity.ParseChain([]byte(resp.CertificatePEM))
	if err != nil {
		return nil, fail(StepCertReceived, "the certificate from create-from-csr is not a PEM certificate: %v", err)
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != r.cfg.ThingName {
		return nil, fail(StepCertReceived, "certificate CN %s does not match thing name %s", leaf.Subject.CommonName, r.cfg.ThingName)
	}
	if !keystore.SamePublicKey(key.Public(), leaf.PublicKey) {
		return nil, fail(StepCertReceived, "the certificate from create-from-csr is for another public key than the new key")
	}
	id, err := identity.New(r.cfg.ThingName, key, []byte(resp.CertificatePEM))
	if err != nil {
		return nil, fail(StepCertReceived, "%v", err)
	}
	if resp.CertificateID != "" && resp.CertificateID != id.CertificateID {
		return nil, fail(StepCertReceived, "create-from-csr said certificate id %s but the certificate's SHA-256 is %s", resp.CertificateID, id.CertificateID)
	}
	now := r.now()
	trusted := identity.CheckTime(old.Leaf, now, r.cfg.BuildTime).Trusted
	if trusted {
		if leaf.NotBefore.After(now.Add(r.cfg.ClockSkew)) {
			return nil, fail(StepCertReceived, "the new certificate is not valid until %s (clock says %s)", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		if !leaf.NotAfter.After(now) {
			return nil, fail(StepCertReceived, "the new certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	} else {
		r.log.Warn("rotation: clock untrusted, not checking the new certificate's validity period against it")
	}
	if r.cfg.DeviceCAs != nil {
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		at := now
		if !trusted || at.Before(leaf.NotBefore) {
			at = leaf.NotBefore.Add(time.Second)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.cfg.DeviceCAs, Intermediates: inter,
			CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fail(StepCertReceived, "the new certificate does not chain to the trusted device CAs: %v", err)
		}
	}
	if !leaf.NotAfter.After(old.Leaf.NotAfter) {
		return nil, fail(StepCertReceived, "the new certificate expires at %s, not later than the current one (%s)",
			leaf.NotAfter.UTC().Format(time.RFC3339), old.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return id, nil
}

// verify runs step 6: reconnect as the new identity and prove it with a
// Jobs describe round trip.
func (r *Rotator) verify(ctx context.Context, j *Journal, newID *identity.Identity, reconnect bool, st stepper) *failure {
	if err := r.journal(j, StepVerifying); err != nil {
		return fail(StepVerifying, "%v", err)
	}
	timeout := time.Duration(j.VerifyTimeout)
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var since time.Time
	if reconnect {
		since = time.Now()
		r.deps.Holder.Set(newID)
		r.deps.Conn.Reconnect()
	}
	if err := r.deps.Conn.WaitConnected(vctx, since); err != nil {
		return fail(StepVerifying, "the new certificate did not connect within %s: %v", timeout, err)
	}
	target := j.JobID
	if target == "" {
		target = "$next"
	}
	if _, err := r.deps.Jobs.Describe(vctx, target, jobs.DescribeRequest{}); err != nil {
		var rej *jobs.RejectedError
		if !errors.As(err, &rej) { // a rejected reply is still a round trip
			return fail(StepVerifying, "no Jobs reply on the new certificate within %s: %v", timeout, err)
		}
	}
	st.step(ctx, StepVerifying)
	return nil
}

// commit runs step 7: the new slot becomes active.
func (r *Rotator) commit(j *Journal) *Outcome {
	if err := r.journal(j, StepCommitted); err != nil {
		r.log.Error("rotation: journal commit", "err", err)
	}
	if err := identity.SaveActive(r.cfg.StateDir, identity.Active{Slot: j.To, CertificateFile: j.NewCertificate,
		CertificateID: j.NewCertificateID, Since: r.now().UTC()}); err != nil {
		// The journal says committed; start-up recovery will write it again.
		r.log.Error("rotation: record active slot", "err", err)
	}
	// The renewal time belongs to the new certificate now (the loop
	// recomputes it at once), but no renewal starts before a check
	// interval has passed.
	r.hold()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	r.log.Info("rotation committed", "rotation", j.ID, "new_certificate_id", j.NewCertificateID, "old_certificate_id", j.OldCertificateID)
	return &Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusSucceeded), Step: StepCommitted,
		NewCertificateID: j.NewCertificateID, OldCertificateID: j.OldCertificateID}
}

// rollback returns to the old identity and deletes what the rotation made.
func (r *Rotator) rollback(ctx context.Context, j *Journal, old *identity.Identity, f *failure) *Outcome {
	r.log.Warn("rotation failed, rolling back", "rotation", j.ID, "step", string(f.step), "reason", f.reason)
	j.FailedStep, j.Reason = f.step, f.reason
	if err := r.journal(j, StepRolledBack); err != nil {
		r.log.Error("rotation: journal rollback", "err", err)
	}
	if old != nil && r.deps.Holder.Current() != old {
		since := time.Now()
		r.deps.Holder.Set(old)
		r.deps.Conn.Reconnect()
		wctx, cancel := context.WithTimeout(ctx, time.Duration(j.VerifyTimeout))
		if err := r.deps.Conn.WaitConnected(wctx, since); err != nil {
			r.log.Warn("rotation: old identity not reconnected yet", "err", err)
		}
		cancel()
	}
	r.undo(context.WithoutCancel(ctx), j)
	return &Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusFailed), Step: f.step, Reason: f.reason,
		OldCertificateID: j.OldCertificateID, NewCertificateID: j.NewCertificateID}
}

// undo deletes the new key and certificate of a rolled-back rotation. It is
// idempotent, and never touches the active slot.
func (r *Rotator) undo(ctx context.Context, j *Journal) {
	active, err := identity.LoadActive(r.cfg.StateDir, r.cfg.ConfigCertificate)
	if err == nil && active.Slot == j.To {
		r.log.Error("rotation: refusing to delete the active slot during rollback", "slot", string(j.To))
		return
	}
	if err := r.deps.Store.Delete(ctx, r.cfg.Slots.Key(j.To)); err != nil {
		r.log.Warn("rotation: delete new key", "key", r.cfg.Slots.Key(j.To).Redacted(), "err", err)
	}
	if j.NewCertificate != "" {
		if err := os.Remove(j.NewCertificate); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("rotation: remove new certificate", "err", err)
		}
	}
}

// cleanup runs step 8: the old key (and a certificate thingd stored) goes.
func (r *Rotator) cleanup(ctx context.Context) {
	j := r.current()
	if j == nil || (j.Step != StepCommitted && j.Step != StepCleaned) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.journal(j, StepCleaned); err != nil {
		r.log.Error("rotation: journal cleanup", "err", err)
		return
	}
	oldKey := r.cfg.Slots.Key(j.From)
	if err := r.deps.Store.Delete(ctx, oldKey); err != nil {
		r.log.Warn("rotation: delete old key (will retry at next start)", "key", oldKey.Redacted(), "err", err)
		return
	}
	if j.OldCertificate == identity.SlotCertificatePath(r.cfg.StateDir, j.From) {
		if err := os.Remove(j.OldCertificate); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("rotation: remove old certificate", "err", err)
		}
	}
	r.log.Info("rotation cleaned up: old key deleted", "rotation", j.ID, "old_key", oldKey.Redacted())
	r.finish(Outcome{ID: j.ID, JobID: j.JobID, Result: string(jobs.StatusSucceeded), Step: StepCommitted,
		NewCertificateID: j.NewCertificateID, OldCertificateID: j.OldCertificateID})
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o644)
}
