package audit

import (
	"context"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// MitigationTarget selects the findings of a mitigation actions task: those
// of an audit task (optionally only some checks' reason codes) or a list of
// findings.
type MitigationTarget struct {
	AuditTaskID                  string              `json:"auditTaskId,omitempty"`
	FindingIDs                   []string            `json:"findingIds,omitempty"`
	AuditCheckToReasonCodeFilter map[string][]string `json:"auditCheckToReasonCodeFilter,omitempty"`
}

// FindingsStatistics counts a check's findings by outcome in a mitigation
// actions task.
type FindingsStatistics struct {
	TotalFindingsCount     int64 `json:"totalFindingsCount"`
	FailedFindingsCount    int64 `json:"failedFindingsCount"`
	SucceededFindingsCount int64 `json:"succeededFindingsCount"`
	SkippedFindingsCount   int64 `json:"skippedFindingsCount"`
	CanceledFindingsCount  int64 `json:"canceledFindingsCount"`
}

// MitigationTask is an audit mitigation actions task
// (DescribeAuditMitigationActionsTask, plus its id).
type MitigationTask struct {
	TaskID                     string                        `json:"taskId"`
	TaskStatus                 string                        `json:"taskStatus"`
	StartTime                  Time                          `json:"startTime"`
	EndTime                    Time                          `json:"endTime,omitzero"`
	TaskStatistics             map[string]FindingsStatistics `json:"taskStatistics"`
	Target                     MitigationTarget              `json:"target"`
	AuditCheckToActionsMapping map[string][]string           `json:"auditCheckToActionsMapping"`
	ActionsDefinition          []MitigationAction            `json:"actionsDefinition"`
}

// Execution is one action applied to one finding
// (ListAuditMitigationActionsExecutions).
type Execution struct {
	TaskID     string `json:"taskId"`
	FindingID  string `json:"findingId"`
	ActionName string `json:"actionName"`
	ActionID   string `json:"actionId"`
	Status     string `json:"status"`
	StartTime  Time   `json:"startTime"`
	EndTime    Time   `json:"endTime,omitzero"`
	ErrorCode  string `json:"errorCode,omitempty"`
	Message    string `json:"message,omitempty"`
}

// StartMitigationTask starts applying mitigation actions to audit findings
// (StartAuditMitigationActionsTask) and returns at once; the task runs in
// the background. mapping names, per check, the actions for its findings;
// an action whose type does not apply to the check is SKIPPED. The task
// is COMPLETED when every execution completed or was skipped, FAILED when
// one failed.
func (s *Service) StartMitigationTask(id string, target MitigationTarget, mapping map[string][]string) (MitigationTask, error) {
	t, findings, err := s.newMitigationTask(id, target, mapping)
	if err != nil {
		return MitigationTask{}, err
	}
	if err := s.goRun(func() { s.runMitigation(t, findings) }); err != nil {
		return MitigationTask{}, err
	}
	return t, nil
}

// newMitigationTask validates and stores an IN_PROGRESS task and returns it
// with the findings it targets.
func (s *Service) newMitigationTask(id string, target MitigationTarget, mapping map[string][]string) (MitigationTask, []Finding, error) {
	var t MitigationTask
	var findings []Finding
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		t, findings, err = s.newMitigationTaskTx(tx, id, target, mapping)
		return err
	})
	if err != nil {
		return MitigationTask{}, nil, fmt.Errorf("audit: start mitigation actions task: %w", err)
	}
	s.log.Info("mitigation actions task started", "task", id, "findings", len(findings))
	return t, findings, nil
}

// newMitigationTaskTx is newMitigationTask inside tx.
func (s *Service) newMitigationTaskTx(tx *bolt.Tx, id string, target MitigationTarget, mapping map[string][]string) (MitigationTask, []Finding, error) {
	if !taskIDRE.MatchString(id) {
		return MitigationTask{}, nil, fmt.Errorf("%w: task id %q must match [a-zA-Z0-9_-]{1,128}", registry.ErrInvalid, id)
	}
	if (target.AuditTaskID == "") == (len(target.FindingIDs) == 0) {
		return MitigationTask{}, nil, fmt.Errorf("%w: target needs auditTaskId or findingIds (one of them)", registry.ErrInvalid)
	}
	if len(mapping) == 0 {
		return MitigationTask{}, nil, fmt.Errorf("%w: auditCheckToActionsMapping is required", registry.ErrInvalid)
	}
	canonical := map[string][]string{}
	for check, names := range mapping {
		canonical[CanonicalCheckName(check)] = names
	}
	t := MitigationTask{TaskID: id, TaskStatus: TaskInProgress, StartTime: At(s.now()), Target: target,
		AuditCheckToActionsMapping: canonical, TaskStatistics: map[string]FindingsStatistics{}}
	if tx.Bucket(bucketMitigation).Get([]byte(id)) != nil {
		return MitigationTask{}, nil, fmt.Errorf("%w: mitigation actions task %s", registry.ErrAlreadyExists, id)
	}
	var err error
	if t.ActionsDefinition, err = actionsOf(tx, canonical); err != nil {
		return MitigationTask{}, nil, err
	}
	findings, err := targetFindings(tx, target)
	if err != nil {
		return MitigationTask{}, nil, err
	}
	findings = slices.DeleteFunc(findings, func(f Finding) bool {
		codes, filtered := target.AuditCheckToReasonCodeFilter[f.CheckName]
		return canonical[f.CheckName] == nil || filtered && !slices.Contains(codes, f.ReasonForNonComplianceCode)
	})
	return t, findings, putJSON(tx.Bucket(bucketMitigation), id, t)
}

