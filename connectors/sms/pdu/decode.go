package pdu

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/warthog618/sms/encoding/gsm7"
	"github.com/warthog618/sms/encoding/gsm7/charset"
	"github.com/warthog618/sms/encoding/pdumode"
	"github.com/warthog618/sms/encoding/semioctet"
	"github.com/warthog618/sms/encoding/tpdu"
)

// Limits from 3GPP TS 23.040.
const (
	maxAddrDigits   = 20  // TP-OA/TP-DA/TP-RA: at most 10 octets of semi-octets
	maxSMSCOctets   = 11  // RP SC address: TOA + 10 octets
	maxUDOctets     = 140 // TP-UD
	maxUDSeptets    = 160 // TP-UD in the 7-bit alphabet
	ieiConcat8      = 0x00
	ieiConcat16     = 0x08
	ieiNatSingle    = 0x24 // national language single shift (TS 23.040 9.2.3.24.15)
	ieiNatLocking   = 0x25 // national language locking shift (TS 23.040 9.2.3.24.16)
	foUDHI          = 0x40
	foSRR           = 0x20
	esc             = 0x1b
	tonInternat     = 1
	tonAlphanumeric = 5
)

// rawText is the undecoded text of one part, kept for Join.
type rawText struct {
	units   []uint16 // UCS-2 code units (UCS2)
	septets []byte   // GSM 7-bit septets (GSM7)
	locking int      // national language locking shift table (0 = default)
	single  int      // national language single shift table (0 = default)
}

// decodeError is the error type of Decode: where decoding stopped and why.
type decodeError struct {
	field string
	msg   string
}

func (e *decodeError) Error() string {
	if e.field == "" {
		return "pdu: malformed PDU: " + e.msg
	}
	return "pdu: malformed PDU at " + e.field + ": " + e.msg
}

func malformed(field, format string, args ...any) error {
	return &decodeError{field: field, msg: fmt.Sprintf(format, args...)}
}

