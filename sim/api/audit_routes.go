package api

import (
	"crypto/x509"
	"net/http"
	"strconv"
	"time"

	"github.com/thingd/thingd/sim/audit"
	"github.com/thingd/thingd/sim/ca"
)

// auditRoutes returns the Device Defender audit and mitigation operations
// (when the audit service is configured) and the CA revocation list ones.
func (h *handler) auditRoutes() map[string]func(*http.Request) (any, error) {
	routes := map[string]func(*http.Request) (any, error){
		"PUT /thingsim/ca/revocations/{certificateId}": h.revokeCertificateAtCA,
		"GET /thingsim/ca/revocations":                 h.caRevocations,
	}
	if h.Audit == nil {
		return routes
	}
	for pattern, fn := range map[string]func(*http.Request) (any, error){
		"POST /audit/tasks":                                  h.startOnDemandAuditTask,
		"GET /audit/tasks/{taskId}":                          h.describeAuditTask,
		"GET /audit/tasks":                                   h.listAuditTasks,
		"POST /audit/findings":                               h.listAuditFindings,
		"GET /audit/configuration":                           h.describeAuditConfiguration,
		"PATCH /audit/configuration":                         h.updateAuditConfiguration,
		"POST /audit/scheduledaudits/{scheduledAuditName}":   h.createScheduledAudit,
		"GET /audit/scheduledaudits/{scheduledAuditName}":    h.describeScheduledAudit,
		"DELETE /audit/scheduledaudits/{scheduledAuditName}": h.deleteScheduledAudit,
		"GET /audit/scheduledaudits":                         h.listScheduledAudits,
		"POST /mitigationactions/actions/{actionName}":       h.createMitigationAction,
		"GET /mitigationactions/actions/{actionName}":        h.describeMitigationAction,
		"DELETE /mitigationactions/actions/{actionName}":     h.deleteMitigationAction,
		"GET /mitigationactions/actions":                     h.listMitigationActions,
		"POST /audit/mitigationactions/tasks/{taskId}":       h.startMitigationActionsTask,
		"GET /audit/mitigationactions/tasks/{taskId}":        h.describeMitigationActionsTask,
		"GET /audit/mitigationactions/tasks":                 h.listMitigationActionsTasks,
		"GET /audit/mitigationactions/executions":            h.listMitigationActionsExecutions,
		"PUT /thingsim/remediation/{checkName}":              h.setRemediationRule,
		"DELETE /thingsim/remediation/{checkName}":           h.deleteRemediationRule,
		"GET /thingsim/remediation":                          h.listRemediationRules,
	} {
		routes[pattern] = fn
	}
	return routes
}

// page returns the page of items that nextToken (an offset, "" for the
// first page) and maxResults (0: all) designate, and the next token.
func page[T any](items []T, maxResults int, nextToken string) ([]T, string, error) {
	start := 0
	if nextToken != "" {
		n, err := strconv.Atoi(nextToken)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", invalid("nextToken %q is not valid", nextToken)
		}
		start = n
	}
	if maxResults < 0 || maxResults > 250 {
		return nil, "", invalid("maxResults %d must be 1 to 250", maxResults)
	}
	end := len(items)
	if maxResults > 0 && start+maxResults < end {
		end = start + maxResults
	}
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return nonNilSlice(items[start:end]), next, nil
}

// pageQuery is page with maxResults and nextToken from the query.
func pageQuery[T any](r *http.Request, items []T) ([]T, string, error) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, "", invalid("maxResults %q must be 1 to 250", v)
		}
		limit = n
	}
	return page(items, limit, q.Get("nextToken"))
}

// timeParam parses a query timestamp: epoch seconds or RFC 3339; "" is the
// zero time.
func timeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, invalid("%s %q must be epoch seconds or RFC 3339", name, v)
	}
	return t, nil
}

func (h *handler) startOnDemandAuditTask(r *http.Request) (any, error) {
	var req StartOnDemandAuditTaskRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	id, err := h.Audit.StartOnDemandAuditTask(req.TargetCheckNames)
	return TaskIDResponse{TaskID: id}, err
}

func (h *handler) describeAuditTask(r *http.Request) (any, error) {
	return h.Audit.DescribeAuditTask(r.PathValue("taskId"))
}

