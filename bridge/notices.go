package bridge

import (
	"context"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/fallback"
)

// notices.go is what bubbled itself says in Matrix. Notices are best
// effort: a failure is logged, never returned.

var _ fallback.Notifier = (*notices)(nil)

// notices posts what the router says in the conversation's room.
type notices struct{ conn *Connector }

// RouteChanged posts the change in the conversation's room and stores the
// conversation's new routing state in its portal.
func (n *notices) RouteChanged(ctx context.Context, ch fallback.RouteChange) {
	n.conn.noticeConv(ctx, ch.Conversation, ch.Text())
	n.conn.saveRouteState(ctx, ch.Conversation)
}

// MessageFellBack tells the room and keeps the stored confirmation state
// of the message in step (resume.go). The RCS message was revoked before
// the re-send (rcs.Transport is a fallback.Withdrawer).
func (n *notices) MessageFellBack(ctx context.Context, f fallback.FellBack) {
	n.conn.noticeConv(ctx, f.Message.Conversation, f.Text())
	n.conn.fellBack(ctx, f)
}

// noticeConv sends a notice into the room of a router conversation.
func (c *Connector) noticeConv(ctx context.Context, conv, text string) {
	portal, err := c.br.GetExistingPortalByKey(ctx, portalKeyOf(conv))
	if err != nil || portal == nil {
		c.log.Warn("failed to find the room for a notice", zap.Error(err))
		return
	}
	c.notice(ctx, portal, text)
}

// notice sends an m.notice from the bridge bot into a portal.
func (c *Connector) notice(ctx context.Context, portal *bridgev2.Portal, text string) {
	if portal.MXID == "" {
		return
	}
	_, err := c.br.Bot.SendMessage(ctx, portal.MXID, event.EventMessage, &event.Content{
		Parsed: &event.MessageEventContent{MsgType: event.MsgNotice, Body: text},
	}, nil)
	if err != nil {
		c.log.Warn("failed to send a notice", zap.Error(err))
	}
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
