package fallback

import (
	"fmt"
	"time"
)

// RetryPolicy says how often and how patiently a route is retried after a
// temporary error. The zero value means the defaults below.
type RetryPolicy struct {
	// Attempts is how many times a route is tried for one message before the
	// Router moves down the ladder; 1 means no retry. Default 3.
	Attempts int
	// Initial is the delay before the first retry. Default 2 s.
	Initial time.Duration
	// Max caps the delay between attempts. Default 1 min.
	Max time.Duration
	// Multiplier grows the delay after each retry. Default 2.
	Multiplier float64
	// Jitter spreads each delay uniformly within ±Jitter of itself (0.2 =
	// ±20 %), so that many messages failing together do not retry together.
	// Default 0.2; negative means none. At most 1.
	Jitter float64
	// JitterDown, when true, spreads each delay only downward, within
	// [(1-Jitter)·d, d), so Max stays a hard cap: with Jitter 0.5 this is
	// "equal jitter", half fixed and half random (the RCS providers' policy).
	JitterDown bool
}

// Defaults of RetryPolicy.
const (
	DefaultAttempts   = 3
	DefaultInitial    = 2 * time.Second
	DefaultMaxDelay   = time.Minute
	DefaultMultiplier = 2.0
	DefaultJitter     = 0.2
)

// withDefaults fills in zero fields.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts == 0 {
		p.Attempts = DefaultAttempts
	}
	if p.Initial == 0 {
		p.Initial = DefaultInitial
	}
	if p.Max == 0 {
		p.Max = DefaultMaxDelay
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	if p.Jitter == 0 {
		p.Jitter = DefaultJitter
	}
	return p
}

// validate reports a policy that cannot work, naming the field.
func (p RetryPolicy) validate() error {
	switch {
	case p.Attempts < 1:
		return fmt.Errorf("retry attempts %d: must be at least 1 (1 = no retry)", p.Attempts)
	case p.Initial < 0:
		return fmt.Errorf("retry initial delay %s: must not be negative", p.Initial)
	case p.Max < p.Initial:
		return fmt.Errorf("retry max delay %s: must not be shorter than the initial delay %s", p.Max, p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("retry multiplier %g: must be at least 1", p.Multiplier)
	case p.Jitter > 1:
		return fmt.Errorf("retry jitter %g: must be between 0 and 1", p.Jitter)
	}
	return nil
}

// Delay returns the wait before retry number n (1 = the first retry), with
// jitter taken from u, a uniform number in [0, 1). Zero fields take their
// defaults.
func (p RetryPolicy) Delay(n int, u float64) time.Duration {
	p = p.withDefaults()
	d := float64(p.Initial)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(p.Max))
	switch {
	case p.Jitter > 0 && p.JitterDown:
		d *= 1 - p.Jitter + p.Jitter*u
	case p.Jitter > 0:
		d *= 1 - p.Jitter + 2*p.Jitter*u
	}
	return time.Duration(d)
}
