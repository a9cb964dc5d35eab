package sms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
	"github.com/bubbled/bubbled/fallback"
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

// outbox is the sending concern of a Line: the durable queue (Enqueue,
// outbox_store.go), pacing, the sender goroutine that sends one part at a
// time in fair turns, status-report matching, and the outcome pump that
// hands outcomes to the OutcomeHandler. Its goroutines (sender, outcome
// pump, short re-match waits) start with start and end with stop.
type outbox struct {
	*link
	// sendRetry is the retry policy of temporary refusals, from
	// Config.MaxAttempts, RetryBase and RetryMax.
	sendRetry fallback.RetryPolicy
	// requestRecovery asks care to check the modem (never blocks).
	requestRecovery func(error)
	// kick wakes the sender (its only reader).
	kick chan struct{}
	// outcomes is the mailbox of outcome events for the OutcomeHandler.
	outcomes *mailbox[Outcome]
	// outcomeGen counts wakeOutcomes calls (each follows a committed
	// outcome); drainedAt is the count at which the outcome table was last
	// found empty. While they are equal the pump need not ask the database:
	// without it every outcome cost a second, empty query.
	outcomeGen, drainedAt atomic.Int64
	// listed is what the last short listing returned (all there was at
	// outcomeGen listedAt), less what the handler has taken since: once it
	// is empty, the table was drained as of listedAt (drainedAt).
	listMu   sync.Mutex
	listed   map[int64]bool
	listedAt int64
	listings atomic.Int64 // outcome table reads, for tests
	// goroutines are the sender, the outcome pump and the re-match
	// waits; stop ends them.
	goroutines loop

	mu sync.Mutex // guards the fields below
	// enqueued are messages Enqueue stored since the sender last looked.
	enqueued []*outMsg
	noCMMS   bool        // AT+CMMS=2 refused once: don't ask again
	cmmsFor  *at.Session // the session AT+CMMS=2 was last sent to
}

func newOutbox(k *link, requestRecovery func(error)) *outbox {
	o := &outbox{
		link: k,
		sendRetry: fallback.RetryPolicy{
			Attempts: k.cfg.MaxAttempts, Initial: k.cfg.RetryBase, Max: k.cfg.RetryMax,
			Multiplier: 2, Jitter: 0.2,
		},
		requestRecovery: requestRecovery,
		kick:            make(chan struct{}, 1),
	}
	o.outcomeGen.Store(1) // outcomes of a previous run may wait
	o.outcomes = newMailbox(k, "SMS outcome", k.cfg.OnOutcome, o.pendingOutcomes,
		o.markOutcome,
		func(oc Outcome) string { return fmt.Sprintf("%s outcome of %s", oc.Kind, oc.MessageID) })
	return o
}

// start starts the sender and the outcome pump.
func (o *outbox) start(ctx context.Context) {
	o.goroutines.start(ctx, o.sendLoop)
	o.outcomes.start(ctx)
}

// stop ends the outbox's goroutines and waits for them.
func (o *outbox) stop() {
	o.goroutines.stop()
	o.outcomes.stop()
}

// prune forgets finished messages older than outboxKeep.
func (o *outbox) prune(ctx context.Context) {
	if err := o.store.pruneOutbox(ctx, o.clock.Now().Add(-outboxKeep)); err != nil {
		o.log.Warn("failed to prune old outbound SMS", zap.Error(err))
	}
}

