package rcs

import (
	"context"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/bubbled/bubbled/connectors/phone"
)

// MaxTextLength is the longest text, in characters, that one RCS message
// carries (RBM documents 3072; MaaP platforms accept at least that).
const MaxTextLength = 3072

// Provider is one RCS business-messaging API behind which bubbled acts as an
// agent. Implementations are safe for concurrent use. Inbound traffic does
// not come through a Provider but through the [WebhookHandler].
type Provider interface {
	// Name returns "rbm" or "maap".
	Name() string
	// Capability asks whether the agent can reach e164 over RCS. A number
	// the provider does not know or cannot reach (HTTP 404) is
	// reachable=false with a nil error. features lists the provider's
	// feature names (RBM "RICHCARD_STANDALONE", ..., MaaP "chat", ...).
	Capability(ctx context.Context, e164 string) (reachable bool, features []string, err error)
	// Send sends one text or file message to e164 and returns its message
	// ID, [MessageID](m.EventID, m.Part). Retrying with the same message
	// (even after a crash) never delivers it twice: the provider answers a
	// duplicate with success. A 404 returns [ErrNotRCS].
	Send(ctx context.Context, e164 string, m *OutboundMessage) (messageID string, err error)
	// SendTyping shows (on=true) or clears the agent's typing indicator.
	// Providers without an "idle" event (RBM) ignore on=false.
	SendTyping(ctx context.Context, e164 string, on bool) error
	// SendRead marks the user's message messageID (from a [MessageEvent])
	// as read. Resending the same receipt is harmless.
	SendRead(ctx context.Context, e164 string, messageID string) error
	// Revoke withdraws an agent message that has not been delivered yet.
	// A DELIVERED event may still arrive if delivery raced the revoke.
	Revoke(ctx context.Context, e164 string, messageID string) error
}

// FileUploader is the optional ability of providers that can fetch and
// cache a file once for several messages (RBM files.create). Find it with a
// type assertion on a [Provider].
type FileUploader interface {
	// CreateFile has the provider fetch fileURL (and thumbnailURL, if not
	// empty) and returns a name to put in [FileRef].URL.
	CreateFile(ctx context.Context, fileURL, thumbnailURL string) (name string, err error)
}

var _ FileUploader = (*RBM)(nil)

// OutboundMessage is one agent message: exactly one of Text and File.
type OutboundMessage struct {
	// EventID is the Matrix event the message comes from; required. The
	// provider message ID is derived from it.
	EventID string
	// Part numbers the RCS messages of one Matrix event (0 for the first).
	Part int
	// Text is the message text, at most [MaxTextLength] characters.
	Text string
	// File is a file the provider fetches from a public HTTPS URL.
	File *FileRef
	// TTL makes the provider drop the message if it is not delivered in
	// time (RBM "ttl"; not sent to MaaP, whose TTL field is not
	// standardised). 0 means the provider's default.
	TTL time.Duration
}

// FileRef points at a file the provider downloads itself.
type FileRef struct {
	// URL is a public HTTPS URL of the file, or a name returned by
	// [FileUploader.CreateFile] ("files/…" on RBM); required.
	URL string
	// ThumbnailURL is an optional public HTTPS URL of a thumbnail (or, with
	// an uploaded file, the thumbnail's uploaded name).
	ThumbnailURL string
	// Name, MIMEType and Size describe the file (MaaP sends them; RBM
	// learns them from the download).
	Name     string
	MIMEType string
	Size     int64
}

var e164Pattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// ValidNumber reports whether s is an E.164 number in "+<digits>" form, as
// both APIs require.
func ValidNumber(s string) bool { return e164Pattern.MatchString(s) }

// validate checks an outbound message before any request is made.
func (m *OutboundMessage) validate(e164 string) error {
	switch {
	case m == nil:
		return fmt.Errorf("%w: no message", ErrInvalidRequest)
	case !ValidNumber(e164):
		return fmt.Errorf("%w: recipient %q is not an E.164 number (+<country><number>)", ErrInvalidRequest, phone.Mask(e164))
	case m.EventID == "":
		return fmt.Errorf("%w: no Matrix event ID to derive the message ID from", ErrInvalidRequest)
	case m.Part < 0:
		return fmt.Errorf("%w: negative part %d", ErrInvalidRequest, m.Part)
	case m.Text == "" && m.File == nil:
		return fmt.Errorf("%w: neither text nor file", ErrInvalidRequest)
	case m.Text != "" && m.File != nil:
		return fmt.Errorf("%w: text and file must be separate RCS messages (use Part)", ErrInvalidRequest)
	case m.File != nil && m.File.URL == "":
		return fmt.Errorf("%w: file without URL", ErrInvalidRequest)
	case m.TTL < 0:
		return fmt.Errorf("%w: negative TTL", ErrInvalidRequest)
	}
	if n := utf8.RuneCountInString(m.Text); n > MaxTextLength {
		return fmt.Errorf("%w: %d characters, at most %d fit", ErrTooLong, n, MaxTextLength)
	}
	return nil
}
