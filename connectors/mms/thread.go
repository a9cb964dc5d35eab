package mms

import (
	"regexp"
	"sort"
	"strings"

	"github.com/bubbled/bubbled/connectors/phone"
)

// Participants returns the conversation of a received message: From, To
// and Cc as E.164 numbers where they parse (else as given), without
// /TYPE=, deduplicated, without own (the line's number), sorted. One entry
// means a 1:1 chat; two or more a group (notes/mms.md §4).
func Participants(p *PDU, own, region string) []string {
	ownN := normalise(own, region)
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		n := normalise(Number(a), region)
		if n == "" || n == ownN || seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
	}
	add(p.From)
	for _, l := range [][]string{p.To, p.Cc} {
		for _, a := range l {
			add(a)
		}
	}
	sort.Strings(out)
	return out
}

func normalise(s, region string) string {
	if s == "" {
		return ""
	}
	if e, err := phone.Parse(s, region); err == nil {
		return e
	}
	return s
}

var smilSrc = regexp.MustCompile(`(?i)\bsrc\s*=\s*"([^"]*)"`)

// Ordered returns the parts of p to show, in the order its SMIL
// presentation names them (matched against Content-ID, with or without
// "cid:", and Content-Location), then any part the SMIL does not name, in
// wire order. SMIL parts themselves are dropped.
func Ordered(p *PDU) []Part {
	var smil string
	var rest []Part
	for _, part := range p.Parts {
		if strings.EqualFold(part.ContentType.Media, MediaSMIL) {
			smil = string(part.Data)
			continue
		}
		rest = append(rest, part)
	}
	used := make([]bool, len(rest))
	var out []Part
	for _, m := range smilSrc.FindAllStringSubmatch(smil, -1) {
		ref := strings.TrimPrefix(m[1], "cid:")
		for i, part := range rest {
			if !used[i] && (ref == part.ContentID || ref == part.ContentLocation) {
				used[i] = true
				out = append(out, part)
				break
			}
		}
	}
	for i, part := range rest {
		if !used[i] {
			out = append(out, part)
		}
	}
	return out
}
