package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/tapback"
	"github.com/bubbled/bubbled/fallback"
)

// handleremote.go holds every network -> Matrix path. The line and the RCS
// webhook worker store each event before handing it over, and hand it over
// again until its handler returns nil, so a restart loses none.

// handleSMS is the sms.Line handler: it turns an inbound SMS, already stored
// by the line, into a Matrix message in the contact's portal. It returns nil
// only when bridgev2 has handled the event (sent it, or recognised it as a
// duplicate by its ID); the line then marks the SMS delivered. Any other
// outcome makes the line keep it and try again later, so nothing is lost.
func (cl *Client) handleSMS(ctx context.Context, m *sms.Message) error {
	if err := cl.webhookSMS(ctx, m); err != nil {
		return err
	}
	sender := UserIDForSender(m.From, cl.conn.cfg.DefaultRegion)
	key, convert, skip, err := cl.gateSMS(ctx, m, sender)
	if err != nil || skip {
		return err
	}
	// A reaction text is read only where the contact's own messages are:
	// never in the Unknown senders or Codes rooms.
	if key == PortalKeyFor(sender, cl.login.ID) {
		if handled, err := cl.smsReaction(ctx, m, sender); handled || err != nil {
			return err
		}
	}
	if cl.conn.roomIsNew(ctx, key) {
		convert = ownerJoinedFirst(cl.conn, convert)
		// The line's ghost is in every new room, and the line hands senders
		// concurrently: bridgev2 checks a ghost's profile flags without its
		// lock, so they are set once here before rooms are made at once.
		cl.ownGhost.Do(func() {
			if g, err := cl.conn.br.GetGhostByID(ctx, UserIDForNumber(cl.meta.Number)); err == nil {
				g.UpdateInfoIfNecessary(ctx, cl.login, bridgev2.RemoteEventMessage)
			}
		})
	}
	evt := &simplevent.Message[*sms.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    key,
			CreatePortal: true,
			Sender:       bridgev2.EventSender{Sender: sender},
			Timestamp:    m.Time,
		},
		Data:               m,
		ID:                 networkid.MessageID(m.ID),
		ConvertMessageFunc: convert,
	}
	res := cl.login.QueueRemoteEvent(evt)
	if err := remoteEventError(res); err != nil {
		cl.conn.metrics.Message(metrics.In, "sms", "retried")
		return fmt.Errorf("bridge SMS %s into Matrix: %w", m.ID, err)
	}
	if !res.Ignored {
		cl.conn.metrics.Message(metrics.In, "sms", "bridged")
		cl.conn.metrics.Parts(metrics.In, cl.modemKey, m.Parts)
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
	conv := &bridgev2.ConvertedMessage{
		Parts: []*bridgev2.ConvertedMessagePart{{
			Type:       event.EventMessage,
			Content:    &event.MessageEventContent{MsgType: event.MsgText, Body: m.Text},
			DBMetadata: &MessageMetadata{Parts: m.Parts, Text: storedText(m.Text)},
		}},
	}
	if note := m.MissingNote(); note != "" {
		// A long SMS delivered without some parts: say which, beside it.
		conv.Parts = append(conv.Parts, &bridgev2.ConvertedMessagePart{
			ID:      "missing",
			Type:    event.EventMessage,
			Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: "⚠️ " + note},
		})
	}
	return conv, nil
}

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
	} else if cl.conn.apiOutcome(ctx, o) {
		// The API's message in the room, once the API has posted it.
		msg, err = cl.conn.br.DB.Message.GetFirstPartByID(ctx, cl.login.ID, networkid.MessageID(o.MessageID))
	}
	if err != nil {
		return fmt.Errorf("find SMS %s: %w", o.MessageID, err)
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
	cl.countOutcome(o)
	login := cl.login
	if other := cl.conn.br.GetCachedUserLoginByID(portal.Receiver); other != nil {
		login = other
	}
	switch o.Kind {
	case sms.OutcomeSent:
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
		text := fmt.Sprintf("⚠️ Your SMS to %s was not delivered: %s.", phone.Format(o.To), strings.TrimSuffix(o.Reason, "."))
		if o.Kind == sms.OutcomeUnknown {
			text = fmt.Sprintf("⚠️ Your SMS to %s may or may not have been sent: %s. Check with them before sending it again.", phone.Format(o.To), strings.TrimSuffix(o.Reason, "."))
		}
		if msg != nil {
			cl.conn.br.Matrix.SendMessageStatus(ctx, &bridgev2.MessageStatus{
				Status: event.MessageStatusFail, ErrorReason: event.MessageStatusNetworkError, Message: o.Reason, IsCertain: o.Kind == sms.OutcomeFailed,
			}, &bridgev2.MessageStatusEventInfo{RoomID: portal.MXID, SourceEventID: msg.MXID, Sender: msg.SenderMXID})
		}
		cl.conn.notice(ctx, portal, text)
		log.Warn("SMS did not go through", zap.String("reason", o.Reason))
	}
	return nil
}

