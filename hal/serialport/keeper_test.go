package serialport

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stateEvent is one OnState call.
type stateEvent struct {
	up  bool
	err error
}

// stateRecorder collects OnState calls.
type stateRecorder chan stateEvent

func (r stateRecorder) onState(up bool, err error) { r <- stateEvent{up, err} }

// next returns the next state change, failing the test if none comes.
func (r stateRecorder) next(t *testing.T, wantUp bool, wantKind error) stateEvent {
	t.Helper()
	select {
	case ev := <-r:
		if ev.up != wantUp {
			t.Fatalf("OnState(%v, %v), want up = %v", ev.up, ev.err, wantUp)
		}
		if wantKind == nil && ev.err != nil || wantKind != nil && !errors.Is(ev.err, wantKind) {
			t.Fatalf("OnState(%v, %v), want an error matching %v", ev.up, ev.err, wantKind)
		}
		return ev
	case <-time.After(patience):
		t.Fatalf("no OnState(%v, ...) within %v", wantUp, patience)
		return stateEvent{}
	}
}

// startKeeper runs k until the test ends and returns a function that stops
// it and returns Run's error.
func startKeeper(t *testing.T, k *Keeper) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestKeeperReplug unplugs a device under a Keeper and plugs a new one in:
// once by path, through a symbolic link (a pseudo-terminal's own path
// cannot be recreated), once by USB id, through a fake enumerator.
func TestKeeperReplug(t *testing.T) {
	for _, mode := range []string{"path", "usb"} {
		t.Run(mode, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "ttyTEST")
			bus := &fakeBus{}
			cfg := Config{Path: link, ReadTimeout: patience}
			if mode == "usb" {
				cfg = Config{USB: "0403:6001/A1", ReadTimeout: patience}
			}
			plug := func() *device {
				d := newDevice(t)
				if mode == "usb" {
					bus.set(usbPort("/dev/ttyUSB9", "1a86:7523"), usbPort(d.path, "0403:6001/A1"))
				} else if err := os.Symlink(d.path, link); err != nil {
					t.Fatal(err)
				}
				return d
			}
			unplug := func(d *device) {
				d.unplug(t)
				if mode == "usb" {
					bus.set(usbPort("/dev/ttyUSB9", "1a86:7523"))
				} else if err := os.Remove(link); err != nil {
					t.Fatal(err)
				}
			}

			d := plug()
			states := make(stateRecorder, 16)
			k, err := NewKeeper(cfg, KeeperOptions{
				Backoff: Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
				Logger:  testLogger(t),
				OnState: states.onState,
				list:    bus.list,
			})
			if err != nil {
				t.Fatal(err)
			}
			stop := startKeeper(t, k)
			states.next(t, true, nil)
			waitUp(t, k)
			d.closeSlave(t)

			d.send(t, "ping\n")
			readString(t, k, "ping\n")
			if _, err := k.Write([]byte("pong\n")); err != nil {
				t.Fatalf("Write: %v", err)
			}
			d.expect(t, "pong\n")

			// Unplug: the next read finds the device gone.
			unplug(d)
			_, err = k.Read(make([]byte, 8))
			checkKind(t, err, ErrGone)
			if k.Up() {
				t.Error("Up() = true after a read found the device gone")
			}
			states.next(t, false, ErrGone)

			// While down, calls fail at once (Read after its timeout).
			if _, err := k.Write([]byte("x")); !errors.Is(err, ErrGone) {
				t.Errorf("Write while down = %v, want ErrGone", err)
			}
			if err := k.ResetInputBuffer(); !errors.Is(err, ErrGone) {
				t.Errorf("ResetInputBuffer while down = %v, want ErrGone", err)
			}
			if err := k.SetReadTimeout(10 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Read(make([]byte, 8)); !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "device not open") {
				t.Errorf("Read while down = %v, want ErrGone", err)
			}
			if err := k.SetReadTimeout(patience); err != nil {
				t.Fatal(err)
			}

			// A read waiting while the device is away gets data once it is
			// back.
			got := make(chan string, 1)
			go func() {
				buf := make([]byte, 6)
				n, err := k.Read(buf)
				if err != nil {
					got <- err.Error()
					return
				}
				got <- string(buf[:n])
			}()

			d = plug()
			states.next(t, true, nil)
			waitUp(t, k)
			d.closeSlave(t)
			d.send(t, "again\n")
			select {
			case s := <-got:
				if s != "again\n" {
					// A read can return part of the line; the rest follows.
					if !strings.HasPrefix("again\n", s) {
						t.Fatalf("Read after replug = %q, want %q", s, "again\n")
					}
					readString(t, k, strings.TrimPrefix("again\n", s))
				}
			case <-time.After(patience):
				t.Fatal("Read waiting across the replug did not return")
			}
			if _, err := k.Write([]byte("back\n")); err != nil {
				t.Fatalf("Write after replug: %v", err)
			}
			d.expect(t, "back\n")

			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
			states.next(t, false, ErrClosed)
			if _, err := k.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
				t.Errorf("Read after Run returned = %v, want ErrClosed", err)
			}
			if err := k.Wait(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("Wait after Run returned = %v, want ErrClosed", err)
			}
			if err := k.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
				t.Errorf("second Run = %v", err)
			}
			select {
			case ev := <-states:
				t.Errorf("unexpected OnState(%v, %v)", ev.up, ev.err)
			default:
			}
		})
	}
}

