// Package pdu decodes and encodes SMS PDUs (3GPP TS 23.040 TPDUs in the
// PDU-mode framing of 3GPP TS 27.005) for the bubbled SMS connector.
//
// It is built on github.com/warthog618/sms v0.3.0 (7-bit packing, GSM 7-bit
// character tables, UDH parsing, semi-octet digits, TPDU marshalling and
// segmentation) and neutralises that library's known bugs from the outside;
// see README.md. The framing of received PDUs (field offsets, lengths,
// timestamps, addresses) is done here so that decoding is lenient in the same
// places as Gammu (trailing padding, PI=0xFF status reports, bogus TP-UDL)
// while truncated or malformed PDUs are still rejected with a clear error.
//
// All functions are pure and safe for concurrent use.
package pdu

import (
	"errors"
	"fmt"
	"time"
)

// Type is the kind of a TPDU, taken from its TP-MTI bits.
type Type int

const (
	// Deliver is an SMS-DELIVER (TP-MTI 00): a message received from the network.
	Deliver Type = iota
	// Submit is an SMS-SUBMIT (TP-MTI 01): a message sent by the mobile, also
	// what +CMGR/+CMGL return for messages stored as sent/unsent.
	Submit
	// StatusReport is an SMS-STATUS-REPORT (TP-MTI 10).
	StatusReport
)

// String returns the 3GPP name of the TPDU type.
func (t Type) String() string {
	switch t {
	case Deliver:
		return "SMS-DELIVER"
	case Submit:
		return "SMS-SUBMIT"
	case StatusReport:
		return "SMS-STATUS-REPORT"
	default:
		return fmt.Sprintf("Type(%d)", int(t))
	}
}

// Alphabet is the character set of the user data as given by TP-DCS.
type Alphabet int

const (
	// GSM7 is the GSM 7-bit default alphabet (with extension and, on receive,
	// national language tables). It is the zero value, which is also what
	// TS 23.038 says to assume for reserved coding groups.
	GSM7 Alphabet = iota
	// UCS2 is UCS-2/UTF-16BE; surrogate pairs are joined when decoding.
	UCS2
	// EightBit is binary data (also used for compressed user data, which
	// this package does not decompress).
	EightBit
)

// String returns a short name of the alphabet.
func (a Alphabet) String() string {
	switch a {
	case GSM7:
		return "gsm7"
	case UCS2:
		return "ucs2"
	case EightBit:
		return "8bit"
	default:
		return fmt.Sprintf("Alphabet(%d)", int(a))
	}
}

// Message is one decoded TPDU (any direction).
type Message struct {
	Type       Type      // Deliver, Submit, StatusReport
	SMSC       string    // "+4477..." / "" when absent
	Address    string    // OA / DA / RA: "+E164" for international TOA (0x91), national digits as is, alphanumeric decoded text
	TOA        byte      // type of address octet, e.g. 0x91, 0x81, 0xD0
	FirstOctet byte      // the TPDU's first octet (TP-MTI, TP-UDHI, TP-SRR/TP-SRI, ...)
	MR         int       // message reference (Submit, StatusReport)
	PID, DCS   byte      // TP-PID and TP-DCS
	SCTS       time.Time // with the PDU's offset; zero for Submit
	Discharge  time.Time // status reports
	Status     byte      // status reports (TP-ST)
	Alphabet   Alphabet  // GSM7, UCS2, EightBit
	Class      int       // -1 when none
	Concat     *Concat   // nil unless part of a concatenated message
	UDH        []byte    // raw UDH including UDHL, nil when none
	Text       string    // decoded text (GSM7/UCS2) of THIS part
	Data       []byte    // 8-bit user data (after UDH)

	// raw keeps the undecoded user data of this part so that Join can
	// repair characters split across parts by other senders (a UTF-16
	// surrogate pair or a GSM 7-bit escape sequence). It is nil for
	// messages built by hand; Join then uses Text.
	raw *rawText
}

// Concat is the concatenation information element (IEI 0x00 or 0x08).
type Concat struct {
	Ref     uint16 // concatenated short message reference number
	Total   uint8  // maximum number of short messages in the group
	Seq     uint8  // sequence number of this part, starting at 1
	RefBits int    // 8 (IEI 0x00) or 16 (IEI 0x08)
}

// SubmitOptions controls EncodeSubmit. The zero value sends a single-part
// message without a status report request through the SIM's SMSC.
type SubmitOptions struct {
	StatusReport bool          // TP-SRR
	MaxParts     int           // 0 = no limit; more parts than this -> ErrTooLong (wrapped, says how many parts it needed)
	NextRef      func() uint16 // concat reference source (persisted counter in caller); required when >1 part; refs are 8-bit (low byte) unless Ref16 set
	Ref16        bool          // use the 16-bit concatenation IE (0x08) instead of the 8-bit one (0x00)
	SMSC         string        // "" -> "00" (use SIM's SMSC)
}

// Part is one SMS-SUBMIT ready for AT+CMGS in PDU mode.
type Part struct {
	Hex     string // UPPER-CASE PDU-mode hex (SMSC field + TPDU) for AT+CMGS=<TPDULen>
	TPDULen int    // length of the TPDU in octets, without the SMSC field
	Seq     int    // 1-based part number
	Total   int    // number of parts of the message
}

// ErrTooLong is returned (wrapped) by EncodeSubmit when the text needs more
// parts than SubmitOptions.MaxParts allows.
var ErrTooLong = errors.New("pdu: message too long")
