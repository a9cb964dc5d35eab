// Package mms decodes and encodes MMS PDUs (OMA-MMS-ENC 1.2/1.3 over the
// WSP encoding of WAP-230) and the WSP push that carries an MMS
// notification in an SMS. It is pure: no I/O, safe for concurrent use.
package mms

import (
	"fmt"
	"strings"
	"time"
)

// MessageType is X-Mms-Message-Type.
type MessageType byte

// Message types of OMA-MMS-ENC (the value octet).
const (
	SendReq         MessageType = 0x80
	SendConf        MessageType = 0x81
	NotificationInd MessageType = 0x82
	NotifyRespInd   MessageType = 0x83
	RetrieveConf    MessageType = 0x84
	AcknowledgeInd  MessageType = 0x85
	DeliveryInd     MessageType = 0x86
)

var typeNames = map[MessageType]string{
	SendReq: "m-send-req", SendConf: "m-send-conf", NotificationInd: "m-notification-ind",
	NotifyRespInd: "m-notifyresp-ind", RetrieveConf: "m-retrieve-conf", AcknowledgeInd: "m-acknowledge-ind",
	DeliveryInd: "m-delivery-ind",
}

// String returns the OMA name, e.g. "m-notification-ind".
func (t MessageType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MessageType(0x%02X)", byte(t))
}

// Version is X-Mms-MMS-Version as its octet: major in bits 4-6, minor in
// bits 0-3 (0x92 = 1.2).
type Version byte

// Version12 is MMS 1.2, what bubbled writes.
const Version12 Version = 0x92

// String returns "major.minor".
func (v Version) String() string { return fmt.Sprintf("%d.%d", (v>>4)&0x07, v&0x0F) }

// Status is X-Mms-Status (m-notifyresp-ind, m-delivery-ind).
type Status byte

// X-Mms-Status values.
const (
	StatusExpired       Status = 0x80
	StatusRetrieved     Status = 0x81
	StatusRejected      Status = 0x82
	StatusDeferred      Status = 0x83
	StatusUnrecognised  Status = 0x84
	StatusIndeterminate Status = 0x85
	StatusForwarded     Status = 0x86
	StatusUnreachable   Status = 0x87
)

var statusNames = [...]string{"expired", "retrieved", "rejected", "deferred", "unrecognised", "indeterminate", "forwarded", "unreachable"}

// String returns the OMA name of the status, e.g. "retrieved".
func (s Status) String() string {
	if s >= 0x80 && int(s-0x80) < len(statusNames) {
		return statusNames[s-0x80]
	}
	return fmt.Sprintf("Status(0x%02X)", byte(s))
}

// ResponseStatus is X-Mms-Response-Status of m-send-conf (0x80 = Ok).
type ResponseStatus byte

// ResponseOK is the only success value.
const ResponseOK ResponseStatus = 0x80

var responseNames = map[ResponseStatus]string{
	0x80: "ok", 0x81: "error-unspecified", 0x82: "error-service-denied", 0x83: "error-message-format-corrupt",
	0x84: "error-sending-address-unresolved", 0x85: "error-message-not-found", 0x86: "error-network-problem",
	0x87: "error-content-not-accepted", 0x88: "error-unsupported-message",
	0xC0: "transient-failure", 0xC1: "transient-sending-address-unresolved", 0xC2: "transient-message-not-found",
	0xC3: "transient-network-problem", 0xC4: "transient-partial-success",
	0xE0: "permanent-failure", 0xE1: "permanent-service-denied", 0xE2: "permanent-message-format-corrupt",
	0xE3: "permanent-sending-address-unresolved", 0xE4: "permanent-message-not-found",
	0xE5: "permanent-content-not-accepted", 0xE6: "permanent-reply-charging-limitations-not-met",
	0xE7: "permanent-reply-charging-request-not-accepted", 0xE8: "permanent-reply-charging-forwarding-denied",
	0xE9: "permanent-reply-charging-not-supported", 0xEA: "permanent-address-hiding-not-supported",
	0xEB: "permanent-lack-of-prepaid",
}

// String returns the OMA name, e.g. "permanent-message-format-corrupt".
func (s ResponseStatus) String() string {
	if n, ok := responseNames[s]; ok {
		return n
	}
	return fmt.Sprintf("ResponseStatus(0x%02X)", byte(s))
}

// Transient reports whether the MMSC asks to retry later (0xC0-0xDF, and
// the 1.0 network-problem code).
func (s ResponseStatus) Transient() bool { return s >= 0xC0 && s < 0xE0 || s == 0x86 }

// Expiry is X-Mms-Expiry: an absolute time or a delay from reception.
type Expiry struct {
	At    time.Time     // absolute token
	After time.Duration // relative token
}

// Deadline returns when a message received at recv expires (zero when no
// expiry was given).
func (e Expiry) Deadline(recv time.Time) time.Time {
	if !e.At.IsZero() {
		return e.At
	}
	if e.After > 0 {
		return recv.Add(e.After)
	}
	return time.Time{}
}

// PDU is one MMS PDU. Only the fields its type uses are set; zero means
// absent. Addresses keep their wire form ("+4477.../TYPE=PLMN"); see
// Number.
type PDU struct {
	Type            MessageType
	TransactionID   string
	Version         Version
	MessageID       string
	Date            time.Time
	From            string // "" with FromInsert = insert-address token
	FromInsert      bool
	To, Cc, Bcc     []string
	Subject         string
	Class           string // "personal", "advertisement", "informational", "auto" or a token
	Priority        byte   // 0x80 low, 0x81 normal, 0x82 high
	Size            uint64 // X-Mms-Message-Size
	Expiry          Expiry
	DeliveryReport  byte // 0x80 yes, 0x81 no
	ReadReport      byte
	ReportAllowed   byte
	ResponseStatus  ResponseStatus
	ResponseText    string
	Status          Status
	RetrieveStatus  byte
	RetrieveText    string
	ContentLocation string
	ContentType     ContentType
	// Parts of a multipart body, in wire order; a single-part body is one
	// Part with the PDU's content type.
	Parts []Part
}

// Part is one body part of a multipart MMS.
type Part struct {
	ContentType     ContentType
	ContentID       string // without "<>"
	ContentLocation string
	Data            []byte
}

// Text returns the part's data as UTF-8 (per its charset, BOM removed).
func (p Part) Text() string { return Decode8(p.ContentType.Charset, p.Data) }

// Number returns addr without its "/TYPE=..." suffix ("+4477/TYPE=PLMN"
// → "+4477").
func Number(addr string) string {
	if i := strings.Index(strings.ToUpper(addr), "/TYPE="); i >= 0 {
		return strings.TrimSpace(addr[:i])
	}
	return strings.TrimSpace(addr)
}

// PLMN returns the wire form of a phone number ("+4477/TYPE=PLMN").
func PLMN(number string) string { return number + "/TYPE=PLMN" }

var classNames = [...]string{"personal", "advertisement", "informational", "auto"}
