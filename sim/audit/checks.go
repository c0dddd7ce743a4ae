package audit

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/registry"
)

// input is what the checks of one task look at: a snapshot of the registry,
// the CA's revocation list and the configuration, taken when the task runs.
type input struct {
	now    time.Time
	since  time.Time // start of the connection history window
	config Configuration

	certs       []certificate
	cas         []caCertificate
	connections []registry.Connection // admitted sessions in the window
	policies    []PolicyVersion       // default versions
	revokedAt   func(serial *big.Int, cert *x509.Certificate) (time.Time, bool)
}

type certificate struct {
	registry.Certificate
	x509 *x509.Certificate // nil if the PEM does not parse
}

type caCertificate struct {
	id   string
	cert *x509.Certificate
}

// noncompliance is a finding before it gets ids and times.
type noncompliance struct {
	resource Resource
	related  []Resource
	reason   string
	code     string
}

// checkResult is what a check found.
type checkResult struct {
	total int
	found []noncompliance
}

// checkSpec describes a check thingsim implements.
type checkSpec struct {
	severity string
	run      func(*input) checkResult
	// actions are the mitigation action types that apply to its findings
	// besides PUBLISH_FINDING_TO_SNS (§5.6).
	actions []string
	// disabled: not enabled in the default configuration.
	disabled bool
}

var deviceCertActions = []string{ActionUpdateDeviceCertificate, ActionAddThingsToThingGroup}

// checks are the checks thingsim implements, by name.
var checks = map[string]checkSpec{
	DeviceCertificateExpiring:           {severity: SeverityMedium, run: deviceCertificateExpiring, actions: deviceCertActions},
	DeviceCertificateAge:                {severity: SeverityLow, run: deviceCertificateAge, actions: deviceCertActions, disabled: true},
	CACertificateExpiring:               {severity: SeverityMedium, run: caCertificateExpiring, actions: []string{ActionUpdateCACertificate}},
	DeviceCertificateShared:             {severity: SeverityCritical, run: deviceCertificateShared, actions: deviceCertActions},
	ConflictingClientIDs:                {severity: SeverityHigh, run: conflictingClientIDs},
	RevokedDeviceCertificateStillActive: {severity: SeverityMedium, run: revokedStillActive, actions: deviceCertActions},
	PolicyOverlyPermissive:              {severity: SeverityCritical, run: policyOverlyPermissive, actions: []string{ActionReplaceDefaultPolicyVersion}},
	PolicyPotentialMisconfiguration:     {severity: SeverityMedium, run: policyMisconfiguration},
}