// enqueue implements Line.Enqueue.
func (o *outbox) enqueue(ctx context.Context, msg OutMessage) error {
	if msg.ID == "" || msg.To == "" {
		return errors.New("enqueue SMS: the message needs an ID and a recipient")
	}
	if o.isClosed() {
		return ErrClosed
	}
	// A message queued before is found by the store's insert; only one
	// that needs a concatenation reference (or fails to encode) is looked
	// up first, so that a repeat neither uses a reference nor fails.
	var dup bool
	var refErr error
	parts, err := pdu.EncodeSubmit(msg.To, msg.Text, pdu.SubmitOptions{
		StatusReport: o.cfg.StatusReports,
		MaxParts:     o.cfg.MaxParts,
		NextRef: func() uint16 {
			if dup, refErr = o.store.hasOut(ctx, msg.ID); dup || refErr != nil {
				return 0
			}
			ref, err := o.store.nextRef(ctx)
			if err != nil && refErr == nil {
				refErr = err
			}
			return ref
		},
	})
	switch {
	case refErr != nil:
		return fmt.Errorf("enqueue SMS %s: %w", msg.ID, refErr)
	case dup:
		return nil
	case err != nil:
		if dup, herr := o.store.hasOut(ctx, msg.ID); herr == nil && dup {
			return nil // queued before, under other settings
		}
		return fmt.Errorf("encode SMS to %s: %w", phone.Mask(msg.To), err)
	}
	m, err := o.store.enqueue(ctx, msg, parts)
	if err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	o.log.Debug("queued SMS", zap.String("id", msg.ID), zap.String("to", phone.Mask(msg.To)), zap.Int("parts", len(parts)))
	o.mu.Lock()
	o.enqueued = append(o.enqueued, m)
	o.mu.Unlock()
	wake(o.kick)
	return nil
}