// Decode decodes one PDU given as hex (upper or lower case; surrounding
// white space is ignored). hasSMSC says whether the PDU starts with the SMSC
// address field, as in AT+CMGR/+CMGL/+CMT output in PDU mode; use false for a
// bare TPDU.
//
// The message type is taken from TP-MTI, so PDUs read back from SIM storage
// decode as SMS-SUBMIT when they are outgoing messages. Decoding is lenient
// like Gammu: octets after the user data (e.g. FF padding up to the +CMGR
// length) are ignored, a status report's TP-PI of 0xFF is treated as padding,
// and a TP-UDL larger than any valid user data is taken to mean "whatever
// is present". A PDU whose user data is shorter than a valid TP-UDL, whose
// fields are truncated or that is not hex is rejected with an error that
// names the field.
func Decode(hexPDU string, hasSMSC bool) (*Message, error) {
	s := strings.TrimSpace(hexPDU)
	if len(s)%2 != 0 {
		return nil, malformed("", "odd number of hex digits (%d); check the modem is in PDU mode (AT+CMGF=0)", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, malformed("", "not hexadecimal (%v); check the modem is in PDU mode (AT+CMGF=0)", err)
	}
	if len(b) == 0 {
		return nil, malformed("", "empty PDU")
	}
	m := &Message{Class: -1}
	if hasSMSC {
		n, err := decodeSMSC(b, m)
		if err != nil {
			return nil, err
		}
		b = b[n:]
	}
	if err := decodeTPDU(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeSMSC decodes the PDU-mode SMSC field and returns its length.
func decodeSMSC(b []byte, m *Message) (int, error) {
	l := int(b[0])
	if l == 0 {
		return 1, nil
	}
	if l > maxSMSCOctets {
		return 0, malformed("SMSC address", "length %d octets exceeds %d (is the PDU a bare TPDU without SMSC field?)", l, maxSMSCOctets)
	}
	var a pdumode.SMSCAddress
	n, err := a.UnmarshalBinary(b)
	if err != nil {
		return 0, malformed("SMSC address", "truncated: needs %d octets, %d present", l+1, len(b))
	}
	m.SMSC = formatNumber(a.TOA, a.Addr)
	return n, nil
}

// formatNumber adds "+" to international numbers.
func formatNumber(toa byte, digits string) string {
	if (toa>>4)&0x07 == tonInternat && digits != "" {
		return "+" + digits
	}
	return digits
}

// decodeTPDU decodes the TPDU, choosing its layout by TP-MTI.
func decodeTPDU(b []byte, m *Message) error {
	if len(b) == 0 {
		return malformed("TP-MTI", "TPDU is empty")
	}
	fo := b[0]
	m.FirstOctet = fo
	switch fo & 0x03 {
	case 0:
		m.Type = Deliver
		return decodeDeliver(b, m)
	case 1:
		m.Type = Submit
		return decodeSubmit(b, m)
	case 2:
		m.Type = StatusReport
		return decodeStatusReport(b, m)
	default:
		return malformed("TP-MTI", "reserved message type 3 (first octet 0x%02X)", fo)
	}
}

// need reports an error unless b has n octets from off.
func need(b []byte, off, n int, field string) error {
	if len(b) < off+n {
		return malformed(field, "truncated: needs %d octets at offset %d, %d present", n, off, max(len(b)-off, 0))
	}
	return nil
}

func decodeDeliver(b []byte, m *Message) error {
	off := 1
	n, err := decodeAddress(b[off:], "TP-OA", m)
	if err != nil {
		return err
	}
	off += n
	if err := need(b, off, 2+7+1, "TP-PID/TP-DCS/TP-SCTS/TP-UDL"); err != nil {
		return err
	}
	m.PID, m.DCS = b[off], b[off+1]
	off += 2
	if m.SCTS, err = decodeTimestamp(b[off:off+7], "TP-SCTS"); err != nil {
		return err
	}
	off += 7
	return decodeUserData(b[off:], m)
}

func decodeSubmit(b []byte, m *Message) error {
	if err := need(b, 1, 1, "TP-MR"); err != nil {
		return err
	}
	m.MR = int(b[1])
	off := 2
	n, err := decodeAddress(b[off:], "TP-DA", m)
	if err != nil {
		return err
	}
	off += n
	if err := need(b, off, 2, "TP-PID/TP-DCS"); err != nil {
		return err
	}
	m.PID, m.DCS = b[off], b[off+1]
	off += 2
	switch (m.FirstOctet >> 3) & 0x03 {
	case 0: // no TP-VP
	case 2: // relative
		off++
	default: // enhanced or absolute: 7 octets
		off += 7
	}
	if err := need(b, off, 1, "TP-UDL"); err != nil {
		return err
	}
	return decodeUserData(b[off:], m)
}

func decodeStatusReport(b []byte, m *Message) error {
	if err := need(b, 1, 1, "TP-MR"); err != nil {
		return err
	}
	m.MR = int(b[1])
	off := 2
	n, err := decodeAddress(b[off:], "TP-RA", m)
	if err != nil {
		return err
	}
	off += n
	if err := need(b, off, 7+7+1, "TP-SCTS/TP-DT/TP-ST"); err != nil {
		return err
	}
	if m.SCTS, err = decodeTimestamp(b[off:off+7], "TP-SCTS"); err != nil {
		return err
	}
	off += 7
	if m.Discharge, err = decodeTimestamp(b[off:off+7], "TP-DT"); err != nil {
		return err
	}
	off += 7
	m.Status = b[off]
	off++
	// Optional TP-PI and what it announces. 0xFF is FF padding (seen after
	// +CMGR on real modems), not a parameter indicator; a truncated optional
	// part is ignored like Gammu does, the mandatory part is what matters.
	if off >= len(b) || b[off] == 0xFF {
		return nil
	}
	pi := b[off]
	off++
	for ext := pi; ext&0x80 != 0 && off < len(b); off++ { // TP-PI extension octets
		ext = b[off]
	}
	if pi&0x01 != 0 {
		if off >= len(b) {
			return nil
		}
		m.PID = b[off]
		off++
	}
	if pi&0x02 != 0 {
		if off >= len(b) {
			return nil
		}
		m.DCS = b[off]
		off++
	}
	if pi&0x04 == 0 || off >= len(b) {
		alpha, class, _ := dcsInfo(m.DCS)
		m.Alphabet, m.Class = alpha, class
		return nil
	}
	if err := decodeUserData(b[off:], m); err != nil {
		// The report itself is intact; drop the broken optional text.
		m.UDH, m.Concat, m.Text, m.Data, m.raw = nil, nil, "", nil, nil
	}
	return nil
}

// decodeAddress decodes TP-OA/TP-DA/TP-RA into m and returns its length.
func decodeAddress(b []byte, field string, m *Message) (int, error) {
	if len(b) < 2 {
		return 0, malformed(field, "truncated: needs 2 octets, %d present", len(b))
	}
	l := int(b[0]) // useful semi-octets
	toa := b[1]
	if l > maxAddrDigits {
		return 0, malformed(field, "address length %d semi-octets exceeds %d", l, maxAddrDigits)
	}
	ol := (l + 1) / 2
	if len(b) < 2+ol {
		return 0, malformed(field, "truncated: address needs %d octets, %d present", ol, len(b)-2)
	}
	v := b[2 : 2+ol]
	m.TOA = toa
	if (toa>>4)&0x07 == tonAlphanumeric {
		septets := gsm7.Unpack7Bit(v, 0)
		if n := l * 4 / 7; len(septets) > n {
			septets = septets[:n]
		}
		text, _ := gsm7.Decode(septets) // non-strict: never fails
		m.Address = string(text)
		return 2 + ol, nil
	}
	digits := make([]byte, ol)
	copy(digits, v)
	if l%2 == 1 {
		// The fill nibble must be F, but some senders put 0 there and the
		// library then rejects the address: force it.
		digits[ol-1] |= 0xF0
	}
	d, _, err := semioctet.Decode(make([]byte, l), digits)
	if err != nil {
		return 0, malformed(field, "bad address digits: %v", err)
	}
	m.Address = formatNumber(toa, string(d))
	return 2 + ol, nil
}

// decodeTimestamp decodes a 7-octet TP-SCTS/TP-DT/absolute TP-VP.
// Two-digit years 90-99 are 19xx, 00-89 are 20xx. The time zone is read
// leniently: a units nibble above 9 is used as is (oFono does the same).
func decodeTimestamp(b []byte, field string) (time.Time, error) {
	var f [6]int
	for i := range 6 {
		lo, hi := b[i]&0x0F, b[i]>>4
		if lo > 9 || hi > 9 {
			return time.Time{}, malformed(field, "octet %d (0x%02X) is not BCD", i+1, b[i])
		}
		f[i] = int(lo)*10 + int(hi)
	}
	year := 2000 + f[0]
	if f[0] >= 90 {
		year = 1900 + f[0]
	}
	quarters := int(b[6]&0x07)*10 + int(b[6]>>4)
	if b[6]&0x08 != 0 {
		quarters = -quarters
	}
	loc := time.UTC
	if quarters != 0 {
		loc = time.FixedZone("", quarters*15*60)
	}
	mon, day, hour, minute, sec := f[1], f[2], f[3], f[4], f[5]
	if mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		// A well-formed but impossible date (seen as all zeros on some
		// modems): not worth losing the message for.
		return time.Time{}, nil
	}
	return time.Date(year, time.Month(mon), day, hour, minute, sec, 0, loc), nil
}

// dcsInfo interprets TP-DCS per TS 23.038 section 4. Reserved coding groups
// are read as the GSM 7-bit default alphabet, as TS 23.038 requires.
func dcsInfo(dcs byte) (alpha Alphabet, class int, compressed bool) {
	d := tpdu.DCS(dcs)
	class = -1
	if c, err := d.Class(); err == nil && c != tpdu.MClassUnknown {
		class = int(c)
	}
	a, err := d.Alphabet()
	if err != nil {
		return GSM7, class, false
	}
	compressed = d.Compressed()
	switch {
	case compressed, a == tpdu.Alpha8Bit:
		return EightBit, class, compressed
	case a == tpdu.AlphaUCS2:
		return UCS2, class, false
	default:
		return GSM7, class, false
	}
}

// decodeUserData decodes TP-UDL and TP-UD (b starts at TP-UDL) into m.
func decodeUserData(b []byte, m *Message) error {
	if len(b) < 1 {
		return malformed("TP-UDL", "missing")
	}
	udl := int(b[0])
	data := b[1:]
	alpha, class, _ := dcsInfo(m.DCS)
	m.Alphabet, m.Class = alpha, class
	septets := alpha == GSM7
	var octets int
	switch {
	case septets && udl <= maxUDSeptets:
		octets = (udl*7 + 7) / 8
	case !septets && udl <= maxUDOctets:
		octets = udl
	default:
		// A TP-UDL no valid message can have is a broken length field, not a
		// truncated message: decode the user data that is there
		// (python-gsmmodem does the same).
		octets = min(len(data), maxUDOctets)
		udl = octets
		if septets {
			udl = octets * 8 / 7
		}
	}
	if octets > len(data) {
		return malformed("TP-UD", "user data truncated: TP-UDL %d needs %d octets, %d present", udl, octets, len(data))
	}
	data = data[:octets] // anything after the user data is padding
	hdr := 0
	natLocking, natSingle := 0, 0
	if m.FirstOctet&foUDHI != 0 {
		if udl == 0 {
			return malformed("TP-UDH", "TP-UDHI is set but TP-UDL is 0")
		}
		udhl := int(data[0])
		if udhl+1 > len(data) {
			return malformed("TP-UDH", "header length %d exceeds the %d octets of user data", udhl, len(data)-1)
		}
		raw := append([]byte(nil), data[:udhl+1]...)
		var h tpdu.UserDataHeader
		if _, err := h.UnmarshalBinary(raw); err != nil {
			return malformed("TP-UDH", "bad information element: %v", err)
		}
		m.UDH = raw
		m.Concat = concatInfo(h)
		natLocking, natSingle = nationalTables(h)
		hdr = udhl + 1
	}
	switch alpha {
	case GSM7:
		hdrSeptets := (hdr*8 + 6) / 7
		n := udl - hdrSeptets
		if n < 0 {
			return malformed("TP-UDL", "%d septets do not cover the %d-octet header", udl, hdr)
		}
		fill := hdrSeptets*7 - hdr*8
		s := gsm7.Unpack7Bit(data[hdr:], fill)
		if len(s) > n {
			s = s[:n]
		}
		m.raw = &rawText{septets: s, locking: natLocking, single: natSingle}
		m.Text = decodeSeptets(s, natLocking, natSingle)
	case UCS2:
		u := data[hdr:]
		u = u[:len(u)&^1] // an odd trailing octet cannot be a character
		units := make([]uint16, len(u)/2)
		for i := range units {
			units[i] = uint16(u[2*i])<<8 | uint16(u[2*i+1])
		}
		m.raw = &rawText{units: units}
		m.Text = string(utf16.Decode(units))
	default:
		m.Data = append([]byte{}, data[hdr:]...)
	}
	return nil
}

// concatInfo returns the concatenation IE, or nil when there is none or it
// is invalid (TS 23.040 9.2.3.24.1: such an IE is ignored).
func concatInfo(h tpdu.UserDataHeader) *Concat {
	var c *Concat
	for _, ie := range h {
		switch {
		case ie.ID == ieiConcat8 && len(ie.Data) == 3:
			c = &Concat{Ref: uint16(ie.Data[0]), Total: ie.Data[1], Seq: ie.Data[2], RefBits: 8}
		case ie.ID == ieiConcat16 && len(ie.Data) == 4:
			c = &Concat{Ref: uint16(ie.Data[0])<<8 | uint16(ie.Data[1]), Total: ie.Data[2], Seq: ie.Data[3], RefBits: 16}
		}
	}
	if c == nil || c.Total == 0 || c.Seq == 0 || c.Seq > c.Total {
		return nil
	}
	return c
}

// nationalTables returns the national language locking and single shift
// tables named by the UDH, using the IEIs of TS 23.040 (0x25 and 0x24).
// warthog618/sms v0.3.0 looks for decimal 25/24 (0x19/0x18, which are WVG
// IEs) instead, so the library's own lookup is not used.
func nationalTables(h tpdu.UserDataHeader) (locking, single int) {
	for _, ie := range h {
		if len(ie.Data) != 1 {
			continue
		}
		switch ie.ID {
		case ieiNatLocking:
			locking = int(ie.Data[0])
		case ieiNatSingle:
			single = int(ie.Data[0])
		}
	}
	return locking, single
}

// decodeSeptets maps GSM 7-bit septets to text with the given national
// language tables (0 = default). Unknown septets become a space and an
// unknown escape sequence the base character, as TS 23.038 suggests.
func decodeSeptets(s []byte, locking, single int) string {
	d := gsm7.NewDecoder().WithCharset(lockingTable(locking)).WithExtCharset(singleShiftTable(single))
	text, _ := d.Decode(s) // non-strict: never fails
	return string(text)
}

// National language tables, built once at init. warthog618/sms generates
// its tables lazily into package variables without locking, which races
// when two goroutines decode at once; building every table here, before any
// goroutine runs, leaves the library only reading them.
var (
	lockingTables = map[int]charset.Decoder{}
	singleTables  = map[int]charset.Decoder{}
)

func init() {
	charset.DefaultEncoder()
	charset.DefaultExtEncoder()
	for nli := charset.Default; nli < charset.End; nli++ {
		lockingTables[nli] = charset.NewDecoder(nli)
		singleTables[nli] = charset.NewExtDecoder(nli)
	}
	// The Portuguese single shift table of v0.3.0 lacks 0x1F 'Ê'
	// (TS 23.038 A.2.3); use a corrected copy.
	base := singleTables[charset.Portuguese]
	pt := make(charset.Decoder, len(base)+1)
	for k, v := range base {
		pt[k] = v
	}
	pt[0x1F] = 'Ê'
	singleTables[charset.Portuguese] = pt
}

// lockingTable returns the locking shift table for a national language
// identifier; unknown identifiers get the default alphabet (TS 23.038 6.2.1.2.4).
func lockingTable(nli int) charset.Decoder {
	if t, ok := lockingTables[nli]; ok {
		return t
	}
	return lockingTables[charset.Default]
}

// singleShiftTable returns the single shift table for a national language
// identifier; unknown identifiers get the default extension table.
func singleShiftTable(nli int) charset.Decoder {
	if t, ok := singleTables[nli]; ok {
		return t
	}
	return singleTables[charset.Default]
}
