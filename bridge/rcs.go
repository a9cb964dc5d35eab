package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/fallback"
)

// rcs.go is the RCS rung of the ladder: the provider (Google RBM or a MaaP
// platform) as a fallback.Transport with a capability cache, its webhooks on
// the appservice listener, and inbound RCS events turned into Matrix events
// in the contact's portal.

// Message ID prefixes of RCS messages in the bridgev2 database.
const (
	rcsOutPrefix = "rcs:"   // our messages sent by RCS: "rcs:<provider message ID>"
	rcsInPrefix  = "rcsin:" // the contact's RCS messages
)

// startRCS builds the provider and mounts its webhooks. It does nothing when
// network.rcs.provider is empty.
func (c *Connector) startRCS(ctx context.Context) error {
	rc := c.cfg.RCS
	var (
		prov rcs.Provider
		wh   rcs.WebhookConfig
		err  error
	)
	switch rc.Provider {
	case "":
		return nil
	case "rbm":
		prov, err = rcs.NewRBM(rcs.RBMConfig{AgentID: rc.RBM.AgentID, ServiceAccountFile: rc.RBM.ServiceAccountFile, BaseURL: rc.RBM.BaseURL, TokenURL: rc.RBM.TokenURL})
		wh.RBM = &rcs.RBMWebhook{AgentID: rc.RBM.AgentID, ClientToken: rc.RBM.WebhookClientToken}
	case "maap":
		m := rc.MaaP
		prov, err = rcs.NewMaaP(rcs.MaaPConfig{BotID: m.BotID, BaseURL: m.BaseURL, APIVersion: m.APIVersion, TokenURL: m.TokenURL,
			ClientID: m.ClientID, ClientSecret: m.ClientSecret, CredentialsInBody: m.CredentialsInBody, Scopes: m.Scopes})
		wh.MaaP = &rcs.MaaPWebhook{BotID: m.BotID, Auth: m.WebhookAuth, Secret: m.WebhookSecret, SignatureHeader: m.WebhookSignatureHeader}
	default:
		return fmt.Errorf("network.rcs.provider %q is not rbm or maap", rc.Provider)
	}
	if err != nil {
		return fmt.Errorf("set up the RCS provider (network.rcs.%s): %w", rc.Provider, err)
	}
	if err := rcs.Upgrade(ctx, c.br.DB.Database); err != nil {
		return fmt.Errorf("upgrade RCS tables: %w", err)
	}
	c.rcs = newRCSTransport(prov, rc.CapabilityTTLReachable, rc.CapabilityTTLUnreachable, rc.MessageTTL, c.log.Named("rcs"))
	wh.PathPrefix = rc.WebhookPath
	wh.Store = rcs.NewDBEventStore(c.br.DB.Database)
	wh.Consumer = c.handleRCSEvent
	wh.Logger = c.log.Named("rcs_webhook")
	c.rcsHook, err = rcs.NewWebhookHandler(wh)
	if err != nil {
		return fmt.Errorf("set up the RCS webhook (network.rcs): %w", err)
	}
	mx, ok := c.br.Matrix.(*matrix.Connector)
	if !ok || mx.AS == nil || mx.AS.Router == nil {
		return errors.New("set up the RCS webhook: the appservice listener is not available")
	}
	mx.AS.Router.Handle(strings.TrimRight(rc.WebhookPath, "/")+"/", c.rcsHook)
	if rc.PublicURL != "" {
		path := strings.TrimRight(rc.WebhookPath, "/") + "/media/"
		c.rcs.media, err = newRCSMedia(ctx, c.br.DB.Database, strings.TrimRight(rc.PublicURL, "/")+path, rc.MessageTTL, c.log.Named("rcs_media"))
		if err != nil {
			return err
		}
		mx.AS.Router.Handle(path, c.rcs.media)
	}
	if err := c.rcsHook.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start the RCS webhook worker: %w", err)
	}
	c.log.Info("started the RCS route", zap.String("provider", prov.Name()), zap.String("webhook_path", rc.WebhookPath))
	return nil
}

