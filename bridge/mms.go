package bridge

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/fallback"
)

// mms.go is the glue of the MMS receive path: the line's WAP pushes go to
// the line's mms.Inbox (the persisted fetch queue), and what it fetched
// comes back here as a Matrix message with encrypted uploads, in the
// sender's chat or in the group chat of all participants.

// groupPrefix marks the portal of a group MMS thread: "group_" and the
// other participants' ghost IDs, sorted, joined by ".". The key is the
// participant set itself, so every message of one group lands in one room.
const groupPrefix = "group_"

// groupPortalID is the portal ID of the conversation with participants
// (E.164 numbers, sorted, own number removed).
func groupPortalID(participants []string) networkid.PortalID {
	ids := make([]string, len(participants))
	for i, p := range participants {
		ids[i] = string(UserIDForNumber(p))
	}
	return networkid.PortalID(groupPrefix + strings.Join(ids, "."))
}

// groupMembers returns the ghosts of a group portal; ok is false for DMs.
func groupMembers(id networkid.PortalID) (members []networkid.UserID, ok bool) {
	rest, ok := strings.CutPrefix(string(id), groupPrefix)
	if !ok {
		return nil, false
	}
	for _, s := range strings.Split(rest, ".") {
		members = append(members, networkid.UserID(s))
	}
	return members, true
}

// groupChatInfo describes a group portal: the line and every participant,
// named after their numbers.
func (cl *Client) groupChatInfo(members []networkid.UserID) *bridgev2.ChatInfo {
	list := []bridgev2.ChatMember{{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: UserIDForNumber(cl.meta.Number)}, Membership: event.MembershipJoin}}
	names := make([]string, 0, len(members))
	for _, m := range members {
		list = append(list, bridgev2.ChatMember{EventSender: bridgev2.EventSender{Sender: m}, Membership: event.MembershipJoin})
		if n, ok := NumberForUserID(m); ok {
			names = append(names, phone.Format(n))
		} else {
			names = append(names, string(m))
		}
	}
	return &bridgev2.ChatInfo{
		Name:    ptr(strings.Join(names, ", ")),
		Type:    ptr(database.RoomTypeGroupDM),
		Members: &bridgev2.ChatMemberList{IsFull: true, Members: list},
	}
}

// mmsClientConfig is the data path of modem m.
func mmsClientConfig(n config.Network, m config.Modem) mms.ClientConfig {
	c := n.MMSFor(m)
	return mms.ClientConfig{MMSC: c.MMSC, Proxy: c.Proxy, Interface: c.Interface, UserAgent: c.UserAgent,
		UAProf: c.UAProf, MaxSize: int64(c.MaxSize), Timeout: c.HTTPTimeout}
}

// newMMSInbox makes the fetch queue of a line when MMS is enabled (nil
// otherwise: pushes then stay stored, unread). It does no I/O.
func (c *Connector) newMMSInbox(cl *Client) (*mms.Inbox, error) {
	if !c.cfg.MMS.Enabled {
		return nil, nil
	}
	client, err := mms.NewClient(mmsClientConfig(c.cfg, cl.modem))
	if err != nil {
		return nil, fmt.Errorf("MMS of modem %s: %w", cl.modem.ID, err)
	}
	return mms.NewInbox(mms.InboxConfig{LineID: cl.modem.ID, Client: client, OnDeliveryReport: cl.handleMMSReport, OnSent: cl.mmsSent},
		c.br.DB.Database, cl.log, cl.handleMMS), nil
}

// push is the line's sms.PushHandler: a WAP push goes into the fetch queue.
func (h *lineHooks) push(ctx context.Context, p *sms.Push) error {
	cl := h.client()
	if cl == nil {
		return errors.New("the line has no login yet")
	}
	if cl.mms == nil {
		return errors.New("MMS is off (network.mms.enabled); the push stays stored")
	}
	return cl.mms.Notify(ctx, p.Data, p.From)
}

