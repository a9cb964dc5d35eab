package sms

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// holdAll records a Held outcome for every queued message not held yet.
func (o *outbox) holdAll(ctx context.Context, q *outQueue, reason string, until time.Time) {
	var fresh []*outMsg
	for _, m := range q.all() {
		if !m.held {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) == 0 {
		return
	}
	if err := o.store.hold(ctx, fresh, reason, until); err != nil {
		o.log.Error("failed to record held SMS", zap.Error(err))
		return
	}
	for _, m := range fresh {
		m.held = true
	}
	o.log.Warn("held SMS back by a pacing cap", zap.Int("messages", len(fresh)), zap.String("reason", reason))
	o.wakeOutcomes()
}

// paceCheck applies the per-minute, per-day and per-month caps to the next
// part. A zero until means it may go now; notice says whether the wait is
// long enough to tell people (day and month caps).
func (o *outbox) paceCheck(ctx context.Context, now time.Time) (until time.Time, reason string, notice bool, err error) {
	loc := o.cfg.Location
	if o.cfg.RatePerMonth > 0 {
		ln := now.In(loc)
		start := time.Date(ln.Year(), ln.Month(), 1, 0, 0, 0, 0, loc)
		n, err := o.store.sentSince(ctx, start)
		if err != nil {
			return until, "", false, err
		}
		if n >= o.cfg.RatePerMonth {
			until = start.AddDate(0, 1, 0)
			return until, fmt.Sprintf("the line's limit of %d SMS per month is reached; it will be sent after %s",
				o.cfg.RatePerMonth, until.Format("2 January 15:04")), true, nil
		}
	}
	if o.cfg.RatePerDay > 0 {
		ln := now.In(loc)
		start := time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
		n, err := o.store.sentSince(ctx, start)
		if err != nil {
			return until, "", false, err
		}
		if n >= o.cfg.RatePerDay {
			until = start.AddDate(0, 0, 1)
			return until, fmt.Sprintf("the line's limit of %d SMS per day is reached; it will be sent after %s",
				o.cfg.RatePerDay, until.Format("15:04")), true, nil
		}
	}
	if o.cfg.RatePerMinute > 0 {
		from := now.Add(-time.Minute)
		n, err := o.store.sentSince(ctx, from)
		if err != nil {
			return until, "", false, err
		}
		if n >= o.cfg.RatePerMinute {
			oldest, err := o.store.oldestSentSince(ctx, from)
			if err != nil {
				return until, "", false, err
			}
			until = oldest.Add(time.Minute + time.Millisecond)
			if !until.After(now) {
				until = now.Add(time.Second)
			}
			return until, fmt.Sprintf("the line's limit of %d SMS per minute is reached", o.cfg.RatePerMinute), false, nil
		}
	}
	return time.Time{}, "", false, nil
}
