//go:build linux

package modbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

// BenchmarkPollPTY is one Poll of the meter map (10 registers in three
// requests: holding 0-7, holding 10-12, input 100-103) over a real
// pseudo-terminal against modbustest's slave. A PTY moves bytes at memory
// speed whatever the baud rate, but the client paces itself as on a real
// line: after each request it waits the request's time on the wire at that
// baud and the RTU silence (3.5 characters). The replies arrive at PTY speed,
// so a real line adds their wire time (at 9600 baud about 1.15 ms a byte).
func BenchmarkPollPTY(b *testing.B) {
	for _, baud := range []int{9600, 19200, 115200} {
		b.Run(fmt.Sprintf("baud=%d", baud), func(b *testing.B) {
			pt, err := modbustest.OpenPTY()
			if err != nil {
				b.Fatal(err)
			}
			defer pt.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = meterSlave().Serve(ctx, pt.Device) }()
			defer func() { cancel(); <-done }()
			a, err := modbus.NewAdapter(modbus.NewClient(pt.Port, modbus.ClientOptions{Baud: baud, Timeout: 2 * time.Second}), meter)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				r, err := a.Poll(ctx)
				if err != nil || len(r) != len(meterReadings) {
					b.Fatalf("Poll = %v, %v", r, err)
				}
			}
		})
	}
}
