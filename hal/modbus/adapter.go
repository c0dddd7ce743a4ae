package modbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/thingd/thingd/hal"
)

// Register tables.
const (
	TableHolding = "holding"
	TableInput   = "input"
)

// Register types.
const (
	TypeUint16  = "uint16"
	TypeInt16   = "int16"
	TypeUint32  = "uint32"
	TypeInt32   = "int32"
	TypeFloat32 = "float32"
)

// Word orders of 32-bit types.
const (
	// WordOrderBig puts the high word in the lower address (the Modbus
	// convention, and the default).
	WordOrderBig = "big"
	// WordOrderLittle puts the low word in the lower address.
	WordOrderLittle = "little"
)

// Register is one value of a device: a register, or for 32-bit types the
// pair at Address and Address+1. thingd's config ([[child.register]])
// decodes into it.
type Register struct {
	// Name is the reading's name. Required, unique within a Config.
	Name string
	// Table is TableHolding (function 0x03, writable) or TableInput
	// (function 0x04, read-only).
	Table string
	// Address is the protocol address (counting from 0) of the register,
	// or of the first of a pair.
	Address uint16
	// Type is how the register's bits are read: TypeUint16, TypeInt16,
	// TypeUint32, TypeInt32 or TypeFloat32 (IEEE 754). Empty means
	// TypeUint16.
	Type string
	// WordOrder of a 32-bit type: WordOrderBig (empty means big) or
	// WordOrderLittle. 16-bit types accept empty or "big" only.
	WordOrder string
	// Scale and Offset turn the register's value into the reading:
	// reading = raw*Scale + Offset, and back for writes. Zero Scale means 1.
	Scale, Offset float64
	// Writable lets Write set the register. Holding registers only.
	Writable bool
	// Min and Max, if set, bound the values Write accepts, in reading
	// units. Nil means the type's range. Writable registers only.
	Min, Max *float64
}

// Config configures an [Adapter]. [NewAdapter] copies it.
type Config struct {
	// UnitID is the device's unit address, 1-247.
	UnitID uint8
	// Registers are read at every poll. At least one; registers of the
	// same table must not overlap.
	Registers []Register
	// MaxGap is how many unmapped registers a poll may read and ignore to
	// join two runs of registers into one request. Zero reads contiguous
	// runs only, the safe choice: many devices answer a read that touches
	// an unimplemented address with an exception.
	MaxGap uint16
}

// words returns how many registers r spans.
func (r Register) words() int {
	switch r.Type {
	case TypeUint32, TypeInt32, TypeFloat32:
		return 2
	}
	return 1
}

