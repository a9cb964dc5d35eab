package sms

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// OutcomeKind says what happened to an outbound message.
type OutcomeKind string

// Outcome kinds, in the order a message usually goes through them.
const (
	// OutcomeQueued: the message is stored in the line's outbox (Enqueue
	// returned nil).
	OutcomeQueued OutcomeKind = "queued"
	// OutcomeHeld: a pacing cap holds the message back; RetryAt says
	// when it will go. Reported at most once per message.
	OutcomeHeld OutcomeKind = "held"
	// OutcomeSent: the modem accepted every part (MRs are set).
	OutcomeSent OutcomeKind = "sent"
	// OutcomeDelivered: status reports confirmed every part (only with
	// Config.StatusReports).
	OutcomeDelivered OutcomeKind = "delivered"
	// OutcomeFailed: the network or the modem refused the message for
	// good, or a status report said it could not be delivered. Final.
	OutcomeFailed OutcomeKind = "failed"
	// OutcomeUnknown: a part reached the modem but it never confirmed it:
	// the message may or may not have been sent. It is never re-sent by
	// the Line. Final.
	OutcomeUnknown OutcomeKind = "unknown"
)

// Final reports whether no further outcome follows for the message
// (Delivered, Failed, Unknown; Sent is final when status reports are off).
func (k OutcomeKind) Final() bool {
	return k == OutcomeDelivered || k == OutcomeFailed || k == OutcomeUnknown
}

// Outcome is one event in the life of an outbound message, persisted
// before it is handed to the OutcomeHandler.
type Outcome struct {
	// Seq numbers the line's outcome events (1, 2, ...), in order.
	Seq int64
	// LineID is Config.ID.
	LineID string
	// MessageID is OutMessage.ID (the Matrix event ID).
	MessageID string
	// Kind is what happened.
	Kind OutcomeKind
	// To is the recipient.
	To string
	// Parts is the number of SMS parts of the message.
	Parts int
	// MRs are the message references the modem gave each part (-1 for a
	// part not sent); empty for Queued and Held.
	MRs []int
	// Reason says in words a person understands why the message failed,
	// is unknown or is held; "" otherwise.
	Reason string
	// Code is the +CMS ERROR code (Failed after a refusal) or the TP-ST
	// status (Delivered, Failed after a status report); -1 when none.
	Code int
	// RetryAt is when a Held message will be sent.
	RetryAt time.Time
	// At is when the event was recorded.
	At time.Time
}

// OutcomeHandler receives outcome events of outbound messages, per line in
// the order they happened. Returning nil means the event is handled: it is
// never passed again (except if that mark cannot be stored: at least once).
// An error keeps it and retries it later with backoff, holding back later
// events. ctx is cancelled when the Line closes.
type OutcomeHandler func(ctx context.Context, o Outcome) error

// SetOutcomeHandler sets (or replaces) the OutcomeHandler; events recorded
// while none was set wait in the database and are passed once one is. Safe
// to call at any time, including before Open.
func (l *Line) SetOutcomeHandler(h OutcomeHandler) {
	l.mu.Lock()
	l.onOutcome = h
	l.mu.Unlock()
	l.wakeOutcomes()
}

func (l *Line) wakeOutcomes() {
	select {
	case l.outcomeKick <- struct{}{}:
	default:
	}
}

// outcomeLoop hands outcome events to the OutcomeHandler in order.
func (l *Line) outcomeLoop(ctx context.Context) {
	defer l.wg.Done()
	l.pump(ctx, l.outcomeKick, "SMS outcome", func(ctx context.Context) error {
		l.mu.Lock()
		h := l.onOutcome
		l.mu.Unlock()
		if h == nil {
			return nil
		}
		for {
			events, err := l.store.pendingOutcomes(ctx, 100)
			if err != nil || len(events) == 0 {
				return err
			}
			for _, o := range events {
				if err := h(ctx, o); err != nil {
					return fmt.Errorf("handle %s outcome of %s: %w", o.Kind, o.MessageID, err)
				}
				if err := l.store.markOutcomeHanded(ctx, o.Seq); err != nil {
					return err
				}
			}
		}
	})
}

