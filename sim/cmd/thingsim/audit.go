package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/audit"
)

const auditUsage = `  thingsim audit run [--checks A,B] [--no-wait] | describe TASK | findings TASK [--check C] | list
  thingsim audit schedule create NAME --frequency DAILY|WEEKLY|BIWEEKLY|MONTHLY [--day-of-week SUN..SAT]
                 [--day-of-month N|LAST] [--every DURATION] [--checks A,B] | list | delete NAME
  thingsim audit config get | set [--expiring-days N] [--age-days N] [--enable A,B] [--disable A,B] [--webhook URL]
  thingsim mitigation action create NAME --type UPDATE_DEVICE_CERTIFICATE|ADD_THINGS_TO_THING_GROUP|
                 REPLACE_DEFAULT_POLICY_VERSION|PUBLISH_FINDING_TO_SNS [--groups G1,G2] [--topic URL|ARN]
  thingsim mitigation action list | describe NAME | delete NAME
  thingsim mitigation run --task TASK [--actions A,B] [--id ID] | describe ID | executions ID
  thingsim remediation set CHECK ACTION... | list | delete CHECK
`

// auditCommand runs the audit, mitigation and remediation commands.
func auditCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	words := []string{cmd}
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") && len(words) < 3 && isAuditVerb(strings.Join(append(words, args[0]), " ")) {
		words, args = append(words, args[0]), args[1:]
	}
	name := strings.Join(words, " ")
	fs := newFlagSet(name, stderr)
	client := clientFlags(fs)
	var run func(c *api.Client, pos []string) error
	switch name {
	case "audit run":
		checks := fs.String("checks", "", "comma-separated check names (default: every enabled check)")
		noWait := fs.Bool("no-wait", false, "print the task id and return without waiting")
		timeout := fs.Duration("timeout", time.Minute, "how long to wait for the task")
		run = func(c *api.Client, pos []string) error {
			if err := noArgs(name, pos); err != nil {
				return err
			}
			return auditRun(ctx, c, list(*checks), !*noWait, *timeout, stdout)
		}
	case "audit describe":
		run = oneArg(name, "task id", func(c *api.Client, id string) (any, error) { return c.DescribeAuditTask(ctx, id) }, stdout)
	case "audit findings":
		check := fs.String("check", "", "only this check's findings")
		run = oneArg(name, "task id", func(c *api.Client, id string) (any, error) { return allFindings(ctx, c, id, *check) }, stdout)
	case "audit list":
		run = noArg(name, func(c *api.Client) (any, error) { return c.ListAuditTasks(ctx, "", "") }, stdout)
	case "audit schedule create":
		var sa api.ScheduledAudit
		fs.StringVar(&sa.Frequency, "frequency", audit.Daily, "DAILY, WEEKLY, BIWEEKLY or MONTHLY")
		fs.StringVar(&sa.DayOfWeek, "day-of-week", "", "SUN..SAT (WEEKLY, BIWEEKLY)")
		fs.StringVar(&sa.DayOfMonth, "day-of-month", "", "1..31 or LAST (MONTHLY)")
		fs.StringVar(&sa.ThingsimInterval, "every", "", "run every DURATION instead (thingsim, for tests), e.g. 30s")
		checks := fs.String("checks", "", "comma-separated check names (default: every enabled check)")
		run = oneArg(name, "scheduled audit name", func(c *api.Client, n string) (any, error) {
			sa.TargetCheckNames = list(*checks)
			if len(sa.TargetCheckNames) == 0 {
				cfg, err := c.DescribeAccountAuditConfiguration(ctx)
				if err != nil {
					return nil, err
				}
				for check, cc := range cfg.AuditCheckConfigurations {
					if cc.Enabled && audit.Severity(check) != "" {
						sa.TargetCheckNames = append(sa.TargetCheckNames, check)
					}
				}
			}
			if _, err := c.CreateScheduledAudit(ctx, n, sa); err != nil {
				return nil, err
			}
			return c.DescribeScheduledAudit(ctx, n)
		}, stdout)
	case "audit schedule list":
		run = noArg(name, func(c *api.Client) (any, error) { return c.ListScheduledAudits(ctx) }, stdout)
	case "audit schedule delete":
		run = oneArg(name, "scheduled audit name", func(c *api.Client, n string) (any, error) { return nil, c.DeleteScheduledAudit(ctx, n) }, stdout)
	case "audit config get":
		run = noArg(name, func(c *api.Client) (any, error) { return c.DescribeAccountAuditConfiguration(ctx) }, stdout)
	case "audit config set":
		expiring := fs.Int("expiring-days", 0, "DEVICE_CERTIFICATE_EXPIRING_CHECK threshold in days (30..3652)")
		age := fs.Int("age-days", 0, "DEVICE_CERTIFICATE_AGE_CHECK threshold in days (30..3652); enables the check")
		enable := fs.String("enable", "", "comma-separated checks to enable")
		disable := fs.String("disable", "", "comma-separated checks to disable")
		webhook := fs.String("webhook", "", "URL the completion notification is POSTed to (the SNS target); \"off\" disables it")
		run = noArg(name, func(c *api.Client) (any, error) {
			req := configChange(*expiring, *age, list(*enable), list(*disable), *webhook)
			if err := c.UpdateAccountAuditConfiguration(ctx, req); err != nil {
				return nil, err
			}
			return c.DescribeAccountAuditConfiguration(ctx)
		}, stdout)
	case "mitigation action create":
		typ := fs.String("type", "", "action type")
		groups := fs.String("groups", "", "ADD_THINGS_TO_THING_GROUP: comma-separated thing groups")
		override := fs.Bool("override-dynamic-groups", false, "ADD_THINGS_TO_THING_GROUP: overrideDynamicGroups")
		topic := fs.String("topic", "", "PUBLISH_FINDING_TO_SNS: SNS topic ARN, or an http(s) URL to POST findings to")
		run = oneArg(name, "action name", func(c *api.Client, n string) (any, error) {
			params, err := actionParams(*typ, list(*groups), *override, *topic)
			if err != nil {
				return nil, err
			}
			return c.CreateMitigationAction(ctx, n, params)
		}, stdout)
	case "mitigation action list":
		run = noArg(name, func(c *api.Client) (any, error) { return c.ListMitigationActions(ctx) }, stdout)
	case "mitigation action describe":
		run = oneArg(name, "action name", func(c *api.Client, n string) (any, error) { return c.DescribeMitigationAction(ctx, n) }, stdout)
	case "mitigation action delete":
		run = oneArg(name, "action name", func(c *api.Client, n string) (any, error) { return nil, c.DeleteMitigationAction(ctx, n) }, stdout)
	case "mitigation run":
		task := fs.String("task", "", "audit task id (required)")
		actions := fs.String("actions", "", "comma-separated actions, applied to the findings of every check they apply to (default: the remediation rules)")
		id := fs.String("id", "", "mitigation actions task id (default: mitigation-TASK-TIME)")
		run = func(c *api.Client, pos []string) error {
			if err := noArgs(name, pos); err != nil {
				return err
			}
			if *task == "" {
				return usagef("mitigation run needs --task")
			}
			return mitigationRun(ctx, c, *task, list(*actions), *id, stdout)
		}
	case "mitigation describe":
		run = oneArg(name, "task id", func(c *api.Client, id string) (any, error) { return c.DescribeAuditMitigationActionsTask(ctx, id) }, stdout)
	case "mitigation executions":
		run = oneArg(name, "task id", func(c *api.Client, id string) (any, error) {
			return c.ListAuditMitigationActionsExecutions(ctx, id, "")
		}, stdout)
	case "remediation set":
		run = func(c *api.Client, pos []string) error {
			if len(pos) < 2 {
				return usagef("remediation set needs a check name and at least one action")
			}
			return printResult(stdout)(c.SetRemediationRule(ctx, pos[0], pos[1:]))
		}
	case "remediation list":
		run = noArg(name, func(c *api.Client) (any, error) { return c.RemediationRules(ctx) }, stdout)
	case "remediation delete":
		run = oneArg(name, "check name", func(c *api.Client, check string) (any, error) { return nil, c.DeleteRemediationRule(ctx, check) }, stdout)
	default:
		return usagef("unknown command %q", name)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	return run(c, pos)
}