// rcsCapability is a cached capability answer.
type rcsCapability struct {
	reachable bool
	until     time.Time
}

// rcsTransport sends through the RCS provider. Capability answers are cached
// for network.rcs.capability_ttl_reachable / _unreachable; a contact who
// unsubscribed gets SMS only until they subscribe again.
type rcsTransport struct {
	prov                     rcs.Provider
	reachableTTL, unreachTTL time.Duration
	messageTTL               time.Duration
	log                      *zap.Logger
	// media serves files to the provider; nil without network.rcs.public_url
	// (then no files go by RCS). Set once by startRCS.
	media *rcsMedia

	mu           sync.Mutex // guards cache and unsubscribed
	cache        map[string]rcsCapability
	unsubscribed map[string]bool
}

// newRCSTransport wraps a provider with the capability lifetimes and the
// messages' time-to-live.
func newRCSTransport(prov rcs.Provider, reachableTTL, unreachableTTL, messageTTL time.Duration, log *zap.Logger) *rcsTransport {
	return &rcsTransport{prov: prov, reachableTTL: reachableTTL, unreachTTL: unreachableTTL, messageTTL: messageTTL, log: log,
		cache: map[string]rcsCapability{}, unsubscribed: map[string]bool{}}
}

var (
	_ fallback.Transport   = (*rcsTransport)(nil)
	_ fallback.Reacher     = (*rcsTransport)(nil)
	_ fallback.Invalidator = (*rcsTransport)(nil)
)

func (t *rcsTransport) Route() fallback.Route { return fallback.RouteRCS }

// Reachable asks the provider whether the agent can reach the number, from
// the cache when it can.
func (t *rcsTransport) Reachable(ctx context.Context, msg *fallback.Message) (bool, error) {
	if msg.File != nil && t.media == nil {
		return false, nil
	}
	now := time.Now()
	t.mu.Lock()
	if t.unsubscribed[msg.To] {
		t.mu.Unlock()
		return false, nil
	}
	if c, ok := t.cache[msg.To]; ok && now.Before(c.until) {
		t.mu.Unlock()
		return c.reachable, nil
	}
	t.mu.Unlock()
	ok, _, err := t.prov.Capability(ctx, msg.To)
	if err != nil {
		return false, err
	}
	ttl := t.unreachTTL
	if ok {
		ttl = t.reachableTTL
	}
	t.mu.Lock()
	t.cache[msg.To] = rcsCapability{reachable: ok, until: now.Add(ttl)}
	t.mu.Unlock()
	return ok, nil
}

// Invalidate forgets the cached capability of a number.
func (t *rcsTransport) Invalidate(e164 string) {
	t.mu.Lock()
	delete(t.cache, e164)
	t.mu.Unlock()
}

func (t *rcsTransport) setSubscribed(e164 string, subscribed bool) {
	t.mu.Lock()
	if subscribed {
		delete(t.unsubscribed, e164)
	} else {
		t.unsubscribed[e164] = true
	}
	t.mu.Unlock()
}

// Send sends msg by RCS. The provider's message ID is derived from the Matrix
// event ID, so a retry is never a second message.
func (t *rcsTransport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	out := &rcs.OutboundMessage{EventID: msg.ID, Text: msg.Text, TTL: t.messageTTL}
	if msg.File != nil {
		out.Text = ""
		out.File = &rcs.FileRef{URL: msg.File.URL, Name: msg.File.Name, MIMEType: msg.File.MIMEType, Size: msg.File.Size}
	}
	id, err := t.prov.Send(ctx, msg.To, out)
	switch {
	case err == nil:
		return &fallback.Receipt{Route: fallback.RouteRCS, RemoteID: id, Parts: 1}, nil
	case errors.Is(err, rcs.ErrNotRCS):
		t.Invalidate(msg.To)
		return nil, fallback.Unreachable(err)
	case errors.Is(err, rcs.ErrAuth):
		t.log.Error("the RCS provider refused bubbled's credentials; messages go by the next route until network.rcs is fixed", zap.Error(err))
		return nil, fallback.Unreachable(err)
	case errors.Is(err, rcs.ErrTemporary):
		return nil, fallback.Temporary(err)
	case errors.Is(err, rcs.ErrPermanent):
		return nil, fallback.Permanent(err)
	default:
		return nil, err
	}
}

