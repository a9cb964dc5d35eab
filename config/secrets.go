package config

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/federation"
)

// tokenPlaceholder is what mautrix's example config has in the token fields.
const tokenPlaceholder = "This value is generated when generating the registration"

type secretSpec struct {
	path []string
	// enabledKey, when set, is a boolean key that must be true for the
	// secret to be needed.
	enabledKey string
	generate   func() string
}

var secretSpecs = []secretSpec{
	{path: []string{"appservice", "as_token"}, generate: randomToken},
	{path: []string{"appservice", "hs_token"}, generate: randomToken},
	{path: []string{"encryption", "pickle_key"}, generate: randomToken},
	{path: []string{"provisioning", "shared_secret"}, generate: randomToken},
	{path: []string{"public_media", "signing_key"}, enabledKey: "public_media::enabled", generate: randomToken},
	{path: []string{"direct_media", "server_key"}, enabledKey: "direct_media::enabled", generate: func() string {
		return federation.GenerateSigningKey().SynapseString()
	}},
}

// pendingSecret is a generated secret to be written into the file.
type pendingSecret struct {
	path  []string
	value string
}

// needsGeneration reports whether a secret's value asks for a random one.
func needsGeneration(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == "" || x == "generate" || x == tokenPlaceholder
	}
	return false
}

// planSecrets generates the secrets that are still "generate" in the file
// and defaults, sets them in v, and returns them for persisting. Secrets
// given through the environment are left alone (validation rejects a
// literal "generate" there).
func planSecrets(v *viper.Viper, readOnly bool, problems *problemList) []pendingSecret {
	var pending []pendingSecret
	for _, s := range secretSpecs {
		if s.enabledKey != "" && !v.GetBool(s.enabledKey) {
			continue
		}
		if os.Getenv(envName(s.path)) != "" {
			continue
		}
		key := strings.Join(s.path, keyDelim)
		if !needsGeneration(v.Get(key)) {
			continue
		}
		if readOnly {
			problems.add(Problem{Key: keyString(s.path), Value: strconv.Quote("generate"),
				Reason: "must be generated but the config was loaded read-only",
				Fix:    fmt.Sprintf("set %s to a random value, or start once with a writable config file", envName(s.path))})
			continue
		}
		val := s.generate()
		v.Set(key, val)
		pending = append(pending, pendingSecret{path: s.path, value: val})
	}
	return append(pending, planAPITokens(v, readOnly, problems)...)
}

// planAPITokens generates the api.tokens[].token and api.webhooks[].secret
// left as "generate". Their paths name the list entry as "#<index>" (see
// setInTree).
func planAPITokens(v *viper.Viper, readOnly bool, problems *problemList) []pendingSecret {
	var pending []pendingSecret
	for _, l := range []struct{ list, field string }{{"tokens", "token"}, {"webhooks", "secret"}} {
		key := "api" + keyDelim + l.list
		if os.Getenv(envName([]string{"api", l.list})) != "" {
			continue
		}
		list, ok := v.Get(key).([]any)
		if !ok {
			continue
		}
		changed := false
		for i, item := range list {
			entry, ok := item.(map[string]any)
			if !ok || !needsGeneration(entry[l.field]) {
				continue
			}
			path := []string{"api", l.list + "[" + strconv.Itoa(i) + "]", l.field}
			if readOnly {
				problems.add(Problem{Key: keyString(path), Value: strconv.Quote("generate"),
					Reason: "must be generated but the config was loaded read-only",
					Fix:    "write a random value of at least 32 characters there, or start once with a writable config file"})
				continue
			}
			val := randomToken()
			entry[l.field] = val
			changed = true
			pending = append(pending, pendingSecret{path: []string{"api", l.list, "#" + strconv.Itoa(i), l.field}, value: val})
		}
		if changed {
			v.Set(key, list)
		}
	}
	return pending
}

