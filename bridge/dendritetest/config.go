package dendritetest

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// configEdits holds what the harness changes in the config generate-config wrote.
type configEdits struct {
	PrivateKey    string   // absolute path of the signing key
	SharedSecret  string   // client_api.registration_shared_secret
	Registrations []string // absolute paths of appservice registrations
	LogLevel      string   // trace, debug, info, warn or error
}

// setting is one config value, addressed by its path of mapping keys.
type setting struct {
	path  string // dotted path, e.g. "client_api.rate_limiting.enabled"
	value any
}

func (e configEdits) settings() []setting {
	regs := e.Registrations
	if regs == nil {
		regs = []string{}
	}
	return []setting{
		{"global.private_key", e.PrivateKey},
		// No outbound lookups or key fetches: tests run on loopback only.
		{"global.trusted_third_party_id_servers", []string{}},
		{"federation_api.key_perspectives", []any{}},
		// Federation stays enabled: disabling it also removes the OpenID userinfo and server
		// key endpoints. Only the loopback HTTP listener is bound, so nothing federates.
		{"global.disable_federation", false},
		{"global.report_stats.enabled", false},
		{"client_api.registration_shared_secret", e.SharedSecret},
		{"client_api.rate_limiting.enabled", false},
		{"app_service_api.config_files", regs},
		{"logging", []map[string]string{{"type": "std", "level": e.LogLevel}}},
	}
}

// editConfig applies e to a Dendrite YAML config and returns the new document. Every key it
// sets must already exist, so that a Dendrite whose schema differs fails here with the key's
// name instead of silently running with a wrong setting.
func editConfig(generated []byte, e configEdits) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(generated, &doc); err != nil {
		return nil, fmt.Errorf("parse Dendrite config: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parse Dendrite config: top level is not a mapping")
	}
	for _, s := range e.settings() {
		if err := setPath(doc.Content[0], s.path, s.value); err != nil {
			return nil, fmt.Errorf("edit Dendrite config: %w", err)
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("write Dendrite config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write Dendrite config: %w", err)
	}
	return out.Bytes(), nil
}

// setPath replaces the value at the dotted path under the mapping node m.
func setPath(m *yaml.Node, path string, value any) error {
	keys := strings.Split(path, ".")
	node := m
	for i, key := range keys {
		if node.Kind != yaml.MappingNode {
			return fmt.Errorf("key %s: %s is not a mapping", path, strings.Join(keys[:i], "."))
		}
		child := -1
		for j := 0; j+1 < len(node.Content); j += 2 {
			if node.Content[j].Value == key {
				child = j + 1
				break
			}
		}
		if child < 0 {
			return fmt.Errorf("key %s is missing (is this Dendrite %s?)", strings.Join(keys[:i+1], "."), Version)
		}
		if i == len(keys)-1 {
			var v yaml.Node
			if err := v.Encode(value); err != nil {
				return fmt.Errorf("key %s: %w", path, err)
			}
			node.Content[child] = &v
			return nil
		}
		node = node.Content[child]
	}
	return nil
}
