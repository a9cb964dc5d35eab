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
	ln := now.In(o.cfg.Location)
	calendar := []struct {
		limit      int
		start      time.Time
		next       func(time.Time) time.Time
		per, after string // words and the layout of the time it waits for
	}{
		{o.cfg.RatePerMonth, time.Date(ln.Year(), ln.Month(), 1, 0, 0, 0, 0, o.cfg.Location),
			func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }, "month", "2 January 15:04"},
		{o.cfg.RatePerDay, time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, o.cfg.Location),
			func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }, "day", "15:04"},
	}
	if until, reason, err := o.userCapCheck(ctx, calendar[1].start); err != nil || !until.IsZero() {
		return until, reason, err == nil, err
	}
	for _, c := range calendar {
		if c.limit <= 0 {
			continue
		}
		n, err := o.store.sentSince(ctx, c.start)
		if err != nil {
			return until, "", false, err
		}
		if n >= c.limit {
			until = c.next(c.start)
			return until, fmt.Sprintf("the line's limit of %d SMS per %s is reached; it will be sent after %s",
				c.limit, c.per, until.Format(c.after)), true, nil
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

// userCapCheck applies Config.UserRatePerDay: the parts sent since dayStart
// by this line and the lines of the same person.
func (o *outbox) userCapCheck(ctx context.Context, dayStart time.Time) (until time.Time, reason string, err error) {
	if o.cfg.UserRatePerDay <= 0 {
		return until, "", nil
	}
	lines := []string{o.cfg.ID}
	if o.cfg.UserLines != nil {
		lines = append(lines, o.cfg.UserLines()...)
	}
	n, err := o.store.sentSinceOn(ctx, lines, dayStart)
	if err != nil || n < o.cfg.UserRatePerDay {
		return until, "", err
	}
	until = dayStart.AddDate(0, 0, 1)
	return until, fmt.Sprintf("your limit of %d SMS per day across your lines is reached; it will be sent after %s",
		o.cfg.UserRatePerDay, until.Format("15:04")), nil
}
