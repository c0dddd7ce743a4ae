package linesensor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/linesensor"
)

// nested returns an object nested depth levels deep: {"k":{"k":...1}}.
func nested(depth int) string {
	return strings.Repeat(`{"k":`, depth-1) + `{"k":1}` + strings.Repeat("}", depth-1)
}

// manyKeys returns an object with n members k0..k(n-1).
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want hal.Readings // nil: malformed
	}{
		{"simple", `{"temp":21.5,"hum":40}`, hal.Readings{"temp": 21.5, "hum": 40.0}},
		{"spaces around", " \t{\"a\":1}\r ", hal.Readings{"a": 1.0}},
		{"empty object", `{}`, hal.Readings{}},
		{"integers are float64", `{"n":12345678901}`, hal.Readings{"n": 12345678901.0}},
		{"types", `{"s":"x","b":true,"a":[1,"y",false],"o":{"p":2}}`,
			hal.Readings{"s": "x", "b": true, "a": []any{1.0, "y", false}, "o": map[string]any{"p": 2.0}}},
		{"null member dropped", `{"temp":null,"hum":40}`, hal.Readings{"hum": 40.0}},
		{"nested null dropped", `{"o":{"a":null,"b":1}}`, hal.Readings{"o": map[string]any{"b": 1.0}}},
		{"depth limit", nested(linesensor.MaxDepth), func() hal.Readings {
			var r hal.Readings
			if err := json.Unmarshal([]byte(nested(linesensor.MaxDepth)), &r); err != nil {
				panic(err)
			}
			return r
		}()},
		{"key limit", manyKeys(linesensor.MaxKeys), func() hal.Readings {
			r := hal.Readings{}
			for i := range linesensor.MaxKeys {
				r[fmt.Sprintf("k%d", i)] = float64(i)
			}
			return r
		}()},
		{"key length limit", `{"` + strings.Repeat("k", linesensor.MaxKeyBytes) + `":1}`,
			hal.Readings{strings.Repeat("k", linesensor.MaxKeyBytes): 1.0}},
		{"duplicate key: last wins", `{"a":1,"a":2}`, hal.Readings{"a": 2.0}},
		{"unicode", `{"température":"21 °C"}`, hal.Readings{"température": "21 °C"}},

		{"too deep", nested(linesensor.MaxDepth + 1), nil},
		{"too deep in array", `{"a":[[[[1]]]]}`, nil},
		{"too many keys", manyKeys(linesensor.MaxKeys + 1), nil},
		{"too many nested keys", `{"o":` + manyKeys(linesensor.MaxKeys) + `}`, nil},
		{"key too long", `{"` + strings.Repeat("k", linesensor.MaxKeyBytes+1) + `":1}`, nil},
		{"empty key", `{"":1}`, nil},
		{"null in array", `{"a":[1,null]}`, nil},
		{"garbage", `temp=21.5`, nil},
		{"binary noise", "\x00\xff\xfe\x01{", nil},
		{"invalid UTF-8 in string", "{\"a\":\"\xff\"}", nil},
		{"array", `[1,2]`, nil},
		{"string", `"x"`, nil},
		{"number", `42`, nil},
		{"null", `null`, nil},
		{"truncated", `{"temp":21.`, nil},
		{"trailing data", `{"a":1} x`, nil},
		{"two objects", `{"a":1}{"b":2}`, nil},
		{"number too big", `{"a":1e400}`, nil},
		{"blank", `   `, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := linesensor.ParseLine([]byte(tt.line))
			if tt.want == nil {
				if err == nil || !errors.Is(err, linesensor.ErrMalformed) || got != nil {
					t.Fatalf("ParseLine(%q) = %v, %v; want nil, ErrMalformed", tt.line, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLine(%q) error: %v", tt.line, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLine(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}

// result is one callback from Parser.Feed; Readings nil means malformed.
type result struct {
	Readings hal.Readings
}

// feedAll feeds input to p in chunks of size chunk (all at once if
// chunk ≤ 0) and collects the callbacks.
func feedAll(p *linesensor.Parser, input []byte, chunk int) []result {
	var got []result
	cb := func(r hal.Readings, err error) {
		if (r == nil) == (err == nil) {
			panic(fmt.Sprintf("callback with readings %v and error %v", r, err))
		}
		if err != nil && !errors.Is(err, linesensor.ErrMalformed) {
			panic(fmt.Sprintf("error %v does not match ErrMalformed", err))
		}
		got = append(got, result{r})
	}
	if chunk <= 0 {
		chunk = len(input) + 1
	}
	for len(input) > 0 {
		n := min(chunk, len(input))
		p.Feed(input[:n], cb)
		input = input[n:]
	}
	return got
}

var bad = result{}

func good(r hal.Readings) result { return result{r} }

func TestParser(t *testing.T) {
	tests := []struct {
		name      string
		max       int
		input     string
		want      []result
		wantReset bool // Reset reports a dropped partial line
	}{
		{name: "one line", input: "{\"a\":1}\n", want: []result{good(hal.Readings{"a": 1.0})}},
		{name: "CRLF", input: "{\"a\":1}\r\n{\"b\":2}\r\n",
			want: []result{good(hal.Readings{"a": 1.0}), good(hal.Readings{"b": 2.0})}},
		{name: "empty lines ignored", input: "\n\r\n  \n\t\r\n{\"a\":1}\n\n",
			want: []result{good(hal.Readings{"a": 1.0})}},
		{name: "garbage between good lines", input: "{\"a\":1}\nhello\n{\"b\":2}\n",
			want: []result{good(hal.Readings{"a": 1.0}), bad, good(hal.Readings{"b": 2.0})}},
		{name: "binary noise", input: "\x00\x01\xfe\xff\x7f\n\xc3\x28\n{\"a\":1}\n",
			want: []result{bad, bad, good(hal.Readings{"a": 1.0})}},
		{name: "partial line kept for later", input: "{\"a\":1}\n{\"b\":",
			want: []result{good(hal.Readings{"a": 1.0})}, wantReset: true},
		{name: "blank partial not counted", input: "{\"a\":1}\n  \r",
			want: []result{good(hal.Readings{"a": 1.0})}},
		{name: "oversized then good", max: 16, input: strings.Repeat("x", 100) + "\n{\"a\":1}\n",
			want: []result{bad, good(hal.Readings{"a": 1.0})}},
		{name: "oversized JSON then good", max: 16, input: `{"a":"` + strings.Repeat("y", 100) + "\"}\n{\"b\":2}\n",
			want: []result{bad, good(hal.Readings{"b": 2.0})}},
		{name: "oversized unterminated counted once", max: 16, input: strings.Repeat("x", 100),
			want: []result{bad}},
		{name: "exactly max", max: 7, input: "{\"a\":1}\n", want: []result{good(hal.Readings{"a": 1.0})}},
		{name: "exactly max with CRLF", max: 7, input: "{\"a\":1}\r\n", want: []result{good(hal.Readings{"a": 1.0})}},
		{name: "max plus one", max: 7, input: "{\"a\":1} \n{\"b\":2}\n",
			want: []result{bad, good(hal.Readings{"b": 2.0})}},
		{name: "max plus one blank is still too long", max: 3, input: "     \n", want: []result{bad}},
		{name: "nested and too many keys", input: nested(3) + "\n" + manyKeys(100) + "\n",
			want: []result{good(hal.Readings{"k": map[string]any{"k": map[string]any{"k": 1.0}}}), bad}},
		{name: "default limit", input: `{"a":"` + strings.Repeat("y", linesensor.DefaultMaxLineBytes) + "\"}\n{\"b\":2}\n",
			want: []result{bad, good(hal.Readings{"b": 2.0})}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 3, 7} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				p := linesensor.NewParser(tt.max)
				got := feedAll(p, []byte(tt.input), chunk)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Feed(%q) mismatch (-want +got):\n%s", tt.input, diff)
				}
				err := p.Reset()
				if (err != nil) != tt.wantReset {
					t.Errorf("Reset() = %v, want error: %v", err, tt.wantReset)
				}
				// After Reset the parser starts clean.
				got = feedAll(p, []byte("{}\n"), chunk)
				if diff := cmp.Diff([]result{good(hal.Readings{})}, got); diff != "" {
					t.Errorf("Feed after Reset mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// reference splits input the simple way and says what Parser must report
// for it: one result per terminated non-blank line, one bad result for an
// unterminated tail that is already too long, and whether Reset must
// report the tail.
func reference(input []byte, max int) (want []result, wantReset bool) {
	lines := bytes.Split(input, []byte{'\n'})
	tail := lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		l = bytes.TrimSuffix(l, []byte{'\r'})
		switch {
		case len(l) > max:
			want = append(want, bad)
		case len(bytes.Trim(l, " \t\r")) == 0:
		default:
			r, _ := linesensor.ParseLine(l)
			want = append(want, result{r})
		}
	}
	if len(tail) > max+1 {
		return append(want, bad), false
	}
	return want, len(bytes.Trim(tail, " \t\r")) > 0
}

// depth returns how deeply v nests and how many object members it holds.
func depth(v any) (d, keys int) {
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			ed, ek := depth(e)
			d, keys = max(d, ed), keys+ek
		}
		return d + 1, keys + len(v)
	case []any:
		for _, e := range v {
			ed, ek := depth(e)
			d, keys = max(d, ed), keys+ek
		}
		return d + 1, keys
	}
	return 0, 0
}

// checkGood fails unless line is one a reading may come from.
func checkGood(t *testing.T, line []byte, r hal.Readings) {
	t.Helper()
	if !utf8.Valid(line) || !json.Valid(line) {
		t.Fatalf("readings %v from invalid line %q", r, line)
	}
	if trimmed := bytes.TrimSpace(line); len(trimmed) == 0 || trimmed[0] != '{' {
		t.Fatalf("readings %v from non-object line %q", r, line)
	}
	d, keys := depth(map[string]any(r))
	if d > linesensor.MaxDepth || keys > linesensor.MaxKeys {
		t.Fatalf("readings from line %q nest %d deep with %d keys", line, d, keys)
	}
	for k := range r {
		if len(k) == 0 || len(k) > linesensor.MaxKeyBytes {
			t.Fatalf("readings from line %q have key %q", line, k)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatalf("readings from line %q do not marshal: %v", line, err)
	}
}

func FuzzParser(f *testing.F) {
	seeds := []string{
		"{\"temp\":21.5,\"hum\":40}\n",
		"{\"a\":1}\r\n\r\n{\"b\":[1,2,{\"c\":true}]}\n",
		"garbage\n\x00\xff\n{\"a\":",
		"{\"a\":null,\"b\":[null]}\n",
		nested(5) + "\n" + manyKeys(70) + "\n",
		strings.Repeat("x", 300) + "\n{\"ok\":1}\n",
		"{\"" + strings.Repeat("k", 65) + "\":1}\n",
		"{\"a\":1e999}\n[1]\n\"s\"\nnull\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0), uint8(0))
		f.Add([]byte(s), uint8(20), uint8(3))
	}
	f.Fuzz(func(t *testing.T, input []byte, maxLine, chunk uint8) {
		// maxLine 0 means the default limit; small limits reach the
		// over-long paths with short inputs.
		max := int(maxLine)
		if max == 0 {
			max = linesensor.DefaultMaxLineBytes
		}
		p := linesensor.NewParser(max)
		got := feedAll(p, input, int(chunk))
		gotReset := p.Reset() != nil

		want, wantReset := reference(input, max)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Feed(%q) with max %d, chunk %d mismatch (-want +got):\n%s", input, max, chunk, diff)
		}
		if gotReset != wantReset {
			t.Fatalf("Reset after %q = %v, want %v", input, gotReset, wantReset)
		}
		for _, l := range bytes.Split(input, []byte{'\n'}) {
			l = bytes.TrimSuffix(l, []byte{'\r'})
			if r, err := linesensor.ParseLine(l); err == nil {
				checkGood(t, l, r)
			} else if r != nil {
				t.Fatalf("ParseLine(%q) = %v, %v: readings with an error", l, r, err)
			}
		}
	})
}
