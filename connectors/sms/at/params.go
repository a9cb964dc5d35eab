package at

import "strings"

// SplitParams splits an AT parameter list on commas outside quotes and
// removes the quotes: ` "SM",3` -> ["SM" "3"].
func SplitParams(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, c := range strings.TrimSpace(s) {
		switch {
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(c)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// ParseLists parses the ranges of a test command's answer,
// `("SM","ME"),("SM"),("SM","SR")`, into its lists.
func ParseLists(s string) [][]string {
	var out [][]string
	for {
		i := strings.IndexByte(s, '(')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return out
		}
		var list []string
		for _, v := range SplitParams(s[i+1 : i+j]) {
			if v != "" {
				list = append(list, v)
			}
		}
		out = append(out, list)
		s = s[i+j+1:]
	}
}

// IsHex reports whether s (spaces trimmed) is at least two hex digits, the
// shape of a PDU line.
func IsHex(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
