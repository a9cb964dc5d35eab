package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/viper"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
)

// Validate checks the loaded config and returns a *ValidationError listing
// every problem, or nil. Load calls it; call it again only after changing
// the Config in code.
func (c *Config) Validate() error {
	if ps := c.validate(); len(ps) > 0 {
		return &ValidationError{Path: c.Path, Problems: ps}
	}
	return nil
}

// checker collects problems, attributing each to the environment variable
// that set the value when there is one.
type checker struct{ problems problemList }

func (ch *checker) add(path []string, value, reason, fix string) {
	ch.problems.add(Problem{Key: keyString(path), Value: value, Reason: reason, Fix: fix, Env: envFor(path)})
}

func q(s string) string { return strconv.Quote(truncate(s)) }

const (
	placeholderHSAddress = "http://example.localhost:8008"
	placeholderDomain    = "example.com"
	placeholderPGURI     = "postgres://user:password@host/database?sslmode=disable"
)

func (c *Config) validate() []Problem {
	ch := &checker{}
	c.validateHomeserver(ch)
	c.validateAppservice(ch)
	c.validateDatabase(ch)
	c.validatePermissions(ch)
	c.validateSecrets(ch)
	c.validateLog(ch)
	c.validateMetrics(ch)
	c.validateNetwork(ch)
	c.validateListener(ch)
	c.validateAPI(ch)
	return ch.problems
}

func (c *Config) validateHomeserver(ch *checker) {
	hs := c.Homeserver
	const addressFix = "write the client-server URL of your homeserver, e.g. http://127.0.0.1:8008"
	for _, s := range []struct {
		key, value     string
		example        string // the example config's placeholder
		exampleFix     string
		valid          func(string) bool
		invalid, fixIt string
	}{
		{"address", hs.Address, placeholderHSAddress, addressFix, isHTTPURL, "is not a URL", addressFix},
		{"domain", hs.Domain, placeholderDomain, "write your homeserver's server_name (the part after the colon in @you:server), e.g. localhost",
			validServerName, "is not a server name", "write your homeserver's server_name without scheme or path, e.g. localhost or matrix.example.org"},
	} {
		path := []string{"homeserver", s.key}
		switch {
		case s.value == s.example:
			ch.add(path, q(s.value), "is the example value", s.exampleFix)
		case !s.valid(s.value):
			ch.add(path, q(s.value), s.invalid, s.fixIt)
		}
	}
	if !bridgeconfig.AllowedHomeserverSoftware[hs.Software] {
		ch.add([]string{"homeserver", "software"}, q(string(hs.Software)), "is not a supported value",
			"write standard (right for Synapse, Dendrite and Conduit)")
	}
}

func (c *Config) validateAppservice(ch *checker) {
	as := c.AppService
	if !isHTTPURL(as.Address) {
		ch.add([]string{"appservice", "address"}, q(as.Address), "is not a URL",
			fmt.Sprintf("write the URL the homeserver uses to reach the bridge, e.g. http://127.0.0.1:%d", DefaultPort))
	}
	if strings.TrimSpace(as.Hostname) == "" {
		ch.add([]string{"appservice", "hostname"}, q(as.Hostname), "is empty",
			"write the address to listen on: 127.0.0.1 for a homeserver on the same machine, 0.0.0.0 in Docker")
	}
	if as.Port == 0 {
		ch.add([]string{"appservice", "port"}, "0", "is not a port number",
			fmt.Sprintf("write a port number from 1 to 65535, e.g. %d", DefaultPort))
	}
	if as.ID == "" || strings.ContainsAny(as.ID, " \t\r\n") {
		ch.add([]string{"appservice", "id"}, q(as.ID), "is not a usable appservice ID",
			fmt.Sprintf("write a short name without spaces, e.g. %s; it must match the id in the registration file", NetworkID))
	}
	if !validLocalpart(as.Bot.Username) {
		ch.add([]string{"appservice", "bot", "username"}, q(as.Bot.Username), "is not a valid Matrix localpart",
			fmt.Sprintf("write lower-case letters, digits and ._=-/+ only, e.g. %sbot", NetworkID))
	}
	path := []string{"appservice", "username_template"}
	tmpl, err := template.New("username").Parse(as.UsernameTemplate)
	if err != nil {
		ch.add(path, q(as.UsernameTemplate), "is not a valid template ("+err.Error()+")",
			fmt.Sprintf("write e.g. %s_{{.}}", NetworkID))
	} else {
		var sb strings.Builder
		err = tmpl.Execute(&sb, "15551234567")
		if err != nil || !strings.Contains(sb.String(), "15551234567") || !validLocalpart(sb.String()) {
			ch.add(path, q(as.UsernameTemplate), "does not produce a valid localpart containing the user ID",
				fmt.Sprintf("write a template with {{.}} and lower-case letters, digits and ._=-/+ only, e.g. %s_{{.}}", NetworkID))
		}
	}
}

