package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
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
	if membership == event.MembershipInvite {
		membership = t.conn.freshMembership(ctx, portal.MXID, msg.Peer, membership)
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

// roomCreateWait bounds how long the invite of a new room waits for
// bridgev2 to finish creating it.
const roomCreateWait = 2 * time.Minute

// blueInvites runs the invites of rooms being created: one goroutine per
// new room, each waiting for its room. The Connector owns it; Stop cancels
// them and waits.
type blueInvites struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *blueInvites) init() {
	b.once.Do(func() { b.ctx, b.cancel = context.WithCancel(context.Background()) })
}

// stop cancels the waiting invites and waits for them.
func (b *blueInvites) stop() {
	b.init()
	b.cancel()
	b.wg.Wait()
}

// inviteOnCreate is the ChatInfo.ExtraUpdates of a contact's portal. While
// bridgev2 creates the room (no MXID yet), it starts waiting for the room
// in the background; then, if the directory knows the number on Matrix,
// the contact's own account is invited and the room says so before anyone
// has typed: the conversation is blue from its first message. A restart in
// between loses nothing: the first message invites them (Reachable). It
// changes nothing bridgev2 saves, so it returns false.
func (c *Connector) inviteOnCreate(_ context.Context, portal *bridgev2.Portal) bool {
	num, ok := NumberForUserID(networkid.UserID(portal.ID))
	if portal.MXID != "" || !ok || !strings.HasPrefix(num, "+") || c.dir == nil || c.mxRoute == nil || !slices.Contains(c.cfg.Fallback.Order, string(fallback.RouteMatrix)) {
		return false
	}
	b := &c.blue
	b.init()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := portal.RoomCreated.WaitTimeoutCtx(b.ctx, roomCreateWait); err != nil || portal.MXID == "" {
			return
		}
		if c.waitOwnerJoined(b.ctx, portal, roomCreateWait) {
			c.inviteNewRoom(b.ctx, portal, num)
		}
	}()
	c.log.Debug("waiting for the new room to invite the contact if they are on Matrix", zap.String("to", phone.Mask(num)))
	return false
}

// inviteNewRoom invites the owner of num into a new portal when the
// directory knows them, once (InvitedPeer).
func (c *Connector) inviteNewRoom(ctx context.Context, portal *bridgev2.Portal, num string) {
	res, err := c.dir.Lookup(ctx, num)
	if err != nil || res.MXID == "" {
		c.log.Debug("the contact of the new room is not known on Matrix", zap.String("to", phone.Mask(num)), zap.Error(err))
		return
	}
	if login := c.br.GetCachedUserLoginByID(portal.Receiver); login != nil && login.UserMXID == res.MXID {
		return // the owner's own number on another line: they are here already
	}
	t := c.mxRoute
	t.mu.Lock()
	defer t.mu.Unlock()
	meta := portalMeta(portal)
	if meta.InvitedPeer == res.MXID {
		return
	}
	if err := c.inviteContact(ctx, portal, res.MXID); err != nil {
		c.log.Warn("failed to invite the contact into the new room; the first message tries again", zap.Error(err))
		return
	}
	meta.InvitedPeer = res.MXID
	if err := portal.Save(ctx); err != nil {
		c.log.Warn("failed to remember the invite", zap.Error(err))
	}
}

// waitOwnerJoined waits until the line's owner has joined the new room, so
// that they can read the invite notice (it is encrypted for the members of
// the moment), at most wait. It is false only when ctx ends.
func (c *Connector) waitOwnerJoined(ctx context.Context, portal *bridgev2.Portal, wait time.Duration) bool {
	login := c.br.GetCachedUserLoginByID(portal.Receiver)
	if login == nil {
		return true
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if m, err := c.br.Matrix.GetMemberInfo(ctx, portal.MXID, login.UserMXID); err == nil && m != nil && m.Membership == event.MembershipJoin {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-tick.C:
		}
	}
}

// ownerJoinedFirst holds a new room's first message (SMS, RCS, MMS) until
// its owner joined (20 s at most): the bridge's crypto drops the room's
// Megolm session when it sees their invite, maybe between making it for
// that event and encrypting.
func ownerJoinedFirst[T any](c *Connector, conv func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, T) (*bridgev2.ConvertedMessage, error)) func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, T) (*bridgev2.ConvertedMessage, error) {
	return func(ctx context.Context, p *bridgev2.Portal, i bridgev2.MatrixAPI, m T) (*bridgev2.ConvertedMessage, error) {
		c.waitOwnerJoined(ctx, p, 20*time.Second)
		return conv(ctx, p, i, m)
	}
}

// roomIsNew reports whether the portal of key has no Matrix room yet (its
// first message makes it, and so waits in ownerJoinedFirst). A failed
// lookup counts as not new: the message then does not wait.
func (c *Connector) roomIsNew(ctx context.Context, key networkid.PortalKey) bool {
	p, err := c.br.GetExistingPortalByKey(ctx, key)
	return err == nil && (p == nil || p.MXID == "")
}

// freshMembership asks the homeserver for peer's membership when the state
// store still says invited: the join reaches bubbled through the
// appservice stream, which can lag behind the contact's client, and a
// message sent meanwhile would go as SMS to someone already in the room.
// The answer also updates the state store. On any error it returns known.
func (c *Connector) freshMembership(ctx context.Context, room id.RoomID, peer id.UserID, known event.Membership) event.Membership {
	mx, ok := c.br.Matrix.(*matrix.Connector)
	if !ok {
		return known
	}
	var content event.MemberEventContent
	if err := mx.AS.BotClient().StateEvent(ctx, room, event.StateMember, string(peer), &content); err != nil {
		c.log.Debug("failed to read the contact's membership from the homeserver", zap.Error(err))
		return known
	}
	if content.Membership != known {
		if err := mx.AS.StateStore.SetMembership(ctx, room, peer, content.Membership); err != nil {
			c.log.Debug("failed to store the contact's membership", zap.Error(err))
		}
	}
	return content.Membership
}
