package sms

import (
	"context"
	"errors"
	"fmt"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"math/rand/v2"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// Defaults of the outbox settings of Config.
const (
	// DefaultMaxAttempts bounds the tries of a message refused with a
	// temporary +CMS ERROR.
	DefaultMaxAttempts = 6
	// DefaultRetryBase is the first retry delay after a temporary refusal;
	// it doubles per try (with ±20 % jitter) up to DefaultRetryMax.
	DefaultRetryBase = 30 * time.Second
	// DefaultRetryMax caps the retry delay.
	DefaultRetryMax = 15 * time.Minute
	// DefaultLateReplyGrace is how long a timed-out AT+CMGS whose PDU
	// reached the modem may still be answered before its message is
	// declared unknown.
	DefaultLateReplyGrace = 30 * time.Second
)

// outboxKeep is how long finished outbound messages are kept: longer than
// a month, so the monthly cap counts them.
const outboxKeep = 40 * 24 * time.Hour

// Clock is the time source of the outbox (retry backoff, pacing) and the
// watchdog. Tests inject a fake; nil in Config means the real clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// OutMessage is an outbound SMS for Enqueue.
type OutMessage struct {
	// ID identifies the message for idempotency and in outcomes; use the
	// Matrix event ID. Enqueueing an ID again is a no-op.
	ID string
	// To is the recipient: "+E164" or a national number.
	To string
	// Text is the message; long texts are sent as concatenated parts.
	Text string
}

// Enqueue stores msg in the line's durable outbox and returns once it is
// committed to the database (a Queued outcome is recorded with it). It does
// no modem I/O and works before Open: the Line's sender goroutine sends
// queued messages when the modem is ready, resuming after restarts where it
// stopped. The parts are encoded here, once, with their concatenation
// reference, so a resumed message re-sends exactly the same PDUs. An ID
// already enqueued returns nil without queueing anything. Errors: wrapping
// pdu.ErrTooLong (more than Config.MaxParts parts; nothing queued),
// ErrClosed, or a database error. Safe for concurrent use.
func (l *Line) Enqueue(ctx context.Context, msg OutMessage) error {
	if msg.ID == "" || msg.To == "" {
		return errors.New("enqueue SMS: the message needs an ID and a recipient")
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if ok, err := l.store.hasOut(ctx, msg.ID); err != nil {
		return fmt.Errorf("enqueue SMS %s: %w", msg.ID, err)
	} else if ok {
		return nil
	}
	var refErr error
	parts, err := pdu.EncodeSubmit(msg.To, msg.Text, pdu.SubmitOptions{
		StatusReport: l.cfg.StatusReports,
		MaxParts:     l.cfg.MaxParts,
		NextRef: func() uint16 {
			ref, err := l.store.nextRef(ctx)
			if err != nil && refErr == nil {
				refErr = err
			}
			return ref
		},
	})
	if err == nil {
		err = refErr
	}
	if err != nil {
		return fmt.Errorf("encode SMS to %s: %w", maskNumber(msg.To), err)
	}
	m, err := l.store.enqueue(ctx, msg, parts)
	if err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	l.log.Debug("queued SMS", zap.String("id", msg.ID), zap.String("to", maskNumber(msg.To)), zap.Int("parts", len(parts)))
	l.mu.Lock()
	l.enqueued = append(l.enqueued, m)
	l.mu.Unlock()
	select {
	case l.outKick <- struct{}{}:
	default:
	}
	l.wakeOutcomes()
	return nil
}

// QueueLength returns the number of messages in the outbox not sent yet.
func (l *Line) QueueLength(ctx context.Context) (int, error) {
	return l.store.queueLength(ctx)
}

// outQueue is the sender's in-memory view of the queued messages: one FIFO
// per recipient, served round-robin so one long conversation cannot starve
// the others. Owned by the sender goroutine.
type outQueue struct {
	byTo    map[string][]*outMsg
	order   []string // recipients with queued messages, in turn order
	turn    int      // index in order of the next recipient to serve
	current *outMsg  // message with parts sent and parts left: served first
	ids     map[string]bool
}

func newOutQueue() *outQueue {
	return &outQueue{byTo: map[string][]*outMsg{}, ids: map[string]bool{}}
}

func (q *outQueue) add(m *outMsg) {
	if q.ids[m.id] {
		return
	}
	q.ids[m.id] = true
	if len(q.byTo[m.to]) == 0 {
		q.order = append(q.order, m.to)
	}
	q.byTo[m.to] = append(q.byTo[m.to], m)
}

func (q *outQueue) len() int { return len(q.ids) }

// next returns the message to send now, or nil and how long to wait for
// the earliest retry (0: nothing queued).
func (q *outQueue) next(now time.Time) (*outMsg, time.Duration) {
	if c := q.current; c != nil && !c.nextAttempt.After(now) {
		return c, 0
	}
	var wait time.Duration
	for i := range q.order {
		k := (q.turn + i) % len(q.order)
		head := q.byTo[q.order[k]][0]
		if !head.nextAttempt.After(now) {
			q.turn = k + 1
			return head, 0
		}
		if d := head.nextAttempt.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	return nil, wait
}

// done removes a finished message (it is its recipient's head).
func (q *outQueue) done(m *outMsg) {
	if q.current == m {
		q.current = nil
	}
	delete(q.ids, m.id)
	list := q.byTo[m.to]
	for i, x := range list {
		if x == m {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) > 0 {
		q.byTo[m.to] = list
		return
	}
	delete(q.byTo, m.to)
	for i, r := range q.order {
		if r == m.to {
			q.order = append(q.order[:i:i], q.order[i+1:]...)
			if q.turn > i {
				q.turn--
			}
			break
		}
	}
	if len(q.order) > 0 {
		q.turn %= len(q.order)
	} else {
		q.turn = 0
	}
}

// all returns every queued message.
func (q *outQueue) all() []*outMsg {
	var out []*outMsg
	for _, r := range q.order {
		out = append(out, q.byTo[r]...)
	}
	return out
}

// pendingParts sums the parts left to send, bounded by limit.
func (q *outQueue) pendingParts(limit int) int {
	n := 0
	for _, r := range q.order {
		for _, m := range q.byTo[r] {
			n += m.parts
			if n >= limit {
				return n
			}
		}
	}
	return n
}

// sendLoop is the outbox's sender goroutine: the only one that sends queued
// messages, one part at a time, in fair turns between recipients.
func (l *Line) sendLoop(ctx context.Context) {
	defer l.wg.Done()
	q := newOutQueue()
	for {
		msgs, err := l.store.activeOut(ctx)
		if err == nil {
			for _, m := range msgs {
				q.add(m)
			}
			break
		}
		l.log.Error("failed to load the SMS outbox; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-l.after(l.retryMax):
		}
	}
	if n := q.len(); n > 0 {
		l.log.Info("resumed SMS outbox", zap.Int("queued", n))
	}
	for ctx.Err() == nil {
		l.mu.Lock()
		for _, m := range l.enqueued {
			q.add(m)
		}
		l.enqueued = nil
		l.mu.Unlock()

		now := l.clock.Now()
		m, wait := q.next(now)
		if m == nil {
			var timer <-chan time.Time
			if wait > 0 {
				timer = l.clock.After(wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-l.outKick:
			case <-timer:
			}
			continue
		}
		if until, reason, notice, err := l.paceCheck(ctx, now); err != nil {
			l.log.Error("failed to count sent SMS for pacing", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-l.after(l.retryBase):
			}
			continue
		} else if !until.IsZero() {
			if notice {
				l.holdAll(ctx, q, reason, until)
			}
			l.log.Debug("paced SMS outbox", zap.Time("until", until), zap.String("reason", reason))
			select {
			case <-ctx.Done():
				return
			case <-l.clock.After(until.Sub(now)):
			}
			continue
		}
		mod, err := l.waitReady(ctx)
		if err != nil {
			return
		}
		l.sendMessage(ctx, mod, q, m)
	}
}

// holdAll records a Held outcome for every queued message not held yet.
func (l *Line) holdAll(ctx context.Context, q *outQueue, reason string, until time.Time) {
	var fresh []*outMsg
	for _, m := range q.all() {
		if !m.held {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) == 0 {
		return
	}
	if err := l.store.hold(ctx, fresh, reason, until); err != nil {
		l.log.Error("failed to record held SMS", zap.Error(err))
		return
	}
	for _, m := range fresh {
		m.held = true
	}
	l.log.Warn("held SMS back by a pacing cap", zap.Int("messages", len(fresh)), zap.String("reason", reason))
	l.wakeOutcomes()
}

// paceCheck applies the per-minute, per-day and per-month caps to the next
// part. A zero until means it may go now; notice says whether the wait is
// long enough to tell people (day and month caps).
func (l *Line) paceCheck(ctx context.Context, now time.Time) (until time.Time, reason string, notice bool, err error) {
	loc := l.cfg.Location
	if l.cfg.RatePerMonth > 0 {
		ln := now.In(loc)
		start := time.Date(ln.Year(), ln.Month(), 1, 0, 0, 0, 0, loc)
		n, err := l.store.sentSince(ctx, start)
		if err != nil {
			return until, "", false, err
		}
		if n >= l.cfg.RatePerMonth {
			until = start.AddDate(0, 1, 0)
			return until, fmt.Sprintf("the line's limit of %d SMS per month is reached; it will be sent after %s",
				l.cfg.RatePerMonth, until.Format("2 January 15:04")), true, nil
		}
	}
	if l.cfg.RatePerDay > 0 {
		ln := now.In(loc)
		start := time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
		n, err := l.store.sentSince(ctx, start)
		if err != nil {
			return until, "", false, err
		}
		if n >= l.cfg.RatePerDay {
			until = start.AddDate(0, 0, 1)
			return until, fmt.Sprintf("the line's limit of %d SMS per day is reached; it will be sent after %s",
				l.cfg.RatePerDay, until.Format("15:04")), true, nil
		}
	}
	if l.cfg.RatePerMinute > 0 {
		from := now.Add(-time.Minute)
		n, err := l.store.sentSince(ctx, from)
		if err != nil {
			return until, "", false, err
		}
		if n >= l.cfg.RatePerMinute {
			oldest, err := l.store.oldestSentSince(ctx, from)
			if err != nil {
				return until, "", false, err
			}
			until = oldest.Add(time.Minute + time.Millisecond)
			if !until.After(now) {
				until = now.Add(time.Second)
			}
			return until, fmt.Sprintf("the line's limit of %d SMS per minute is reached", l.cfg.RatePerMinute), false, nil
		}
	}
	return time.Time{}, "", false, nil
}

// waitReady waits until the modem is ready and in PDU mode.
func (l *Line) waitReady(ctx context.Context) (*at.Session, error) {
	for {
		l.mu.Lock()
		m, st, sig, pduMode, closed := l.m, l.state, l.stateSig, l.pduMode, l.closed
		l.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		var retry <-chan time.Time
		if st == StateReady && m != nil {
			if pduMode {
				return m, nil
			}
			if err := l.ensurePDU(ctx, m); err == nil {
				return m, nil
			} else if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			retry = l.after(l.retryMax)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sig:
		case <-retry:
		}
	}
}

// sendMessage sends the parts of m not sent yet and records each result.
func (l *Line) sendMessage(ctx context.Context, mod *at.Session, q *outQueue, m *outMsg) {
	parts, err := l.store.outParts(ctx, m.id)
	if err != nil {
		l.log.Error("failed to load SMS parts", zap.String("id", m.id), zap.Error(err))
		m.nextAttempt = l.clock.Now().Add(l.retryBase)
		q.current = nil
		return
	}
	var todo []outPart
	for _, p := range parts {
		if p.state == partPending {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		q.done(m)
		return
	}
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if q.pendingParts(2) > 1 {
		l.keepLinkOpenOnce(ctx, mod)
	}
	for i, p := range todo {
		if ctx.Err() != nil {
			return
		}
		if i > 0 {
			if until, _, _, err := l.paceCheck(ctx, l.clock.Now()); err != nil || !until.IsZero() {
				q.current = m // finish this message first when the cap allows
				return
			}
		}
		info, err := mod.SMSCommand(ctx, "+CMGS="+strconv.Itoa(p.tpduLen), p.pdu, l.cfg.SendTimeout, l.cfg.LateReplyGrace)
		if err == nil {
			mr := parseCMGS(info)
			done, err := l.recordSent(ctx, m, p.seq, mr)
			if err != nil {
				l.log.Error("failed to record a sent SMS part; it will be sent again", zap.String("id", m.id), zap.Int("part", p.seq), zap.Error(err))
				q.current = m
				return
			}
			if done {
				l.log.Info("sent SMS", zap.String("id", m.id), zap.String("to", maskNumber(m.to)), zap.Int("parts", m.parts))
				q.done(m)
				l.wakeOutcomes()
				return
			}
			q.current = m
			continue
		}
		l.partFailed(ctx, q, m, p, err)
		return
	}
}

// recordSent persists a part's MR, retrying a failing database a few times
// (the part WAS sent: giving up here means sending it again).
func (l *Line) recordSent(ctx context.Context, m *outMsg, seq, mr int) (bool, error) {
	var err error
	for i := 0; i < 5; i++ {
		var done bool
		if done, err = l.store.partSent(ctx, m, seq, mr); err == nil {
			return done, nil
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-l.after(l.retryBase):
		}
	}
	return false, err
}

// partFailed decides what a failed part means for its message.
func (l *Line) partFailed(ctx context.Context, q *outQueue, m *outMsg, p outPart, err error) {
	log := l.log.With(zap.String("id", m.id), zap.String("to", maskNumber(m.to)), zap.Int("part", p.seq), zap.Int("parts", m.parts))
	sentBefore := ""
	if p.seq > 1 {
		sentBefore = fmt.Sprintf(" (%d of %d parts were sent before and reach the recipient)", p.seq-1, m.parts)
	}
	var cms *CMSError
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, ErrSendUnknown):
		reason := fmt.Sprintf("the modem did not confirm part %d of %d in time: it may or may not have been sent, so bubbled did not send it again", p.seq, m.parts)
		log.Warn("gave up on an unconfirmed SMS part", zap.Error(err))
		if ferr := l.store.finish(ctx, m, OutcomeUnknown, reason, -1); ferr != nil {
			log.Error("failed to record unknown SMS", zap.Error(ferr))
			q.current = m
			return
		}
		q.done(m)
		l.wakeOutcomes()
		l.requestRecovery(err)
	case errors.Is(err, ErrClosed), errors.Is(err, ErrNotOpen):
		// The port went away; the part is sent again after the reconnect
		// (the at-most-one-duplicate window when it was in flight).
		log.Info("paused SMS outbox: modem port lost", zap.Error(err))
		q.current = m
		if !errors.Is(err, ErrNotOpen) {
			l.waitNotReady(ctx, 2*time.Second)
		}
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrUnresponsive):
		log.Warn("failed to send SMS part: modem not answering; recovering it", zap.Error(err))
		q.current = m
		l.requestRecovery(err)
		l.waitNotReady(ctx, 2*time.Second)
	case errors.As(err, &cms) && !cms.Temporary():
		reason := cmsReason(cms) + sentBefore
		log.Warn("failed to send SMS: refused for good", zap.Error(err))
		if ferr := l.store.finish(ctx, m, OutcomeFailed, reason, cms.Code); ferr != nil {
			log.Error("failed to record failed SMS", zap.Error(ferr))
			q.current = m
			return
		}
		q.done(m)
		l.wakeOutcomes()
	default:
		code := at.CMSCode(err)
		reason := "the modem refused it (" + err.Error() + ")"
		if cms != nil {
			reason = cmsReason(cms)
			if cms.Code == 331 || cms.Code == 332 {
				// No network: let the ladder check the radio before the
				// next try.
				l.requestRecovery(err)
				defer l.waitNotReady(ctx, 2*time.Second)
			}
		}
		m.attempts++
		if m.attempts >= l.cfg.MaxAttempts {
			reason = fmt.Sprintf("%s; bubbled gave up after %d tries%s", reason, m.attempts, sentBefore)
			log.Warn("failed to send SMS: temporary refusals, no tries left", zap.Int("attempts", m.attempts), zap.Error(err))
			if ferr := l.store.finish(ctx, m, OutcomeFailed, reason, code); ferr != nil {
				log.Error("failed to record failed SMS", zap.Error(ferr))
				q.current = m
				return
			}
			q.done(m)
			l.wakeOutcomes()
			return
		}
		delay := l.backoff(m.attempts)
		next := l.clock.Now().Add(delay)
		log.Warn("failed to send SMS part; will retry", zap.Int("attempt", m.attempts), zap.Duration("retry_in", delay), zap.Error(err))
		if ferr := l.store.retryLater(ctx, m, m.attempts, next, reason, code); ferr != nil {
			log.Error("failed to record SMS retry", zap.Error(ferr))
		}
		m.nextAttempt = next
		if q.current == m {
			q.current = nil
		}
	}
}

// backoff is the delay before try attempt+1: RetryBase doubled per try,
// capped at RetryMax, with ±20 % jitter.
func (l *Line) backoff(attempt int) time.Duration {
	d := l.cfg.RetryBase << min(attempt-1, 20)
	if d > l.cfg.RetryMax || d <= 0 {
		d = l.cfg.RetryMax
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// waitNotReady waits up to d for the state to change (the run loop noticing
// a lost port), so the sender does not spin on a dead modem.
func (l *Line) waitNotReady(ctx context.Context, d time.Duration) {
	l.mu.Lock()
	sig := l.stateSig
	l.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-sig:
	case <-l.after(d):
	}
}

// keepLinkOpenOnce sends AT+CMMS=2 once per opened modem.
func (l *Line) keepLinkOpenOnce(ctx context.Context, m *at.Session) {
	l.mu.Lock()
	done := l.cmmsFor == m
	l.cmmsFor = m
	l.mu.Unlock()
	if !done {
		l.keepLinkOpen(ctx, m)
	}
}
