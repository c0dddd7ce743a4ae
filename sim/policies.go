package sim

import (
	"fmt"

	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// NoDefaultPolicy as Options.DefaultPolicy attaches no policy to the
// certificates the simulator issues: they work in open mode (see package
// broker).
const NoDefaultPolicy = "none"

// ensurePolicies creates the built-in policies thingd-device and
// thingd-gateway if they do not exist (first start), and settles the
// default policies of new certificates.
func (s *Server) ensurePolicies(opts Options) error {
	for name, doc := range map[string]string{
		policy.DevicePolicyName:  policy.DevicePolicy(registry.Region, registry.AccountID),
		policy.GatewayPolicyName: policy.GatewayPolicy(registry.Region, registry.AccountID),
	} {
		created, err := s.reg.EnsurePolicy(name, doc, s.now())
		if err != nil {
			return fmt.Errorf("sim: built-in policy %s: %w", name, err)
		}
		if created {
			s.log.Info("built-in policy created", "policy", name)
		}
	}
	switch opts.DefaultPolicy {
	case "":
		s.defaultPolicies = []string{policy.DevicePolicyName}
	case NoDefaultPolicy:
	default:
		if _, err := s.reg.Policy(opts.DefaultPolicy); err != nil {
			return fmt.Errorf("sim: default policy: %w", err)
		}
		s.defaultPolicies = []string{opts.DefaultPolicy}
	}
	return nil
}

// attachDefaultPolicies attaches the default policies to a certificate.
func (s *Server) attachDefaultPolicies(certID string) error {
	for _, name := range s.defaultPolicies {
		if err := s.reg.AttachPolicy(name, registry.CertificateARN(certID)); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
	}
	return nil
}
