package audit

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/registry"
)

// taskRecord is a stored audit task.
type taskRecord struct {
	Task
	TargetCheckNames []string  `json:"targetCheckNames"`
	Since            time.Time `json:"since"` // start of the connection history window
}

// StartOnDemandAuditTask starts an audit of the named checks (all enabled
// checks if none is named; thingsim's extension: AWS requires at least
// one) and returns its id at once; the task runs in the background. Every
// named check must be enabled. At most 10 on-demand tasks may run at a
// time.
func (s *Service) StartOnDemandAuditTask(checkNames []string) (string, error) {
	t, err := s.startTask(OnDemandTask, "", checkNames, s.now().Add(-auditHistoryWindow))
	if err != nil {
		return "", err
	}
	return t.TaskID, nil
}

// startTask stores a new IN_PROGRESS task and runs it in the background.
func (s *Service) startTask(taskType, scheduledName string, checkNames []string, since time.Time) (taskRecord, error) {
	now := s.now().UTC()
	var rec taskRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		cfg, err := configurationTx(tx)
		if err != nil {
			return err
		}
		names, err := targetChecks(cfg, checkNames)
		if err != nil {
			return err
		}
		if taskType == OnDemandTask {
			if n, err := s.runningOnDemandTx(tx); err != nil {
				return err
			} else if n >= maxRunningOnDemand {
				return fmt.Errorf("%w: %d on-demand audit tasks are running already (the limit is %d)", registry.ErrInvalid, n, maxRunningOnDemand)
			}
		}
		rec = taskRecord{
			Task: Task{
				TaskID: s.newID(), TaskStatus: TaskInProgress, TaskType: taskType, TaskStartTime: At(now),
				ScheduledAuditName: scheduledName, AuditDetails: map[string]CheckDetails{},
				TaskStatistics: TaskStatistics{TotalChecks: len(names), InProgressChecks: len(names)},
			},
			TargetCheckNames: names, Since: since.UTC(),
		}
		for _, n := range names {
			rec.AuditDetails[n] = CheckDetails{CheckRunStatus: CheckInProgress}
		}
		return putJSON(tx.Bucket(bucketTasks), rec.TaskID, rec)
	})
	if err != nil {
		return taskRecord{}, fmt.Errorf("audit: start audit task: %w", err)
	}
	s.log.Info("audit task started", "task", rec.TaskID, "type", taskType, "checks", rec.TargetCheckNames)
	if err := s.goRun(func() { s.run(rec) }); err != nil {
		return taskRecord{}, err
	}
	return rec, nil
}

