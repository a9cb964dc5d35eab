package at

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	wat "github.com/warthog618/modem/at"
)

// ErrSendUnknown reports that the body of a two-step command (+CMGS) was
// handed to the modem but no answer came back in time: the modem may or may
// not have sent it. Re-sending such a part could text the recipient twice,
// so the caller decides, ideally by asking the user.
var ErrSendUnknown = errors.New("the modem did not confirm the SMS in time: it may or may not have been sent")

// ErrTimeout reports that the modem did not answer a command in time. For a
// +CMGS it means the message text never reached the modem, so nothing was
// sent and retrying is safe.
var ErrTimeout = errors.New("the modem did not answer in time")

// ErrClosed reports that the modem port is closed (unplugged, Close called
// or never opened).
var ErrClosed = errors.New("the modem port is closed")

// ErrUnresponsive reports that the modem did not answer a resynchronisation
// probe after an earlier timeout; the command was not sent.
var ErrUnresponsive = errors.New("the modem stopped answering (check power, cable and that no other program uses the port)")

// CMSError is a "+CMS ERROR: <code>" final result (3GPP TS 27.005 §3.2.5):
// codes 0-127 are RP causes from the network (TS 24.011 Annex E-2), 128-255
// TP-FCS values (TS 23.040 §9.2.3.22), 300-500 errors of the modem itself.
type CMSError struct {
	// Code is the numeric code, or -1 when the modem answered with text
	// only (verbose +CMEE=2 mode, or +CMEE=1 refused).
	Code int
	// Text is the modem's text ("" in numeric mode).
	Text string
}

// cmsTemporary lists CMS codes after which retrying the same route later is
// reasonable: network congestion and outages, SIM busy, timeouts. It lives
// here, with the type, because it is protocol knowledge (TS 24.011 Annex E
// marks these causes temporary; 314, 331, 332 and 500 are transient modem
// states): every user of CMSError.Temporary, not only the SMS outbox, wants
// the same answer. What an outbox does about a temporary refusal (how often,
// how long) is policy and stays with the outbox.
var cmsTemporary = map[int]bool{
	27:  true, // destination out of service
	38:  true, // network out of order
	41:  true, // temporary failure
	42:  true, // congestion
	47:  true, // resources unavailable, unspecified
	314: true, // SIM busy
	331: true, // no network service
	332: true, // network timeout
	500: true, // unknown error (most modems use it for transient radio failures)
}

// cmsNames gives operators a readable reason next to the number.
var cmsNames = map[int]string{
	1:   "unassigned number",
	8:   "operator determined barring",
	10:  "call barred",
	21:  "short message transfer rejected",
	27:  "destination out of service",
	28:  "unidentified subscriber",
	29:  "facility rejected",
	30:  "unknown subscriber",
	38:  "network out of order",
	41:  "temporary failure",
	42:  "congestion",
	47:  "resources unavailable",
	50:  "requested facility not subscribed",
	69:  "requested facility not implemented",
	96:  "invalid mandatory information",
	111: "protocol error",
	300: "ME failure",
	302: "operation not allowed",
	303: "operation not supported",
	304: "invalid PDU mode parameter",
	310: "SIM not inserted",
	311: "SIM PIN required",
	313: "SIM failure",
	314: "SIM busy",
	316: "SIM PUK required",
	320: "memory failure",
	321: "invalid memory index",
	322: "memory full",
	330: "SMSC address unknown",
	331: "no network service",
	332: "network timeout",
	340: "no +CNMA acknowledgement expected",
	500: "unknown error",
}

// Error implements error.
func (e *CMSError) Error() string {
	name := cmsNames[e.Code]
	switch {
	case e.Code < 0:
		return "+CMS ERROR: " + e.Text
	case name != "":
		return fmt.Sprintf("+CMS ERROR: %d (%s)", e.Code, name)
	case e.Text != "":
		return fmt.Sprintf("+CMS ERROR: %d (%s)", e.Code, e.Text)
	default:
		return fmt.Sprintf("+CMS ERROR: %d", e.Code)
	}
}

// Temporary reports whether the failure is likely transient (network
// congestion or outage, SIM busy), so the same route may be retried later
// with backoff. Permanent examples: 1 unassigned number, 21 rejected,
// 96 invalid mandatory information.
func (e *CMSError) Temporary() bool { return cmsTemporary[e.Code] }

// CMEError is a "+CME ERROR: <code>" final result (3GPP TS 27.007 §9.2),
// e.g. 10 SIM not inserted, 11 SIM PIN required, 16 incorrect password.
type CMEError struct {
	// Code is the numeric code, or -1 in verbose mode.
	Code int
	// Text is the modem's text ("" in numeric mode).
	Text string
}

// Error implements error.
func (e *CMEError) Error() string {
	if e.Code < 0 {
		return "+CME ERROR: " + e.Text
	}
	return "+CME ERROR: " + strconv.Itoa(e.Code)
}

// convertError turns the string-typed errors of warthog618/modem/at into
// ours, so callers classify them with errors.Is/As.
func convertError(err error) error {
	var cms wat.CMSError
	var cme wat.CMEError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &cms):
		code, text := parseErrorCode(string(cms))
		return &CMSError{Code: code, Text: text}
	case errors.As(err, &cme):
		code, text := parseErrorCode(string(cme))
		return &CMEError{Code: code, Text: text}
	case errors.Is(err, wat.ErrClosed):
		return ErrClosed
	case errors.Is(err, wat.ErrDeadlineExceeded):
		return ErrTimeout
	}
	return err
}

func parseErrorCode(s string) (int, string) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return n, ""
	}
	return -1, s
}

// IsPlainError reports a plain "ERROR" final result (a modem that refuses
// a command without a +CME/+CMS code, e.g. one it does not know).
func IsPlainError(err error) bool { return errors.Is(err, wat.ErrError) }

// IsRefusal reports that the modem answered err as a final result code
// (ERROR, +CME ERROR or +CMS ERROR): it understood the command and said
// no, as opposed to a timeout or a lost port.
func IsRefusal(err error) bool {
	var cms *CMSError
	var cme *CMEError
	return IsPlainError(err) || errors.As(err, &cms) || errors.As(err, &cme)
}

// CMECode returns the CME error code of err, or -1.
func CMECode(err error) int {
	var cme *CMEError
	if errors.As(err, &cme) {
		return cme.Code
	}
	return -1
}

// CMSCode returns the CMS error code of err, or -1.
func CMSCode(err error) int {
	var cms *CMSError
	if errors.As(err, &cms) {
		return cms.Code
	}
	return -1
}
