// Package bridge is bubbled's one bridgev2 network connector: every phone line
// (a modem with its SIM) is a login, every contact number a ghost and a DM
// portal. It translates between bridgev2 and the transports in connectors/;
// it is the only package that imports bridgev2.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.mau.fi/util/configupgrade"
	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/bridge/receiptsync"
	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/api"
	"github.com/bubbled/bubbled/connectors/contacts"
	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/gate"
	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/quota"
	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/fallback"
)

// Connector is the bridgev2 NetworkConnector of bubbled. Create it with New;
// bridgev2 calls Init, Start and Stop. It is safe for concurrent use.
type Connector struct {
	br  *bridgev2.Bridge
	cfg config.Network
	log *zap.Logger

	// dir and router are set by Start and read-only afterwards.
	dir    *directory.Directory
	router *fallback.Router
	// receipts reads read receipts from the bot's /sync (startReceiptSync).
	receipts *receiptsync.Syncer
	rcs      *rcs.Transport      // nil without network.rcs.provider
	rcsHook  *rcs.WebhookHandler // nil without network.rcs.provider
	rcsMedia *rcs.MediaStore     // nil without network.rcs.public_url
	contacts *contacts.Syncer    // nil without network.contacts sources
	gate     *gate.Gate
	quota    *quota.Counter   // daily USSD and RCS budgets
	mxRoute  *matrixTransport // the Matrix rung; its lock serialises invites

	// blue runs the invites of rooms being created (inviteOnCreate).
	blue blueInvites

	// metrics is set by UseMetrics before Start; nil counts nothing.
	metrics *metrics.Metrics
	radios  radioCache
	sending sendTimes

	// mu guards inUse (which configured modem or device is in use by which
	// login) and restored (conversations whose stored route state the
	// router has been given).
	mu       sync.Mutex
	inUse    map[string]networkid.UserLoginID
	restored map[string]bool
	// api is the send API once StartAPI ran (guarded by mu).
	api *api.Server
	// hookCfg and hooks are the outgoing webhooks (UseWebhooks, then Start).
	hookCfg []config.APIWebhook
	hooks   *api.Webhooks
}

var (
	_ bridgev2.NetworkConnector            = (*Connector)(nil)
	_ bridgev2.StoppableNetwork            = (*Connector)(nil)
	_ bridgev2.IdentifierValidatingNetwork = (*Connector)(nil)
)

// New makes the connector for the network section of the config. It does no I/O.
func New(cfg config.Network, log *zap.Logger) *Connector {
	return &Connector{cfg: cfg, log: log, inUse: map[string]networkid.UserLoginID{}}
}

// Init is called by bridgev2 once the bridge exists.
func (c *Connector) Init(br *bridgev2.Bridge) {
	c.br = br
	if proc, ok := br.Commands.(*commands.Processor); ok {
		c.addCommands(proc)
		c.addGateCommands(proc)
	}
}

// Start upgrades bubbled's own tables beside bridgev2's, then builds the
// route ladder: the directory, the RCS route (provider, webhooks, media)
// and the router with its Matrix, RCS and SMS transports.
func (c *Connector) Start(ctx context.Context) error {
	if err := sms.Upgrade(ctx, c.br.DB.Database); err != nil {
		return fmt.Errorf("upgrade SMS tables: %w", err)
	}
	if err := upgradeConfirmWaits(ctx, c.br.DB.Database); err != nil {
		return err
	}
	if err := c.startContacts(ctx); err != nil {
		return err
	}
	if err := c.startGate(ctx); err != nil {
		return err
	}
	if err := quota.Upgrade(ctx, c.br.DB.Database); err != nil {
		return err
	}
	c.quota = quota.New(c.br.DB.Database, quota.Options{})
	if err := mms.Upgrade(ctx, c.br.DB.Database); err != nil {
		return err
	}
	if err := c.startWebhooks(ctx); err != nil {
		return err
	}
	return c.startRouter(ctx)
}

// Stop is called by bridgev2 on shutdown: it stops the send API's and the
// webhooks' workers (first: they use the router), then the router's timers.
func (c *Connector) Stop() {
	c.mu.Lock()
	srv := c.api
	c.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	if c.hooks != nil {
		c.hooks.Stop()
	}
	c.blue.stop()
	if c.receipts != nil {
		c.receipts.Stop()
	}
	if c.router != nil {
		_ = c.router.Close()
	}
	if c.rcsHook != nil {
		c.rcsHook.Stop()
	}
	if c.contacts != nil {
		c.contacts.Stop()
	}
	if c.rcsMedia != nil {
		c.rcsMedia.Stop()
	}
}