// targetChecks resolves a task's check names: canonical, known, enabled,
// sorted; all enabled ones when none is named.
func targetChecks(cfg Configuration, names []string) ([]string, error) {
	var out []string
	if len(names) == 0 {
		for name, c := range cfg.AuditCheckConfigurations {
			if _, ok := checks[name]; ok && c.Enabled {
				out = append(out, name)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: no audit check is enabled", registry.ErrInvalid)
		}
	}
	for _, n := range names {
		n = CanonicalCheckName(n)
		if _, ok := checks[n]; !ok {
			return nil, fmt.Errorf("%w: unknown or unsupported audit check %q (thingsim implements %v)", registry.ErrInvalid, n, CheckNames())
		}
		if !cfg.AuditCheckConfigurations[n].Enabled {
			return nil, fmt.Errorf("%w: audit check %s is not enabled (UpdateAccountAuditConfiguration)", registry.ErrInvalid, n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (s *Service) runningOnDemandTx(tx *bolt.Tx) (int, error) {
	tasks, err := listJSON[taskRecord](tx, bucketTasks)
	n := 0
	for _, t := range tasks {
		if t.TaskType == OnDemandTask && t.TaskStatus == TaskInProgress {
			n++
		}
	}
	return n, err
}

// run runs a task's checks, stores the findings and the completed task,
// then sends the notification and applies the remediation rules.
func (s *Service) run(rec taskRecord) {
	log := s.log.With("task", rec.TaskID)
	in, err := s.snapshot(rec)
	if err != nil {
		log.Error("audit task failed", "error", err)
		rec, _ = s.finish(rec, nil, err)
		s.notify(rec.Task)
		return
	}
	var findings []Finding
	for _, name := range rec.TargetCheckNames {
		spec := checks[name]
		res := spec.run(in)
		sortFound(res.found)
		compliant := len(res.found) == 0
		d := CheckDetails{CheckRunStatus: CheckCompliant, CheckCompliant: &compliant, TotalResourcesCount: int64(res.total)}
		resources := map[string]bool{}
		for _, nc := range res.found {
			findings = append(findings, Finding{
				FindingID: s.newID(), TaskID: rec.TaskID, CheckName: name, TaskStartTime: rec.TaskStartTime,
				FindingTime: At(in.now), Severity: spec.severity, NonCompliantResource: nc.resource, RelatedResources: nc.related,
				ReasonForNonCompliance: nc.reason, ReasonForNonComplianceCode: nc.code,
			})
			resources[resourceKey(nc.resource)] = true
		}
		if !compliant {
			d.CheckRunStatus = CheckNonCompliant
			d.NonCompliantResourcesCount = int64(len(resources))
		}
		rec.AuditDetails[name] = d
	}
	rec, rem := s.finish(rec, findings, nil)
	log.Info("audit task completed", "status", rec.TaskStatus, "nonCompliantChecks", rec.TaskStatistics.NonCompliantChecks, "findings", len(findings))
	s.notify(rec.Task)
	if rem != nil {
		s.runMitigation(rem.task, rem.findings)
	}
}

func resourceKey(r Resource) string {
	id := r.ResourceIdentifier
	s := r.ResourceType + "\x00" + id.DeviceCertificateID + id.CACertificateID + id.ClientID
	if p := id.PolicyVersionIdentifier; p != nil {
		s += p.PolicyName + "\x00" + p.PolicyVersionID
	}
	return s
}

// finish stores the findings and the task, COMPLETED, or FAILED with every
// check FAILED if runErr is set, and the remediation task its rules call
// for (returned to be run).
func (s *Service) finish(rec taskRecord, findings []Finding, runErr error) (taskRecord, *remediation) {
	rec.TaskStatus = TaskCompleted
	if runErr != nil {
		rec.TaskStatus = TaskFailed
		for name := range rec.AuditDetails {
			rec.AuditDetails[name] = CheckDetails{CheckRunStatus: CheckFailed, Message: runErr.Error()}
		}
	}
	st := TaskStatistics{TotalChecks: len(rec.AuditDetails)}
	for _, d := range rec.AuditDetails {
		switch d.CheckRunStatus {
		case CheckCompliant:
			st.CompliantChecks++
		case CheckNonCompliant:
			st.NonCompliantChecks++
		case CheckFailed:
			st.FailedChecks++
		case CheckCanceled:
			st.CanceledChecks++
		}
	}
	rec.TaskStatistics = st
	var rem *remediation
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFindings)
		for i, f := range findings {
			if err := putJSON(b, seqKey(rec.TaskID, i), f); err != nil {
				return err
			}
		}
		if err := putJSON(tx.Bucket(bucketTasks), rec.TaskID, rec); err != nil {
			return err
		}
		var err error
		if rem, err = s.remediateTx(tx, rec.Task); err != nil {
			s.log.Error("remediation not started", "task", rec.TaskID, "error", err)
			rem = nil // the audit result stands without it
		}
		return nil
	})
	if err != nil {
		s.log.Error("store audit task", "task", rec.TaskID, "error", err)
	}
	return rec, rem
}

// snapshot reads what the checks look at.
func (s *Service) snapshot(rec taskRecord) (*input, error) {
	in := &input{now: s.now().UTC(), since: rec.Since}
	var err error
	if in.config, err = s.Configuration(); err != nil {
		return nil, err
	}
	certs, err := s.reg.Certificates()
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		parsed, _ := ca.ParseCertificatePEM([]byte(c.PEM)) // nil: a certificate the checks cannot read
		in.certs = append(in.certs, certificate{Certificate: c, x509: parsed})
	}
	root := s.opts.CA.Certificate()
	in.cas = append(in.cas, caCertificate{id: ca.CertificateID(root.Raw), cert: root})
	extra, err := s.reg.CACertificates()
	if err != nil {
		return nil, err
	}
	for _, p := range extra {
		c, err := ca.ParseCertificatePEM(p)
		if err != nil {
			continue // registered by Server.RegisterCACertificate, which parsed it
		}
		if id := ca.CertificateID(c.Raw); !slices.ContainsFunc(in.cas, func(x caCertificate) bool { return x.id == id }) {
			in.cas = append(in.cas, caCertificate{id: id, cert: c})
		}
	}
	conns, err := s.reg.Connections()
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		if c.Refused == "" && !end(c, in.now).Before(in.since) && !c.ConnectedAt.After(in.now) {
			in.connections = append(in.connections, c)
		}
	}
	if s.opts.Policies != nil && (slices.Contains(rec.TargetCheckNames, PolicyOverlyPermissive) || slices.Contains(rec.TargetCheckNames, PolicyPotentialMisconfiguration)) {
		if in.policies, err = s.opts.Policies.DefaultPolicyVersions(); err != nil {
			return nil, err
		}
	}
	revocations := s.opts.CA.Revocations()
	in.revokedAt = func(serial *big.Int, cert *x509.Certificate) (time.Time, bool) {
		if !s.opts.CA.Issued(cert) {
			return time.Time{}, false
		}
		for _, r := range revocations {
			if r.SerialNumber.Cmp(serial) == 0 {
				return r.RevokedAt, true
			}
		}
		return time.Time{}, false
	}
	return in, nil
}