func (c *Config) validateDatabase(ch *checker) {
	db := c.Database
	path := []string{"database", "type"}
	switch db.Type {
	case "sqlite3-fk-wal", "postgres":
	case "sqlite3":
		ch.add(path, q(db.Type), "is not supported by the bridge", "write sqlite3-fk-wal (the same SQLite driver with foreign keys and WAL enabled)")
	default:
		ch.add(path, q(db.Type), "is not a supported database type", "write sqlite3-fk-wal or postgres")
	}
	path = []string{"database", "uri"}
	switch {
	case db.URI == "":
		ch.add(path, q(db.URI), "is empty", "write e.g. file:bubbled.db?_txlock=immediate for SQLite or postgres://user:pass@host/db for Postgres")
	case db.URI == placeholderPGURI:
		ch.add(path, q(db.URI), "is the example value", "write your Postgres connection string, or use type sqlite3-fk-wal with uri file:bubbled.db?_txlock=immediate")
	case db.Type == "postgres" && !validPostgresURI(db.URI):
		ch.add(path, "(hidden)", "is not a Postgres connection string", "write postgres://user:password@host/database?sslmode=disable or key=value pairs like host=/run/postgresql dbname=bubbled")
	}
	if db.MaxOpenConns < 0 {
		ch.add([]string{"database", "max_open_conns"}, strconv.Itoa(db.MaxOpenConns), "is negative", "write a positive number, e.g. 5")
	}
}

func (c *Config) validatePermissions(ch *checker) {
	path := []string{"bridge", "permissions"}
	perms := c.Bridge.Permissions
	if len(perms) == 0 {
		ch.add(path, "", "is empty", `add who may use the bridge, e.g. "localhost": user and "@you:localhost": admin`)
		return
	}
	keys := make([]string, 0, len(perms))
	for k := range perms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	anyLogin := false
	for _, k := range keys {
		p := perms[k]
		if p == nil {
			continue
		}
		if p.Login {
			anyLogin = true
		}
		switch {
		case k == "*":
		case strings.HasPrefix(k, "@"):
			if i := strings.IndexByte(k, ':'); i < 2 || !validServerName(k[i+1:]) {
				ch.add(append(path, k), "", "is not a Matrix user ID", "write a full user ID like @you:localhost")
			}
		case !validServerName(k):
			ch.add(append(path, k), "", "is not *, a server name or a user ID", `write "*", a server name like localhost, or a user ID like @you:localhost`)
		}
	}
	if !anyLogin {
		ch.add(path, "", "gives nobody the user or admin level, so nobody can log in a modem",
			`give yourself user or admin, e.g. "@you:localhost": admin`)
	}
}

