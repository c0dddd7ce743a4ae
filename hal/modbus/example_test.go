package modbus_test

import (
	"context"
	"fmt"

	"github.com/thingd/thingd/hal/modbus"
	"github.com/thingd/thingd/hal/modbus/modbustest"
)

// A device's register map read and written through an Adapter. The line is
// an in-memory pipe to a test slave here; on a gateway it is a
// hal/serialport port.
func Example() {
	device, port := modbustest.Pipe()
	slave := modbustest.NewSlave(1)
	slave.SetInput(0, 2301, 0x4248, 0x0000) // 230.1 V, 50.0 Hz
	slave.SetHolding(10, 80)                // setpoint 80*0.5-20 = 20
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slave.Serve(ctx, device) }()
	defer func() { cancel(); <-done }()

	client := modbus.NewClient(port, modbus.ClientOptions{Baud: 9600})
	meter, err := modbus.NewAdapter(client, modbus.Config{UnitID: 1, Registers: []modbus.Register{
		{Name: "voltage", Table: modbus.TableInput, Address: 0, Scale: 0.1},
		{Name: "frequency", Table: modbus.TableInput, Address: 1, Type: modbus.TypeFloat32},
		{Name: "setpoint", Table: modbus.TableHolding, Address: 10, Scale: 0.5, Offset: -20, Writable: true},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	readings, err := meter.Poll(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(readings["voltage"], readings["frequency"], readings["setpoint"])
	if err := meter.Write(ctx, "setpoint", 22.5); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%v %+v\n", slave.Holding(10, 1), meter.Stats())
	// Output:
	// 230.1 50 20
	// [85] {Frames:3 Malformed:0 Timeouts:0}
}