// Validate reports every problem with c, joined, each naming the register
// it is about.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("modbus: "+format, args...))
	}
	if c.UnitID < 1 || c.UnitID > 247 {
		bad("unit id %d is not between 1 and 247", c.UnitID)
	}
	if len(c.Registers) == 0 {
		bad("no registers to read")
	}
	names := map[string]bool{}
	type span struct {
		name       string
		start, end int // [start, end)
	}
	spans := map[string][]span{}
	for i, r := range c.Registers {
		what := fmt.Sprintf("register %q", r.Name)
		switch {
		case r.Name == "":
			what = fmt.Sprintf("registers[%d]", i)
			bad("%s: name is missing", what)
		case names[r.Name]:
			bad("%s: name used by two registers", what)
		case strings.ContainsFunc(r.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			bad("%s: name has control characters", what)
		}
		names[r.Name] = true
		switch r.Table {
		case TableHolding:
		case TableInput:
			if r.Writable {
				bad("%s: input registers are read-only; only holding registers can be writable", what)
			}
		case "":
			bad("%s: table is missing (%s or %s)", what, TableHolding, TableInput)
		default:
			bad("%s: table %q is not %s or %s", what, r.Table, TableHolding, TableInput)
		}
		switch r.Type {
		case "", TypeUint16, TypeInt16:
			if r.WordOrder != "" && r.WordOrder != WordOrderBig {
				bad("%s: word order %q: only 32-bit types have a word order", what, r.WordOrder)
			}
		case TypeUint32, TypeInt32, TypeFloat32:
			if r.WordOrder != "" && r.WordOrder != WordOrderBig && r.WordOrder != WordOrderLittle {
				bad("%s: word order %q is not %s or %s", what, r.WordOrder, WordOrderBig, WordOrderLittle)
			}
		default:
			bad("%s: type %q is not uint16, int16, uint32, int32 or float32", what, r.Type)
		}
		if end := int(r.Address) + r.words(); end > 1<<16 {
			bad("%s: a %s at address %d runs past 65535", what, r.Type, r.Address)
		} else if r.Table == TableHolding || r.Table == TableInput {
			for _, s := range spans[r.Table] {
				if int(r.Address) < s.end && s.start < end {
					bad("%s: %s registers %d-%d overlap register %q", what, r.Table, r.Address, end-1, s.name)
				}
			}
			spans[r.Table] = append(spans[r.Table], span{r.Name, int(r.Address), end})
		}
		if math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) {
			bad("%s: scale %v is not a finite number", what, r.Scale)
		}
		if math.IsNaN(r.Offset) || math.IsInf(r.Offset, 0) {
			bad("%s: offset %v is not a finite number", what, r.Offset)
		}
		if (r.Min != nil || r.Max != nil) && !r.Writable {
			bad("%s: min and max bound writes; the register is not writable", what)
		}
		if r.Min != nil && math.IsNaN(*r.Min) || r.Max != nil && math.IsNaN(*r.Max) {
			bad("%s: min or max is NaN", what)
		}
		if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
			bad("%s: min %v is greater than max %v", what, *r.Min, *r.Max)
		}
	}
	return errors.Join(errs...)
}

// block is the registers one read request covers.
type block struct {
	table    string
	function FunctionCode
	start    uint16
	quantity uint16
	regs     []*Register
}

// describe names a block and its registers for errors, for example
// "holding registers 100-103 (setpoint, mode)".
func (b *block) describe() string {
	names := make([]string, len(b.regs))
	for i, r := range b.regs {
		names[i] = r.Name
	}
	return fmt.Sprintf("%s registers %d-%d (%s)", b.table, b.start, int(b.start)+int(b.quantity)-1, strings.Join(names, ", "))
}

// plan groups registers into as few read requests as it can: per table, in
// address order, joining registers at most maxGap words apart while a
// request stays within MaxReadRegisters.
func plan(regs []*Register, maxGap uint16) []*block {
	var blocks []*block
	for _, table := range []string{TableHolding, TableInput} {
		var sorted []*Register
		for _, r := range regs {
			if r.Table == table {
				sorted = append(sorted, r)
			}
		}
		slices.SortStableFunc(sorted, func(a, b *Register) int { return cmp.Compare(a.Address, b.Address) })
		var cur *block
		for _, r := range sorted {
			start, end := int(r.Address), int(r.Address)+r.words()
			if cur != nil {
				curEnd := int(cur.start) + int(cur.quantity)
				if start <= curEnd+int(maxGap) && max(end, curEnd)-int(cur.start) <= MaxReadRegisters {
					cur.quantity = uint16(max(end, curEnd) - int(cur.start))
					cur.regs = append(cur.regs, r)
					continue
				}
			}
			fn := FuncReadHoldingRegisters
			if table == TableInput {
				fn = FuncReadInputRegisters
			}
			cur = &block{table: table, function: fn, start: r.Address, quantity: uint16(r.words()), regs: []*Register{r}}
			blocks = append(blocks, cur)
		}
	}
	return blocks
}

// Adapter is a Modbus RTU device as a [hal.Adapter]: Poll reads the
// configured registers, Write sets writable holding registers. It is safe
// for concurrent use.
type Adapter struct {
	client *Client
	unit   uint8
	byName map[string]*Register
	blocks []*block
	stats  counters
}

var _ hal.Adapter = (*Adapter)(nil)

