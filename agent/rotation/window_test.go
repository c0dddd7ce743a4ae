package rotation

import (
	"testing"
	"time"
)

func TestRenewAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name string
		w    Window
		life time.Duration
		r    float64
		want time.Duration // offset from notBefore
	}{
		{"one year, capped at 30 days, r=0", Window{}, 365 * day, 0, 335 * day},
		{"one year, r=0.5 -> 7.5 days into the window", Window{}, 365 * day, 0.5, 335*day + 7*day + 12*time.Hour},
		{"30 days, last third", Window{}, 30 * day, 0, 20 * day},
		{"30 days, r=0.8 -> 40% into the window", Window{}, 30 * day, 0.8, 24 * day},
		{"1 hour, last third", Window{}, time.Hour, 0, 40 * time.Minute},
		{"custom fraction half, no cap hit", Window{Fraction: 0.5, MaxBefore: 100 * day}, 10 * day, 0, 5 * day},
		{"jitter 0 means the default", Window{Jitter: 0}, 30 * day, 0.7, 20*day + time.Duration(float64(10*day)*0.5*0.7)},
		{"full jitter", Window{Jitter: 1}, 30 * day, 0.5, 25 * day},
		{"r negative clamps to 0", Window{}, 30 * day, -3, 20 * day},
		{"zero lifetime", Window{}, 0, 0.3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.w.RenewAt(t0, t0.Add(tc.life), tc.r)
			if want := t0.Add(tc.want); !got.Equal(want) {
				t.Fatalf("RenewAt = %v, want %v", got, want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour) // window starts at day 60
	build := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		now    time.Time
		build  time.Time
		due    bool
		reason string
	}{
		{"early in life", nb.Add(10 * 24 * time.Hour), build, false, ""},
		{"just before window", nb.Add(60*24*time.Hour - time.Second), build, false, ""},
		{"window start", nb.Add(60 * 24 * time.Hour), build, true, ""},
		{"expired", na.Add(time.Hour), build, true, ""},
		{"clock at 1970", time.Unix(0, 0), build, false, "clock is before the certificate's notBefore: time is untrusted"},
		{"clock before build time but after notBefore", nb.Add(2 * 24 * time.Hour), build, false, "clock is before thingd's build time: time is untrusted"},
		{"clock before build time inside the window", nb.Add(70 * 24 * time.Hour), na.Add(24 * time.Hour), false, "clock is before thingd's build time: time is untrusted"},
		{"no build time", nb.Add(70 * 24 * time.Hour), time.Time{}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Window{}.Decide(nb, na, tc.now, tc.build, 0)
			if d.Due != tc.due || d.Reason != tc.reason {
				t.Fatalf("Decide = %+v, want due=%v reason=%q", d, tc.due, tc.reason)
			}
			if tc.reason == "" && !d.At.Equal(nb.Add(60*24*time.Hour)) {
				t.Fatalf("At = %v", d.At)
			}
		})
	}
}

func TestDeviceJitter(t *testing.T) {
	a := DeviceJitter("gw-1", "01")
	if a != DeviceJitter("gw-1", "01") {
		t.Fatal("not stable")
	}
	if a < 0 || a >= 1 {
		t.Fatalf("out of range: %v", a)
	}
	if a == DeviceJitter("gw-2", "01") {
		t.Fatal("two devices got the same jitter")
	}
}
