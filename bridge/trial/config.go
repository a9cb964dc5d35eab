package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Identities of the trial setup.
const (
	serverName    = "localhost"
	botLocalpart  = "smsbot"
	botMXID       = "@" + botLocalpart + ":" + serverName
	trialUser     = "trial"
	trialModemID  = "sim0"
	lineNumber    = "+15550001111"
	phoneNumber   = "+15557654321"
	ghostTemplate = "sms_{{.}}"
)

// ghostMXID is the Matrix user that stands for a phone number, per ghostTemplate.
func ghostMXID(number string) string {
	return "@" + strings.Replace(ghostTemplate, "{{.}}", strings.TrimPrefix(number, "+"), 1) + ":" + serverName
}

// bubbledSettings are the config values that change between runs: ports (a port taken by
// another program moves) and the modem symlink's path (the work folder may move).
type bubbledSettings struct {
	HomeserverURL  string
	AppServicePort int
	ModemDevice    string
}

func (s bubbledSettings) appServiceURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(s.AppServicePort)
}

// initialConfig is bubbled's config for a new trial. Secrets stay "generate": bubbled fills
// them in on first load and writes them back, so the file must not be regenerated later (the
// pickle key protects the bridge's encryption keys); ensureConfig edits it instead.
func initialConfig(s bubbledSettings) []byte {
	return fmt.Appendf(nil, `# bubbled config written by the trial (go run -tags goolm ./bridge/trial).
# The trial keeps homeserver.address, appservice.address, appservice.port and the device of
# modem %[5]s up to date on every run; edit anything else freely (see example-config.yaml).
network:
    default_region: US
    modems:
        -   id: %[5]s
            # The simulated modem's pty, linked here by the trial.
            device: %[4]s
    sms:
        max_parts: 10
        command_timeout: 10s
        send_timeout: 60s
        status_reports: true
log:
    # debug shows every AT command; info masks phone numbers.
    level: info
    format: console
homeserver:
    address: %[1]s
    domain: %[6]s
    software: standard
appservice:
    address: %[2]s
    hostname: 127.0.0.1
    port: %[3]d
    id: sms
    bot:
        username: %[7]s
        displayname: SMS bridge bot
    as_token: generate
    hs_token: generate
    username_template: %[8]s
database:
    type: sqlite3-fk-wal
    uri: file:bubbled.db?_txlock=immediate
bridge:
    permissions:
        %[6]q: user
encryption:
    allow: true
    default: true
    require: false
    pickle_key: generate
provisioning:
    shared_secret: generate
`, s.HomeserverURL, s.appServiceURL(), s.AppServicePort, strconv.Quote(s.ModemDevice), trialModemID,
		serverName, botLocalpart, strconv.Quote(ghostTemplate))
}

// ensureConfig writes the config at path when it does not exist, and otherwise sets the
// values of s in it, keeping everything else (generated secrets, comments, the user's edits).
// It reports whether it wrote the file.
func ensureConfig(path string, s bubbledSettings) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, writeFileAtomic(path, initialConfig(s), 0o600)
	} else if err != nil {
		return false, fmt.Errorf("read bubbled config: %w", err)
	}
	edited, changed, err := editConfig(raw, s)
	if err != nil {
		return false, fmt.Errorf("update bubbled config %s: %w; fix the file or run the trial with -fresh", path, err)
	}
	if !changed {
		return false, nil
	}
	return true, writeFileAtomic(path, edited, 0o600)
}

// editConfig sets the values of s in a bubbled config document. It returns the new document
// and whether any value differed.
func editConfig(raw []byte, s bubbledSettings) ([]byte, bool, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, false, fmt.Errorf("parse: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, false, errors.New("the top level is not a mapping")
	}
	root := doc.Content[0]
	modem, err := modemEntry(root)
	if err != nil {
		return nil, false, err
	}
	changed := false
	for _, set := range []struct {
		section string
		m       *yaml.Node
		key     string
		value   string
		tag     string
	}{
		{"homeserver", lookup(root, "homeserver"), "address", s.HomeserverURL, "!!str"},
		{"appservice", lookup(root, "appservice"), "address", s.appServiceURL(), "!!str"},
		{"appservice", lookup(root, "appservice"), "port", strconv.Itoa(s.AppServicePort), "!!int"},
		{"network.modems[id=" + trialModemID + "]", modem, "device", s.ModemDevice, "!!str"},
	} {
		c, err := setScalar(set.m, set.key, set.value, set.tag)
		if err != nil {
			return nil, false, fmt.Errorf("set %s.%s: %w", set.section, set.key, err)
		}
		changed = changed || c
	}
	if !changed {
		return raw, false, nil
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(4)
	if err := enc.Encode(&doc); err != nil {
		return nil, false, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, false, fmt.Errorf("encode: %w", err)
	}
	return out.Bytes(), true, nil
}

// lookup returns the value of key in the mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// modemEntry finds the trial's modem in network.modems.
func modemEntry(root *yaml.Node) (*yaml.Node, error) {
	modems := lookup(lookup(root, "network"), "modems")
	if modems == nil || modems.Kind != yaml.SequenceNode {
		return nil, errors.New("network.modems is missing or not a list")
	}
	for _, m := range modems.Content {
		if id := lookup(m, "id"); id != nil && id.Value == trialModemID {
			return m, nil
		}
	}
	return nil, fmt.Errorf("network.modems has no modem with id %s", trialModemID)
}

// setScalar sets key in the mapping m to a scalar, reporting whether the value changed.
func setScalar(m *yaml.Node, key, value, tag string) (bool, error) {
	if m == nil || m.Kind != yaml.MappingNode {
		return false, errors.New("the section is missing or not a mapping")
	}
	v := lookup(m, key)
	if v == nil {
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
		return true, nil
	}
	if v.Kind == yaml.ScalarNode && v.Value == value {
		return false, nil
	}
	*v = yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, LineComment: v.LineComment, HeadComment: v.HeadComment}
	return true, nil
}
