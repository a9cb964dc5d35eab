package bridge

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/connectors/gate"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms"
)

// gate.go is the glue of the gate for strangers (network.privacy): it asks
// connectors/gate where an inbound SMS goes, keeps the per-line "Unknown
// senders" and "Codes" rooms, and runs the accept, block and unblock commands.

// Portal IDs of a line's gate rooms; no ghost ID looks like them (ids.go).
const (
	unknownPortalID networkid.PortalID = "bubbled_unknown_senders"
	codesPortalID   networkid.PortalID = "bubbled_codes"
)

// smsConverter makes the Matrix message of an inbound SMS.
type smsConverter = func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, *sms.Message) (*bridgev2.ConvertedMessage, error)

// startGate builds the gate from network.privacy.
func (c *Connector) startGate(ctx context.Context) error {
	p := c.cfg.Privacy
	if err := gate.Upgrade(ctx, c.br.DB.Database); err != nil {
		return err
	}
	blocked := make([]string, 0, len(p.Blocked))
	for _, n := range p.Blocked {
		blocked = append(blocked, string(UserIDForSender(n, c.cfg.DefaultRegion)))
	}
	g, err := gate.New(gate.Config{Policy: gate.Policy(p.UnknownSenders), Codes: p.CodesTTL > 0, Blocked: blocked}, gate.NewStore(c.br.DB.Database))
	if err != nil {
		return fmt.Errorf("set up network.privacy: %w", err)
	}
	c.gate = g
	return nil
}

func senderKind(uid networkid.UserID) gate.Kind {
	num, ok := NumberForUserID(uid)
	switch {
	case !ok:
		return gate.Alpha
	case !strings.HasPrefix(num, "+"):
		return gate.ShortCode
	}
	return gate.Phone
}

// gateSMS says where an inbound SMS goes: the portal and the converter to
// use, or skip when it stays out of Matrix (the line still marks it done).
// A quarantined SMS is stored first, so accept can move it after a restart.
func (cl *Client) gateSMS(ctx context.Context, m *sms.Message, sender networkid.UserID) (networkid.PortalKey, smsConverter, bool, error) {
	key := PortalKeyFor(sender, cl.login.ID)
	g := cl.conn.gate
	if g == nil {
		return key, convertSMS, false, nil
	}
	s := gate.Sender{Key: string(sender), Kind: senderKind(sender)}
	_, s.InContacts = cl.conn.contactOf(sender)
	portal, err := cl.conn.br.GetExistingPortalByKey(ctx, key)
	if err != nil {
		return key, nil, false, fmt.Errorf("find the room of SMS %s: %w", m.ID, err)
	}
	s.HasRoom = portal != nil && portal.MXID != ""
	v, err := g.Decide(ctx, string(cl.login.UserMXID), s)
	if err != nil {
		return key, nil, false, fmt.Errorf("decide where SMS %s goes: %w", m.ID, err)
	}
	switch v {
	case gate.Blocked, gate.Drop:
		cl.log.Info("kept an SMS out of Matrix", zap.String("sms_id", m.ID), zap.String("from", phone.Mask(m.From)), zap.Stringer("verdict", v))
		return key, nil, true, nil
	case gate.Quarantine:
		h := gate.Held{Line: string(cl.login.ID), ID: m.ID, Sender: string(sender), Body: m.Text, Parts: m.Parts, At: m.Time}
		if err := g.Store().Hold(ctx, h); err != nil {
			return key, nil, false, err
		}
		label := senderLabel(sender)
		return PortalKeyFor(networkid.UserID(unknownPortalID), cl.login.ID), func(ctx context.Context, p *bridgev2.Portal, i bridgev2.MatrixAPI, m *sms.Message) (*bridgev2.ConvertedMessage, error) {
			conv, err := convertSMS(ctx, p, i, m)
			if err == nil {
				c := conv.Parts[0].Content
				c.Body = label + ": " + c.Body
			}
			return conv, err
		}, false, nil
	case gate.Codes:
		ttl := cl.conn.cfg.Privacy.CodesTTL
		return PortalKeyFor(networkid.UserID(codesPortalID), cl.login.ID), func(ctx context.Context, p *bridgev2.Portal, i bridgev2.MatrixAPI, m *sms.Message) (*bridgev2.ConvertedMessage, error) {
			conv, err := convertSMS(ctx, p, i, m)
			if err == nil {
				conv.Disappear = database.DisappearingSetting{Type: event.DisappearingTypeAfterSend, Timer: ttl}
			}
			return conv, err
		}, false, nil
	}
	return key, convertSMS, false, nil
}

