package modbustest

import (
	"io"
	"os"
	"sync"
	"time"
)

// Pipe returns the two ends of an in-memory serial line: bytes written to
// one end are read from the other. Unlike net.Pipe, writes are buffered,
// as by a UART, so a writer never waits for the reader, and a reader can
// discard what it has not read (ResetInputBuffer). Both ends satisfy
// modbus.Port and [Conn]; give one to a Client and serve a Slave on the
// other. It uses only channels and timers, so it works inside a
// testing/synctest bubble.
func Pipe() (a, b *PipeEnd) {
	ab, ba := newLine(), newLine()
	return newPipeEnd(ba, ab), newPipeEnd(ab, ba)
}

// line is one direction of a Pipe.
type line struct {
	// mu guards the following fields.
	mu     sync.Mutex
	data   []byte
	closed bool
	wake   chan struct{} // closed, and replaced, when data arrives or the line closes
}

func newLine() *line { return &line{wake: make(chan struct{})} }

// wakeLocked tells waiting readers that something changed.
func (l *line) wakeLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// PipeEnd is one end of a [Pipe].
type PipeEnd struct {
	rx, tx *line

	// mu guards the following fields.
	mu       sync.Mutex
	timeout  time.Duration
	deadline time.Time
	changed  chan struct{} // closed, and replaced, when the deadline changes
}

func newPipeEnd(rx, tx *line) *PipeEnd {
	return &PipeEnd{rx: rx, tx: tx, changed: make(chan struct{})}
}

// Read reads what the other end wrote. It waits for at least one byte, for
// the read timeout (see SetReadTimeout) or deadline (see SetReadDeadline),
// whichever is first, and then returns os.ErrDeadlineExceeded. It returns
// io.EOF once either end is closed and no bytes are left.
func (p *PipeEnd) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	start := time.Now()
	for {
		p.rx.mu.Lock()
		if len(p.rx.data) > 0 {
			n := copy(b, p.rx.data)
			p.rx.data = p.rx.data[n:]
			p.rx.mu.Unlock()
			return n, nil
		}
		if p.rx.closed {
			p.rx.mu.Unlock()
			return 0, io.EOF
		}
		arrived := p.rx.wake
		p.rx.mu.Unlock()

		p.mu.Lock()
		until := p.deadline
		if p.timeout > 0 && (until.IsZero() || start.Add(p.timeout).Before(until)) {
			until = start.Add(p.timeout)
		}
		changed := p.changed
		p.mu.Unlock()

		var timer *time.Timer
		var expired <-chan time.Time
		if !until.IsZero() {
			d := time.Until(until)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		select {
		case <-arrived:
		case <-changed:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Write sends b to the other end. It never blocks; it fails with
// io.ErrClosedPipe once either end is closed.
func (p *PipeEnd) Write(b []byte) (int, error) {
	p.tx.mu.Lock()
	defer p.tx.mu.Unlock()
	if p.tx.closed {
		return 0, io.ErrClosedPipe
	}
	p.tx.data = append(p.tx.data, b...)
	p.tx.wakeLocked()
	return len(b), nil
}

// SetReadTimeout bounds each later Read to d; zero means no bound.
func (p *PipeEnd) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout = d
	return nil
}

// SetReadDeadline makes Reads, including one waiting now, fail after t;
// the zero time means no deadline.
func (p *PipeEnd) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deadline = t
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// ResetInputBuffer discards the bytes received and not read yet.
func (p *PipeEnd) ResetInputBuffer() error {
	p.rx.mu.Lock()
	defer p.rx.mu.Unlock()
	p.rx.data = nil
	return nil
}

// Close closes both directions of the line: reads at either end return
// io.EOF once drained, writes fail.
func (p *PipeEnd) Close() error {
	for _, l := range []*line{p.rx, p.tx} {
		l.mu.Lock()
		if !l.closed {
			l.closed = true
			l.wakeLocked()
		}
		l.mu.Unlock()
	}
	return nil
}
