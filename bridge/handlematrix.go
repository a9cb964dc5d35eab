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
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/bridge/receiptsync"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
	"github.com/bubbled/bubbled/connectors/tapback"
	"github.com/bubbled/bubbled/fallback"
)

// handlematrix.go holds every Matrix -> network handler: messages, read
// receipts, typing, redactions, reactions and edits.

var (
	_ bridgev2.ReadReceiptHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.TypingHandlingNetworkAPI      = (*Client)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI   = (*Client)(nil)
)

// HandleMatrixMessage takes what someone wrote in a portal. The line's owner
// writes to the contact: the router sends it by the best route that reaches
// them (their own Matrix account, which already has the message; RCS; SMS).
// Anyone else in the room (the contact's own Matrix account, relayed through
// the line's login) writes native Matrix messages: they stay in the room and
// are never sent out.
func (cl *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	conv := cl.conn.restoreRouteState(msg.Portal)
	if msg.OrigSender != nil {
		if peer := cl.conn.router.State(conv).Peer; peer != "" && msg.OrigSender.UserID == peer {
			// Writing back means they read what came before.
			cl.conn.confirmRead(ctx, conv, fallback.RouteMatrix, time.UnixMilli(msg.Event.Timestamp))
		}
		return &bridgev2.MatrixMessageResponse{DB: &database.Message{
			ID:       networkid.MessageID("mx:" + string(msg.Event.ID)),
			SenderID: "",
		}}, nil
	}
	if members, group := groupMembers(msg.Portal.ID); group {
		return cl.sendGroupMMS(ctx, msg, members)
	}
	if msg.Portal.ID == unknownPortalID || msg.Portal.ID == codesPortalID {
		pre := cl.conn.br.Config.CommandPrefix
		return nil, bridgev2.WrapErrorInStatus(errors.New("message typed in a gate room")).
			WithStatus(event.MessageStatusFail).WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("Nothing typed here is sent: this room only collects SMS from senders without their own room. " +
				"Use `" + pre + " accept <number>` to give a sender their room and reply there, or `" + pre + " start-chat <number>` to write to a number.")
	}
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil, bridgev2.WrapErrorInStatus(errors.New("alphanumeric sender")).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("This sender has a name instead of a number, so it cannot receive replies.")
	}
	var file *fallback.File
	text, err := smsText(msg.Content)
	if err != nil {
		if file, err = cl.rcsFile(ctx, msg.Content, err); err != nil {
			return nil, err
		}
		text = msg.Content.Body
	}
	cl.conn.sending.start(string(msg.Event.ID), time.UnixMilli(msg.Event.Timestamp))
	out := fallback.Message{
		ID:           string(msg.Event.ID),
		Conversation: conv,
		To:           to,
		Text:         cl.withReplyQuote(msg, text),
		Line:         string(cl.login.ID),
		Created:      time.UnixMilli(msg.Event.Timestamp),
		File:         file,
	}
	rcpt, err := cl.conn.router.Send(ctx, &out)
	if err != nil {
		cl.log.Warn("failed to send a message", zap.String("to", phone.Mask(to)), zap.Error(err))
		cl.conn.sending.forget(string(msg.Event.ID))
		cl.conn.metrics.Message(metrics.Out, "none", "refused")
		return nil, sendErrorStatus(err)
	}
	if !rcpt.ConfirmBy.IsZero() {
		cl.conn.saveWait(ctx, out, *rcpt)
	}
	cl.log.Info("sent a message", zap.String("to", phone.Mask(to)), zap.String("route", string(rcpt.Route)), zap.Int("parts", rcpt.Parts))
	cl.conn.metrics.Message(metrics.Out, string(rcpt.Route), "accepted")
	if rcpt.Route != fallback.RouteSMS {
		cl.conn.sending.forget(string(msg.Event.ID))
	}
	msgID := networkid.MessageID("out:" + string(msg.Event.ID))
	if rcpt.Route == fallback.RouteRCS {
		msgID = networkid.MessageID(rcsOutPrefix + rcpt.RemoteID)
	} else if file != nil { // MMS: refusals and delivery reports find it
		msgID = networkid.MessageID(mmsOutPrefix + string(msg.Event.ID))
	}
	return &bridgev2.MatrixMessageResponse{
		DB: &database.Message{
			ID:       msgID,
			SenderID: UserIDForNumber(cl.meta.Number),
			Metadata: &MessageMetadata{Route: string(rcpt.Route), Parts: rcpt.Parts, RemoteID: rcpt.RemoteID, Text: storedText(text)},
		},
	}, nil
}

