package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/config"
)

var baseSettings = bubbledSettings{
	HomeserverURL:  "http://127.0.0.1:8008",
	AppServicePort: 29350,
	ModemDevice:    "/work/.trial/modem",
}

// TestInitialConfigLoads checks the config the trial writes against bubbled's real schema and
// validation, and that editing it after bubbled filled in its secrets keeps them.
func TestInitialConfigLoads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, configFile)
	wrote, err := ensureConfig(path, baseSettings)
	if err != nil || !wrote {
		t.Fatalf("ensureConfig on a new file: wrote=%v err=%v", wrote, err)
	}
	cfg, err := config.Load(path, config.LoadOptions{})
	if err != nil {
		t.Fatalf("bubbled rejects the trial's config: %v", err)
	}
	pickle := cfg.Encryption.PickleKey
	if pickle == "" || pickle == "generate" {
		t.Fatalf("bubbled did not generate the pickle key: %q", pickle)
	}
	checks := []struct{ key, got, want string }{
		{"homeserver.address", cfg.Homeserver.Address, baseSettings.HomeserverURL},
		{"homeserver.domain", cfg.Homeserver.Domain, serverName},
		{"appservice.address", cfg.AppService.Address, "http://127.0.0.1:29350"},
		{"appservice.bot.username", cfg.AppService.Bot.Username, botLocalpart},
		{"network.modems[0].id", cfg.Network.Modems[0].ID, trialModemID},
		{"network.modems[0].device", cfg.Network.Modems[0].Device, baseSettings.ModemDevice},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}
	if !cfg.Encryption.Allow || !cfg.Encryption.Default {
		t.Errorf("encryption allow=%v default=%v, want both on", cfg.Encryption.Allow, cfg.Encryption.Default)
	}

	moved := bubbledSettings{HomeserverURL: "http://127.0.0.1:41000", AppServicePort: 41001, ModemDevice: "/elsewhere/modem"}
	if wrote, err := ensureConfig(path, moved); err != nil || !wrote {
		t.Fatalf("ensureConfig with new ports: wrote=%v err=%v", wrote, err)
	}
	cfg, err = config.Load(path, config.LoadOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("bubbled rejects the edited config: %v", err)
	}
	if cfg.Homeserver.Address != moved.HomeserverURL || cfg.AppService.Port != 41001 ||
		cfg.AppService.Address != "http://127.0.0.1:41001" || cfg.Network.Modems[0].Device != moved.ModemDevice {
		t.Errorf("edited config has homeserver %q, appservice %q port %d, device %q; want %+v",
			cfg.Homeserver.Address, cfg.AppService.Address, cfg.AppService.Port, cfg.Network.Modems[0].Device, moved)
	}
	if cfg.Encryption.PickleKey != pickle {
		t.Errorf("editing the config changed the pickle key: it would make the bridge's stored keys unreadable")
	}
	if wrote, err := ensureConfig(path, moved); err != nil || wrote {
		t.Errorf("ensureConfig with unchanged values: wrote=%v err=%v, want no write", wrote, err)
	}
}

func TestEditConfig(t *testing.T) {
	moved := bubbledSettings{HomeserverURL: "http://127.0.0.1:9", AppServicePort: 10, ModemDevice: "/dev/other"}
	cases := []struct {
		name        string
		in          string
		s           bubbledSettings
		wantChanged bool
		wantErr     string   // substring; "" for success
		wantHas     []string // substrings of the result
	}{
		{
			name: "same values leave the file alone",
			in:   string(initialConfig(baseSettings)),
			s:    baseSettings,
		},
		{
			name:        "moved ports and device are written, secrets and comments kept",
			in:          strings.Replace(string(initialConfig(baseSettings)), "pickle_key: generate", "pickle_key: keep-me", 1),
			s:           moved,
			wantChanged: true,
			wantHas: []string{"address: http://127.0.0.1:9\n", "address: http://127.0.0.1:10\n", "port: 10\n",
				"device: /dev/other", "pickle_key: keep-me", "# The simulated modem's pty"},
		},
		{
			name:        "a missing key is added",
			in:          "homeserver:\n    domain: localhost\nappservice:\n    port: 1\nnetwork:\n    modems:\n        - id: sim0\n",
			s:           moved,
			wantChanged: true,
			wantHas:     []string{"address: http://127.0.0.1:9\n", "port: 10\n", "device: /dev/other"},
		},
		{
			name:    "the trial's modem is gone",
			in:      "homeserver: {}\nappservice: {}\nnetwork:\n    modems:\n        - id: other\n          device: /dev/ttyUSB2\n",
			s:       moved,
			wantErr: "no modem with id sim0",
		},
		{
			name:    "no homeserver section",
			in:      "appservice: {}\nnetwork:\n    modems:\n        - id: sim0\n",
			s:       moved,
			wantErr: "set homeserver.address",
		},
		{
			name:    "not a mapping",
			in:      "- a\n- b\n",
			s:       moved,
			wantErr: "not a mapping",
		},
		{
			name:    "not YAML",
			in:      "homeserver: [\n",
			s:       moved,
			wantErr: "parse",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, changed, err := editConfig([]byte(c.in), c.s)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != c.wantChanged {
				t.Errorf("changed = %v, want %v", changed, c.wantChanged)
			}
			if !changed && !bytes.Equal(out, []byte(c.in)) {
				t.Errorf("unchanged config was rewritten:\n%s", out)
			}
			for _, want := range c.wantHas {
				if !strings.Contains(string(out), want) {
					t.Errorf("result lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestEnsureConfigKeepsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), configFile)
	if _, err := ensureConfig(path, baseSettings); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureConfig(path, bubbledSettings{HomeserverURL: "http://127.0.0.1:1", AppServicePort: 2, ModemDevice: "/x"}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600 (it holds secrets)", info.Mode().Perm())
	}
}