// senderLabel is how a sender is written in the gate rooms and commands.
func senderLabel(uid networkid.UserID) string {
	if num, ok := NumberForUserID(uid); ok {
		if strings.HasPrefix(num, "+") {
			return phone.Format(num)
		}
		return num
	}
	return *userInfoFor(uid).Name
}

// gateChatInfo describes a line's gate rooms, or returns nil for others.
func (cl *Client) gateChatInfo(portal *bridgev2.Portal) *bridgev2.ChatInfo {
	info := &bridgev2.ChatInfo{
		Type: ptr(database.RoomTypeDefault),
		Members: &bridgev2.ChatMemberList{Members: []bridgev2.ChatMember{
			{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: UserIDForNumber(cl.meta.Number)}, Membership: event.MembershipJoin},
		}},
	}
	line := phone.Format(cl.meta.Number)
	switch portal.ID {
	case unknownPortalID:
		info.Name = ptr("Unknown senders (" + line + ")")
		info.Topic = ptr("SMS from numbers that are not in your contacts. `" + cl.conn.br.Config.CommandPrefix +
			" accept <number>` gives a sender their own room with what they sent; `" + cl.conn.br.Config.CommandPrefix + " block <number>` silences them.")
	case codesPortalID:
		ttl := cl.conn.cfg.Privacy.CodesTTL
		info.Name = ptr("Codes (" + line + ")")
		info.Topic = ptr("SMS from short codes and named senders. They disappear " + ttl.String() + " after arriving.")
		info.Disappear = &database.DisappearingSetting{Type: event.DisappearingTypeAfterSend, Timer: ttl}
	default:
		return nil
	}
	return info
}

// addGateCommands registers accept, block and unblock.
func (c *Connector) addGateCommands(proc *commands.Processor) {
	section := commands.HelpSection{Name: "Strangers", Order: 26}
	proc.AddHandlers(
		&commands.FullHandler{Func: c.cmdAccept, Name: "accept", RequiresLogin: true,
			Help: commands.HelpMeta{Section: section, Args: "<number>", Description: "Give a quarantined sender their own room, with what they sent so far."}},
		&commands.FullHandler{Func: c.cmdBlock, Name: "block", RequiresLogin: true,
			Help: commands.HelpMeta{Section: section, Args: "<number>", Description: "Keep a sender's SMS out of Matrix (bubbled still receives and stores them)."}},
		&commands.FullHandler{Func: c.cmdUnblock, Name: "unblock", RequiresLogin: true,
			Help: commands.HelpMeta{Section: section, Args: "<number>", Description: "Let a blocked sender's SMS into Matrix again."}},
	)
}

// gateTarget parses a gate command: the sender, and the caller's lines it
// applies to (only the room's line in a gate room, which must be theirs).
func (c *Connector) gateTarget(ce *commands.Event) (networkid.UserID, []*bridgev2.UserLogin, bool) {
	if strings.TrimSpace(ce.RawArgs) == "" || c.gate == nil {
		ce.Reply("Usage: `$cmdprefix %s <number>`", ce.Command)
		return "", nil, false
	}
	sender := UserIDForSender(strings.TrimSpace(ce.RawArgs), c.cfg.DefaultRegion)
	if ce.Portal != nil && (ce.Portal.ID == unknownPortalID || ce.Portal.ID == codesPortalID) {
		login := c.br.GetCachedUserLoginByID(ce.Portal.Receiver)
		if login == nil || login.UserMXID != ce.User.MXID {
			ce.Reply("This room belongs to another user's line: only they can %s senders here.", ce.Command)
			return "", nil, false
		}
		return sender, []*bridgev2.UserLogin{login}, true
	}
	return sender, ce.User.GetUserLogins(), true
}

// cmdAccept lets a sender in and moves what they sent from each of the
// caller's Unknown senders rooms into their own room.
func (c *Connector) cmdAccept(ce *commands.Event) {
	sender, logins, ok := c.gateTarget(ce)
	if !ok {
		return
	}
	if err := c.gate.Store().SetState(ce.Ctx, string(ce.User.MXID), string(sender), gate.StateAccepted); err != nil {
		ce.Reply("Could not accept %s: %v", senderLabel(sender), err)
		return
	}
	moved := 0
	for _, login := range logins {
		n, err := c.releaseHeld(ce.Ctx, login, sender)
		moved += n
		if err != nil {
			ce.Reply("Accepted %s, but moving their messages stopped: %v. Run the command again to finish.", senderLabel(sender), err)
			return
		}
	}
	ce.Reply("Accepted %s: %d quarantined message(s) moved to their own room, where their next SMS go too.", senderLabel(sender), moved)
}