// rcsFile makes a file message sendable by RCS and MMS: it downloads (and
// decrypts) the Matrix file and stores it where the RCS provider can fetch
// it. Without RCS files or MMS, smsErr (SMS carries only text) stands.
func (cl *Client) rcsFile(ctx context.Context, content *event.MessageEventContent, smsErr error) (*fallback.File, error) {
	media := cl.conn.rcsMedia
	switch content.MsgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
	default:
		return nil, smsErr
	}
	rcs := cl.conn.rcs != nil && media != nil
	if !rcs && cl.mms == nil {
		return nil, smsErr
	}
	uri := content.URL
	if content.File != nil {
		uri = content.File.URL
	}
	data, err := cl.conn.br.Bot.DownloadMedia(ctx, uri, content.File)
	if err != nil {
		return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("download the file: %w", err)).
			WithErrorReason(event.MessageStatusGenericError).WithSendNotice(true).
			WithMessage("bubbled could not fetch the file from the homeserver, so it was not sent.")
	}
	mimeType := "application/octet-stream"
	if content.Info != nil && content.Info.MimeType != "" {
		mimeType = content.Info.MimeType
	}
	var url string
	if rcs {
		if url, err = media.Put(ctx, mimeType, data); err != nil {
			return nil, err
		}
	}
	name := content.FileName
	if name == "" {
		name = content.Body
	}
	return &fallback.File{URL: url, Name: name, MIMEType: mimeType, Size: int64(len(data)), Data: data}, nil
}

// smsText renders the text of a Matrix message for SMS.
func smsText(content *event.MessageEventContent) (string, error) {
	switch content.MsgType {
	case event.MsgText, event.MsgNotice:
		return content.Body, nil
	case event.MsgEmote:
		return "* " + content.Body, nil
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
		return "", bridgev2.WrapErrorInStatus(fmt.Errorf("unsupported msgtype %s", content.MsgType)).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("SMS can only carry text; the file was not sent.")
	case event.MsgLocation:
		if strings.HasPrefix(content.GeoURI, "geo:") {
			return "Location: " + content.GeoURI, nil
		}
		return content.Body, nil
	default:
		return "", bridgev2.WrapErrorInStatus(fmt.Errorf("unsupported msgtype %s", content.MsgType)).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage(fmt.Sprintf("Messages of type %s can't be sent as SMS.", content.MsgType))
	}
}

// sendErrorStatus turns a line's send error into a message status the user reads.
func sendErrorStatus(err error) error {
	st := bridgev2.WrapErrorInStatus(err).WithSendNotice(true)
	var cms *sms.CMSError
	switch {
	case errors.Is(err, pdu.ErrTooLong):
		detail := err.Error()
		if _, after, ok := strings.Cut(detail, pdu.ErrTooLong.Error()+": "); ok {
			detail = after
		}
		return st.WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).
			WithMessage("Too long for SMS: " + detail)
	case errors.Is(err, sms.ErrSendUnknown):
		return st.WithErrorReason(event.MessageStatusNetworkError).WithIsCertain(false).
			WithMessage("The modem did not answer in time: the SMS may or may not have been sent. Check with the contact before sending it again.")
	case fallback.Classify(err) == fallback.ClassTemporary && !errors.As(err, &cms):
		return st.WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusRetriable).
			WithMessage(fmt.Sprintf("No route could take the message right now (%v). Try again in a moment.", err))
	case errors.As(err, &cms):
		if cms.Temporary() {
			return st.WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusRetriable).
				WithMessage(fmt.Sprintf("The mobile network refused the SMS for now (%v). Try again in a moment.", cms))
		}
		return st.WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusFail).WithIsCertain(true).
			WithMessage(fmt.Sprintf("The mobile network refused the SMS (%v).", cms))
	default:
		return st.WithErrorReason(event.MessageStatusNetworkError).
			WithMessage(fmt.Sprintf("The SMS was not sent: %v", err))
	}
}

