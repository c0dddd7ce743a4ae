package audit_test

import (
	"math/big"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// found is what a test checks of a finding.
type found struct {
	Check, Severity, Type, Resource, Code string
	Info                                  map[string]string
	Related                               []string // client IDs
}

func summarize(fs []audit.Finding) []found {
	var out []found
	for _, f := range fs {
		id := f.NonCompliantResource.ResourceIdentifier
		res := id.DeviceCertificateID + id.CACertificateID + id.ClientID
		if p := id.PolicyVersionIdentifier; p != nil {
			res = p.PolicyName + "@" + p.PolicyVersionID
		}
		s := found{Check: f.CheckName, Severity: f.Severity, Type: f.NonCompliantResource.ResourceType, Resource: res,
			Code: f.ReasonForNonComplianceCode, Info: f.NonCompliantResource.AdditionalInfo}
		for _, r := range f.RelatedResources {
			s.Related = append(s.Related, r.ResourceIdentifier.ClientID)
		}
		out = append(out, s)
	}
	return out
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// session records a connection history entry: admitted from connected
// to disconnected (zero: live) with reason.
func session(t *testing.T, f *fixture, clientID, certID string, connected, disconnected time.Time, reason string) {
	t.Helper()
	err := f.reg.PutConnection(registry.Connection{ClientID: clientID, CertificateID: certID, SessionID: registry.NewSessionID(),
		ConnectedAt: connected, DisconnectedAt: disconnected, DisconnectReason: reason})
	if err != nil {
		t.Fatal(err)
	}
}

// TestChecks runs each check on a crafted registry and compares the
// task's details and the findings.
func TestChecks(t *testing.T) {
	type want struct {
		status              string
		total, nonCompliant int64
		findings            func(ids map[string]string) []found
	}
	tests := []struct {
		name   string
		check  string
		config map[string]string                // the check's configuration
		setup  func(*fixture) map[string]string // returns named ids
		want   want
	}{
		{
			name: "expiring compliant", check: audit.DeviceCertificateExpiring,
			setup: func(f *fixture) map[string]string {
				f.activeCert(t, "a", 100*day)
				return nil
			},
			want: want{status: audit.CheckCompliant, total: 1},
		},
		{
			name: "expiring", check: audit.DeviceCertificateExpiring,
			setup: func(f *fixture) map[string]string {
				f.activeCert(t, "ok", 100*day)
				f.cert(t, "retired", registry.StatusInactive, now.Add(-10*day), now.Add(2*day), now.Add(-10*day))
				f.cert(t, "pending", registry.StatusPendingActivation, now.Add(-10*day), now.Add(-day), now.Add(-10*day))
				return map[string]string{"soon": f.activeCert(t, "soon", 2*day), "past": f.activeCert(t, "past", -time.Hour)}
			},
			want: want{status: audit.CheckNonCompliant, total: 3, nonCompliant: 2, findings: func(ids map[string]string) []found {
				return []found{
					{audit.DeviceCertificateExpiring, "MEDIUM", "DEVICE_CERTIFICATE", ids["past"], "CERTIFICATE_PAST_EXPIRATION", map[string]string{"EXPIRATION_TIME": ms(now.Add(-time.Hour))}, nil},
					{audit.DeviceCertificateExpiring, "MEDIUM", "DEVICE_CERTIFICATE", ids["soon"], "CERTIFICATE_APPROACHING_EXPIRATION", map[string]string{"EXPIRATION_TIME": ms(now.Add(2 * day))}, nil},
				}
			}},
		},
		{
			name: "expiring threshold configured", check: audit.DeviceCertificateExpiring, config: map[string]string{audit.ExpirationThresholdKey: "120"},
			setup: func(f *fixture) map[string]string {
				return map[string]string{"c": f.activeCert(t, "a", 100*day)}
			},
			want: want{status: audit.CheckNonCompliant, total: 1, nonCompliant: 1, findings: func(ids map[string]string) []found {
				return []found{{audit.DeviceCertificateExpiring, "MEDIUM", "DEVICE_CERTIFICATE", ids["c"], "CERTIFICATE_APPROACHING_EXPIRATION", map[string]string{"EXPIRATION_TIME": ms(now.Add(100 * day))}, nil}}
			}},
		},
		{
			name: "age", check: audit.DeviceCertificateAge,
			setup: func(f *fixture) map[string]string {
				f.activeCert(t, "young", 100*day)
				old, _ := f.cert(t, "old", registry.StatusActive, now.Add(-400*day), now.Add(100*day), now.Add(-365*day))
				f.cert(t, "old-inactive", registry.StatusInactive, now.Add(-400*day), now.Add(100*day), now.Add(-400*day))
				return map[string]string{"old": old}
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(ids map[string]string) []found {
				return []found{{audit.DeviceCertificateAge, "LOW", "DEVICE_CERTIFICATE", ids["old"], "CERTIFICATE_PAST_AGE_THRESHOLD", map[string]string{"CREATION_TIME": ms(now.Add(-365 * day))}, nil}}
			}},
		},
		{
			name: "CA compliant", check: audit.CACertificateExpiring,
			setup: func(*fixture) map[string]string { return nil },
			want:  want{status: audit.CheckCompliant, total: 1},
		},
		{
			name: "CA expiring", check: audit.CACertificateExpiring,
			setup: func(f *fixture) map[string]string {
				other, err := ca.NewEphemeral("other CA", now.AddDate(-20, 0, 10))
				if err != nil {
					t.Fatal(err)
				}
				id := ca.CertificateID(other.Certificate().Raw)
				if err := f.reg.AddCACertificate(id, other.CertificatePEM()); err != nil {
					t.Fatal(err)
				}
				return map[string]string{"ca": id, "notAfter": ms(other.Certificate().NotAfter)}
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(ids map[string]string) []found {
				return []found{{audit.CACertificateExpiring, "MEDIUM", "CA_CERTIFICATE", ids["ca"], "CERTIFICATE_APPROACHING_EXPIRATION", map[string]string{"EXPIRATION_TIME": ids["notAfter"]}, nil}}
			}},
		},
		{
			name: "revoked still active", check: audit.RevokedDeviceCertificateStillActive,
			setup: func(f *fixture) map[string]string {
				f.activeCert(t, "fine", 100*day)
				bad, serial := f.cert(t, "bad", registry.StatusActive, now.Add(-day), now.Add(100*day), now.Add(-day))
				_, gone := f.cert(t, "gone", registry.StatusRevoked, now.Add(-day), now.Add(100*day), now.Add(-day))
				revoke(t, f, serial, now.Add(-time.Hour))
				revoke(t, f, gone, now)
				return map[string]string{"bad": bad}
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(ids map[string]string) []found {
				return []found{{audit.RevokedDeviceCertificateStillActive, "MEDIUM", "DEVICE_CERTIFICATE", ids["bad"], "CERTIFICATE_REVOKED_BY_ISSUER", map[string]string{"REVOCATION_TIME": ms(now.Add(-time.Hour))}, nil}}
			}},
		},
		{
			name: "shared", check: audit.DeviceCertificateShared,
			setup: func(f *fixture) map[string]string {
				shared := f.activeCert(t, "a", 100*day)
				serial := f.activeCert(t, "c", 100*day)
				// shared: a and b at the same time (b still connected).
				session(t, f, "a", shared, now.Add(-3*time.Hour), now.Add(-time.Hour), broker.ReasonClientInitiated)
				session(t, f, "b", shared, now.Add(-2*time.Hour), time.Time{}, "")
				// one after the other: fine.
				session(t, f, "c", serial, now.Add(-5*time.Hour), now.Add(-4*time.Hour), broker.ReasonClientInitiated)
				session(t, f, "d", serial, now.Add(-3*time.Hour), now.Add(-2*time.Hour), broker.ReasonClientInitiated)
				// outside the 31-day window and refused attempts: ignored.
				session(t, f, "e", serial, now.Add(-40*day), now.Add(-35*day), broker.ReasonClientInitiated)
				session(t, f, "f", serial, now.Add(-40*day), now.Add(-35*day), broker.ReasonClientInitiated)
				err := f.reg.PutConnection(registry.Connection{ClientID: "g", CertificateID: serial, SessionID: "refused",
					ConnectedAt: now.Add(-3 * time.Hour), DisconnectedAt: now.Add(-3 * time.Hour), Refused: "certificate-not-active"})
				if err != nil {
					t.Fatal(err)
				}
				return map[string]string{"shared": shared}
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(ids map[string]string) []found {
				return []found{{audit.DeviceCertificateShared, "CRITICAL", "DEVICE_CERTIFICATE", ids["shared"], "CERTIFICATE_SHARED_BY_MULTIPLE_DEVICES", nil, []string{"b", "a"}}}
			}},
		},
		{
			name: "conflicting client IDs", check: audit.ConflictingClientIDs,
			setup: func(f *fixture) map[string]string {
				c := f.activeCert(t, "dup", 100*day)
				o := f.activeCert(t, "once", 100*day)
				session(t, f, "dup", c, now.Add(-3*time.Hour), now.Add(-2*time.Hour), broker.ReasonDuplicateClient)
				session(t, f, "dup", c, now.Add(-2*time.Hour), now.Add(-time.Hour), broker.ReasonDuplicateClient)
				session(t, f, "dup", c, now.Add(-time.Hour), time.Time{}, "")
				session(t, f, "once", o, now.Add(-3*time.Hour), now.Add(-2*time.Hour), broker.ReasonDuplicateClient)
				session(t, f, "once", o, now.Add(-2*time.Hour), time.Time{}, "")
				return nil
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(map[string]string) []found {
				return []found{{audit.ConflictingClientIDs, "HIGH", "CLIENT_ID", "dup", "DUPLICATE_CLIENT_ID_ACROSS_CONNECTIONS",
					map[string]string{"DUPLICATE_CLIENT_ID_DISCONNECTS": "2"}, []string{"dup", "dup", "dup"}}}
			}},
		},
		{
			name: "overly permissive policy", check: audit.PolicyOverlyPermissive,
			setup: func(f *fixture) map[string]string {
				policyWith(t, f, "open", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`)
				policyWith(t, f, "device", devicePolicy())
				return nil
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(map[string]string) []found {
				return []found{{audit.PolicyOverlyPermissive, "CRITICAL", "IOT_POLICY", "open@1", "ALLOWS_BROAD_ACCESS_TO_IOT_DATA_PLANE_ACTIONS", nil, nil}}
			}},
		},
		{
			name: "policy misconfiguration", check: audit.PolicyPotentialMisconfiguration,
			setup: func(f *fixture) map[string]string {
				policyWith(t, f, "wild-deny", `{"Version":"2012-10-17","Statement":[
					{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/building/*"},
					{"Effect":"Deny","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/building/control_room/#"}]}`)
				policyWith(t, f, "device", devicePolicy())
				return nil
			},
			want: want{status: audit.CheckNonCompliant, total: 2, nonCompliant: 1, findings: func(map[string]string) []found {
				return []found{{audit.PolicyPotentialMisconfiguration, "MEDIUM", "IOT_POLICY", "wild-deny@1", "POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT", nil, nil}}
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			cfg := audit.Configuration{AuditCheckConfigurations: map[string]audit.CheckConfiguration{tt.check: {Enabled: true, Configuration: tt.config}}}
			if _, err := f.svc.UpdateConfiguration(cfg); err != nil {
				t.Fatal(err)
			}
			ids := tt.setup(f)
			task, findings := f.audit(t, tt.check)
			d := task.AuditDetails[tt.check]
			compliant := tt.want.status == audit.CheckCompliant
			wantDetails := audit.CheckDetails{CheckRunStatus: tt.want.status, CheckCompliant: &compliant,
				TotalResourcesCount: tt.want.total, NonCompliantResourcesCount: tt.want.nonCompliant}
			if diff := cmp.Diff(wantDetails, d); diff != "" {
				t.Errorf("auditDetails[%s] (-want +got):\n%s", tt.check, diff)
			}
			var wantFound []found
			if tt.want.findings != nil {
				wantFound = tt.want.findings(ids)
			}
			byResource := cmpopts.SortSlices(func(a, b found) bool { return a.Resource+a.Code < b.Resource+b.Code })
			if diff := cmp.Diff(wantFound, summarize(findings), byResource); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			for _, x := range findings {
				if x.TaskID != task.TaskID || !x.TaskStartTime.Equal(task.TaskStartTime.Time) || !x.FindingTime.Equal(now) || x.FindingID == "" || x.IsSuppressed || x.ReasonForNonCompliance == "" {
					t.Errorf("finding %+v: want taskId %s, taskStartTime %v, findingTime %v, an id, a reason, not suppressed", x, task.TaskID, task.TaskStartTime, now)
				}
			}
		})
	}
}

func revoke(t *testing.T, f *fixture, serial *big.Int, at time.Time) {
	t.Helper()
	if _, err := f.ca.Revoke(serial, at); err != nil {
		t.Fatal(err)
	}
}

// policyWith creates a policy with one version, the document.
func policyWith(t *testing.T, f *fixture, name, document string) {
	t.Helper()
	if _, err := f.reg.CreatePolicy(name, document, now); err != nil {
		t.Fatal(err)
	}
}

func devicePolicy() string { return policy.DevicePolicy(registry.Region, registry.AccountID) }
