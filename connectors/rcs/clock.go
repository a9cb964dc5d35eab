package rcs

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Clock is the time source of providers and of the webhook worker. Tests
// inject one that records waits instead of sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or returns ctx.Err() as soon as ctx is done.
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real [Clock].
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d unless ctx is done first.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RetryPolicy says how often and how long a provider call is retried after
// a temporary failure (HTTP 408/429/5xx or a network error). The zero value
// means the defaults given on each field.
type RetryPolicy struct {
	// Attempts is the total number of tries, including the first. Default 4.
	Attempts int
	// Base is the first backoff. Default 500ms. Each further retry doubles
	// it, up to Max.
	Base time.Duration
	// Max caps one backoff. Default 30s.
	Max time.Duration
	// MaxRetryAfter is the longest Retry-After the provider waits out
	// itself. A longer one ends the call at once with an [ErrTemporary]
	// error carrying RetryAfter, so the router can reschedule instead of
	// holding a goroutine. Default 2m.
	MaxRetryAfter time.Duration
	// Jitter returns a random duration in [0, n]; default math/rand/v2.
	// Tests may make it deterministic.
	Jitter func(n time.Duration) time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 4
	}
	if p.Base <= 0 {
		p.Base = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 2 * time.Minute
	}
	if p.Jitter == nil {
		p.Jitter = func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return rand.N(n + 1)
		}
	}
	return p
}

// backoff returns the wait before retry number retry (1 for the first
// retry): "equal jitter", half fixed and half random, of Base*2^(retry-1)
// capped at Max.
func (p RetryPolicy) backoff(retry int) time.Duration {
	d := p.Base
	for i := 1; i < retry && d < p.Max; i++ {
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	return d/2 + p.Jitter(d/2)
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
