package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
)

// treeBuilder turns viper's merged settings into a yaml.Node tree with
// explicit resolved tags, which is what mautrix's custom UnmarshalYAML
// methods (Permissions switches on node.Tag) and yaml.v3's int/duration
// decoding need: environment values arrive as strings and must be resolved
// ("32" -> !!int). Every node gets a unique Line so that yaml.v3's
// "line N: cannot unmarshal ..." errors map back to the key and, when the
// value came from the environment, to the variable.
type treeBuilder struct {
	origins []origin // origins[line-1]
}

type origin struct {
	path []string
	env  string
}

func newTreeBuilder() *treeBuilder { return &treeBuilder{} }

func (b *treeBuilder) mark(n *yaml.Node, path []string, env string) {
	b.origins = append(b.origins, origin{path: append([]string(nil), path...), env: env})
	n.Line = len(b.origins)
	n.Column = 1
}

func (b *treeBuilder) origin(line int) (origin, bool) {
	if line < 1 || line > len(b.origins) {
		return origin{}, false
	}
	return b.origins[line-1], true
}

// envName is the variable viper's AutomaticEnv reads for a key path.
func envName(path []string) string {
	return strings.ToUpper(EnvPrefix + "_" + strings.Join(path, "__"))
}

// envFor returns the variable that set the value at path: the key's own
// variable or that of a list or map above it that was replaced wholesale.
func envFor(path []string) string {
	clean := make([]string, 0, len(path))
	for _, p := range path {
		if i := strings.IndexByte(p, '['); i > 0 && strings.HasSuffix(p, "]") {
			clean = append(clean, p[:i])
			break // an indexed element: only the list itself can come from env
		}
		clean = append(clean, p)
	}
	for i := len(clean); i >= 1; i-- {
		if os.Getenv(envName(clean[:i])) != "" {
			return envName(clean[:i])
		}
	}
	return ""
}

// build converts viper's AllSettings map.
func (b *treeBuilder) build(settings map[string]any) *yaml.Node {
	return b.value(settings, nil, 0)
}

func (b *treeBuilder) value(v any, path []string, depth int) *yaml.Node {
	n := &yaml.Node{}
	env := ""
	if _, isMap := v.(map[string]any); !isMap && len(path) > 0 && os.Getenv(envName(path)) != "" {
		// viper's AutomaticEnv only overrides leaf keys, and ignores empty
		// variables.
		env = envName(path)
	}
	b.mark(n, path, env)
	if depth > 64 {
		n.Kind, n.Tag = yaml.ScalarNode, "!!null"
		return n
	}
	switch x := v.(type) {
	case nil:
		n.Kind, n.Tag = yaml.ScalarNode, "!!null"
	case map[string]any:
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kn := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}
			b.mark(kn, append(path, k), "")
			n.Content = append(n.Content, kn, b.value(x[k], append(path, k), depth+1))
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = val
		}
		return b.value(m, path, depth)
	case []any:
		n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
		for i, item := range x {
			n.Content = append(n.Content, b.value(item, indexPath(path, i), depth+1))
		}
	case string:
		n.Kind, n.Value = yaml.ScalarNode, x
		if env != "" {
			// Environment values are untyped text: resolve like plain YAML.
			n.Tag = n.ShortTag()
		} else {
			n.Tag = "!!str"
		}
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", strconv.FormatBool(x)
	case int:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", strconv.Itoa(x)
	case int64:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", strconv.FormatInt(x, 10)
	case uint64:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", strconv.FormatUint(x, 10)
	case float64:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!float", formatFloat(x)
	case time.Time:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!str", x.Format(time.RFC3339Nano)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			items := make([]any, rv.Len())
			for i := range items {
				items[i] = rv.Index(i).Interface()
			}
			return b.value(items, path, depth)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
			n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", strconv.FormatInt(rv.Int(), 10)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
			n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", strconv.FormatUint(rv.Uint(), 10)
		case reflect.Float32:
			n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!float", formatFloat(rv.Float())
		default:
			n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!str", fmt.Sprint(v)
		}
	}
	return n
}

