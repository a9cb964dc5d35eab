package mms

import (
	"errors"
	"fmt"
	"strings"
)

// WAP push constants (WAP-230 §8.2.4, WAP-259 port numbers).
const (
	// PushPort is the WAP connectionless push port (WDP) that carries MMS
	// notifications in SMS.
	PushPort = 2948
	// PushSourcePort is the WSP connectionless source port senders use.
	PushSourcePort = 9200
	pduPush        = 0x06
	pduConfirmed   = 0x07
	headerAppID    = 0xAF // X-Wap-Application-Id (0x2F)
	appIDMMS       = 4    // x-wap-application:mms.ua
)

// Push is a decoded WSP push PDU.
type Push struct {
	TID         byte
	Confirmed   bool   // ConfirmedPush (0x07) rather than Push (0x06)
	ContentType string // e.g. MediaMMS, "application/vnd.wap.sic"
	AppID       string // X-Wap-Application-Id as a number or URI; "" if absent
	Body        []byte
}

// IsMMS reports whether the push carries an MMS PDU.
func (p *Push) IsMMS() bool { return strings.EqualFold(p.ContentType, MediaMMS) }

// ErrNotPush reports bytes that are not a WSP Push or ConfirmedPush.
var ErrNotPush = errors.New("not a WSP push PDU")

// DecodePush parses a connectionless WSP push (TID, PDU type, HeadersLen,
// Content-Type, headers, body). The body starts after HeadersLen; a
// Content-Length header is ignored because real pushes lie in it.
func DecodePush(b []byte) (*Push, error) {
	if len(b) < 3 || (b[1] != pduPush && b[1] != pduConfirmed) {
		return nil, ErrNotPush
	}
	p := &Push{TID: b[0], Confirmed: b[1] == pduConfirmed}
	r := &reader{b: b, i: 2}
	hl, err := r.uintvar()
	if err != nil {
		return nil, fmt.Errorf("wsp push headers length: %w", err)
	}
	h, err := r.sub(int(hl))
	if err != nil {
		return nil, fmt.Errorf("wsp push headers: %w", err)
	}
	p.Body = r.b[r.i:]
	ct, err := h.contentType()
	if err != nil {
		return nil, fmt.Errorf("wsp push content type: %w", err)
	}
	p.ContentType = ct.Media
	for h.left() > 0 {
		c, _ := h.peek()
		if c < 0x80 {
			_, _ = h.text()
			_, _ = h.text()
			continue
		}
		h.i++
		if c != headerAppID {
			if err := h.skipValue(); err != nil {
				return nil, fmt.Errorf("wsp push header 0x%02X: %w", c, err)
			}
			continue
		}
		if v, _ := h.peek(); v >= 0x80 || v <= 30 {
			id, err := h.integer()
			if err != nil {
				return nil, fmt.Errorf("wsp push application id: %w", err)
			}
			p.AppID = fmt.Sprint(id)
		} else {
			p.AppID, _ = h.text()
		}
	}
	return p, nil
}

// EncodePush wraps an MMS PDU in a WSP push the way real MMSCs do: the
// content type as text and X-Wap-Application-Id mms.ua.
func EncodePush(tid byte, mmsPDU []byte) []byte {
	var h writer
	_ = h.text(MediaMMS)
	h.byte(headerAppID)
	h.byte(0x80 | appIDMMS)
	w := writer{b: []byte{tid, pduPush}}
	w.uintvar(uint32(len(h.b)))
	w.b = append(w.b, h.b...)
	w.b = append(w.b, mmsPDU...)
	return w.b
}