// GetName describes the network to bridgev2.
func (c *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          config.DisplayName,
		NetworkURL:           "https://github.com/bubbled/bubbled",
		NetworkID:            config.NetworkID,
		BeeperBridgeType:     "github.com/bubbled/bubbled",
		DefaultPort:          config.DefaultPort,
		DefaultCommandPrefix: config.DefaultCommandPrefix,
	}
}

// GetDBMetaTypes tells bridgev2 how to store our per-row metadata.
func (c *Connector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{
		Portal:    func() any { return &PortalMetadata{} },
		Message:   func() any { return &MessageMetadata{} },
		UserLogin: func() any { return &LoginMetadata{} },
	}
}

// generalCaps are bubbled's network-wide capabilities.
var generalCaps = &bridgev2.NetworkGeneralCapabilities{
	// DisappearingMessages runs bridgev2's disappearing loop, which empties
	// the Codes rooms (network.privacy.codes_ttl).
	DisappearingMessages: true,
	Provisioning: bridgev2.ProvisioningCapabilities{
		ResolveIdentifier: bridgev2.ResolveIdentifierCapabilities{
			CreateDM:       true,
			LookupPhone:    true,
			AnyPhone:       true,
			ContactList:    false,
			LookupUsername: false,
			LookupEmail:    false,
			Search:         false,
		},
	},
}

// GetCapabilities returns the network-wide capabilities.
func (c *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities { return generalCaps }

// GetConfig returns nothing: bubbled loads its config itself (config.Load).
func (c *Connector) GetConfig() (string, any, configupgrade.Upgrader) { return "", nil, nil }

// GetBridgeInfoVersion is bumped when m.bridge or room features change.
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) { return 1, 2 }

// ValidateUserID accepts only ghost IDs made by ids.go.
func (c *Connector) ValidateUserID(id networkid.UserID) bool { return ValidUserID(id) }

// PortalMetadata is stored with each portal.
type PortalMetadata struct {
	// Pin is the route the conversation is pinned to ("" = automatic).
	Pin string `json:"pin,omitempty"`
	// LastRoute is the route the conversation's last message took.
	LastRoute string `json:"last_route,omitempty"`
	// Peer is the contact's own Matrix account, when they are on Matrix.
	Peer id.UserID `json:"peer,omitempty"`
	// InvitedPeer is the Matrix account bubbled invited into the room (once).
	InvitedPeer id.UserID `json:"invited_peer,omitempty"`
}

// MessageMetadata is stored with each bridged message.
type MessageMetadata struct {
	// Route is the route an outgoing message took (matrix, rcs, sms).
	Route string `json:"route,omitempty"`
	// Parts is how many SMS parts the message took.
	Parts int `json:"parts,omitempty"`
	// RemoteID is the route's own ID: the SMS message references, the RCS message ID.
	RemoteID string `json:"remote_id,omitempty"`
	// Text is the message's text (its first 2,000 characters), which
	// reactions and replies quote on SMS and inbound reaction texts are
	// matched against.
	Text string `json:"text,omitempty"`
	// DeliveredTo lists the members a group MMS was delivered to, so its
	// status names all of them, not only the latest report's.
	DeliveredTo []id.UserID `json:"delivered_to,omitempty"`
}

// LoginMetadata is stored with each login (phone line).
type LoginMetadata struct {
	// ModemID is the id of the configured modem (network.modems[].id), or ""
	// when the line was logged in with a device path that is not in the config.
	ModemID string `json:"modem_id,omitempty"`
	// Device is the device path used when ModemID is empty.
	Device string `json:"device,omitempty"`
	// Number is the line's own number in E.164.
	Number string `json:"number"`
	// Proof is how Number was proven: "config" (own_number), "sms" (the line
	// texted itself a code), "admin" (set-line-owner); "" before proofs.
	Proof string `json:"proof,omitempty"`
}

// proven reports whether the line's number is proven (see Proof); a line
// whose modem's own_number in the config is its number counts as proven.
func (c *Connector) proven(meta *LoginMetadata) bool {
	m, ok := c.modemConfig(meta)
	return meta.Proof != "" || ok && m.OwnNumber != "" && m.OwnNumber == meta.Number
}

func (c *Connector) modemConfig(meta *LoginMetadata) (config.Modem, bool) {
	for _, m := range c.cfg.Modems {
		if meta.ModemID != "" && m.ID == meta.ModemID {
			return m, true
		}
	}
	if meta.Device != "" {
		return config.Modem{ID: meta.Device, Device: meta.Device, Baud: 115200}, true
	}
	return config.Modem{}, false
}

