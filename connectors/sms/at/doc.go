// Package at is the AT session of an SMS modem, one layer on an
// io.ReadWriter in the manner of warthog618/modem: it opens the port
// (serial through go.bug.st/serial, or tcp://host:port for ser2net),
// puts a guard between the port and warthog618/modem/at that separates
// unsolicited result codes from command replies, drops garbage and late
// replies of abandoned commands, and resynchronises after a timeout, and
// runs commands with timeouts taken from ctx deadlines, returning typed
// errors (ErrTimeout, ErrClosed, ErrUnresponsive, ErrSendUnknown,
// *CMSError, *CMEError).
//
// The package takes ctx only to shorten a command's timeout: a command
// already written to the modem cannot be aborted. Its late answer is
// dropped by the guard, and the next command first waits for it.
//
// It imports nothing of bubbled; see README.md for the quirks it handles.
package at