// actionsOf returns the actions a mapping names, each once, by name.
func actionsOf(tx *bolt.Tx, mapping map[string][]string) ([]MitigationAction, error) {
	var names []string
	for _, n := range mapping {
		names = append(names, n...)
	}
	slices.Sort(names)
	var out []MitigationAction
	for _, n := range slices.Compact(names) {
		var a MitigationAction
		if err := mustGetJSON(tx.Bucket(bucketActions), "mitigation action", n, &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// targetFindings returns the findings a target designates.
func targetFindings(tx *bolt.Tx, target MitigationTarget) ([]Finding, error) {
	if target.AuditTaskID != "" {
		var rec taskRecord
		if err := mustGetJSON(tx.Bucket(bucketTasks), "audit task", target.AuditTaskID, &rec); err != nil {
			return nil, err
		}
		if rec.TaskStatus != TaskCompleted {
			return nil, fmt.Errorf("%w: audit task %s is %s, not COMPLETED", registry.ErrInvalid, rec.TaskID, rec.TaskStatus)
		}
		return listPrefixJSON[Finding](tx, bucketFindings, target.AuditTaskID)
	}
	all, err := listJSON[Finding](tx, bucketFindings)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, id := range target.FindingIDs {
		i := slices.IndexFunc(all, func(f Finding) bool { return f.FindingID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w: finding %s", registry.ErrNotFound, id)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// runMitigation applies a task's actions to its findings, in order, and
// stores the executions and the finished task.
func (s *Service) runMitigation(t MitigationTask, findings []Finding) {
	byName := map[string]MitigationAction{}
	for _, a := range t.ActionsDefinition {
		byName[a.ActionName] = a
	}
	var execs []Execution
	failed := false
	for _, f := range findings {
		st := t.TaskStatistics[f.CheckName]
		st.TotalFindingsCount++
		outcome := ExecutionSkipped
		for _, name := range t.AuditCheckToActionsMapping[f.CheckName] {
			a := byName[name]
			start := At(s.now())
			status, code, msg := s.apply(t.TaskID, a, f)
			execs = append(execs, Execution{TaskID: t.TaskID, FindingID: f.FindingID, ActionName: name, ActionID: a.ActionID,
				Status: status, StartTime: start, EndTime: At(s.now()), ErrorCode: code, Message: msg})
			s.log.Info("mitigation action applied", "task", t.TaskID, "finding", f.FindingID, "check", f.CheckName,
				"action", name, "status", status, "message", msg)
			switch {
			case status == ExecutionFailed:
				outcome = ExecutionFailed
			case status == ExecutionCompleted && outcome != ExecutionFailed:
				outcome = ExecutionCompleted
			}
		}
		switch outcome {
		case ExecutionFailed:
			st.FailedFindingsCount++
			failed = true
		case ExecutionCompleted:
			st.SucceededFindingsCount++
		default:
			st.SkippedFindingsCount++
		}
		t.TaskStatistics[f.CheckName] = st
	}
	for check := range t.AuditCheckToActionsMapping {
		if _, ok := t.TaskStatistics[check]; !ok {
			t.TaskStatistics[check] = FindingsStatistics{}
		}
	}
	t.TaskStatus, t.EndTime = TaskCompleted, At(s.now())
	if failed {
		t.TaskStatus = TaskFailed
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, e := range execs {
			if err := putJSON(tx.Bucket(bucketExecutions), seqKey(t.TaskID, i), e); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketMitigation), t.TaskID, t)
	})
	if err != nil {
		s.log.Error("store mitigation actions task", "task", t.TaskID, "error", err)
		return
	}
	s.log.Info("mitigation actions task finished", "task", t.TaskID, "status", t.TaskStatus, "executions", len(execs))
}

// DescribeMitigationTask returns a mitigation actions task.
func (s *Service) DescribeMitigationTask(id string) (MitigationTask, error) {
	var t MitigationTask
	err := s.db.View(func(tx *bolt.Tx) error {
		return mustGetJSON(tx.Bucket(bucketMitigation), "mitigation actions task", id, &t)
	})
	if err != nil {
		return MitigationTask{}, fmt.Errorf("audit: %w", err)
	}
	return t, nil
}

// WaitMitigationTask waits until a mitigation actions task is no longer
// IN_PROGRESS and returns it.
func (s *Service) WaitMitigationTask(ctx context.Context, id string) (MitigationTask, error) {
	return waitDone(ctx, func() (MitigationTask, string, error) {
		t, err := s.DescribeMitigationTask(id)
		return t, t.TaskStatus, err
	})
}

// MitigationTasks returns the mitigation actions tasks, newest first,
// those of one audit task if auditTaskID is not "".
func (s *Service) MitigationTasks(auditTaskID string) ([]MitigationTask, error) {
	var out []MitigationTask
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[MitigationTask](tx, bucketMitigation)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list mitigation actions tasks: %w", err)
	}
	out = slices.DeleteFunc(out, func(t MitigationTask) bool { return !matches(auditTaskID, t.Target.AuditTaskID) })
	slices.SortStableFunc(out, func(a, b MitigationTask) int { return b.StartTime.Compare(a.StartTime.Time) })
	return out, nil
}

// MitigationExecutions returns a task's executions in order, only those of
// one finding and status when they are not "".
func (s *Service) MitigationExecutions(taskID, findingID, status string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMitigation).Get([]byte(taskID)) == nil {
			return fmt.Errorf("%w: mitigation actions task %s", registry.ErrNotFound, taskID)
		}
		all, err := listPrefixJSON[Execution](tx, bucketExecutions, taskID)
		for _, e := range all {
			if matches(findingID, e.FindingID) && matches(status, e.Status) {
				out = append(out, e)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list mitigation executions: %w", err)
	}
	return out, nil
}

// sortedKeys returns a map's keys, sorted.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