// isSecretKey reports whether the value at path must never be displayed.
func isSecretKey(path []string) bool {
	clean := make([]string, len(path))
	for i, p := range path {
		if j := strings.IndexByte(p, '['); j > 0 {
			p = p[:j]
		}
		clean[i] = strings.ToLower(p)
	}
	key := strings.Join(clean, ".")
	for _, s := range secretSpecs {
		if key == strings.Join(s.path, ".") {
			return true
		}
	}
	return key == "analytics.token" || key == "network.modems.pin" || key == "network.contacts.carddav.password" ||
		key == "api.tokens.token" || key == "api.webhooks.secret" ||
		strings.HasPrefix(key, "double_puppet.secrets")
}

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomToken returns 64 random alphanumeric characters (about 380 bits).
func randomToken() string {
	out := make([]byte, 0, 64)
	buf := make([]byte, 96)
	for len(out) < 64 {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
		for _, c := range buf {
			if c < 248 && len(out) < 64 { // 248 = 4*62: unbiased
				out = append(out, alphanumeric[c%62])
			}
		}
	}
	return string(out)
}

// persistSecrets writes the pending secrets into the config file at path,
// whose current content is data. Values are edited in place in the text
// when possible so that formatting and comments stay exactly as written;
// otherwise the YAML node tree is edited and re-encoded (comments kept,
// indentation normalised). The result is checked to differ from the
// original only by the secrets, then replaces the file atomically with
// mode 0600. A file the operator made read-only is never replaced
// ([ErrReadOnlyConfig]).
func persistSecrets(path string, data []byte, pending []pendingSecret) error {
	if err := checkWritable(path, pending); err != nil {
		return err
	}
	out, err := applySecrets(data, pending, true)
	if err == nil {
		err = checkOnlySecretsChanged(data, out, pending)
	}
	if err != nil {
		// The textual edit could not be done or verified: edit the tree.
		out, err = applySecrets(data, pending, false)
		if err != nil {
			return err
		}
		if err := checkOnlySecretsChanged(data, out, pending); err != nil {
			return err
		}
	}
	return writeFileAtomic(path, out, 0o600)
}

// ErrReadOnlyConfig is wrapped by [Load] and GenerateRegistration when
// generated secrets would have to be written into a config file that is not
// writable (read-only mode bits, or not writable by this user).
var ErrReadOnlyConfig = errors.New("the config file is read-only")

// checkWritable refuses to replace a config file the operator made
// read-only. The rename in writeFileAtomic needs only a writable directory,
// so it would replace the file behind a chmod 0444 (and root may write any
// file), hence the mode bits are checked as well as an open for writing.
func checkWritable(path string, pending []pendingSecret) error {
	target := path
	if t, err := filepath.EvalSymlinks(path); err == nil {
		target = t
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("check the config file: %w", err)
	}
	refuse := fi.Mode().Perm()&0o222 == 0
	if !refuse {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			refuse = errors.Is(err, os.ErrPermission)
		} else {
			_ = f.Close()
		}
	}
	if !refuse {
		return nil
	}
	keys := make([]string, len(pending))
	for i, p := range pending {
		keys[i] = keyString(p.path) + " (or " + envName(p.path) + ")"
	}
	return fmt.Errorf("%w (mode %#o): bubbled will not replace it with generated secrets; set %s to random values yourself, or make the file writable for one start",
		ErrReadOnlyConfig, fi.Mode().Perm(), strings.Join(keys, ", "))
}

func applySecrets(data []byte, pending []pendingSecret, text bool) ([]byte, error) {
	out := data
	for _, p := range pending {
		var doc yaml.Node
		if err := yaml.Unmarshal(out, &doc); err != nil {
			return nil, fmt.Errorf("re-parse config before editing: %w", err)
		}
		if text {
			next, ok := editText(out, documentRoot(&doc), p.path, p.value)
			if !ok {
				return nil, errors.New("no textual edit possible")
			}
			out = next
			continue
		}
		next, err := editTree(&doc, p.path, p.value)
		if err != nil {
			return nil, err
		}
		out = next
	}
	return out, nil
}

