package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
)

// exampleConfig returns the repository's example-config.yaml.
func exampleConfig(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "example-config.yaml"))
	if err != nil {
		t.Fatalf("read example config: %v", err)
	}
	return string(data)
}

// writeConfig writes text to config.yaml in a fresh temp dir.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// minimalConfig is the smallest valid config: defaults do the rest.
const minimalConfig = `homeserver:
    address: http://127.0.0.1:8008
    domain: localhost
bridge:
    permissions:
        "localhost": user
network:
    modems:
        - id: sim1
          device: /dev/ttyUSB2
`

// replace applies old->new pairs to text and fails if one is missing.
func replace(t testing.TB, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("test setup: %q not found in config", pairs[i])
		}
		text = strings.Replace(text, pairs[i], pairs[i+1], 1)
	}
	return text
}

func TestLoadExampleConfig(t *testing.T) {
	path := writeConfig(t, exampleConfig(t))
	cfg, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("example config has warnings: %v", cfg.Warnings)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"homeserver.address", cfg.Homeserver.Address, "http://127.0.0.1:8008"},
		{"homeserver.domain", cfg.Homeserver.Domain, "localhost"},
		{"appservice.port", cfg.AppService.Port, uint16(29340)},
		{"appservice.id", cfg.AppService.ID, NetworkID},
		{"appservice.bot.username", cfg.AppService.Bot.Username, "smsbot"},
		{"appservice.ephemeral_events", cfg.AppService.EphemeralEvents, true},
		{"database.type", cfg.Database.Type, "sqlite3-fk-wal"},
		{"database.uri", cfg.Database.URI, "file:" + filepath.Join(filepath.Dir(path), "bubbled.db") + "?_txlock=immediate&_stmt_cache_size=64"},
		{"encryption.allow", cfg.Encryption.Allow, true},
		{"encryption.default", cfg.Encryption.Default, true},
		{"network.default_region", cfg.Network.DefaultRegion, "US"},
		{"modem count", len(cfg.Network.Modems), 1},
		{"modem id", cfg.Network.Modems[0].ID, "sim1"},
		{"modem baud", cfg.Network.Modems[0].Baud, 115200},
		{"sms.max_parts", cfg.Network.SMS.MaxParts, 10},
		{"sms.command_timeout", cfg.Network.SMS.CommandTimeout, 10 * time.Second},
		{"sms.send_timeout", cfg.Network.SMS.SendTimeout, 120 * time.Second},
		{"sms.status_reports", cfg.Network.SMS.StatusReports, true},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "console"},
		{"metrics.listen", cfg.Metrics.Listen, "127.0.0.1:9466"},
		{"metrics.pprof", cfg.Metrics.Pprof, false},
		{"permission count", len(cfg.Bridge.Permissions), 3},
		{"admin level", *cfg.Bridge.Permissions["@admin:localhost"], bridgeconfig.PermissionLevelAdmin},
		{"relay level", *cfg.Bridge.Permissions["*"], bridgeconfig.PermissionLevelRelay},
		// Defaults from mautrix's example config survive.
		{"bridge.portal_event_buffer", cfg.Bridge.PortalEventBuffer, 64},
		{"bridge.relay.message_formats count", len(cfg.Bridge.Relay.MessageFormats), 8},
		{"homeserver.retry_limit", cfg.Homeserver.RetryLimit, 4},
		{"bridge backfill copied", cfg.Bridge.Backfill.MaxCatchupMessages, cfg.Backfill.MaxCatchupMessages},
		{"as_token length", len(cfg.AppService.ASToken), 64},
		{"pickle_key length", len(cfg.Encryption.PickleKey), 64},
		{"path", cfg.Path, path},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(cfg.DoublePuppet.Servers) != 0 || len(cfg.DoublePuppet.Secrets) != 0 {
		t.Errorf("example double_puppet entries leaked in: %v %v", cfg.DoublePuppet.Servers, cfg.DoublePuppet.Secrets)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after Load: %v", err)
	}
}

func TestLoadMinimalConfig(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalConfig), LoadOptions{})
	if err != nil {
		t.Fatalf("minimal config does not load: %v", err)
	}
	if cfg.Network.Modems[0].Baud != DefaultBaud {
		t.Errorf("baud = %d, want default %d", cfg.Network.Modems[0].Baud, DefaultBaud)
	}
	if cfg.AppService.Bot.Username != "smsbot" || cfg.AppService.UsernameTemplate != "sms_{{.}}" {
		t.Errorf("bot/template defaults not rendered: %q %q", cfg.AppService.Bot.Username, cfg.AppService.UsernameTemplate)
	}
	if cfg.Bridge.CommandPrefix != DefaultCommandPrefix {
		t.Errorf("command_prefix = %q, want %q", cfg.Bridge.CommandPrefix, DefaultCommandPrefix)
	}
}