func (h *handler) listAuditTasks(r *http.Request) (any, error) {
	q := r.URL.Query()
	start, err := timeParam("startTime", q.Get("startTime"))
	if err != nil {
		return nil, err
	}
	end, err := timeParam("endTime", q.Get("endTime"))
	if err != nil {
		return nil, err
	}
	tasks, err := h.Audit.ListAuditTasks(audit.TaskFilter{Start: start, End: end, TaskType: q.Get("taskType"), TaskStatus: q.Get("taskStatus")})
	if err != nil {
		return nil, err
	}
	entries := make([]AuditTaskMetadata, len(tasks))
	for i, t := range tasks {
		entries[i] = AuditTaskMetadata{TaskID: t.TaskID, TaskStatus: t.TaskStatus, TaskType: t.TaskType}
	}
	resp := ListAuditTasksResponse{}
	resp.Tasks, resp.NextToken, err = pageQuery(r, entries)
	return resp, err
}

func (h *handler) listAuditFindings(r *http.Request) (any, error) {
	var req ListAuditFindingsRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	findings, err := h.Audit.ListAuditFindings(audit.FindingFilter{
		TaskID: req.TaskID, CheckName: req.CheckName, Resource: req.ResourceIdentifier, Start: req.StartTime.Time, End: req.EndTime.Time,
	})
	if err != nil {
		return nil, err
	}
	resp := ListAuditFindingsResponse{}
	resp.Findings, resp.NextToken, err = page(findings, req.MaxResults, req.NextToken)
	return resp, err
}

func (h *handler) describeAuditConfiguration(*http.Request) (any, error) {
	return h.Audit.Configuration()
}

func (h *handler) updateAuditConfiguration(r *http.Request) (any, error) {
	var req AuditConfiguration
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	_, err := h.Audit.UpdateConfiguration(req)
	return nil, err
}

func (h *handler) createScheduledAudit(r *http.Request) (any, error) {
	var req ScheduledAudit
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	req.ScheduledAuditName = r.PathValue("scheduledAuditName")
	sa, err := h.Audit.CreateScheduledAudit(req)
	return ScheduledAuditArnResponse{ScheduledAuditArn: sa.ScheduledAuditArn}, err
}

func (h *handler) describeScheduledAudit(r *http.Request) (any, error) {
	return h.Audit.ScheduledAudit(r.PathValue("scheduledAuditName"))
}

func (h *handler) deleteScheduledAudit(r *http.Request) (any, error) {
	return nil, h.Audit.DeleteScheduledAudit(r.PathValue("scheduledAuditName"))
}

func (h *handler) listScheduledAudits(r *http.Request) (any, error) {
	audits, err := h.Audit.ScheduledAudits()
	if err != nil {
		return nil, err
	}
	resp := ListScheduledAuditsResponse{}
	resp.ScheduledAudits, resp.NextToken, err = pageQuery(r, audits)
	return resp, err
}

func (h *handler) createMitigationAction(r *http.Request) (any, error) {
	var req CreateMitigationActionRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	a, err := h.Audit.CreateMitigationAction(r.PathValue("actionName"), req.RoleArn, req.ActionParams)
	return CreateMitigationActionResponse{ActionArn: a.ActionArn, ActionID: a.ActionID}, err
}

func (h *handler) describeMitigationAction(r *http.Request) (any, error) {
	return h.Audit.MitigationAction(r.PathValue("actionName"))
}

func (h *handler) deleteMitigationAction(r *http.Request) (any, error) {
	return nil, h.Audit.DeleteMitigationAction(r.PathValue("actionName"))
}

func (h *handler) listMitigationActions(r *http.Request) (any, error) {
	actions, err := h.Audit.MitigationActions()
	if err != nil {
		return nil, err
	}
	typ := r.URL.Query().Get("actionType")
	var entries []MitigationActionIdentifier
	for _, a := range actions {
		if typ == "" || a.ActionType == typ {
			entries = append(entries, MitigationActionIdentifier{ActionName: a.ActionName, ActionArn: a.ActionArn, CreationDate: a.CreationDate})
		}
	}
	resp := ListMitigationActionsResponse{}
	resp.ActionIdentifiers, resp.NextToken, err = pageQuery(r, entries)
	return resp, err
}