func (c *Config) validateSecrets(ch *checker) {
	check := func(path []string, v string, fix string) {
		if needsGeneration(v) {
			ch.add(path, q(v), "was not generated", fix)
		}
	}
	check([]string{"appservice", "as_token"}, c.AppService.ASToken, "set a long random value, or remove the variable so the bridge generates one in the file")
	check([]string{"appservice", "hs_token"}, c.AppService.HSToken, "set a long random value, or remove the variable so the bridge generates one in the file")
	check([]string{"encryption", "pickle_key"}, c.Encryption.PickleKey, "set a long random value, or remove the variable so the bridge generates one in the file")
	if s := c.Provisioning.SharedSecret; s == "generate" {
		check([]string{"provisioning", "shared_secret"}, s, "set a random value of at least 16 characters, disable, or remove the variable so the bridge generates one")
	}
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func (c *Config) validateLog(ch *checker) {
	if !slices.Contains(logLevels, strings.ToLower(c.Log.Level)) {
		ch.add([]string{"log", "level"}, q(c.Log.Level), "is not a log level", "write one of "+strings.Join(logLevels, ", "))
	}
	if f := strings.ToLower(c.Log.Format); f != "console" && f != "json" {
		ch.add([]string{"log", "format"}, q(c.Log.Format), "is not a log format", "write console or json")
	}
}

func (c *Config) validateMetrics(ch *checker) {
	l := c.Metrics.Listen
	if l == "" {
		return
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		ch.add([]string{"metrics", "listen"}, q(l), "is not host:port", "write e.g. 127.0.0.1:9466, or \"\" to turn the metrics listener off")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ch.add([]string{"metrics", "listen"}, q(l), "has no valid port", "write a port from 1 to 65535, e.g. 127.0.0.1:9466")
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		ch.add([]string{"metrics", "listen"}, q(l), "has a host that is not an IP address", "write an IP address to listen on, e.g. 127.0.0.1 (or 0.0.0.0 inside a container)")
	}
}

var modemIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c *Config) validateNetwork(ch *checker) {
	n := c.Network
	region := strings.ToUpper(n.DefaultRegion)
	regionOK := phone.KnownRegion(region)
	if !regionOK {
		ch.add([]string{"network", "default_region"}, q(n.DefaultRegion), "is not a region known to the phone number library",
			"write a two-letter ISO 3166 country code such as US, GB or DE")
	}
	ids := map[string]int{}
	devices := map[string]int{}
	for i, m := range n.Modems {
		base := []string{"network", "modems[" + strconv.Itoa(i) + "]"}
		at := func(k string) []string { return append(append([]string(nil), base...), k) }
		switch {
		case m.ID == "":
			ch.add(at("id"), q(m.ID), "is empty", fmt.Sprintf("give every modem a short unique name, e.g. modem%d", i+1))
		case !modemIDPattern.MatchString(m.ID):
			ch.add(at("id"), q(m.ID), "contains characters other than letters, digits, '.', '-' and '_'", "write a short name such as sim1")
		default:
			if j, dup := ids[m.ID]; dup {
				ch.add(at("id"), q(m.ID), fmt.Sprintf("is also the id of network.modems[%d]", j), "give every modem a different id")
			} else {
				ids[m.ID] = i
			}
		}
		if reason := checkDevice(m.Device); reason != "" {
			ch.add(at("device"), q(m.Device), reason,
				"write the serial device path, e.g. /dev/ttyUSB2 or /dev/serial/by-id/usb-..., or tcp://host:port for a network serial bridge")
		} else if j, dup := devices[m.Device]; dup {
			ch.add(at("device"), q(m.Device), fmt.Sprintf("is also the device of network.modems[%d]", j), "give every modem its own device")
		} else {
			devices[m.Device] = i
		}
		if m.Baud <= 0 {
			ch.add(at("baud"), strconv.Itoa(m.Baud), "is not a serial speed", fmt.Sprintf("write e.g. %d, or remove the key for the default", DefaultBaud))
		}
		if m.PIN != "" && !validPIN(m.PIN) {
			ch.add(at("pin"), fmt.Sprintf("(hidden, %d characters)", len([]rune(m.PIN))), "is not a SIM PIN",
				`write the SIM's 4 to 8 digit PIN as a quoted string, e.g. "1234", or remove the key if the SIM has no PIN`)
		}
		if m.OwnNumber != "" {
			// Possible is enough: the admin states it, and plans outgrow metadata.
			if _, problem := phone.Explain(m.OwnNumber, region); problem != "" {
				ch.add(at("own_number"), q(m.OwnNumber), "is not a valid phone number for region "+region,
					"write the SIM's number in international form, e.g. +12015550123, or remove the key to ask the SIM")
			}
		}
	}
	s := n.SMS
	if s.MaxParts < 1 || s.MaxParts > 255 {
		ch.add([]string{"network", "sms", "max_parts"}, strconv.Itoa(s.MaxParts), "is out of range", "write a number from 1 to 255, e.g. 10")
	}
	for _, d := range []struct {
		k, eg string
		v     time.Duration
	}{{"command_timeout", "10s", s.CommandTimeout}, {"number_check_timeout", "3m", s.NumberCheckTimeout}, {"send_timeout", "120s", s.SendTimeout}} {
		if d.v <= 0 {
			ch.add([]string{"network", "sms", d.k}, d.v.String(), "is not a positive duration", "write e.g. "+d.eg)
		}
	}
	for _, r := range []struct {
		k string
		v int
	}{{"rate_per_minute", s.RatePerMinute}, {"rate_per_day", s.RatePerDay}, {"rate_per_month", s.RatePerMonth},
		{"user_rate_per_day", s.UserRatePerDay}, {"ussd_per_day", s.USSDPerDay}} {
		if r.v < 0 {
			ch.add([]string{"network", "sms", r.k}, strconv.Itoa(r.v), "is negative", "write a number of SMS parts, or 0 for no cap")
		}
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > 100 {
		ch.add([]string{"network", "sms", "max_attempts"}, strconv.Itoa(s.MaxAttempts), "is out of range", "write a number from 1 to 100, e.g. 5")
	}
	if s.WatchdogInterval < 5*time.Second {
		ch.add([]string{"network", "sms", "watchdog_interval"}, s.WatchdogInterval.String(), "is shorter than 5s", "write e.g. 45s (the modem is checked that often)")
	}
	c.validateNetworkSections(ch, region)
}

// validateNetworkSections checks the sub-sections of network, one function
// each, so that adding one does not grow validateNetwork.
func (c *Config) validateNetworkSections(ch *checker, region string) {
	if s := c.Network.SMS; s.ReassemblyTimeout < time.Second || s.ReassemblyTimeout > 720*time.Hour {
		ch.add([]string{"network", "sms", "reassembly_timeout"}, s.ReassemblyTimeout.String(), "is out of range",
			"write a duration from 1s to 720h, e.g. 24h (a long SMS waits that long for a missing part)")
	}
	c.validateDirectory(ch, region)
	c.validateFallback(ch)
	c.validateRCS(ch)
	c.validateContacts(ch, region)
	c.validateMMS(ch)
	c.validateConversation(ch)
}

func (c *Config) validateConversation(ch *checker) {
	v := c.Network.Conversation
	key := func(k string) []string { return []string{"network", "conversation", k} }
	for _, e := range []struct{ k, v, want string }{{"reactions", v.Reactions, "text"}, {"reaction_removals", v.ReactionRemovals, "text"}, {"replies", v.Replies, "quote"}} {
		if e.v != e.want && e.v != "off" {
			ch.add(key(e.k), q(e.v), "is not "+e.want+" or off", "write "+e.want+" to send it as text, or off")
		}
	}
	if v.QuoteChars < 10 || v.QuoteChars > 160 {
		ch.add(key("quote_chars"), strconv.Itoa(v.QuoteChars), "is out of range", "write a number of characters from 10 to 160, e.g. 60")
	}
	if v.MatchLast < 1 || v.MatchLast > 200 {
		ch.add(key("match_last"), strconv.Itoa(v.MatchLast), "is out of range", "write a number of messages from 1 to 200, e.g. 20")
	}
	if v.Edits != "off" && strings.Count(v.Edits, "{text}") != 1 {
		ch.add(key("edits"), q(v.Edits), "does not contain {text} exactly once", `write e.g. "Correction: {text}", or off to send no corrections`)
	}
}

func (c *Config) validateRCS(ch *checker) {
	r := c.Network.RCS
	key := func(k ...string) []string { return append([]string{"network", "rcs"}, k...) }
	hidden := func(s string) string { return fmt.Sprintf("(hidden, %d characters)", len(s)) }
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"capability_ttl_reachable", r.CapabilityTTLReachable}, {"capability_ttl_unreachable", r.CapabilityTTLUnreachable}, {"message_ttl", r.MessageTTL}} {
		if d.v <= 0 {
			ch.add(key(d.name), d.v.String(), "is not a positive duration", "write e.g. 4h")
		}
	}
	if r.PublicURL != "" && !isHTTPURL(r.PublicURL) {
		ch.add(key("public_url"), q(r.PublicURL), "is not an http(s) URL", `write the address at which the provider reaches this bridge, e.g. https://bubbled.example.org, or "" to send no files by RCS`)
	}
	if !strings.HasPrefix(r.WebhookPath, "/") || strings.HasPrefix(r.WebhookPath, "/_matrix") {
		ch.add(key("webhook_path"), q(r.WebhookPath), "is not a path of its own", "write a path starting with / outside /_matrix, e.g. /rcs")
	}
	if r.Owner != "" {
		if _, _, err := r.Owner.ParseAndValidateRelaxed(); err != nil || !strings.HasPrefix(string(r.Owner), "@") {
			ch.add(key("owner"), q(string(r.Owner)), "is not a Matrix user ID", `write the full user ID of the user who gets RCS from new contacts, e.g. "@you:example.org", or "" with a single user`)
		}
	}
	if r.RatePerDay < 0 {
		ch.add(key("rate_per_day"), strconv.Itoa(r.RatePerDay), "is negative", "write a number of RCS messages per day, or 0 for no cap")
	}
	switch r.Provider {
	case "":
	case "rbm":
		b := r.RBM
		if b.AgentID == "" {
			ch.add(key("rbm", "agent_id"), q(b.AgentID), "is empty", "write your RBM agent's ID from the Business Communications console")
		}
		if b.ServiceAccountFile == "" {
			ch.add(key("rbm", "service_account_file"), q(b.ServiceAccountFile), "is empty", "write the path of the agent's service-account key (JSON)")
		} else if _, err := os.Stat(b.ServiceAccountFile); err != nil {
			ch.add(key("rbm", "service_account_file"), q(b.ServiceAccountFile), "cannot be read ("+err.Error()+")", "write the path of the agent's service-account key (JSON)")
		}
		if len(b.WebhookClientToken) < 8 {
			ch.add(key("rbm", "webhook_client_token"), hidden(b.WebhookClientToken), "is shorter than 8 characters", "write the client token you entered for the agent's webhook, a long random string")
		}
		for _, u := range []struct{ k, v string }{{"base_url", b.BaseURL}, {"token_url", b.TokenURL}} {
			if u.v != "" && !isHTTPURL(u.v) {
				ch.add(key("rbm", u.k), q(u.v), "is not an http(s) URL", `write a URL, or "" for the default`)
			}
		}
	case "maap":
		m := r.MaaP
		for _, f := range []struct{ k, v, fix string }{
			{"bot_id", m.BotID, "write the chatbot's ID from your MaaP platform"},
			{"client_id", m.ClientID, "write the OAuth client ID your MaaP platform gave you"},
		} {
			if f.v == "" {
				ch.add(key("maap", f.k), q(f.v), "is empty", f.fix)
			}
		}
		for _, u := range []struct{ k, v string }{{"base_url", m.BaseURL}, {"token_url", m.TokenURL}} {
			if !isHTTPURL(u.v) {
				ch.add(key("maap", u.k), q(u.v), "is not an http(s) URL", "write the platform's URL, e.g. https://maap.example-carrier.com")
			}
		}
		if m.ClientSecret == "" {
			ch.add(key("maap", "client_secret"), hidden(m.ClientSecret), "is empty", "write the OAuth client secret your MaaP platform gave you")
		}
		if m.WebhookAuth != "hmac-sha256" && m.WebhookAuth != "bearer" {
			ch.add(key("maap", "webhook_auth"), q(m.WebhookAuth), "is not a webhook authentication scheme", "write hmac-sha256 or bearer")
		}
		if len(m.WebhookSecret) < 8 {
			ch.add(key("maap", "webhook_secret"), hidden(m.WebhookSecret), "is shorter than 8 characters", "write the secret your platform signs webhooks with")
		}
	default:
		ch.add(key("provider"), q(r.Provider), "is not an RCS provider", `write rbm, maap, or "" to turn RCS off`)
	}
}

