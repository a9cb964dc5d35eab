package sms

import (
	"context"
	"errors"
	"strings"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
	"github.com/bubbled/bubbled/fallback"
)

// Transport is the SMS route of the fallback router: it sends through the
// conversation's own line (fallback.Message.Line names the login). The
// bridge builds it from two funcs, so this package knows nothing of logins.
// It holds no state of its own: it is safe for concurrent use when its
// funcs are.
type Transport struct {
	// LineFor returns the line of a login ID, or nil when it is not
	// connected. Required.
	LineFor func(loginID string) *Line
	// Failover, when set (network.sms.failover), returns another working
	// line of the same owner for a line whose modem is away, or nil; it is
	// where the person is told which number the message goes from.
	Failover func(ctx context.Context, msg *fallback.Message) *Line
	// MMS, when set (network.mms.enabled), sends a message with a file
	// (msg.File.Data) as MMS from msg.Line: the carrier's route for what
	// SMS cannot carry. It stores the MMS before it returns; its errors
	// are classified by fallback.Classify (unmarked: permanent).
	MMS func(ctx context.Context, msg *fallback.Message) error
}

var _ fallback.Transport = (*Transport)(nil)

// Route returns fallback.RouteSMS.
func (t *Transport) Route() fallback.Route { return fallback.RouteSMS }

// Send queues msg for SMS on the line msg.Line. The line's outbox stores it
// before Send returns and sends it when the modem (and the carrier's caps)
// allow, even after a restart; what happens then comes back as the line's
// outcomes (Config.OnOutcome). A text too long for the line is refused at
// once, as permanent; a contact without a number is unreachable; a line
// that is not connected is temporary.
func (t *Transport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	if !textable(msg.To) {
		return nil, fallback.Unreachable(errors.New("the contact has no number to text"))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if msg.File != nil && (t.MMS == nil || msg.File.Data == nil) {
		return nil, fallback.Permanent(errors.New("SMS can only carry text and MMS is off, so the file was not sent as SMS"))
	}
	if msg.File != nil {
		if err := t.MMS(ctx, msg); err != nil {
			return nil, err
		}
		return &fallback.Receipt{Route: fallback.RouteSMS, Parts: 1}, nil
	}
	line := t.LineFor(msg.Line)
	if line == nil {
		return nil, fallback.Temporary(errors.New("the line is not logged in"))
	}
	if st := line.State(); t.Failover != nil && (st == StateDisconnected || st == StateRecovering) {
		if other := t.Failover(ctx, msg); other != nil {
			line = other
		}
	}
	err := line.Enqueue(ctx, OutMessage{ID: msg.ID, To: msg.To, Text: msg.Text})
	switch {
	case err == nil:
		return &fallback.Receipt{Route: fallback.RouteSMS}, nil
	case errors.Is(err, pdu.ErrTooLong):
		return nil, fallback.Permanent(err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, err
	default:
		return nil, fallback.Temporary(err)
	}
}

// textable reports whether to is an address an SMS can go to: "+E164", or
// the digits of a short code. Alphanumeric senders ("MyBank") cannot be
// answered.
func textable(to string) bool {
	return strings.HasPrefix(to, "+") || phone.IsDigits(to)
}