// NewAdapter returns an Adapter for the device cfg describes, talking
// through client (which other Adapters for other units on the same line may
// share). It validates cfg, as [Config.Validate], and plans the poll's
// requests once.
func NewAdapter(client *Client, cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("modbus: new adapter: nil client")
	}
	a := &Adapter{client: client, unit: cfg.UnitID, byName: make(map[string]*Register, len(cfg.Registers))}
	regs := make([]*Register, len(cfg.Registers))
	for i, r := range cfg.Registers {
		if r.Type == "" {
			r.Type = TypeUint16
		}
		if r.WordOrder == "" {
			r.WordOrder = WordOrderBig
		}
		if r.Scale == 0 {
			r.Scale = 1
		}
		if r.Min != nil {
			r.Min = new(*r.Min)
		}
		if r.Max != nil {
			r.Max = new(*r.Max)
		}
		regs[i] = &r
		a.byName[r.Name] = &r
	}
	a.blocks = plan(regs, cfg.MaxGap)
	return a, nil
}

// Poll reads every register, one request per planned block, and returns
// name → float64 (raw*Scale + Offset; integer types too). Values are
// rounded to 15 significant digits, and float32 registers are read through
// their shortest decimal form, so that 0.1 reads as 0.1 and a written value
// reads back as written. A float32 register holding NaN or ±Inf is left out,
// since JSON cannot carry it.
//
// The first request that fails ends the poll: its error names the registers
// of the block, and matches hal.ErrNoResponse if the device did not answer,
// ErrMalformed if its replies were broken, or is an *ExceptionError if it
// refused.
func (a *Adapter) Poll(ctx context.Context) (hal.Readings, error) {
	readings := make(hal.Readings, len(a.byName))
	for _, b := range a.blocks {
		words, err := a.client.readRegisters(ctx, a.unit, b.function, b.start, b.quantity, &a.stats)
		if err != nil {
			return nil, fmt.Errorf("modbus: poll unit %d: %s: %w", a.unit, b.describe(), err)
		}
		for _, r := range b.regs {
			v := decode(r, words[r.Address-b.start:])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				a.client.log.DebugContext(ctx, "modbus: non-finite reading left out", "unit", a.unit, "register", r.Name)
				continue
			}
			readings[r.Name] = v
		}
	}
	return readings, nil
}

// Write sets the named register to value, a number in reading units:
// float64, float32, any Go integer type or json.Number. It is converted
// back to the register's raw value ((value-Offset)/Scale, rounded for
// integer types) and written with function 0x06 (16-bit types) or 0x10
// (32-bit types).
//
// Unknown names match hal.ErrUnknownName; registers that are not writable,
// hal.ErrReadOnly; values that are not numbers, are below Min or above Max,
// or do not fit the register's type, hal.ErrInvalidValue. Errors from the
// device are as for Poll.
func (a *Adapter) Write(ctx context.Context, name string, value any) error {
	r, ok := a.byName[name]
	if !ok {
		return fmt.Errorf("modbus: write %q: %w", name, hal.ErrUnknownName)
	}
	if !r.Writable {
		return fmt.Errorf("modbus: write %q: %s register %d is not writable: %w", name, r.Table, r.Address, hal.ErrReadOnly)
	}
	v, err := toFloat(value)
	if err != nil {
		return fmt.Errorf("modbus: write %q: %w", name, err)
	}
	words, err := encode(r, v)
	if err != nil {
		return fmt.Errorf("modbus: write %q: %w", name, err)
	}
	if len(words) == 1 {
		err = a.client.writeRegister(ctx, a.unit, r.Address, words[0], &a.stats)
	} else {
		err = a.client.writeRegisters(ctx, a.unit, r.Address, words, &a.stats)
	}
	if err != nil {
		return fmt.Errorf("modbus: write %q (unit %d holding register %d): %w", name, a.unit, r.Address, err)
	}
	return nil
}

// Stats returns this adapter's share of its client's counters: the replies
// to its own requests, every attempt counted.
func (a *Adapter) Stats() hal.Stats { return a.stats.stats() }

