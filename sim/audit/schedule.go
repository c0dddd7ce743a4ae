package audit

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// Scheduled audit frequencies.
const (
	Daily    = "DAILY"
	Weekly   = "WEEKLY"
	Biweekly = "BIWEEKLY"
	Monthly  = "MONTHLY"
)

var weekdays = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}

// ScheduledAudit is a scheduled audit (DescribeScheduledAudit) with
// thingsim's additions: ThingsimInterval, a Go duration such as "2s" that
// replaces the frequency's period (for tests), and the last and next run
// times.
type ScheduledAudit struct {
	ScheduledAuditName string   `json:"scheduledAuditName"`
	ScheduledAuditArn  string   `json:"scheduledAuditArn"`
	Frequency          string   `json:"frequency"`
	DayOfMonth         string   `json:"dayOfMonth,omitempty"`
	DayOfWeek          string   `json:"dayOfWeek,omitempty"`
	TargetCheckNames   []string `json:"targetCheckNames"`
	ThingsimInterval   string   `json:"thingsimInterval,omitempty"`
	LastRunTime        Time     `json:"thingsimLastRunTime,omitzero"`
	NextRunTime        Time     `json:"thingsimNextRunTime,omitzero"`
}

// ScheduledAuditARN returns the ARN of a scheduled audit.
func ScheduledAuditARN(name string) string { return arnPrefix + "scheduledaudit/" + name }

// CreateScheduledAudit stores a scheduled audit and arms it. Frequency is
// DAILY (at midnight UTC), WEEKLY or BIWEEKLY (DayOfWeek SUN..SAT required,
// at midnight UTC), or MONTHLY (DayOfMonth "1".."31" or "LAST", default
// "1"); ThingsimInterval, if set, runs it every interval instead. Its checks
// must be enabled; at most 5 scheduled audits may exist.
func (s *Service) CreateScheduledAudit(sa ScheduledAudit) (ScheduledAudit, error) {
	fail := func(format string, args ...any) (ScheduledAudit, error) {
		return ScheduledAudit{}, fmt.Errorf("audit: create scheduled audit: %w: %s", registry.ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(sa.ScheduledAuditName) {
		return fail("name %q must match [a-zA-Z0-9_-]{1,128}", sa.ScheduledAuditName)
	}
	switch sa.Frequency {
	case Daily:
	case Weekly, Biweekly:
		if !slices.Contains(weekdays, sa.DayOfWeek) {
			return fail("dayOfWeek %q must be one of %v with frequency %s", sa.DayOfWeek, weekdays, sa.Frequency)
		}
	case Monthly:
		if sa.DayOfMonth == "" {
			sa.DayOfMonth = "1"
		}
		if d, err := strconv.Atoi(sa.DayOfMonth); sa.DayOfMonth != "LAST" && (err != nil || d < 1 || d > 31) {
			return fail("dayOfMonth %q must be 1 to 31 or LAST", sa.DayOfMonth)
		}
	default:
		return fail("frequency %q must be DAILY, WEEKLY, BIWEEKLY or MONTHLY", sa.Frequency)
	}
	if sa.ThingsimInterval != "" {
		if d, err := time.ParseDuration(sa.ThingsimInterval); err != nil || d < time.Millisecond {
			return fail("thingsimInterval %q must be a Go duration of at least 1ms", sa.ThingsimInterval)
		}
	}
	if len(sa.TargetCheckNames) == 0 {
		return fail("targetCheckNames must name at least one check")
	}
	sa.ScheduledAuditArn = ScheduledAuditARN(sa.ScheduledAuditName)
	sa.LastRunTime = Time{}
	sa.NextRunTime = At(nextRun(sa, s.now()))
	err := s.db.Update(func(tx *bolt.Tx) error {
		cfg, err := configurationTx(tx)
		if err != nil {
			return err
		}
		if sa.TargetCheckNames, err = targetChecks(cfg, sa.TargetCheckNames); err != nil {
			return err
		}
		b := tx.Bucket(bucketScheduled)
		if b.Get([]byte(sa.ScheduledAuditName)) != nil {
			return fmt.Errorf("%w: scheduled audit %s", registry.ErrAlreadyExists, sa.ScheduledAuditName)
		}
		if n := countKeys(b); n >= maxScheduledAudits {
			return fmt.Errorf("%w: there are %d scheduled audits already (the limit is %d)", registry.ErrInvalid, n, maxScheduledAudits)
		}
		return putJSON(b, sa.ScheduledAuditName, sa)
	})
	if err != nil {
		return ScheduledAudit{}, fmt.Errorf("audit: create scheduled audit: %w", err)
	}
	s.arm(sa)
	s.log.Info("scheduled audit created", "name", sa.ScheduledAuditName, "frequency", sa.Frequency, "interval", sa.ThingsimInterval, "next", sa.NextRunTime.Time)
	return sa, nil
}

// Start arms the stored scheduled audits; runs missed while the simulator
// was stopped happen at once (one per audit).
func (s *Service) Start() error {
	audits, err := s.ScheduledAudits()
	if err != nil {
		return err
	}
	for _, sa := range audits {
		s.arm(sa)
	}
	return nil
}

func (s *Service) arm(sa ScheduledAudit) {
	name := sa.ScheduledAuditName
	s.timers.Arm(name, sa.NextRunTime.Time, func() { s.runScheduled(name) })
}

// runScheduled starts a scheduled audit's task, covering the connection
// history since its previous run, and arms the next run.
func (s *Service) runScheduled(name string) {
	now := s.now().UTC()
	var sa ScheduledAudit
	var since time.Time
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := mustGetJSON(tx.Bucket(bucketScheduled), "scheduled audit", name, &sa); err != nil {
			return err
		}
		since = sa.LastRunTime.Time
		sa.LastRunTime, sa.NextRunTime = At(now), At(nextRun(sa, now))
		return putJSON(tx.Bucket(bucketScheduled), name, sa)
	})
	if err != nil {
		s.log.Error("scheduled audit", "name", name, "error", err)
		return // deleted meanwhile, or the database failed: not re-armed
	}
	if since.IsZero() {
		since = now.Add(-auditHistoryWindow)
	}
	if _, err := s.startTask(ScheduledTask, name, sa.TargetCheckNames, since); err != nil {
		s.log.Error("scheduled audit not started", "name", name, "error", err)
	}
	s.arm(sa)
}