// handleReceipts confirms messages that went through Matrix when the contact
// reads them. Homeservers push read receipts to appservices only with
// ephemeral events enabled (MSC2409); Dendrite does not push them.
func (c *Connector) handleReceipts(ctx context.Context, evt *event.Event) {
	if c.router == nil {
		return
	}
	if _, ok := evt.Content.Parsed.(*event.ReceiptEventContent); !ok {
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			return
		}
	}
	content, ok := evt.Content.Parsed.(*event.ReceiptEventContent)
	if !ok {
		return
	}
	portal, err := c.br.GetPortalByMXID(ctx, evt.RoomID)
	if err != nil || portal == nil {
		return
	}
	meta := portalMeta(portal)
	conv := c.restoreRouteState(portal)
	peer := c.router.State(conv).Peer
	if peer == "" {
		peer = meta.Peer
	}
	if peer == "" {
		return
	}
	for eventID, receipts := range *content {
		for rtype, users := range receipts {
			if rtype != event.ReceiptTypeRead && rtype != event.ReceiptTypeReadPrivate {
				continue
			}
			rr, ok := users[peer]
			if !ok {
				continue
			}
			upTo := rr.Timestamp
			if target, err := c.br.Bot.GetEvent(ctx, evt.RoomID, eventID); err == nil && target != nil {
				upTo = time.UnixMilli(target.Timestamp)
			}
			if n := c.confirmRead(ctx, conv, fallback.RouteMatrix, upTo); n > 0 {
				c.log.Debug("confirmed messages read on Matrix", zap.Int("messages", n))
			}
		}
	}
}

// startReceiptSync reads the contacts' read receipts from the bot's own
// /sync as well, for homeservers that do not push them to appservices
// (Dendrite, Conduit); with timers off or no Matrix route nothing waits
// for them.
func (c *Connector) startReceiptSync(mx *matrix.Connector) {
	if c.cfg.Fallback.ConfirmTimeout <= 0 || !slices.Contains(c.cfg.Fallback.Order, string(fallback.RouteMatrix)) {
		return
	}
	c.receipts = receiptsync.Start(receiptsync.Options{Client: mx.AS.BotClient(), Handle: c.handleReceipts, Log: c.log.Named("receipts"),
		Active: func() bool { return c.router.Awaiting(fallback.RouteMatrix) }})
}

// HandleMatrixReadReceipt tells the RCS contact that the owner read their
// message (RCS READ), when the conversation is on RCS.
func (cl *Client) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	t := cl.conn.rcs
	if t == nil || msg.ExactMessage == nil || !strings.HasPrefix(string(msg.ExactMessage.ID), rcsInPrefix) {
		return nil
	}
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil
	}
	return t.Provider().SendRead(ctx, to, strings.TrimPrefix(string(msg.ExactMessage.ID), rcsInPrefix))
}

// HandleMatrixTyping tells the RCS contact the owner is typing.
func (cl *Client) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	t := cl.conn.rcs
	if t == nil || portalMeta(msg.Portal).LastRoute != string(fallback.RouteRCS) {
		return nil
	}
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil
	}
	return t.Provider().SendTyping(ctx, to, msg.IsTyping)
}