// countOutcome counts an SMS outcome, its parts and, once sent, the time
// since the Matrix event.
func (cl *Client) countOutcome(o sms.Outcome) {
	switch o.Kind {
	case sms.OutcomeSent:
		cl.conn.metrics.Parts(metrics.Out, cl.modemKey, o.Parts)
		if took, ok := cl.conn.sending.took(o.MessageID, o.At); ok {
			cl.conn.metrics.SendLatency("sms", took)
		}
	case sms.OutcomeHeld:
		return
	default:
		cl.conn.sending.forget(o.MessageID)
	}
	cl.conn.metrics.Message(metrics.Out, "sms", string(o.Kind))
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
				Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: "📞 Missed call from " + phone.Format(from) + " (bubbled hung up; it cannot take calls)."},
			}}}, nil
		},
	})
	if err := remoteEventError(res); err != nil {
		return fmt.Errorf("post the missed call: %w", err)
	}
	return nil
}

// rcsReceiptWait is how long after its time a receipt for a message not
// saved yet is handed over again before it is dropped as unknown.
const rcsReceiptWait = time.Minute

// handleRCSEvent takes one stored webhook event (the webhook worker calls it
// in order of arrival until it returns nil).
func (c *Connector) handleRCSEvent(ctx context.Context, ev rcs.Event) error {
	meta := ev.Meta()
	login, portal, err := c.rcsConversation(ctx, meta.Sender)
	if err != nil {
		return err
	}
	sender := UserIDForNumber(meta.Sender)
	base := simplevent.EventMeta{PortalKey: PortalKeyFor(sender, login.ID), Sender: bridgev2.EventSender{Sender: sender}, Timestamp: meta.Time}
	switch e := ev.(type) {
	case *rcs.MessageEvent:
		base.Type = bridgev2.RemoteEventMessage
		base.CreatePortal = true
		convert := convertRCS
		if portal == nil {
			convert = ownerJoinedFirst(c, convertRCS) // a new room
		}
		res := login.QueueRemoteEvent(&simplevent.Message[*rcs.MessageEvent]{
			EventMeta: base, Data: e, ID: networkid.MessageID(rcsInPrefix + e.MessageID),
			ConvertMessageFunc: convert,
		})
		if err := remoteEventError(res); err != nil {
			return fmt.Errorf("bridge an RCS message into Matrix: %w", err)
		}
	case *rcs.DeliveredEvent, *rcs.ReadEvent:
		if portal == nil {
			c.log.Warn("ignored an RCS receipt for a contact without a chat")
			return nil
		}
		msg, err := c.br.DB.Message.GetFirstPartByID(ctx, login.ID, networkid.MessageID(rcsOutPrefix+meta.MessageID))
		if err == nil && msg == nil {
			msg, err = c.apiRCSMessage(ctx, login, meta.MessageID)
		}
		if err != nil {
			return fmt.Errorf("find the message of an RCS receipt: %w", err)
		}
		if msg == nil {
			if time.Since(meta.Time).Abs() < rcsReceiptWait {
				// A fast receipt can overtake bridgev2 saving the message it
				// is about: the webhook worker hands it over again shortly.
				return errors.New("the message of an RCS receipt is not saved yet")
			}
			c.log.Warn("ignored an RCS receipt for an unknown message")
			return nil
		}
		c.confirm(ctx, string(msg.MXID))
		base.Type = bridgev2.RemoteEventDeliveryReceipt
		if _, read := ev.(*rcs.ReadEvent); read {
			base.Type = bridgev2.RemoteEventReadReceipt
		}
		login.QueueRemoteEvent(&simplevent.Receipt{EventMeta: base, LastTarget: msg.ID, Targets: []networkid.MessageID{msg.ID}})
	case *rcs.TypingEvent:
		if portal == nil {
			return nil
		}
		base.Type = bridgev2.RemoteEventTyping
		timeout := 15 * time.Second
		if !e.Active {
			timeout = 0
		}
		login.QueueRemoteEvent(&simplevent.Typing{EventMeta: base, Timeout: timeout, Type: bridgev2.TypingTypeText})
	case *rcs.UnsubscribeEvent:
		c.rcs.SetSubscribed(meta.Sender, false)
		if portal != nil {
			c.notice(ctx, portal, phone.Format(meta.Sender)+" turned off RCS messages from this agent: messages go as SMS from now on.")
		}
	case *rcs.SubscribeEvent:
		c.rcs.SetSubscribed(meta.Sender, true)
	case *rcs.FailedEvent:
		c.log.Warn("the RCS provider could not deliver a message; it falls back when its confirmation time runs out", zap.String("reason", e.Reason))
	}
	return nil
}