// nextRun returns when a scheduled audit runs next after now.
func nextRun(sa ScheduledAudit, now time.Time) time.Time {
	now = now.UTC()
	if d, err := time.ParseDuration(sa.ThingsimInterval); err == nil && d > 0 {
		return now.Add(d)
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch sa.Frequency {
	case Weekly, Biweekly:
		days := (slices.Index(weekdays, sa.DayOfWeek) - int(now.Weekday()) + 7) % 7
		if days == 0 {
			days = 7
		}
		next := midnight.AddDate(0, 0, days)
		if last := sa.LastRunTime.Time; sa.Frequency == Biweekly && !last.IsZero() && next.Sub(last) < 13*24*time.Hour {
			next = next.AddDate(0, 0, 7)
		}
		return next
	case Monthly:
		for m := 0; ; m++ {
			first := time.Date(now.Year(), now.Month()+time.Month(m), 1, 0, 0, 0, 0, time.UTC)
			last := first.AddDate(0, 1, -1).Day()
			day := last
			if d, err := strconv.Atoi(sa.DayOfMonth); err == nil {
				day = min(d, last)
			}
			if t := first.AddDate(0, 0, day-1); t.After(now) {
				return t
			}
		}
	}
	return midnight.AddDate(0, 0, 1) // DAILY
}

// ScheduledAudit returns a scheduled audit.
func (s *Service) ScheduledAudit(name string) (ScheduledAudit, error) {
	var sa ScheduledAudit
	err := s.db.View(func(tx *bolt.Tx) error { return mustGetJSON(tx.Bucket(bucketScheduled), "scheduled audit", name, &sa) })
	if err != nil {
		return ScheduledAudit{}, fmt.Errorf("audit: %w", err)
	}
	return sa, nil
}

// ScheduledAudits returns the scheduled audits, by name.
func (s *Service) ScheduledAudits() ([]ScheduledAudit, error) {
	var out []ScheduledAudit
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[ScheduledAudit](tx, bucketScheduled)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list scheduled audits: %w", err)
	}
	return out, nil
}

// DeleteScheduledAudit deletes a scheduled audit and stops its timer.
func (s *Service) DeleteScheduledAudit(name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketScheduled)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: scheduled audit %s", registry.ErrNotFound, name)
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("audit: delete scheduled audit: %w", err)
	}
	s.timers.Stop(name)
	return nil
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