func waitUp(t *testing.T, k *Keeper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	if err := k.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	select {
	case <-k.Ready():
	default:
		t.Fatal("Ready() not closed after Wait returned")
	}
	if !k.Up() {
		t.Fatal("Up() = false after Wait returned")
	}
}

// TestKeeperDownFailsFast checks that calls on a Keeper whose device is
// missing do not wait for the (here hour-long) backoff.
func TestKeeperDownFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttyMISSING")
	states := make(stateRecorder, 16)
	k, err := NewKeeper(Config{Path: path, ReadTimeout: 10 * time.Millisecond}, KeeperOptions{
		Backoff: Backoff{Min: time.Hour, Max: time.Hour},
		OnState: states.onState,
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Name() != path {
		t.Errorf("Name() = %q, want %q", k.Name(), path)
	}
	_, err = k.Write([]byte("x"))
	checkKind(t, err, ErrGone)
	if want := "serialport: write " + path + ": device not open yet"; err == nil || err.Error() != want {
		t.Errorf("Write before Run = %v, want %q", err, want)
	}

	stop := startKeeper(t, k)
	states.next(t, false, ErrNotFound)
	start := time.Now()
	_, err = k.Write([]byte("x"))
	if !errors.Is(err, ErrGone) || !errors.Is(err, ErrNotFound) {
		t.Errorf("Write while down = %v, want ErrGone and ErrNotFound", err)
	}
	if want := "serialport: write " + path + ": device not open: open " + path + ": no such device: no such file or directory"; err.Error() != want {
		t.Errorf("Write while down = %q, want %q", err, want)
	}
	if err := k.ResetInputBuffer(); !errors.Is(err, ErrGone) {
		t.Errorf("ResetInputBuffer while down = %v, want ErrGone", err)
	}
	if _, err := k.Read(make([]byte, 1)); !errors.Is(err, ErrGone) {
		t.Errorf("Read while down = %v, want ErrGone", err)
	}
	if elapsed := time.Since(start); elapsed > patience {
		t.Errorf("calls while down took %v", elapsed)
	}
	if k.Up() {
		t.Error("Up() = true")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := k.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait = %v, want DeadlineExceeded with the last error", err)
	}
	for _, bad := range []time.Duration{0, -1} {
		if err := k.SetReadTimeout(bad); err == nil {
			t.Errorf("SetReadTimeout(%v) = nil, want an error", bad)
		}
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	// No OnState for the stop: the port was not open.
	select {
	case ev := <-states:
		t.Errorf("unexpected OnState(%v, %v)", ev.up, ev.err)
	default:
	}
	if _, err := k.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Run returned = %v, want ErrClosed", err)
	}
}

func TestNewKeeperInvalid(t *testing.T) {
	if _, err := NewKeeper(Config{}, KeeperOptions{}); err == nil {
		t.Error("NewKeeper(Config{}) = nil error")
	}
}

// recorder is a slog.Handler that keeps records.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// lines returns "LEVEL message attempt=N retry_in=D" for each record.
func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		s := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "attempt" || a.Key == "retry_in" {
				s += " " + a.String()
			}
			return true
		})
		out = append(out, s)
	}
	return out
}

// TestKeeperRetryLog runs the reopen loop in fake time: it logs the first
// failure and any different one as warnings, the other attempts at debug
// level, and spaces attempts as Backoff.Delay says.
func TestKeeperRetryLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ttyLATER")
		logs := &recorder{}
		var states []stateEvent
		k, err := NewKeeper(Config{Path: path}, KeeperOptions{
			Backoff: Backoff{Min: 100 * time.Millisecond, Max: time.Second},
			Logger:  slog.New(logs),
			OnState: func(up bool, err error) { states = append(states, stateEvent{up, err}) },
			Rand:    func() float64 { return 0.5 },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()

		// Attempts at 0, 75, 225, 525, 1125 ms, then every 750 ms.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// Now something that is not a tty appears: a different failure.
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}

		want := []string{
			"WARN serial port unavailable attempt=1 retry_in=75ms",
			"DEBUG serial port unavailable attempt=2 retry_in=150ms",
			"DEBUG serial port unavailable attempt=3 retry_in=300ms",
			"DEBUG serial port unavailable attempt=4 retry_in=600ms",
			"DEBUG serial port unavailable attempt=5 retry_in=750ms",
			"DEBUG serial port unavailable attempt=6 retry_in=750ms", // at 1875ms
			"WARN serial port unavailable attempt=7 retry_in=750ms",  // at 2625ms: not a tty
			"DEBUG serial port unavailable attempt=8 retry_in=750ms", // at 3375ms
		}
		if diff := cmp.Diff(want, logs.lines()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
		if len(states) != 1 || states[0].up || !errors.Is(states[0].err, ErrNotFound) {
			t.Errorf("OnState calls = %v, want one (false, ErrNotFound)", states)
		}
	})
}