func (c *Config) validateDirectory(ch *checker, region string) {
	d := c.Network.Directory
	numbers := slices.Sorted(maps.Keys(d.Static))
	seen := map[string]string{}
	for _, number := range numbers {
		mxid := d.Static[number]
		key := []string{"network", "directory", "static[" + strconv.Quote(number) + "]"}
		e164, err := phone.Parse(number, region)
		if err != nil {
			ch.add(key, q(number), "is not a phone number", "write the number in international form, e.g. \"+12015550123\": \"@bob:example.org\"")
			continue
		}
		if _, _, err := id.UserID(mxid).Parse(); err != nil || !strings.HasPrefix(mxid, "@") {
			ch.add(key, q(mxid), "is not a Matrix user ID", "write a full Matrix ID such as @bob:example.org")
			continue
		}
		if other, dup := seen[e164]; dup && other != mxid {
			ch.add(key, q(mxid), "is a second Matrix ID for the number "+e164+" (also "+other+")", "keep one entry per number")
		}
		seen[e164] = mxid
	}
	is := d.IdentityServer
	if is.URL != "" && !isHTTPURL(is.URL) {
		ch.add([]string{"network", "directory", "identity_server", "url"}, q(is.URL), "is not an http(s) URL",
			`write the identity server's base URL, e.g. https://vector.im, or "" to turn the lookup off`)
	}
	if is.Timeout <= 0 {
		ch.add([]string{"network", "directory", "identity_server", "timeout"}, is.Timeout.String(), "is not a positive duration", "write e.g. 10s")
	}
	if d.FoundTTL <= 0 {
		ch.add([]string{"network", "directory", "found_ttl"}, d.FoundTTL.String(), "is not a positive duration", "write e.g. 24h")
	}
	if d.NotFoundTTL <= 0 {
		ch.add([]string{"network", "directory", "not_found_ttl"}, d.NotFoundTTL.String(), "is not a positive duration", "write e.g. 1h")
	}
}

