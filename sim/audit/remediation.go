package audit

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// RemediationRule is thingsim's automatic remediation: when an audit task
// completes with findings for CheckName, a mitigation actions task applies
// ActionNames to them (AWS leaves this to the customer's own automation on
// the SNS notification).
type RemediationRule struct {
	CheckName   string   `json:"checkName"`
	ActionNames []string `json:"actionNames"`
}

// RemediationTaskID returns the id of the mitigation actions task the
// remediation rules start for an audit task.
func RemediationTaskID(auditTaskID string) string { return "remediation-" + auditTaskID }

// SetRemediationRule sets the actions run on a check's findings after every
// audit. The check must be one thingsim implements, and every action must
// exist and apply to the check's findings.
func (s *Service) SetRemediationRule(check string, actions []string) (RemediationRule, error) {
	check = CanonicalCheckName(check)
	r := RemediationRule{CheckName: check, ActionNames: slices.Clone(actions)}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, ok := checks[check]; !ok {
			return fmt.Errorf("%w: unknown or unsupported audit check %q (thingsim implements %v)", registry.ErrInvalid, check, CheckNames())
		}
		if len(actions) == 0 {
			return fmt.Errorf("%w: a remediation rule needs at least one mitigation action", registry.ErrInvalid)
		}
		defs, err := actionsOf(tx, map[string][]string{check: actions})
		if err != nil {
			return err
		}
		for _, a := range defs {
			if !ActionApplies(check, a.ActionType) {
				return fmt.Errorf("%w: mitigation action %s (%s) does not apply to %s findings", registry.ErrInvalid, a.ActionName, a.ActionType, check)
			}
		}
		return putJSON(tx.Bucket(bucketRemediation), check, r)
	})
	if err != nil {
		return RemediationRule{}, fmt.Errorf("audit: set remediation rule: %w", err)
	}
	s.log.Info("remediation rule set", "check", check, "actions", actions)
	return r, nil
}

// RemediationRules returns the remediation rules, by check name.
func (s *Service) RemediationRules() ([]RemediationRule, error) {
	var out []RemediationRule
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = rulesTx(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list remediation rules: %w", err)
	}
	return out, nil
}

func rulesTx(tx *bolt.Tx) ([]RemediationRule, error) {
	return listJSON[RemediationRule](tx, bucketRemediation)
}

// DeleteRemediationRule removes a check's rule; removing none succeeds.
func (s *Service) DeleteRemediationRule(check string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRemediation).Delete([]byte(CanonicalCheckName(check)))
	})
	if err != nil {
		return fmt.Errorf("audit: delete remediation rule: %w", err)
	}
	return nil
}

// remediation is a mitigation actions task the remediation rules started,
// to run after the audit's notification.
type remediation struct {
	task     MitigationTask
	findings []Finding
}

// remediateTx creates, inside the transaction that completes an audit
// task, the mitigation actions task RemediationTaskID(task) applying the
// rules of its non-compliant checks, so that it exists as soon as the audit
// task is COMPLETED; nil if no rule applies.
func (s *Service) remediateTx(tx *bolt.Tx, t Task) (*remediation, error) {
	if t.TaskStatus != TaskCompleted {
		return nil, nil
	}
	rules, err := rulesTx(tx)
	if err != nil {
		return nil, err
	}
	mapping := map[string][]string{}
	for _, r := range rules {
		if t.AuditDetails[r.CheckName].CheckRunStatus == CheckNonCompliant {
			mapping[r.CheckName] = r.ActionNames
		}
	}
	if len(mapping) == 0 {
		return nil, nil
	}
	mt, findings, err := s.newMitigationTaskTx(tx, RemediationTaskID(t.TaskID), MitigationTarget{AuditTaskID: t.TaskID}, mapping)
	if err != nil {
		return nil, err
	}
	s.log.Info("remediation started", "task", t.TaskID, "mitigationTask", mt.TaskID, "checks", sortedKeys(mapping))
	return &remediation{mt, findings}, nil
}