// handleMMS is the Inbox's DeliverFunc: the fetched MMS (or the news that
// it expired) becomes a Matrix message. nil only once bridgev2 took it.
func (cl *Client) handleMMS(ctx context.Context, d *mms.Delivery) error {
	region := cl.conn.cfg.DefaultRegion
	sender := UserIDForSender(d.From, region)
	key := PortalKeyFor(sender, cl.login.ID)
	if d.Message != nil {
		if p := mms.Participants(d.Message, cl.meta.Number, region); len(p) >= 2 {
			key = networkid.PortalKey{ID: groupPortalID(p), Receiver: cl.login.ID}
		}
	}
	convert := convertMMS
	if cl.conn.roomIsNew(ctx, key) {
		convert = ownerJoinedFirst(cl.conn, convertMMS)
	}
	res := cl.login.QueueRemoteEvent(&simplevent.Message[*mms.Delivery]{
		EventMeta: simplevent.EventMeta{
			Type: bridgev2.RemoteEventMessage, PortalKey: key, CreatePortal: true,
			Sender: bridgev2.EventSender{Sender: sender}, Timestamp: d.Time,
		},
		Data:               d,
		ID:                 networkid.MessageID(d.ID),
		ConvertMessageFunc: convert,
	})
	if err := remoteEventError(res); err != nil {
		return fmt.Errorf("bridge MMS %s into Matrix: %w", d.ID, err)
	}
	cl.log.Info("bridged MMS", zap.String("mms_id", d.ID), zap.Bool("group", strings.HasPrefix(string(key.ID), groupPrefix)),
		zap.Bool("expired", d.Expired), zap.Bool("duplicate", res.Ignored))
	return nil
}

// convertMMS makes the Matrix parts of an MMS: every media part an
// encrypted upload (m.image, m.video, m.audio, or m.file for vCards and
// the rest) in SMIL order, then the text parts (and subject) as one m.text.
func convertMMS(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, d *mms.Delivery) (*bridgev2.ConvertedMessage, error) {
	if d.Expired {
		return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{Type: event.EventMessage, Content: &event.MessageEventContent{
			MsgType: event.MsgNotice,
			Body:    fmt.Sprintf("📷 %s sent you a picture message (MMS) that bubbled could not fetch before it expired. Ask them to send it again.", phone.Format(d.From)),
		}}}}, nil
	}
	var parts []*bridgev2.ConvertedMessagePart
	var texts []string
	if s := strings.TrimSpace(d.Message.Subject); s != "" {
		texts = append(texts, s)
	}
	for i, p := range mms.Ordered(d.Message) {
		media := strings.ToLower(p.ContentType.Media)
		if media == "text/plain" {
			texts = append(texts, p.Text())
			continue
		}
		part, err := uploadPart(ctx, portal, intent, p, i)
		if err != nil {
			return nil, err
		}
		parts = append(parts, part)
	}
	if len(texts) > 0 {
		parts = append(parts, &bridgev2.ConvertedMessagePart{ID: "text", Type: event.EventMessage,
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: strings.Join(texts, "\n")}})
	}
	if len(parts) == 0 {
		parts = append(parts, &bridgev2.ConvertedMessagePart{Type: event.EventMessage,
			Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: "(an empty picture message)"}})
	}
	return &bridgev2.ConvertedMessage{Parts: parts}, nil
}

// uploadPart uploads one MMS attachment under a name it makes up if needed.
func uploadPart(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, p mms.Part, i int) (*bridgev2.ConvertedMessagePart, error) {
	mimeType := strings.ToLower(p.ContentType.Media)
	if mimeType == "text/x-vcard" {
		mimeType = "text/vcard"
	}
	name := p.ContentType.Name
	if name == "" {
		name = p.ContentLocation
	}
	if name == "" {
		name = fmt.Sprintf("attachment-%d", i+1)
		if exts, _ := mime.ExtensionsByType(mimeType); len(exts) > 0 {
			name += exts[0]
		}
	}
	return uploadFile(ctx, portal, intent, p.Data, name, mimeType, networkid.PartID(fmt.Sprintf("media%d", i)))
}

// uploadFile uploads a received file (encrypted in encrypted rooms) and
// makes its message part: m.image, m.video, m.audio or m.file.
func uploadFile(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, data []byte, name, mimeType string, id networkid.PartID) (*bridgev2.ConvertedMessagePart, error) {
	url, file, err := intent.UploadMedia(ctx, portal.MXID, data, name, mimeType)
	if err != nil {
		return nil, fmt.Errorf("upload the received file %s: %w", name, err)
	}
	msgType := event.MsgFile
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		msgType = event.MsgImage
	case strings.HasPrefix(mimeType, "video/"):
		msgType = event.MsgVideo
	case strings.HasPrefix(mimeType, "audio/"):
		msgType = event.MsgAudio
	}
	content := &event.MessageEventContent{MsgType: msgType, Body: name, FileName: name, URL: url, File: file,
		Info: &event.FileInfo{MimeType: mimeType, Size: len(data)}}
	return &bridgev2.ConvertedMessagePart{ID: id, Type: event.EventMessage, Content: content}, nil
}

