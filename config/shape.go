package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkShape compares the operator's file with the schema (the merged
// defaults). A value of the wrong kind (a list where a section is expected,
// ...) is a problem: viper would silently drop it. An unknown key is a
// warning.
func checkShape(schema, user *yaml.Node, path []string, problems, warnings *problemList) {
	user = resolveAlias(user)
	if user == nil || isNull(user) {
		return
	}
	if user.Kind != yaml.MappingNode {
		problems.add(Problem{Key: "(file)", Reason: "is not a YAML mapping of sections",
			Fix: "start from example-config.yaml: the file must contain keys such as homeserver:, appservice:, network:"})
		return
	}
	shapeMapping(schema, user, path, problems, warnings, 0)
}

func shapeMapping(schema, user *yaml.Node, path []string, problems, warnings *problemList, depth int) {
	if depth > 32 {
		return
	}
	for i := 0; i+1 < len(user.Content); i += 2 {
		k, val := user.Content[i], resolveAlias(user.Content[i+1])
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			problems.add(Problem{Key: keyString(path) + "(key)", Reason: "is a mapping key that is not a plain name",
				Fix: "write keys as plain names, as in example-config.yaml"})
			continue
		}
		p := append(append([]string(nil), path...), k.Value)
		key := keyString(p)
		if len(path) == 0 {
			if fix, ok := ignoredKeys[strings.ToLower(k.Value)]; ok {
				warnings.add(Problem{Key: key, Reason: "is ignored", Fix: fix})
				continue
			}
		}
		if newKey, ok := renamedKeys[strings.ToLower(key)]; ok {
			warnings.add(Problem{Key: key, Reason: "is ignored by mautrix", Fix: "rename it to " + newKey})
			continue
		}
		s := resolveAlias(mapLookup(schema, k.Value))
		if s == nil {
			warnings.add(Problem{Key: key, Reason: "is not a known key and is ignored",
				Fix: "check its spelling and indentation against example-config.yaml"})
			continue
		}
		shapeValue(s, val, p, problems, warnings, depth+1)
	}
}

func shapeValue(s, u *yaml.Node, path []string, problems, warnings *problemList, depth int) {
	if u == nil || isNull(u) || isNull(s) {
		return
	}
	key := keyString(path)
	dotted := strings.ToLower(strings.Join(path, "."))
	switch s.Kind {
	case yaml.MappingNode:
		if u.Kind != yaml.MappingNode {
			problems.add(Problem{Key: key, Value: display(u), Reason: "is not a section of keys",
				Fix: fmt.Sprintf("write %s as an indented block of `key: value` lines, as in example-config.yaml", path[len(path)-1])})
			return
		}
		if slices.Contains(freeFormMaps, dotted) || slices.Contains(openMaps, dotted) {
			return
		}
		shapeMapping(s, u, path, problems, warnings, depth)
	case yaml.SequenceNode:
		if u.Kind != yaml.SequenceNode {
			problems.add(Problem{Key: key, Value: display(u), Reason: "is not a list",
				Fix: fmt.Sprintf("write %s as a list: `[a, b]` or one `- item` line per entry", path[len(path)-1])})
			return
		}
		if dotted == "network.modems" {
			for i, item := range u.Content {
				item = resolveAlias(item)
				ip := append(append([]string(nil), path[:len(path)-1]...), path[len(path)-1]+"["+strconv.Itoa(i)+"]")
				if item.Kind != yaml.MappingNode {
					problems.add(Problem{Key: keyString(ip), Value: display(item), Reason: "is not a modem entry",
						Fix: "write each modem as a block with id:, device: and optionally baud:, pin:, own_number:"})
					continue
				}
				for j := 0; j+1 < len(item.Content); j += 2 {
					mk := item.Content[j].Value
					if !slices.Contains(modemKeys, strings.ToLower(mk)) {
						warnings.add(Problem{Key: keyString(append(ip, mk)), Reason: "is not a known modem key and is ignored",
							Fix: "use only " + strings.Join(modemKeys, ", ")})
					}
				}
			}
		}
	case yaml.ScalarNode:
		if u.Kind == yaml.MappingNode || u.Kind == yaml.SequenceNode {
			problems.add(Problem{Key: key, Value: display(u), Reason: "is a section or list but must be a single value",
				Fix: "write a single value after the colon, as in example-config.yaml"})
		}
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// keyString renders a key path for the operator: dotted, with keys that
// contain dots or other special characters quoted in brackets.
func keyString(path []string) string {
	var sb strings.Builder
	for i, p := range path {
		parent := strings.ToLower(strings.Join(path[:i], "."))
		switch {
		case i > 0 && (slices.Contains(freeFormMaps, parent) || slices.Contains(openMaps, parent)):
			// Operator-chosen keys are always quoted.
			sb.WriteString("[" + strconv.Quote(p) + "]")
		case strings.HasSuffix(p, "]") && strings.Contains(p, "[") && plainKey(p[:strings.Index(p, "[")]):
			if i > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(p)
		case plainKey(p):
			if i > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(p)
		default:
			sb.WriteString("[" + strconv.Quote(p) + "]")
		}
	}
	return sb.String()
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// display renders a node's value for a problem message.
func display(n *yaml.Node) string {
	n = resolveAlias(n)
	if n == nil {
		return `""`
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "(a section)"
	case yaml.SequenceNode:
		return "(a list)"
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp", "!!binary":
		return strconv.Quote(truncate(n.Value))
	case "!!null":
		return "(empty)"
	}
	return truncate(n.Value)
}

func truncate(s string) string {
	const max = 120
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
