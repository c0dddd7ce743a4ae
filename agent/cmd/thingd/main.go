// Command thingd is the device agent: it keeps the device's identity (a key in
// secure hardware and its certificate) alive and connects the device to AWS
// IoT Core or any MQTT broker with mutual TLS.
//
//	thingd run --config FILE
//	thingd status --config FILE [--json]
//	thingd version
//	thingd key generate --key URI [--algorithm ecdsa-p256]
//	thingd key csr --key URI --thing NAME
//	thingd key info --key URI [--json]
//	thingd key delete --key URI
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
	"runtime"
	"syscall"
	"time"

	"github.com/thingd/thingd/agent"
	"github.com/thingd/thingd/agent/config"
	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/agent/sdnotify"
	"github.com/thingd/thingd/keystore"
)

const usage = `usage:
  thingd run    --config FILE                     run the agent (systemd service)
  thingd status --config FILE [--json]          identity, key store, daemon connection state
  thingd version                                  version, build time, platform
  thingd key generate --key URI [--algorithm ecdsa-p256|ecdsa-p384|rsa-2048|rsa-3072]
  thingd key csr      --key URI --thing NAME      (PEM CSR on stdout)
  thingd key info     --key URI [--json]
  thingd key delete   --key URI

Key URIs:
  pkcs11:token=LABEL;object=NAME?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/thingd/pin
  tpm:handle=0x81000100[?device=/dev/tpmrm0|tcp:HOST:PORT|unix:/PATH]
  file:/var/lib/thingd/key.pem   (development only, insecure)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "thingd:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch args[0] {
	case "key":
		return keyCmd(ctx, args[1:], stdout, stderr, logger)
	case "run":
		return runCmd(ctx, args[1:], stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "thingd %s (built %s, %s/%s, %s)\n", agent.Version, agent.BuildTime().UTC().Format(time.RFC3339),
			runtime.GOOS, runtime.GOARCH, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func keyCmd(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("key: no subcommand (generate, csr, info, delete)")
	}
	sub := args[0]
	fs := flag.NewFlagSet("thingd key "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFlag := fs.String("key", "", "key URI (pkcs11:, tpm: or file:)")
	var algFlag, thingFlag *string
	var jsonFlag *bool
	switch sub {
	case "generate":
		algFlag = fs.String("algorithm", string(keystore.DefaultAlgorithm), "ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-3072")
		jsonFlag = fs.Bool("json", false, "print the key description as JSON")
	case "csr":
		thingFlag = fs.String("thing", "", "thing name (the CSR's Subject CN)")
	case "info":
		jsonFlag = fs.Bool("json", false, "print JSON")
	case "delete":
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("key: unknown subcommand %q", sub)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("key %s: unexpected argument %q", sub, fs.Arg(0))
	}
	if *keyFlag == "" {
		return fmt.Errorf("key %s: --key URI is required", sub)
	}
	uri, err := keystore.ParseURI(*keyFlag)
	if err != nil {
		return err
	}
	switch sub {
	case "generate":
		alg, err := keystore.ParseAlgorithm(*algFlag)
		if err != nil {
			return err
		}
		d, err := keys.Generate(ctx, uri, alg, logger)
		if err != nil {
			return err
		}
		return printDescription(stdout, stderr, d, *jsonFlag)
	case "csr":
		if *thingFlag == "" {
			return errors.New("key csr: --thing NAME is required")
		}
		pem, err := keys.CSR(ctx, uri, *thingFlag, logger)
		if err != nil {
			return err
		}
		_, err = stdout.Write(pem)
		return err
	case "info":
		d, err := keys.Info(ctx, uri, logger)
		if err != nil {
			return err
		}
		return printDescription(stdout, stderr, d, *jsonFlag)
	case "delete":
		if err := keys.Delete(ctx, uri, logger); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", uri.Redacted())
		return nil
	}
	return nil
}

func printDescription(stdout, stderr io.Writer, d keys.Description, asJSON bool) error {
	if d.Insecure {
		fmt.Fprintln(stderr, "WARNING:", keys.InsecureWarning)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	fmt.Fprintf(stdout, "algorithm:         %s\n", d.Algorithm)
	fmt.Fprintf(stdout, "public key sha256: %s\n", d.Fingerprint)
	fmt.Fprintf(stdout, "key store:         %s\n", d.Kind)
	fmt.Fprintf(stdout, "location:          %s\n", d.Location)
	fmt.Fprintf(stdout, "hardware-backed:   %v\n", d.HardwareBacked)
	fmt.Fprintf(stdout, "non-extractable:   %v\n", d.NonExtractable)
	if d.Insecure {
		fmt.Fprintf(stdout, "security:          %s\n", keys.InsecureWarning)
	}
	return nil
}

func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("thingd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/thingd/config.toml", "config file (TOML)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	cfg, err := config.Load(*path)
	return cfg, fs, err
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, _, err := loadConfig("run", args, stderr, nil)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	notifier := sdnotify.New(logger.With("component", "systemd"))

	// SIGHUP re-reads the config; a config that does not load is logged and
	// the running one kept.
	reload := make(chan *config.Config, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			notifier.Reloading()
			next, err := config.Load(cfg.Path)
			if err != nil {
				logger.Error("reload: config not loaded; keeping the running one", "err", err)
				notifier.Ready()
				continue
			}
			select {
			case <-reload: // a newer file replaces an unapplied one
			default:
			}
			reload <- next
		}
	}()

	for {
		logger.Info("thingd starting", "version", agent.Version, "thing", cfg.ThingName, "endpoint", cfg.Endpoint,
			"key", cfg.Key.Redacted(), "config", cfg.Path)
		err := agent.Run(ctx, cfg, agent.Options{Logger: logger, LogLevel: level, Notifier: notifier, Reload: reload})
		var restart *agent.RestartError
		if !errors.As(err, &restart) {
			notifier.Stopping()
			return err
		}
		logger.Info("reload: restarting with the new config", "changed", restart.Changed)
		cfg = restart.Config
		level.Set(cfg.LogLevel)
	}
}

func statusCmd(args []string, stdout, stderr io.Writer) error {
	var asJSON *bool
	cfg, _, err := loadConfig("status", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	r := agent.Status(cfg, time.Now())
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(stdout, "thing:          %s\n", r.Thing)
	fmt.Fprintf(stdout, "endpoint:       %s\n", r.Endpoint)
	if r.CertificateError != "" {
		fmt.Fprintf(stdout, "certificate:    ERROR %s\n", r.CertificateError)
	} else {
		fmt.Fprintf(stdout, "certificate id: %s\n", r.CertificateID)
		fmt.Fprintf(stdout, "serial:         %s\n", r.Serial)
		fmt.Fprintf(stdout, "not after:      %s\n", r.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "key:            %s (slot %s)\n", r.ActiveKey, r.Slot)
	fmt.Fprintf(stdout, "key store:      %s\n", r.KeyStore)
	rs := r.Rotation
	line := rs.State
	if rs.ID != "" {
		line += " (" + rs.ID + ")"
	}
	fmt.Fprintf(stdout, "rotation:       %s\n", line)
	if l := rs.Last; l != nil {
		last := fmt.Sprintf("%s %s at %s", l.ID, l.Result, l.At.UTC().Format(time.RFC3339))
		if l.Reason != "" {
			last += ": " + l.Reason
		}
		fmt.Fprintf(stdout, "last rotation:  %s\n", last)
	}
	switch {
	case rs.RenewalNote != "":
		fmt.Fprintf(stdout, "next renewal:   none (%s)\n", rs.RenewalNote)
	case !rs.NextRenewal.IsZero():
		fmt.Fprintf(stdout, "next renewal:   %s\n", rs.NextRenewal.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "daemon:         %s\n", r.Daemon)
	if r.Connection != nil {
		fmt.Fprintf(stdout, "connection:     %s since %s\n", r.Connection.State, r.Connection.Since.UTC().Format(time.RFC3339))
		if r.Connection.LastError != "" {
			fmt.Fprintf(stdout, "last error:     %s\n", r.Connection.LastError)
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(stdout, "WARNING:        %s\n", w)
	}
	return nil
}
