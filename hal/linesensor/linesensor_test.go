package linesensor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal"
	"github.com/thingd/thingd/hal/linesensor"
)

// chunk is what one fake Read returns: data, or an error.
type chunk struct {
	data []byte
	err  error
}

// fakePort is a Port whose reads the test scripts through send. Reads
// time out after the read timeout with (0, nil), like go.bug.st/serial,
// unless timeoutErr is set.
type fakePort struct {
	reads      chan chunk
	timeoutErr error // returned by a read that times out, if non-nil
	setErr     error // returned by SetReadTimeout, if non-nil

	mu      sync.Mutex
	timeout time.Duration
}

func newFakePort() *fakePort {
	return &fakePort{reads: make(chan chunk)}
}

func (p *fakePort) SetReadTimeout(d time.Duration) error {
	if p.setErr != nil {
		return p.setErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout = d
	return nil
}

func (p *fakePort) Read(b []byte) (int, error) {
	p.mu.Lock()
	d := p.timeout
	p.mu.Unlock()
	if d <= 0 {
		panic("fakePort: Read before SetReadTimeout")
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c := <-p.reads:
		if len(c.data) > len(b) {
			panic("fakePort: chunk larger than the read buffer")
		}
		return copy(b, c.data), c.err
	case <-t.C:
		return 0, p.timeoutErr
	}
}

func (p *fakePort) Write(b []byte) (int, error) { return len(b), nil }

// send makes the next read return s and waits until the adapter has
// handled it. It must run inside a synctest bubble.
func (p *fakePort) send(s string) {
	p.reads <- chunk{data: []byte(s)}
	synctest.Wait()
}

// fail makes the next read fail with err and waits until the adapter has
// handled it. It must run inside a synctest bubble.
func (p *fakePort) fail(err error) {
	p.reads <- chunk{err: err}
	synctest.Wait()
}

// start runs a's Run until the test ends, and checks it returns
// context.Canceled then.
func start(t *testing.T, a *linesensor.Adapter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	})
	synctest.Wait()
}

// pollNow polls and fails the test if Poll blocked.
func pollNow(t *testing.T, a *linesensor.Adapter) (hal.Readings, error) {
	t.Helper()
	start := time.Now()
	r, err := a.Poll(context.Background())
	if d := time.Since(start); d != 0 {
		t.Fatalf("Poll blocked for %v, want an immediate answer", d)
	}
	return r, err
}

func mustPoll(t *testing.T, a *linesensor.Adapter, want hal.Readings) {
	t.Helper()
	got, err := pollNow(t, a)
	if err != nil {
		t.Fatalf("Poll() error: %v; want %v", err, want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Poll() mismatch (-want +got):\n%s", diff)
	}
}

func mustStats(t *testing.T, a *linesensor.Adapter, want hal.Stats) {
	t.Helper()
	if diff := cmp.Diff(want, a.Stats()); diff != "" {
		t.Fatalf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

const stale = 30 * time.Second

func TestPollMergesLinesSincePreviousPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})
		start(t, a)

		p.send("{\"temp\":21.5,\"hum\":40}\n{\"te")
		p.send("mp\":22}\n")
		mustPoll(t, a, hal.Readings{"temp": 22.0, "hum": 40.0})

		p.send("{\"co2\":500}\n")
		mustPoll(t, a, hal.Readings{"co2": 500.0})
		mustStats(t, a, hal.Stats{Frames: 3})
	})
}