// releaseHeld moves one line's quarantined messages from sender into the
// sender's own room. Each is first removed from the Unknown senders room
// (bridgev2 knows a message ID once per line), then bridged again under the
// same ID; the store forgets them last, so a crash midway only repeats.
func (c *Connector) releaseHeld(ctx context.Context, login *bridgev2.UserLogin, sender networkid.UserID) (int, error) {
	store := c.gate.Store()
	held, err := store.Held(ctx, string(login.ID), string(sender))
	if err != nil || len(held) == 0 {
		return 0, err
	}
	from := bridgev2.EventSender{Sender: sender}
	for _, h := range held {
		login.QueueRemoteEvent(&simplevent.MessageRemove{
			EventMeta:     simplevent.EventMeta{Type: bridgev2.RemoteEventMessageRemove, PortalKey: PortalKeyFor(networkid.UserID(unknownPortalID), login.ID), Sender: from, Timestamp: time.Now()},
			TargetMessage: networkid.MessageID(h.ID),
		})
		res := login.QueueRemoteEvent(&simplevent.Message[*sms.Message]{
			EventMeta:          simplevent.EventMeta{Type: bridgev2.RemoteEventMessage, PortalKey: PortalKeyFor(sender, login.ID), CreatePortal: true, Sender: from, Timestamp: h.At},
			Data:               &sms.Message{ID: h.ID, LineID: h.Line, Text: h.Body, Time: h.At, Parts: h.Parts},
			ID:                 networkid.MessageID(h.ID),
			ConvertMessageFunc: ownerJoinedFirst(c, convertSMS), // the sender's room may be new
		})
		if err := remoteEventError(res); err != nil {
			return 0, fmt.Errorf("move SMS %s: %w", h.ID, err)
		}
	}
	// None of theirs is left there: the ghost leaves (a crash repeats it).
	login.QueueRemoteEvent(&simplevent.ChatInfoChange{
		EventMeta: simplevent.EventMeta{Type: bridgev2.RemoteEventChatInfoChange, PortalKey: PortalKeyFor(networkid.UserID(unknownPortalID), login.ID), Sender: from, Timestamp: time.Now()},
		ChatInfoChange: &bridgev2.ChatInfoChange{MemberChanges: &bridgev2.ChatMemberList{
			Members: []bridgev2.ChatMember{{EventSender: from, Membership: event.MembershipLeave}}}},
	})
	return len(held), store.Release(ctx, string(login.ID), string(sender))
}

// cmdBlock keeps a sender out of Matrix for the caller.
func (c *Connector) cmdBlock(ce *commands.Event) {
	sender, logins, ok := c.gateTarget(ce)
	if !ok {
		return
	}
	if err := c.gate.Store().SetState(ce.Ctx, string(ce.User.MXID), string(sender), gate.StateBlocked); err != nil {
		ce.Reply("Could not block %s: %v", senderLabel(sender), err)
		return
	}
	for _, login := range logins {
		if err := c.gate.Store().Release(ce.Ctx, string(login.ID), string(sender)); err != nil {
			c.log.Warn("failed to forget a blocked sender's quarantined messages", zap.Error(err))
		}
	}
	ce.Reply("Blocked %s: their SMS are still received and kept by bubbled, but no longer reach Matrix. `$cmdprefix unblock` undoes it.", senderLabel(sender))
}

// cmdUnblock undoes the caller's block of a sender.
func (c *Connector) cmdUnblock(ce *commands.Event) {
	sender, _, ok := c.gateTarget(ce)
	if !ok {
		return
	}
	if c.gate.BlockedByConfig(string(sender)) {
		ce.Reply("%s is blocked for everyone in the config (network.privacy.blocked); the operator can remove it there.", senderLabel(sender))
		return
	}
	if err := c.gate.Store().SetState(ce.Ctx, string(ce.User.MXID), string(sender), ""); err != nil {
		ce.Reply("Could not unblock %s: %v", senderLabel(sender), err)
		return
	}
	ce.Reply("Unblocked %s: their next SMS reach Matrix again.", senderLabel(sender))
}
