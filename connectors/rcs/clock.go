package rcs

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bubbled/bubbled/fallback"
)

// RetryPolicy says how often and how long a provider call (or the webhook
// worker's hand-over) is retried after a temporary failure (HTTP 408/429/5xx
// or a network error). It is bubbled's one [fallback.RetryPolicy] plus what
// only RCS needs. The zero value means the defaults given on each field.
type RetryPolicy struct {
	// Policy times the retries. Zero fields take the RCS defaults, not
	// fallback's: Attempts 4 (the total number of tries, including the
	// first), Initial 500ms doubling up to Max 30s, and "equal jitter"
	// (Jitter 0.5 downward: each wait is half fixed, half random), so Max
	// stays a hard cap.
	Policy fallback.RetryPolicy
	// MaxRetryAfter is the longest Retry-After the provider waits out
	// itself. A longer one ends the call at once with an [ErrTemporary]
	// error carrying RetryAfter, so the router can reschedule instead of
	// holding a goroutine. Default 2m.
	MaxRetryAfter time.Duration
	// Random returns uniform numbers in [0, 1) for the jitter; default
	// math/rand/v2's Float64. Tests may make it deterministic.
	Random func() float64
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Policy.Attempts <= 0 {
		p.Policy.Attempts = 4
	}
	if p.Policy.Initial <= 0 {
		p.Policy.Initial = 500 * time.Millisecond
	}
	if p.Policy.Max <= 0 {
		p.Policy.Max = 30 * time.Second
	}
	if p.Policy.Jitter == 0 {
		p.Policy.Jitter, p.Policy.JitterDown = 0.5, true
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 2 * time.Minute
	}
	if p.Random == nil {
		p.Random = rand.Float64
	}
	return p
}

// backoff returns the wait before retry number retry (1 for the first
// retry).
func (p RetryPolicy) backoff(retry int) time.Duration {
	return p.Policy.Delay(retry, p.Random())
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3), relative to now. It returns 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > 86400 {
			secs = 86400
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
