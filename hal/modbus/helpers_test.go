package modbus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/thingd/thingd/hal/modbus/modbustest"
)

// serve runs slave on conn until the test ends, and then checks that Serve
// stopped because it was told to.
func serve(t *testing.T, slave *modbustest.Slave, conn modbustest.Conn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slave.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	})
}

// pipeSlave returns a slave for unit served on one end of a modbustest.Pipe,
// and the other end.
func pipeSlave(t *testing.T, unit uint8) (*modbustest.Slave, *modbustest.PipeEnd) {
	t.Helper()
	dev, port := modbustest.Pipe()
	t.Cleanup(func() { port.Close() })
	slave := modbustest.NewSlave(unit)
	serve(t, slave, dev)
	return slave, port
}
