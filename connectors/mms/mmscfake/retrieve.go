package mmscfake

import (
	"fmt"
	"time"
)

// retrieveConf builds the m-retrieve-conf of a held message: Date, From,
// To and Cc (with /TYPE=PLMN), Subject, then multipart/related with a SMIL
// part first, the media and the text (utf-8 charset in its content type).
func (s *Server) retrieveConf(id string, h *held) []byte {
	m := h.msg
	var b builder
	b.octet(0x8C, 0x84)
	b.str(0x98, h.tid)
	b.octet(0x8D, 0x92)
	b.str(0x8B, "mid-"+id)
	b.long(0x85, uint64(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).Unix()))
	b.lenPrefixed(0x89, append(append([]byte{0x80}, m.From+"/TYPE=PLMN"...), 0))
	for _, to := range m.To {
		b.str(0x97, to+"/TYPE=PLMN")
	}
	for _, cc := range m.Cc {
		b.str(0x82, cc+"/TYPE=PLMN")
	}
	if m.Subject != "" {
		b.str(0x96, m.Subject)
	}
	ct := append([]byte{0xB3, 0x89}, "application/smil\x00"...)
	ct = append(append(ct, 0x8A), "<smil>\x00"...)
	b.lenPrefixed(0x84, ct)
	smil := "<smil><body>"
	var parts [][2][]byte
	for i, md := range m.Media {
		cid := fmt.Sprintf("media%d", i)
		smil += fmt.Sprintf(`<par><img src="%s"/></par>`, md.Name)
		parts = append(parts, [2][]byte{partHeaders(append([]byte(md.Type), 0), cid, md.Name), md.Data})
	}
	if m.Text != "" {
		smil += `<par><text src="text.txt"/></par>`
		parts = append(parts, [2][]byte{partHeaders([]byte{0x03, 0x83, 0x81, 0xEA}, "text", "text.txt"), []byte(m.Text)})
	}
	smil += "</body></smil>"
	parts = append([][2][]byte{{partHeaders([]byte("application/smil\x00"), "smil", "smil.xml"), []byte(smil)}}, parts...)
	body := appendUvar(nil, len(parts))
	for _, p := range parts {
		body = appendUvar(body, len(p[0]))
		body = appendUvar(body, len(p[1]))
		body = append(append(body, p[0]...), p[1]...)
	}
	return append(b, body...)
}

// partHeaders is a content type followed by Content-ID (with <>) and
// Content-Location.
func partHeaders(ct []byte, cid, loc string) []byte {
	h := append([]byte(nil), ct...)
	h = append(append(append(h, 0xC0, '"', '<'), cid...), '>', 0)
	return append(append(append(h, 0x8E), loc...), 0)
}
