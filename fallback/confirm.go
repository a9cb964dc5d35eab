package fallback

import (
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
)

// Confirm tells the Router that the message with this ID was confirmed on
// the route it awaits (an RCS DELIVERED, or a read receipt the bridge
// matched to it): its timer stops and it will not fall back. It reports
// whether a message was waiting. A confirmation that comes after the message
// fell back (or while it is being re-sent) is ignored.
func (r *Router) Confirm(msgID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.pending[msgID]
	if rec == nil {
		return false
	}
	r.stopLocked(msgID, rec)
	return true
}

// ConfirmRead confirms every message of a conversation that awaits a
// confirmation on route rt and was created at or before upTo: the contact's
// read receipt on an event at upTo covers all messages before it. It returns
// how many were confirmed. The mark is also remembered, so a message created
// at or before upTo that the Router is handed later (the receipt overtook
// it) does not wait for a confirmation at all.
func (r *Router) ConfirmRead(conv string, rt Route, upTo time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.convLocked(conv)
	if cs.readUpTo == nil {
		cs.readUpTo = map[Route]time.Time{}
	}
	if upTo.After(cs.readUpTo[rt]) {
		cs.readUpTo[rt] = upTo
	}
	n := 0
	for msgID, rec := range r.pending {
		if rec.conv == conv && rec.waiting == rt && !rec.msg.Created.After(upTo) {
			r.stopLocked(msgID, rec)
			n++
		}
	}
	return n
}

// Resume starts the confirmation timer again for a message sent before a
// restart, by rcpt.Route at rcpt.At and not confirmed yet, with the time
// left (a timer already due fires at once). It follows the same rules as
// Send (confirming route, a lower route in the conversation's ladder, no
// pin, timers on) and returns when the message falls back, or false when no
// timer was started (or the Router already knows the message).
func (r *Router) Resume(msg *Message, rcpt Receipt) (time.Time, bool) {
	if checkMessage(msg) != nil || rcpt.Route == "" {
		return time.Time{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.msgs[msg.ID] != nil {
		return time.Time{}, false
	}
	pin := r.convLocked(msg.Conversation).pin
	if pin != "" || !r.timerWanted(r.ladder, rcpt.Route, []Route{rcpt.Route}, msg.Conversation, msg.Created) {
		return time.Time{}, false
	}
	now := r.clock.Now()
	m := *msg
	if m.Created.IsZero() {
		m.Created = rcpt.At
	}
	rec := r.addLocked(m, now)
	rec.inflight = false
	rec.used = []Route{rcpt.Route}
	rc := rcpt
	rec.rcpt = &rc
	left := max(rcpt.At.Add(r.confirmTimeout).Sub(now), 0)
	by := r.armLocked(msg.ID, rec, rcpt.Route, left)
	rec.rcpt.ConfirmBy = by
	return by, true
}

// readLocked reports whether the contact of conv has read, on rt, up to a
// message created at created.
func (r *Router) readLocked(conv string, rt Route, created time.Time) bool {
	cs := r.convs[conv]
	if cs == nil || cs.readUpTo == nil {
		return false
	}
	mark, ok := cs.readUpTo[rt]
	return ok && !created.After(mark)
}

// Awaiting reports whether some message awaits a confirmation on route rt.
func (r *Router) Awaiting(rt Route) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.pending {
		if rec.waiting == rt {
			return true
		}
	}
	return false
}

// Pending returns the IDs of the messages awaiting a confirmation, sorted.
func (r *Router) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.pending))
	for msgID := range r.pending {
		ids = append(ids, msgID)
	}
	slices.Sort(ids)
	return ids
}

// timerWanted says whether a message of conv created at created that went
// by rt with the routes used should wait for a confirmation: timers are on,
// rt confirms, the contact has not already read up to it on rt (a zero
// created time never counts as read), and a route below rt in the ladder
// has not taken it yet.
func (r *Router) timerWanted(ladder []Route, rt Route, used []Route, conv string, created time.Time) bool {
	if r.confirmTimeout <= 0 || !rt.confirms() {
		return false
	}
	if !created.IsZero() && r.readLocked(conv, rt, created) {
		return false
	}
	i := slices.Index(ladder, rt)
	if i < 0 {
		return false
	}
	for _, below := range ladder[i+1:] {
		if !slices.Contains(used, below) && r.usable(below) == nil {
			return true
		}
	}
	return false
}

