package serialport

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		b    Backoff
		n    int
		r    float64
		want time.Duration
	}{
		{Backoff{}, 0, 0, 100 * ms},         // default Min 200ms: [100ms, 200ms)
		{Backoff{}, 0, 0.5, 150 * ms},       //
		{Backoff{}, 1, 0, 200 * ms},         // bound 400ms
		{Backoff{}, 7, 0, 12800 * ms},       // bound 25.6s
		{Backoff{}, 8, 0, 15 * time.Second}, // bound capped at the default 30s
		{Backoff{}, 8, 0.999999, 29999985 * time.Microsecond},
		{Backoff{}, 1000, 0.5, 22500 * ms}, // no overflow
		{Backoff{}, -3, 0, 100 * ms},       // negative n is the first attempt
		{Backoff{}, 0, -1, 100 * ms},       // r clamped
		{Backoff{}, 0, 7, 199999900 * time.Nanosecond},
		{Backoff{Min: 10 * ms, Max: 100 * ms}, 3, 0.5, 60 * ms},           // bound 80ms
		{Backoff{Min: 10 * ms, Max: 100 * ms}, 4, 0.5, 75 * ms},           // bound capped at 100ms
		{Backoff{Min: time.Second, Max: 10 * ms}, 5, 0, 500 * ms},         // Max below Min means Min
		{Backoff{Min: time.Hour, Max: 1<<63 - 1}, 62, 0, (1<<63 - 1) / 2}, // doubling stops before overflow
	}
	for _, tt := range tests {
		if got := tt.b.Delay(tt.n, tt.r); got != tt.want {
			t.Errorf("%+v.Delay(%d, %v) = %v, want %v", tt.b, tt.n, tt.r, got, tt.want)
		}
	}
	// Every delay lies in [bound/2, bound) and never exceeds Max.
	b := Backoff{Min: 7 * time.Millisecond, Max: 3 * time.Second}
	for n := 0; n < 70; n++ {
		for _, r := range []float64{0, 0.25, 0.5, 0.75, 0.999999} {
			d := b.Delay(n, r)
			if d < b.Min/2 || d >= b.Max {
				t.Errorf("%+v.Delay(%d, %v) = %v, out of [Min/2, Max)", b, n, r, d)
			}
			if n > 0 && d < b.Delay(n-1, r) {
				t.Errorf("%+v.Delay(%d, %v) = %v < Delay(%d) = %v", b, n, r, d, n-1, b.Delay(n-1, r))
			}
		}
	}
}

func TestBackoffAfterUp(t *testing.T) {
	tests := []struct {
		b    Backoff
		n    int
		up   time.Duration
		want int
	}{
		{Backoff{}, 5, 29 * time.Second, 5}, // dropped out soon after opening
		{Backoff{}, 5, 30 * time.Second, 0}, // stayed up as long as the default Max
		{Backoff{}, 0, time.Hour, 0},
		{Backoff{Min: time.Second, Max: time.Minute}, 3, 59 * time.Second, 3},
		{Backoff{Min: time.Second, Max: time.Minute}, 3, time.Minute, 0},
	}
	for _, tt := range tests {
		if got := tt.b.afterUp(tt.n, tt.up); got != tt.want {
			t.Errorf("%+v.afterUp(%d, %v) = %d, want %d", tt.b, tt.n, tt.up, got, tt.want)
		}
	}
}
