package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/creack/pty"
)

const deviceUsage = `  thingsim device --link PATH [--kind line] [--interval 2s]
      a simulated serial sensor (not part of AWS): a pseudo-terminal whose other end is linked at PATH,
      sending a JSON reading line every interval, for a gateway's [[child]] port = PATH
`

// deviceCmd runs a simulated serial device on a pseudo-terminal until ctx
// ends: the device side is the PTY master, the slave's path is linked at
// --link for thingd to open.
func deviceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("device", stderr)
	link := fs.String("link", "", "path of the symlink to the device's serial port (required)")
	kind := fs.String("kind", "line", "device kind: line (newline-delimited JSON sensor)")
	interval := fs.Duration("interval", 2*time.Second, "how often the sensor sends a reading")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("device: unexpected argument %q", pos[0])
	case *link == "":
		return usagef("device: --link is required")
	case *kind != "line":
		return usagef("device: --kind %q is not line", *kind)
	case *interval < 10*time.Millisecond:
		return usagef("device: --interval %v is too short", *interval)
	}
	master, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("device: open a pseudo-terminal: %w", err)
	}
	defer master.Close()
	name := slave.Name()
	// The slave's node stays while the master is open; with no one on the
	// slave, what the device sends is dropped, as on a real line.
	slave.Close()
	tmp := *link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return fmt.Errorf("device: link %s: %w", *link, err)
	}
	if err := os.Rename(tmp, *link); err != nil {
		return fmt.Errorf("device: link %s: %w", *link, err)
	}
	defer os.Remove(*link)
	abs, _ := filepath.Abs(*link)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("simulated serial device ready", "kind", *kind, "port", abs, "pty", name, "interval", *interval)
	fmt.Fprintln(stdout, abs)
	start := time.Now()
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		s := time.Since(start).Seconds()
		line, _ := json.Marshal(map[string]any{
			"temperature": math.Round((21+2*math.Sin(s/60))*10) / 10,
			"humidity":    math.Round((45+5*math.Cos(s/90))*10) / 10,
			"uptime":      int64(s),
		})
		// A reader that has the port open but does not read must not stall
		// the device: a line that cannot go out within the interval is lost.
		_ = master.SetWriteDeadline(time.Now().Add(*interval))
		if _, err := master.Write(append(line, '\n')); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("device: write: %w", err)
		}
		select {
		case <-ctx.Done():
			log.Info("simulated serial device stopped", "port", abs)
			return nil
		case <-t.C:
		}
	}
}