func (h *handler) startMitigationActionsTask(r *http.Request) (any, error) {
	var req StartAuditMitigationActionsTaskRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	t, err := h.Audit.StartMitigationTask(r.PathValue("taskId"), req.Target, req.AuditCheckToActionsMapping)
	return TaskIDResponse{TaskID: t.TaskID}, err
}

func (h *handler) describeMitigationActionsTask(r *http.Request) (any, error) {
	return h.Audit.DescribeMitigationTask(r.PathValue("taskId"))
}

func (h *handler) listMitigationActionsTasks(r *http.Request) (any, error) {
	q := r.URL.Query()
	tasks, err := h.Audit.MitigationTasks(q.Get("auditTaskId"))
	if err != nil {
		return nil, err
	}
	var entries []MitigationActionsTaskMetadata
	for _, t := range tasks {
		if matches(q.Get("taskStatus"), t.TaskStatus) {
			entries = append(entries, MitigationActionsTaskMetadata{TaskID: t.TaskID, StartTime: t.StartTime, TaskStatus: t.TaskStatus})
		}
	}
	resp := ListMitigationActionsTasksResponse{}
	resp.Tasks, resp.NextToken, err = pageQuery(r, entries)
	return resp, err
}

func (h *handler) listMitigationActionsExecutions(r *http.Request) (any, error) {
	q := r.URL.Query()
	if q.Get("taskId") == "" {
		return nil, invalid("taskId is required")
	}
	execs, err := h.Audit.MitigationExecutions(q.Get("taskId"), q.Get("findingId"), q.Get("actionStatus"))
	if err != nil {
		return nil, err
	}
	resp := ListMitigationActionsExecutionsResponse{}
	resp.ActionsExecutions, resp.NextToken, err = pageQuery(r, execs)
	return resp, err
}

func (h *handler) setRemediationRule(r *http.Request) (any, error) {
	var req RemediationRuleRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	return h.Audit.SetRemediationRule(r.PathValue("checkName"), req.ActionNames)
}

func (h *handler) deleteRemediationRule(r *http.Request) (any, error) {
	return nil, h.Audit.DeleteRemediationRule(r.PathValue("checkName"))
}

func (h *handler) listRemediationRules(*http.Request) (any, error) {
	rules, err := h.Audit.RemediationRules()
	return RemediationRulesResponse{Rules: nonNilSlice(rules)}, err
}

// issuedCertificate returns a registered certificate, parsed, and whether
// the simulator's CA issued it.
func (h *handler) issuedCertificate(certID string) (*x509.Certificate, bool, error) {
	c, err := h.Registry.Certificate(certID)
	if err != nil {
		return nil, false, err
	}
	cert, err := ca.ParseCertificatePEM([]byte(c.PEM))
	if err != nil {
		return nil, false, nil //nolint:nilerr // a certificate thingsim cannot read was not issued by its CA
	}
	return cert, h.CA.Issued(cert), nil
}

// revokeAtCA puts a certificate the simulator's CA issued on the CA's
// revocation list; certificates of other CAs are left alone.
func (h *handler) revokeAtCA(certID string) error {
	cert, ours, err := h.issuedCertificate(certID)
	if err != nil || !ours {
		return err
	}
	if _, err := h.CA.Revoke(cert.SerialNumber, h.Now()); err != nil {
		return err
	}
	h.Logger.Info("certificate revoked at the CA", "certificateId", certID, "serial", cert.SerialNumber)
	return nil
}

// revokeCertificateAtCA is PUT /thingsim/ca/revocations/{certificateId}:
// the CA revokes a certificate it issued without its status in the
// registry changing (what REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK
// finds).
func (h *handler) revokeCertificateAtCA(r *http.Request) (any, error) {
	id, err := certificateIDParam(r)
	if err != nil {
		return nil, err
	}
	if _, ours, err := h.issuedCertificate(id); err != nil {
		return nil, err
	} else if !ours {
		return nil, invalid("certificate %s was not issued by the simulator's CA", id)
	}
	if err := h.revokeAtCA(id); err != nil {
		return nil, err
	}
	return h.caRevocations(r)
}

func (h *handler) caRevocations(*http.Request) (any, error) {
	resp := CARevocationsResponse{Revocations: []CARevocation{}}
	for _, rv := range h.CA.Revocations() {
		resp.Revocations = append(resp.Revocations, CARevocation{SerialNumber: rv.SerialNumber.String(), RevokedAt: rv.RevokedAt})
	}
	return resp, nil
}
