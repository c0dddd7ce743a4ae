package mqttconn

import "time"

// Backoff bounds reconnect delays.
type Backoff struct {
	// Base is the first delay bound; it doubles per failed attempt.
	Base time.Duration
	// Cap is the largest delay bound.
	Cap time.Duration
	// ResetAfter is how long a session must stay up before the attempt
	// counter goes back to zero, so a broker that accepts and then drops at
	// once does not get hammered.
	ResetAfter time.Duration
}

// Delay returns the wait before reconnect attempt n (0-based) with full
// jitter: a uniformly random duration in [0, min(Cap, Base·2ⁿ)), where r is
// a random number in [0, 1).
func (b Backoff) Delay(n int, r float64) time.Duration {
	bound := b.Cap
	if n < 62 {
		if d := b.Base << n; d > 0 && d < b.Cap {
			bound = d
		}
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	return time.Duration(r * float64(bound))
}

// NextAttempt returns the attempt counter after a session that lasted up
// (zero if it never came up): reset after a long enough session, else one
// more.
func (b Backoff) NextAttempt(n int, up time.Duration) int {
	if up > 0 && up >= b.ResetAfter {
		return 0
	}
	return n + 1
}
