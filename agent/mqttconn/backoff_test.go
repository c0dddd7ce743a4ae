package mqttconn

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	b := Backoff{Base: time.Second, Cap: 120 * time.Second, ResetAfter: 20 * time.Second}
	cases := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0, 0},
		{0, 0.5, 500 * time.Millisecond},
		{1, 0.5, time.Second},
		{3, 0.999999, 7999992 * time.Microsecond},
		{6, 0.5, 32 * time.Second},
		{7, 0.5, 60 * time.Second}, // 128 s bound capped at 120
		{7, 0.999999, 119999880 * time.Microsecond},
		{100, 0.5, 60 * time.Second}, // no overflow
		{2, 1.5, 3999996 * time.Microsecond},
	}
	for _, c := range cases {
		if got := b.Delay(c.n, c.r); got != c.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", c.n, c.r, got, c.want)
		}
	}
}

func TestNextAttempt(t *testing.T) {
	b := Backoff{Base: time.Second, Cap: time.Minute, ResetAfter: 20 * time.Second}
	cases := []struct {
		n    int
		up   time.Duration
		want int
	}{
		{0, 0, 1},                // connect failed
		{3, 5 * time.Second, 4},  // dropped soon after connecting
		{3, 20 * time.Second, 0}, // stayed up long enough
		{9, time.Hour, 0},
	}
	for _, c := range cases {
		if got := b.NextAttempt(c.n, c.up); got != c.want {
			t.Errorf("NextAttempt(%d, %v) = %d, want %d", c.n, c.up, got, c.want)
		}
	}
}