// CheckNames returns the names of the checks thingsim implements, sorted.
func CheckNames() []string {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Severity returns a check's severity ("" for a check thingsim does not
// implement).
func Severity(check string) string { return checks[CanonicalCheckName(check)].severity }

// CanonicalCheckName maps the SDK spelling
// IOT_POLICY_POTENTIAL_MIS_CONFIGURATION_CHECK to the documented one and
// returns other names unchanged.
func CanonicalCheckName(name string) string {
	if name == policyMisconfigurationSDK {
		return PolicyPotentialMisconfiguration
	}
	return name
}

// ActionApplies reports whether a mitigation action type applies to a
// check's findings.
func ActionApplies(check, actionType string) bool {
	spec, ok := checks[CanonicalCheckName(check)]
	return ok && (actionType == ActionPublishFindingToSNS || slices.Contains(spec.actions, actionType))
}

// millis formats a time as epoch milliseconds, the additionalInfo format.
func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// activeCertificates returns the device certificates the certificate checks
// apply to: ACTIVE ones (AWS: ACTIVE or PENDING_TRANSFER, which thingsim
// does not have). An INACTIVE certificate, such as one retired after a
// rotation, is out of scope.
func (in *input) activeCertificates() []certificate {
	var out []certificate
	for _, c := range in.certs {
		if c.Status == registry.StatusActive {
			out = append(out, c)
		}
	}
	return out
}

func deviceCertificateResource(id string, info map[string]string) Resource {
	return Resource{ResourceType: ResourceDeviceCertificate, ResourceIdentifier: ResourceIdentifier{DeviceCertificateID: id}, AdditionalInfo: info}
}

// thresholdDays returns a check's configured threshold in days, or def.
func (in *input) thresholdDays(check, key string, def int) int {
	if v, err := strconv.Atoi(in.config.AuditCheckConfigurations[check].Configuration[key]); err == nil {
		return v
	}
	return def
}

// expiry classifies a certificate's end of validity: past it, within the
// threshold, or neither (ok false).
func expiry(notAfter, now time.Time, thresholdDays int) (reason, code string, ok bool) {
	switch {
	case !now.Before(notAfter):
		return "Certificate is past its expiration.", ReasonPastExpiration, true
	case notAfter.Sub(now) < time.Duration(thresholdDays)*24*time.Hour:
		return "Certificate is approaching its expiration.", ReasonApproachingExpiration, true
	}
	return "", "", false
}

func deviceCertificateExpiring(in *input) checkResult {
	days := in.thresholdDays(DeviceCertificateExpiring, ExpirationThresholdKey, DefaultExpirationThreshold)
	var r checkResult
	for _, c := range in.activeCertificates() {
		r.total++
		if reason, code, ok := expiry(c.NotAfter, in.now, days); ok {
			r.found = append(r.found, noncompliance{
				resource: deviceCertificateResource(c.ID, map[string]string{"EXPIRATION_TIME": millis(c.NotAfter)}),
				reason:   reason, code: code,
			})
		}
	}
	return r
}

// deviceCertificateAge flags ACTIVE certificates registered (creationDate)
// at least the threshold number of days ago.
func deviceCertificateAge(in *input) checkResult {
	days := in.thresholdDays(DeviceCertificateAge, AgeThresholdKey, DefaultAgeThreshold)
	var r checkResult
	for _, c := range in.activeCertificates() {
		r.total++
		if in.now.Sub(c.CreatedAt) >= time.Duration(days)*24*time.Hour {
			r.found = append(r.found, noncompliance{
				resource: deviceCertificateResource(c.ID, map[string]string{"CREATION_TIME": millis(c.CreatedAt)}),
				reason:   fmt.Sprintf("Certificate has been active for %d days or more.", days), code: ReasonPastAgeThreshold,
			})
		}
	}
	return r
}

// caCertificateExpiring checks the simulator's root CA and the registered
// CA certificates against the fixed 30-day threshold.
func caCertificateExpiring(in *input) checkResult {
	var r checkResult
	for _, c := range in.cas {
		r.total++
		if reason, code, ok := expiry(c.cert.NotAfter, in.now, DefaultExpirationThreshold); ok {
			r.found = append(r.found, noncompliance{
				resource: Resource{ResourceType: ResourceCACertificate, ResourceIdentifier: ResourceIdentifier{CACertificateID: c.id},
					AdditionalInfo: map[string]string{"EXPIRATION_TIME": millis(c.cert.NotAfter)}},
				reason: reason, code: code,
			})
		}
	}
	return r
}

// revokedStillActive flags ACTIVE certificates whose serial number is on
// their issuer's revocation list (the simulator CA's; registered CAs have
// none).
func revokedStillActive(in *input) checkResult {
	var r checkResult
	for _, c := range in.activeCertificates() {
		r.total++
		if c.x509 == nil {
			continue
		}
		if at, ok := in.revokedAt(c.x509.SerialNumber, c.x509); ok {
			r.found = append(r.found, noncompliance{
				resource: deviceCertificateResource(c.ID, map[string]string{"REVOCATION_TIME": millis(at)}),
				reason:   "Certificate is revoked by its issuer but still ACTIVE.", code: ReasonRevokedByIssuer,
			})
		}
	}
	return r
}

// end returns when a session ended, or now for a live one.
func end(c registry.Connection, now time.Time) time.Time {
	if c.DisconnectedAt.IsZero() {
		return now
	}
	return c.DisconnectedAt
}

// sessionResources lists sessions newest first as CLIENT_ID resources with
// their certificate and connect and disconnect times.
func sessionResources(sessions []registry.Connection) []Resource {
	sessions = slices.Clone(sessions)
	slices.SortFunc(sessions, func(a, b registry.Connection) int { return b.ConnectedAt.Compare(a.ConnectedAt) })
	out := make([]Resource, 0, len(sessions))
	for _, s := range sessions {
		info := map[string]string{"CONNECTION_TIME": millis(s.ConnectedAt), "DEVICE_CERTIFICATE_ID": s.CertificateID}
		if !s.DisconnectedAt.IsZero() {
			info["DISCONNECTION_TIME"] = millis(s.DisconnectedAt)
		}
		out = append(out, Resource{ResourceType: ResourceClientID, ResourceIdentifier: ResourceIdentifier{ClientID: s.ClientID}, AdditionalInfo: info})
	}
	return out
}

// groupSessions groups the window's sessions by key, in key order.
func groupSessions(sessions []registry.Connection, key func(registry.Connection) string) ([]string, map[string][]registry.Connection) {
	groups := map[string][]registry.Connection{}
	for _, s := range sessions {
		groups[key(s)] = append(groups[key(s)], s)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, groups
}

// deviceCertificateShared flags a certificate that authenticated sessions
// with different client IDs at the same time within the window.
func deviceCertificateShared(in *input) checkResult {
	var r checkResult
	ids, byCert := groupSessions(in.connections, func(c registry.Connection) string { return c.CertificateID })
	for _, id := range ids {
		r.total++
		var overlapping []registry.Connection
		sessions := byCert[id]
		for i, a := range sessions {
			for _, b := range sessions[:i] {
				if a.ClientID != b.ClientID && a.ConnectedAt.Before(end(b, in.now)) && b.ConnectedAt.Before(end(a, in.now)) {
					overlapping = appendSession(appendSession(overlapping, a), b)
				}
			}
		}
		if len(overlapping) > 0 {
			r.found = append(r.found, noncompliance{
				resource: deviceCertificateResource(id, nil), related: sessionResources(overlapping),
				reason: "Certificate shared by one or more devices.", code: ReasonSharedByMultipleDevices,
			})
		}
	}
	return r
}

func appendSession(list []registry.Connection, s registry.Connection) []registry.Connection {
	if slices.ContainsFunc(list, func(x registry.Connection) bool { return x.SessionID == s.SessionID }) {
		return list
	}
	return append(list, s)
}

// ConflictThreshold is how many sessions of one client ID must have been
// knocked off by another connection with the same client ID
// (DUPLICATE_CLIENTID) within the window for CONFLICTING_CLIENT_IDS_CHECK to
// flag it. One takeover is what a device reconnecting before the broker
// noticed its old connection was gone causes; devices fighting over a client
// ID knock each other off repeatedly.
const ConflictThreshold = 2

// conflictingClientIDs flags client IDs whose sessions kept being taken
// over by other connections with the same client ID.
func conflictingClientIDs(in *input) checkResult {
	var r checkResult
	ids, byClient := groupSessions(in.connections, func(c registry.Connection) string { return c.ClientID })
	for _, id := range ids {
		r.total++
		sessions := byClient[id]
		taken := 0
		for _, s := range sessions {
			if s.DisconnectReason == broker.ReasonDuplicateClient {
				taken++
			}
		}
		if taken >= ConflictThreshold {
			r.found = append(r.found, noncompliance{
				resource: Resource{ResourceType: ResourceClientID, ResourceIdentifier: ResourceIdentifier{ClientID: id},
					AdditionalInfo: map[string]string{"DUPLICATE_CLIENT_ID_DISCONNECTS": strconv.Itoa(taken)}},
				related: sessionResources(sessions),
				reason:  "Multiple connections use the same client ID and disconnect each other.", code: ReasonDuplicateClientID,
			})
		}
	}
	return r
}

// sortFound orders a check's findings by resource, for stable output.
func sortFound(found []noncompliance) {
	key := func(n noncompliance) string {
		id := n.resource.ResourceIdentifier
		s := id.DeviceCertificateID + id.CACertificateID + id.ClientID
		if p := id.PolicyVersionIdentifier; p != nil {
			s += p.PolicyName + "\x00" + p.PolicyVersionID
		}
		return s + "\x00" + n.code
	}
	slices.SortStableFunc(found, func(a, b noncompliance) int { return cmp.Compare(key(a), key(b)) })
}