// HandleMatrixMessageRemove handles the owner unsending a message. A message
// waiting for its confirmation never falls back to another route after
// that. A message that went by RCS is revoked; one that went through Matrix
// is gone with the redaction itself; SMS cannot be taken back.
func (cl *Client) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	if msg.TargetMessage == nil {
		return bridgev2.ErrRedactionsNotSupported
	}
	cl.conn.confirm(ctx, string(msg.TargetMessage.MXID))
	meta, _ := msg.TargetMessage.Metadata.(*MessageMetadata)
	switch {
	case strings.HasPrefix(string(msg.TargetMessage.ID), rcsOutPrefix) && cl.conn.rcs != nil:
		to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
		if !ok {
			return bridgev2.ErrRedactionsNotSupported
		}
		return cl.conn.rcs.Provider().Revoke(ctx, to, strings.TrimPrefix(string(msg.TargetMessage.ID), rcsOutPrefix))
	case meta != nil && meta.Route == string(fallback.RouteMatrix):
		return nil
	case strings.HasPrefix(string(msg.TargetMessage.ID), "out:"):
		return errSMSUnsendable
	default:
		return bridgev2.ErrRedactionsNotSupported
	}
}

// Matrix reactions, edits and replies on routes that carry only text: they
// go out as the texts phones write for them (connectors/tapback), through
// the router like any message, so the contact's phone shows them as the
// reaction, correction or reply they are.

var (
	_ bridgev2.ReactionHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.EditHandlingNetworkAPI     = (*Client)(nil)
)

// PreHandleMatrixReaction keys the owner's reactions by emoji, so a message
// can carry several and each can be taken back on its own.
func (cl *Client) PreHandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	emoji := tapback.Canonical(msg.Content.RelatesTo.Key)
	return bridgev2.MatrixReactionPreResponse{
		SenderID: UserIDForNumber(cl.meta.Number),
		EmojiID:  networkid.EmojiID(emoji),
		Emoji:    emoji,
	}, nil
}

// HandleMatrixReaction sends the phone's reaction text (Liked “…”) quoting
// the start of the message. A message of the contact's own Matrix account
// is in the room already, and so is the reaction: nothing is sent.
func (cl *Client) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*database.Reaction, error) {
	conf := cl.conn.cfg.Conversation
	if conf.Reactions == "off" {
		return nil, bridgev2.ErrReactionsNotSupported
	}
	if strings.HasPrefix(string(msg.TargetMessage.ID), "mx:") {
		return &database.Reaction{}, nil
	}
	quoted, err := quotedText(msg.TargetMessage)
	if err != nil {
		return nil, err
	}
	text := tapback.Format(msg.PreHandleResp.Emoji, quoted, conf.QuoteChars)
	if _, err := cl.sendOwnText(ctx, msg.Portal, "reaction:"+string(msg.Event.ID), msg.Event.Timestamp, text); err != nil {
		return nil, err
	}
	return &database.Reaction{}, nil
}

// HandleMatrixReactionRemove sends the phone's removal text (Removed a like
// from “…”), or nothing when network.conversation.reaction_removals is off.
func (cl *Client) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	conf := cl.conn.cfg.Conversation
	r := msg.TargetReaction
	if conf.Reactions == "off" || conf.ReactionRemovals == "off" || strings.HasPrefix(string(r.MessageID), "mx:") {
		return nil
	}
	target, err := cl.conn.br.DB.Message.GetFirstPartByID(ctx, msg.Portal.Receiver, r.MessageID)
	if err != nil || target == nil {
		return fmt.Errorf("find the message of the reaction: %w", err)
	}
	quoted, err := quotedText(target)
	if err != nil {
		return err
	}
	emoji := r.Emoji
	if emoji == "" {
		emoji = string(r.EmojiID)
	}
	_, err = cl.sendOwnText(ctx, msg.Portal, "unreaction:"+string(msg.Event.ID), msg.Event.Timestamp, tapback.FormatRemoval(emoji, quoted, conf.QuoteChars))
	return err
}