// revoke takes back an RCS message that fell back to another route, so the
// contact does not get it twice.
func (t *rcsTransport) revoke(ctx context.Context, to, eventID string) {
	if err := t.prov.Revoke(ctx, to, rcs.MessageID(eventID, 0)); err != nil && !errors.Is(err, rcs.ErrNotRCS) {
		t.log.Warn("failed to revoke an undelivered RCS message", zap.Error(err))
	}
}

// handleRCSEvent takes one stored webhook event (the webhook worker calls it
// in order of arrival until it returns nil).
func (c *Connector) handleRCSEvent(ctx context.Context, ev rcs.Event) error {
	meta := ev.Meta()
	login, portal, err := c.rcsConversation(ctx, meta.Sender)
	if err != nil {
		return err
	}
	sender := UserIDForNumber(meta.Sender)
	base := simplevent.EventMeta{PortalKey: PortalKeyFor(sender, login.ID), Sender: bridgev2.EventSender{Sender: sender}, Timestamp: meta.Time}
	switch e := ev.(type) {
	case *rcs.MessageEvent:
		base.Type = bridgev2.RemoteEventMessage
		base.CreatePortal = true
		res := login.QueueRemoteEvent(&simplevent.Message[*rcs.MessageEvent]{
			EventMeta: base, Data: e, ID: networkid.MessageID(rcsInPrefix + e.MessageID),
			ConvertMessageFunc: convertRCS,
		})
		if err := remoteEventError(res); err != nil {
			return fmt.Errorf("bridge an RCS message into Matrix: %w", err)
		}
	case *rcs.DeliveredEvent, *rcs.ReadEvent:
		if portal == nil {
			c.log.Warn("ignored an RCS receipt for a contact without a chat")
			return nil
		}
		msg, err := c.br.DB.Message.GetFirstPartByID(ctx, login.ID, networkid.MessageID(rcsOutPrefix+meta.MessageID))
		if err != nil {
			return fmt.Errorf("find the message of an RCS receipt: %w", err)
		}
		if msg == nil {
			c.log.Warn("ignored an RCS receipt for an unknown message")
			return nil
		}
		c.router.Confirm(string(msg.MXID))
		base.Type = bridgev2.RemoteEventDeliveryReceipt
		if _, read := ev.(*rcs.ReadEvent); read {
			base.Type = bridgev2.RemoteEventReadReceipt
		}
		login.QueueRemoteEvent(&simplevent.Receipt{EventMeta: base, LastTarget: msg.ID, Targets: []networkid.MessageID{msg.ID}})
	case *rcs.TypingEvent:
		if portal == nil {
			return nil
		}
		base.Type = bridgev2.RemoteEventTyping
		timeout := 15 * time.Second
		if !e.Active {
			timeout = 0
		}
		login.QueueRemoteEvent(&simplevent.Typing{EventMeta: base, Timeout: timeout, Type: bridgev2.TypingTypeText})
	case *rcs.UnsubscribeEvent:
		c.rcs.setSubscribed(meta.Sender, false)
		if portal != nil {
			c.notice(ctx, portal, FormatNumber(meta.Sender)+" turned off RCS messages from this agent: messages go as SMS from now on.")
		}
	case *rcs.SubscribeEvent:
		c.rcs.setSubscribed(meta.Sender, true)
	case *rcs.FailedEvent:
		c.log.Warn("the RCS provider could not deliver a message; it falls back when its confirmation time runs out", zap.String("reason", e.Reason))
	}
	return nil
}