// sendLoop is the outbox's sender goroutine: the only one that sends queued
// messages, one part at a time, in fair turns between recipients.
func (o *outbox) sendLoop(ctx context.Context) {
	q := newOutQueue()
	for {
		msgs, err := o.store.activeOut(ctx)
		if err == nil {
			for _, m := range msgs {
				if !o.dropStaleCheck(ctx, m) {
					q.add(m)
				}
			}
			break
		}
		o.log.Error("failed to load the SMS outbox; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-o.after(o.retry.Max):
		}
	}
	if n := q.len(); n > 0 {
		o.log.Info("resumed SMS outbox", zap.Int("queued", n))
	}
	for ctx.Err() == nil {
		o.mu.Lock()
		for _, m := range o.enqueued {
			q.add(m)
		}
		o.enqueued = nil
		o.mu.Unlock()

		now := o.clock.Now()
		m, wait := q.next(now)
		if m == nil {
			var timer <-chan time.Time
			if wait > 0 {
				timer = fallback.After(o.clock, wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-o.kick:
			case <-timer:
			}
			continue
		}
		if until, reason, notice, err := o.paceCheck(ctx, now); err != nil {
			o.log.Error("failed to count sent SMS for pacing", zap.Error(err))
			if !o.pause(ctx) {
				return
			}
			continue
		} else if !until.IsZero() {
			if notice {
				o.holdAll(ctx, q, reason, until)
			}
			o.log.Debug("paced SMS outbox", zap.Time("until", until), zap.String("reason", reason))
			select {
			case <-ctx.Done():
				return
			case <-o.kick: // a message queued meanwhile is held too, and told so
			case <-fallback.After(o.clock, until.Sub(now)):
			}
			continue
		}
		mod, err := o.waitReady(ctx)
		if err != nil {
			return
		}
		o.sendMessage(ctx, mod, q, m)
	}
}

// waitReady waits until the modem is ready and in PDU mode.
func (o *outbox) waitReady(ctx context.Context) (*at.Session, error) {
	for {
		m, st, sig, pduMode, closed := o.readiness()
		if closed {
			return nil, ErrClosed
		}
		var retry <-chan time.Time
		if st == StateReady && m != nil {
			if pduMode {
				return m, nil
			}
			if err := o.ensurePDU(ctx, m); err == nil {
				return m, nil
			} else if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			retry = o.after(o.retry.Max)
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
func (o *outbox) sendMessage(ctx context.Context, mod *at.Session, q *outQueue, m *outMsg) {
	parts, err := m.fresh, error(nil)
	m.fresh = nil
	if parts == nil {
		parts, err = o.store.outParts(ctx, m.id)
	}
	if err != nil {
		o.log.Error("failed to load SMS parts", zap.String("id", m.id), zap.Error(err))
		m.nextAttempt = o.clock.Now().Add(o.retry.Initial)
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
	if q.pendingParts(2) > 1 {
		o.keepLinkOpenOnce(ctx, mod)
	}
	for i, p := range todo {
		if ctx.Err() != nil {
			return
		}
		if i > 0 {
			if until, _, _, err := o.paceCheck(ctx, o.clock.Now()); err != nil || !until.IsZero() {
				q.current = m // finish this message first when the cap allows
				return
			}
		}
		info, err := mod.SMSCommand(ctx, "+CMGS="+strconv.Itoa(p.tpduLen), p.pdu, o.cfg.SendTimeout, o.cfg.LateReplyGrace)
		if err == nil {
			mr := parseCMGS(info)
			done, err := o.recordSent(ctx, m, p.seq, mr)
			if err != nil {
				o.log.Error("failed to record a sent SMS part; it will be sent again", zap.String("id", m.id), zap.Int("part", p.seq), zap.Error(err))
				q.current = m
				return
			}
			if done {
				o.log.Info("sent SMS", zap.String("id", m.id), zap.String("to", phone.Mask(m.to)), zap.Int("parts", m.parts))
				q.done(m)
				o.wakeOutcomes()
				return
			}
			q.current = m
			continue
		}
		o.partFailed(ctx, q, m, p, err)
		return
	}
}

// recordSent persists a part's MR, retrying a failing database a few times
// (the part WAS sent: giving up here means sending it again).
func (o *outbox) recordSent(ctx context.Context, m *outMsg, seq, mr int) (bool, error) {
	var err error
	for i := 0; i < 5; i++ {
		var done bool
		if done, err = o.store.partSent(ctx, m, seq, mr); err == nil {
			return done, nil
		}
		if !o.pause(ctx) {
			return false, err
		}
	}
	return false, err
}

// partFailed decides what a failed part means for its message.
func (o *outbox) partFailed(ctx context.Context, q *outQueue, m *outMsg, p outPart, err error) {
	log := o.log.With(zap.String("id", m.id), zap.String("to", phone.Mask(m.to)), zap.Int("part", p.seq), zap.Int("parts", m.parts))
	var cms *CMSError
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, ErrSendUnknown):
		reason := fmt.Sprintf("the modem did not confirm part %d of %d in time: it may or may not have been sent, so bubbled did not send it again", p.seq, m.parts)
		log.Warn("gave up on an unconfirmed SMS part", zap.Error(err))
		if o.finish(ctx, log, q, m, OutcomeUnknown, reason, -1) {
			o.requestRecovery(err)
		}
	case errors.Is(err, ErrClosed), errors.Is(err, ErrNotOpen):
		// The port went away; the part is sent again after the reconnect
		// (the at-most-one-duplicate window when it was in flight).
		log.Info("paused SMS outbox: modem port lost", zap.Error(err))
		q.current = m
		if !errors.Is(err, ErrNotOpen) {
			o.waitNotReady(ctx, 2*time.Second)
		}
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrUnresponsive):
		log.Warn("failed to send SMS part: modem not answering; recovering it", zap.Error(err))
		q.current = m
		o.requestRecovery(err)
		o.waitNotReady(ctx, 2*time.Second)
	case errors.As(err, &cms) && !cms.Temporary():
		log.Warn("failed to send SMS: refused for good", zap.Error(err))
		o.finish(ctx, log, q, m, OutcomeFailed, cmsReason(cms)+sentBefore(p, m), cms.Code)
	default:
		o.refusedForNow(ctx, log, q, m, p, err, cms)
	}
}

// sentBefore tells, for a failed part p, that the parts before it were
// sent and reach the recipient ("" for the first part).
func sentBefore(p outPart, m *outMsg) string {
	if p.seq <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%d of %d parts were sent before and reach the recipient)", p.seq-1, m.parts)
}

// refusedForNow handles a temporary refusal (cms is nil for a plain
// ERROR): another try after the send retry policy's delay, or Failed when
// no tries are left.
func (o *outbox) refusedForNow(ctx context.Context, log *zap.Logger, q *outQueue, m *outMsg, p outPart, err error, cms *CMSError) {
	code := at.CMSCode(err)
	reason := "the modem refused it (" + err.Error() + ")"
	if cms != nil {
		reason = cmsReason(cms)
		if cms.Code == 331 || cms.Code == 332 {
			// No network: let the ladder check the radio before the
			// next try.
			o.requestRecovery(err)
			defer o.waitNotReady(ctx, 2*time.Second)
		}
	}
	m.attempts++
	if m.attempts >= o.sendRetry.Attempts {
		reason = fmt.Sprintf("%s; bubbled gave up after %d tries%s", reason, m.attempts, sentBefore(p, m))
		log.Warn("failed to send SMS: temporary refusals, no tries left", zap.Int("attempts", m.attempts), zap.Error(err))
		o.finish(ctx, log, q, m, OutcomeFailed, reason, code)
		return
	}
	delay := o.sendRetry.Delay(m.attempts, rand.Float64())
	next := o.clock.Now().Add(delay)
	log.Warn("failed to send SMS part; will retry", zap.Int("attempt", m.attempts), zap.Duration("retry_in", delay), zap.Error(err))
	if ferr := o.store.retryLater(ctx, m, m.attempts, next, reason, code); ferr != nil {
		log.Error("failed to record SMS retry", zap.Error(ferr))
	}
	m.nextAttempt = next
	if q.current == m {
		q.current = nil
	}
}

// finish records the final outcome of m and takes it off the queue; when
// the database fails it stays the current message and finish reports
// false.
func (o *outbox) finish(ctx context.Context, log *zap.Logger, q *outQueue, m *outMsg, kind OutcomeKind, reason string, code int) bool {
	if err := o.store.finish(ctx, m, kind, reason, code); err != nil {
		log.Error("failed to record "+string(kind)+" SMS", zap.Error(err))
		q.current = m
		return false
	}
	q.done(m)
	o.wakeOutcomes()
	return true
}

// waitNotReady waits up to d for the state to change (the run loop noticing
// a lost port), so the sender does not spin on a dead modem.
func (o *outbox) waitNotReady(ctx context.Context, d time.Duration) {
	sig := o.changed()
	select {
	case <-ctx.Done():
	case <-sig:
	case <-o.after(d):
	}
}

// keepLinkOpenOnce sends AT+CMMS=2 once per opened session.
func (o *outbox) keepLinkOpenOnce(ctx context.Context, m *at.Session) {
	o.mu.Lock()
	done := o.cmmsFor == m
	o.cmmsFor = m
	o.mu.Unlock()
	if !done {
		o.keepLinkOpen(ctx, m)
	}
}

// keepLinkOpen asks the modem to keep the SMS relay link open between the
// parts of one message (AT+CMMS=2), which makes multipart sends faster.
// Modems without it answer ERROR; we then stop asking.
func (o *outbox) keepLinkOpen(ctx context.Context, m *at.Session) {
	o.mu.Lock()
	skip := o.noCMMS
	o.mu.Unlock()
	if skip {
		return
	}
	if _, err := m.Command(ctx, "+CMMS=2", 0); err != nil {
		if at.IsRefusal(err) {
			o.log.Debug("modem does not support AT+CMMS; sending parts without it", zap.Error(err))
			o.mu.Lock()
			o.noCMMS = true
			o.mu.Unlock()
		}
	}
}

// parseCMGS returns the <mr> of a "+CMGS: <mr>[,<scts>]" line, or -1.
func parseCMGS(info []string) int {
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CMGS:"); ok {
			if mr, err := strconv.Atoi(at.SplitParams(v)[0]); err == nil {
				return mr
			}
		}
	}
	return -1
}

// dropStaleCheck fails a number-check SMS queued before this Open: the
// login that waited for it is gone (they live in memory), so sending it
// now would text a code to a number nobody is checking, maybe a stranger's.
func (o *outbox) dropStaleCheck(ctx context.Context, m *outMsg) bool {
	if !strings.HasPrefix(m.id, numberCheckIDPrefix) {
		return false
	}
	if err := o.store.finish(ctx, m, OutcomeFailed, "the login that checked this number has ended", -1); err != nil {
		o.log.Error("failed to drop a stale number-check SMS; it is sent instead", zap.Error(err))
		return false
	}
	o.log.Info("dropped a number-check SMS of an earlier login")
	o.wakeOutcomes()
	return true
}