func indexPath(path []string, i int) []string {
	p := append([]string(nil), path...)
	if len(p) == 0 {
		return []string{"[" + strconv.Itoa(i) + "]"}
	}
	p[len(p)-1] += "[" + strconv.Itoa(i) + "]"
	return p
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	case math.IsNaN(f):
		return ".nan"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// adopt deep-copies a node from the operator's file or an environment
// value into the tree, renumbering lines so errors map back to keys.
func (b *treeBuilder) adopt(n *yaml.Node, path []string, env string, depth int) *yaml.Node {
	n = resolveAlias(n)
	if n == nil {
		c := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
		b.mark(c, path, env)
		return c
	}
	c := &yaml.Node{Kind: n.Kind, Style: n.Style &^ (yaml.FlowStyle), Value: n.Value}
	c.Tag = n.ShortTag()
	b.mark(c, path, env)
	if depth > 64 {
		c.Kind, c.Tag, c.Value, c.Content = yaml.ScalarNode, "!!null", "", nil
		return c
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k == nil {
				continue
			}
			kc := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.Value}
			p := append(append([]string(nil), path...), k.Value)
			b.mark(kc, p, env)
			c.Content = append(c.Content, kc, b.adopt(n.Content[i+1], p, env, depth+1))
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			c.Content = append(c.Content, b.adopt(item, indexPath(path, i), env, depth+1))
		}
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return b.adopt(n.Content[0], path, env, depth)
		}
		c.Kind, c.Tag = yaml.ScalarNode, "!!null"
	}
	return c
}

// overlayStructured replaces free-form maps and lists in the tree: from
// their BUBBLED_* variable (a YAML flow value, e.g.
// BUBBLED_BRIDGE__PERMISSIONS='{"localhost": user}') when set, and free-form
// maps otherwise verbatim from the file so their keys keep their case.
func (b *treeBuilder) overlayStructured(root *yaml.Node, defs *defaults, userRoot *yaml.Node, problems *problemList) {
	keys := append(append([]string(nil), freeFormMaps...), openMaps...)
	keys = append(keys, defs.seqKeys...)
	for _, key := range keys {
		path := strings.Split(key, ".")
		env := envName(path)
		raw := os.Getenv(env)
		fromEnv := raw != "" // empty variables are ignored, as viper does
		var replacement *yaml.Node
		switch {
		case fromEnv:
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
				problems.add(Problem{Key: keyString(path), Value: strconv.Quote(truncate(raw)), Env: env,
					Reason: fmt.Sprintf("is not valid YAML (%v)", err),
					Fix:    "write a YAML flow value, e.g. '{\"localhost\": user}' for a map or '[a, b]' for a list"})
				continue
			}
			replacement = b.adopt(&doc, path, env, 0)
		case slices.Contains(freeFormMaps, key):
			u := lookupPath(userRoot, path)
			if u == nil || u.Kind != yaml.MappingNode {
				continue
			}
			replacement = b.adopt(u, path, "", 0)
		default:
			continue
		}
		parent := root
		for _, p := range path[:len(path)-1] {
			next := mapLookup(parent, p)
			if next == nil || next.Kind != yaml.MappingNode {
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				b.mark(next, path, "")
				mapSet(parent, p, next)
			}
			parent = next
		}
		mapSet(parent, path[len(path)-1], replacement)
	}
}

var yamlErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeInto decodes n into out and turns errors into problems naming keys.
// yaml.v3 keeps decoding past type errors, but a custom UnmarshalYAML
// failure (mautrix's bot avatar, relay templates, ...) aborts the whole
// decode without a position: the failing subtree is located, reported,
// removed, and the decode retried so the rest of the config is still read.
func (b *treeBuilder) decodeInto(n *yaml.Node, out any, fresh func() any, problems *problemList) {
	target := reflect.ValueOf(out).Elem()
	initial := reflect.New(target.Type()).Elem()
	initial.Set(target)
	for attempt := 0; attempt < 20; attempt++ {
		// Start from the initial value: yaml.v3 does not clear map entries
		// left by a failed attempt.
		target.Set(initial)
		err := n.Decode(out)
		if err == nil {
			return
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				problems.add(b.typeProblem(n, msg))
			}
			return
		}
		culprit := narrow(n, func(trial *yaml.Node) error { return trial.Decode(fresh()) })
		problems.add(b.problemAt(culprit, err.Error()))
		if culprit == n {
			return
		}
		// Neutralise the culprit and try again.
		*culprit = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: culprit.Line, Column: culprit.Column}
	}
}

