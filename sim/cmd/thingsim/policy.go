package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/broker"
	"github.com/thingd/thingd/sim/registry"
)

const policyUsage = `  thingsim policy create NAME --document FILE | get NAME | list | delete NAME
  thingsim policy version create NAME --document FILE [--set-default] | list NAME
  thingsim policy version get|set-default|delete NAME --version N
  thingsim policy attach|detach NAME --cert ID|--group GROUP
  thingsim policy attached --cert ID|--group GROUP | targets NAME
  thingsim policy test --cert ID --action A --resource R [--client-id C] [--json]
`

// policyCommand runs `thingsim policy ...`.
func policyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("policy needs a subcommand")
	}
	sub, rest := args[0], args[1:]
	if sub == "version" {
		if len(rest) == 0 {
			return usagef("policy version needs a subcommand")
		}
		sub, rest = "version "+rest[0], rest[1:]
	}
	switch sub {
	case "create", "get", "list", "delete", "targets", "version create", "version list", "version get", "version set-default", "version delete":
		return policyCRUD(ctx, sub, rest, stdout, stderr)
	case "attach", "detach", "attached":
		return policyAttach(ctx, sub, rest, stdout, stderr)
	case "test":
		return policyTest(ctx, rest, stdout, stderr)
	}
	return usagef("unknown command %q", "policy "+sub)
}

// policyCRUD runs the subcommands on a named policy and its versions.
func policyCRUD(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy "+sub, stderr)
	client := clientFlags(fs)
	var document, version *string
	var setDefault *bool
	switch sub {
	case "create", "version create":
		document = fs.String("document", "", "policy document (JSON file)")
	case "version get", "version set-default", "version delete":
		version = fs.String("version", "", "policy version id")
	}
	if sub == "version create" {
		setDefault = fs.Bool("set-default", false, "make the new version the default")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneName("policy", sub, pos, "policy name"); err != nil {
		return err
	}
	var doc string
	switch {
	case document != nil && *document == "":
		return usagef("policy %s needs --document", sub)
	case document != nil:
		data, err := os.ReadFile(*document)
		if err != nil {
			return fmt.Errorf("read policy document: %w", err)
		}
		doc = string(data)
	case version != nil && *version == "":
		return usagef("policy %s needs --version", sub)
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch sub {
		case "create":
			return c.CreatePolicy(ctx, pos[0], doc)
		case "get":
			return c.GetPolicy(ctx, pos[0])
		case "delete":
			return nil, c.DeletePolicy(ctx, pos[0])
		case "targets":
			return c.ListTargetsForPolicy(ctx, pos[0])
		case "version create":
			return c.CreatePolicyVersion(ctx, pos[0], doc, *setDefault)
		case "version list":
			return c.ListPolicyVersions(ctx, pos[0])
		case "version get":
			return c.GetPolicyVersion(ctx, pos[0], *version)
		case "version set-default":
			return nil, c.SetDefaultPolicyVersion(ctx, pos[0], *version)
		case "version delete":
			return nil, c.DeletePolicyVersion(ctx, pos[0], *version)
		}
		return c.ListPolicies(ctx)
	})
}

// targetFlags registers --cert and --group and returns the target ARN they
// name.
func targetFlags(fs *flag.FlagSet) func() (string, error) {
	cert := fs.String("cert", "", "certificate id")
	group := fs.String("group", "", "thing group name")
	return func() (string, error) {
		switch {
		case (*cert == "") == (*group == ""):
			return "", usagef("%s needs one of --cert and --group", fs.Name())
		case *cert != "":
			return registry.CertificateARN(*cert), nil
		}
		return registry.ThingGroupARN(*group), nil
	}
}

