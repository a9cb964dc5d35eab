// Package config loads, validates and persists bubbled's configuration.
//
// One YAML file holds everything: the mautrix bridgev2 sections (homeserver,
// appservice, database, bridge, encryption, provisioning, ...) plus bubbled's
// own network and log sections. [Load] layers, from lowest to highest
// priority: mautrix's example config (with its example permissions and
// double-puppet entries removed), bubbled's defaults (defaults.yaml), the
// operator's file, and BUBBLED_* environment variables. It validates the
// result once and reports every problem with its key, the bad value and
// what to write instead. Secrets left as "generate" are replaced by random
// values and written back into the file.
//
// Unknown keys, BUBBLED_* variables that match no key, and mautrix sections
// bubbled ignores (logging, env_config_prefix) are warnings in
// Config.Warnings, not errors, so that a config written for another version
// still starts; a value of the wrong kind (a list where a section belongs)
// is an error, because the merge would silently drop it.
//
// Typical use in main:
//
//	cfg, err := config.Load(path, config.LoadOptions{})
//	if err != nil { fmt.Fprintf(os.Stderr, "invalid config %s:\n%v\n", path, err); os.Exit(11) }
//	log, err := config.NewLogger(cfg.Log)
//	for _, w := range cfg.Warnings { log.Warn("check config", zap.String("problem", w.String())) }
//	zl := config.ZerologToZap(log, cfg.Log.ZerologLevel())
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"
)

// Names used when rendering mautrix's example config as the defaults layer.
// The bridge's NetworkConnector.GetName should report the same values.
const (
	// NetworkID is the bridge's network ID: the appservice ID, the prefix of
	// ghost localparts (sms_<number>) and of the bot (smsbot) by default.
	NetworkID = "sms"
	// DisplayName is the network's human-readable name.
	DisplayName = "SMS"
	// DefaultPort is the default appservice listening port.
	DefaultPort = 29340
	// DefaultCommandPrefix is the default prefix for bot commands.
	DefaultCommandPrefix = "!sms"
	// EnvPrefix is the prefix of environment variables that override config
	// keys: BUBBLED_ + the key path in upper case with "__" between levels,
	// e.g. BUBBLED_HOMESERVER__ADDRESS or BUBBLED_NETWORK__DEFAULT_REGION.
	EnvPrefix = "BUBBLED"
	// DefaultBaud is the serial speed used for a modem without a baud key.
	DefaultBaud = 115200
)

// Config is the complete bubbled configuration returned by [Load].
//
// The embedded bridgeconfig.Config holds the mautrix sections and is what
// matrix.NewConnector and bridgev2.NewBridge (via &cfg.Bridge) take. Its
// Logging field is never filled: bubbled logs with zap per the Log section.
// Its Network field (a yaml.Node) is shadowed by the typed Network field.
// A Config is not safe for concurrent mutation; treat it as read-only after
// Load.
type Config struct {
	bridgeconfig.Config

	// Network is the SMS network section (key network).
	Network Network
	// Log is the logging section (key log).
	Log Log
	// API is the HTTP send API (key api).
	API API
	// Metrics is the metrics and health listener (key metrics).
	Metrics Metrics
	// Path is the absolute path of the file the config was loaded from.
	Path string
	// Warnings lists non-fatal findings for the operator: unknown keys,
	// BUBBLED_* variables that match no key, no modems configured, and
	// settings mautrix accepts but that are likely mistakes. Log them once
	// the logger exists.
	Warnings []Problem
}

// Network is bubbled's network section: the modems and SMS behaviour.
type Network struct {
	// DefaultRegion is the ISO 3166-1 alpha-2 region (e.g. "US", "GB")
	// used for phone numbers written in national form. Default "US";
	// normalised to upper case by Load.
	DefaultRegion string `yaml:"default_region"`
	// Modems lists the modems (one SIM each). Empty is allowed but yields
	// a warning: the bridge then cannot send or receive SMS.
	Modems []Modem `yaml:"modems"`
	// SMS holds timeouts and limits shared by all modems.
	SMS SMS `yaml:"sms"`
	// Directory says how bubbled finds out whether a number is on Matrix.
	Directory Directory `yaml:"directory"`
	// Fallback orders the routes a message may take and when it falls back.
	Fallback Fallback `yaml:"fallback"`
	// RCS is the RCS provider (a business messaging agent); off by default.
	RCS RCS `yaml:"rcs"`
	// Listener bounds what requests to the appservice listener may cost.
	Listener Listener `yaml:"listener"`
	// Contacts names ghosts from CardDAV or a vCard file; off by default.
	Contacts Contacts `yaml:"contacts"`
	// Privacy says what happens to SMS from strangers (default: a room each).
	Privacy Privacy `yaml:"privacy"`
	// MMS is the MMS data path (picture and group messages); off by default.
	MMS MMS `yaml:"mms"`
	// Conversation says how reactions, edits and replies travel on routes
	// that carry only text (SMS).
	Conversation Conversation `yaml:"conversation"`
}