var auditVerbs = []string{
	"audit run", "audit describe", "audit findings", "audit list", "audit schedule", "audit schedule create",
	"audit schedule list", "audit schedule delete", "audit config", "audit config get", "audit config set",
	"mitigation action", "mitigation action create", "mitigation action list", "mitigation action describe",
	"mitigation action delete", "mitigation run", "mitigation describe", "mitigation executions",
	"remediation set", "remediation list", "remediation delete",
}

func isAuditVerb(s string) bool { return slices.Contains(auditVerbs, s) }

// list splits a comma-separated flag value ("" is none).
func list(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func noArgs(name string, pos []string) error {
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q", name, pos[0])
	}
	return nil
}

func printResult(stdout io.Writer) func(any, error) error {
	return func(out any, err error) error {
		if err != nil || out == nil {
			return err
		}
		return printJSON(stdout, out)
	}
}

// oneArg is a command taking one positional argument whose result is
// printed as JSON.
func oneArg(name, what string, call func(*api.Client, string) (any, error), stdout io.Writer) func(*api.Client, []string) error {
	return func(c *api.Client, pos []string) error {
		if len(pos) != 1 {
			return usagef("%s needs exactly one %s", name, what)
		}
		return printResult(stdout)(call(c, pos[0]))
	}
}