// decode turns the words of r (words[0] at r.Address) into its reading.
func decode(r *Register, words []uint16) float64 {
	var raw float64
	switch r.Type {
	case TypeUint16:
		raw = float64(words[0])
	case TypeInt16:
		raw = float64(int16(words[0]))
	default:
		hi, lo := words[0], words[1]
		if r.WordOrder == WordOrderLittle {
			hi, lo = lo, hi
		}
		u := uint32(hi)<<16 | uint32(lo)
		switch r.Type {
		case TypeUint32:
			raw = float64(u)
		case TypeInt32:
			raw = float64(int32(u))
		case TypeFloat32:
			f := math.Float32frombits(u)
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return float64(f)
			}
			raw = roundTo(float64(f), -1, 32)
		}
	}
	return roundTo(raw*r.Scale+r.Offset, 15, 64)
}

// roundTo returns x through its decimal form with prec significant digits
// (-1: the shortest that reads back as the same float of bitSize bits).
func roundTo(x float64, prec, bitSize int) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', prec, bitSize), 64)
	if err != nil {
		return x // Cannot happen for a finite x.
	}
	return v
}

// encode turns v, in reading units, into the words to write to r.
func encode(r *Register, v float64) ([]uint16, error) {
	if r.Min != nil && v < *r.Min {
		return nil, fmt.Errorf("%v is below min %v: %w", v, *r.Min, hal.ErrInvalidValue)
	}
	if r.Max != nil && v > *r.Max {
		return nil, fmt.Errorf("%v is above max %v: %w", v, *r.Max, hal.ErrInvalidValue)
	}
	raw := (v - r.Offset) / r.Scale
	outOfRange := func(lo, hi string) error {
		return fmt.Errorf("%v is raw value %v, outside the %s range %s to %s: %w", v, raw, r.Type, lo, hi, hal.ErrInvalidValue)
	}
	var u uint32
	switch r.Type {
	case TypeFloat32:
		if math.IsInf(raw, 0) || math.Abs(raw) > math.MaxFloat32 {
			return nil, outOfRange("-3.4028235e+38", "3.4028235e+38")
		}
		u = math.Float32bits(float32(raw))
	default:
		lo, hi := typeRange(r.Type)
		rounded := math.Round(raw)
		if math.IsNaN(rounded) || rounded < lo || rounded > hi {
			return nil, outOfRange(strconv.FormatFloat(lo, 'f', 0, 64), strconv.FormatFloat(hi, 'f', 0, 64))
		}
		if rounded < 0 {
			u = uint32(int32(rounded))
		} else {
			u = uint32(rounded)
		}
	}
	if r.words() == 1 {
		return []uint16{uint16(u)}, nil
	}
	hi, lo := uint16(u>>16), uint16(u)
	if r.WordOrder == WordOrderLittle {
		return []uint16{lo, hi}, nil
	}
	return []uint16{hi, lo}, nil
}

// typeRange returns the range of an integer register type.
func typeRange(typ string) (lo, hi float64) {
	switch typ {
	case TypeInt16:
		return math.MinInt16, math.MaxInt16
	case TypeUint32:
		return 0, math.MaxUint32
	case TypeInt32:
		return math.MinInt32, math.MaxInt32
	}
	return 0, math.MaxUint16
}

// toFloat returns value as a finite float64, or an error matching
// hal.ErrInvalidValue.
func toFloat(value any) (float64, error) {
	var f float64
	switch v := value.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case int:
		f = float64(v)
	case int8:
		f = float64(v)
	case int16:
		f = float64(v)
	case int32:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint:
		f = float64(v)
	case uint8:
		f = float64(v)
	case uint16:
		f = float64(v)
	case uint32:
		f = float64(v)
	case uint64:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, fmt.Errorf("%q is not a number: %w", v, hal.ErrInvalidValue)
		}
	default:
		return 0, fmt.Errorf("a %T is not a number: %w", value, hal.ErrInvalidValue)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v is not a finite number: %w", f, hal.ErrInvalidValue)
	}
	return f, nil
}
