package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// matrixroute.go is the Matrix rung of the route ladder. Unlike SMS and RCS
// it has no connector of its own: the "network" is the portal itself, so its
// transport is bridgev2 glue and lives here.

var (
	_ fallback.Transport = (*matrixTransport)(nil)
	_ fallback.Reacher   = (*matrixTransport)(nil)
)

// matrixTransport is the blue bubble: the contact's own Matrix account,
// invited into the portal. Once they have joined, the owner's client already
// encrypted the message for them, so there is nothing to send.
type matrixTransport struct {
	conn *Connector

	// mu serialises invites, so two messages do not invite twice.
	mu sync.Mutex
}

// Route returns fallback.RouteMatrix.
func (t *matrixTransport) Route() fallback.Route { return fallback.RouteMatrix }

// Reachable says whether msg.Peer has joined the portal. A peer who is not
// in the room yet is invited once; until they join, messages take the next
// route.
func (t *matrixTransport) Reachable(ctx context.Context, msg *fallback.Message) (bool, error) {
	portal, err := t.conn.br.GetExistingPortalByKey(ctx, portalKeyOf(msg.Conversation))
	if err != nil || portal == nil || portal.MXID == "" {
		return false, fmt.Errorf("find the conversation's room: %w", err)
	}
	member, err := t.conn.br.Matrix.GetMemberInfo(ctx, portal.MXID, msg.Peer)
	if err != nil {
		return false, fmt.Errorf("read the contact's membership: %w", err)
	}
	membership := event.MembershipLeave
	if member != nil {
		membership = member.Membership
	}
	switch membership {
	case event.MembershipJoin:
		return true, nil
	case event.MembershipInvite, event.MembershipBan:
		return false, nil
	}
	// Not in the room. The state store cannot tell "never invited" from
	// "declined or left", so the portal remembers whom it invited: a contact
	// who declined or left is not invited again on every message.
	t.mu.Lock()
	defer t.mu.Unlock()
	meta := portalMeta(portal)
	if meta.InvitedPeer == msg.Peer {
		return false, nil
	}
	if err := t.conn.inviteContact(ctx, portal, msg.Peer); err != nil {
		return false, err
	}
	meta.InvitedPeer = msg.Peer
	if err := portal.Save(ctx); err != nil {
		t.conn.log.Warn("failed to remember the invite", zap.Error(err))
	}
	return false, nil
}

// Send confirms the contact is still in the room: the message is already there.
func (t *matrixTransport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	ok, err := t.Reachable(ctx, msg)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fallback.Unreachable(errors.New("the contact left the chat on Matrix"))
	}
	return &fallback.Receipt{Route: fallback.RouteMatrix, RemoteID: msg.ID}, nil
}

// inviteContact invites the contact's own Matrix account into the portal and
// lets it talk there: the line's login relays for them, so their messages are
// kept as native Matrix messages and never bridged out (see HandleMatrixMessage).
func (c *Connector) inviteContact(ctx context.Context, portal *bridgev2.Portal, peer id.UserID) error {
	login := c.br.GetCachedUserLoginByID(portal.Receiver)
	if login != nil && portal.Relay == nil {
		if err := portal.SetRelay(ctx, login); err != nil {
			return fmt.Errorf("let the contact talk in the room: %w", err)
		}
	}
	if err := c.br.Bot.EnsureInvited(ctx, portal.MXID, peer); err != nil {
		return fmt.Errorf("invite %s: %w", peer, err)
	}
	c.log.Info("invited the contact's Matrix account into the portal", zap.String("portal", string(portal.MXID)), zap.String("peer", string(peer)))
	num, _ := NumberForUserID(networkid.UserID(portal.ID))
	c.notice(ctx, portal, fmt.Sprintf("%s is on Matrix as %s: invited them to this chat. Until they join, messages go by the next route.",
		phone.Format(num), peer))
	return nil
}