func (c *Config) validateListener(ch *checker) {
	l := c.Network.Listener
	key := func(k string) []string { return []string{"network", "listener", k} }
	if l.MaxBodyBytes < 4096 {
		ch.add(key("max_body_bytes"), strconv.FormatInt(l.MaxBodyBytes, 10), "is below 4096 bytes, too small for a transaction",
			"write a size in bytes, e.g. 16777216 (16 MiB)")
	}
	for _, t := range []struct {
		k string
		d time.Duration
	}{{"read_header_timeout", l.ReadHeaderTimeout}, {"read_timeout", l.ReadTimeout}, {"idle_timeout", l.IdleTimeout}} {
		if t.d < time.Second {
			ch.add(key(t.k), t.d.String(), "is under a second, so no homeserver could finish a request",
				"write a duration of at least 1s, e.g. 10s for read_header_timeout, 60s for read_timeout, 120s for idle_timeout")
		}
	}
	if l.MaxHeaderBytes < 4096 {
		ch.add(key("max_header_bytes"), strconv.Itoa(l.MaxHeaderBytes), "is below 4096 bytes, too small for a request's headers", "write e.g. 65536")
	}
}

func (c *Config) validateFallback(ch *checker) {
	f := c.Network.Fallback
	seen := map[string]bool{}
	for i, r := range f.Order {
		key := []string{"network", "fallback", "order[" + strconv.Itoa(i) + "]"}
		switch {
		case r != "matrix" && r != "rcs" && r != "sms":
			ch.add(key, q(r), "is not a route", "use matrix, rcs and sms, best first, e.g. [matrix, rcs, sms]")
		case seen[r]:
			ch.add(key, q(r), "is listed twice", "list each route once")
		}
		seen[r] = true
	}
	if len(f.Order) == 0 {
		ch.add([]string{"network", "fallback", "order"}, "[]", "is empty, so no message could be sent", "write e.g. [matrix, rcs, sms]")
	}
	if f.ConfirmTimeout < 0 {
		ch.add([]string{"network", "fallback", "confirm_timeout"}, f.ConfirmTimeout.String(), "is negative", "write e.g. 5m, or 0s to turn Send as SMS off")
	}
}

