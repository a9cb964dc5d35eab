package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
	"github.com/bubbled/bubbled/fallback"
)

// router.go wires the route ladder (package fallback) into the bridge: the
// transports of the Matrix and SMS routes, the directory, the notices a
// person reads in the room, and the read receipts that confirm a message
// that went through Matrix.

// convKey is the router's conversation key of a portal: "<login>/<contact>".
func convKey(key networkid.PortalKey) string {
	return string(key.Receiver) + "/" + string(key.ID)
}

// portalKeyOf is the inverse of convKey.
func portalKeyOf(conv string) networkid.PortalKey {
	receiver, contact, _ := strings.Cut(conv, "/")
	return networkid.PortalKey{ID: networkid.PortalID(contact), Receiver: networkid.UserLoginID(receiver)}
}

// startRouter builds the directory and the router. It runs in Start, when
// the Matrix side is up (the identity-server lookup asks the homeserver for
// an OpenID token as the bridge bot).
func (c *Connector) startRouter(ctx context.Context) error {
	dcfg := c.cfg.Directory
	opts := directory.Options{Log: c.log.Named("directory")}
	if mx, ok := c.br.Matrix.(*matrix.Connector); ok && dcfg.IdentityServer.URL != "" {
		bot := mx.AS.BotClient()
		opts.OpenID = directory.OpenIDFunc(func(ctx context.Context) (*mautrix.RespOpenIDToken, error) {
			return bot.RequestOpenIDToken(ctx)
		})
	}
	dir, err := directory.New(directory.Config{
		DefaultRegion: c.cfg.DefaultRegion,
		Static:        dcfg.Static,
		IdentityServer: directory.IdentityServerConfig{
			URL:           dcfg.IdentityServer.URL,
			AcceptedTerms: dcfg.IdentityServer.AcceptedTerms,
			Timeout:       dcfg.IdentityServer.Timeout,
		},
		FoundTTL:    dcfg.FoundTTL,
		NotFoundTTL: dcfg.NotFoundTTL,
	}, opts)
	if err != nil {
		return fmt.Errorf("set up the directory (network.directory): %w", err)
	}
	c.dir = dir
	if err := c.startRCS(ctx); err != nil {
		return err
	}
	smsT := &smsTransport{lineFor: c.lineFor}
	if c.cfg.SMS.Failover {
		smsT.failover = c.failoverLine
	}
	transports := []fallback.Transport{&matrixTransport{conn: c}, smsT}
	if c.rcs != nil {
		transports = append(transports, c.rcs)
	}
	order := make([]fallback.Route, 0, len(c.cfg.Fallback.Order))
	for _, r := range c.cfg.Fallback.Order {
		rt, err := fallback.ParseRoute(r)
		if err != nil {
			return fmt.Errorf("network.fallback.order: %w", err)
		}
		order = append(order, rt)
	}
	c.router, err = fallback.New(fallback.Options{
		Order:          order,
		Transports:     transports,
		Directory:      directoryAdapter{dir},
		Notifier:       &notices{conn: c},
		ConfirmTimeout: c.cfg.Fallback.ConfirmTimeout,
		Log:            c.log.Named("fallback"),
	})
	if err != nil {
		return fmt.Errorf("set up the route ladder (network.fallback): %w", err)
	}
	if mx, ok := c.br.Matrix.(*matrix.Connector); ok && mx.EventProcessor != nil {
		mx.EventProcessor.On(event.EphemeralEventReceipt, c.handleReceipts)
	}
	c.refreshLocalLines(ctx)
	return nil
}

