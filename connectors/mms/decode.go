package mms

import (
	"errors"
	"fmt"
	"time"
)

// Header field codes (OMA-MMS-ENC §7.4, with the 0x80 bit).
const (
	hBcc             = 0x81
	hCc              = 0x82
	hContentLocation = 0x83
	hContentType     = 0x84
	hDate            = 0x85
	hDeliveryReport  = 0x86
	hDeliveryTime    = 0x87
	hExpiry          = 0x88
	hFrom            = 0x89
	hClass           = 0x8A
	hMessageID       = 0x8B
	hMessageType     = 0x8C
	hVersion         = 0x8D
	hSize            = 0x8E
	hPriority        = 0x8F
	hReadReport      = 0x90
	hReportAllowed   = 0x91
	hResponseStatus  = 0x92
	hResponseText    = 0x93
	hSenderVisible   = 0x94
	hStatus          = 0x95
	hSubject         = 0x96
	hTo              = 0x97
	hTransactionID   = 0x98
	hRetrieveStatus  = 0x99
	hRetrieveText    = 0x9A
)

// ErrNotMMS reports bytes that do not start with X-Mms-Message-Type.
var ErrNotMMS = errors.New("not an MMS PDU: it does not start with X-Mms-Message-Type (0x8C)")

// DecodeError names the header a PDU failed in.
type DecodeError struct {
	Header byte // field code, 0 for the body
	Offset int
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Header == 0 {
		return fmt.Sprintf("mms: body at offset %d: %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("mms: header 0x%02X at offset %d: %v", e.Header, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode parses an MMS PDU as received over HTTP or carried in a WAP push.
// It is lenient where real MMSCs and phones are sloppy (unknown headers are
// skipped, header order is free apart from Message-Type first and
// Content-Type last, text without a final NUL at the end, BOMs) and strict
// where data would otherwise be lost or invented (truncated values, part
// lengths beyond the PDU).
func Decode(b []byte) (*PDU, error) {
	if len(b) < 2 || b[0] != hMessageType {
		return nil, ErrNotMMS
	}
	r := &reader{b: b}
	p := &PDU{}
	for r.left() > 0 {
		at := r.i
		h, _ := r.byte()
		if h < 0x80 {
			// Application header: token name, then a text value.
			r.i--
			_, _ = r.text()
			if _, err := r.text(); err != nil {
				return nil, &DecodeError{Header: h, Offset: at, Err: err}
			}
			continue
		}
		if h == hContentType {
			if err := p.decodeBody(r); err != nil {
				return nil, &DecodeError{Header: h, Offset: at, Err: err}
			}
			break
		}
		if err := p.decodeHeader(h, r); err != nil {
			return nil, &DecodeError{Header: h, Offset: at, Err: err}
		}
	}
	if _, ok := typeNames[p.Type]; !ok {
		return nil, fmt.Errorf("mms: unknown X-Mms-Message-Type 0x%02X", byte(p.Type))
	}
	return p, nil
}

func (p *PDU) decodeHeader(h byte, r *reader) (err error) {
	switch h {
	case hMessageType, hVersion, hPriority, hDeliveryReport, hReadReport, hReportAllowed,
		hResponseStatus, hStatus, hRetrieveStatus, hSenderVisible:
		var c byte
		if c, err = r.byte(); err == nil {
			p.setOctet(h, c)
		}
	case hTransactionID:
		p.TransactionID, err = r.text()
	case hMessageID:
		p.MessageID, err = r.text()
	case hContentLocation:
		p.ContentLocation, err = r.text()
	case hSubject:
		p.Subject, err = r.encodedString()
	case hResponseText:
		p.ResponseText, err = r.encodedString()
	case hRetrieveText:
		p.RetrieveText, err = r.encodedString()
	case hTo, hCc, hBcc:
		var s string
		if s, err = r.encodedString(); err == nil {
			p.addAddress(h, s)
		}
	case hFrom:
		err = p.decodeFrom(r)
	case hDate:
		var v uint64
		if v, err = r.longInt(); err == nil {
			p.Date = time.Unix(int64(v), 0).UTC()
		}
	case hSize:
		p.Size, err = r.integer()
	case hExpiry:
		p.Expiry, err = r.expiry()
	case hClass:
		p.Class, err = r.class()
	default:
		err = r.skipValue()
	}
	return err
}

func (p *PDU) setOctet(h, c byte) {
	switch h {
	case hMessageType:
		p.Type = MessageType(c)
	case hVersion:
		p.Version = Version(c)
	case hPriority:
		p.Priority = c
	case hDeliveryReport:
		p.DeliveryReport = c
	case hReadReport:
		p.ReadReport = c
	case hReportAllowed:
		p.ReportAllowed = c
	case hResponseStatus:
		p.ResponseStatus = ResponseStatus(c)
	case hStatus:
		p.Status = Status(c)
	case hRetrieveStatus:
		p.RetrieveStatus = c
	}
}

func (p *PDU) addAddress(h byte, s string) {
	switch h {
	case hTo:
		p.To = append(p.To, s)
	case hCc:
		p.Cc = append(p.Cc, s)
	default:
		p.Bcc = append(p.Bcc, s)
	}
}

func (p *PDU) decodeFrom(r *reader) error {
	n, err := r.valueLength()
	if err != nil {
		return err
	}
	v, err := r.sub(n)
	if err != nil {
		return err
	}
	tok, err := v.byte()
	if err != nil {
		return fmt.Errorf("From without address token: %w", err)
	}
	switch tok {
	case 0x80:
		p.From, err = v.encodedString()
		return err
	case 0x81:
		p.FromInsert = true
		return nil
	}
	return fmt.Errorf("From token 0x%02X is neither address-present (0x80) nor insert-address (0x81)", tok)
}

// expiry reads X-Mms-Expiry / Delivery-Time: Value-length, then 0x80 with
// a Date-value or 0x81 with delta seconds (either integer form: a
// hand-made vector used a short-int).
func (r *reader) expiry() (Expiry, error) {
	var e Expiry
	n, err := r.valueLength()
	if err != nil {
		return e, err
	}
	v, err := r.sub(n)
	if err != nil {
		return e, err
	}
	tok, err := v.byte()
	if err != nil {
		return e, err
	}
	secs, err := v.integer()
	if err != nil {
		return e, err
	}
	switch tok {
	case 0x80:
		e.At = time.Unix(int64(secs), 0).UTC()
	case 0x81:
		e.After = time.Duration(secs) * time.Second
	default:
		return e, fmt.Errorf("expiry token 0x%02X is neither absolute (0x80) nor relative (0x81)", tok)
	}
	return e, nil
}

func (r *reader) class() (string, error) {
	c, err := r.peek()
	if err != nil {
		return "", err
	}
	if c >= 0x80 {
		r.i++
		if int(c-0x80) < len(classNames) {
			return classNames[c-0x80], nil
		}
		return fmt.Sprintf("class-0x%02X", c), nil
	}
	return r.text()
}

// decodeBody reads the Content-Type (always the last header) and the body.
func (p *PDU) decodeBody(r *reader) error {
	ct, err := r.contentType()
	if err != nil {
		return err
	}
	p.ContentType = ct
	body := r.b[r.i:]
	r.i = len(r.b)
	if !IsMultipart(ct.Media) {
		if len(body) > 0 {
			p.Parts = []Part{{ContentType: ct, Data: body}}
		}
		return nil
	}
	p.Parts, err = decodeMultipart(body)
	return err
}
