package mms

import (
	"fmt"
	"strings"
)

// maxParts bounds the entry count so a hostile count cannot make us
// allocate before the data runs out.
const maxParts = 1024

// decodeMultipart reads a WSP multipart body (WAP-230 §8.5): nEntries,
// then per entry HeadersLen, DataLen, Content-Type, headers and data.
func decodeMultipart(b []byte) ([]Part, error) {
	r := &reader{b: b}
	n, err := r.uintvar()
	if err != nil {
		return nil, fmt.Errorf("multipart entry count: %w", err)
	}
	if n > maxParts {
		return nil, fmt.Errorf("multipart claims %d entries (at most %d)", n, maxParts)
	}
	parts := make([]Part, 0, n)
	for i := 0; i < int(n); i++ {
		part, err := r.part()
		if err != nil {
			return parts, fmt.Errorf("multipart entry %d/%d: %w", i+1, n, err)
		}
		parts = append(parts, part)
	}
	return parts, nil
}

func (r *reader) part() (Part, error) {
	var p Part
	hl, err := r.uintvar()
	if err != nil {
		return p, fmt.Errorf("headers length: %w", err)
	}
	dl, err := r.uintvar()
	if err != nil {
		return p, fmt.Errorf("data length: %w", err)
	}
	h, err := r.sub(int(hl))
	if err != nil {
		return p, fmt.Errorf("headers: %w", err)
	}
	if p.Data, err = r.take(int(dl)); err != nil {
		return p, fmt.Errorf("data: %w", err)
	}
	if p.ContentType, err = h.contentType(); err != nil {
		return p, fmt.Errorf("content type: %w", err)
	}
	for h.left() > 0 {
		if err := h.partHeader(&p); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Part header codes (WSP well-known header field names, with 0x80).
const (
	phCharset         = 0x81 // Accept-Charset, seen carrying the charset
	phContentLocation = 0x8E
	phContentDispOld  = 0xAE
	phContentID       = 0xC0
	phContentDisp     = 0xC5
)

func (r *reader) partHeader(p *Part) error {
	h, _ := r.peek()
	if h < 0x80 {
		name, _ := r.text()
		val, err := r.text()
		if strings.EqualFold(name, "Content-ID") {
			p.ContentID = trimAngles(val)
		} else if strings.EqualFold(name, "Content-Location") {
			p.ContentLocation = val
		}
		return err
	}
	r.i++
	var err error
	switch h {
	case phContentID:
		var s string
		s, err = r.text()
		p.ContentID = trimAngles(s)
	case phContentLocation:
		p.ContentLocation, err = r.text()
	case phCharset:
		var v uint64
		if c, _ := r.peek(); c >= 0x80 || c <= 30 {
			v, err = r.integer()
		} else {
			var s string
			s, err = r.text()
			v = uint64(charsetByName(s))
		}
		if p.ContentType.Charset == 0 {
			p.ContentType.Charset = int(v)
		}
	default:
		err = r.skipValue()
	}
	if err != nil {
		return fmt.Errorf("part header 0x%02X: %w", h, err)
	}
	return nil
}

func trimAngles(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// encodeMultipart writes parts as a WSP multipart body.
func (w *writer) multipart(parts []Part) error {
	w.uintvar(uint32(len(parts)))
	for i, p := range parts {
		var h writer
		if err := h.contentType(p.ContentType); err != nil {
			return fmt.Errorf("part %d content type: %w", i+1, err)
		}
		if p.ContentID != "" {
			h.byte(phContentID)
			if err := h.quoted("<" + p.ContentID + ">"); err != nil {
				return fmt.Errorf("part %d Content-ID: %w", i+1, err)
			}
		}
		if p.ContentLocation != "" {
			h.byte(phContentLocation)
			if err := h.text(p.ContentLocation); err != nil {
				return fmt.Errorf("part %d Content-Location: %w", i+1, err)
			}
		}
		w.uintvar(uint32(len(h.b)))
		w.uintvar(uint32(len(p.Data)))
		w.b = append(w.b, h.b...)
		w.b = append(w.b, p.Data...)
	}
	return nil
}