// refreshLocalLines tells the directory which numbers are lines of this
// bridge, and whose: a contact who is another line's owner is on Matrix.
func (c *Connector) refreshLocalLines(ctx context.Context) {
	if c.dir == nil {
		return
	}
	lines := map[string]id.UserID{}
	users, err := c.br.DB.UserLogin.GetAllUserIDsWithLogins(ctx)
	if err != nil {
		c.log.Warn("failed to list the lines for the directory", zap.Error(err))
		return
	}
	for _, user := range users {
		logins, err := c.br.DB.UserLogin.GetAllForUser(ctx, user)
		if err != nil {
			c.log.Warn("failed to list the lines for the directory", zap.Error(err))
			return
		}
		for _, l := range logins {
			if meta, ok := l.Metadata.(*LoginMetadata); ok && meta.Number != "" {
				lines[meta.Number] = l.UserMXID
			}
		}
	}
	if err := c.dir.SetLocal(lines); err != nil {
		c.log.Error("two lines claim the same number; the directory ignores both until one is logged out", zap.Error(err))
	}
}

// directoryAdapter makes a directory.Directory a fallback.Directory.
type directoryAdapter struct{ d *directory.Directory }

func (a directoryAdapter) Lookup(ctx context.Context, e164 string) (fallback.Answer, error) {
	r, err := a.d.Lookup(ctx, e164)
	return fallback.Answer{MXID: r.MXID, Source: string(r.Source), Fetched: r.Fetched}, err
}

func (a directoryAdapter) Invalidate(e164 string) { a.d.Invalidate(e164) }

// smsTransport sends through the conversation's own line (modem).
type smsTransport struct {
	// lineFor returns the line of a login ID, or nil when it is not connected.
	lineFor func(loginID string) *sms.Line
	// failover, when set (network.sms.failover), returns another working
	// line of the same owner and tells the room, for a line whose modem is away.
	failover func(ctx context.Context, msg *fallback.Message) *sms.Line
}

// failoverLine returns a ready line of the same owner as msg.Line, or nil,
// and says in the conversation's room that the message goes from it.
func (c *Connector) failoverLine(ctx context.Context, msg *fallback.Message) *sms.Line {
	login := c.br.GetCachedUserLoginByID(networkid.UserLoginID(msg.Line))
	if login == nil {
		return nil
	}
	for _, other := range login.User.GetUserLogins() {
		cl, ok := other.Client.(*Client)
		if !ok || other.ID == login.ID {
			continue
		}
		if line := cl.currentLine(); line != nil && line.State() == sms.StateReady {
			c.noticeConv(ctx, msg.Conversation, fmt.Sprintf("This line's modem is away: the message goes from your other line %s instead, so %s sees that number.",
				FormatNumber(cl.meta.Number), FormatNumber(msg.To)))
			return line
		}
	}
	return nil
}

// lineFor returns the connected line of a login, or nil.
func (c *Connector) lineFor(loginID string) *sms.Line {
	cl := c.clientFor(networkid.UserLoginID(loginID))
	if cl == nil {
		return nil
	}
	return cl.currentLine()
}

var (
	_ fallback.Transport = (*smsTransport)(nil)
	_ fallback.Transport = (*matrixTransport)(nil)
	_ fallback.Reacher   = (*matrixTransport)(nil)
	_ fallback.Notifier  = (*notices)(nil)
)

func (t *smsTransport) Route() fallback.Route { return fallback.RouteSMS }