func (c *Connector) lineConfig(m config.Modem, ownNumber string) sms.Config {
	s := c.cfg.SMS
	return sms.Config{
		ID:                m.ID,
		Device:            m.Device,
		Baud:              m.Baud,
		PIN:               m.PIN,
		OwnNumber:         ownNumber,
		CommandTimeout:    s.CommandTimeout,
		SendTimeout:       s.SendTimeout,
		MaxParts:          s.MaxParts,
		StatusReports:     s.StatusReports,
		RatePerMinute:     s.RatePerMinute,
		RatePerDay:        s.RatePerDay,
		RatePerMonth:      s.RatePerMonth,
		UserRatePerDay:    s.UserRatePerDay,
		MaxAttempts:       s.MaxAttempts,
		WatchdogInterval:  s.WatchdogInterval,
		ReassemblyTimeout: s.ReassemblyTimeout,
		MMSBearer:         sms.Bearer{CID: c.cfg.MMSFor(m).BearerCID, APN: c.cfg.MMSFor(m).BearerAPN()},
	}
}

// claim marks a modem as used by a login; it fails when another login has it.
func (c *Connector) claim(modemKey string, login networkid.UserLoginID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.inUse[modemKey]; ok && other != login {
		return fmt.Errorf("modem %s is already the line of login %s; log that line out first", modemKey, other)
	}
	c.inUse[modemKey] = login
	return nil
}

func (c *Connector) release(modemKey string, login networkid.UserLoginID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inUse[modemKey] == login {
		delete(c.inUse, modemKey)
	}
}

// startRouter builds the directory, the RCS route and the router, and
// listens for the read receipts that confirm Matrix-route messages. It runs
// in Start, when the Matrix side is up (the identity-server lookup asks the
// homeserver for an OpenID token as the bridge bot).
func (c *Connector) startRouter(ctx context.Context) error {
	dir, err := c.newDirectory()
	if err != nil {
		return err
	}
	c.dir = dir
	if err := c.startRCS(ctx); err != nil {
		return err
	}
	smsT := &sms.Transport{LineFor: c.lineFor, MMS: c.sendMMS}
	if c.cfg.SMS.Failover {
		smsT.Failover = c.failoverLine
	}
	c.mxRoute = &matrixTransport{conn: c}
	transports := []fallback.Transport{c.mxRoute, smsT}
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
		Directory:      directory.NewRouterAdapter(dir).WithObserver(c.directoryObserver),
		Notifier:       &notices{conn: c},
		ConfirmTimeout: c.cfg.Fallback.ConfirmTimeout,
		Log:            c.log.Named("fallback"),
	})
	if err != nil {
		return fmt.Errorf("set up the route ladder (network.fallback): %w", err)
	}
	if mx, ok := c.br.Matrix.(*matrix.Connector); ok && mx.EventProcessor != nil {
		mx.EventProcessor.On(event.EphemeralEventReceipt, c.handleReceipts)
		c.startReceiptSync(mx)
	}
	c.refreshLocalLines(ctx)
	return nil
}

// newDirectory builds the directory from network.directory. The identity
// server, when configured, is asked with an OpenID token of the bridge bot.
func (c *Connector) newDirectory() (*directory.Directory, error) {
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
		return nil, fmt.Errorf("set up the directory (network.directory): %w", err)
	}
	return dir, nil
}

