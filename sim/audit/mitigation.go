package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// Mitigation action types (§5.6).
const (
	ActionUpdateDeviceCertificate     = "UPDATE_DEVICE_CERTIFICATE"
	ActionUpdateCACertificate         = "UPDATE_CA_CERTIFICATE"
	ActionAddThingsToThingGroup       = "ADD_THINGS_TO_THING_GROUP"
	ActionReplaceDefaultPolicyVersion = "REPLACE_DEFAULT_POLICY_VERSION"
	ActionEnableIoTLogging            = "ENABLE_IOT_LOGGING"
	ActionPublishFindingToSNS         = "PUBLISH_FINDING_TO_SNS"
)

// Mitigation execution statuses.
const (
	ExecutionPending    = "PENDING"
	ExecutionInProgress = "IN_PROGRESS"
	ExecutionCompleted  = "COMPLETED"
	ExecutionFailed     = "FAILED"
	ExecutionSkipped    = "SKIPPED"
	ExecutionCanceled   = "CANCELED"
)

// MaxPolicyVersions is how many versions a policy may have (§4.7).
const MaxPolicyVersions = 5

// UpdateCertificateParams is updateDeviceCertificateParams and
// updateCACertificateParams.
type UpdateCertificateParams struct {
	Action string `json:"action"` // DEACTIVATE
}

// AddThingsToThingGroupParams is addThingsToThingGroupParams.
type AddThingsToThingGroupParams struct {
	ThingGroupNames       []string `json:"thingGroupNames"`
	OverrideDynamicGroups bool     `json:"overrideDynamicGroups,omitempty"`
}

// ReplaceDefaultPolicyVersionParams is replaceDefaultPolicyVersionParams.
type ReplaceDefaultPolicyVersionParams struct {
	TemplateName string `json:"templateName"` // BLANK_POLICY
}

// EnableIoTLoggingParams is enableIoTLoggingParams.
type EnableIoTLoggingParams struct {
	RoleArnForLogging string `json:"roleArnForLogging"`
	LogLevel          string `json:"logLevel"`
}

// PublishFindingToSNSParams is publishFindingToSnsParams. thingsim POSTs
// the finding to TopicArn when it is an http(s) URL, and publishes it on
// FindingTopic in any case.
type PublishFindingToSNSParams struct {
	TopicArn string `json:"topicArn"`
}

// ActionParams are a mitigation action's parameters; the one member set
// determines its type.
type ActionParams struct {
	UpdateDeviceCertificateParams     *UpdateCertificateParams           `json:"updateDeviceCertificateParams,omitempty"`
	UpdateCACertificateParams         *UpdateCertificateParams           `json:"updateCACertificateParams,omitempty"`
	AddThingsToThingGroupParams       *AddThingsToThingGroupParams       `json:"addThingsToThingGroupParams,omitempty"`
	ReplaceDefaultPolicyVersionParams *ReplaceDefaultPolicyVersionParams `json:"replaceDefaultPolicyVersionParams,omitempty"`
	EnableIoTLoggingParams            *EnableIoTLoggingParams            `json:"enableIoTLoggingParams,omitempty"`
	PublishFindingToSNSParams         *PublishFindingToSNSParams         `json:"publishFindingToSnsParams,omitempty"`
}

// actionType returns the type of the one member set, and an error unless
// exactly one is.
func (p ActionParams) actionType() (string, error) {
	var types []string
	for _, m := range []struct {
		set bool
		typ string
	}{
		{p.UpdateDeviceCertificateParams != nil, ActionUpdateDeviceCertificate},
		{p.UpdateCACertificateParams != nil, ActionUpdateCACertificate},
		{p.AddThingsToThingGroupParams != nil, ActionAddThingsToThingGroup},
		{p.ReplaceDefaultPolicyVersionParams != nil, ActionReplaceDefaultPolicyVersion},
		{p.EnableIoTLoggingParams != nil, ActionEnableIoTLogging},
		{p.PublishFindingToSNSParams != nil, ActionPublishFindingToSNS},
	} {
		if m.set {
			types = append(types, m.typ)
		}
	}
	if len(types) != 1 {
		return "", fmt.Errorf("%w: actionParams must set exactly one member (got %d)", registry.ErrInvalid, len(types))
	}
	return types[0], nil
}

