// Package bridge is bubbled's one bridgev2 network connector: every phone line
// (a modem with its SIM) is a login, every contact number a ghost and a DM
// portal. It translates between bridgev2 and the transports in connectors/;
// it is the only package that imports bridgev2.
package bridge

import (
	"context"
	"fmt"
	"sync"

	"go.mau.fi/util/configupgrade"
	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/directory"
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
	dir     *directory.Directory
	router  *fallback.Router
	rcs     *rcsTransport       // nil without network.rcs.provider
	rcsHook *rcs.WebhookHandler // nil without network.rcs.provider

	// mu guards inUse (which configured modem or device is in use by which
	// login) and restored (conversations whose stored route state the
	// router has been given).
	mu       sync.Mutex
	inUse    map[string]networkid.UserLoginID
	restored map[string]bool
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
	}
}

// Start creates bubbled's own tables beside bridgev2's.
func (c *Connector) Start(ctx context.Context) error {
	if err := sms.Upgrade(ctx, c.br.DB.Database); err != nil {
		return fmt.Errorf("upgrade SMS tables: %w", err)
	}
	return c.startRouter(ctx)
}

// Stop is called by bridgev2 on shutdown: it stops the router's timers.
func (c *Connector) Stop() {
	if c.router != nil {
		_ = c.router.Close()
	}
	if c.rcsHook != nil {
		c.rcsHook.Stop()
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
		Ghost:     nil,
		Message:   func() any { return &MessageMetadata{} },
		Reaction:  nil,
		UserLogin: func() any { return &LoginMetadata{} },
	}
}

// generalCaps are bubbled's network-wide capabilities.
var generalCaps = &bridgev2.NetworkGeneralCapabilities{
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
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) { return 1, 1 }

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
		ID:               m.ID,
		Device:           m.Device,
		Baud:             m.Baud,
		PIN:              m.PIN,
		OwnNumber:        ownNumber,
		CommandTimeout:   s.CommandTimeout,
		SendTimeout:      s.SendTimeout,
		MaxParts:         s.MaxParts,
		StatusReports:    s.StatusReports,
		RatePerMinute:    s.RatePerMinute,
		RatePerDay:       s.RatePerDay,
		RatePerMonth:     s.RatePerMonth,
		MaxAttempts:      s.MaxAttempts,
		WatchdogInterval: s.WatchdogInterval,
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