// typeProblem turns one yaml.v3 type error line into a problem; decoded is
// the tree that was decoded.
func (b *treeBuilder) typeProblem(decoded *yaml.Node, msg string) Problem {
	m := yamlErrLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Key: "(file)", Reason: msg, Fix: "compare with example-config.yaml"}
	}
	line, _ := strconv.Atoi(m[1])
	node := findLine(decoded, line, 0)
	p := b.problemAt(node, m[2])
	p.Reason, p.Fix = describeTypeError(m[2], p.Key)
	return p
}

func (b *treeBuilder) problemAt(node *yaml.Node, reason string) Problem {
	p := Problem{Key: "(file)", Reason: reason, Fix: "compare with example-config.yaml"}
	if node == nil {
		return p
	}
	o, ok := b.origin(node.Line)
	if !ok {
		return p
	}
	if len(o.path) == 0 {
		return p
	}
	p.Key = keyString(o.path)
	p.Env = o.env
	if p.Env == "" {
		p.Env = envFor(o.path)
	}
	p.Value = display(node)
	if isSecretKey(o.path) {
		p.Value = "(hidden)"
	}
	for prefix, fix := range keyFixes {
		if strings.HasPrefix(p.Key, prefix) {
			p.Fix = fix
		}
	}
	return p
}

// keyFixes are fixes for errors from mautrix's own decoders, by key prefix.
var keyFixes = map[string]string{
	"appservice.bot.avatar":           "write an mxc:// URI, remove, or leave it empty",
	"bridge.relay.message_formats":    "fix the Go template, e.g. <b>{{ .Sender.DisambiguatedName }}</b>: {{ .Message }}",
	"bridge.relay.displayname_format": "fix the Go template, e.g. {{ .DisambiguatedName }}",
}

func findLine(n *yaml.Node, line, depth int) *yaml.Node {
	if n == nil || depth > 70 {
		return nil
	}
	if n.Line == line {
		return n
	}
	for _, c := range n.Content {
		if f := findLine(c, line, depth+1); f != nil {
			return f
		}
	}
	return nil
}

var typeErrInto = regexp.MustCompile(`^cannot unmarshal (!!\w+)(?: ` + "`" + `.*` + "`" + `)? into (.+)$`)

// describeTypeError rewrites "cannot unmarshal !!str `abc` into uint16"
// for an operator.
func describeTypeError(msg, key string) (reason, fix string) {
	m := typeErrInto.FindStringSubmatch(msg)
	if m == nil {
		return msg, "compare with example-config.yaml"
	}
	from, into := m[1], m[2]
	switch {
	case from == "!!map":
		return "is a section but must be a single value or list", "write the value as in example-config.yaml"
	case from == "!!seq":
		return "is a list but must be a single value or section", "write the value as in example-config.yaml"
	case into == "time.Duration":
		return "is not a duration", "write a duration with a unit, e.g. 10s, 2m or 1h30m"
	case into == "bool":
		return "is not true or false", "write true or false"
	case into == "uint16" && strings.HasSuffix(key, "port"):
		return "is not a port number", "write a port number from 1 to 65535"
	case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		return "is not a whole number (or is out of range)", "write a whole number, e.g. 10"
	case strings.HasPrefix(into, "float"):
		return "is not a number", "write a number, e.g. 1.5"
	case into == "string" || strings.HasSuffix(into, "ID") || strings.Contains(into, "."):
		return "is not text of the expected form", "write a plain value as in example-config.yaml"
	}
	return "cannot be read as " + into, "write the value as in example-config.yaml"
}

// narrow finds the deepest node under mapping n whose subtree alone makes
// try fail, by decoding minimal trees that keep only one branch.
func narrow(n *yaml.Node, try func(*yaml.Node) error) *yaml.Node {
	var chain []*yaml.Node // key, value pairs from n down to cur
	cur := n
	for depth := 0; depth < 32; depth++ {
		if cur.Kind != yaml.MappingNode && cur.Kind != yaml.SequenceNode {
			return cur
		}
		found := false
		for i := 0; i < len(cur.Content); {
			var pair []*yaml.Node
			var child *yaml.Node
			if cur.Kind == yaml.MappingNode {
				if i+1 >= len(cur.Content) {
					break
				}
				pair = []*yaml.Node{cur.Content[i], cur.Content[i+1]}
				child = cur.Content[i+1]
				i += 2
			} else {
				pair = []*yaml.Node{cur.Content[i]}
				child = cur.Content[i]
				i++
			}
			if try(minimalTree(n, chain, pair)) != nil {
				chain = append(chain, pair...)
				cur = child
				found = true
				break
			}
		}
		if !found {
			return cur
		}
	}
	return cur
}

