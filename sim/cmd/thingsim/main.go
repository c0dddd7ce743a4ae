// Command thingsim is a local stand-in for AWS IoT Core: an mTLS MQTT broker,
// a registry of things and certificates, and an admin API, all in one
// process on one data directory.
//
//	thingsim serve --dir DIR [--mqtt 127.0.0.1:8883] [--api 127.0.0.1:8443] [--log-level info]
//	               [--cert-days 365] [--rotation-grace 60s] [--default-policy thingd-device] [--strict-lifecycle-events]
//	thingsim thing create|describe|delete NAME [--attr k=v ...]
//	thingsim thing list
//	thingsim cert create --thing T --csr FILE [--days N] [--json]
//	thingsim cert list | describe --id ID | update --id ID --status S
//	thingsim job create --thing T|--group G --document FILE [--job-id ID] [--continuous] [--description D]
//	thingsim job describe ID [--thing T] | list | cancel ID [--force]
//	thingsim group create G | add G --thing T | remove G --thing T | list
//	thingsim shadow get|delete --thing T [--name N]
//	thingsim shadow update --thing T [--name N] [--desired JSON] [--reported JSON]
//	thingsim shadow list --thing T
//	thingsim faults [--set JSON | --clear]
//	thingsim clients [--json]
//	thingsim policy create NAME --document FILE | get NAME | list | delete NAME | targets NAME
//	thingsim policy version create NAME --document FILE [--set-default] | list NAME
//	thingsim policy version get|set-default|delete NAME --version N
//	thingsim policy attach|detach NAME --cert ID|--group G | attached --cert ID|--group G
//	thingsim policy test --cert ID --action A --resource R [--client-id C] [--json]
//	thingsim audit run [--checks A,B] | describe TASK | findings TASK | list | schedule create NAME --frequency F [--every D]
//	thingsim audit config get | set [--expiring-days N] [--age-days N] [--enable A,B] [--disable A,B] [--webhook URL]
//	thingsim mitigation action create NAME --type T [--groups G] [--topic T] | run --task TASK [--actions A,B]
//	thingsim remediation set CHECK ACTION... | list | delete CHECK
//	thingsim device --link PATH [--kind line] [--interval 2s]
//
// Every command but serve takes --dir DIR (finds the address and token
// written by serve) and --api ADDR (overrides the address).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/provision"
)

