package pdu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/warthog618/sms/encoding/pdumode"
	"github.com/warthog618/sms/encoding/tpdu"
	"github.com/warthog618/sms/encoding/ucs2"
)

// fixedRef is a tpdu.Counter that always returns the same reference.
type fixedRef int

func (r fixedRef) Count() int { return int(r) }

// EncodeSubmit builds the SMS-SUBMIT part(s) that send text to the number to
// ("+E164" for international numbers, otherwise national digits).
//
// The text is encoded in the GSM 7-bit default alphabet with its extension
// table when every character is in it (extension characters take two
// septets: 160 septets fit one part, 153 per part when concatenated),
// otherwise in UCS-2 (70 units, 67 per part). National language tables are
// never used on send. UTF-16 surrogate pairs and GSM escape sequences are
// never split across parts. TP-MR is 00 (the modem assigns the reference
// returned in +CMGS) and no TP-VP is sent (the SMSC's default applies).
//
// A multi-part message takes its concatenation reference from opts.NextRef,
// which is called once per multi-part message and must be backed by a
// counter the caller persists, so that two long messages to the same
// recipient never share a reference. If the text needs more than
// opts.MaxParts parts, EncodeSubmit returns an error wrapping ErrTooLong and
// NextRef is not called.
func EncodeSubmit(to string, text string, opts SubmitOptions) ([]Part, error) {
	da, err := destination(to)
	if err != nil {
		return nil, err
	}
	smsc, err := smscAddress(opts.SMSC)
	if err != nil {
		return nil, err
	}
	t, err := tpdu.NewSubmit()
	if err != nil {
		return nil, fmt.Errorf("pdu: build SMS-SUBMIT: %w", err)
	}
	t.DA = da
	if opts.StatusReport {
		t.FirstOctet |= foSRR
	}
	// No national tables are passed, so this is GSM 7-bit (default table +
	// extension) when possible and UCS-2 otherwise. The library would
	// write national language IEs with the wrong IEIs (0x18/0x19).
	ud, _, alpha := tpdu.EncodeUserData([]byte(text))
	if alpha == tpdu.Alpha7Bit && strings.ContainsRune(text, esc) {
		// The library maps U+001B to the escape septet, which a receiver
		// reads as the start of an extension character: send UCS-2.
		ud, alpha = ucs2.Encode([]rune(text)), tpdu.AlphaUCS2
	}
	dcs, err := tpdu.DCS(0).WithAlphabet(alpha)
	if err != nil {
		return nil, fmt.Errorf("pdu: build SMS-SUBMIT: %w", err)
	}
	t.SetDCS(byte(dcs))

	segOpts := []tpdu.SegmentationOption{tpdu.WithConcatRef(fixedRef(0))}
	if opts.Ref16 {
		segOpts = append(segOpts, tpdu.With16BitConcatRef)
	}
	segs := t.Segment(ud, segOpts...)
	if len(segs) == 0 { // empty text: one empty message
		segs = []tpdu.TPDU{*t}
	}
	n := len(segs)
	if opts.MaxParts > 0 && n > opts.MaxParts {
		return nil, fmt.Errorf("%w: the text needs %d SMS parts but at most %d are allowed; shorten the message or raise the line's SMS part limit", ErrTooLong, n, opts.MaxParts)
	}
	if n > 1 {
		if opts.NextRef == nil {
			return nil, errors.New("pdu: SubmitOptions.NextRef is required for a multi-part message")
		}
		setConcatRef(segs, opts.NextRef())
	}
	parts := make([]Part, n)
	for i := range segs {
		b, err := segs[i].MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("pdu: encode part %d/%d: %w", i+1, n, err)
		}
		h, err := (&pdumode.PDU{SMSC: smsc, TPDU: b}).MarshalHexString()
		if err != nil {
			return nil, fmt.Errorf("pdu: encode part %d/%d: %w", i+1, n, err)
		}
		// The library writes lower-case hex, which some firmware refuses.
		parts[i] = Part{Hex: strings.ToUpper(h), TPDULen: len(b), Seq: i + 1, Total: n}
	}
	return parts, nil
}

// setConcatRef writes ref into the concatenation IE of every segment: the
// low byte for the 8-bit IE, all 16 bits for the 16-bit one.
func setConcatRef(segs []tpdu.TPDU, ref uint16) {
	for i := range segs {
		for j, ie := range segs[i].UDH {
			data := append([]byte(nil), ie.Data...)
			switch {
			case ie.ID == ieiConcat8 && len(data) == 3:
				data[0] = byte(ref)
			case ie.ID == ieiConcat16 && len(data) == 4:
				data[0], data[1] = byte(ref>>8), byte(ref)
			default:
				continue
			}
			segs[i].UDH[j].Data = data
		}
	}
}

// parseNumber splits "+digits" or "digits" into the TOA and the digits.
func parseNumber(s, what string) (toa byte, digits string, err error) {
	toa = 0x81 // unknown type of number, ISDN numbering plan
	digits = s
	if strings.HasPrefix(s, "+") {
		toa = 0x91 // international
		digits = s[1:]
	}
	if digits == "" {
		return 0, "", fmt.Errorf("pdu: %s %q has no digits; give it as +E164 or national digits", what, s)
	}
	if len(digits) > maxAddrDigits {
		return 0, "", fmt.Errorf("pdu: %s %q has %d digits, at most %d fit an SMS address", what, s, len(digits), maxAddrDigits)
	}
	for _, c := range digits {
		if (c < '0' || c > '9') && c != '*' && c != '#' {
			return 0, "", fmt.Errorf("pdu: %s %q contains %q; use only digits with an optional leading +", what, s, c)
		}
	}
	return toa, digits, nil
}

// destination builds TP-DA from a phone number.
func destination(to string) (tpdu.Address, error) {
	toa, digits, err := parseNumber(to, "recipient")
	if err != nil {
		return tpdu.Address{}, err
	}
	return tpdu.Address{TOA: toa, Addr: digits}, nil
}

// smscAddress builds the PDU-mode SMSC field; "" gives the empty field "00".
func smscAddress(s string) (pdumode.SMSCAddress, error) {
	var a pdumode.SMSCAddress
	if s == "" {
		return a, nil
	}
	toa, digits, err := parseNumber(s, "SMSC")
	if err != nil {
		return a, err
	}
	a.TOA, a.Addr = toa, digits
	return a, nil
}
