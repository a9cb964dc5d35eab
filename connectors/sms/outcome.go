package sms

import (
	"context"
	"time"
)

// OutcomeKind says what happened to an outbound message.
type OutcomeKind string

// Outcome kinds, in the order a message usually goes through them. That it
// is queued has no outcome: Enqueue returning nil says so.
const (
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

// wakeOutcomes tells the pump that an outcome was committed.
func (o *outbox) wakeOutcomes() {
	o.outcomeGen.Add(1)
	o.outcomes.wake()
}

// pendingOutcomes is the pump's view of the outcome table: unhanded
// outcomes, oldest first, read from the database unless it was drained
// (found empty, or all of a complete listing handed) since the last
// wakeOutcomes.
func (o *outbox) pendingOutcomes(ctx context.Context) ([]Outcome, error) {
	const limit = 100
	gen := o.outcomeGen.Load()
	if o.drainedAt.Load() == gen {
		return nil, nil
	}
	o.listings.Add(1)
	out, err := o.store.pendingOutcomes(ctx, limit)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		o.drainedAt.Store(gen)
	}
	o.listMu.Lock()
	defer o.listMu.Unlock()
	o.listed, o.listedAt = nil, 0
	if len(out) < limit {
		o.listed, o.listedAt = make(map[int64]bool, len(out)), gen
		for _, oc := range out {
			o.listed[oc.Seq] = true
		}
	}
	return out, nil
}

// markOutcome records an outcome as handed (the mailbox's mark).
func (o *outbox) markOutcome(ctx context.Context, oc Outcome) error {
	if err := o.store.markOutcomeHanded(ctx, oc.Seq); err != nil {
		return err
	}
	o.listMu.Lock()
	defer o.listMu.Unlock()
	delete(o.listed, oc.Seq)
	if o.listed != nil && len(o.listed) == 0 {
		// All of a complete listing is handed: the table was drained as of
		// then (an outcome since has moved outcomeGen past listedAt).
		o.drainedAt.Store(max(o.drainedAt.Load(), o.listedAt))
	}
	return nil
}

// cmsReasons words +CMS ERROR codes for people. They stay here, not in
// package at, because they are what the outbox tells a user about their
// message (policy and wording), while at.CMSError names the codes for
// operators (protocol).
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
