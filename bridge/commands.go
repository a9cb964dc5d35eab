package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// helpSection groups bubbled's own commands in the bot's help.
var helpSection = commands.HelpSection{Name: "Routes", Order: 25}

// addCommands registers bubbled's commands: sms, route, status, ussd, pin and whois.
func (c *Connector) addCommands(proc *commands.Processor) {
	proc.AddHandlers(
		&commands.FullHandler{
			Func:           c.cmdSMS,
			Name:           "sms",
			Help:           commands.HelpMeta{Section: helpSection, Description: "Send a message to this chat's contact as SMS now, whatever route the chat uses.", Args: "<text>"},
			RequiresPortal: true,
			RequiresLogin:  true,
		},
		&commands.FullHandler{
			Func:           c.cmdRoute,
			Name:           "route",
			Help:           commands.HelpMeta{Section: helpSection, Description: "Pin this chat to one route, or let bubbled pick the best (auto).", Args: "<auto|matrix|rcs|sms>"},
			RequiresPortal: true,
			RequiresLogin:  true,
		},
		&commands.FullHandler{
			Func:          c.cmdStatus,
			Name:          "status",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Show each of your lines: modem, SIM, operator, signal, SMS centre and queue."},
			RequiresLogin: true,
		},
		&commands.FullHandler{
			Func:          c.cmdUSSD,
			Name:          "ussd",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Send a USSD code (e.g. *100# for the balance) from this chat's line, or your first line, and show the answer.", Args: "<code>"},
			RequiresLogin: true,
		},
		&commands.FullHandler{
			Func:          c.cmdPIN,
			Name:          "pin",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Unlock a line's SIM with its PIN (your message is redacted; the PIN is not stored).", Args: "<pin> [line number]"},
			RequiresLogin: true,
		},
		&commands.FullHandler{
			Func:          c.cmdSetLineOwner,
			Name:          "set-line-owner",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Give a phone number to a Matrix user: their line may have it (no number check), and another user's line with it is logged out.", Args: "<number> <@user:server>"},
			RequiresAdmin: true,
		},
		&commands.FullHandler{
			Func:          c.cmdWhois,
			Name:          "whois",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Show whether a number is on Matrix, where that answer came from and how old it is.", Args: "<number>"},
			RequiresLogin: true,
		},
	)
}

// cmdSMS sends its text as SMS to the portal's contact now.
func (c *Connector) cmdSMS(ce *commands.Event) {
	if !c.ownsPortal(ce) {
		return
	}
	if len(ce.Args) == 0 {
		ce.Reply("Usage: `$cmdprefix sms <text>`")
		return
	}
	to, ok := NumberForUserID(networkid.UserID(ce.Portal.ID))
	if !ok {
		ce.Reply("This sender has a name instead of a number, so it cannot receive SMS.")
		return
	}
	conv := c.restoreRouteState(ce.Portal)
	_, err := c.router.SendVia(ce.Ctx, &fallback.Message{
		ID:           "cmd:" + string(ce.EventID),
		Conversation: conv,
		To:           to,
		Text:         ce.RawArgs,
		Line:         string(ce.Portal.Receiver),
		Created:      time.Now(),
	}, fallback.RouteSMS)
	if err != nil {
		ce.Reply("The SMS was not sent: %v", err)
		return
	}
	ce.Reply("Queued as SMS: it goes out as soon as the modem can, and this room hears if it fails.")
}

// cmdRoute pins the portal's conversation to a route, or unpins it.
func (c *Connector) cmdRoute(ce *commands.Event) {
	if !c.ownsPortal(ce) {
		return
	}
	conv := c.restoreRouteState(ce.Portal)
	if len(ce.Args) != 1 {
		st := c.router.State(conv)
		pin := "auto (the best route that reaches the contact)"
		if st.Pin != "" {
			pin = string(st.Pin)
		}
		ce.Reply("This chat's route: %s. Change it with `$cmdprefix route <auto|matrix|rcs|sms>`.", pin)
		return
	}
	rt, err := fallback.ParseRoute(strings.ToLower(ce.Args[0]))
	if err != nil {
		ce.Reply("%v. Use one of auto, matrix, rcs, sms.", err)
		return
	}
	if err := c.router.Pin(conv, rt); err != nil {
		ce.Reply("Can't pin this chat: %v", err)
		return
	}
	c.saveRouteState(ce.Ctx, conv)
	if rt == fallback.RouteAuto {
		ce.Reply("This chat now takes the best route that reaches the contact.")
		return
	}
	ce.Reply("This chat is pinned to %s: messages go only that way, with no fallback.", rt)
}

// cmdWhois shows what the directory knows about a number.
func (c *Connector) cmdWhois(ce *commands.Event) {
	if len(ce.Args) == 0 {
		ce.Reply("Usage: `$cmdprefix whois <number>`")
		return
	}
	num, err := phone.Parse(ce.RawArgs, c.cfg.DefaultRegion)
	if err != nil {
		ce.Reply("%v", err)
		return
	}
	res, err := c.dir.Lookup(ce.Ctx, num)
	if err != nil {
		ce.Reply("Could not find out whether %s is on Matrix: %v", phone.Format(num), err)
		return
	}
	age := "just now"
	if !res.Fetched.IsZero() {
		age = time.Since(res.Fetched).Round(time.Second).String() + " ago"
	}
	source := string(res.Source)
	if source == "" {
		source = "no source knows it"
	}
	if !res.Found() {
		ce.Reply("%s is not on Matrix as far as bubbled knows (%s; answered %s). Messages go by RCS or SMS.", phone.Format(num), source, age)
		return
	}
	ce.Reply("%s is on Matrix as %s (from %s; answered %s).", phone.Format(num), res.MXID, source, age)
}

// userLines lists the caller's line clients, the portal's own first.
func (c *Connector) userLines(ce *commands.Event) []*Client {
	var out []*Client
	if ce.Portal != nil {
		if cl := c.clientFor(ce.Portal.Receiver); cl != nil && cl.login.UserMXID == ce.User.MXID {
			out = append(out, cl)
		}
	}
	for _, login := range ce.User.GetUserLogins() {
		if cl, ok := login.Client.(*Client); ok && (len(out) == 0 || out[0] != cl) {
			out = append(out, cl)
		}
	}
	return out
}

// cmdStatus reports the state of each of the caller's lines.
func (c *Connector) cmdStatus(ce *commands.Event) {
	var b strings.Builder
	for _, cl := range c.userLines(ce) {
		fmt.Fprintf(&b, "**Line %s** (%s): ", phone.Format(cl.meta.Number), cl.modemKey)
		line := cl.currentLine()
		if line == nil {
			b.WriteString("not connected\n")
			continue
		}
		st, err := line.Status(ce.Ctx)
		if err != nil {
			fmt.Fprintf(&b, "%s, the modem does not answer (%v)\n", line.State(), err)
			continue
		}
		fmt.Fprintf(&b, "%s · SIM %s · %s %s", st.State, st.SIM, st.Manufacturer, st.Model)
		if st.Operator != "" {
			fmt.Fprintf(&b, " · %s", st.Operator)
		}
		fmt.Fprintf(&b, " · %s", st.Registration)
		if st.SignalDBm != 0 {
			fmt.Fprintf(&b, " · signal %d dBm (%d/4)", st.SignalDBm, st.SignalBars)
		}
		if st.SMSC != "" {
			fmt.Fprintf(&b, " · SMS centre %s", st.SMSC)
		}
		fmt.Fprintf(&b, " · %d SMS waiting", st.QueueLength)
		if st.LastRecovery != 0 {
			fmt.Fprintf(&b, " · last recovered by %s", st.LastRecovery)
		}
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		ce.Reply("You have no lines. Use `login` to add one.")
		return
	}
	ce.Reply("%s", strings.TrimSpace(b.String()))
}

// cmdUSSD sends a USSD code and shows the network's answer.
func (c *Connector) cmdUSSD(ce *commands.Event) {
	if len(ce.Args) != 1 {
		ce.Reply("Usage: `$cmdprefix ussd <code>`, e.g. `$cmdprefix ussd *100#`")
		return
	}
	lines := c.userLines(ce)
	if len(lines) == 0 || lines[0].currentLine() == nil {
		ce.Reply("None of your lines is connected.")
		return
	}
	if err := c.quota.Take(ce.Ctx, "ussd:"+lines[0].modemKey, c.cfg.SMS.USSDPerDay); err != nil {
		ce.Reply("The USSD code was not sent: %v. The cap is network.sms.ussd_per_day.", err)
		return
	}
	answer, err := lines[0].currentLine().USSD(ce.Ctx, ce.Args[0])
	if err != nil {
		ce.Reply("The USSD code got no answer: %v", err)
		return
	}
	ce.Reply("%s answered: %s", ce.Args[0], answer)
}

// cmdPIN unlocks a line's SIM and starts the line.
func (c *Connector) cmdPIN(ce *commands.Event) {
	ce.Redact()
	if len(ce.Args) < 1 {
		ce.Reply("Usage: `$cmdprefix pin <pin> [line number]`")
		return
	}
	lines := c.userLines(ce)
	if len(ce.Args) > 1 {
		num, err := phone.Parse(strings.Join(ce.Args[1:], " "), c.cfg.DefaultRegion)
		if err != nil {
			ce.Reply("%v", err)
			return
		}
		lines = slices.DeleteFunc(lines, func(cl *Client) bool { return cl.meta.Number != num })
	}
	if len(lines) == 0 || lines[0].currentLine() == nil {
		ce.Reply("No such line is connected.")
		return
	}
	cl := lines[0]
	if err := cl.currentLine().EnterPIN(ce.Ctx, ce.Args[0]); err != nil {
		ce.Reply("The SIM of line %s refused the PIN: %v", phone.Format(cl.meta.Number), err)
		return
	}
	go func() {
		cl.Disconnect()
		cl.Connect(cl.login.Log.WithContext(context.Background()))
	}()
	ce.Reply("The SIM of line %s is unlocked; the line starts now. (Your message with the PIN was redacted.)", phone.Format(cl.meta.Number))
}

// ownsPortal is true when the portal is a chat of the caller's own line;
// otherwise it tells the caller so. Per-chat commands act on that line.
func (c *Connector) ownsPortal(ce *commands.Event) bool {
	if login := c.br.GetCachedUserLoginByID(ce.Portal.Receiver); login != nil && login.UserMXID == ce.User.MXID {
		return true
	}
	ce.Reply("This chat belongs to another user's line: only that line's owner can use `%s` here.", ce.Command)
	return false
}

// cmdSetLineOwner (admins) gives a number to a Matrix user: their line may
// take it without a number check, and another user's line with it is
// logged out (the one way a line leaves its owner without their say).
func (c *Connector) cmdSetLineOwner(ce *commands.Event) {
	if len(ce.Args) < 2 {
		ce.Reply("Usage: `$cmdprefix set-line-owner <number> <@user:server>`")
		return
	}
	owner := id.UserID(ce.Args[len(ce.Args)-1])
	if _, _, err := owner.ParseAndValidateRelaxed(); err != nil || !strings.HasPrefix(string(owner), "@") {
		ce.Reply("%q is not a Matrix user ID; write it like @alice:example.org.", string(owner))
		return
	}
	num, err := phone.Parse(strings.Join(ce.Args[:len(ce.Args)-1], " "), c.cfg.DefaultRegion)
	if err != nil {
		ce.Reply("%v", err)
		return
	}
	c.br.DB.KV.Set(ce.Ctx, lineOwnerKey(num), string(owner))
	note := "" // every login is loaded at start, so the cache has it
	if login := c.br.GetCachedUserLoginByID(LoginIDForNumber(num)); login != nil && login.UserMXID != owner {
		if cl, ok := login.Client.(*Client); ok {
			cl.notifyOwner(fmt.Sprintf("A bridge admin gave %s to another user: this line is logged out here.", phone.Format(num)))
		}
		login.Delete(ce.Ctx, status.BridgeState{StateEvent: status.StateLoggedOut, Reason: "LINE_REASSIGNED"}, bridgev2.DeleteOpts{})
		c.refreshLocalLines(ce.Ctx)
		note = fmt.Sprintf(" The line of %s with it is logged out.", login.UserMXID)
	}
	ce.Reply("%s now belongs to %s, who can log it in (no number check).%s", phone.Format(num), owner, note)
}
