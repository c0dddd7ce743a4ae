package timers

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSet(t *testing.T) {
	s := New(nil)
	var fired, replaced, stopped atomic.Int32
	done := make(chan struct{})
	s.Arm("a", time.Now().Add(-time.Second), func() { fired.Add(1); close(done) }) // overdue: at once
	s.Arm("b", time.Now().Add(time.Hour), func() { replaced.Add(1) })
	s.Arm("b", time.Now().Add(time.Hour), func() { replaced.Add(1) })
	s.Arm("c", time.Now().Add(10*time.Millisecond), func() { stopped.Add(1) })
	s.Stop("c")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("overdue timer did not fire")
	}
	time.Sleep(30 * time.Millisecond)
	if n := s.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (b)", n)
	}
	s.Close()
	s.Arm("d", time.Now(), func() { t.Error("timer armed after Close fired") })
	time.Sleep(20 * time.Millisecond)
	if fired.Load() != 1 || replaced.Load() != 0 || stopped.Load() != 0 {
		t.Errorf("fired %d, replaced %d, stopped %d; want 1, 0, 0", fired.Load(), replaced.Load(), stopped.Load())
	}
}

// Close waits for a callback that is running.
func TestCloseWaits(t *testing.T) {
	s := New(nil)
	started, finished := make(chan struct{}), atomic.Bool{}
	s.Arm("slow", time.Now(), func() {
		close(started)
		time.Sleep(50 * time.Millisecond)
		finished.Store(true)
	})
	<-started
	s.Close()
	if !finished.Load() {
		t.Error("Close returned before the running callback finished")
	}
}
