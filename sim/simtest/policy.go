package simtest

import (
	"testing"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/registry"
)

// IoT policy shortcuts, through the admin API. Certificates are named by
// id, thing groups by name.

// NewPolicyDevice is NewDevice with exactly the named policies attached to
// the certificate; with none named it keeps the simulator's default
// (thingd-device unless sim.Options.DefaultPolicy says otherwise).
func (s *Sim) NewPolicyDevice(t testing.TB, name string, policies ...string) Device {
	t.Helper()
	d := s.issueDevice(t, name)
	if len(policies) > 0 {
		s.DetachAllPolicies(t, d.CertificateID)
		for _, p := range policies {
			s.AttachPolicy(t, p, d.CertificateID)
		}
	}
	return d
}

// CreatePolicy creates a policy with the JSON document as version 1.
func (s *Sim) CreatePolicy(t testing.TB, name, document string) {
	t.Helper()
	if _, err := s.Client().CreatePolicy(t.Context(), name, document); err != nil {
		t.Fatalf("create policy %s: %v", name, err)
	}
}

// CreatePolicyVersion adds a version to a policy and returns its id.
func (s *Sim) CreatePolicyVersion(t testing.TB, name, document string, setAsDefault bool) string {
	t.Helper()
	resp, err := s.Client().CreatePolicyVersion(t.Context(), name, document, setAsDefault)
	if err != nil {
		t.Fatalf("create a version of policy %s: %v", name, err)
	}
	return resp.PolicyVersionID
}

// AttachPolicy attaches a policy to a certificate.
func (s *Sim) AttachPolicy(t testing.TB, name, certID string) {
	t.Helper()
	if err := s.Client().AttachPolicy(t.Context(), name, registry.CertificateARN(certID)); err != nil {
		t.Fatalf("attach policy %s to certificate %s: %v", name, certID, err)
	}
}

// AttachGroupPolicy attaches a policy to a thing group: it applies to the
// group's things when they connect as themselves.
func (s *Sim) AttachGroupPolicy(t testing.TB, name, group string) {
	t.Helper()
	if err := s.Client().AttachPolicy(t.Context(), name, registry.ThingGroupARN(group)); err != nil {
		t.Fatalf("attach policy %s to thing group %s: %v", name, group, err)
	}
}

// DetachPolicy detaches a policy from a certificate.
func (s *Sim) DetachPolicy(t testing.TB, name, certID string) {
	t.Helper()
	if err := s.Client().DetachPolicy(t.Context(), name, registry.CertificateARN(certID)); err != nil {
		t.Fatalf("detach policy %s from certificate %s: %v", name, certID, err)
	}
}

// AttachedPolicies returns the names of the policies attached to a
// certificate.
func (s *Sim) AttachedPolicies(t testing.TB, certID string) []string {
	t.Helper()
	resp, err := s.Client().ListAttachedPolicies(t.Context(), registry.CertificateARN(certID))
	if err != nil {
		t.Fatalf("list the policies of certificate %s: %v", certID, err)
	}
	names := make([]string, 0, len(resp.Policies))
	for _, p := range resp.Policies {
		names = append(names, p.PolicyName)
	}
	return names
}

// DetachAllPolicies detaches every policy from a certificate, which puts
// its connections in thingsim's open mode (see package broker).
func (s *Sim) DetachAllPolicies(t testing.TB, certID string) {
	t.Helper()
	for _, p := range s.AttachedPolicies(t, certID) {
		s.DetachPolicy(t, p, certID)
	}
}

// TestAuthorization asks whether a certificate connecting as clientID (""
// for the thing it is attached to) may perform actionType (CONNECT,
// PUBLISH, SUBSCRIBE, RECEIVE, RETAIN_PUBLISH) on a resource ARN, and
// returns the result with thingsim's explanation.
func (s *Sim) TestAuthorization(t testing.TB, certID, clientID, actionType, resource string) api.AuthResult {
	t.Helper()
	resp, err := s.Client().TestAuthorization(t.Context(), clientID, api.TestAuthorizationRequest{
		Principal: registry.CertificateARN(certID),
		AuthInfos: []api.AuthInfo{{ActionType: actionType, Resources: []string{resource}}},
	})
	if err != nil {
		t.Fatalf("test authorization of %s on %s for %s: %v", actionType, resource, certID, err)
	}
	return resp.AuthResults[0]
}