// editText tries a minimal textual edit for a two-level key path.
func editText(data []byte, root *yaml.Node, path []string, value string) ([]byte, bool) {
	if len(path) != 2 {
		return nil, false
	}
	section, key := path[0], path[1]
	nl := "\n"
	if bytes.Contains(data, []byte("\r\n")) {
		nl = "\r\n"
	}
	quoted := strconv.Quote(value)
	lines := strings.SplitAfter(string(data), "\n")
	indent := detectIndent(root)

	if root == nil || (root.Kind == yaml.MappingNode && root.Style&yaml.FlowStyle == 0 && !hasKey(root, section)) {
		if root != nil && len(root.Content) > 0 && root.Content[0].Column != 1 {
			return nil, false
		}
		var sb strings.Builder
		sb.Write(data)
		if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
			sb.WriteString(nl)
		}
		sb.WriteString(section + ":" + nl + strings.Repeat(" ", indent) + key + ": " + quoted + nl)
		return []byte(sb.String()), true
	}
	if root.Kind != yaml.MappingNode || root.Style&yaml.FlowStyle != 0 {
		return nil, false
	}
	secKey, sec := mapLookupPair(root, section)
	if sec == nil || sec.Kind != yaml.MappingNode || sec.Style&yaml.FlowStyle != 0 || len(sec.Content) == 0 ||
		secKey.Style != 0 {
		return nil, false
	}
	k, v := mapLookupPair(sec, key)
	if k == nil {
		// Insert a new line right after the section header.
		childIndent := sec.Content[0].Column - 1
		if secKey.Line < 1 || secKey.Line > len(lines) || childIndent < 1 {
			return nil, false
		}
		line := strings.Repeat(" ", childIndent) + key + ": " + quoted + nl
		out := append(append(append([]string(nil), lines[:secKey.Line]...), line), lines[secKey.Line:]...)
		return []byte(strings.Join(out, "")), true
	}
	if k.Style != 0 || v.Kind != yaml.ScalarNode || v.Line < 1 || v.Line > len(lines) {
		return nil, false
	}
	if v.Value == "" && v.Style == 0 {
		return fillEmptyValue(lines, k, quoted, nl)
	}
	return replaceScalar(lines, v, quoted)
}

// fillEmptyValue writes quoted after the colon of `key:` (nothing after it
// but perhaps a comment, which is kept).
func fillEmptyValue(lines []string, k *yaml.Node, quoted, nl string) ([]byte, bool) {
	if k.Line < 1 || k.Line > len(lines) {
		return nil, false
	}
	runes := []rune(lines[k.Line-1])
	start := k.Column - 1 + len([]rune(k.Value))
	if k.Column < 1 || start >= len(runes) || runes[start] != ':' {
		return nil, false
	}
	rest := string(runes[start+1:])
	trimmed := strings.TrimLeft(rest, " \t")
	if trimmed != "" && !strings.HasPrefix(trimmed, "#") && strings.TrimRight(trimmed, "\r\n") != "" {
		return nil, false
	}
	suffix := ""
	if strings.HasPrefix(trimmed, "#") {
		suffix = " " + strings.TrimRight(trimmed, "\r\n")
	}
	lines[k.Line-1] = string(runes[:start+1]) + " " + quoted + suffix + nl
	return []byte(strings.Join(lines, "")), true
}

// replaceScalar swaps the plain or quoted scalar v for quoted in place,
// keeping the rest of its line.
func replaceScalar(lines []string, v *yaml.Node, quoted string) ([]byte, bool) {
	var raw string
	switch v.Style {
	case 0:
		raw = v.Value
	case yaml.DoubleQuotedStyle:
		raw = `"` + v.Value + `"`
	case yaml.SingleQuotedStyle:
		raw = `'` + v.Value + `'`
	default:
		return nil, false
	}
	runes := []rune(lines[v.Line-1])
	col := v.Column - 1
	if col < 0 || col+len([]rune(raw)) > len(runes) || string(runes[col:col+len([]rune(raw))]) != raw {
		return nil, false
	}
	lines[v.Line-1] = string(runes[:col]) + quoted + string(runes[col+len([]rune(raw)):])
	return []byte(strings.Join(lines, "")), true
}