const usage = `usage:
  thingsim serve --dir DIR [--mqtt ADDR] [--api ADDR] [--log-level debug|info|warn|error]
                 [--cert-days N] [--rotation-grace DURATION] [--default-policy NAME|none] [--strict-lifecycle-events]
  thingsim thing create NAME [--attr key=value ...]
  thingsim thing describe NAME | delete NAME | list
  thingsim cert create --thing THING --csr FILE [--days N] [--json]
  thingsim cert list | describe --id ID | update --id ID --status ACTIVE|INACTIVE|REVOKED
  thingsim job create --thing THING|--group GROUP --document FILE [--job-id ID] [--continuous] [--description TEXT]
  thingsim job describe ID [--thing THING] | list | cancel ID [--force]
  thingsim group create GROUP | add GROUP --thing THING | remove GROUP --thing THING | list
  thingsim shadow get|delete --thing THING [--name SHADOW]
  thingsim shadow update --thing THING [--name SHADOW] [--desired JSON] [--reported JSON]
  thingsim shadow list --thing THING
  thingsim faults [--set JSON | --clear]
  thingsim clients [--json]
` + auditUsage + policyUsage + deviceUsage + `every command but serve takes --dir DIR and --api ADDR
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

// run executes one thingsim command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "thingsim: %v\n%s", err, usage)
		return 2
	}
	fmt.Fprintf(stderr, "thingsim: %v\n", err)
	return 1
}

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	cmd, rest := args[0], args[1:]
	if cmd == "audit" || cmd == "mitigation" || cmd == "remediation" {
		return auditCommand(ctx, cmd, rest, stdout, stderr)
	}
	if cmd == "policy" {
		return policyCommand(ctx, rest, stdout, stderr)
	}
	sub := ""
	if (cmd == "thing" || cmd == "cert" || cmd == "job" || cmd == "group" || cmd == "shadow") && len(rest) > 0 {
		sub, rest = rest[0], rest[1:]
	}
	switch cmd + " " + sub {
	case "serve ":
		return serve(ctx, rest, stderr)
	case "thing create", "thing describe", "thing delete", "thing list":
		return thingCmd(ctx, sub, rest, stdout, stderr)
	case "cert create", "cert list", "cert describe", "cert update":
		return certCmd(ctx, sub, rest, stdout, stderr)
	case "job create", "job describe", "job list", "job cancel":
		return jobCmd(ctx, sub, rest, stdout, stderr)
	case "group create", "group add", "group remove", "group list":
		return groupCmd(ctx, sub, rest, stdout, stderr)
	case "shadow get", "shadow update", "shadow delete", "shadow list":
		return shadowCmd(ctx, sub, rest, stdout, stderr)
	case "faults ":
		return faultsCmd(ctx, rest, stdout, stderr)
	case "clients ":
		return clientsCmd(ctx, rest, stdout, stderr)
	case "device ":
		return deviceCmd(ctx, rest, stdout, stderr)
	case "help ", "-h ", "--help ":
		return flag.ErrHelp
	}
	return usagef("unknown command %q", strings.TrimSpace(cmd+" "+sub))
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags and positional arguments in any order.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	dir := fs.String("dir", "", "data directory (required)")
	mqttAddr := fs.String("mqtt", sim.DefaultMQTTAddr, "MQTT (TLS) listen address; port 0 picks one")
	apiAddr := fs.String("api", sim.DefaultAPIAddr, "admin API listen address (loopback); port 0 picks one")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	certDays := fs.Int("cert-days", api.DefaultValidityDays, "validity in days of the device certificates issued without an explicit one (CreateCertificateFromCsr over MQTT)")
	grace := fs.Duration("rotation-grace", provision.DefaultRotationGrace, "how long after a rotate-certificate job SUCCEEDED the old certificate is deactivated and detached (0: at once)")
	defaultPolicy := fs.String("default-policy", policy.DevicePolicyName, "policy attached to the certificates thingsim issues ("+sim.NoDefaultPolicy+": none, open mode)")
	strictEvents := fs.Bool("strict-lifecycle-events", false, "reading $aws/events/presence/ needs iot:Subscribe and iot:Receive, as on AWS")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve: unexpected argument %q", pos[0])
	}
	if *dir == "" {
		return usagef("serve: --dir is required")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usagef("serve: --log-level %q: %v", *level, err)
	}
	if *certDays < 1 || *certDays > 36500 {
		return usagef("serve: --cert-days %d must be between 1 and 36500", *certDays)
	}
	if *grace < 0 {
		return usagef("serve: --rotation-grace %v must not be negative", *grace)
	}
	if *grace == 0 {
		*grace = -1 // sim.Options: negative means at once, zero the default
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	s, err := sim.Start(ctx, sim.Options{
		Dir: *dir, MQTTAddr: *mqttAddr, APIAddr: *apiAddr, Logger: log,
		DeviceCertValidity: time.Duration(*certDays) * 24 * time.Hour, RotationGrace: *grace,
		DefaultPolicy: *defaultPolicy, StrictLifecycleEvents: *strictEvents,
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	return s.Close()
}

// clientFlags registers --dir and --api and returns a constructor for the
// API client they designate.
func clientFlags(fs *flag.FlagSet) func() (*api.Client, error) {
	dir := fs.String("dir", "", "thingsim data directory (finds the API address and token)")
	addr := fs.String("api", "", "admin API address, overriding the one in DIR")
	return func() (*api.Client, error) {
		if *dir == "" {
			return nil, usagef("%s: --dir is required (the admin token is read from it)", fs.Name())
		}
		token, err := sim.ReadToken(*dir)
		if err != nil {
			return nil, err
		}
		a := *addr
		if a == "" {
			info, err := sim.ReadInfo(*dir)
			if err != nil {
				return nil, err
			}
			a = info.APIAddress
		}
		return api.NewClient(a, token, nil), nil
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// attrFlag collects repeated --attr key=value flags.
type attrFlag map[string]string

func (a attrFlag) String() string { return fmt.Sprint(map[string]string(a)) }

func (a attrFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("attribute %q is not key=value", v)
	}
	a[k] = val
	return nil
}

func thingCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("thing "+sub, stderr)
	client := clientFlags(fs)
	attrs := attrFlag{}
	if sub == "create" {
		fs.Var(attrs, "attr", "attribute key=value (repeatable)")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneName("thing", sub, pos, "thing name"); err != nil {
		return err
	}
	return callAPI(client, stdout, func(c *api.Client) (any, error) {
		switch sub {
		case "create":
			return c.CreateThing(ctx, pos[0], attrs)
		case "describe":
			return c.DescribeThing(ctx, pos[0])
		case "delete":
			return nil, c.DeleteThing(ctx, pos[0])
		}
		return c.ListThings(ctx)
	})
}

// oneName checks that a subcommand got exactly one positional name (none for
// list).
func oneName(cmd, sub string, pos []string, what string) error {
	switch {
	case sub == "list" && len(pos) > 0:
		return usagef("%s list takes no arguments", cmd)
	case sub != "list" && len(pos) != 1:
		return usagef("%s %s needs exactly one %s", cmd, sub, what)
	}
	return nil
}

// callAPI makes a subcommand's API call with the client its flags designate
// and prints the response as JSON, if there is one.
func callAPI(client func() (*api.Client, error), stdout io.Writer, call func(*api.Client) (any, error)) error {
	c, err := client()
	if err != nil {
		return err
	}
	out, err := call(c)
	if err != nil || out == nil {
		return err
	}
	return printJSON(stdout, out)
}

func certCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cert "+sub, stderr)
	client := clientFlags(fs)
	var (
		thing, csrFile, id, status *string
		days                       *int
		asJSON                     *bool
	)
	switch sub {
	case "create":
		thing = fs.String("thing", "", "thing to attach the certificate to (created if missing)")
		csrFile = fs.String("csr", "", "PEM certificate signing request file")
		days = fs.Int("days", 0, "validity in days (default: the simulator's, see serve --cert-days)")
		asJSON = fs.Bool("json", false, "print the whole response as JSON instead of the PEM")
	case "describe":
		id = fs.String("id", "", "certificate id")
	case "update":
		id = fs.String("id", "", "certificate id")
		status = fs.String("status", "", "new status: ACTIVE, INACTIVE or REVOKED")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("cert %s: unexpected argument %q", sub, pos[0])
	}
	switch {
	case sub == "create" && (*thing == "" || *csrFile == ""):
		return usagef("cert create needs --thing and --csr")
	case (sub == "describe" || sub == "update") && *id == "":
		return usagef("cert %s needs --id", sub)
	case sub == "update" && *status == "":
		return usagef("cert update needs --status")
	}
	c, err := client()
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		csr, err := os.ReadFile(*csrFile)
		if err != nil {
			return fmt.Errorf("read CSR: %w", err)
		}
		resp, err := c.IssueThingCertificate(ctx, *thing, string(csr), *days)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, resp)
		}
		fmt.Fprintf(stderr, "certificate id: %s\n", resp.CertificateID)
		_, err = io.WriteString(stdout, resp.CertificatePem)
		return err
	case "list":
		resp, err := c.ListCertificates(ctx)
		if err != nil {
			return err
		}
		return printJSON(stdout, resp)
	case "describe":
		resp, err := c.DescribeCertificate(ctx, *id)
		if err != nil {
			return err
		}
		return printJSON(stdout, resp)
	default: // update
		return c.UpdateCertificate(ctx, *id, *status)
	}
}

func clientsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("clients", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("clients: unexpected argument %q", pos[0])
	}
	c, err := client()
	if err != nil {
		return err
	}
	resp, err := c.Clients(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tCERTIFICATE ID\tSINCE\tADDRESS")
	for _, cl := range resp.Clients {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cl.ClientID, cl.CertificateID, cl.Since.Format(time.RFC3339), cl.IPAddress)
	}
	return tw.Flush()
}
