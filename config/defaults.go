package config

import (
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"text/template"

	"gopkg.in/yaml.v3"
)

// mautrixExampleTemplate is mxmain.MatrixExampleConfigBase (MPL-2.0), copied
// because importing mxmain pulls in mattn/go-sqlite3's cgo-only symbols.
//
//go:embed mautrix-example-config.yaml
var mautrixExampleTemplate string

// defaultsYAML is bubbled's own defaults layer.
//
//go:embed defaults.yaml
var defaultsYAML []byte

// keyDelim separates viper key levels; mautrix map keys contain dots.
const keyDelim = "::"

// templateData is the subset of bridgev2.BridgeName the template uses.
type templateData struct {
	DisplayName          string
	NetworkIcon          string
	NetworkID            string
	DefaultPort          uint16
	DefaultCommandPrefix string
}

// freeFormMaps are mappings whose keys are chosen by the operator. Their
// example entries are stripped from the defaults (viper deep-merges maps, so
// they would otherwise survive next to the operator's), their keys are not
// checked against a schema, and they are taken verbatim from the file (viper
// would lower-case the keys) or, when set, from their BUBBLED_* variable.
var freeFormMaps = []string{
	"bridge.permissions",
	"double_puppet.servers",
	"double_puppet.secrets",
	"network.directory.static",
}

// openMaps are mappings with default entries the operator may extend.
var openMaps = []string{
	"bridge.relay.message_formats",
	"backfill.queue.max_batches_override",
}

// modemKeys are the keys of one network.modems entry.
var modemKeys = []string{"id", "device", "baud", "pin", "own_number", "mms_mmsc", "mms_proxy", "mms_interface", "mms_apn", "mms_user_agent"}

// ignoredKeys are top-level keys of mautrix configs that bubbled ignores,
// with what to do instead.
var ignoredKeys = map[string]string{
	"logging":           "bubbled logs with zap; configure it in the log section (level, format) and delete logging",
	"env_config_prefix": "bubbled always reads BUBBLED_* environment variables; delete env_config_prefix",
}

// renamedKeys are keys in mautrix's example config that mautrix itself
// ignores because the struct field has another name.
var renamedKeys = map[string]string{
	"database.max_conn_idle_time": "database.conn_max_idle_time",
	"database.max_conn_lifetime":  "database.conn_max_lifetime",
}

type defaults struct {
	// rendered is the stripped mautrix example config as YAML.
	rendered []byte
	// schema is rendered merged with defaults.yaml: every known key.
	schema *yaml.Node
	// seqKeys are dotted paths whose value is a list.
	seqKeys []string
}

var (
	defaultsOnce   sync.Once
	defaultsResult *defaults
	defaultsErr    error
)

func loadDefaults() (*defaults, error) {
	defaultsOnce.Do(func() {
		defaultsResult, defaultsErr = buildDefaults()
	})
	return defaultsResult, defaultsErr
}

func buildDefaults() (*defaults, error) {
	tmpl, err := template.New("example-config.yaml").Delims("$<<", ">>").Parse(mautrixExampleTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse built-in mautrix example config: %w", err)
	}
	var sb strings.Builder
	err = tmpl.Execute(&sb, templateData{
		DisplayName:          DisplayName,
		NetworkID:            NetworkID,
		DefaultPort:          DefaultPort,
		DefaultCommandPrefix: DefaultCommandPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("render built-in mautrix example config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(sb.String()), &doc); err != nil {
		return nil, fmt.Errorf("parse rendered mautrix example config: %w", err)
	}
	root := documentRoot(&doc)
	for _, key := range freeFormMaps {
		if n := lookupPath(root, strings.Split(key, ".")); n != nil && n.Kind == yaml.MappingNode {
			n.Content = nil
			n.Style = 0
		}
	}
	for key := range ignoredKeys {
		mapDelete(root, key)
	}
	for old := range renamedKeys {
		parts := strings.Split(old, ".")
		if parent := lookupPath(root, parts[:len(parts)-1]); parent != nil {
			mapDelete(parent, parts[len(parts)-1])
		}
	}
	rendered, err := yaml.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("encode stripped mautrix example config: %w", err)
	}

	var ours yaml.Node
	if err := yaml.Unmarshal(defaultsYAML, &ours); err != nil {
		return nil, fmt.Errorf("parse built-in defaults.yaml: %w", err)
	}
	schema := cloneNode(root)
	mergeNodes(schema, documentRoot(&ours))

	d := &defaults{rendered: rendered, schema: schema}
	walkSchema(schema, nil, func(path []string, n *yaml.Node) {
		if n.Kind == yaml.SequenceNode {
			d.seqKeys = append(d.seqKeys, strings.Join(path, "."))
		}
	})
	return d, nil
}

// walkSchema calls fn for every mapping value below n, depth first.
func walkSchema(n *yaml.Node, path []string, fn func(path []string, n *yaml.Node)) {
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		p := append(append([]string(nil), path...), n.Content[i].Value)
		fn(p, n.Content[i+1])
		walkSchema(n.Content[i+1], p, fn)
	}
}

// documentRoot returns the top node of a parsed document, or nil for an
// empty document.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		return doc.Content[0]
	}
	if doc.Kind == 0 {
		return nil
	}
	return doc
}

// resolveAlias follows alias nodes.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// mapLookup finds key in mapping m (case-insensitively, as viper does) and
// returns its value node.
func mapLookup(m *yaml.Node, key string) *yaml.Node {
	_, v := mapLookupPair(m, key)
	return v
}

func mapLookupPair(m *yaml.Node, key string) (k, v *yaml.Node) {
	m = resolveAlias(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, key) {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// lookupPath walks mapping keys from n.
func lookupPath(n *yaml.Node, path []string) *yaml.Node {
	for _, p := range path {
		n = mapLookup(n, p)
		if n == nil {
			return nil
		}
	}
	return resolveAlias(n)
}

// mapDelete removes key from mapping m and returns its value node.
func mapDelete(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, key) {
			v := m.Content[i+1]
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return v
		}
	}
	return nil
}

// mapSet sets key in mapping m to v, replacing an existing entry.
func mapSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, key) {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// cloneNode deep-copies n, resolving aliases.
func cloneNode(n *yaml.Node) *yaml.Node {
	return cloneNodeDepth(n, 0)
}

func cloneNodeDepth(n *yaml.Node, depth int) *yaml.Node {
	n = resolveAlias(n)
	if n == nil {
		return nil
	}
	c := *n
	c.Content = nil
	if depth > 64 {
		return &c
	}
	for _, ch := range n.Content {
		if cc := cloneNodeDepth(ch, depth+1); cc != nil {
			c.Content = append(c.Content, cc)
		}
	}
	return &c
}

// mergeNodes deep-merges mapping src into mapping dst.
func mergeNodes(dst, src *yaml.Node) {
	if dst == nil || src == nil || dst.Kind != yaml.MappingNode || src.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(src.Content); i += 2 {
		key, val := src.Content[i].Value, src.Content[i+1]
		if cur := mapLookup(dst, key); cur != nil && cur.Kind == yaml.MappingNode && val.Kind == yaml.MappingNode {
			mergeNodes(cur, val)
			continue
		}
		mapSet(dst, key, cloneNode(val))
	}
}