// validate checks the parameters of an action type thingsim implements.
func (p ActionParams) validate(typ string) error {
	switch typ {
	case ActionUpdateDeviceCertificate:
		if p.UpdateDeviceCertificateParams.Action != "DEACTIVATE" {
			return fmt.Errorf("%w: updateDeviceCertificateParams.action must be DEACTIVATE", registry.ErrInvalid)
		}
	case ActionAddThingsToThingGroup:
		groups := p.AddThingsToThingGroupParams.ThingGroupNames
		if len(groups) == 0 || len(groups) > 10 {
			return fmt.Errorf("%w: addThingsToThingGroupParams.thingGroupNames must name 1 to 10 groups", registry.ErrInvalid)
		}
	case ActionReplaceDefaultPolicyVersion:
		if p.ReplaceDefaultPolicyVersionParams.TemplateName != "BLANK_POLICY" {
			return fmt.Errorf("%w: replaceDefaultPolicyVersionParams.templateName must be BLANK_POLICY", registry.ErrInvalid)
		}
	case ActionPublishFindingToSNS:
		if p.PublishFindingToSNSParams.TopicArn == "" {
			return fmt.Errorf("%w: publishFindingToSnsParams.topicArn is required (an SNS topic ARN, or in thingsim an http(s) URL)", registry.ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: thingsim does not implement mitigation action type %s", registry.ErrInvalid, typ)
	}
	return nil
}

// MitigationAction is a stored mitigation action (DescribeMitigationAction).
type MitigationAction struct {
	ActionName       string       `json:"actionName"`
	ActionType       string       `json:"actionType"`
	ActionArn        string       `json:"actionArn"`
	ActionID         string       `json:"actionId"`
	RoleArn          string       `json:"roleArn,omitempty"`
	ActionParams     ActionParams `json:"actionParams"`
	CreationDate     Time         `json:"creationDate"`
	LastModifiedDate Time         `json:"lastModifiedDate"`
}

// MitigationActionARN returns the ARN of a mitigation action.
func MitigationActionARN(name string) string { return arnPrefix + "mitigationaction/" + name }

// CreateMitigationAction stores a mitigation action. The type is the
// member of params that is set; UPDATE_CA_CERTIFICATE and
// ENABLE_IOT_LOGGING are not implemented. roleArn is kept but not used.
func (s *Service) CreateMitigationAction(name, roleArn string, params ActionParams) (MitigationAction, error) {
	if !nameRE.MatchString(name) {
		return MitigationAction{}, fmt.Errorf("audit: create mitigation action: %w: name %q must match [a-zA-Z0-9_-]{1,128}", registry.ErrInvalid, name)
	}
	typ, err := params.actionType()
	if err == nil {
		err = params.validate(typ)
	}
	if err != nil {
		return MitigationAction{}, fmt.Errorf("audit: create mitigation action: %w", err)
	}
	now := At(s.now())
	a := MitigationAction{ActionName: name, ActionType: typ, ActionArn: MitigationActionARN(name), ActionID: s.newID(),
		RoleArn: roleArn, ActionParams: params, CreationDate: now, LastModifiedDate: now}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketActions)
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: mitigation action %s", registry.ErrAlreadyExists, name)
		}
		return putJSON(b, name, a)
	})
	if err != nil {
		return MitigationAction{}, fmt.Errorf("audit: create mitigation action: %w", err)
	}
	s.log.Info("mitigation action created", "action", name, "type", typ)
	return a, nil
}

// MitigationAction returns a mitigation action.
func (s *Service) MitigationAction(name string) (MitigationAction, error) {
	var a MitigationAction
	err := s.db.View(func(tx *bolt.Tx) error { return mustGetJSON(tx.Bucket(bucketActions), "mitigation action", name, &a) })
	if err != nil {
		return MitigationAction{}, fmt.Errorf("audit: %w", err)
	}
	return a, nil
}

// MitigationActions returns every mitigation action, by name.
func (s *Service) MitigationActions() ([]MitigationAction, error) {
	var out []MitigationAction
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[MitigationAction](tx, bucketActions)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list mitigation actions: %w", err)
	}
	return out, nil
}

// DeleteMitigationAction deletes a mitigation action that no remediation
// rule uses. Deleting one that does not exist succeeds, as on AWS.
func (s *Service) DeleteMitigationAction(name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		rules, err := rulesTx(tx)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if slices.Contains(r.ActionNames, name) {
				return fmt.Errorf("%w: the remediation rule for %s uses mitigation action %s", registry.ErrInvalid, r.CheckName, name)
			}
		}
		return tx.Bucket(bucketActions).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("audit: delete mitigation action: %w", err)
	}
	return nil
}

