// Package rcs sends and receives RCS messages as a business agent through
// two documented REST APIs: Google RCS Business Messaging (RBM) and the GSMA
// MaaP chatbot API offered by carriers and aggregators.
//
// Both providers implement [Provider]: a capability check for a number,
// text and file messages whose IDs derive from the Matrix event ID (so a
// retry after a crash never reaches the phone twice), typing and read
// events, and revocation of undelivered messages. Failures are classified
// with sentinel errors ([ErrNotRCS], [ErrTemporary], [ErrPermanent],
// [ErrAuth], [ErrTooLong]) for errors.Is; temporary failures are retried
// inside the provider with backoff and jitter, honouring Retry-After, on an
// injected [fallback.Clock].
//
// Inbound traffic (user messages, DELIVERED, READ, IS_TYPING, UNSUBSCRIBE)
// arrives on the [WebhookHandler], which checks signatures before it
// interprets a payload, persists each event once in an [EventStore] and
// acknowledges at once; one worker goroutine owned by the handler then
// hands the typed events to the consumer.
//
// The contact sees the agent's brand, never the operator's phone number.
// See README.md for what an operator needs and for the config shape.
package rcs