// startRCS builds the RCS route (provider, transport, media store) and
// mounts its webhooks and media on the appservice listener. It does nothing
// when network.rcs.provider is empty.
func (c *Connector) startRCS(ctx context.Context) error {
	rc := c.cfg.RCS
	if rc.Provider == "" {
		return nil
	}
	prov, wh, err := newRCSProvider(rc)
	if err != nil {
		return err
	}
	if err := rcs.Upgrade(ctx, c.br.DB.Database); err != nil {
		return fmt.Errorf("upgrade RCS tables: %w", err)
	}
	mediaPath := strings.TrimRight(rc.WebhookPath, "/") + "/media/"
	if rc.PublicURL != "" {
		c.rcsMedia = rcs.NewMediaStore(c.br.DB.Database, rcs.MediaConfig{
			BaseURL: strings.TrimRight(rc.PublicURL, "/") + mediaPath, TTL: rc.MessageTTL, Log: c.log.Named("rcs_media")})
	}
	c.rcs = rcs.NewTransport(prov, rcs.TransportConfig{ReachableTTL: rc.CapabilityTTLReachable, UnreachableTTL: rc.CapabilityTTLUnreachable,
		MessageTTL: rc.MessageTTL, Media: c.rcsMedia, Log: c.log.Named("rcs"), Budget: c.quota, PerDay: rc.RatePerDay})
	wh.PathPrefix = rc.WebhookPath
	wh.Store = rcs.NewDBEventStore(c.br.DB.Database)
	wh.Consumer = c.handleRCSEvent
	wh.Logger = c.log.Named("rcs_webhook")
	wh.OnReject = func(provider string, status int) { c.metrics.WebhookRejected(provider, status) }
	c.rcsHook, err = rcs.NewWebhookHandler(wh)
	if err != nil {
		return fmt.Errorf("set up the RCS webhook (network.rcs): %w", err)
	}
	mx, ok := c.br.Matrix.(*matrix.Connector)
	if !ok || mx.AS == nil || mx.AS.Router == nil {
		return errors.New("set up the RCS webhook: the appservice listener is not available")
	}
	mx.AS.Router.Handle(strings.TrimRight(rc.WebhookPath, "/")+"/", c.rcsHook)
	if c.rcsMedia != nil {
		mx.AS.Router.Handle(mediaPath, c.rcsMedia)
		if err := c.rcsMedia.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("start the RCS media pruner: %w", err)
		}
	}
	if err := c.rcsHook.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start the RCS webhook worker: %w", err)
	}
	c.log.Info("started the RCS route", zap.String("provider", prov.Name()), zap.String("webhook_path", rc.WebhookPath))
	return nil
}

// newRCSProvider builds the provider of network.rcs.provider and the
// matching half of its webhook config.
func newRCSProvider(rc config.RCS) (prov rcs.Provider, wh rcs.WebhookConfig, err error) {
	switch rc.Provider {
	case "rbm":
		prov, err = rcs.NewRBM(rcs.RBMConfig{AgentID: rc.RBM.AgentID, ServiceAccountFile: rc.RBM.ServiceAccountFile, BaseURL: rc.RBM.BaseURL, TokenURL: rc.RBM.TokenURL})
		wh.RBM = &rcs.RBMWebhook{AgentID: rc.RBM.AgentID, ClientToken: rc.RBM.WebhookClientToken}
	case "maap":
		m := rc.MaaP
		prov, err = rcs.NewMaaP(rcs.MaaPConfig{BotID: m.BotID, BaseURL: m.BaseURL, APIVersion: m.APIVersion, TokenURL: m.TokenURL,
			ClientID: m.ClientID, ClientSecret: m.ClientSecret, CredentialsInBody: m.CredentialsInBody, Scopes: m.Scopes})
		wh.MaaP = &rcs.MaaPWebhook{BotID: m.BotID, Auth: m.WebhookAuth, Secret: m.WebhookSecret, SignatureHeader: m.WebhookSignatureHeader}
	default:
		return nil, wh, fmt.Errorf("network.rcs.provider %q is not rbm or maap", rc.Provider)
	}
	if err != nil {
		return nil, wh, fmt.Errorf("set up the RCS provider (network.rcs.%s): %w", rc.Provider, err)
	}
	return prov, wh, nil
}

// refreshLocalLines tells the directory which numbers are lines of this
// bridge, and whose: a contact who is another line's owner is on Matrix.
// Only lines whose number is proven count: a number merely typed or
// reported by a modem could be anyone's.
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
			if meta, ok := l.Metadata.(*LoginMetadata); ok && meta.Number != "" && c.proven(meta) {
				lines[meta.Number] = l.UserMXID
			}
		}
	}
	if err := c.dir.SetLocal(lines); err != nil {
		c.log.Error("two lines claim the same number; the directory ignores both until one is logged out", zap.Error(err))
	}
}

// lineFor returns the connected line of a login, or nil.
func (c *Connector) lineFor(loginID string) *sms.Line {
	if cl := c.clientFor(networkid.UserLoginID(loginID)); cl != nil {
		return cl.currentLine()
	}
	return nil
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
				phone.Format(cl.meta.Number), phone.Format(msg.To)))
			return line
		}
	}
	return nil
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

// userLineIDs returns the line IDs (modem keys) of owner's connected lines,
// which share network.sms.user_rate_per_day.
func (c *Connector) userLineIDs(owner id.UserID) []string {
	var out []string
	for _, l := range c.br.GetAllCachedUserLogins() {
		if cl, ok := l.Client.(*Client); ok && l.UserMXID == owner {
			out = append(out, cl.modemKey)
		}
	}
	return out
}
