package serialport

import "time"

// Default backoff bounds, used for zero [Backoff] fields.
const (
	DefaultBackoffMin = 200 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
)

// Backoff bounds the delays between attempts to reopen a port. The zero
// value means DefaultBackoffMin and DefaultBackoffMax.
type Backoff struct {
	// Min is the bound of the first delay; it doubles per failed attempt.
	// Zero or less means DefaultBackoffMin.
	Min time.Duration
	// Max caps the bound. A port that stayed open at least this long
	// starts again from Min when it goes away. Zero or less means
	// DefaultBackoffMax; less than Min means Min.
	Max time.Duration
}

// Delay returns the wait before reopen attempt n (0-based): with bound
// b = min(Max, Min·2ⁿ), a duration in [b/2, b) chosen by r, a random number
// in [0, 1) (values outside are clamped). Half the bound is fixed so that
// retries never come in a burst; half is jitter, so that gateways that lost
// their devices together (a power dip on a USB hub) do not retry together.
func (b Backoff) Delay(n int, r float64) time.Duration {
	lo, hi := b.bounds()
	bound := lo
	for i := 0; i < n && bound < hi; i++ {
		if bound > hi/2 {
			bound = hi
			break
		}
		bound *= 2
	}
	bound = min(bound, hi)
	r = min(max(r, 0), 0.999999)
	half := bound / 2
	return half + time.Duration(r*float64(bound-half))
}

// afterUp returns the attempt counter to use after a port that stayed open
// for up went away: zero if it stayed open at least Max, else n unchanged,
// so a device that keeps dropping out right after each open is retried
// ever more slowly instead of every Min.
func (b Backoff) afterUp(n int, up time.Duration) int {
	if _, hi := b.bounds(); up >= hi {
		return 0
	}
	return n
}

// bounds returns Min and Max with their defaults applied.
func (b Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi <= 0 {
		hi = DefaultBackoffMax
	}
	return lo, max(hi, lo)
}