// DescribeAuditTask returns a task.
func (s *Service) DescribeAuditTask(id string) (Task, error) {
	var rec taskRecord
	err := s.db.View(func(tx *bolt.Tx) error { return mustGetJSON(tx.Bucket(bucketTasks), "audit task", id, &rec) })
	if err != nil {
		return Task{}, fmt.Errorf("audit: %w", err)
	}
	return rec.Task, nil
}

// WaitAuditTask waits until a task is no longer IN_PROGRESS and returns it.
func (s *Service) WaitAuditTask(ctx context.Context, id string) (Task, error) {
	return waitDone(ctx, func() (Task, string, error) {
		t, err := s.DescribeAuditTask(id)
		return t, t.TaskStatus, err
	})
}

// waitDone polls get until the status it returns is not IN_PROGRESS.
func waitDone[T any](ctx context.Context, get func() (T, string, error)) (T, error) {
	for {
		v, status, err := get()
		if err != nil || status != TaskInProgress {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TaskFilter selects the tasks ListAuditTasks returns; zero fields select
// everything.
type TaskFilter struct {
	Start, End time.Time // taskStartTime within [Start, End]
	TaskType   string
	TaskStatus string
}

// ListAuditTasks returns the tasks the filter selects, newest first.
func (s *Service) ListAuditTasks(f TaskFilter) ([]Task, error) {
	var out []Task
	err := s.db.View(func(tx *bolt.Tx) error {
		recs, err := listJSON[taskRecord](tx, bucketTasks)
		for _, r := range recs {
			t := r.TaskStartTime.Time
			if (f.Start.IsZero() || !t.Before(f.Start)) && (f.End.IsZero() || !t.After(f.End)) &&
				matches(f.TaskType, r.TaskType) && matches(f.TaskStatus, r.TaskStatus) {
				out = append(out, r.Task)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list audit tasks: %w", err)
	}
	slices.SortStableFunc(out, func(a, b Task) int { return b.TaskStartTime.Compare(a.TaskStartTime.Time) })
	return out, nil
}

func matches(want, got string) bool { return want == "" || want == got }

// FindingFilter selects the findings ListAuditFindings returns; zero fields
// select everything.
type FindingFilter struct {
	TaskID     string
	CheckName  string
	Resource   *ResourceIdentifier // exact match
	Start, End time.Time           // findingTime within [Start, End]
}

// ListAuditFindings returns the findings the filter selects: a task's in
// check and resource order, or, without a task, every task's, newest task
// first.
func (s *Service) ListAuditFindings(f FindingFilter) ([]Finding, error) {
	f.CheckName = CanonicalCheckName(f.CheckName)
	var out []Finding
	err := s.db.View(func(tx *bolt.Tx) error {
		var all []Finding
		var err error
		if f.TaskID != "" {
			if tx.Bucket(bucketTasks).Get([]byte(f.TaskID)) == nil {
				return fmt.Errorf("%w: audit task %s", registry.ErrNotFound, f.TaskID)
			}
			all, err = listPrefixJSON[Finding](tx, bucketFindings, f.TaskID)
		} else {
			all, err = listJSON[Finding](tx, bucketFindings)
			slices.SortStableFunc(all, func(a, b Finding) int { return b.TaskStartTime.Compare(a.TaskStartTime.Time) })
		}
		for _, x := range all {
			t := x.FindingTime.Time
			if matches(f.CheckName, x.CheckName) && (f.Resource == nil || sameIdentifier(*f.Resource, x.NonCompliantResource.ResourceIdentifier)) &&
				(f.Start.IsZero() || !t.Before(f.Start)) && (f.End.IsZero() || !t.After(f.End)) {
				out = append(out, x)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list audit findings: %w", err)
	}
	return out, nil
}

func sameIdentifier(a, b ResourceIdentifier) bool {
	if (a.PolicyVersionIdentifier == nil) != (b.PolicyVersionIdentifier == nil) ||
		a.PolicyVersionIdentifier != nil && *a.PolicyVersionIdentifier != *b.PolicyVersionIdentifier {
		return false
	}
	a.PolicyVersionIdentifier, b.PolicyVersionIdentifier = nil, nil
	return a == b
}
