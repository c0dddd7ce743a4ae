package sim

import "github.com/thingd/thingd/sim/audit"

// newAudit builds the Device Defender audit service on the simulator's
// registry, CA, broker (notifications, disconnects) and Jobs service
// (continuous jobs of the groups mitigation adds things to).
func (s *Server) newAudit() (*audit.Service, error) {
	return audit.New(audit.Options{
		Registry: s.reg, CA: s.ca, Publish: s.broker.Publish,
		Disconnect:        s.broker.DisconnectCertificate,
		ThingAddedToGroup: s.jobs.ThingAddedToGroup,
		Policies:          audit.RegistryPolicies(s.reg, s.now),
		Now:               s.now, Logger: s.log.With("component", "audit"),
	})
}