// HandleMatrixEdit sends the new text as a marked correction
// (network.conversation.edits). An edit of a message that went through
// Matrix, or of the contact's own Matrix message, is already in the room.
func (cl *Client) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) error {
	meta, _ := msg.EditTarget.Metadata.(*MessageMetadata)
	if msg.OrigSender != nil || strings.HasPrefix(string(msg.EditTarget.ID), "mx:") {
		return nil
	}
	format := cl.conn.cfg.Conversation.Edits
	if format == "off" {
		return bridgev2.ErrEditsNotSupported
	}
	newText, err := smsText(msg.Content)
	if err != nil {
		return err
	}
	if meta == nil || meta.Route != string(fallback.RouteMatrix) {
		text := strings.Replace(format, "{text}", newText, 1)
		if _, err := cl.sendOwnText(ctx, msg.Portal, "edit:"+string(msg.Event.ID), msg.Event.Timestamp, text); err != nil {
			return err
		}
	}
	if meta != nil {
		// Reactions to the message now quote what it says.
		meta.Text = storedText(newText)
	}
	return nil
}

// withReplyQuote starts a reply with a short quote of the message it
// answers: neither SMS nor RCS carries replies.
func (cl *Client) withReplyQuote(msg *bridgev2.MatrixMessage, text string) string {
	conf := cl.conn.cfg.Conversation
	if msg.ReplyTo == nil || conf.Replies == "off" {
		return text
	}
	quoted, err := quotedText(msg.ReplyTo)
	if err != nil {
		return text
	}
	return tapback.QuoteReply(quoted, text, conf.QuoteChars)
}

// quotedText is the text of a bridged message that reactions and replies
// quote, stored with the message when it was bridged.
func quotedText(msg *database.Message) (string, error) {
	if meta, ok := msg.Metadata.(*MessageMetadata); ok && meta.Text != "" {
		return meta.Text, nil
	}
	return "", bridgev2.WrapErrorInStatus(errors.New("the target message has no stored text")).
		WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
		WithMessage("bubbled does not have the text of that message (it was bridged before bubbled kept texts, or has none), so this cannot be sent as SMS.")
}

// storedTextRunes bounds the text kept with each message for quoting: a
// message of 10 SMS parts fits.
const storedTextRunes = 2000

// storedText is the part of a message's text kept with it.
func storedText(text string) string {
	if r := []rune(text); len(r) > storedTextRunes {
		return string(r[:storedTextRunes])
	}
	return text
}

// sendOwnText sends a text bubbled writes for the owner (a reaction, its
// removal, a correction) to the portal's contact through the router, under
// its own message ID so that its outcome finds no Matrix message to update.
func (cl *Client) sendOwnText(ctx context.Context, portal *bridgev2.Portal, id string, ts int64, text string) (*fallback.Receipt, error) {
	to, ok := NumberForUserID(networkid.UserID(portal.ID))
	if !ok {
		return nil, bridgev2.WrapErrorInStatus(errors.New("alphanumeric sender")).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("This sender has a name instead of a number, so it cannot receive anything.")
	}
	rcpt, err := cl.conn.router.Send(ctx, &fallback.Message{
		ID:           id,
		Conversation: cl.conn.restoreRouteState(portal),
		To:           to,
		Text:         text,
		Line:         string(cl.login.ID),
		Created:      time.UnixMilli(ts),
	})
	if err != nil {
		cl.log.Warn("failed to send a reaction or correction", zap.String("to", phone.Mask(to)), zap.Error(err))
		return nil, sendErrorStatus(err)
	}
	cl.log.Info("sent a reaction or correction", zap.String("to", phone.Mask(to)), zap.String("route", string(rcpt.Route)))
	return rcpt, nil
}

// errSMSUnsendable answers unsending a message that went as SMS.
var errSMSUnsendable = bridgev2.WrapErrorInStatus(errors.New("SMS cannot be unsent")).
	WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
	WithMessage("An SMS cannot be unsent: the contact's phone already has it. Only messages that went by RCS or Matrix can be taken back.")
