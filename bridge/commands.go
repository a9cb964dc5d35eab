package bridge

import (
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/bubbled/bubbled/fallback"
)

// helpSection groups bubbled's own commands in the bot's help.
var helpSection = commands.HelpSection{Name: "Routes", Order: 25}

// addCommands registers the route commands: sms, route and whois.
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
			Func:          c.cmdWhois,
			Name:          "whois",
			Help:          commands.HelpMeta{Section: helpSection, Description: "Show whether a number is on Matrix, where that answer came from and how old it is.", Args: "<number>"},
			RequiresLogin: true,
		},
	)
}

// cmdSMS sends its text as SMS to the portal's contact now.
func (c *Connector) cmdSMS(ce *commands.Event) {
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
	num, err := ParseNumber(ce.RawArgs, c.cfg.DefaultRegion)
	if err != nil {
		ce.Reply("%v", err)
		return
	}
	res, err := c.dir.Lookup(ce.Ctx, num)
	if err != nil {
		ce.Reply("Could not find out whether %s is on Matrix: %v", FormatNumber(num), err)
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
		ce.Reply("%s is not on Matrix as far as bubbled knows (%s; answered %s). Messages go by RCS or SMS.", FormatNumber(num), source, age)
		return
	}
	ce.Reply("%s is on Matrix as %s (from %s; answered %s).", FormatNumber(num), res.MXID, source, age)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
