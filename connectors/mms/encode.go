package mms

import (
	"fmt"
	"strings"
)

// Encode writes p in the header order OMA-MMS-ENC and real clients use:
// Message-Type, Transaction-Id, Version first, Content-Type and the body
// last. Version defaults to 1.2; an m-send-req without From gets the
// insert-address token. Texts with a NUL byte cannot be encoded.
func Encode(p *PDU) ([]byte, error) {
	if _, ok := typeNames[p.Type]; !ok {
		return nil, fmt.Errorf("mms: cannot encode unknown message type 0x%02X", byte(p.Type))
	}
	w := &writer{b: make([]byte, 0, 64+bodySize(p))}
	w.byte(hMessageType)
	w.byte(byte(p.Type))
	if err := w.textHeader(hTransactionID, p.TransactionID); err != nil {
		return nil, err
	}
	v := p.Version
	if v == 0 {
		v = Version12
	}
	w.byte(hVersion)
	w.byte(byte(v))
	for _, step := range []func(*writer, *PDU) error{encodeAddressing, encodeMeta, encodeStatus} {
		if err := step(w, p); err != nil {
			return nil, err
		}
	}
	if p.ContentType.Media != "" {
		if err := encodeBody(w, p); err != nil {
			return nil, err
		}
	}
	return w.b, nil
}

func bodySize(p *PDU) int {
	n := 0
	for _, part := range p.Parts {
		n += len(part.Data) + 32
	}
	return n
}

func (w *writer) textHeader(h byte, s string) error {
	if s == "" {
		return nil
	}
	w.byte(h)
	if err := w.text(s); err != nil {
		return fmt.Errorf("mms: header 0x%02X: %w", h, err)
	}
	return nil
}

func (w *writer) stringHeader(h byte, s string) error {
	if s == "" {
		return nil
	}
	w.byte(h)
	if err := w.encodedString(s); err != nil {
		return fmt.Errorf("mms: header 0x%02X: %w", h, err)
	}
	return nil
}

func (w *writer) octetHeader(h, c byte) {
	if c != 0 {
		w.byte(h)
		w.byte(c)
	}
}

func encodeAddressing(w *writer, p *PDU) error {
	if !p.Date.IsZero() {
		w.byte(hDate)
		w.longInt(uint64(p.Date.Unix()))
	}
	if p.From != "" || p.FromInsert || p.Type == SendReq {
		var v writer
		if p.From == "" {
			v.byte(0x81)
		} else {
			v.byte(0x80)
			if err := v.encodedString(p.From); err != nil {
				return fmt.Errorf("mms: From: %w", err)
			}
		}
		w.byte(hFrom)
		w.valueLength(len(v.b))
		w.b = append(w.b, v.b...)
	}
	for _, l := range []struct {
		h     byte
		addrs []string
	}{{hTo, p.To}, {hCc, p.Cc}, {hBcc, p.Bcc}} {
		for _, a := range l.addrs {
			if err := w.stringHeader(l.h, a); err != nil {
				return err
			}
		}
	}
	return w.stringHeader(hSubject, p.Subject)
}

func encodeMeta(w *writer, p *PDU) error {
	if p.Class != "" {
		w.byte(hClass)
		code := -1
		for i, n := range classNames {
			if strings.EqualFold(n, p.Class) {
				code = i
			}
		}
		if code >= 0 {
			w.byte(0x80 | byte(code))
		} else if err := w.text(p.Class); err != nil {
			return fmt.Errorf("mms: class: %w", err)
		}
	}
	w.octetHeader(hPriority, p.Priority)
	if p.Size > 0 || p.Type == NotificationInd {
		w.byte(hSize)
		w.longInt(p.Size)
	}
	if !p.Expiry.At.IsZero() || p.Expiry.After > 0 {
		var v writer
		if !p.Expiry.At.IsZero() {
			v.byte(0x80)
			v.longInt(uint64(p.Expiry.At.Unix()))
		} else {
			v.byte(0x81)
			v.longInt(uint64(p.Expiry.After.Seconds()))
		}
		w.byte(hExpiry)
		w.valueLength(len(v.b))
		w.b = append(w.b, v.b...)
	}
	w.octetHeader(hDeliveryReport, p.DeliveryReport)
	w.octetHeader(hReadReport, p.ReadReport)
	return nil
}

func encodeStatus(w *writer, p *PDU) error {
	w.octetHeader(hResponseStatus, byte(p.ResponseStatus))
	if err := w.stringHeader(hResponseText, p.ResponseText); err != nil {
		return err
	}
	if err := w.textHeader(hMessageID, p.MessageID); err != nil {
		return err
	}
	w.octetHeader(hStatus, byte(p.Status))
	w.octetHeader(hRetrieveStatus, p.RetrieveStatus)
	if err := w.stringHeader(hRetrieveText, p.RetrieveText); err != nil {
		return err
	}
	w.octetHeader(hReportAllowed, p.ReportAllowed)
	return w.textHeader(hContentLocation, p.ContentLocation)
}

func encodeBody(w *writer, p *PDU) error {
	w.byte(hContentType)
	if err := w.contentType(p.ContentType); err != nil {
		return fmt.Errorf("mms: content type: %w", err)
	}
	if IsMultipart(p.ContentType.Media) {
		return w.multipart(p.Parts)
	}
	for _, part := range p.Parts {
		w.b = append(w.b, part.Data...)
	}
	return nil
}
