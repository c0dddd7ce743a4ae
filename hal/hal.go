// Package hal gives thingd access to the gateway's hardware behind small
// interfaces: serial ports (hal/serialport), device adapters that turn a
// port into readings (hal/linesensor for newline-delimited JSON sensors,
// hal/modbus for Modbus RTU), and the gateway's own system facts
// (hal/sysfacts). It never talks MQTT and imports nothing of thingd's own.
//
// This root package holds only what every adapter shares: the Adapter
// interface the gateway drives, Readings, Stats and the sentinel errors.
package hal

import (
	"context"
	"errors"
)

// Readings are one poll's values from a device, keyed by reading name.
// Values are JSON-friendly: float64, int64, bool, string, or nested
// map[string]any / []any as a sensor sent them.
type Readings map[string]any

// Adapter turns one port into readings and, where the device supports it,
// accepts writes. Implementations are safe for concurrent use by one
// poller and one writer.
type Adapter interface {
	// Poll returns the device's current readings. It blocks until they are
	// read (Modbus: one round of register requests) or available (line
	// sensors: the readings received since the previous Poll), the adapter's
	// timeout passes (ErrNoResponse), or ctx is done.
	Poll(ctx context.Context) (Readings, error)
	// Write sets the named value on the device. Adapters or values that do
	// not accept writes return an error matching ErrReadOnly; a value of the
	// wrong type or out of range matches ErrInvalidValue.
	Write(ctx context.Context, name string, value any) error
	// Stats returns the adapter's counters.
	Stats() Stats
}

// Stats count what an adapter saw since it was created.
type Stats struct {
	// Frames is the number of well-formed frames or lines received.
	Frames uint64 `json:"frames"`
	// Malformed counts frames or lines that were skipped: bad JSON, too
	// long, bad CRC, truncated, unexpected replies.
	Malformed uint64 `json:"malformed"`
	// Timeouts counts requests that got no reply in time.
	Timeouts uint64 `json:"timeouts"`
}

var (
	// ErrNoResponse means the device did not answer in time.
	ErrNoResponse = errors.New("hal: device did not respond")
	// ErrReadOnly means the adapter or the named value does not accept writes.
	ErrReadOnly = errors.New("hal: not writable")
	// ErrInvalidValue means a value to write has the wrong type or range.
	ErrInvalidValue = errors.New("hal: invalid value")
	// ErrUnknownName means a name to write is not in the device's map.
	ErrUnknownName = errors.New("hal: unknown name")
)
