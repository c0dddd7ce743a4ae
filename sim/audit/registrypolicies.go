package audit

import (
	"time"

	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// RegistryPolicies returns the Policies of the registry's IoT policies, with
// the built-in thingd-device policy as the restrictive document.
func RegistryPolicies(reg *registry.Registry, now func() time.Time) Policies {
	return registryPolicies{reg: reg, now: now}
}

// registryPolicies gives the audit the registry's policies.
type registryPolicies struct {
	reg *registry.Registry
	now func() time.Time
}

func fromRegistry(v registry.PolicyVersion) PolicyVersion {
	return PolicyVersion{PolicyName: v.PolicyName, VersionID: v.VersionID, Document: v.Document, IsDefault: v.IsDefault}
}

func (p registryPolicies) DefaultPolicyVersions() ([]PolicyVersion, error) {
	policies, err := p.reg.Policies()
	if err != nil {
		return nil, err
	}
	out := make([]PolicyVersion, len(policies))
	for i, pol := range policies {
		out[i] = PolicyVersion{PolicyName: pol.Name, VersionID: pol.DefaultVersionID, Document: pol.Document, IsDefault: true}
	}
	return out, nil
}

func (p registryPolicies) PolicyVersions(name string) ([]PolicyVersion, error) {
	versions, err := p.reg.PolicyVersions(name)
	if err != nil {
		return nil, err
	}
	out := make([]PolicyVersion, len(versions))
	for i, v := range versions {
		out[i] = fromRegistry(v)
	}
	return out, nil
}

func (p registryPolicies) CreatePolicyVersion(name, document string, setAsDefault bool) (PolicyVersion, error) {
	v, err := p.reg.CreatePolicyVersion(name, document, setAsDefault, p.now())
	return fromRegistry(v), err
}

func (p registryPolicies) DeletePolicyVersion(name, versionID string) error {
	return p.reg.DeletePolicyVersion(name, versionID, p.now())
}

// RestrictiveDocument is the built-in least-privilege device policy,
// thingd-device.
func (p registryPolicies) RestrictiveDocument() string {
	return policy.DevicePolicy(registry.Region, registry.AccountID)
}
