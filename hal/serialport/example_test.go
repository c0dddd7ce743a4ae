package serialport_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/thingd/thingd/hal/serialport"
)

// A gateway keeps a USB sensor's port open across unplugs and hands the
// Keeper to a device adapter as its port.
func ExampleNewKeeper() {
	ctx := context.Background()
	k, err := serialport.NewKeeper(serialport.Config{
		USB:         "0403:6001/A6008isP", // or Path: "/dev/serial/by-id/usb-FTDI_..."
		Baud:        19200,
		Parity:      "even",
		ReadTimeout: 200 * time.Millisecond,
	}, serialport.KeeperOptions{
		Logger: slog.Default(),
		OnState: func(up bool, err error) {
			// Report port health, e.g. in the device shadow.
		},
	})
	if err != nil {
		slog.Error("bad serial config", "err", err)
		return
	}
	go k.Run(ctx) // the caller's errgroup, in practice

	buf := make([]byte, 256)
	for {
		n, err := k.Read(buf)
		switch {
		case err == nil:
			_ = buf[:n] // feed the parser
		case errors.Is(err, serialport.ErrTimeout):
			// Nothing arrived; poll again.
		case errors.Is(err, serialport.ErrGone):
			// Unplugged or not open yet; the Keeper is reopening it.
			if err := k.Wait(ctx); err != nil {
				return
			}
		default:
			return // ErrClosed: Run returned
		}
	}
}
