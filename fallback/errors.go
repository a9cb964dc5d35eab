package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnreachable means "this route cannot reach the contact": the Router
// tries the next route of the ladder. Transports return it (wrapped, with
// %w) when, for example, the contact has not joined the Matrix room or has
// no RCS capability.
var ErrUnreachable = errors.New("the contact cannot be reached on this route")

// ErrNoRoute is wrapped by the *SendError returned when no route of the
// ladder could reach the contact.
var ErrNoRoute = errors.New("no route can reach the contact")

// ErrDuplicate reports a Send for a message ID that is being sent right now.
var ErrDuplicate = errors.New("the message is already being sent")

// ErrAlreadySent reports a SendVia on a route the message already went by:
// the Router never sends a message twice on the same route.
var ErrAlreadySent = errors.New("the message was already sent on this route")

// ErrNoTransport reports a route that has no transport configured.
var ErrNoTransport = errors.New("no transport is configured for this route")

// ErrClosed reports a call after Router.Close.
var ErrClosed = errors.New("the router is closed")

// Class is what an error means for the ladder. See Classify.
type Class int

// The error classes of STYLE.md ("Errors decide fallback").
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassUnreachable: this route cannot reach the contact; try the next.
	ClassUnreachable
	// ClassTemporary: retry this route with backoff (network congestion,
	// timeouts, a provider answering 503).
	ClassTemporary
	// ClassPermanent: fail the message with a notice (unassigned number,
	// rejected content). Errors nobody classified are permanent, so an
	// unknown failure never sends a message twice.
	ClassPermanent
	// ClassCancelled: the caller gave up (context cancelled); stop.
	ClassCancelled
)

// String returns the class name used in logs ("temporary").
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassUnreachable:
		return "unreachable"
	case ClassTemporary:
		return "temporary"
	case ClassPermanent:
		return "permanent"
	case ClassCancelled:
		return "cancelled"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// classer is implemented by the errors that carry their class explicitly.
type classer interface{ fallbackClass() Class }

// classError marks an error with a class (see Temporary, Permanent,
// Unreachable).
type classError struct {
	class Class
	err   error
}

func (e *classError) Error() string        { return e.err.Error() }
func (e *classError) Unwrap() error        { return e.err }
func (e *classError) fallbackClass() Class { return e.class }

// Is makes errors.Is(Unreachable(err), ErrUnreachable) true.
func (e *classError) Is(target error) bool {
	return e.class == ClassUnreachable && target == ErrUnreachable
}

// Temporary marks err as temporary: the Router retries the route with
// backoff. It returns nil for nil. Transports use it for errors of their own
// that are transient but do not say so (e.g. the SMS line's ErrTimeout, where
// nothing was sent).
func Temporary(err error) error { return mark(ClassTemporary, err) }

// Permanent marks err as permanent: the Router fails the message and does
// not try other routes. It returns nil for nil. Use it for errors that look
// transient but must not be retried (e.g. the SMS line's ErrSendUnknown: the
// modem may have sent it, so sending again could text the contact twice).
func Permanent(err error) error { return mark(ClassPermanent, err) }

// Unreachable marks err as meaning "this route cannot reach the contact";
// errors.Is(Unreachable(err), ErrUnreachable) is true. It returns nil for nil.
func Unreachable(err error) error { return mark(ClassUnreachable, err) }

func mark(c Class, err error) error {
	if err == nil {
		return nil
	}
	return &classError{class: c, err: err}
}

// Classify says what err means for the ladder, checking in this order:
//   - nil: ClassNone;
//   - an explicit mark (Temporary, Permanent, Unreachable, *SendError),
//     the outermost one winning;
//   - errors.Is ErrUnreachable: ClassUnreachable;
//   - context.Canceled: ClassCancelled;
//   - an error with Permanent() bool returning true: ClassPermanent;
//   - context.DeadlineExceeded (a deadline of one attempt): ClassTemporary;
//   - an error with Temporary() bool (found with errors.As; e.g. the SMS
//     line's *CMSError): ClassTemporary when it returns true, ClassPermanent
//     when false;
//   - an error with Timeout() bool returning true (net.Error,
//     os.ErrDeadlineExceeded): ClassTemporary;
//   - anything else: ClassPermanent.
//
// A Router also stops at once when its caller's context is done, whatever
// the class of the error.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var c classer
	if errors.As(err, &c) {
		return c.fallbackClass()
	}
	if errors.Is(err, ErrUnreachable) {
		return ClassUnreachable
	}
	if errors.Is(err, context.Canceled) {
		return ClassCancelled
	}
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return ClassPermanent
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTemporary
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		if t.Temporary() {
			return ClassTemporary
		}
		return ClassPermanent
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return ClassTemporary
	}
	return ClassPermanent
}

// retryAfter returns the delay an error asks for (an HTTP Retry-After, for
// example) through a RetryAfter() time.Duration method, or 0.
func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			return d
		}
	}
	return 0
}

// Skip records a route the Router passed over for a message, and why.
type Skip struct {
	// Route is the route passed over.
	Route Route
	// Reason completes a sentence about the contact, for notices: "is not on
	// Matrix", "has not joined this chat on Matrix", "cannot receive RCS".
	Reason string
	// Err is the error behind the skip, nil when there was none (a negative
	// directory answer, for example).
	Err error
}

// SendError is the error of Router.Send and Router.SendVia when the message
// could not be sent. Classify returns its Class; errors.Is/As see Err.
type SendError struct {
	// Route is the last route tried; "" when no route could even be tried.
	Route Route
	// Class is the class of the failure: ClassUnreachable when every route
	// was passed over (Err then wraps ErrNoRoute), ClassTemporary when the
	// last route kept failing temporarily, ClassPermanent, ClassCancelled.
	Class Class
	// Attempts is how many times Route was tried.
	Attempts int
	// Skipped lists the routes passed over before, in ladder order.
	Skipped []Skip
	// Err is the underlying error.
	Err error
}

// Error implements error. It names routes and reasons but never the
// contact's number, so it is safe to log.
func (e *SendError) Error() string {
	var b strings.Builder
	if e.Route == "" {
		b.WriteString(e.Err.Error())
	} else {
		fmt.Fprintf(&b, "send by %s", e.Route.Title())
		if e.Attempts > 1 {
			fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
		}
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.Skipped) > 0 {
		b.WriteString(" (passed over: ")
		for i, s := range e.Skipped {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: contact %s", s.Route, s.Reason)
			if s.Err != nil {
				fmt.Fprintf(&b, ": %v", s.Err)
			}
		}
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns Err.
func (e *SendError) Unwrap() error { return e.Err }

func (e *SendError) fallbackClass() Class { return e.Class }