func TestLoadProblems(t *testing.T) {
	cases := []struct {
		name string
		// edit turns the example config into the case's config.
		edit func(t *testing.T, s string) string
		env  map[string]string
		// want are substrings that must all appear in one line of the error.
		want [][]string
		// notWant must not appear anywhere in the error.
		notWant []string
		// wantLines, when set, is the exact number of problems.
		wantLines int
	}{
		{
			name: "missing homeserver address",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "    address: http://127.0.0.1:8008\n", "")
			},
			want: [][]string{{"homeserver.address:", `"http://example.localhost:8008"`, "is the example value", "write the client-server URL"}},
		},
		{
			name: "empty homeserver address",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "address: http://127.0.0.1:8008", `address: ""`)
			},
			want: [][]string{{`homeserver.address: "" is not a URL; write the client-server URL of your homeserver, e.g. http://127.0.0.1:8008`}},
		},
		{
			name: "homeserver address without scheme",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "address: http://127.0.0.1:8008", "address: 127.0.0.1:8008")
			},
			want: [][]string{{"homeserver.address:", "is not a URL"}},
		},
		{
			name: "bad own number",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `own_number: ""`, `own_number: "12"`)
			},
			want: [][]string{{"network.modems[0].own_number:", `"12"`, "not a valid phone number for region US", "+12015550123"}},
		},
		{
			name: "bad static directory entries",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "static: {}", `static: {"12ab": "@bob:example.org", "+12015550123": "bob"}`)
			},
			want: [][]string{
				{`network.directory.static["12ab"]:`, `"12ab"`, "is not a phone number", "international form"},
				{`network.directory.static["+12015550123"]:`, `"bob"`, "is not a Matrix user ID", "@bob:example.org"},
			},
		},
		{
			name: "rcs provider without its settings",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `provider: ""`, `provider: rbm`)
			},
			want: [][]string{
				{"network.rcs.rbm.agent_id:", "is empty"},
				{"network.rcs.rbm.service_account_file:", "is empty"},
				{"network.rcs.rbm.webhook_client_token:", "hidden", "shorter than 8"},
			},
		},
		{
			name: "listener limits too small",
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, "max_body_bytes: 16777216", "max_body_bytes: 100")
				return replace(t, s, "read_header_timeout: 10s", "read_header_timeout: 0s")
			},
			want: [][]string{
				{"network.listener.max_body_bytes:", "100", "below 4096", "16777216"},
				{"network.listener.read_header_timeout:", "0s", "under a second", "at least 1s"},
			},
			wantLines: 2,
		},
		{
			name: "listener limit from the environment",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_NETWORK__LISTENER__IDLE_TIMEOUT": "10ms"},
			want: [][]string{{"network.listener.idle_timeout:", "10ms", "BUBBLED_NETWORK__LISTENER__IDLE_TIMEOUT"}},
		},
		{
			name: "bad contacts and privacy",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "            url: \"\"\n            # HTTP basic auth", "            url: ftp://dav.example.org\n            # HTTP basic auth",
					"            password: \"\"\n", "            password: hunter2-secret\n",
					"sync_interval: 15m", "sync_interval: 0s",
					"unknown_senders: room", "unknown_senders: maybe",
					"blocked: []", "blocked: [\"call me\"]",
					"codes_ttl: 0s", "codes_ttl: 5s")
			},
			want: [][]string{
				{"network.contacts.carddav.url:", `"ftp://dav.example.org"`, "is not an http(s) URL"},
				{"network.contacts.carddav.username:", "is given without a password, or a password without it"},
				{"network.contacts.sync_interval:", "is shorter than 1s"},
				{"network.privacy.unknown_senders:", `"maybe"`, "write room, quarantine or drop"},
				{"network.privacy.blocked[0]:", `"call me"`, "is not a phone number"},
				{"network.privacy.codes_ttl:", "5s", "write e.g. 24h"},
			},
			notWant: []string{"hunter2-secret"},
		},
		{
			name: "quarantine without contacts",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "unknown_senders: room", "unknown_senders: quarantine")
			},
			want: [][]string{{"network.privacy.unknown_senders:", `"quarantine"`, "needs contacts", "set network.contacts.carddav.url"}},
		},
		{
			name: "rcs owner not a user ID, negative caps",
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, `owner: ""`, `owner: "alice"`)
				s = replace(t, s, "rate_per_day: 500", "rate_per_day: -1")
				s = replace(t, s, "user_rate_per_day: 300", "user_rate_per_day: -3")
				return replace(t, s, "ussd_per_day: 20", "ussd_per_day: -2")
			},
			want: [][]string{
				{"network.rcs.owner:", `"alice"`, "is not a Matrix user ID", "@you:example.org"},
				{"network.rcs.rate_per_day:", "-1", "is negative", "0 for no cap"},
				{"network.sms.user_rate_per_day:", "-3", "is negative"},
				{"network.sms.ussd_per_day:", "-2", "is negative"},
			},
		},
		{
			name: "unknown rcs provider",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `provider: ""`, `provider: carrier-pigeon`)
			},
			want: [][]string{{"network.rcs.provider:", `"carrier-pigeon"`, "is not an RCS provider"}},
		},
		{
			name: "bad fallback order",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "order: [matrix, rcs, sms]", "order: [matrix, carrier-pigeon, matrix]")
			},
			want: [][]string{
				{"network.fallback.order[1]:", `"carrier-pigeon"`, "is not a route"},
				{"network.fallback.order[2]:", `"matrix"`, "is listed twice"},
			},
		},
		{
			name: "bad conversation settings",
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, "reactions: text\n", "reactions: emoji\n")
				s = replace(t, s, "quote_chars: 60", "quote_chars: 5")
				s = replace(t, s, "reassembly_timeout: 24h", "reassembly_timeout: 0s")
				s = replace(t, s, "match_last: 20", "match_last: 0")
				return replace(t, s, `edits: "Correction: {text}"`, `edits: "Correction"`)
			},
			want: [][]string{
				{"network.sms.reassembly_timeout:", "0s", "out of range", "1s to 720h"},
				{"network.conversation.reactions:", `"emoji"`, "is not text or off"},
				{"network.conversation.quote_chars:", "5", "out of range", "10 to 160"},
				{"network.conversation.match_last:", "0", "out of range"},
				{"network.conversation.edits:", `"Correction"`, "{text} exactly once"},
			},
		},
		{
			name: "national own number in another region",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `own_number: ""`, `own_number: "07911 123456"`)
			},
			want: [][]string{{"network.modems[0].own_number:", `"07911 123456"`, "region US"}},
		},
		{
			name: "bad env override of int",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_APPSERVICE__PORT": "abc"},
			want: [][]string{{"appservice.port:", `"abc"`, "BUBBLED_APPSERVICE__PORT", "port number from 1 to 65535"}},
		},
		{
			name: "port out of range in file",
			edit: func(t *testing.T, s string) string { return replace(t, s, "port: 29340", "port: 70000") },
			want: [][]string{{"appservice.port:", "70000", "port number"}},
		},
		{
			name:    "bad env duration",
			edit:    func(t *testing.T, s string) string { return s },
			env:     map[string]string{"BUBBLED_NETWORK__SMS__SEND_TIMEOUT": "120"},
			want:    [][]string{{"network.sms.send_timeout:", "120", "is not a duration", "BUBBLED_NETWORK__SMS__SEND_TIMEOUT", "10s"}},
			notWant: []string{"line "},
		},
		{
			name: "bad duration in file",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "command_timeout: 10s", "command_timeout: soon")
			},
			want: [][]string{{"network.sms.command_timeout:", `"soon"`, "is not a duration"}},
		},
		{
			name: "bad env bool",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_ENCRYPTION__ALLOW": "maybe"},
			want: [][]string{{"encryption.allow:", "is not true or false", "BUBBLED_ENCRYPTION__ALLOW"}},
		},
		{
			name: "plain sqlite3",
			edit: func(t *testing.T, s string) string { return replace(t, s, "type: sqlite3-fk-wal", "type: sqlite3") },
			want: [][]string{{"database.type:", `"sqlite3"`, "write sqlite3-fk-wal"}},
		},
		{
			name: "unknown database type",
			edit: func(t *testing.T, s string) string { return replace(t, s, "type: sqlite3-fk-wal", "type: mysql") },
			want: [][]string{{"database.type:", "sqlite3-fk-wal or postgres"}},
		},
		{
			name: "unknown region",
			edit: func(t *testing.T, s string) string { return replace(t, s, "default_region: US", "default_region: XX") },
			want: [][]string{{"network.default_region:", `"XX"`, "two-letter"}},
		},
		{
			name: "modem checks",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "    sms:\n", `        - id: sim1
          device: ttyUSB3
          baud: 0
          pin: "12a4"
        - id: ""
          device: tcp://modem.local
        - id: "bad id"
          device: /dev/ttyUSB2
    sms:
`)
			},
			want: [][]string{
				{"network.modems[1].id:", `"sim1"`, "also the id of network.modems[0]"},
				{"network.modems[1].device:", `"ttyUSB3"`, "not an absolute path", "/dev/ttyUSB2"},
				{"network.modems[1].baud:", "0", "serial speed"},
				{"network.modems[1].pin:", "(hidden, 4 characters)", "4 to 8 digit"},
				{"network.modems[2].id:", `""`, "is empty"},
				{"network.modems[2].device:", "tcp://host:port"},
				{"network.modems[3].id:", "characters other than"},
				{"network.modems[3].device:", "also the device of network.modems[0]"},
			},
			notWant: []string{"12a4"},
		},
		{
			name: "sms limits",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "max_parts: 10", "max_parts: 256", "send_timeout: 120s", "send_timeout: -1s")
			},
			want: [][]string{
				{"network.sms.max_parts:", "256", "1 to 255"},
				{"network.sms.send_timeout:", "-1s", "not a positive duration"},
			},
		},
		{
			name: "mms settings",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "        enabled: false\n        # The MMSC", "        enabled: true\n        # The MMSC",
					`proxy: ""`, `proxy: "10.0.0.1"`, `interface: ""`, `interface: "wwan0/x"`, "max_size: 307200", "max_size: 10",
					`mms_mmsc: ""`, `mms_mmsc: "mmsc.example"`)
			},
			want: [][]string{
				{"network.mms.mmsc:", `""`, "enabled is true", "APN settings"},
				{"network.modems[0].mms_proxy:", `"10.0.0.1"`, "host:port"}, // the modem's key comes first in the file
				{"network.modems[0].mms_interface:", "wwan0/x", "ip link"},
				{"network.mms.max_size:", "10", "1024"},
				{"network.modems[0].mms_mmsc:", "mmsc.example", "http(s) URL"},
			},
			wantLines: 5,
		},
		{
			name: "mms bearer",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `bearer: ""`, `bearer: "at"`, "bearer_cid: 1", "bearer_cid: 16")
			},
			want: [][]string{
				{"network.mms.apn:", `""`, "bearer is at", "APN settings"},
				{"network.mms.bearer_cid:", "16", "1 to 15"},
			},
			wantLines: 2,
		},
		{
			name: "mms bearer kind",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `bearer: ""`, `bearer: "qmi"`, "\n        apn: \"\"", "\n        apn: \"a,b\"")
			},
			want: [][]string{
				{"network.mms.bearer:", `"qmi"`, `"at"`},
				{"network.mms.apn:", `"a,b"`, "quote, comma"},
			},
			wantLines: 2,
		},
		{
			name: "mms per-modem apn",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `bearer: ""`, `bearer: "at"`, `mms_apn: ""`, `mms_apn: "x\"y"`)
			},
			want: [][]string{
				{"network.modems[0].mms_apn:", `x\"y`, "quote, comma"},
			},
			notWant:   []string{"network.mms.apn:"}, // every modem names its own
			wantLines: 1,
		},
		{
			name: "no permissions",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `        "*": relay
        "localhost": user
        "@admin:localhost": admin
`, "")
			},
			want: [][]string{{"bridge.permissions:", "is empty", `"localhost": user`}},
		},
		{
			name: "bad permission level and key",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `        "localhost": user`, `        "localhost": superuser
        "@nobody": user`)
			},
			want: [][]string{
				{`bridge.permissions["localhost"]:`, `"superuser"`, "not a permission level", "block, relay, commands, user, admin"},
				{`bridge.permissions["@nobody"]:`, "not a Matrix user ID"},
			},
		},
		{
			name: "only relay permissions",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `        "localhost": user`, `        "localhost": relay`, `        "@admin:localhost": admin`, `        "@admin:localhost": commands`)
			},
			want: [][]string{{"bridge.permissions:", "nobody can log in"}},
		},
		{
			name: "section written as a list",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "log:\n", "log: [debug]\nunused_log:\n")
			},
			want: [][]string{{"log:", "(a list)", "is not a section"}},
		},
		{
			name: "value written as a section",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "domain: localhost", "domain:\n        name: localhost")
			},
			want: [][]string{{"homeserver.domain:", "must be a single value"}},
		},
		{
			name: "bad log settings",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "level: info", "level: loud", "format: console", "format: xml")
			},
			want: [][]string{{"log.level:", `"loud"`, "trace, debug, info, warn, error"}, {"log.format:", `"xml"`, "console or json"}},
		},
		{
			name: "bad metrics listener",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "listen: 127.0.0.1:9466", "listen: metrics.lan")
			},
			want: [][]string{{"metrics.listen:", `"metrics.lan"`, "host:port"}},
		},
		{
			name: "metrics listener host is a name",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "listen: 127.0.0.1:9466", "listen: metrics.lan:9466")
			},
			want: [][]string{{"metrics.listen:", "not an IP address"}},
		},
		{
			name: "bad appservice",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "address: http://127.0.0.1:29340", "address: localhost:29340",
					"hostname: 127.0.0.1", `hostname: ""`, "id: sms", `id: ""`, "username: smsbot", "username: SMS Bot",
					"username_template: sms_{{.}}", "username_template: sms_")
			},
			want: [][]string{
				{"appservice.address:", "is not a URL"},
				{"appservice.hostname:", "0.0.0.0 in Docker"},
				{"appservice.id:", "not a usable appservice ID"},
				{"appservice.bot.username:", `"SMS Bot"`, "not a valid Matrix localpart"},
				{"appservice.username_template:", "{{.}}"},
			},
		},
		{
			name: "literal generate from env",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_APPSERVICE__AS_TOKEN": "generate"},
			want: [][]string{{"appservice.as_token:", "was not generated", "BUBBLED_APPSERVICE__AS_TOKEN"}},
		},
		{
			name: "read-only with secrets to generate",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_TEST_READONLY": "1"},
			want: [][]string{{"encryption.pickle_key:", "read-only", "BUBBLED_ENCRYPTION__PICKLE_KEY"}},
		},
		{
			name: "bad permissions YAML in env",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_BRIDGE__PERMISSIONS": "{localhost: user"},
			want: [][]string{{"bridge.permissions:", "not valid YAML", "BUBBLED_BRIDGE__PERMISSIONS"}},
		},
		{
			name: "bad modem in env list",
			edit: func(t *testing.T, s string) string { return s },
			env:  map[string]string{"BUBBLED_NETWORK__MODEMS": "[{id: a, device: /dev/ttyACM0, baud: fast}]"},
			want: [][]string{{"network.modems[0].baud:", `"fast"`, "whole number", "BUBBLED_NETWORK__MODEMS"}},
		},
		{
			name: "bad bot avatar (mautrix decoder error)",
			edit: func(t *testing.T, s string) string { return replace(t, s, `avatar: ""`, "avatar: not-mxc") },
			want: [][]string{{"appservice.bot.avatar:", `"not-mxc"`, "mxc://"}},
		},
		{
			name: "bad relay template (mautrix decoder error)",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `    command_prefix: "!sms"`, `    command_prefix: "!sms"
    relay:
        message_formats:
            m.text: '{{ .Broken'`)
			},
			want: [][]string{{`bridge.relay.message_formats["m.text"]:`, `"{{ .Broken"`, "unclosed action", "fix the Go template"}},
			// The rest of the config is still read: no bogus follow-up problems.
			wantLines: 1,
		},
		{
			name: "bad field in a permission map",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `        "localhost": user`, `        "localhost": {login: maybe}`)
			},
			want: [][]string{{`bridge.permissions["localhost"].login:`, `"maybe"`, "true or false"}},
		},
		{
			name: "several problems at once",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "domain: localhost", `domain: ""`, "default_region: US", "default_region: ZZ", "max_parts: 10", "max_parts: 0")
			},
			want:      [][]string{{"homeserver.domain:"}, {"network.default_region:"}, {"network.sms.max_parts:"}},
			wantLines: 3,
		},
		{
			name: "postgres placeholder",
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "type: sqlite3-fk-wal", "type: postgres", "uri: file:bubbled.db?_txlock=immediate", "uri: postgres://user:password@host/database?sslmode=disable")
			},
			want: [][]string{{"database.uri:", "is the example value"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{}
			for k, v := range tc.env {
				if k == "BUBBLED_TEST_READONLY" {
					opts.ReadOnly = true
					continue
				}
				t.Setenv(k, v)
			}
			text := tc.edit(t, exampleConfig(t))
			path := writeConfig(t, text)
			_, err := Load(path, opts)
			if err == nil {
				t.Fatal("Load succeeded, want a validation error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, want *ValidationError: %v", err, err)
			}
			msg := err.Error()
			lines := strings.Split(msg, "\n")
			if len(lines) != len(ve.Problems) {
				t.Errorf("%d lines for %d problems", len(lines), len(ve.Problems))
			}
			if tc.wantLines > 0 && len(ve.Problems) != tc.wantLines {
				t.Errorf("%d problems, want %d:\n%s", len(ve.Problems), tc.wantLines, msg)
			}
			for _, want := range tc.want {
				found := false
				for _, line := range lines {
					all := true
					for _, w := range want {
						if !strings.Contains(line, w) {
							all = false
							break
						}
					}
					if all {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("no error line contains all of %q; error:\n%s", want, msg)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(msg, nw) {
					t.Errorf("error contains %q:\n%s", nw, msg)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != text {
				t.Error("a failed Load modified the config file")
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	cases := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.yaml") }, "create it from example-config.yaml"},
		{"YAML syntax error", func(t *testing.T) string { return writeConfig(t, "homeserver:\n  address: [\n") }, "fix the YAML syntax"},
		{"duplicate keys", func(t *testing.T) string {
			return writeConfig(t, minimalConfig+"log:\n    level: debug\nlog:\n    level: info\n")
		}, `mapping key "log" already defined`},
		{"not a mapping", func(t *testing.T) string { return writeConfig(t, "- a\n- b\n") }, "(file): is not a YAML mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path(t), LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, cfg *Config)
	}{
		{
			name: "nested string",
			env:  map[string]string{"BUBBLED_HOMESERVER__ADDRESS": "http://synapse:8008"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Homeserver.Address != "http://synapse:8008" {
					t.Errorf("address = %q", cfg.Homeserver.Address)
				}
			},
		},
		{
			name: "nested int",
			env:  map[string]string{"BUBBLED_APPSERVICE__PORT": "12345", "BUBBLED_NETWORK__SMS__MAX_PARTS": "3"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.AppService.Port != 12345 || cfg.Network.SMS.MaxParts != 3 {
					t.Errorf("port = %d, max_parts = %d", cfg.AppService.Port, cfg.Network.SMS.MaxParts)
				}
			},
		},
		{
			name: "our section: region, bool, duration",
			env: map[string]string{"BUBBLED_NETWORK__DEFAULT_REGION": "gb", "BUBBLED_NETWORK__SMS__STATUS_REPORTS": "false",
				"BUBBLED_NETWORK__SMS__COMMAND_TIMEOUT": "3s", "BUBBLED_LOG__LEVEL": "debug"},
			check: func(t *testing.T, cfg *Config) {
				n := cfg.Network
				if n.DefaultRegion != "GB" || n.SMS.StatusReports || n.SMS.CommandTimeout != 3*time.Second || cfg.Log.Level != "debug" {
					t.Errorf("network = %+v, log = %+v", n, cfg.Log)
				}
			},
		},
		{
			name: "mautrix bool and nested int",
			env:  map[string]string{"BUBBLED_ENCRYPTION__ALLOW": "false", "BUBBLED_ENCRYPTION__DEFAULT": "false", "BUBBLED_BRIDGE__PORTAL_EVENT_BUFFER": "32"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Encryption.Allow || cfg.Encryption.Default || cfg.Bridge.PortalEventBuffer != 32 {
					t.Errorf("encryption = %v/%v, buffer = %d", cfg.Encryption.Allow, cfg.Encryption.Default, cfg.Bridge.PortalEventBuffer)
				}
			},
		},
		{
			name: "key whose default is null",
			env:  map[string]string{"BUBBLED_HOMESERVER__STATUS_ENDPOINT": "http://status.local/x"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Homeserver.StatusEndpoint != "http://status.local/x" {
					t.Errorf("status_endpoint = %q", cfg.Homeserver.StatusEndpoint)
				}
			},
		},
		{
			name: "permissions map replaces the file's",
			env:  map[string]string{"BUBBLED_BRIDGE__PERMISSIONS": `{"matrix.example.org": admin}`},
			check: func(t *testing.T, cfg *Config) {
				if len(cfg.Bridge.Permissions) != 1 || cfg.Bridge.Permissions["matrix.example.org"] == nil ||
					!cfg.Bridge.Permissions["matrix.example.org"].Admin {
					t.Errorf("permissions = %v", cfg.Bridge.Permissions)
				}
			},
		},
		{
			name: "modem list",
			env:  map[string]string{"BUBBLED_NETWORK__MODEMS": `[{id: a, device: tcp://127.0.0.1:7000, own_number: "07911 123456"}, {id: b, device: /dev/ttyACM0, baud: 9600}]`, "BUBBLED_NETWORK__DEFAULT_REGION": "GB"},
			check: func(t *testing.T, cfg *Config) {
				m := cfg.Network.Modems
				if len(m) != 2 || m[0].Device != "tcp://127.0.0.1:7000" || m[0].Baud != DefaultBaud || m[0].OwnNumber != "+447911123456" || m[1].Baud != 9600 {
					t.Errorf("modems = %+v", m)
				}
			},
		},
		{
			name: "directory table and ladder",
			env: map[string]string{
				"BUBBLED_NETWORK__DIRECTORY__STATIC":               `{"+12015550123": "@bob:example.org"}`,
				"BUBBLED_NETWORK__FALLBACK__ORDER":                 `[matrix, sms]`,
				"BUBBLED_NETWORK__FALLBACK__CONFIRM_TIMEOUT":       "0s",
				"BUBBLED_NETWORK__DIRECTORY__NOT_FOUND_TTL":        "2h",
				"BUBBLED_NETWORK__DIRECTORY__IDENTITY_SERVER__URL": "http://127.0.0.1:8090",
			},
			check: func(t *testing.T, cfg *Config) {
				d, f := cfg.Network.Directory, cfg.Network.Fallback
				if d.Static["+12015550123"] != "@bob:example.org" || len(d.Static) != 1 {
					t.Errorf("static = %v", d.Static)
				}
				if strings.Join(f.Order, ",") != "matrix,sms" || f.ConfirmTimeout != 0 {
					t.Errorf("fallback = %+v", f)
				}
				if d.NotFoundTTL != 2*time.Hour || d.FoundTTL != 24*time.Hour || d.IdentityServer.URL != "http://127.0.0.1:8090" {
					t.Errorf("directory = %+v", d)
				}
			},
		},
		{
			name: "empty variable is ignored",
			env:  map[string]string{"BUBBLED_HOMESERVER__DOMAIN": ""},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Homeserver.Domain != "localhost" {
					t.Errorf("domain = %q", cfg.Homeserver.Domain)
				}
			},
		},
		{
			name: "unknown variable warns",
			env:  map[string]string{"BUBBLED_HOMESERVER_ADDRESS": "http://x"},
			check: func(t *testing.T, cfg *Config) {
				if !hasWarning(cfg, "BUBBLED_HOMESERVER_ADDRESS", "matches no config key") {
					t.Errorf("warnings = %v", cfg.Warnings)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := writeConfig(t, exampleConfig(t))
			cfg, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, cfg)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.env {
				if len(v) >= 6 && strings.Contains(string(data), v) && !strings.Contains(exampleConfig(t), v) {
					t.Errorf("environment value %q was written into the file", v)
				}
			}
		})
	}
}

func hasWarning(cfg *Config, parts ...string) bool {
	for _, w := range cfg.Warnings {
		s := w.String()
		all := true
		for _, p := range parts {
			if !strings.Contains(s, p) {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		parts []string
	}{
		{"unknown top-level key", minimalConfig + "homeservr:\n    address: x\n", []string{"homeservr:", "not a known key"}},
		{"unknown nested key", strings.Replace(minimalConfig, "domain: localhost", "domain: localhost\n    adress: x", 1), []string{"homeserver.adress:", "not a known key"}},
		{"unknown modem key", strings.Replace(minimalConfig, "device: /dev/ttyUSB2", "device: /dev/ttyUSB2\n          speed: 9600", 1), []string{"network.modems[0].speed:", "not a known modem key"}},
		{"mautrix logging section", minimalConfig + "logging:\n    min_level: debug\n", []string{"logging:", "is ignored", "log section"}},
		{"renamed database key", minimalConfig + "database:\n    max_conn_idle_time: 1m\n", []string{"database.max_conn_idle_time:", "conn_max_idle_time"}},
		{"no modems", strings.Replace(minimalConfig, "    modems:\n        - id: sim1\n          device: /dev/ttyUSB2\n", "", 1), []string{"network.modems:", "is empty"}},
		{"example permission entries", strings.Replace(minimalConfig, `"localhost": user`, `"localhost": user`+"\n        \"example.com\": user", 1), []string{`bridge.permissions["example.com"]`, "example config"}},
		{"sqlite without txlock", minimalConfig + "database:\n    uri: bubbled.db\n", []string{"database.uri:", "_txlock=immediate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tc.text), LoadOptions{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !hasWarning(cfg, tc.parts...) {
				t.Errorf("no warning with %q; warnings: %v", tc.parts, cfg.Warnings)
			}
		})
	}
}

func TestPermissionsKeys(t *testing.T) {
	text := strings.Replace(minimalConfig, `        "localhost": user`, `        "localhost": user
        "matrix.example.org": commands
        "@Alice:matrix.example.org": admin
        "@bob:localhost":
            send_events: true
            login: true
            max_logins: 2`, 1)
	cfg, err := Load(writeConfig(t, text), LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	perms := cfg.Bridge.Permissions
	want := map[string]bridgeconfig.Permissions{
		"localhost":                 bridgeconfig.PermissionLevelUser,
		"matrix.example.org":        bridgeconfig.PermissionLevelCommands,
		"@Alice:matrix.example.org": bridgeconfig.PermissionLevelAdmin,
		"@bob:localhost":            {SendEvents: true, Login: true, MaxLogins: 2},
	}
	if len(perms) != len(want) {
		t.Errorf("permissions = %v, want exactly %v (no example entries)", perms, want)
	}
	for k, w := range want {
		if got := perms[k]; got == nil || *got != w {
			t.Errorf("permissions[%q] = %+v, want %+v", k, got, w)
		}
	}
	for _, leaked := range []string{"example.com", "@admin:example.com"} {
		if _, ok := perms[leaked]; ok {
			t.Errorf("example entry %q leaked into permissions", leaked)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	cases := []struct {
		name, typ, uri, want string
	}{
		{"relative file URI", "sqlite3-fk-wal", "file:bubbled.db?_txlock=immediate", "file:/etc/bubbled/bubbled.db?_txlock=immediate"},
		{"relative subdir raw path", "sqlite3-fk-wal", "data/b.db", "/etc/bubbled/data/b.db"},
		{"absolute file URI", "sqlite3-fk-wal", "file:/var/lib/b.db?_txlock=immediate", "file:/var/lib/b.db?_txlock=immediate"},
		{"memory", "sqlite3-fk-wal", ":memory:", ":memory:"},
		{"file URL form", "sqlite3-fk-wal", "file:///var/b.db", "file:///var/b.db"},
		{"postgres untouched", "postgres", "postgres://u@h/db", "postgres://u@h/db"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveSQLitePath(tc.typ, tc.uri, "/etc/bubbled"); got != tc.want {
				t.Errorf("resolveSQLitePath(%q) = %q, want %q", tc.uri, got, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	secretKeys := [][]string{
		{"appservice", "as_token"}, {"appservice", "hs_token"},
		{"encryption", "pickle_key"}, {"provisioning", "shared_secret"},
	}
	cases := []struct {
		name string
		text string
		env  map[string]string
		// textEdit: every line of the original except secret lines must
		// survive byte for byte.
		textEdit bool
	}{
		{name: "example config", text: "", textEdit: true},
		{name: "keys absent from the file", text: minimalConfig, textEdit: true},
		{name: "sections exist without the keys", text: minimalConfig + "appservice:\n  port: 29341\nencryption:\n  allow: true # keep me\n", textEdit: true},
		{name: "empty and quoted values", text: minimalConfig + "appservice:\n    as_token:   # fill me\n    hs_token: 'generate'\nencryption:\n    pickle_key: \"generate\"\nprovisioning:\n    shared_secret: \"This value is generated when generating the registration\"\n", textEdit: true},
		{name: "flow-style section", text: minimalConfig + "appservice: {port: 29341, as_token: generate}\n", textEdit: false},
		{name: "token from env", text: "", env: map[string]string{"BUBBLED_APPSERVICE__AS_TOKEN": "envtoken-envtoken-envtoken"}, textEdit: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			text := tc.text
			if text == "" {
				text = exampleConfig(t)
			}
			path := writeConfig(t, text)
			cfg, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatalf("first Load: %v", err)
			}
			values := map[string]string{
				"appservice.as_token":        cfg.AppService.ASToken,
				"appservice.hs_token":        cfg.AppService.HSToken,
				"encryption.pickle_key":      cfg.Encryption.PickleKey,
				"provisioning.shared_secret": cfg.Provisioning.SharedSecret,
			}
			for k, v := range values {
				if needsGeneration(v) || len(v) < 16 {
					t.Errorf("%s = %q, want a generated secret", k, v)
				}
			}
			if values["appservice.as_token"] == values["appservice.hs_token"] {
				t.Error("as_token and hs_token are equal")
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("config mode = %v, want 0600", fi.Mode().Perm())
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("rewritten config is not YAML: %v", err)
			}
			for _, k := range secretKeys {
				env := tc.env[envName(k)]
				n := lookupPath(documentRoot(&doc), k)
				if env != "" {
					if strings.Contains(string(data), env) {
						t.Errorf("%v from env was written to the file", k)
					}
					if cfg.AppService.ASToken != env {
						t.Errorf("as_token = %q, want the env value", cfg.AppService.ASToken)
					}
					continue
				}
				if n == nil || n.Value != values[strings.Join(k, ".")] {
					t.Errorf("%v not persisted: node %v", k, n)
				}
			}
			if tc.textEdit {
				// Every original line is still there, in order, except the
				// ones that held the secrets.
				orig := strings.Split(text, "\n")
				got := strings.Split(string(data), "\n")
				j := 0
				for _, line := range orig {
					if strings.Contains(line, "_token:") || strings.Contains(line, "pickle_key:") || strings.Contains(line, "shared_secret:") {
						continue
					}
					for j < len(got) && got[j] != line {
						j++
					}
					if j == len(got) {
						t.Fatalf("original line %q is missing or out of order in:\n%s", line, data)
					}
				}
				if strings.Contains(text, "# fill me") && !strings.Contains(string(data), "# fill me") {
					t.Error("comment on the secret line was lost")
				}
			} else if !strings.Contains(string(data), "bridge:") {
				t.Errorf("tree edit lost content:\n%s", data)
			}

			// A second load changes nothing.
			cfg2, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatalf("second Load: %v", err)
			}
			data2, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data2) != string(data) {
				t.Error("second Load rewrote the file")
			}
			if cfg2.AppService.ASToken != cfg.AppService.ASToken || cfg2.AppService.HSToken != cfg.AppService.HSToken ||
				cfg2.Encryption.PickleKey != cfg.Encryption.PickleKey || cfg2.Provisioning.SharedSecret != cfg.Provisioning.SharedSecret {
				t.Error("secrets changed on the second Load")
			}
		})
	}
}

func TestSecretsCommentsKept(t *testing.T) {
	path := writeConfig(t, exampleConfig(t))
	if _, err := Load(path, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, comment := range []string{
		"# bubbled example configuration.",
		"    # Key for encrypting the bridge's encryption keys in the database.",
		"            # SIM PIN (4 to 8 digits, quoted). Remove the key if the SIM",
	} {
		if !strings.Contains(string(data), comment+"\n") {
			t.Errorf("comment %q lost", comment)
		}
	}
	if strings.Contains(string(data), ": generate") {
		t.Error("a `generate` value is left in the file")
	}
}

func TestSecretsSymlinkedConfig(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(real, []byte(minimalConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(link, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced by a file: %v", err)
	}
	data, _ := os.ReadFile(real)
	if !strings.Contains(string(data), cfg.AppService.ASToken) {
		t.Error("secret not written to the symlink's target")
	}
}

func TestGenerateRegistration(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
	}{
		{name: "tokens in file"},
		{name: "tokens from env", env: map[string]string{"BUBBLED_APPSERVICE__AS_TOKEN": "as-from-env-0123456789", "BUBBLED_APPSERVICE__HS_TOKEN": "hs-from-env-0123456789"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := writeConfig(t, exampleConfig(t))
			cfg, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			regPath := filepath.Join(t.TempDir(), "registration.yaml")
			if err := cfg.GenerateRegistration(regPath); err != nil {
				t.Fatalf("GenerateRegistration: %v", err)
			}
			reg, err := appservice.LoadRegistration(regPath)
			if err != nil {
				t.Fatalf("read registration: %v", err)
			}
			fi, err := os.Stat(regPath)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("registration mode = %v (%v), want 0600", fi.Mode().Perm(), err)
			}
			reloaded, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
			if reg.AppToken != reloaded.AppService.ASToken || reg.ServerToken != reloaded.AppService.HSToken {
				t.Errorf("registration tokens %q/%q do not match config %q/%q", reg.AppToken, reg.ServerToken,
					reloaded.AppService.ASToken, reloaded.AppService.HSToken)
			}
			if reg.AppToken != cfg.AppService.ASToken {
				t.Error("Config not updated with the registration's as_token")
			}
			if want := tc.env["BUBBLED_APPSERVICE__AS_TOKEN"]; want != "" {
				if reg.AppToken != want {
					t.Errorf("as_token = %q, want env value", reg.AppToken)
				}
				data, _ := os.ReadFile(path)
				if strings.Contains(string(data), want) {
					t.Error("env token written into the config file")
				}
			}
			if reg.ID != "sms" || reg.URL != "http://127.0.0.1:29340" || !reg.EphemeralEvents || !reg.SoruEphemeralEvents {
				t.Errorf("registration = %+v", reg)
			}
			if reg.RateLimited == nil || *reg.RateLimited {
				t.Error("registration must disable rate limiting")
			}
			var users []string
			for _, ns := range reg.Namespaces.UserIDs {
				users = append(users, ns.Regex)
			}
			joined := strings.Join(users, " ")
			if !strings.Contains(joined, "smsbot") || !strings.Contains(joined, "sms_") || !strings.Contains(joined, "localhost") {
				t.Errorf("user namespaces = %v", users)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	cases := []struct {
		name string
		path []string
		want string
	}{
		{"plain", []string{"homeserver", "address"}, "homeserver.address"},
		{"indexed", []string{"network", "modems[0]", "own_number"}, "network.modems[0].own_number"},
		{"dotted map key", []string{"bridge", "permissions", "example.com"}, `bridge.permissions["example.com"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := keyString(tc.path); got != tc.want {
				t.Errorf("keyString(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// FuzzLoad: arbitrary YAML gives an error naming key and reason, or a
// valid config that loads again from the file Load wrote back; never a
// panic. Seeds here and in testdata/fuzz/FuzzLoad run with plain go test;
// fuzz with `go test -tags goolm -run '^$' -fuzz '^FuzzLoad$' ./config/`.
func FuzzLoad(f *testing.F) {
	f.Add(minimalConfig)
	f.Add(exampleConfig(f))
	f.Add("")
	f.Add("homeserver: [1, 2]\nnetwork: {modems: [1, {id: [x]}]}\n")
	f.Add("bridge: {permissions: {a: {b: c}}, relay: {message_formats: {m.text: '{{'}}}\n")
	f.Add("a: &x [*x]\n")
	f.Add("appservice: {port: -1, bot: {avatar: 'not mxc'}}\nlog: 5\n")
	f.Add("network:\n  modems:\n    - baud: 1e400\n      own_number: 2001-01-01\n")
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, LoadOptions{})
		if err != nil {
			// Every refusal says what is wrong, and where.
			var ve *ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Problems {
					if p.Key == "" || p.Reason == "" {
						t.Fatalf("problem without key or reason: %+v", p)
					}
				}
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			return
		}
		if cfg == nil {
			t.Fatal("Load returned neither a config nor an error")
		}
		// A config that loaded must load again, unchanged.
		again, err := Load(path, LoadOptions{})
		if err != nil {
			t.Fatalf("second Load failed after first succeeded: %v", err)
		}
		if again.AppService.ASToken != cfg.AppService.ASToken {
			t.Fatal("as_token changed between loads")
		}
	})
}

func TestAPITokens(t *testing.T) {
	text := minimalConfig + `api:
    listen: 127.0.0.1:29331
    tokens:
        # the monitoring box
        - name: alertmanager
          token: generate
          lines: ["(201) 555-0123"]
          recipients: ["+12015550199", "+1555*"]
          daily_cap: 50
        - name: ha
          token: 0123456789abcdef0123456789abcdef-kept
          lines: ["+12015550123"]
          recipients: ["*"]
    webhooks:
        - url: http://127.0.0.1:8123/api/webhook/sms
          secret: generate
          lines: ["+12015550123"]
`
	path := writeConfig(t, text)
	cfg, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	toks := cfg.API.Tokens
	if len(toks) != 2 || needsGeneration(toks[0].Token) || len(toks[0].Token) < 32 || toks[1].Token != "0123456789abcdef0123456789abcdef-kept" {
		t.Fatalf("tokens %+v: want the first generated and the second kept", toks)
	}
	if toks[0].Lines[0] != "+12015550123" || toks[0].DailyCap != 50 || toks[0].Recipients[1] != "+1555*" || cfg.API.Listen != "127.0.0.1:29331" {
		t.Errorf("token %+v, listen %q", toks[0], cfg.API.Listen)
	}
	// The generated token was written into the file and is read back.
	again, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if hooks := cfg.API.Webhooks; len(hooks) != 1 || len(hooks[0].Secret) < 32 || again.API.Webhooks[0].Secret != hooks[0].Secret {
		t.Errorf("webhooks %+v, then %+v: want a generated, persisted secret", hooks, again.API.Webhooks)
	}
	if again.API.Tokens[0].Token != toks[0].Token {
		t.Errorf("second load token %q, want the persisted %q", again.API.Tokens[0].Token, toks[0].Token)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "# the monitoring box") || strings.Contains(string(raw), "generate") {
		t.Errorf("the file lost its comment or still says generate:\n%s", raw)
	}
}

func TestAPIProblems(t *testing.T) {
	cases := []struct {
		name, api, key, want string
	}{
		{"open listener without tokens", "    listen: 0.0.0.0:29330\n", "api.listen", "not a loopback address"},
		{"bad listen", "    listen: nowhere\n", "api.listen", "not host:port"},
		{"no lines", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, recipients: [\"*\"]}\n", "api.tokens[0].lines", "is empty"},
		{"no recipients", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"]}\n", "api.tokens[0].recipients", "is empty"},
		{"bad recipient", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"], recipients: [\"12ab\"]}\n", "api.tokens[0].recipients[0]", "not a phone number"},
		{"bad prefix", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"], recipients: [\"1555*\"]}\n", "api.tokens[0].recipients[0]", "not a number prefix"},
		{"short token", "    tokens:\n        - {name: a, token: short, lines: [\"+12015550123\"], recipients: [\"*\"]}\n", "api.tokens[0].token", "shorter than 32"},
		{"duplicate name", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"], recipients: [\"*\"]}\n        - {name: a, token: 0123456789abcdef0123456789abcdeX, lines: [\"+12015550123\"], recipients: [\"*\"]}\n", "api.tokens[1].name", "also the name"},
		{"webhook without lines", "    webhooks:\n        - {url: http://127.0.0.1:9/hook, secret: 0123456789abcdef0123456789abcdef}\n", "api.webhooks[0].lines", "is empty"},
		{"webhook bad url", "    webhooks:\n        - {url: ftp://x, secret: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"]}\n", "api.webhooks[0].url", "not an http"},
		{"negative cap", "    tokens:\n        - {name: a, token: 0123456789abcdef0123456789abcdef, lines: [\"+12015550123\"], recipients: [\"*\"], daily_cap: -1}\n", "api.tokens[0].daily_cap", "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, minimalConfig+"api:\n"+tc.api), LoadOptions{})
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load error %v, want a validation error", err)
			}
			for _, p := range ve.Problems {
				if p.Key == tc.key && strings.Contains(p.Reason, tc.want) {
					if strings.Contains(p.String(), "0123456789abcdef") {
						t.Errorf("the problem shows the token: %s", p)
					}
					return
				}
			}
			t.Errorf("problems %v, want %s %q", err, tc.key, tc.want)
		})
	}
}

func TestWithStatementCache(t *testing.T) {
	for _, tc := range []struct{ name, typ, uri, want string }{
		{"adds to a query", "sqlite3-fk-wal", "file:/d/b.db?_txlock=immediate", "file:/d/b.db?_txlock=immediate&_stmt_cache_size=64"},
		{"adds a query", "sqlite3-fk-wal", "/d/b.db", "/d/b.db?_stmt_cache_size=64"},
		{"keeps the operator's size", "sqlite3-fk-wal", "file:b.db?_stmt_cache_size=8", "file:b.db?_stmt_cache_size=8"},
		{"postgres untouched", "postgres", "postgres://u@h/db", "postgres://u@h/db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withStatementCache(tc.typ, tc.uri); got != tc.want {
				t.Errorf("withStatementCache(%q) = %q, want %q", tc.uri, got, tc.want)
			}
		})
	}
}

// TestMMSForModem: a modem's own mms_* keys replace network.mms's, the
// rest is inherited.
func TestMMSForModem(t *testing.T) {
	n := Network{MMS: MMS{MMSC: "http://a.example/mms", APN: "mms.a", UserAgent: "ua-a", Proxy: "10.0.0.1:80", Bearer: "at", BearerCID: 2}}
	got := n.MMSFor(Modem{MMSMMSC: "http://b.example/mms", MMSAPN: "mms.b", MMSUserAgent: "ua-b"})
	want := MMS{MMSC: "http://b.example/mms", APN: "mms.b", UserAgent: "ua-b", Proxy: "10.0.0.1:80", Bearer: "at", BearerCID: 2}
	if got != want {
		t.Errorf("MMSFor = %+v, want %+v", got, want)
	}
	if got := n.MMSFor(Modem{}); got != n.MMS {
		t.Errorf("MMSFor(no overrides) = %+v, want network.mms %+v", got, n.MMS)
	}
	if apn := n.MMSFor(Modem{MMSAPN: "mms.b"}).BearerAPN(); apn != "mms.b" {
		t.Errorf("BearerAPN = %q, want the modem's mms.b", apn)
	}
}
