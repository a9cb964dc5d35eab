package fallback

import (
	"time"

	"maunium.net/go/mautrix/id"
)

// Message is one outgoing message as the router sees it. The Router copies
// it before handing it to a Transport, so a Transport may keep the pointer
// it receives; callers must not change a Message while a Send runs.
type Message struct {
	// ID is the Matrix event ID the message came from. It is the idempotency
	// key: the Router never sends the same ID twice on the same route.
	ID string
	// Conversation identifies the chat (the bridge's portal key). Pins, the
	// last route and route-change notices are kept per conversation.
	Conversation string
	// To is the contact's number in E.164 ("+15551234567").
	To string
	// Text is the message text.
	Text string
	// Line identifies the modem line (SIM) the conversation belongs to, for
	// transports that serve several lines; "" when there is one.
	Line string
	// Created is when the user sent the message (the Matrix event's
	// timestamp); read receipts at or after it confirm it. The Router sets it
	// to its clock's Now when zero.
	Created time.Time
	// Peer is the contact's Matrix user, set by the Router from the directory
	// answer when the message goes by RouteMatrix; empty for other routes.
	Peer id.UserID
	// File, when set, is a file the message carries (Text is then its
	// caption or name). Routes that cannot carry files fail it permanently.
	File *File
}

// File is a file attached to a message, at a URL the route's provider can
// fetch.
type File struct {
	URL, Name, MIMEType string
	Size                int64
	// Data is the file itself, for routes that carry the bytes (MMS on
	// the SMS route); nil when only URL is set.
	Data []byte
}

// Receipt says how a Transport took a message.
type Receipt struct {
	// Route is the route that took the message (the Router fills it in when
	// the Transport leaves it empty).
	Route Route
	// RemoteID is the transport's own ID for the message (an RCS message ID,
	// the Matrix event ID, SMS message references), "" when it has none.
	RemoteID string
	// Parts is how many network messages it took (SMS parts), 0 if unknown.
	Parts int
	// At is when the transport took the message (the Router fills it in
	// from its clock when the Transport leaves it zero).
	At time.Time
	// ConfirmBy is set by the Router when it waits for a confirmation of the
	// message (read receipt, RCS DELIVERED): if none comes by then, the
	// message is re-sent down the ladder. Zero when nothing is awaited.
	ConfirmBy time.Time
}

// Answer is what a Directory knows about a phone number.
type Answer struct {
	// MXID is the Matrix user the number belongs to; empty when the number
	// is not on Matrix (a negative answer).
	MXID id.UserID
	// Source names where the answer came from ("line", "static",
	// "identity-server"), for the whois command and for notices.
	Source string
	// Fetched is when the answer was fetched from its source (not when it
	// was served from a cache).
	Fetched time.Time
}

// Found reports whether the number is on Matrix.
func (a Answer) Found() bool { return a.MXID != "" }