// pump calls fn when kicked, and again with exponential backoff while it
// fails. It returns when ctx ends.
func (l *Line) pump(ctx context.Context, kick <-chan struct{}, what string, fn func(context.Context) error) {
	var retry <-chan time.Time
	failures := 0
	first := make(chan struct{}, 1)
	first <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-first:
		case <-kick:
		case <-retry:
		}
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures, retry = 0, nil
			continue
		}
		delay := min(l.retryBase<<min(failures, 20), l.retryMax)
		failures++
		l.log.Warn("failed to hand "+what+" to the bridge; will retry", zap.Duration("retry_in", delay), zap.Error(err))
		retry = l.after(delay)
	}
}

// reportClass classifies a TP-ST value (3GPP TS 23.040 9.2.3.15).
type reportKind int

const (
	reportDelivered reportKind = iota
	reportPending
	reportFailed
)

func reportClass(st byte) reportKind {
	switch {
	case st < 0x20:
		return reportDelivered // 0x00-0x02 completed; 0x03-0x1F reserved/SC-specific "completed"
	case st < 0x40:
		return reportPending // temporary error, SC still trying
	default:
		return reportFailed // permanent error, or temporary and SC gave up
	}
}

// statusReasons words the TP-ST failure values.
var statusReasons = map[byte]string{
	0x40: "the network could not deliver it (remote procedure error)",
	0x41: "the recipient's phone cannot receive this kind of message",
	0x42: "the recipient's phone refused the message",
	0x43: "the number cannot be reached",
	0x44: "the network could not deliver it with the requested quality of service",
	0x45: "the network has no route to the recipient",
	0x46: "it expired before the recipient's phone could be reached (switched off or out of coverage for too long)",
	0x47: "the message was deleted before delivery",
	0x48: "the message centre deleted the message",
	0x49: "the message centre no longer has the message",
	0x60: "the network was congested and gave up",
	0x61: "the recipient's phone was busy and the network gave up",
	0x62: "the recipient's phone did not answer and the network gave up",
	0x63: "the recipient's service refused it and the network gave up",
	0x64: "the network could not deliver it with the requested quality of service and gave up",
	0x65: "the recipient's phone reported an error and the network gave up",
}

// statusReason words a failure status of a status report.
func statusReason(st byte) string {
	if r, ok := statusReasons[st]; ok {
		return "not delivered: " + r
	}
	return fmt.Sprintf("not delivered: the network gave up (status 0x%02X)", st)
}

// cmsReasons words +CMS ERROR codes for people.
var cmsReasons = map[int]string{
	1:   "the network says the number does not exist",
	8:   "the operator barred this message",
	10:  "sending SMS is barred on this SIM",
	21:  "the network rejected the message",
	27:  "the recipient's number is out of service",
	28:  "the network does not know the recipient",
	29:  "the network refused the request",
	30:  "the recipient is unknown to the network",
	38:  "the mobile network is out of order",
	41:  "the mobile network had a temporary failure",
	42:  "the mobile network is congested",
	47:  "the mobile network has no resources free",
	50:  "this SIM is not subscribed to SMS",
	69:  "the network does not offer this service",
	96:  "the network rejected the message as malformed",
	111: "the network reported a protocol error",
	300: "the modem failed",
	302: "the modem does not allow sending now",
	303: "the modem does not support sending this",
	304: "the modem refused the message format",
	310: "there is no SIM in the modem",
	311: "the SIM needs its PIN",
	313: "the SIM failed",
	314: "the SIM was busy",
	316: "the SIM is blocked and needs its PUK",
	330: "the SIM has no message centre number (set it with AT+CSCA)",
	331: "the modem has no network service",
	332: "the network did not answer",
	500: "the modem reported an unknown error",
}

// cmsReason words a CMS error for people.
func cmsReason(e *CMSError) string {
	if r, ok := cmsReasons[e.Code]; ok {
		return r
	}
	return "the modem or network refused the message (" + e.Error() + ")"
}