// rcsConversation picks the line an RCS contact talks to: the line that
// already has a chat with them, else the first line of network.rcs.owner
// (or of the only user with lines).
func (c *Connector) rcsConversation(ctx context.Context, number string) (*bridgev2.UserLogin, *bridgev2.Portal, error) {
	if _, err := phone.Parse(number, ""); err != nil {
		return nil, nil, fmt.Errorf("RCS event from %q: %w", phone.Mask(number), err)
	}
	logins := c.br.GetAllCachedUserLogins()
	if len(logins) == 0 {
		return nil, nil, errors.New("no phone line is logged in to receive RCS events; log a line in")
	}
	for _, l := range logins {
		p, err := c.br.GetExistingPortalByKey(ctx, PortalKeyFor(UserIDForNumber(number), l.ID))
		if err == nil && p != nil && p.MXID != "" {
			return l, p, nil
		}
	}
	owner := c.cfg.RCS.Owner
	if owner == "" && slices.ContainsFunc(logins, func(l *bridgev2.UserLogin) bool { return l.UserMXID != logins[0].UserMXID }) {
		return nil, nil, errors.New("an RCS message from a new contact waits: several Matrix users have lines and network.rcs.owner is not set; set it to the user who gets RCS from new contacts")
	}
	slices.SortFunc(logins, func(a, b *bridgev2.UserLogin) int { return strings.Compare(string(a.ID), string(b.ID)) })
	for _, l := range logins {
		if owner == "" || l.UserMXID == owner {
			return l, nil, nil
		}
	}
	return nil, nil, fmt.Errorf("an RCS message from a new contact waits: network.rcs.owner %s has no line logged in; log one in as that user", owner)
}

// convertRCS makes the Matrix message of an inbound RCS message; a file
// becomes an upload (a link only when it cannot be fetched).
func convertRCS(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, e *rcs.MessageEvent) (*bridgev2.ConvertedMessage, error) {
	body := e.Text
	switch {
	case e.File != nil:
		data, err := e.File.Fetch(ctx, rcs.MaxInboundFile)
		if err == nil {
			part, err := uploadFile(ctx, portal, intent, data, e.File.Name, e.File.MIMEType, "")
			return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{part}}, err
		} else if !errors.Is(err, rcs.ErrUnfetchable) {
			return nil, err // the webhook worker hands it over again
		}
		body = fmt.Sprintf("%s (%s): bubbled could not fetch this file (%v)", e.File.Name, e.File.URL, err)
	case e.Location != nil:
		body = fmt.Sprintf("Location: geo:%f,%f", e.Location.Latitude, e.Location.Longitude)
	}
	return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
		Type:       event.EventMessage,
		Content:    &event.MessageEventContent{MsgType: event.MsgText, Body: body},
		DBMetadata: &MessageMetadata{Route: string(fallback.RouteRCS), Text: storedText(e.Text)},
	}}}, nil
}

// smsReaction bridges an SMS that is a phone's reaction text (Loved “…”)
// quoting one of the room's last messages as a Matrix reaction from the
// contact on that message, or as the redaction of it for a removal text.
// handled is false for any other SMS, which stays a text.
func (cl *Client) smsReaction(ctx context.Context, m *sms.Message, sender networkid.UserID) (handled bool, err error) {
	conf := cl.conn.cfg.Conversation
	if !conf.ReadReactions || len(tapback.Parse(m.Text)) == 0 {
		return false, nil
	}
	key := PortalKeyFor(sender, cl.login.ID)
	last, err := cl.conn.br.DB.Message.GetLastNInPortal(ctx, key, conf.MatchLast)
	if err != nil {
		return false, fmt.Errorf("read the room's last messages for reaction SMS %s: %w", m.ID, err)
	}
	texts := make([]string, 0, len(last))
	ids := make([]networkid.MessageID, 0, len(last))
	for _, msg := range last {
		if meta, ok := msg.Metadata.(*MessageMetadata); ok && meta.Text != "" {
			texts, ids = append(texts, meta.Text), append(ids, msg.ID)
		}
	}
	r, i, ok := tapback.Match(m.Text, texts)
	if !ok {
		return false, nil
	}
	typ := bridgev2.RemoteEventReaction
	if r.Removal {
		typ = bridgev2.RemoteEventReactionRemove
	}
	res := cl.login.QueueRemoteEvent(&simplevent.Reaction{
		EventMeta: simplevent.EventMeta{
			Type:      typ,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: sender},
			Timestamp: m.Time,
		},
		TargetMessage: ids[i],
		EmojiID:       networkid.EmojiID(r.Emoji),
		Emoji:         r.Emoji,
	})
	if err := remoteEventError(res); err != nil {
		return true, fmt.Errorf("bridge reaction SMS %s into Matrix: %w", m.ID, err)
	}
	cl.log.Debug("bridged a reaction SMS as a reaction", zap.String("sms_id", m.ID), zap.Bool("removal", r.Removal), zap.Bool("duplicate", res.Ignored))
	return true, nil
}