// minimalTree rebuilds root keeping only the nodes in chain+last.
func minimalTree(root *yaml.Node, chain, last []*yaml.Node) *yaml.Node {
	all := append(append([]*yaml.Node(nil), chain...), last...)
	var build func(orig *yaml.Node, rest []*yaml.Node) *yaml.Node
	build = func(orig *yaml.Node, rest []*yaml.Node) *yaml.Node {
		c := *orig
		c.Content = nil
		if len(rest) == 0 {
			return orig
		}
		if orig.Kind == yaml.MappingNode {
			k, v := rest[0], rest[1]
			c.Content = []*yaml.Node{k, build(v, rest[2:])}
		} else {
			v := rest[0]
			c.Content = []*yaml.Node{build(v, rest[1:])}
		}
		return &c
	}
	return build(root, all)
}

// decodeBridge decodes the mautrix sections.
func (b *treeBuilder) decodeBridge(root *yaml.Node, out *bridgeconfig.Config, problems *problemList) {
	b.prevalidatePermissions(root, problems)
	b.decodeInto(root, out, func() any { return &bridgeconfig.Config{} }, problems)
}

// prevalidatePermissions checks permission levels before mautrix's decoder
// (whose errors carry no position) sees them, and removes bad entries.
func (b *treeBuilder) prevalidatePermissions(root *yaml.Node, problems *problemList) {
	perms := lookupPath(root, []string{"bridge", "permissions"})
	if perms == nil || perms.Kind != yaml.MappingNode {
		return
	}
	var keep []*yaml.Node
	for i := 0; i+1 < len(perms.Content); i += 2 {
		k, v := perms.Content[i], perms.Content[i+1]
		if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && !slices.Contains(permissionLevels, strings.ToLower(v.Value)) {
			p := b.problemAt(v, "")
			p.Reason = "is not a permission level"
			p.Fix = "write one of " + strings.Join(permissionLevels, ", ")
			problems.add(p)
			continue
		}
		if v.Kind == yaml.ScalarNode && v.Tag != "!!str" && v.Tag != "!!int" {
			p := b.problemAt(v, "")
			p.Reason = "is not a permission level"
			p.Fix = "write one of " + strings.Join(permissionLevels, ", ")
			problems.add(p)
			continue
		}
		keep = append(keep, k, v)
	}
	perms.Content = keep
}

var permissionLevels = []string{"block", "relay", "commands", "user", "admin"}

// decodeSection decodes one top-level section into out.
func (b *treeBuilder) decodeSection(root *yaml.Node, key string, out any, problems *problemList) {
	n := mapLookup(root, key)
	if n == nil || isNull(n) {
		return
	}
	t := reflect.TypeOf(out).Elem()
	b.decodeInto(n, out, func() any { return reflect.New(t).Interface() }, problems)
}

// decodeNetwork decodes the network section; modems without a baud key
// get DefaultBaud.
func (b *treeBuilder) decodeNetwork(root *yaml.Node, out *Network, problems *problemList) {
	n := mapLookup(root, "network")
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	modems := mapDelete(n, "modems")
	b.decodeSection(root, "network", out, problems)
	if modems == nil || isNull(modems) {
		return
	}
	if modems.Kind != yaml.SequenceNode {
		p := b.problemAt(modems, "")
		p.Reason = "is not a list of modems"
		p.Fix = "write network.modems as a list of entries with id:, device: and optionally baud:, pin:, own_number:"
		problems.add(p)
		return
	}
	for _, item := range modems.Content {
		m := Modem{Baud: DefaultBaud}
		if item.Kind != yaml.MappingNode {
			p := b.problemAt(item, "")
			p.Reason = "is not a modem entry"
			p.Fix = "write each modem as a block with id:, device: and optionally baud:, pin:, own_number:"
			problems.add(p)
			out.Modems = append(out.Modems, m)
			continue
		}
		b.decodeInto(item, &m, func() any { return &Modem{} }, problems)
		out.Modems = append(out.Modems, m)
	}
}
