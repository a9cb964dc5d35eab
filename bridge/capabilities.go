package bridge

import (
	"context"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/config"
)

// gsm7PartChars is the text of one part of a concatenated GSM 7-bit SMS.
const gsm7PartChars = 153

// smsFeatures describes what an SMS conversation can carry: plain text only,
// up to maxParts concatenated parts. Edits, reactions, deletes, replies and
// files are rejected so the client can tell the person before sending.
func smsFeatures(maxParts int) *event.RoomFeatures {
	return &event.RoomFeatures{
		ID:            "com.github.bubbled.capabilities.2026_11_25.sms",
		MaxTextLength: maxParts * gsm7PartChars,
		Formatting: event.FormattingFeatureMap{
			event.FmtBold:          event.CapLevelDropped,
			event.FmtItalic:        event.CapLevelDropped,
			event.FmtStrikethrough: event.CapLevelDropped,
			event.FmtInlineCode:    event.CapLevelDropped,
			event.FmtCodeBlock:     event.CapLevelDropped,
			event.FmtInlineLink:    event.CapLevelPartialSupport,
		},
		File:     event.FileFeatureMap{},
		Reply:    event.CapLevelDropped,
		Thread:   event.CapLevelDropped,
		Edit:     event.CapLevelRejected,
		Delete:   event.CapLevelRejected,
		Reaction: event.CapLevelRejected,
	}
}

// rcsFeatures describes an RCS conversation: longer text, receipts, typing,
// and unsend (revoke).
func rcsFeatures(files bool) *event.RoomFeatures {
	f := smsFeatures(1)
	if files {
		f.File = event.FileFeatureMap{}
		for _, mt := range []event.CapabilityMsgType{event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile} {
			f.File[mt] = &event.FileFeatures{MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported}, MaxSize: 100 << 20, Caption: event.CapLevelDropped}
		}
	}
	f.ID = "com.github.bubbled.capabilities.2026_11_25.rcs"
	f.MaxTextLength = 3072
	f.ReadReceipts = true
	f.TypingNotifications = true
	f.Delete = event.CapLevelFullySupported
	return f
}

// GetCapabilities returns the room features of a portal: an RCS conversation
// (its last message went by RCS) can do more than an SMS one.
func (cl *Client) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	if _, group := groupMembers(portal.ID); group {
		return mmsFeatures(cl.conn.cfg.MMSFor(cl.modem).MaxSize)
	}
	if cl.conn.rcs != nil && portalMeta(portal).LastRoute == "rcs" {
		return withConversation(rcsFeatures(cl.conn.rcsMedia != nil), cl.conn.cfg.Conversation)
	}
	f := smsFeatures(cl.conn.cfg.SMS.MaxParts)
	if cl.mms != nil { // files go as MMS
		f.ID, f.File = f.ID+".mms", mmsFeatures(cl.conn.cfg.MMSFor(cl.modem).MaxSize).File
	}
	return withConversation(f, cl.conn.cfg.Conversation)
}

// withConversation adds what network.conversation sends as text: reactions
// (Liked “…”), edits (a marked correction; the contact keeps the original)
// and replies (a short quote first). Each is partial: the contact sees a
// text, and removals are sent only when reaction_removals is text. The ID
// names the settings, so clients never mix up two sets of features.
func withConversation(f *event.RoomFeatures, conf config.Conversation) *event.RoomFeatures {
	suffix := ""
	if conf.Reactions == "text" {
		f.Reaction = event.CapLevelPartialSupport
		suffix += ".reactions"
	}
	if conf.Edits != "off" && conf.Edits != "" {
		f.Edit = event.CapLevelPartialSupport
		suffix += ".edits"
	}
	if conf.Replies == "quote" {
		f.Reply = event.CapLevelPartialSupport
		suffix += ".replies"
	}
	f.ID += suffix
	return f
}
