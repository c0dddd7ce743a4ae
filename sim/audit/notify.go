package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/thingd/thingd/sim/registry"
)

// NewNotification returns the completion notification of a task (§5.5):
// auditDetails sorted by check name.
func NewNotification(t Task) Notification {
	n := Notification{
		AccountID: registry.AccountID, TaskID: t.TaskID, TaskStatus: t.TaskStatus, TaskType: t.TaskType,
		ScheduledAuditName: t.ScheduledAuditName, TaskStartTime: t.TaskStartTime.UnixMilli(),
		FailedChecksCount: t.TaskStatistics.FailedChecks, CanceledChecksCount: t.TaskStatistics.CanceledChecks,
		NonCompliantChecksCount: t.TaskStatistics.NonCompliantChecks, CompliantChecksCount: t.TaskStatistics.CompliantChecks,
		TotalChecksCount: t.TaskStatistics.TotalChecks, AuditDetails: []NotificationDetail{},
	}
	for name, d := range t.AuditDetails {
		n.AuditDetails = append(n.AuditDetails, NotificationDetail{
			CheckName: name, CheckRunStatus: d.CheckRunStatus, NonCompliantResourcesCount: d.NonCompliantResourcesCount,
			TotalResourcesCount: d.TotalResourcesCount, Message: d.Message, ErrorCode: d.ErrorCode,
		})
	}
	slices.SortFunc(n.AuditDetails, func(a, b NotificationDetail) int { return strings.Compare(a.CheckName, b.CheckName) })
	return n
}

// notify publishes a finished task's notification on NotificationTopic
// and, if the SNS target is enabled with an http(s) URL as targetArn, POSTs
// it there. Failures are logged: AWS does not retry a notification either.
func (s *Service) notify(t Task) {
	payload, err := json.Marshal(NewNotification(t))
	if err != nil {
		s.log.Error("encode audit notification", "task", t.TaskID, "error", err)
		return
	}
	s.deliver(NotificationTopic, "", payload, "task", t.TaskID)
	cfg, err := s.Configuration()
	if err != nil {
		s.log.Error("audit notification", "task", t.TaskID, "error", err)
		return
	}
	if sns, ok := cfg.AuditNotificationTargetConfigurations["SNS"]; ok && sns.Enabled && isURL(sns.TargetArn) {
		s.deliver("", sns.TargetArn, payload, "task", t.TaskID)
	}
}

// deliver publishes payload on topic (if not "") and POSTs it to url (if
// an http(s) URL), logging failures with the log arguments.
func (s *Service) deliver(topic, url string, payload []byte, logArgs ...any) {
	if topic != "" {
		if err := s.opts.Publish(topic, payload); err != nil {
			s.log.Error("publish audit message", append(logArgs, "topic", topic, "error", err)...)
		}
	}
	if isURL(url) {
		if err := s.post(s.ctx, url, payload); err != nil {
			s.log.Warn("audit webhook delivery failed", append(logArgs, "url", url, "error", err)...)
		} else {
			s.log.Info("audit webhook delivered", append(logArgs, "url", url)...)
		}
	}
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// post sends payload as a JSON POST and wants a 2xx answer.
func (s *Service) post(ctx context.Context, url string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // let the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
