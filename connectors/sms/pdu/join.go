package pdu

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
)

// Join returns the text of a complete concatenated message from its parts,
// given in any order. A single part without concatenation IE is returned as
// is. All parts must have the same type, address, reference and part count;
// a missing part, a part number outside 1..Total, conflicting duplicates or
// 8-bit data parts are errors. Identical duplicates (a part delivered twice)
// are tolerated.
//
// For parts returned by Decode, Join repairs characters that another sender
// split across two parts (a UTF-16 surrogate pair or a GSM 7-bit escape
// sequence); for hand-built parts it concatenates Text.
func Join(parts []*Message) (string, error) {
	if len(parts) == 0 {
		return "", errors.New("pdu: join: no parts")
	}
	for i, p := range parts {
		if p == nil {
			return "", fmt.Errorf("pdu: join: part %d is nil", i)
		}
		if p.Alphabet == EightBit {
			return "", errors.New("pdu: join: 8-bit data parts carry no text")
		}
	}
	first := parts[0]
	if first.Concat == nil {
		if len(parts) > 1 {
			return "", errors.New("pdu: join: a part without concatenation header cannot be joined with others")
		}
		return first.Text, nil
	}
	c0 := first.Concat
	bySeq := make(map[uint8]*Message, c0.Total)
	for _, p := range parts {
		c := p.Concat
		switch {
		case c == nil:
			return "", errors.New("pdu: join: mixed group: a part has no concatenation header")
		case c.Ref != c0.Ref || c.RefBits != c0.RefBits || c.Total != c0.Total:
			return "", fmt.Errorf("pdu: join: mixed group: ref %d/%d-bit/%d parts and ref %d/%d-bit/%d parts",
				c0.Ref, c0.RefBits, c0.Total, c.Ref, c.RefBits, c.Total)
		case p.Type != first.Type || p.Address != first.Address:
			return "", fmt.Errorf("pdu: join: mixed group: parts from %s and %s", first.Address, p.Address)
		case c.Seq == 0 || c.Seq > c.Total:
			return "", fmt.Errorf("pdu: join: part number %d outside 1..%d", c.Seq, c.Total)
		}
		if q, dup := bySeq[c.Seq]; dup {
			if q.Text != p.Text {
				return "", fmt.Errorf("pdu: join: two different parts numbered %d", c.Seq)
			}
			continue
		}
		bySeq[c.Seq] = p
	}
	if len(bySeq) != int(c0.Total) {
		var missing []string
		for s := 1; s <= int(c0.Total); s++ {
			if _, ok := bySeq[uint8(s)]; !ok {
				missing = append(missing, fmt.Sprint(s))
			}
		}
		return "", fmt.Errorf("pdu: join: incomplete message: have %d of %d parts, missing %s", len(bySeq), c0.Total, strings.Join(missing, ","))
	}
	ordered := make([]*Message, 0, len(bySeq))
	for _, p := range bySeq {
		ordered = append(ordered, p)
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].Concat.Seq < ordered[j].Concat.Seq })
	return joinText(ordered), nil
}

// joinText concatenates the parts' text, re-decoding runs of parts whose
// raw user data is known so that split characters are rejoined.
func joinText(parts []*Message) string {
	var b strings.Builder
	var units []uint16 // pending UCS-2 run
	var septets []byte // pending GSM 7-bit run
	var locking, single int
	flush := func() {
		if units != nil {
			b.WriteString(string(utf16.Decode(units)))
			units = nil
		}
		if septets != nil {
			b.WriteString(decodeSeptets(septets, locking, single))
			septets = nil
		}
	}
	for _, p := range parts {
		r := p.raw
		switch {
		case r != nil && p.Alphabet == UCS2:
			if septets != nil {
				flush()
			}
			if units == nil {
				units = []uint16{}
			}
			units = append(units, r.units...)
		case r != nil && p.Alphabet == GSM7:
			if units != nil || (septets != nil && (r.locking != locking || r.single != single)) {
				flush()
			}
			locking, single = r.locking, r.single
			if septets == nil {
				septets = []byte{}
			}
			septets = append(septets, r.septets...)
		default:
			flush()
			b.WriteString(p.Text)
		}
	}
	flush()
	return b.String()
}
