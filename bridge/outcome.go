package bridge

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms"
)

// outcome.go turns what happens to a queued SMS after HandleMatrixMessage
// (held by a cap, sent, delivered, failed) into Matrix: delivery receipts,
// message statuses and notices in the room. The line stores every outcome
// before handing it over and hands it over again until this returns nil, so
// a restart loses none.

// handleOutcome reports one outcome of an outgoing SMS in its room.
func (cl *Client) handleOutcome(ctx context.Context, o sms.Outcome) error {
	log := cl.log.With(zap.String("sms_id", o.MessageID), zap.String("outcome", string(o.Kind)))
	contact := UserIDForSender(o.To, cl.conn.cfg.DefaultRegion)
	// Messages from the sms command have no Matrix message of their own.
	eventID := id.EventID(o.MessageID)
	var msg *database.Message
	var err error
	if strings.HasPrefix(o.MessageID, "$") {
		msg, err = cl.conn.br.DB.Message.GetPartByMXID(ctx, eventID)
		if err != nil {
			return fmt.Errorf("find SMS %s: %w", o.MessageID, err)
		}
	}
	// The message's own room: with failover it may belong to another line.
	key := PortalKeyFor(contact, cl.login.ID)
	if msg != nil {
		key = msg.Room
	}
	portal, err := cl.conn.br.GetExistingPortalByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("find the room of SMS %s: %w", o.MessageID, err)
	}
	if portal == nil || portal.MXID == "" {
		log.Warn("dropped an SMS outcome: its room is gone")
		return nil
	}
	login := cl.login
	if other := cl.conn.br.GetCachedUserLoginByID(portal.Receiver); other != nil {
		login = other
	}
	switch o.Kind {
	case sms.OutcomeQueued, sms.OutcomeSent:
		log.Debug("SMS progressed", zap.Int("parts", o.Parts))
	case sms.OutcomeHeld:
		cl.conn.notice(ctx, portal, "⏳ Held back: "+o.Reason)
	case sms.OutcomeDelivered:
		if msg == nil {
			if strings.HasPrefix(o.MessageID, "$") && time.Since(o.At) < time.Minute {
				// bridgev2 saves the message right after HandleMatrixMessage returns.
				return fmt.Errorf("SMS %s was delivered before its message was saved; trying again", o.MessageID)
			}
			return nil
		}
		res := login.QueueRemoteEvent(&simplevent.Receipt{
			EventMeta: simplevent.EventMeta{
				Type:      bridgev2.RemoteEventDeliveryReceipt,
				PortalKey: portal.PortalKey,
				Sender:    bridgev2.EventSender{Sender: contact},
				Timestamp: o.At,
			},
			LastTarget: msg.ID,
			Targets:    []networkid.MessageID{msg.ID},
		})
		if res.Error != nil {
			return fmt.Errorf("report the delivery of SMS %s: %w", o.MessageID, res.Error)
		}
	case sms.OutcomeFailed, sms.OutcomeUnknown:
		text := fmt.Sprintf("⚠️ Your SMS to %s was not delivered: %s.", FormatNumber(o.To), strings.TrimSuffix(o.Reason, "."))
		if o.Kind == sms.OutcomeUnknown {
			text = fmt.Sprintf("⚠️ Your SMS to %s may or may not have been sent: %s. Check with them before sending it again.", FormatNumber(o.To), strings.TrimSuffix(o.Reason, "."))
		}
		if msg != nil {
			st := event.MessageStatusFail
			reason := event.MessageStatusNetworkError
			cl.conn.br.Matrix.SendMessageStatus(ctx, &bridgev2.MessageStatus{
				Status: st, ErrorReason: reason, Message: o.Reason, IsCertain: o.Kind == sms.OutcomeFailed,
			}, &bridgev2.MessageStatusEventInfo{RoomID: portal.MXID, SourceEventID: eventID, Sender: msg.SenderMXID})
		}
		cl.conn.notice(ctx, portal, text)
		log.Warn("SMS did not go through", zap.String("reason", o.Reason))
	}
	return nil
}

// handleCall posts a missed-call notice in the caller's room (made if
// needed). The line has already hung up.
func (cl *Client) handleCall(ctx context.Context, c sms.Call) error {
	caller := UserIDForSender(c.From, cl.conn.cfg.DefaultRegion)
	from := c.From
	if from == "" {
		cl.log.Info("missed a call from a hidden number")
		return nil
	}
	res := cl.login.QueueRemoteEvent(&simplevent.Message[sms.Call]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    PortalKeyFor(caller, cl.login.ID),
			CreatePortal: true,
			Sender:       bridgev2.EventSender{Sender: caller},
			Timestamp:    c.At,
		},
		Data: c,
		ID:   networkid.MessageID("call:" + c.ID),
		ConvertMessageFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, c sms.Call) (*bridgev2.ConvertedMessage, error) {
			return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
				Type:    event.EventMessage,
				Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: "📞 Missed call from " + FormatNumber(from) + " (bubbled hung up; it cannot take calls)."},
			}}}, nil
		},
	})
	if err := remoteEventError(res); err != nil {
		return fmt.Errorf("post the missed call: %w", err)
	}
	return nil
}

// notifyOwner tells the line's owner something in their management room.
func (cl *Client) notifyOwner(text string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room, err := cl.login.User.GetManagementRoom(ctx)
	if err != nil || room == "" {
		cl.log.Warn("failed to find the owner's management room", zap.Error(err))
		return
	}
	_, err = cl.conn.br.Bot.SendMessage(ctx, room, event.EventMessage, &event.Content{
		Parsed: &event.MessageEventContent{MsgType: event.MsgNotice, Body: text},
	}, nil)
	if err != nil {
		cl.log.Warn("failed to tell the owner", zap.Error(err))
	}
}