// checkDevice returns why dev is not a usable modem device, or "".
func checkDevice(dev string) string {
	switch {
	case dev == "":
		return "is empty"
	case strings.HasPrefix(dev, "tcp://"):
		u, err := url.Parse(dev)
		if err != nil || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return "is not tcp://host:port"
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil || port < 1 || port > 65535 {
			return "has no valid port number"
		}
		return ""
	case strings.Contains(dev, "://"):
		return "uses an unsupported scheme"
	case !filepath.IsAbs(dev):
		return "is not an absolute path"
	}
	return ""
}

func validPIN(pin string) bool {
	if len(pin) < 4 || len(pin) > 8 {
		return false
	}
	for _, r := range pin {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Hostname() != ""
}

var localpartPattern = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)

func validLocalpart(s string) bool { return localpartPattern.MatchString(s) }

var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// validServerName checks a Matrix server name: hostname, IPv4 or [IPv6],
// with an optional port.
func validServerName(s string) bool {
	if s == "" {
		return false
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		if net.ParseIP(s[1:end]) == nil {
			return false
		}
		rest := s[end+1:]
		if rest == "" {
			return true
		}
		if !strings.HasPrefix(rest, ":") {
			return false
		}
		port = rest[1:]
		host = ""
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return false
		}
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return false
		}
	}
	if host == "" {
		return port != ""
	}
	return hostnamePattern.MatchString(host)
}

func validPostgresURI(s string) bool {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return true
	}
	return strings.Contains(s, "=") && !strings.Contains(s, "://")
}

// warnings lists non-fatal findings about a valid config.
func (c *Config) warnings() []Problem {
	var ws []Problem
	if len(c.Network.Modems) == 0 {
		ws = append(ws, Problem{Key: "network.modems", Reason: "is empty, so no SMS can be sent or received",
			Fix: "add an entry with id: and device: for each modem"})
	}
	if c.Database.Type == "sqlite3-fk-wal" && !strings.Contains(c.Database.URI, "_txlock=immediate") {
		ws = append(ws, Problem{Key: "database.uri", Reason: "lacks _txlock=immediate, which can cause 'database is locked' errors",
			Fix: "append ?_txlock=immediate (or &_txlock=immediate) to the URI"})
	}
	if s := c.Provisioning.SharedSecret; s != "disable" && len(s) < 16 {
		ws = append(ws, Problem{Key: "provisioning.shared_secret", Value: "(hidden)", Reason: "is shorter than 16 characters, so the provisioning API is disabled",
			Fix: "write generate for a random secret, or disable"})
	}
	for _, k := range []string{"example.com", "@admin:example.com"} {
		if _, ok := c.Bridge.Permissions[k]; ok {
			ws = append(ws, Problem{Key: keyString([]string{"bridge", "permissions", k}), Reason: "is an entry from the example config",
				Fix: "replace it with your own server name or user ID"})
		}
	}
	if c.Encryption.Require && !c.Encryption.Allow {
		ws = append(ws, Problem{Key: "encryption.require", Value: "true", Reason: "has no effect while encryption.allow is false",
			Fix: "set encryption.allow: true"})
	}
	return ws
}