func hasKey(m *yaml.Node, key string) bool {
	k, _ := mapLookupPair(m, key)
	return k != nil
}

// detectIndent returns the indentation of the first nested block mapping,
// or 4 (mautrix's style).
func detectIndent(root *yaml.Node) int {
	if root == nil || root.Kind != yaml.MappingNode {
		return 4
	}
	for i := 1; i < len(root.Content); i += 2 {
		v := root.Content[i]
		if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Column > 1 {
			return v.Content[0].Column - 1
		}
	}
	return 4
}

// listIndex reads a path element "#<i>" (entry i of a list).
func listIndex(p string) (int, bool) {
	if !strings.HasPrefix(p, "#") {
		return 0, false
	}
	i, err := strconv.Atoi(p[1:])
	return i, err == nil && i >= 0
}

// editTree sets the key in the node tree and re-encodes the document.
func editTree(doc *yaml.Node, path []string, value string) ([]byte, error) {
	root := documentRoot(doc)
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		*doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	}
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a YAML mapping")
	}
	indent := detectIndent(root)
	setInTree(root, path, value)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(indent)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// setInTree sets path to a double-quoted string in the mapping tree,
// creating (or replacing non-mapping) sections on the way. A path element
// "#<i>" is entry i of an existing list (api.tokens[i]).
func setInTree(m *yaml.Node, path []string, value string) {
	for j, p := range path[:len(path)-1] {
		if i, ok := listIndex(p); ok {
			if seq := resolveAlias(m); seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
				m = resolveAlias(seq.Content[i])
				continue
			}
		}
		k, next := mapLookupPair(m, p)
		_, intoList := listIndex(path[j+1])
		if intoList && next != nil && resolveAlias(next).Kind == yaml.SequenceNode {
			m = resolveAlias(next)
			continue
		}
		if next == nil || resolveAlias(next).Kind != yaml.MappingNode {
			next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if k != nil {
				mapSet(m, k.Value, next)
			} else {
				mapSet(m, p, next)
			}
		}
		m = resolveAlias(next)
	}
	leaf := path[len(path)-1]
	v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: value}
	if k, _ := mapLookupPair(m, leaf); k != nil {
		leaf = k.Value
	}
	mapSet(m, leaf, v)
}

// checkOnlySecretsChanged verifies that after equals before with the
// pending secrets set, compared as decoded data.
func checkOnlySecretsChanged(before, after []byte, pending []pendingSecret) error {
	var want yaml.Node
	if err := yaml.Unmarshal(before, &want); err != nil {
		return fmt.Errorf("re-parse config: %w", err)
	}
	root := documentRoot(&want)
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		want = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	}
	for _, p := range pending {
		setInTree(root, p.path, p.value)
	}
	var wantData, gotData any
	if err := want.Decode(&wantData); err != nil {
		return fmt.Errorf("check edited config: %w", err)
	}
	if err := yaml.Unmarshal(after, &gotData); err != nil {
		return fmt.Errorf("check edited config: %w", err)
	}
	if !reflect.DeepEqual(wantData, gotData) {
		return errors.New("editing the secrets would change other settings (bug); the file was left unchanged")
	}
	return nil
}

// writeFileAtomic replaces path (following symlinks) with data via a
// temporary file in the same directory and a rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmpName := tmp.Name()
	cleanup := func() { _ = os.Remove(tmpName) }
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		cleanup()
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		cleanup()
		return fmt.Errorf("set permissions: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		cleanup()
		return fmt.Errorf("sync temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("close temporary file: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		cleanup()
		return fmt.Errorf("replace file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