// noArg is a command without positional arguments whose result is printed
// as JSON.
func noArg(name string, call func(*api.Client) (any, error), stdout io.Writer) func(*api.Client, []string) error {
	return func(c *api.Client, pos []string) error {
		if err := noArgs(name, pos); err != nil {
			return err
		}
		return printResult(stdout)(call(c))
	}
}

// auditRun starts an audit, prints its id and, if wait, waits for it and
// prints a summary (and that of the remediation it triggered).
func auditRun(ctx context.Context, c *api.Client, checks []string, wait bool, timeout time.Duration, stdout io.Writer) error {
	id, err := c.StartOnDemandAuditTask(ctx, checks)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit task %s\n", id)
	if !wait {
		return nil
	}
	task, err := waitFor(ctx, timeout, "audit task "+id, func() (api.AuditTask, bool, error) {
		t, err := c.DescribeAuditTask(ctx, id)
		return t, t.TaskStatus != audit.TaskInProgress, err
	})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tNON-COMPLIANT\tTOTAL")
	for _, name := range slices.Sorted(maps.Keys(task.AuditDetails)) {
		d := task.AuditDetails[name]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", name, d.CheckRunStatus, d.NonCompliantResourcesCount, d.TotalResourcesCount)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := task.TaskStatistics
	fmt.Fprintf(stdout, "%s: %d checks, %d compliant, %d non-compliant, %d failed\n", task.TaskStatus, s.TotalChecks, s.CompliantChecks, s.NonCompliantChecks, s.FailedChecks)
	if s.NonCompliantChecks > 0 {
		fmt.Fprintf(stdout, "findings: thingsim audit findings %s\n", id)
	}
	if _, err := c.DescribeAuditMitigationActionsTask(ctx, audit.RemediationTaskID(id)); err == nil {
		return printMitigation(ctx, c, audit.RemediationTaskID(id), timeout, stdout)
	}
	return nil
}

// waitFor polls get until it reports done, the context ends or timeout
// passes.
func waitFor[T any](ctx context.Context, timeout time.Duration, what string, get func() (T, bool, error)) (T, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, done, err := get()
		if err != nil || done {
			return v, err
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("%s still in progress after %v", what, timeout)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// allFindings returns every finding of a task, page by page.
func allFindings(ctx context.Context, c *api.Client, taskID, check string) (api.ListAuditFindingsResponse, error) {
	out := api.ListAuditFindingsResponse{Findings: []api.AuditFinding{}}
	req := api.ListAuditFindingsRequest{TaskID: taskID, CheckName: check}
	for {
		resp, err := c.ListAuditFindings(ctx, req)
		if err != nil {
			return out, err
		}
		out.Findings = append(out.Findings, resp.Findings...)
		if resp.NextToken == "" {
			return out, nil
		}
		req.NextToken = resp.NextToken
	}
}

// configChange builds an UpdateAccountAuditConfiguration request from the
// config set flags.
func configChange(expiring, age int, enable, disable []string, webhook string) api.AuditConfiguration {
	req := api.AuditConfiguration{AuditCheckConfigurations: map[string]audit.CheckConfiguration{}}
	for _, c := range enable {
		req.AuditCheckConfigurations[c] = audit.CheckConfiguration{Enabled: true}
	}
	for _, c := range disable {
		req.AuditCheckConfigurations[c] = audit.CheckConfiguration{Enabled: false}
	}
	if expiring != 0 {
		req.AuditCheckConfigurations[audit.DeviceCertificateExpiring] = audit.CheckConfiguration{Enabled: true,
			Configuration: map[string]string{audit.ExpirationThresholdKey: strconv.Itoa(expiring)}}
	}
	if age != 0 {
		req.AuditCheckConfigurations[audit.DeviceCertificateAge] = audit.CheckConfiguration{Enabled: true,
			Configuration: map[string]string{audit.AgeThresholdKey: strconv.Itoa(age)}}
	}
	switch webhook {
	case "":
	case "off":
		req.AuditNotificationTargetConfigurations = map[string]audit.NotificationTarget{"SNS": {Enabled: false}}
	default:
		req.AuditNotificationTargetConfigurations = map[string]audit.NotificationTarget{"SNS": {TargetArn: webhook, Enabled: true}}
	}
	return req
}

// actionParams builds a mitigation action's parameters from the flags.
func actionParams(typ string, groups []string, override bool, topic string) (audit.ActionParams, error) {
	switch typ {
	case audit.ActionUpdateDeviceCertificate:
		return audit.ActionParams{UpdateDeviceCertificateParams: &audit.UpdateCertificateParams{Action: "DEACTIVATE"}}, nil
	case audit.ActionAddThingsToThingGroup:
		if len(groups) == 0 {
			return audit.ActionParams{}, usagef("%s needs --groups", typ)
		}
		return audit.ActionParams{AddThingsToThingGroupParams: &audit.AddThingsToThingGroupParams{ThingGroupNames: groups, OverrideDynamicGroups: override}}, nil
	case audit.ActionReplaceDefaultPolicyVersion:
		return audit.ActionParams{ReplaceDefaultPolicyVersionParams: &audit.ReplaceDefaultPolicyVersionParams{TemplateName: "BLANK_POLICY"}}, nil
	case audit.ActionPublishFindingToSNS:
		if topic == "" {
			return audit.ActionParams{}, usagef("%s needs --topic", typ)
		}
		return audit.ActionParams{PublishFindingToSNSParams: &audit.PublishFindingToSNSParams{TopicArn: topic}}, nil
	}
	return audit.ActionParams{}, usagef("--type %q must be UPDATE_DEVICE_CERTIFICATE, ADD_THINGS_TO_THING_GROUP, REPLACE_DEFAULT_POLICY_VERSION or PUBLISH_FINDING_TO_SNS", typ)
}

// mitigationRun applies actions to an audit task's findings: the named
// actions to every non-compliant check they apply to, or the remediation
// rules' actions. It waits and prints a summary.
func mitigationRun(ctx context.Context, c *api.Client, taskID string, actions []string, id string, stdout io.Writer) error {
	task, err := c.DescribeAuditTask(ctx, taskID)
	if err != nil {
		return err
	}
	mapping := map[string][]string{}
	if len(actions) == 0 {
		rules, err := c.RemediationRules(ctx)
		if err != nil {
			return err
		}
		for _, r := range rules.Rules {
			mapping[r.CheckName] = r.ActionNames
		}
	}
	for _, name := range actions {
		a, err := c.DescribeMitigationAction(ctx, name)
		if err != nil {
			return err
		}
		for check := range task.AuditDetails {
			if audit.ActionApplies(check, a.ActionType) {
				mapping[check] = append(mapping[check], name)
			}
		}
	}
	for check := range mapping {
		if task.AuditDetails[check].CheckRunStatus != audit.CheckNonCompliant {
			delete(mapping, check)
		}
	}
	if len(mapping) == 0 {
		fmt.Fprintln(stdout, "nothing to mitigate: no non-compliant check of the task has an applicable action")
		return nil
	}
	if id == "" {
		id = fmt.Sprintf("mitigation-%s-%d", taskID, time.Now().Unix())
	}
	err = c.StartAuditMitigationActionsTask(ctx, id, api.StartAuditMitigationActionsTaskRequest{
		Target: audit.MitigationTarget{AuditTaskID: taskID}, AuditCheckToActionsMapping: mapping})
	if err != nil {
		return err
	}
	return printMitigation(ctx, c, id, time.Minute, stdout)
}

// printMitigation waits for a mitigation actions task and prints its
// executions.
func printMitigation(ctx context.Context, c *api.Client, id string, timeout time.Duration, stdout io.Writer) error {
	t, err := waitFor(ctx, timeout, "mitigation actions task "+id, func() (api.MitigationActionsTask, bool, error) {
		t, err := c.DescribeAuditMitigationActionsTask(ctx, id)
		return t, t.TaskStatus != audit.TaskInProgress, err
	})
	if err != nil {
		return err
	}
	execs, err := c.ListAuditMitigationActionsExecutions(ctx, id, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "mitigation actions task %s: %s\n", id, t.TaskStatus)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINDING\tACTION\tSTATUS\tMESSAGE")
	for _, e := range execs.ActionsExecutions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.FindingID, e.ActionName, e.Status, strings.TrimSpace(e.ErrorCode+" "+e.Message))
	}
	return tw.Flush()
}