// TestPollStaleRule is the gateway's view: a sensor pushing faster than
// the poll interval reports its latest values, one slower than the poll
// interval but faster than Stale stays connected, and one that stopped
// is reported as not responding.
func TestPollStaleRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})
		start(t, a)

		// Pushes every 2 s, polled every 10 s: the latest values each time.
		for i := range 10 {
			time.Sleep(2 * time.Second)
			p.send(fmt.Sprintf("{\"n\":%d}\n", i))
			if i%5 == 4 {
				mustPoll(t, a, hal.Readings{"n": float64(i)})
			}
		}

		// Then silent: the previous readings until Stale has passed.
		time.Sleep(stale - time.Nanosecond)
		mustPoll(t, a, hal.Readings{"n": 9.0})
		time.Sleep(time.Nanosecond)
		r, err := pollNow(t, a)
		if !errors.Is(err, hal.ErrNoResponse) || r != nil {
			t.Fatalf("Poll() after %v of silence = %v, %v; want hal.ErrNoResponse", stale, r, err)
		}
		mustStats(t, a, hal.Stats{Frames: 10, Timeouts: 1})

		// Once stale, Poll answers at once.
		if _, err := pollNow(t, a); !errors.Is(err, hal.ErrNoResponse) {
			t.Fatalf("Poll() = %v, want hal.ErrNoResponse", err)
		}

		// The sensor resumes: readings again.
		p.send("{\"n\":10}\n")
		mustPoll(t, a, hal.Readings{"n": 10.0})
		mustStats(t, a, hal.Stats{Frames: 11, Timeouts: 2})
	})
}

func TestPollWaitsForFirstLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})
		start(t, a)

		go func() {
			time.Sleep(5 * time.Second)
			p.reads <- chunk{data: []byte("{\"a\":1}\n")}
		}()
		begin := time.Now()
		r, err := a.Poll(context.Background())
		if err != nil || time.Since(begin) != 5*time.Second {
			t.Fatalf("Poll() = %v, %v after %v; want readings after 5s", r, err, time.Since(begin))
		}
		if diff := cmp.Diff(hal.Readings{"a": 1.0}, r); diff != "" {
			t.Fatalf("Poll() mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestPollNoFirstLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})

		// Before Run, Poll waits for Stale from New.
		time.Sleep(10 * time.Second)
		begin := time.Now()
		_, err := a.Poll(context.Background())
		if !errors.Is(err, hal.ErrNoResponse) || time.Since(begin) != stale-10*time.Second {
			t.Fatalf("Poll() before Run = %v after %v; want hal.ErrNoResponse after %v", err, time.Since(begin), stale-10*time.Second)
		}

		// Starting Run restarts the wait.
		start(t, a)
		time.Sleep(10 * time.Second)
		begin = time.Now()
		_, err = a.Poll(context.Background())
		if !errors.Is(err, hal.ErrNoResponse) || time.Since(begin) != stale-10*time.Second {
			t.Fatalf("Poll() = %v after %v; want hal.ErrNoResponse after %v", err, time.Since(begin), stale-10*time.Second)
		}
		mustStats(t, a, hal.Stats{Timeouts: 2})
	})
}

func TestPollContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := linesensor.New(newFakePort(), linesensor.Options{Stale: stale})
		start(t, a)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := a.Poll(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Poll() = %v, want context.DeadlineExceeded", err)
		}
		mustStats(t, a, hal.Stats{})
	})
}

func TestGarbageIsCountedAndSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale, MaxLineBytes: 32})
		start(t, a)

		p.send("hello\n\x00\xff\xfe\n[1,2]\n")
		p.send("{\"long\":\"" + "0123456789012345678901234567890123456789")
		p.send("\"}\n{\"a\":1}\r\n\r\n")
		mustPoll(t, a, hal.Readings{"a": 1.0})
		mustStats(t, a, hal.Stats{Frames: 1, Malformed: 4})
	})
}

func TestPortFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})
		start(t, a)

		p.send("{\"a\":1}\n{\"b\":")
		mustPoll(t, a, hal.Readings{"a": 1.0})

		// The port fails mid-line: the partial line is dropped and counted,
		// and Poll reports the failure even though the data is fresh.
		broken := errors.New("device unplugged")
		p.fail(broken)
		_, err := pollNow(t, a)
		if !errors.Is(err, broken) || errors.Is(err, hal.ErrNoResponse) {
			t.Fatalf("Poll() = %v, want the port's error", err)
		}
		mustStats(t, a, hal.Stats{Frames: 1, Malformed: 1})

		// It keeps failing, then reads work again: readings again, and
		// the rest of the dropped line is garbage.
		p.fail(broken)
		p.fail(broken)
		p.send("2}\n{\"a\":3}\n")
		mustPoll(t, a, hal.Readings{"a": 3.0})
		mustStats(t, a, hal.Stats{Frames: 2, Malformed: 2})

		// A read that works without data also clears the failure.
		p.fail(broken)
		time.Sleep(5 * time.Second)
		mustPoll(t, a, hal.Readings{"a": 3.0})
	})
}

// timeoutError is what a port may return for a read timeout.
type timeoutError struct{}

func (timeoutError) Error() string { return "read timed out" }
func (timeoutError) Timeout() bool { return true }

var errCustomTimeout = errors.New("serialport: read timeout")

func TestReadTimeoutErrors(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		isTimeout func(error) bool
	}{
		{name: "(0, nil)"},
		{name: "Timeout() true", err: fmt.Errorf("read /dev/ttyUSB0: %w", timeoutError{})},
		{name: "os.ErrDeadlineExceeded", err: &os.PathError{Op: "read", Path: "/dev/ttyUSB0", Err: os.ErrDeadlineExceeded}},
		{name: "IsTimeout hook", err: errCustomTimeout,
			isTimeout: func(err error) bool { return errors.Is(err, errCustomTimeout) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newFakePort()
				p.timeoutErr = tt.err
				a := linesensor.New(p, linesensor.Options{Stale: stale, IsTimeout: tt.isTimeout})
				start(t, a)
				p.send("{\"a\":")
				time.Sleep(10 * time.Second) // many read timeouts
				p.send("1}\n")
				mustPoll(t, a, hal.Readings{"a": 1.0})
				time.Sleep(10 * time.Second)
				mustPoll(t, a, hal.Readings{"a": 1.0})
				mustStats(t, a, hal.Stats{Frames: 1})
			})
		})
	}
}

func TestPollReturnsCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePort()
		a := linesensor.New(p, linesensor.Options{Stale: stale})
		start(t, a)
		p.send("{\"o\":{\"x\":1},\"l\":[1]}\n")
		want := hal.Readings{"o": map[string]any{"x": 1.0}, "l": []any{1.0}}
		r, err := pollNow(t, a)
		if err != nil {
			t.Fatal(err)
		}
		r["o"].(map[string]any)["x"] = 2.0
		r["l"].([]any)[0] = 2.0
		r["new"] = true
		mustPoll(t, a, want)
	})
}

func TestWriteIsReadOnly(t *testing.T) {
	a := linesensor.New(newFakePort(), linesensor.Options{})
	if err := a.Write(context.Background(), "temp", 1.0); !errors.Is(err, hal.ErrReadOnly) {
		t.Fatalf("Write() = %v, want hal.ErrReadOnly", err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Run("SetReadTimeout fails", func(t *testing.T) {
		p := newFakePort()
		p.setErr = errors.New("not a tty")
		err := linesensor.New(p, linesensor.Options{}).Run(context.Background())
		if !errors.Is(err, p.setErr) {
			t.Fatalf("Run() = %v, want %v", err, p.setErr)
		}
	})
	t.Run("twice", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := linesensor.New(newFakePort(), linesensor.Options{})
			start(t, a)
			if err := a.Run(context.Background()); err == nil {
				t.Fatal("second Run() = nil, want an error")
			}
		})
	})
	t.Run("cancelled mid-line", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newFakePort()
			a := linesensor.New(p, linesensor.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			p.send("{\"a\":")
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run() = %v, want context.Canceled", err)
			}
			mustStats(t, a, hal.Stats{Malformed: 1})
		})
	})
}
