package provision

import (
	"fmt"
	"slices"
)

// Fault kinds of CreateCertificateFromCsr.
const (
	// CSRReject answers 400 InvalidCertificateSigningRequest with
	// Fault.Message.
	CSRReject = "reject"
	// CSRNoReply sends no reply at all (and issues nothing).
	CSRNoReply = "no-reply"
	// CSROtherKey issues the certificate for a fresh key instead of the
	// CSR's.
	CSROtherKey = "other-key"
	// CSROtherCN issues the certificate with CN "{CSR's CN}-other".
	CSROtherCN = "other-cn"
	// CSRExpired issues a certificate that expired a day ago.
	CSRExpired = "expired"
	// CSRUntrustedCA issues the certificate from a throwaway CA nothing
	// trusts, so the broker refuses it.
	CSRUntrustedCA = "untrusted-ca"
)

// Fault kinds of RegisterThing.
const (
	// RegisterReject answers 403 AccessDeniedException with Fault.Message.
	RegisterReject = "reject"
	// RegisterDeactivate registers the certificate, then sets it INACTIVE
	// before replying accepted, so the device's verification connect with
	// it fails.
	RegisterDeactivate = "deactivate"
)

var (
	csrFaults      = []string{CSRReject, CSRNoReply, CSROtherKey, CSROtherCN, CSRExpired, CSRUntrustedCA}
	registerFaults = []string{RegisterReject, RegisterDeactivate}
)

// Fault is a misbehaviour injected into one provisioning operation.
type Fault struct {
	// Kind is one of the operation's fault kinds; "" means none.
	Kind string `json:"kind"`
	// Count is how many of the next requests it applies to; each request to
	// the operation, whatever its content, uses one. Zero means every
	// request until the faults are replaced.
	Count int `json:"count,omitempty"`
	// Message is the errorMessage of the reject kinds; empty means a default
	// naming the fault.
	Message string `json:"message,omitempty"`
}

// Faults are the faults injected into the provisioning API, for tests.
// Setting them replaces all of them; the zero value clears them. A fault
// with a Count disappears once used that many times.
type Faults struct {
	CreateFromCSR Fault `json:"createFromCsr,omitzero"`
	RegisterThing Fault `json:"registerThing,omitzero"`
}

// Validate checks the kinds and counts.
func (f Faults) Validate() error {
	for _, c := range []struct {
		name  string
		fault Fault
		kinds []string
	}{
		{"createFromCsr", f.CreateFromCSR, csrFaults},
		{"registerThing", f.RegisterThing, registerFaults},
	} {
		if c.fault.Kind != "" && !slices.Contains(c.kinds, c.fault.Kind) {
			return fmt.Errorf("provision: %s fault %q is not one of %q", c.name, c.fault.Kind, c.kinds)
		}
		if c.fault.Count < 0 {
			return fmt.Errorf("provision: %s fault count %d is negative", c.name, c.fault.Count)
		}
	}
	return nil
}

// SetFaults replaces the injected faults.
func (s *Service) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.log.Info("provisioning faults set", "createFromCsr", f.CreateFromCSR.Kind, "createFromCsrCount", f.CreateFromCSR.Count,
		"registerThing", f.RegisterThing.Kind, "registerThingCount", f.RegisterThing.Count)
	return nil
}

// Faults returns the faults in force, with the counts left.
func (s *Service) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// takeFault uses one request's worth of a fault and returns it.
func (s *Service) takeFault(which func(*Faults) *Fault) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := which(&s.faults)
	taken := *f
	if f.Count > 0 {
		if f.Count--; f.Count == 0 {
			*f = Fault{}
		}
	}
	return taken
}
