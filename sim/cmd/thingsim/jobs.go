package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/provision"
	"github.com/thingd/thingd/sim/registry"
)

func jobCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("job "+sub, stderr)
	client := clientFlags(fs)
	var (
		thing, group, docFile, jobID, description *string
		continuous, force                         *bool
	)
	switch sub {
	case "create":
		thing = fs.String("thing", "", "target thing")
		group = fs.String("group", "", "target thing group")
		docFile = fs.String("document", "", "job document file (a JSON object, at most 32768 bytes)")
		jobID = fs.String("job-id", "", "job id (default: a random one)")
		description = fs.String("description", "", "job description")
		continuous = fs.Bool("continuous", false, "also run on things added to the group later (targetSelection CONTINUOUS)")
	case "describe":
		thing = fs.String("thing", "", "describe the job's execution on this thing instead of the job")
	case "cancel":
		force = fs.Bool("force", false, "also cancel IN_PROGRESS executions")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if sub == "create" {
		if len(pos) > 0 {
			return usagef("job create: unexpected argument %q", pos[0])
		}
		if (*thing == "") == (*group == "") || *docFile == "" {
			return usagef("job create needs --document and one of --thing and --group")
		}
	} else if err := oneName("job", sub, pos, "job id"); err != nil {
		return err
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch {
		case sub == "create":
			return createJob(ctx, c, *thing, *group, *docFile, *jobID, *description, *continuous)
		case sub == "describe" && *thing != "":
			return c.DescribeJobExecution(ctx, *thing, pos[0])
		case sub == "describe":
			return c.DescribeJob(ctx, pos[0])
		case sub == "cancel":
			return c.CancelJob(ctx, pos[0], *force, api.CancelJobRequest{})
		}
		return c.ListJobs(ctx, "", "")
	})
}

func createJob(ctx context.Context, c *api.Client, thing, group, docFile, jobID, description string, continuous bool) (any, error) {
	doc, err := os.ReadFile(docFile)
	if err != nil {
		return nil, fmt.Errorf("read job document: %w", err)
	}
	req := api.CreateJobRequest{Document: string(doc), Description: description, TargetSelection: "SNAPSHOT"}
	if thing != "" {
		req.Targets = []string{registry.ThingARN(thing)}
	} else {
		req.Targets = []string{registry.ThingGroupARN(group)}
	}
	if continuous {
		req.TargetSelection = "CONTINUOUS"
	}
	if jobID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		jobID = "job-" + hex.EncodeToString(b[:])
	}
	return c.CreateJob(ctx, jobID, req)
}

func groupCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("group "+sub, stderr)
	client := clientFlags(fs)
	var thing *string
	if sub == "add" || sub == "remove" {
		thing = fs.String("thing", "", "the thing to add or remove")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneName("group", sub, pos, "thing group name"); err != nil {
		return err
	}
	if thing != nil && *thing == "" {
		return usagef("group %s needs --thing", sub)
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch sub {
		case "create":
			return c.CreateThingGroup(ctx, pos[0], "")
		case "add":
			return nil, c.AddThingToThingGroup(ctx, pos[0], *thing)
		case "remove":
			return nil, c.RemoveThingFromThingGroup(ctx, pos[0], *thing)
		}
		return c.ListThingGroups(ctx)
	})
}

func faultsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("faults", stderr)
	client := clientFlags(fs)
	set := fs.String("set", "", `replace the provisioning faults with this JSON, e.g. {"createFromCsr":{"kind":"reject","count":1}}`)
	clearAll := fs.Bool("clear", false, "clear the provisioning faults")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("faults: unexpected argument %q", pos[0])
	}
	if *set != "" && *clearAll {
		return usagef("faults: --set and --clear exclude each other")
	}
	var f provision.Faults
	if *set != "" {
		if err := json.Unmarshal([]byte(*set), &f); err != nil {
			return usagef("faults: --set: %v", err)
		}
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		if *set != "" || *clearAll {
			return c.SetFaults(ctx, f)
		}
		return c.Faults(ctx)
	})
}