// validateAPI checks the api section: a listener bubbled can open, and
// tokens that name whom they may text from which line.
func (c *Config) validateAPI(ch *checker) {
	a := c.API
	if a.Listen != "" {
		host, port, err := net.SplitHostPort(a.Listen)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || perr != nil || n < 1 || n > 65535:
			ch.add([]string{"api", "listen"}, q(a.Listen), "is not host:port", "write an address like 127.0.0.1:29330")
		case !isLoopback(host) && len(a.Tokens) == 0:
			ch.add([]string{"api", "listen"}, q(a.Listen), "is not a loopback address and api.tokens is empty",
				"listen on 127.0.0.1, or add tokens before you open the API to the network")
		}
	}
	names := map[string]int{}
	secrets := map[string]int{}
	for i, t := range a.Tokens {
		base := []string{"api", "tokens[" + strconv.Itoa(i) + "]"}
		at := func(k string) []string { return append(append([]string(nil), base...), k) }
		switch j, dup := names[t.Name]; {
		case !modemIDPattern.MatchString(t.Name):
			ch.add(at("name"), q(t.Name), "is not a token name", "name the client with letters, digits, '-', '_' or '.', e.g. alertmanager")
		case dup:
			ch.add(at("name"), q(t.Name), fmt.Sprintf("is also the name of api.tokens[%d]", j), "give every token a different name")
		}
		names[t.Name] = i
		switch j, dup := secrets[t.Token]; {
		case needsGeneration(t.Token):
			ch.add(at("token"), `"generate"`, "was not generated", "write a random value of at least 32 characters, or start once with a writable config file")
		case len(t.Token) < 32:
			ch.add(at("token"), "(hidden)", "is shorter than 32 characters", `write "generate" to get a random token, or a longer one`)
		case dup:
			ch.add(at("token"), "(hidden)", fmt.Sprintf("is also the token of api.tokens[%d]", j), `give every client its own token ("generate")`)
		}
		secrets[t.Token] = i
		c.validateAPITokenNumbers(ch, t, at)
		if t.DailyCap < 0 {
			ch.add(at("daily_cap"), strconv.Itoa(t.DailyCap), "is negative", "write how many messages the token may send per day, or 0 for no cap")
		}
	}
	for i, w := range a.Webhooks {
		base := []string{"api", "webhooks[" + strconv.Itoa(i) + "]"}
		at := func(k string) []string { return append(append([]string(nil), base...), k) }
		if !isHTTPURL(w.URL) {
			ch.add(at("url"), q(w.URL), "is not an http or https URL", "write where the webhook is received, e.g. http://127.0.0.1:8123/api/webhook/sms")
		}
		switch {
		case needsGeneration(w.Secret):
			ch.add(at("secret"), `"generate"`, "was not generated", "write a random value of at least 32 characters, or start once with a writable config file")
		case len(w.Secret) < 32:
			ch.add(at("secret"), "(hidden)", "is shorter than 32 characters", `write "generate" to get a random secret, or a longer one`)
		}
		c.validateAPITokenNumbers(ch, APIToken{Lines: w.Lines, Recipients: []string{"*"}}, at)
	}
}

// validateAPITokenNumbers checks a token's lines and recipients.
func (c *Config) validateAPITokenNumbers(ch *checker, t APIToken, at func(string) []string) {
	if len(t.Lines) == 0 {
		ch.add(at("lines"), "", "is empty, so it covers no line",
			"list the own numbers of the lines it may send from, e.g. [\"+15550001111\"]")
	}
	for j, l := range t.Lines {
		if _, err := phone.Parse(l, strings.ToUpper(c.Network.DefaultRegion)); err != nil {
			ch.add(at("lines["+strconv.Itoa(j)+"]"), q(l), "is not a phone number ("+err.Error()+")", "write the line's own number in international form, e.g. +15550001111")
		}
	}
	if len(t.Recipients) == 0 {
		ch.add(at("recipients"), "", "is empty, so the token could text nobody",
			`list the numbers it may text (e.g. "+15557654321"), prefixes such as "+1555*", or "*" for anyone`)
	}
	for j, r := range t.Recipients {
		if r == "*" {
			continue
		}
		if prefix, ok := strings.CutSuffix(r, "*"); ok {
			if !strings.HasPrefix(prefix, "+") || !phone.IsDigits(prefix[1:]) || len(prefix) < 2 {
				ch.add(at("recipients["+strconv.Itoa(j)+"]"), q(r), "is not a number prefix", `write a + and digits before the *, e.g. "+1555*"`)
			}
			continue
		}
		if _, err := phone.Parse(r, strings.ToUpper(c.Network.DefaultRegion)); err != nil {
			ch.add(at("recipients["+strconv.Itoa(j)+"]"), q(r), "is not a phone number ("+err.Error()+")", `write a number in international form, a prefix such as "+1555*", or "*"`)
		}
	}
}