// mmsOutPrefix marks our MMS in the bridgev2 database: "mmsout:<Matrix
// event ID>", the key of its send queue row, which maps the MMSC's
// Message-ID back for m-delivery-ind.
const mmsOutPrefix = "mmsout:"

// sendGroupMMS sends what the owner wrote in a group room as one
// m-send-req to every participant: text, or a file (images shrunk under
// max_size). Never SMS: a group reply split into SMS would reach each
// member as a private message.
func (cl *Client) sendGroupMMS(ctx context.Context, msg *bridgev2.MatrixMessage, members []networkid.UserID) (*bridgev2.MatrixMessageResponse, error) {
	fail := func(err error, text string) error {
		return bridgev2.WrapErrorInStatus(err).WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).WithMessage(text)
	}
	if cl.mms == nil {
		return nil, fail(errors.New("MMS off"), "Replies in group chats go out as one MMS to everyone; MMS is off on this bridge (network.mms.enabled), so nothing was sent.")
	}
	var to []string
	for _, m := range members {
		if n, ok := NumberForUserID(m); ok {
			to = append(to, n)
		}
	}
	text, files, err := cl.mmsContent(ctx, msg.Content)
	if err != nil {
		return nil, fail(err, "Could not read the file to send: "+err.Error())
	}
	req, err := mms.NewSendReq(to, text, files, cl.conn.cfg.MMSFor(cl.modem).MaxSize)
	if err != nil {
		return nil, fail(err, "Too large for MMS even after shrinking, so nothing was sent ("+err.Error()+").")
	}
	// Stored before the answer; the line's worker posts it (mmsSent).
	if err := cl.mms.Send(ctx, string(msg.Event.ID), req); err != nil {
		return nil, bridgev2.WrapErrorInStatus(err).WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusRetriable).
			WithSendNotice(true).WithMessage(fmt.Sprintf("The MMS could not be queued (%v). Try again in a moment.", err))
	}
	cl.log.Info("queued group MMS", zap.Int("recipients", len(to)), zap.Int("files", len(files)))
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{ID: networkid.MessageID(mmsOutPrefix + string(msg.Event.ID))}}, nil
}

// mmsSent is the Inbox's OnSent: a refusal or a give-up marks the Matrix
// message failed, with a notice in words. An error asks again later (the
// message may not be stored yet when the MMSC answers at once).
func (cl *Client) mmsSent(ctx context.Context, res mms.SendResult) error {
	if res.Err == nil {
		return nil
	}
	msg, err := cl.conn.br.DB.Message.GetFirstPartByID(ctx, cl.login.ID, networkid.MessageID(mmsOutPrefix+res.Key))
	if err != nil || msg == nil {
		return fmt.Errorf("find the failed MMS %s: %w", res.Key, err)
	}
	portal, err := cl.conn.br.GetExistingPortalByKey(ctx, msg.Room)
	if err != nil || portal == nil {
		return fmt.Errorf("find the room of the failed MMS %s: %w", res.Key, err)
	}
	cl.conn.br.Matrix.SendMessageStatus(ctx, &bridgev2.MessageStatus{Status: event.MessageStatusFail, ErrorReason: event.MessageStatusNetworkError,
		Message: res.Err.Error(), IsCertain: true}, &bridgev2.MessageStatusEventInfo{RoomID: portal.MXID, SourceEventID: msg.MXID, Sender: msg.SenderMXID})
	cl.conn.notice(ctx, portal, res.Notice())
	return nil
}

// sendMMS is the SMS route's way for files (sms.Transport.MMS): one
// m-send-req to msg.To, queued on the line's MMS send queue under the
// Matrix event ID.
func (c *Connector) sendMMS(ctx context.Context, msg *fallback.Message) error {
	cl := c.clientFor(networkid.UserLoginID(msg.Line))
	if cl == nil || cl.mms == nil {
		return fallback.Permanent(errors.New("SMS can only carry text and MMS is off on this line (network.mms.enabled)"))
	}
	caption, f := msg.Text, msg.File
	if caption == f.Name {
		caption = ""
	}
	req, err := mms.NewSendReq([]string{msg.To}, caption, []mms.Attachment{{Name: f.Name, Media: f.MIMEType, Data: f.Data}}, c.cfg.MMSFor(cl.modem).MaxSize)
	if err != nil {
		return fallback.Permanent(fmt.Errorf("too large for MMS even after shrinking: %w", err))
	}
	return fallback.Temporary(cl.mms.Send(ctx, msg.ID, req))
}

