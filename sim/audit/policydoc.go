package audit

import (
	"encoding/json"
	"fmt"

	"github.com/thingd/thingd/sim/policy"
)

// PolicyVersion is a version of a named IoT policy, as the policy checks
// and REPLACE_DEFAULT_POLICY_VERSION see it.
type PolicyVersion struct {
	PolicyName string
	VersionID  string
	Document   string
	IsDefault  bool
}

// policyFindings runs a per-policy criterion over the default policy
// versions: total is the number of versions, and find returns the reason
// code and text of each problem of one version.
func policyFindings(in *input, find func(*policy.Document) []MisconfigurationFinding) checkResult {
	var r checkResult
	for _, p := range in.policies {
		r.total++
		doc, err := policy.Parse(p.Document)
		if err != nil {
			continue // the registry stores valid documents only
		}
		for _, pr := range find(doc) {
			r.found = append(r.found, noncompliance{
				resource: Resource{ResourceType: ResourceIoTPolicy, ResourceIdentifier: ResourceIdentifier{
					PolicyVersionIdentifier: &PolicyVersionIdentifier{PolicyName: p.PolicyName, PolicyVersionID: p.VersionID}}},
				reason: pr.Detail, code: pr.Code,
			})
		}
	}
	return r
}

func policyOverlyPermissive(in *input) checkResult {
	return policyFindings(in, func(doc *policy.Document) []MisconfigurationFinding {
		broad := OverlyPermissive(doc)
		if len(broad) == 0 {
			return nil
		}
		return []MisconfigurationFinding{{Code: ReasonBroadDataPlaneAccess,
			Detail: fmt.Sprintf("Policy allows broad access to IoT data plane actions: %s.", joinList(broad))}}
	})
}

func policyMisconfiguration(in *input) checkResult {
	return policyFindings(in, Misconfigured)
}

func joinList(items []string) string {
	b, _ := json.Marshal(items)
	return string(b)
}