// isLoopback reports whether a listen host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// normalise rewrites validated values into canonical forms.
func (c *Config) normalise() {
	for i := range c.API.Webhooks {
		w := &c.API.Webhooks[i]
		for j, l := range w.Lines {
			if e164, err := phone.Parse(l, strings.ToUpper(c.Network.DefaultRegion)); err == nil {
				w.Lines[j] = e164
			}
		}
	}
	for i := range c.API.Tokens {
		t := &c.API.Tokens[i]
		for j, l := range t.Lines {
			if e164, err := phone.Parse(l, strings.ToUpper(c.Network.DefaultRegion)); err == nil {
				t.Lines[j] = e164
			}
		}
		for j, r := range t.Recipients {
			if e164, err := phone.Parse(r, strings.ToUpper(c.Network.DefaultRegion)); err == nil && !strings.HasSuffix(r, "*") {
				t.Recipients[j] = e164
			}
		}
	}
	c.Network.DefaultRegion = strings.ToUpper(c.Network.DefaultRegion)
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Format = strings.ToLower(c.Log.Format)
	for i := range c.Network.Modems {
		m := &c.Network.Modems[i]
		if m.OwnNumber == "" {
			continue
		}
		if e164, err := phone.Parse(m.OwnNumber, c.Network.DefaultRegion); err == nil {
			m.OwnNumber = e164
		}
	}
}

// unknownEnvWarnings warns about BUBBLED_* variables that match no key.
// toolVariables are BUBBLED_* variables of bubbled's own tools and tests
// (the Dendrite harness, the crash tests), which are not config keys.
var toolVariables = []string{"BUBBLED_DENDRITE_BIN", "BUBBLED_SKIP_DENDRITE", "BUBBLED_CRASH_FULL", "BUBBLED_PG_BIN",
	"BUBBLED_TEST_POSTGRES", "BUBBLED_TEST_READONLY", "BUBBLED_SMS_CRASH_"}

func isToolVariable(name string) bool {
	for _, v := range toolVariables {
		if name == v || strings.HasSuffix(v, "_") && strings.HasPrefix(name, v) {
			return true
		}
	}
	return false
}

func unknownEnvWarnings(v *viper.Viper, defs *defaults) []Problem {
	known := map[string]bool{}
	for _, k := range v.AllKeys() {
		known[envName(strings.Split(k, keyDelim))] = true
	}
	for _, k := range append(append(append([]string(nil), freeFormMaps...), openMaps...), defs.seqKeys...) {
		known[envName(strings.Split(k, "."))] = true
	}
	var ws []Problem
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix+"_") && !known[strings.ToUpper(name)] && !isToolVariable(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ws = append(ws, Problem{Key: name, Reason: "is set but matches no config key and is ignored",
			Fix: "name variables BUBBLED_ + the key path in upper case with __ between levels, e.g. BUBBLED_HOMESERVER__ADDRESS"})
	}
	return ws
}

// resolveSQLitePath makes a relative SQLite file path in uri absolute,
// relative to dir (the config file's directory).
// sqliteStatementCache is how many prepared statements each SQLite
// connection keeps. Without a cache go-sqlite3 prepares every query again;
// that was about a tenth of the daemon's CPU per outbound message (the
// outbox, outcome pump and journal run the same few statements).
const sqliteStatementCache = 64

// withStatementCache adds _stmt_cache_size to a SQLite URI that does not
// set it.
func withStatementCache(dbType, uri string) string {
	if dbType != "sqlite3-fk-wal" || strings.Contains(uri, "_stmt_cache_size=") {
		return uri
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + "_stmt_cache_size=" + strconv.Itoa(sqliteStatementCache)
}

func resolveSQLitePath(dbType, uri, dir string) string {
	if !strings.HasPrefix(dbType, "sqlite") && dbType != "litestream" {
		return uri
	}
	file, hasPrefix := strings.CutPrefix(uri, "file:")
	p, query, hasQuery := strings.Cut(file, "?")
	if p == "" || strings.HasPrefix(p, "/") || strings.HasPrefix(p, ":memory:") || (hasPrefix && strings.HasPrefix(p, "//")) {
		return uri
	}
	abs := filepath.Join(dir, p)
	if hasPrefix {
		// SQLite decodes %HH in file: URIs.
		abs = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(abs)
	}
	out := abs
	if hasPrefix {
		out = "file:" + abs
	}
	if hasQuery {
		out += "?" + query
	}
	return out
}
