package linesensor

import (
	"bytes"
	"testing"

	"github.com/thingd/thingd/hal"
)

// BenchmarkParser feeds typical sensor lines (about 80 bytes, five
// readings) through the parser in 4 KiB chunks, as reads from a port would
// deliver them; the figure is per line.
func BenchmarkParser(b *testing.B) {
	line := []byte(`{"temperature":21.5,"humidity":40.2,"pressure":1013.2,"co2":412,"battery":{"v":3.7}}` + "\n")
	var buf bytes.Buffer
	for buf.Len() < 4096-len(line) {
		buf.Write(line)
	}
	chunk := buf.Bytes()
	perChunk := bytes.Count(chunk, []byte("\n"))
	p := NewParser(DefaultMaxLineBytes)
	good := 0
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%perChunk == 0 {
			p.Feed(chunk, func(r hal.Readings, err error) {
				if err == nil {
					good++
				}
			})
		}
	}
	if good == 0 {
		b.Fatal("no line parsed")
	}
}
