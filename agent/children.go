package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/thingd/thingd/agent/config"
	"github.com/thingd/thingd/agent/gateway"
	"github.com/thingd/thingd/hal/linesensor"
	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/serialport"
	"github.com/thingd/thingd/hal/sysfacts"
)

// buildChildren turns the configured children into gateway children: a
// serialport.Keeper per port (reopened when the device comes back) with the
// child's adapter on top.
func buildChildren(cfg *config.Config, log *slog.Logger) ([]gateway.Child, error) {
	var out []gateway.Child
	for _, c := range cfg.Gateway.Children {
		clog := func(component string) *slog.Logger { return log.With("component", component, "child", c.Name) }
		sc := c.Serial
		keeper, err := serialport.NewKeeper(sc, serialport.KeeperOptions{Logger: clog("serial")})
		if err != nil {
			return nil, fmt.Errorf("child %s: %w", c.Name, err)
		}
		child := gateway.Child{Name: c.Name, Thing: c.ThingName, AdapterKind: c.Adapter, Port: sc.String(),
			PollInterval: c.PollInterval, ReportInterval: c.ReportInterval, Ready: keeper.Ready}
		switch c.Adapter {
		case config.AdapterLine:
			a := linesensor.New(keeper, linesensor.Options{MaxLineBytes: c.MaxLineBytes, Stale: c.StaleAfter,
				IsTimeout: func(err error) bool { return errors.Is(err, serialport.ErrTimeout) }, Logger: clog("linesensor")})
			child.Adapter = a
			child.Run = runAll(keeper.Run, a.Run)
		case config.AdapterModbus:
			client := modbus.NewClient(keeper, modbus.ClientOptions{Baud: c.Serial.Baud, Timeout: c.Timeout, Logger: clog("modbus")})
			a, err := modbus.NewAdapter(client, modbus.Config{UnitID: uint8(c.UnitID), Registers: c.Registers})
			if err != nil {
				return nil, fmt.Errorf("child %s: %w", c.Name, err)
			}
			child.Adapter = a
			child.Run = keeper.Run
		default:
			return nil, fmt.Errorf("child %s: adapter %q is not line or modbus", c.Name, c.Adapter)
		}
		out = append(out, child)
	}
	return out, nil
}

// runAll runs fs together until ctx ends, returning the first error.
func runAll(fs ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var wg sync.WaitGroup
		errs := make([]error, len(fs))
		for i, f := range fs {
			wg.Go(func() { errs[i] = f(ctx) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
		return nil
	}
}

// systemFacts reads the gateway's system facts for its shadow; a fact that
// cannot be read is left out (logged at debug).
func systemFacts(stateDir string, log *slog.Logger) func() map[string]any {
	return func() map[string]any {
		f, err := sysfacts.Read(context.Background(), sysfacts.Options{DiskPath: stateDir})
		if err != nil {
			log.Debug("some system facts could not be read", "err", err)
		}
		// The JSON tags of Facts are the shadow's names; unknown facts are
		// absent (omitempty).
		data, err := json.Marshal(f)
		if err != nil {
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil
		}
		return m
	}
}