// Listener is network.listener: limits of the appservice listener, which
// also serves the RCS webhooks and may face the internet.
type Listener struct {
	// MaxBodyBytes caps every request body (default 16 MiB); a larger one
	// is answered 413 and nothing of it is stored.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout is how long a client may take to send its
	// headers (default 10s).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout is how long a client may take to send a whole request
	// (default 60s).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout is how long a kept-alive connection may wait for its next
	// request (default 120s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the request line and headers (default 65536).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// MMS is network.mms: how bubbled reaches the carrier's MMSC. Modems may
// override mmsc, proxy and interface (mms_mmsc, mms_proxy, mms_interface).
type MMS struct {
	// Enabled turns MMS on: WAP push notifications are fetched and bridged.
	// Off, they are kept unread as before.
	Enabled bool `yaml:"enabled"`
	// MMSC is the carrier's MMSC URL (APN setting "mmsc").
	MMSC string `yaml:"mmsc"`
	// Proxy is the carrier's MMS proxy host:port ("mmsproxy:mmsport"); "" = none.
	Proxy string `yaml:"proxy"`
	// Interface binds MMS HTTP to the modem's data interface (wwan0, usb0,
	// ppp0) with SO_BINDTODEVICE; "" = default routing.
	Interface string `yaml:"interface"`
	// UserAgent and UAProf are sent on every MMS request; some carriers
	// refuse requests without the ones they expect.
	UserAgent string `yaml:"user_agent"`
	UAProf    string `yaml:"uaprof"`
	// MaxSize bounds a fetched or sent MMS in bytes (default 307200).
	MaxSize int `yaml:"max_size"`
	// HTTPTimeout bounds one MMS HTTP exchange (default 60s).
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// APN is the access point name that reaches the MMSC (APN setting
	// "apn"); used when Bearer is "at".
	APN string `yaml:"apn"`
	// Bearer is "" (the operator brings the data link up) or "at": bubbled
	// defines and activates context BearerCID with APN through the AT port
	// (AT+CGDCONT, AT+CGACT) after every modem open.
	Bearer string `yaml:"bearer"`
	// BearerCID is the PDP context identifier for Bearer "at" (1-15,
	// default 1).
	BearerCID int `yaml:"bearer_cid"`
}

// BearerAPN returns the APN to bring up through the AT port, "" unless
// Bearer is "at".
func (m MMS) BearerAPN() string {
	if m.Bearer != "at" {
		return ""
	}
	return m.APN
}

// MMSFor returns the MMS settings of modem m: the network.mms section with
// the modem's own mms_* keys where set.
func (n Network) MMSFor(m Modem) MMS {
	out := n.MMS
	if m.MMSMMSC != "" {
		out.MMSC = m.MMSMMSC
	}
	if m.MMSProxy != "" {
		out.Proxy = m.MMSProxy
	}
	if m.MMSInterface != "" {
		out.Interface = m.MMSInterface
	}
	if m.MMSAPN != "" {
		out.APN = m.MMSAPN
	}
	if m.MMSUserAgent != "" {
		out.UserAgent = m.MMSUserAgent
	}
	return out
}

// Conversation is network.conversation: reactions, edits and replies on
// SMS, which carries only text.
type Conversation struct {
	// Reactions is how a Matrix reaction on a bridged message goes out:
	// "text" (the phone's wording, Liked “…”) or "off". Default text.
	Reactions string `yaml:"reactions"`
	// ReactionRemovals is how taking a reaction back goes out: "text"
	// (Removed a like from “…”) or "off" (nothing is sent). Default text.
	ReactionRemovals string `yaml:"reaction_removals"`
	// ReadReactions turns an inbound reaction text (Loved “…”) that quotes
	// one of the room's last messages into a Matrix reaction. Default true.
	ReadReactions bool `yaml:"read_reactions"`
	// QuoteChars is how much of a message a reaction text or a reply
	// quotes (10 to 160 characters, default 60).
	QuoteChars int `yaml:"quote_chars"`
	// MatchLast is how many of the room's last messages an inbound reaction
	// text may quote (1 to 200, default 20).
	MatchLast int `yaml:"match_last"`
	// Edits is the correction an edit sends, {text} standing for the new
	// text, or "off". Default "Correction: {text}".
	Edits string `yaml:"edits"`
	// Replies is "quote" (a reply starts with a short quote of what it
	// answers) or "off". Default quote.
	Replies string `yaml:"replies"`
}

// RCS is network.rcs: the RCS route through a provider's REST API.
type RCS struct {
	// Provider is rbm (Google RCS Business Messaging), maap (a GSMA MaaP
	// chatbot platform) or "" (no RCS route).
	Provider string `yaml:"provider"`
	// Owner is the Matrix user whose line gets RCS messages from contacts
	// without a chat yet. Required once more than one Matrix user has
	// lines (checked when such a message arrives); "" picks the only user.
	Owner id.UserID `yaml:"owner"`
	// RatePerDay caps the RCS messages sent per calendar day; past it
	// messages take the next route. 0 means no cap. Default 500.
	RatePerDay int `yaml:"rate_per_day"`
	// WebhookPath is where the provider's webhooks are served on the
	// appservice listener (default /rcs: /rcs/rbm, /rcs/maap).
	WebhookPath string `yaml:"webhook_path"`
	// CapabilityTTLReachable is how long "this number can get RCS" is reused (24h).
	CapabilityTTLReachable time.Duration `yaml:"capability_ttl_reachable"`
	// CapabilityTTLUnreachable is how long "no RCS" is reused (6h).
	CapabilityTTLUnreachable time.Duration `yaml:"capability_ttl_unreachable"`
	// MessageTTL is the time-to-live given to each RCS message (4h).
	MessageTTL time.Duration `yaml:"message_ttl"`
	// PublicURL is the address at which the provider reaches bubbled's
	// listener (the same one its webhook uses), e.g. https://bubbled.example.org.
	// Files sent by RCS are fetched from <public_url><webhook_path>/media/...;
	// "" means files are not sent by RCS.
	PublicURL string `yaml:"public_url"`
	// RBM configures Google RCS Business Messaging.
	RBM RBM `yaml:"rbm"`
	// MaaP configures a GSMA MaaP chatbot platform.
	MaaP MaaP `yaml:"maap"`
}

// RBM is network.rcs.rbm.
type RBM struct {
	AgentID            string `yaml:"agent_id"`
	ServiceAccountFile string `yaml:"service_account_file"`
	WebhookClientToken string `yaml:"webhook_client_token"`
	BaseURL            string `yaml:"base_url"`
	TokenURL           string `yaml:"token_url"`
}

// MaaP is network.rcs.maap.
type MaaP struct {
	BotID                  string   `yaml:"bot_id"`
	BaseURL                string   `yaml:"base_url"`
	APIVersion             string   `yaml:"api_version"`
	TokenURL               string   `yaml:"token_url"`
	ClientID               string   `yaml:"client_id"`
	ClientSecret           string   `yaml:"client_secret"`
	CredentialsInBody      bool     `yaml:"credentials_in_body"`
	Scopes                 []string `yaml:"scopes"`
	WebhookAuth            string   `yaml:"webhook_auth"`
	WebhookSecret          string   `yaml:"webhook_secret"`
	WebhookSignatureHeader string   `yaml:"webhook_signature_header"`
}

// Directory is network.directory: "is this number on Matrix?".
type Directory struct {
	// Static maps phone numbers to Matrix user IDs, checked before the
	// identity server. Load refuses entries that are not numbers or IDs.
	Static map[string]string `yaml:"static"`
	// IdentityServer is a Matrix identity server for the v2 hashed lookup.
	IdentityServer IdentityServer `yaml:"identity_server"`
	// FoundTTL is how long a "this number is @x" answer is reused (24h).
	FoundTTL time.Duration `yaml:"found_ttl"`
	// NotFoundTTL is how long a "not on Matrix" answer is reused (1h).
	NotFoundTTL time.Duration `yaml:"not_found_ttl"`
}

// IdentityServer is network.directory.identity_server.
type IdentityServer struct {
	// URL of the identity server, e.g. https://vector.im; "" turns it off.
	URL string `yaml:"url"`
	// AcceptedTerms lists the URLs of the server's policies that the
	// operator has read and accepts; bubbled signs nothing else.
	AcceptedTerms []string `yaml:"accepted_terms"`
	// Timeout bounds each request (10s).
	Timeout time.Duration `yaml:"timeout"`
}

// Fallback is network.fallback: the route ladder.
type Fallback struct {
	// Order is the ladder, best route first: matrix, rcs, sms.
	Order []string `yaml:"order"`
	// ConfirmTimeout is how long a message sent by Matrix or RCS may stay
	// unconfirmed (no read receipt, no delivery report) before it is sent
	// again down the ladder; 0s turns Send as SMS off. Default 5m.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
}

// Modem is one entry of network.modems.
type Modem struct {
	// ID names the modem in logs and login IDs. Required, unique, made of
	// letters, digits, '-', '_' and '.'.
	ID string `yaml:"id"`
	// Device is the serial device (/dev/ttyUSB2, /dev/serial/by-id/...) or
	// a raw TCP serial bridge written tcp://host:port.
	Device string `yaml:"device"`
	// Baud is the serial speed; default 115200 when the key is absent.
	Baud int `yaml:"baud"`
	// PIN is the SIM PIN (4-8 digits), or "" when the SIM has none.
	PIN string `yaml:"pin"`
	// OwnNumber is the SIM's phone number when the SIM does not report it
	// (AT+CNUM). Load normalises it to E.164 (+12015550123).
	OwnNumber string `yaml:"own_number"`
	// MMSMMSC, MMSProxy, MMSInterface, MMSAPN and MMSUserAgent override
	// network.mms for this modem (a second SIM of another carrier, a second
	// data interface).
	MMSMMSC      string `yaml:"mms_mmsc"`
	MMSProxy     string `yaml:"mms_proxy"`
	MMSInterface string `yaml:"mms_interface"`
	MMSAPN       string `yaml:"mms_apn"`
	MMSUserAgent string `yaml:"mms_user_agent"`
}

// SMS holds SMS limits and timeouts (key network.sms).
type SMS struct {
	// MaxParts caps the parts of one outgoing message (1..255, default 10).
	MaxParts int `yaml:"max_parts"`
	// CommandTimeout bounds one AT command (default 10s).
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// SendTimeout bounds sending one SMS part (default 120s).
	SendTimeout time.Duration `yaml:"send_timeout"`
	// StatusReports asks the network for delivery reports (default true).
	StatusReports bool `yaml:"status_reports"`
	// RatePerMinute, RatePerDay and RatePerMonth cap the SMS parts one line
	// sends (carriers cap them); 0 means no cap. Defaults 10, 200, 2000.
	RatePerMinute int `yaml:"rate_per_minute"`
	RatePerDay    int `yaml:"rate_per_day"`
	RatePerMonth  int `yaml:"rate_per_month"`
	// UserRatePerDay caps the SMS parts all lines of one Matrix user send
	// per calendar day together; 0 means no cap. Default 300.
	UserRatePerDay int `yaml:"user_rate_per_day"`
	// USSDPerDay caps the USSD codes one line sends per calendar day; 0
	// means no cap. Default 20.
	USSDPerDay int `yaml:"ussd_per_day"`
	// NumberCheckTimeout is how long a login waits for the SMS its line
	// texts itself to prove its number (default 3m).
	NumberCheckTimeout time.Duration `yaml:"number_check_timeout"`
	// MaxAttempts is how often a part is tried on temporary network errors
	// (default 5).
	MaxAttempts int `yaml:"max_attempts"`
	// WatchdogInterval is how often a line checks that its modem answers and
	// still reports new messages (default 45s).
	WatchdogInterval time.Duration `yaml:"watchdog_interval"`
	// Failover sends from another of the owner's lines while a line's modem
	// is away (default false: the contact then sees another number).
	Failover bool `yaml:"failover"`
	// ReassemblyTimeout is how long a long SMS waits for a missing part
	// before it is delivered with the gap marked (default 24h, 1s to 720h).
	ReassemblyTimeout time.Duration `yaml:"reassembly_timeout"`
}

// API is the api section: the HTTP send API for automation (Alertmanager,
// Home Assistant, scripts) on a listener of its own.
type API struct {
	// Listen is the address of the API's listener (default
	// 127.0.0.1:29330). It starts only when Tokens is not empty. An
	// address other than loopback is refused without tokens.
	Listen string `yaml:"listen"`
	// Tokens are the API's clients.
	Tokens []APIToken `yaml:"tokens"`
	// Webhooks are told about every SMS their lines receive, signed with
	// HMAC-SHA256 (README, "Send API"). They work without the listener.
	Webhooks []APIWebhook `yaml:"webhooks"`
}

// APIWebhook is one entry of api.webhooks.
type APIWebhook struct {
	// URL receives a POST per received SMS (http or https).
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key of the signature header; "generate"
	// makes a random one that is written back into the file.
	Secret string `yaml:"secret"`
	// Lines are the own numbers of the lines whose SMS the hook gets.
	// Required. Load normalises them to E.164.
	Lines []string `yaml:"lines"`
}

// APIToken is one entry of api.tokens.
type APIToken struct {
	// Name names the client in logs and in Matrix rooms ("sent by API
	// token <name>"). Required, unique: letters, digits, '-', '_', '.'.
	Name string `yaml:"name"`
	// Token is the bearer secret; "generate" makes a random one that is
	// written back into the file.
	Token string `yaml:"token"`
	// Lines are the own numbers of the lines the token may send from; the
	// first is the default. Required. Load normalises them to E.164.
	Lines []string `yaml:"lines"`
	// Recipients are the numbers the token may text: E.164 numbers,
	// prefixes ending in * ("+4915*"), or "*" for anyone. Required.
	Recipients []string `yaml:"recipients"`
	// DailyCap is how many messages the token may send per UTC day; 0
	// means no cap.
	DailyCap int `yaml:"daily_cap"`
}

// Log is bubbled's logging section (key log).
type Log struct {
	// Level is trace, debug, info, warn or error (default info). trace is
	// zap's debug plus mautrix's trace events.
	Level string `yaml:"level"`
	// Format is console (human-readable) or json (default console).
	Format string `yaml:"format"`
}

// Metrics is bubbled's metrics section (key metrics): the listener that
// serves /metrics (Prometheus), /healthz and /readyz.
type Metrics struct {
	// Listen is host:port of the listener (default 127.0.0.1:9466, loopback
	// only); "" turns the listener off.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's profiler under /debug/pprof/ on the listener
	// (default false). Profiles show message contents in memory: keep the
	// listener on loopback when it is on.
	Pprof bool `yaml:"pprof"`
}

// LoadOptions adjusts [Load]. The zero value is the normal behaviour.
type LoadOptions struct {
	// ReadOnly forbids writing generated secrets back to the file. Secrets
	// still set to "generate" then become validation problems; provide them
	// through BUBBLED_* variables instead (e.g. a read-only mount in Docker).
	ReadOnly bool
}

// Load reads the config file at path, merges it over the defaults, applies
// BUBBLED_* environment overrides, decodes and validates it.
//
// Validation problems, including undecodable values from the file or the
// environment, are returned together as a *ValidationError. When the config
// is valid and secrets (appservice.as_token, appservice.hs_token,
// encryption.pickle_key, provisioning.shared_secret, and the signing keys of
// public_media and direct_media when those are enabled) are "generate",
// empty or absent, Load replaces them with random values and writes them
// into the file (comments kept, atomic replace, mode 0600), unless
// opts.ReadOnly. Secrets set through the environment are never written.
// A relative SQLite path in database.uri is resolved beside the file.
func Load(path string, opts LoadOptions) (*Config, error) {
	abs, data, userRoot, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}

	defs, err := loadDefaults()
	if err != nil {
		return nil, err
	}
	var problems, warnings problemList
	checkShape(defs.schema, userRoot, nil, &problems, &warnings)
	if len(problems) > 0 {
		// Values of the wrong kind are dropped by viper's merge; checking
		// the rest would only report the defaults that show through.
		return nil, &ValidationError{Path: abs, Problems: problems}
	}

	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defs.rendered)); err != nil {
		return nil, fmt.Errorf("read built-in defaults: %w", err)
	}
	if err := v.MergeConfig(bytes.NewReader(defaultsYAML)); err != nil {
		return nil, fmt.Errorf("read built-in defaults: %w", err)
	}
	// The file is merged from the bytes already read (same content as
	// MergeInConfig would read) so that secrets are persisted against
	// exactly the text that was validated.
	if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
		return nil, &ValidationError{Path: abs, Problems: []Problem{{Key: "(file)", Reason: fmt.Sprintf("cannot be read as a config: %v", err),
			Fix: "write the config as a YAML mapping of sections, as in example-config.yaml"}}}
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(keyDelim, "__"))
	v.AutomaticEnv()

	pending := planSecrets(v, opts.ReadOnly, &problems)

	b := newTreeBuilder()
	root := b.build(v.AllSettings())
	b.overlayStructured(root, defs, userRoot, &problems)
	// Sections bubbled ignores (checkShape warns about them).
	for key := range ignoredKeys {
		mapDelete(root, key)
	}

	cfg := &Config{Path: abs}
	b.decodeBridge(root, &cfg.Config, &problems)
	b.decodeNetwork(root, &cfg.Network, &problems)
	b.decodeSection(root, "log", &cfg.Log, &problems)
	b.decodeSection(root, "api", &cfg.API, &problems)
	b.decodeSection(root, "metrics", &cfg.Metrics, &problems)
	cfg.Bridge.Backfill = cfg.Backfill
	cfg.Database.URI = resolveSQLitePath(cfg.Database.Type, cfg.Database.URI, filepath.Dir(abs))
	cfg.Database.URI = withStatementCache(cfg.Database.Type, cfg.Database.URI)

	problems.merge(cfg.validate())
	warnings.merge(cfg.warnings())
	warnings.merge(unknownEnvWarnings(v, defs))
	if len(problems) > 0 {
		return nil, &ValidationError{Path: abs, Problems: problems}
	}
	cfg.normalise()
	cfg.Warnings = warnings

	if len(pending) > 0 {
		if err := persistSecrets(abs, data, pending); err != nil {
			return nil, fmt.Errorf("save generated secrets into %s: %w; make the file writable or set the secrets with BUBBLED_* variables", abs, err)
		}
	}
	return cfg, nil
}