func policyAttach(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy "+sub, stderr)
	client := clientFlags(fs)
	target := targetFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if sub == "attached" {
		pos = append([]string{""}, pos...) // no policy name
	}
	if len(pos) != 1 {
		return usagef("policy %s needs exactly one policy name", sub)
	}
	arn, err := target()
	if err != nil {
		return err
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch sub {
		case "attach":
			return nil, c.AttachPolicy(ctx, pos[0], arn)
		case "detach":
			return nil, c.DetachPolicy(ctx, pos[0], arn)
		}
		return c.ListAttachedPolicies(ctx, arn)
	})
}

// actionType accepts PUBLISH, publish and iot:Publish (RetainPublish:
// RETAIN_PUBLISH).
func actionType(a string) string {
	a = strings.ToUpper(strings.TrimPrefix(strings.ToLower(a), "iot:"))
	if a == "RETAINPUBLISH" {
		return "RETAIN_PUBLISH"
	}
	return a
}

// resourceARN accepts an ARN or KIND/NAME (topic/a/b, topicfilter/a/#,
// client/dev1) in thingsim's account and region.
func resourceARN(r string) string {
	if strings.HasPrefix(r, "arn:") {
		return r
	}
	kind, name, _ := strings.Cut(r, "/")
	return broker.ResourceARN(kind, name)
}

func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy test", stderr)
	client := clientFlags(fs)
	cert := fs.String("cert", "", "certificate id of the client")
	action := fs.String("action", "", "CONNECT, PUBLISH, SUBSCRIBE, RECEIVE or RETAIN_PUBLISH (or iot:Publish ...)")
	resource := fs.String("resource", "", "resource ARN, or KIND/NAME: client/ID, topic/TOPIC, topicfilter/FILTER")
	clientID := fs.String("client-id", "", "ClientID of the connection (default: the thing the certificate is attached to)")
	asJSON := fs.Bool("json", false, "print the TestAuthorization response as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("policy test: unexpected argument %q", pos[0])
	}
	if *cert == "" || *action == "" || *resource == "" {
		return usagef("policy test needs --cert, --action and --resource")
	}
	c, err := client()
	if err != nil {
		return err
	}
	resp, err := c.TestAuthorization(ctx, *clientID, api.TestAuthorizationRequest{
		Principal: registry.CertificateARN(*cert),
		AuthInfos: []api.AuthInfo{{ActionType: actionType(*action), Resources: []string{resourceARN(*resource)}}},
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	return explainResult(stdout, resp.AuthResults[0])
}

// explainResult prints a TestAuthorization result for a person.
func explainResult(w io.Writer, r api.AuthResult) error {
	e := r.Explanation[0]
	verdict := "DENIED"
	if e.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "%s (%s): %s on %s\n", verdict, r.AuthDecision, r.AuthInfo.ActionType, e.Resource)
	fmt.Fprintf(w, "reason: %s\n", e.Reason)
	if e.Rule != "" {
		fmt.Fprintf(w, "decided by thingsim rule %s\n", e.Rule)
	}
	for _, list := range []struct {
		what string
		refs []api.StatementRef
	}{{"allowed by", e.Allows}, {"denied by", e.Denies}} {
		for _, s := range list.refs {
			fmt.Fprintf(w, "%s: policy %s version %s, statement %d", list.what, s.PolicyName, s.PolicyVersionID, s.Statement)
			if s.Sid != "" {
				fmt.Fprintf(w, " (%s)", s.Sid)
			}
			fmt.Fprintln(w)
		}
	}
	if len(e.InForce) == 0 {
		fmt.Fprintln(w, "policies in force: none")
	}
	for _, p := range e.InForce {
		fmt.Fprintf(w, "policy in force: %s version %s, attached to %s\n", p.PolicyName, p.PolicyVersionID, p.Target)
	}
	for _, v := range e.Variables {
		if v.Resolved {
			fmt.Fprintf(w, "variable ${%s} = %s\n", v.Name, v.Value)
		} else {
			fmt.Fprintf(w, "variable ${%s} unresolved (its statements do not apply)\n", v.Name)
		}
	}
	return nil
}
