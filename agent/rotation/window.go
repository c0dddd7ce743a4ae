package rotation

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Window is the renewal policy: when, inside a certificate's lifetime,
// thingd renews it by itself if no rotation job has come.
type Window struct {
	// Fraction of the lifetime at its end that is the renewal window
	// (default 1/3).
	Fraction float64
	// MaxBefore caps the window: it starts at most this long before notAfter
	// (default 30 days).
	MaxBefore time.Duration
	// Jitter is the share of the window over which devices spread their
	// renewal start, in (0, 1] (default 0.5: every device renews with at
	// least half of the window left).
	Jitter float64
}

// Defaults for Window.
const (
	DefaultFraction  = 1.0 / 3
	DefaultMaxBefore = 30 * 24 * time.Hour
	DefaultJitter    = 0.5
)

// withDefaults fills zero fields.
func (w Window) withDefaults() Window {
	if w.Fraction <= 0 || w.Fraction > 1 {
		w.Fraction = DefaultFraction
	}
	if w.MaxBefore <= 0 {
		w.MaxBefore = DefaultMaxBefore
	}
	if w.Jitter <= 0 || w.Jitter > 1 {
		w.Jitter = DefaultJitter
	}
	return w
}

// RenewAt is when a certificate valid from notBefore to notAfter is due for
// renewal: the window is the last Fraction of the lifetime, at most
// MaxBefore long, and r in [0, 1) places this device within the first
// Jitter of it. It is a pure function: same inputs, same answer.
func (w Window) RenewAt(notBefore, notAfter time.Time, r float64) time.Time {
	w = w.withDefaults()
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	win := time.Duration(float64(life) * w.Fraction)
	if win > w.MaxBefore {
		win = w.MaxBefore
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	start := notAfter.Add(-win)
	return start.Add(time.Duration(float64(win) * w.Jitter * r))
}

// Decision is what the renewal check concluded.
type Decision struct {
	// Due is true when thingd should renew now.
	Due bool
	// At is the renewal time of the certificate (zero if time is untrusted).
	At time.Time
	// Reason explains a false Due when it is not simply "not yet".
	Reason string
}

// Decide says whether a certificate valid from notBefore to notAfter must be
// renewed at now. Untrusted time (now before notBefore or before buildTime)
// never makes a renewal due: a clock reset to 1970 or set years ahead must
// not start a rotation.
func (w Window) Decide(notBefore, notAfter, now, buildTime time.Time, r float64) Decision {
	if now.Before(notBefore) {
		return Decision{Reason: "clock is before the certificate's notBefore: time is untrusted"}
	}
	if !buildTime.IsZero() && now.Before(buildTime) {
		return Decision{Reason: "clock is before thingd's build time: time is untrusted"}
	}
	at := w.RenewAt(notBefore, notAfter, r)
	return Decision{Due: !now.Before(at), At: at}
}

// DeviceJitter is a stable per-device number in [0, 1) derived from the
// thing name and certificate serial, so a fleet issued the same day spreads
// its renewals and a device keeps its place across restarts.
func DeviceJitter(thingName, serial string) float64 {
	sum := sha256.Sum256([]byte(thingName + "\x00" + serial))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}