// mmsContent turns a Matrix message into the text and files of an MMS.
func (cl *Client) mmsContent(ctx context.Context, c *event.MessageEventContent) (string, []mms.Attachment, error) {
	switch c.MsgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
	default:
		return c.Body, nil, nil
	}
	url := c.URL
	if c.File != nil {
		url = c.File.URL
	}
	data, err := cl.conn.br.Bot.DownloadMedia(ctx, url, c.File)
	if err != nil {
		return "", nil, err
	}
	name, caption := c.FileName, ""
	if name == "" {
		name = c.Body
	} else if c.Body != name {
		caption = c.Body
	}
	media := "application/octet-stream"
	if c.Info != nil && c.Info.MimeType != "" {
		media = c.Info.MimeType
	}
	return caption, []mms.Attachment{{Name: name, Media: media, Data: data}}, nil
}

// handleMMSReport turns an m-delivery-ind into a delivery status on our
// message naming the member who got it; a report for a message we do not
// know is dropped.
func (cl *Client) handleMMSReport(ctx context.Context, messageID, to string, status mms.Status) error {
	if status != mms.StatusRetrieved {
		cl.log.Info("MMS not delivered to a member", zap.String("mms_message_id", messageID), zap.Stringer("status", status))
		return nil
	}
	key, err := cl.mms.SentKey(ctx, messageID)
	if err != nil {
		return err
	}
	msg, err := cl.conn.br.DB.Message.GetFirstPartByID(ctx, cl.login.ID, networkid.MessageID(mmsOutPrefix+key))
	if err != nil {
		return fmt.Errorf("find the MMS of a delivery report: %w", err)
	}
	if msg == nil {
		cl.log.Warn("ignored a delivery report for an unknown MMS", zap.String("mms_message_id", messageID))
		return nil
	}
	// bridgev2 takes delivery receipts only in DM rooms; MMS go out in
	// group rooms, so the status is sent here.
	portal, err := cl.conn.br.GetExistingPortalByKey(ctx, msg.Room)
	if err != nil || portal == nil || portal.MXID == "" {
		return err
	}
	ghost, err := cl.conn.br.GetGhostByID(ctx, UserIDForSender(to, cl.conn.cfg.DefaultRegion))
	if err != nil {
		return fmt.Errorf("find the ghost of a delivery report: %w", err)
	}
	meta, _ := msg.Metadata.(*MessageMetadata)
	if meta == nil {
		meta = &MessageMetadata{}
		msg.Metadata = meta
	}
	if mxid := ghost.Intent.GetMXID(); !slices.Contains(meta.DeliveredTo, mxid) {
		meta.DeliveredTo = append(meta.DeliveredTo, mxid)
		if err := cl.conn.br.DB.Message.Update(ctx, msg); err != nil {
			return fmt.Errorf("remember a group MMS delivery: %w", err)
		}
	}
	cl.conn.br.Matrix.SendMessageStatus(ctx, &bridgev2.MessageStatus{Status: event.MessageStatusSuccess, DeliveredTo: slices.Clone(meta.DeliveredTo)},
		&bridgev2.MessageStatusEventInfo{RoomID: portal.MXID, SourceEventID: msg.MXID, Sender: msg.SenderMXID})
	return nil
}

// mmsFeatures describes a group (MMS) room: text and files; images of any
// size (they are shrunk), other files up to max_size.
func mmsFeatures(maxSize int) *event.RoomFeatures {
	f := smsFeatures(1)
	f.ID = "com.github.bubbled.capabilities.2026_12_06.mms"
	f.MaxTextLength = 5000
	f.File = event.FileFeatureMap{}
	for _, mt := range []event.CapabilityMsgType{event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile} {
		limit := int64(maxSize)
		if mt == event.MsgImage {
			limit = 50 << 20
		}
		f.File[mt] = &event.FileFeatures{MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported}, MaxSize: limit, Caption: event.CapLevelFullySupported}
	}
	return f
}