// Send queues msg for SMS on the line msg.Line. The line's outbox stores it
// before Send returns and sends it when the modem (and the carrier's caps)
// allow, even after a restart; what happens then comes back as outcomes
// (bridge/outcome.go). A text too long for the line is refused at once.
func (t *smsTransport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	if !strings.HasPrefix(msg.To, "+") && !isDigits(msg.To) {
		return nil, fallback.Unreachable(errors.New("the contact has no number to text"))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if msg.File != nil {
		return nil, fallback.Permanent(errors.New("SMS can only carry text, so the file was not sent as SMS"))
	}
	line := t.lineFor(msg.Line)
	if line == nil {
		return nil, fallback.Temporary(errors.New("the line is not logged in"))
	}
	if st := line.State(); t.failover != nil && (st == sms.StateDisconnected || st == sms.StateRecovering) {
		if other := t.failover(ctx, msg); other != nil {
			line = other
		}
	}
	err := line.Enqueue(ctx, sms.OutMessage{ID: msg.ID, To: msg.To, Text: msg.Text})
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

// matrixTransport is the blue bubble: the contact's own Matrix account,
// invited into the portal. Once they have joined, the owner's client already
// encrypted the message for them, so there is nothing to send.
type matrixTransport struct {
	conn *Connector

	// mu serialises invites, so two messages do not invite twice.
	mu sync.Mutex
}

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
	case event.MembershipInvite:
		return false, nil
	case event.MembershipBan:
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
	c.notice(ctx, portal, fmt.Sprintf("%s is on Matrix as %s: invited them to this chat. Until they join, messages go by the next route.",
		FormatNumber(numberOfPortal(portal)), peer))
	return nil
}

func numberOfPortal(portal *bridgev2.Portal) string {
	num, _ := NumberForUserID(networkid.UserID(portal.ID))
	return num
}

// notices posts what the router says in the conversation's room.
type notices struct{ conn *Connector }

func (n *notices) RouteChanged(ctx context.Context, ch fallback.RouteChange) {
	n.conn.noticeConv(ctx, ch.Conversation, ch.Text())
	n.conn.saveRouteState(ctx, ch.Conversation)
}

func (n *notices) MessageFellBack(ctx context.Context, f fallback.FellBack) {
	if f.From == fallback.RouteRCS && f.Err == nil && n.conn.rcs != nil {
		n.conn.rcs.revoke(ctx, f.Message.To, f.Message.ID)
	}
	n.conn.noticeConv(ctx, f.Message.Conversation, f.Text())
}

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

// saveRouteState stores a conversation's routing state in its portal, so
// that a restart neither forgets a pin nor announces a route twice.
func (c *Connector) saveRouteState(ctx context.Context, conv string) {
	portal, err := c.br.GetExistingPortalByKey(ctx, portalKeyOf(conv))
	if err != nil || portal == nil {
		return
	}
	st := c.router.State(conv)
	meta := portalMeta(portal)
	meta.Pin, meta.LastRoute, meta.Peer = string(st.Pin), string(st.Last), st.Peer
	if err := portal.Save(ctx); err != nil {
		c.log.Warn("failed to save the conversation's route", zap.Error(err))
	}
}

// restoreRouteState gives the router a portal's stored state once.
func (c *Connector) restoreRouteState(portal *bridgev2.Portal) string {
	conv := convKey(portal.PortalKey)
	c.mu.Lock()
	if c.restored == nil {
		c.restored = map[string]bool{}
	}
	done := c.restored[conv]
	c.restored[conv] = true
	c.mu.Unlock()
	if !done {
		meta := portalMeta(portal)
		if meta.Pin != "" || meta.LastRoute != "" {
			c.router.Restore(conv, fallback.ConvState{Pin: fallback.Route(meta.Pin), Last: fallback.Route(meta.LastRoute), Peer: meta.Peer})
		}
	}
	return conv
}

func portalMeta(portal *bridgev2.Portal) *PortalMetadata {
	meta, ok := portal.Metadata.(*PortalMetadata)
	if !ok || meta == nil {
		meta = &PortalMetadata{}
		portal.Metadata = meta
	}
	return meta
}

// clientFor returns the Client of a login, or nil.
func (c *Connector) clientFor(loginID networkid.UserLoginID) *Client {
	login := c.br.GetCachedUserLoginByID(loginID)
	if login == nil {
		return nil
	}
	cl, _ := login.Client.(*Client)
	return cl
}

// handleReceipts confirms messages that went through Matrix when the contact
// reads them. Homeservers push read receipts to appservices only with
// ephemeral events enabled (MSC2409); Dendrite does not push them.
func (c *Connector) handleReceipts(ctx context.Context, evt *event.Event) {
	if c.router == nil {
		return
	}
	content, ok := evt.Content.Parsed.(*event.ReceiptEventContent)
	if !ok {
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			return
		}
		content, ok = evt.Content.Parsed.(*event.ReceiptEventContent)
		if !ok {
			return
		}
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
			if n := c.router.ConfirmRead(conv, fallback.RouteMatrix, upTo); n > 0 {
				c.log.Debug("confirmed messages read on Matrix", zap.Int("messages", n))
			}
		}
	}
}