// apply runs one action on one finding and returns the execution's
// outcome: COMPLETED, SKIPPED (with why) or FAILED (with an error code).
func (s *Service) apply(taskID string, a MitigationAction, f Finding) (status, code, message string) {
	if !ActionApplies(f.CheckName, a.ActionType) {
		return ExecutionSkipped, "", fmt.Sprintf("action type %s does not apply to %s findings", a.ActionType, f.CheckName)
	}
	if f.IsSuppressed {
		return ExecutionSkipped, "", "the finding is suppressed"
	}
	var msg string
	var err error
	switch a.ActionType {
	case ActionUpdateDeviceCertificate:
		msg, err = s.deactivate(f)
	case ActionAddThingsToThingGroup:
		msg, err = s.addToGroups(f, a.ActionParams.AddThingsToThingGroupParams.ThingGroupNames)
	case ActionReplaceDefaultPolicyVersion:
		msg, err = s.replaceDefaultVersion(f)
	case ActionPublishFindingToSNS:
		msg, err = s.publishFinding(taskID, a, f)
	default:
		err = fmt.Errorf("%w: action type %s is not implemented", registry.ErrInvalid, a.ActionType)
	}
	switch {
	case errors.Is(err, errSkip):
		return ExecutionSkipped, "", strings.TrimPrefix(err.Error(), errSkip.Error()+": ")
	case errors.Is(err, registry.ErrNotFound):
		return ExecutionFailed, "ResourceNotFoundException", err.Error()
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrState):
		return ExecutionFailed, "InvalidRequestException", err.Error()
	case err != nil:
		return ExecutionFailed, "InternalFailureException", err.Error()
	}
	return ExecutionCompleted, "", msg
}

// errSkip marks an action that had nothing to do.
var errSkip = errors.New("skip")

func (s *Service) deactivate(f Finding) (string, error) {
	id := f.NonCompliantResource.ResourceIdentifier.DeviceCertificateID
	prev, err := s.reg.SetCertificateStatus(id, registry.StatusInactive, s.now())
	if errors.Is(err, registry.ErrState) {
		return "", fmt.Errorf("%w: certificate %s is REVOKED", errSkip, id)
	} else if err != nil {
		return "", err
	}
	if s.opts.Disconnect != nil {
		s.opts.Disconnect(id)
	}
	return fmt.Sprintf("certificate %s was %s, now INACTIVE", id, prev), nil
}

func (s *Service) addToGroups(f Finding, groups []string) (string, error) {
	id := f.NonCompliantResource.ResourceIdentifier.DeviceCertificateID
	things, err := s.reg.PrincipalThings(id)
	if err != nil {
		return "", err
	}
	if len(things) == 0 {
		return "", fmt.Errorf("%w: certificate %s is attached to no thing", errSkip, id)
	}
	var added []string
	for _, g := range groups {
		for _, thing := range things {
			if _, err := s.reg.AddThingToGroup(g, thing); err != nil {
				return "", err
			}
			if s.opts.ThingAddedToGroup != nil {
				if err := s.opts.ThingAddedToGroup(g, thing); err != nil {
					return "", err
				}
			}
			added = append(added, "thing "+thing+" to group "+g)
		}
	}
	return "added " + strings.Join(added, ", "), nil
}

// replaceDefaultVersion makes the restrictive device policy the new default
// version of the finding's policy, first deleting the oldest non-default
// version if the policy has MaxPolicyVersions already.
func (s *Service) replaceDefaultVersion(f Finding) (string, error) {
	p := s.opts.Policies
	id := f.NonCompliantResource.ResourceIdentifier.PolicyVersionIdentifier
	if p == nil || id == nil {
		return "", fmt.Errorf("%w: no policy to replace", registry.ErrInvalid)
	}
	versions, err := p.PolicyVersions(id.PolicyName)
	if err != nil {
		return "", err
	}
	var deleted string
	if len(versions) >= MaxPolicyVersions {
		i := slices.IndexFunc(versions, func(v PolicyVersion) bool { return !v.IsDefault })
		if i < 0 {
			return "", fmt.Errorf("%w: policy %s has %d versions and none can be deleted", registry.ErrInvalid, id.PolicyName, len(versions))
		}
		deleted = versions[i].VersionID
		if err := p.DeletePolicyVersion(id.PolicyName, deleted); err != nil {
			return "", err
		}
	}
	v, err := p.CreatePolicyVersion(id.PolicyName, p.RestrictiveDocument(), true)
	if err != nil {
		return "", err
	}
	msg := fmt.Sprintf("policy %s: version %s (restrictive device policy) is the default, replacing %s", id.PolicyName, v.VersionID, id.PolicyVersionID)
	if deleted != "" {
		msg += fmt.Sprintf("; version %s deleted to stay within %d versions", deleted, MaxPolicyVersions)
	}
	return msg, nil
}

func (s *Service) publishFinding(taskID string, a MitigationAction, f Finding) (string, error) {
	payload, err := json.Marshal(FindingMessage{AccountID: registry.AccountID, MitigationActionsTaskID: taskID, ActionName: a.ActionName, Finding: f})
	if err != nil {
		return "", err
	}
	target := a.ActionParams.PublishFindingToSNSParams.TopicArn
	if err := s.opts.Publish(FindingTopic, payload); err != nil {
		return "", err
	}
	if isURL(target) {
		if err := s.post(s.ctx, target, payload); err != nil {
			return "", fmt.Errorf("POST %s: %w", target, err)
		}
		return "published on " + FindingTopic + " and POSTed to " + target, nil
	}
	return "published on " + FindingTopic, nil
}