// armLocked starts the confirmation timer of a message that went by rt and
// returns when it fires.
func (r *Router) armLocked(msgID string, rec *record, rt Route, d time.Duration) time.Time {
	if rec.timer != nil {
		rec.timer.Stop()
	}
	r.gen++
	gen := r.gen
	rec.gen, rec.waiting = gen, rt
	rec.confirmBy = r.clock.Now().Add(d)
	rec.timer = r.clock.AfterFunc(d, func() { r.expire(msgID, gen) })
	r.pending[msgID] = rec
	return rec.confirmBy
}

// stopLocked ends the wait for a confirmation.
func (r *Router) stopLocked(msgID string, rec *record) {
	if rec.timer != nil {
		rec.timer.Stop()
		rec.timer = nil
	}
	rec.waiting, rec.confirmBy = "", time.Time{}
	delete(r.pending, msgID)
}

// pauseLocked stops the timer of a message while a SendVia runs for it,
// keeping what it waits for so resumeLocked can start it again.
func (r *Router) pauseLocked(msgID string, rec *record) {
	if rec.timer != nil {
		rec.timer.Stop()
		rec.timer = nil
	}
	delete(r.pending, msgID)
}

// resumeLocked restarts a paused timer with the time it had left.
func (r *Router) resumeLocked(msgID string, rec *record) {
	if rec.waiting == "" || r.closed {
		return
	}
	left := max(rec.confirmBy.Sub(r.clock.Now()), 0)
	r.armLocked(msgID, rec, rec.waiting, left)
}

// expire runs on the Clock's goroutine when a message was not confirmed in
// time: it re-sends the message down the ladder from below the route it
// waited on, and tells the Notifier. A timer that was stopped or replaced
// meanwhile (gen differs) does nothing.
func (r *Router) expire(msgID string, gen uint64) {
	r.mu.Lock()
	rec := r.pending[msgID]
	if r.closed || rec == nil || rec.gen != gen {
		r.mu.Unlock()
		return
	}
	from, waited := rec.waiting, r.confirmTimeout
	r.stopLocked(msgID, rec)
	rec.inflight = true
	msg := rec.msg
	used := slices.Clone(rec.used)
	pin := r.convLocked(rec.conv).pin
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()

	ctx := r.ctx
	ladder := r.ladderFor(pin)
	rest := ladder
	if i := slices.Index(ladder, from); i >= 0 {
		rest = ladder[i+1:]
	}
	r.invalidate(from, msg.To)
	if w, ok := r.transports[from].(Withdrawer); ok {
		w.Withdraw(ctx, &msg)
	}
	res := r.walk(ctx, &msg, rest, used)

	f := FellBack{Message: msg, From: from, Waited: waited, Skipped: res.skipped}
	r.mu.Lock()
	rec.inflight = false
	if res.err == nil {
		rt := res.rcpt.Route
		rec.used = append(rec.used, rt)
		rec.msg = res.msg
		if pin == "" && !r.closed && r.timerWanted(ladder, rt, rec.used, rec.conv, rec.msg.Created) {
			res.rcpt.ConfirmBy = r.armLocked(msgID, rec, rt, r.confirmTimeout)
		}
		rec.rcpt = res.rcpt
		rc := *res.rcpt
		f.Message, f.To, f.Receipt = res.msg, rt, &rc
	} else {
		f.Err = res.err
		var se *SendError
		if errors.As(res.err, &se) {
			f.To = se.Route
			f.Skipped = se.Skipped
		}
	}
	r.mu.Unlock()

	switch {
	case Classify(f.Err) == ClassCancelled:
		// Close stopped it; after a restart, Resume sends it again.
		r.log.Info("stopped re-sending an unconfirmed message", zap.String("from", string(from)),
			zap.String("to", phone.Mask(msg.To)))
		return
	case f.Err == nil:
		r.log.Info("re-sent an unconfirmed message down the ladder", zap.String("from", string(from)),
			zap.String("route", string(f.To)), zap.String("to", phone.Mask(msg.To)))
	default:
		r.log.Warn("failed to re-send an unconfirmed message down the ladder", zap.String("from", string(from)),
			zap.String("to", phone.Mask(msg.To)), zap.Error(f.Err))
	}
	if r.note != nil {
		r.note.MessageFellBack(ctx, f)
	}
}
