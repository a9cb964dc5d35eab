package bridge

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/connectors/sms"
)

// handleSMS is the sms.Line handler: it turns an inbound SMS, already stored
// by the line, into a Matrix message in the contact's portal. It returns nil
// only when bridgev2 has handled the event (sent it, or recognised it as a
// duplicate by its ID); the line then marks the SMS delivered. Any other
// outcome makes the line keep it and try again later, so nothing is lost.
func (cl *Client) handleSMS(ctx context.Context, m *sms.Message) error {
	sender := UserIDForSender(m.From, cl.conn.cfg.DefaultRegion)
	evt := &simplevent.Message[*sms.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    PortalKeyFor(sender, cl.login.ID),
			CreatePortal: true,
			Sender:       bridgev2.EventSender{Sender: sender},
			Timestamp:    m.Time,
		},
		Data:               m,
		ID:                 networkid.MessageID(m.ID),
		ConvertMessageFunc: convertSMS,
	}
	res := cl.login.QueueRemoteEvent(evt)
	if err := remoteEventError(res); err != nil {
		return fmt.Errorf("bridge SMS %s into Matrix: %w", m.ID, err)
	}
	cl.log.Debug("bridged SMS", zap.String("sms_id", m.ID), zap.Bool("duplicate", res.Ignored))
	return nil
}

// remoteEventError says whether bridgev2 took a remote event. Handled, or
// recognised as a duplicate by its ID, is nil; queued happens only with
// bridge.portal_event_buffer > 0, which main forbids, and counts as taken.
func remoteEventError(res bridgev2.EventHandlingResult) error {
	switch {
	case res.Success, res.Ignored, res.Queued:
		return nil
	case res.Error != nil:
		return res.Error
	default:
		return errors.New("the portal did not accept it")
	}
}

// convertSMS makes the Matrix message of an inbound SMS: its text as m.text.
func convertSMS(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *sms.Message) (*bridgev2.ConvertedMessage, error) {
	return &bridgev2.ConvertedMessage{
		Parts: []*bridgev2.ConvertedMessagePart{{
			Type:       event.EventMessage,
			Content:    &event.MessageEventContent{MsgType: event.MsgText, Body: m.Text},
			DBMetadata: &MessageMetadata{Parts: m.Parts},
		}},
	}, nil
}