// readConfigFile reads and parses the file at path, returning its absolute
// path, its bytes and the root of its YAML document.
func readConfigFile(path string) (abs string, data []byte, root *yaml.Node, err error) {
	abs, err = filepath.Abs(path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("resolve config path %q: %w", path, err)
	}
	data, err = os.ReadFile(abs)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read config file: %w; create it from example-config.yaml", err)
	}
	var userDoc yaml.Node
	if err := yaml.Unmarshal(data, &userDoc); err != nil {
		return "", nil, nil, fmt.Errorf("parse config file %s: %w; fix the YAML syntax at that line", abs, err)
	}
	// Decoding catches what parsing into a node does not, such as
	// duplicate keys.
	var scratch any
	if err := userDoc.Decode(&scratch); err != nil {
		return "", nil, nil, fmt.Errorf("parse config file %s: %w; fix the file at that line", abs, err)
	}
	return abs, data, documentRoot(&userDoc), nil
}

// ValidationError reports every problem found in a config at once. Its
// Error text is one line per problem and does not repeat the file path.
type ValidationError struct {
	// Path is the config file that was loaded.
	Path string
	// Problems is never empty.
	Problems []Problem
}

// Error renders one line per problem, e.g.
// `homeserver.address: "" is not a URL; write the client-server URL of your homeserver, e.g. http://127.0.0.1:8008`.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Problem is one finding about one config key.
type Problem struct {
	// Key is the dotted key path, e.g. network.modems[0].own_number or
	// bridge.permissions["example.com"].
	Key string
	// Value is the offending value as displayed to the operator: quoted
	// strings, bare numbers; secrets and PINs are masked. Empty when the
	// value does not matter (e.g. an unknown key).
	Value string
	// Reason says what is wrong, e.g. "is not a URL".
	Reason string
	// Fix says what to write instead.
	Fix string
	// Env names the environment variable the value came from, if any.
	Env string
}

// String renders the problem on one line.
func (p Problem) String() string {
	var sb strings.Builder
	sb.WriteString(p.Key)
	sb.WriteString(":")
	if p.Value != "" {
		sb.WriteString(" ")
		sb.WriteString(p.Value)
	}
	if p.Reason != "" {
		sb.WriteString(" ")
		sb.WriteString(p.Reason)
	}
	if p.Env != "" {
		sb.WriteString(" (set by environment variable ")
		sb.WriteString(p.Env)
		sb.WriteString(")")
	}
	if p.Fix != "" {
		sb.WriteString("; ")
		sb.WriteString(p.Fix)
	}
	return sb.String()
}

// problemList collects problems, keeping only the first one per key so a
// value that fails both decoding and a later check is reported once.
type problemList []Problem

func (l *problemList) add(p Problem) {
	for _, q := range *l {
		if q.Key == p.Key {
			return
		}
	}
	*l = append(*l, p)
}

func (l *problemList) merge(ps []Problem) {
	for _, p := range ps {
		l.add(p)
	}
}

// IsValidationError reports whether err is or wraps a *ValidationError.
func IsValidationError(err error) bool {
	var ve *ValidationError
	return errors.As(err, &ve)
}
