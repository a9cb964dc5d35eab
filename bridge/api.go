package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/api"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
	"github.com/bubbled/bubbled/fallback"
)

// api.go is the glue of the send API (connectors/api): a message taken by
// the API goes through the router from its line, as one its owner wrote
// would, and shows in the contact's room, marked with the token's name.

var _ api.Sender = (*apiSender)(nil)

// StartAPI builds the send API on the bridge's database and router and
// starts its workers (they first pick up what a crash left). Call it after
// the connector started; Stop stops the workers. The caller serves the
// returned handler on api.listen.
func (c *Connector) StartAPI(ctx context.Context, cfg config.API) (*api.Server, error) {
	if c.router == nil {
		return nil, errors.New("start the send API: the bridge has not started")
	}
	if err := api.Upgrade(ctx, c.br.DB.Database); err != nil {
		return nil, err
	}
	tokens := make([]api.Token, 0, len(cfg.Tokens))
	for _, t := range cfg.Tokens {
		tokens = append(tokens, api.Token{Name: t.Name, Secret: t.Token, Lines: t.Lines, Recipients: t.Recipients, DailyCap: t.DailyCap})
	}
	srv, err := api.New(api.Config{
		Tokens:        tokens,
		Store:         api.NewStore(c.br.DB.Database),
		Sender:        &apiSender{conn: c},
		DefaultRegion: c.cfg.DefaultRegion,
		CheckText:     c.checkSMSText,
		Log:           c.log.Named("api"),
	})
	if err != nil {
		return nil, fmt.Errorf("set up the send API (api.tokens): %w", err)
	}
	srv.Start(context.WithoutCancel(ctx))
	c.mu.Lock()
	c.api = srv
	c.mu.Unlock()
	return srv, nil
}

// checkSMSText refuses a text that needs more SMS parts than
// network.sms.max_parts allows, before the API answers 202.
func (c *Connector) checkSMSText(text string) error {
	_, err := pdu.EncodeSubmit("+10000000000", text, pdu.SubmitOptions{MaxParts: c.cfg.SMS.MaxParts, NextRef: func() uint16 { return 0 }})
	if err != nil {
		return fmt.Errorf("too long for SMS: %w", err)
	}
	return nil
}

// apiSender hands the API's messages to the router and posts them in Matrix.
type apiSender struct{ conn *Connector }

// Send routes m from its line to its contact, under m.RouterID() (so that
// a repeat after a restart is no second message).
func (s *apiSender) Send(ctx context.Context, m *api.Message) (fallback.Route, error) {
	c := s.conn
	loginID := networkid.UserLoginID(strings.TrimPrefix(m.Line, "+"))
	if c.br.GetCachedUserLoginByID(loginID) == nil {
		return "", fallback.Temporary(fmt.Errorf("the line %s is not logged in", m.Line))
	}
	// The room first: the router's route notice and state are kept in it.
	portal, err := c.br.GetPortalByKey(ctx, PortalKeyFor(UserIDForNumber(m.To), loginID))
	if err == nil && portal.MXID == "" {
		err = portal.CreateMatrixRoom(ctx, c.br.GetCachedUserLoginByID(loginID), nil)
	}
	if err != nil {
		return "", fallback.Temporary(fmt.Errorf("make the room of %s: %w", phone.Mask(m.To), err))
	}
	conv := c.restoreRouteState(portal)
	msg := &fallback.Message{ID: m.RouterID(), Conversation: conv, To: m.To, Text: m.Text, Line: string(loginID), Created: m.Created}
	var rcpt *fallback.Receipt
	if m.Route == string(fallback.RouteAuto) {
		rcpt, err = c.router.Send(ctx, msg)
	} else {
		rcpt, err = c.router.SendVia(ctx, msg, fallback.Route(m.Route))
	}
	if err != nil {
		return "", err
	}
	if !rcpt.ConfirmBy.IsZero() {
		c.saveWait(ctx, *msg, *rcpt)
	}
	return rcpt.Route, nil
}

// Mirror posts m in the contact's room of its line (made if needed) from
// the bridge bot, under the per-message profile "API token <name>" with
// its text fallback, so every client shows who sent it.
func (s *apiSender) Mirror(ctx context.Context, m *api.Message) error {
	loginID := networkid.UserLoginID(strings.TrimPrefix(m.Line, "+"))
	login := s.conn.br.GetCachedUserLoginByID(loginID)
	if login == nil {
		return fmt.Errorf("the line %s is not logged in", m.Line)
	}
	res := login.QueueRemoteEvent(&simplevent.Message[*api.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    PortalKeyFor(UserIDForNumber(m.To), loginID),
			CreatePortal: true,
			Sender:       bridgev2.EventSender{IsFromMe: true, SenderLogin: loginID},
			Timestamp:    m.Created,
		},
		Data:               m,
		ID:                 networkid.MessageID(m.RouterID()),
		ConvertMessageFunc: convertAPIMessage,
	})
	if err := remoteEventError(res); err != nil {
		return fmt.Errorf("post API message %s in Matrix: %w", m.ID, err)
	}
	return nil
}

