package rcs

import (
	"context"
	"time"
)

// Event is one inbound RCS event, delivered by the [WebhookHandler] to its
// [EventConsumer]. The concrete types are [*MessageEvent],
// [*DeliveredEvent], [*ReadEvent], [*TypingEvent], [*UnsubscribeEvent],
// [*SubscribeEvent] and [*FailedEvent]; switch on them.
type Event interface {
	// Meta returns the fields every event has.
	Meta() *EventMeta
}

// EventMeta holds the fields every [Event] has.
type EventMeta struct {
	// Provider is "rbm" or "maap".
	Provider string
	// Key identifies the event at the provider; the store keeps each
	// (Provider, Key) once, so a replayed webhook is handled once.
	Key string
	// Sender is the user's number in E.164 form ("+15551234567").
	Sender string
	// MessageID is the user's message ID for a [MessageEvent] (pass it to
	// [Provider.SendRead]), and the agent's message ID (from [MessageID])
	// for delivery, read and failure events. Empty for typing and
	// (un)subscribe events.
	MessageID string
	// Time is when the user's device sent the event, or when bubbled
	// received it if the provider gave no time.
	Time time.Time
}

// Meta implements Event.
func (m *EventMeta) Meta() *EventMeta { return m }

// MessageEvent is a message from the user: text, a file, a location, or the
// text of a suggestion the user tapped.
type MessageEvent struct {
	EventMeta
	// Text is the message text ("" for a file or location).
	Text string
	// File is set for a file message.
	File *InboundFile
	// Location is set for a shared location.
	Location *Location
}

// InboundFile is a file the user sent, hosted by the provider. Download it
// promptly: the URL is time-limited.
type InboundFile struct {
	URL      string
	Name     string
	MIMEType string
	Size     int64
	// ThumbnailURL is a thumbnail's URL, "" when none.
	ThumbnailURL string
}

// Location is a shared position in decimal degrees.
type Location struct {
	Latitude, Longitude float64
	// Label is MaaP's optional label.
	Label string
}

// DeliveredEvent reports that the agent message MessageID reached the
// user's device.
type DeliveredEvent struct{ EventMeta }

// ReadEvent reports that the user read the agent message MessageID.
type ReadEvent struct{ EventMeta }

// TypingEvent reports the user's typing indicator. RBM only reports typing
// (Active always true; it times out on the device); MaaP also reports idle.
type TypingEvent struct {
	EventMeta
	Active bool
}

// UnsubscribeEvent reports that the user opted out of this agent: send them
// SMS only until a [SubscribeEvent].
type UnsubscribeEvent struct{ EventMeta }

// SubscribeEvent reports that the user opted in again.
type SubscribeEvent struct{ EventMeta }

// FailedEvent reports that the provider gave up delivering the agent
// message MessageID (MaaP status "failed"). Reason is the provider's word.
type FailedEvent struct {
	EventMeta
	Reason string
}

// EventConsumer handles one inbound event. It returns nil once the event is
// safely handed over; an error makes the webhook worker retry the same
// event later (with backoff), so the consumer must tolerate seeing an event
// again after an error or a crash (delivery is at least once, in order of
// arrival).
type EventConsumer func(ctx context.Context, ev Event) error
