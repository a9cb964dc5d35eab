package sms

import (
	"errors"

	"github.com/bubbled/bubbled/connectors/sms/at"
)

// The AT session's errors, kept under their old names in sms because
// callers (the bridge, the SMS transport) classify Line errors with them.
type (
	// CMSError is a "+CMS ERROR: <code>" final result; see at.CMSError.
	CMSError = at.CMSError
	// CMEError is a "+CME ERROR: <code>" final result; see at.CMEError.
	CMEError = at.CMEError
)

var (
	// ErrSendUnknown reports that a +CMGS part was handed to the modem but
	// no answer came back in time: the modem may or may not have sent it.
	// The Line never re-sends such a part by itself (that could text the
	// recipient twice); the caller decides, ideally by asking the user.
	ErrSendUnknown = at.ErrSendUnknown
	// ErrTimeout reports that the modem did not answer a command in time.
	// For a +CMGS it means the message text never reached the modem, so
	// nothing was sent and retrying is safe.
	ErrTimeout = at.ErrTimeout
	// ErrClosed reports that the modem port is closed (unplugged, Close
	// called or never opened).
	ErrClosed = at.ErrClosed
	// ErrUnresponsive reports that the modem did not answer a
	// resynchronisation probe after an earlier timeout; the command was not
	// sent.
	ErrUnresponsive = at.ErrUnresponsive
)

// ErrNotYet, returned (wrapped) by a Handler, says it cannot take this
// item yet but may take later ones meanwhile: the item stays pending and is
// handed again first, and later items are still offered. A login flow that
// waits for its number check uses it; a Handler that bridges messages must
// not take a later one while an earlier one waits, or it reorders them.
var ErrNotYet = errors.New("the handler cannot take this item yet")

// ErrNoPDUMode reports that the modem refused AT+CMGF=0: bubbled only speaks
// PDU mode, so such a modem cannot be used.
var ErrNoPDUMode = errors.New("the modem refused PDU mode (AT+CMGF=0); bubbled needs a modem that supports SMS PDU mode")

// ErrPUKRequired reports a SIM blocked after too many wrong PINs: it needs
// its PUK (enter it in a phone). The Line never tries a PIN on such a SIM.
var ErrPUKRequired = errors.New("the SIM is blocked and needs its PUK (unblock it in a phone); no PIN was tried")

// ErrNotOpen reports a call that needs Open first.
var ErrNotOpen = errors.New("the SMS line is not open")