// rcsConversation picks the line an RCS contact talks to: the line that
// already has a chat with them, else the first logged-in line.
func (c *Connector) rcsConversation(ctx context.Context, number string) (*bridgev2.UserLogin, *bridgev2.Portal, error) {
	if _, err := ParseNumber(number, ""); err != nil {
		return nil, nil, fmt.Errorf("RCS event from %q: %w", MaskNumber(number), err)
	}
	logins := c.br.GetAllCachedUserLogins()
	if len(logins) == 0 {
		return nil, nil, errors.New("no phone line is logged in to receive RCS events; log a line in")
	}
	for _, l := range logins {
		p, err := c.br.GetExistingPortalByKey(ctx, PortalKeyFor(UserIDForNumber(number), l.ID))
		if err == nil && p != nil && p.MXID != "" {
			return l, p, nil
		}
	}
	return logins[0], nil, nil
}

// convertRCS makes the Matrix message of an inbound RCS message.
func convertRCS(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, e *rcs.MessageEvent) (*bridgev2.ConvertedMessage, error) {
	body := e.Text
	switch {
	case e.File != nil:
		body = fmt.Sprintf("%s (%s)", e.File.Name, e.File.URL)
	case e.Location != nil:
		body = fmt.Sprintf("Location: geo:%f,%f", e.Location.Latitude, e.Location.Longitude)
	}
	return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
		Type:       event.EventMessage,
		Content:    &event.MessageEventContent{MsgType: event.MsgText, Body: body},
		DBMetadata: &MessageMetadata{Route: string(fallback.RouteRCS)},
	}}}, nil
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

// HandleMatrixReadReceipt tells the RCS contact that the owner read their
// message (RCS READ), when the conversation is on RCS.
func (cl *Client) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	t := cl.conn.rcs
	if t == nil || msg.ExactMessage == nil || !strings.HasPrefix(string(msg.ExactMessage.ID), rcsInPrefix) {
		return nil
	}
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil
	}
	return t.prov.SendRead(ctx, to, strings.TrimPrefix(string(msg.ExactMessage.ID), rcsInPrefix))
}

// HandleMatrixTyping tells the RCS contact the owner is typing.
func (cl *Client) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	t := cl.conn.rcs
	if t == nil || portalMeta(msg.Portal).LastRoute != string(fallback.RouteRCS) {
		return nil
	}
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil
	}
	return t.prov.SendTyping(ctx, to, msg.IsTyping)
}

// HandleMatrixMessageRemove handles the owner unsending a message. A message
// waiting for its confirmation never falls back to another route after
// that. A message that went by RCS is revoked; one that went through Matrix
// is gone with the redaction itself; SMS cannot be taken back.
func (cl *Client) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	if msg.TargetMessage == nil {
		return bridgev2.ErrRedactionsNotSupported
	}
	cl.conn.router.Confirm(string(msg.TargetMessage.MXID))
	meta, _ := msg.TargetMessage.Metadata.(*MessageMetadata)
	switch {
	case strings.HasPrefix(string(msg.TargetMessage.ID), rcsOutPrefix) && cl.conn.rcs != nil:
		to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
		if !ok {
			return bridgev2.ErrRedactionsNotSupported
		}
		return cl.conn.rcs.prov.Revoke(ctx, to, strings.TrimPrefix(string(msg.TargetMessage.ID), rcsOutPrefix))
	case meta != nil && meta.Route == string(fallback.RouteMatrix):
		return nil
	default:
		return bridgev2.ErrRedactionsNotSupported
	}
}

var (
	_ bridgev2.ReadReceiptHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.TypingHandlingNetworkAPI      = (*Client)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI   = (*Client)(nil)
)