// convertAPIMessage makes the Matrix message of an API message.
func convertAPIMessage(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *api.Message) (*bridgev2.ConvertedMessage, error) {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: m.Text,
		BeeperPerMessageProfile: &event.BeeperPerMessageProfile{ID: "api:" + m.Token, Displayname: "API token " + m.Token}}
	content.AddPerMessageProfileFallback()
	return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
		Type: event.EventMessage, Content: content, DBMetadata: &MessageMetadata{Route: m.TookRoute},
	}}}, nil
}

// UseWebhooks sets the outgoing webhooks (api.webhooks) that Start starts,
// before any line receives. Call it before the bridge starts.
func (c *Connector) UseWebhooks(hooks []config.APIWebhook) { c.hookCfg = hooks }

// startWebhooks starts the delivery of received SMS to api.webhooks (what
// a restart left is delivered first).
func (c *Connector) startWebhooks(ctx context.Context) error {
	if len(c.hookCfg) == 0 {
		return nil
	}
	if err := api.Upgrade(ctx, c.br.DB.Database); err != nil {
		return err
	}
	hooks := make([]api.Webhook, 0, len(c.hookCfg))
	for _, h := range c.hookCfg {
		hooks = append(hooks, api.Webhook{URL: h.URL, Secret: h.Secret, Lines: h.Lines})
	}
	c.hooks = api.NewWebhooks(api.WebhookConfig{Hooks: hooks, DB: c.br.DB.Database, Log: c.log.Named("webhooks")})
	c.hooks.Start(context.WithoutCancel(ctx))
	return nil
}

// webhookSMS stores the webhooks of a received SMS before it is bridged.
func (cl *Client) webhookSMS(ctx context.Context, m *sms.Message) error {
	if cl.conn.hooks == nil {
		return nil
	}
	return cl.conn.hooks.Received(ctx, api.Received{ID: m.ID, Line: cl.meta.Number, From: m.From, Text: m.Text,
		Parts: m.Parts, Sent: m.Time, Received: time.Now()})
}

// apiOutcome records an outcome of an SMS the API sent in its status; it
// reports whether o was about an API message.
func (c *Connector) apiOutcome(ctx context.Context, o sms.Outcome) bool {
	srv := c.apiServer()
	if srv == nil || !strings.HasPrefix(o.MessageID, api.RouterIDPrefix) {
		return false
	}
	st, reason := api.StatusQueued, o.Reason
	switch o.Kind {
	case sms.OutcomeSent:
		st = api.StatusSent
	case sms.OutcomeDelivered:
		st = api.StatusDelivered
	case sms.OutcomeFailed:
		st = api.StatusFailed
	case sms.OutcomeUnknown:
		st, reason = api.StatusFailed, "it may or may not have been sent: "+o.Reason
	case sms.OutcomeHeld:
		reason = "held back: " + o.Reason
	}
	srv.Outcome(ctx, o.MessageID, st, reason)
	c.log.Debug("recorded the outcome of an API message", zap.String("id", o.MessageID), zap.String("status", string(st)))
	return true
}

// apiConfirmed marks an API message delivered when its route confirmed it.
func (c *Connector) apiConfirmed(ctx context.Context, routerID string) {
	if srv := c.apiServer(); srv != nil {
		srv.Outcome(ctx, routerID, api.StatusDelivered, "")
	}
}

func (c *Connector) apiServer() *api.Server { c.mu.Lock(); defer c.mu.Unlock(); return c.api }

// apiRCSMessage confirms (as delivered) the API message an RCS receipt
// names by its derived RCS ID and returns its message in Matrix, or nil.
func (c *Connector) apiRCSMessage(ctx context.Context, login *bridgev2.UserLogin, rcsID string) (*database.Message, error) {
	if c.apiServer() == nil {
		return nil, nil
	}
	m, err := api.NewStore(c.br.DB.Database).FindAwaiting(ctx, string(fallback.RouteRCS), time.Now(), func(id string) bool { return rcs.MessageID(id, 0) == rcsID })
	if m == nil {
		return nil, err
	}
	c.confirm(ctx, m.RouterID())
	c.apiConfirmed(ctx, m.RouterID()) // also when the router awaited nothing
	return c.br.DB.Message.GetFirstPartByID(ctx, login.ID, networkid.MessageID(m.RouterID()))
}
