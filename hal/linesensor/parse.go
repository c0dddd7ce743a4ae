package linesensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/thingd/thingd/hal"
)

// Limits on one line. A line that breaks any of them is malformed.
const (
	// DefaultMaxLineBytes is the longest line accepted when no other
	// limit is set, not counting its "\n" or "\r\n" terminator.
	DefaultMaxLineBytes = 4096
	// MaxDepth is how deeply objects and arrays may nest in a line; the
	// line's own object is depth 1, so {"a":{"b":1}} has depth 2. With the
	// readings placed inside a shadow's "reported" section it keeps the
	// document within AWS IoT's nesting limit (5 levels inside reported in
	// the older quota table, 6 in today's error text).
	MaxDepth = 4
	// MaxKeys is the most object members a line may have, counted over
	// all nesting levels.
	MaxKeys = 64
	// MaxKeyBytes is the longest member name accepted, in bytes. Empty
	// names are malformed too.
	MaxKeyBytes = 64
)

// ErrMalformed is matched by every error [ParseLine] and [Parser] report
// for a line they skipped.
var ErrMalformed = errors.New("linesensor: malformed line")

// ParseLine decodes one line, without its terminator, into readings.
//
// The line must be valid UTF-8 holding exactly one JSON object
// (surrounding whitespace allowed) within [MaxDepth], [MaxKeys] and
// [MaxKeyBytes]. Numbers decode as float64, so integers beyond 2^53 lose
// precision; a number that does not fit a float64 makes the line
// malformed. Strings, bools, arrays and nested
// objects decode as encoding/json decodes them into an any. Members whose
// value is null are dropped (the sensor has no value for them; in a shadow
// update null would delete the field), but null inside an array makes the
// line malformed (AWS IoT rejects such arrays). If a member name repeats,
// the last value wins.
//
// The returned map is new and owned by the caller. Every error matches
// [ErrMalformed]. ParseLine does not check the line length: [Parser] does.
func ParseLine(line []byte) (hal.Readings, error) {
	if !utf8.Valid(line) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	trimmed := bytes.TrimLeft(line, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		// Checked before decoding so that garbage costs no allocation.
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var v any
	if err := json.Unmarshal(line, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	keys := 0
	if err := checkValue(obj, 1, &keys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return hal.Readings(obj), nil
}

// checkValue enforces the depth, key and null rules on v, found at depth,
// dropping null members from objects. keys counts members seen so far.
func checkValue(v any, depth int, keys *int) error {
	switch v := v.(type) {
	case map[string]any:
		if depth > MaxDepth {
			return fmt.Errorf("nested deeper than %d levels", MaxDepth)
		}
		*keys += len(v)
		if *keys > MaxKeys {
			return fmt.Errorf("more than %d keys", MaxKeys)
		}
		for k, e := range v {
			if len(k) == 0 || len(k) > MaxKeyBytes {
				return fmt.Errorf("key of %d bytes, want 1 to %d", len(k), MaxKeyBytes)
			}
			if e == nil {
				delete(v, k)
				continue
			}
			if err := checkValue(e, depth+1, keys); err != nil {
				return err
			}
		}
	case []any:
		if depth > MaxDepth {
			return fmt.Errorf("nested deeper than %d levels", MaxDepth)
		}
		for _, e := range v {
			if e == nil {
				return errors.New("null in an array")
			}
			if err := checkValue(e, depth+1, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// Parser splits a byte stream into lines and decodes each with
// [ParseLine]. Lines end in "\n"; a "\r" just before it is dropped, so
// "\r\n" works too. Lines holding only spaces, tabs and "\r" are ignored.
// A line longer than the limit is reported as malformed as soon as it
// passes the limit, and the rest of it, up to the next "\n", is skipped
// without being buffered.
//
// A Parser is pure (no I/O, no clock) and not safe for concurrent use.
// The zero value is not usable; call [NewParser].
type Parser struct {
	max      int    // longest line, terminator excluded
	buf      []byte // the current, unterminated line
	skipping bool   // the current line passed max and was reported
}

// NewParser returns a Parser accepting lines of up to maxLineBytes bytes,
// not counting the terminator. A maxLineBytes ≤ 0 means
// [DefaultMaxLineBytes].
func NewParser(maxLineBytes int) *Parser {
	if maxLineBytes <= 0 {
		maxLineBytes = DefaultMaxLineBytes
	}
	return &Parser{max: maxLineBytes}
}

// Feed consumes data and calls line once for every complete line that is
// not blank, in order: with the readings for a good line, or with nil and
// an error matching [ErrMalformed] for a malformed one (reported when its
// "\n" arrives, or for an over-long line as soon as it passes the limit).
// An unterminated tail is kept for the next Feed. Feed does not retain
// data or the readings after it returns.
func (p *Parser) Feed(data []byte, line func(hal.Readings, error)) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		chunk := data
		if i >= 0 {
			chunk = data[:i]
			data = data[i+1:]
		} else {
			data = nil
		}
		if !p.skipping {
			// Up to max+1 bytes may be buffered: the extra one is a "\r"
			// that the terminator may still turn into "\r\n".
			if len(p.buf)+len(chunk) > p.max+1 {
				p.skipping = true
				p.buf = p.buf[:0]
				line(nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, p.max))
			} else {
				p.buf = append(p.buf, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if p.skipping {
			p.skipping = false
			continue
		}
		l := bytes.TrimSuffix(p.buf, []byte{'\r'})
		p.buf = p.buf[:0]
		switch {
		case len(l) > p.max:
			line(nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, p.max))
		case isBlank(l):
		default:
			line(ParseLine(l))
		}
	}
}

// Reset drops an unterminated line, as when the port goes away
// mid-line. It returns an error matching [ErrMalformed] if that line was
// not blank and not already reported as too long, and nil otherwise.
func (p *Parser) Reset() error {
	partial := !p.skipping && !isBlank(p.buf)
	p.buf = p.buf[:0]
	p.skipping = false
	if partial {
		return fmt.Errorf("%w: partial line dropped", ErrMalformed)
	}
	return nil
}

// isBlank reports whether b holds only spaces, tabs and carriage returns.
func isBlank(b []byte) bool {
	return len(bytes.Trim(b, " \t\r")) == 0
}
