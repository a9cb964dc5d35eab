package fallback

import (
	"context"
	"time"
)

// Transport sends messages by one route. The SMS line, the RCS provider and
// the Matrix route each have one (sms.Transport and rcs.Transport live with
// their connectors; the Matrix route is bridge glue). Send must be
// safe for concurrent use and must return errors that Classify understands:
// wrap ErrUnreachable when the contact cannot be reached this way, mark
// transient failures where nothing was sent as temporary, and everything
// that may have reached the contact as permanent.
type Transport interface {
	// Route names the route this transport serves.
	Route() Route
	// Send sends msg and says how it went.
	Send(ctx context.Context, msg *Message) (*Receipt, error)
}

// Reacher is the optional ability of a Transport to tell beforehand whether
// it can reach a contact: RCS capability discovery, or for the Matrix route
// whether msg.Peer has joined the conversation's room. A Transport without it
// is tried directly. An error passes the route over (the ladder keeps
// working) unless the context is done.
type Reacher interface {
	Reachable(ctx context.Context, msg *Message) (bool, error)
}

// Invalidator is the optional ability to forget what is cached about a
// number. The Router calls it on the Directory when the Matrix route fails or
// stays unconfirmed, and on a Transport (an RCS capability cache) when that
// transport's route does.
type Invalidator interface {
	Invalidate(e164 string)
}

// Withdrawer is the optional ability of a Transport to take back a message
// it carried that stayed unconfirmed (an RCS revoke). The Router calls it
// when the confirmation timer fires, before the message is re-sent down the
// ladder, so the contact does not get it twice. It is best effort: a
// message that cannot be withdrawn (already delivered) is re-sent anyway.
type Withdrawer interface {
	Withdraw(ctx context.Context, msg *Message)
}

// Directory answers "is this number on Matrix, and as whom?". A negative
// answer is an Answer with an empty MXID and a nil error; an error means the
// lookup itself failed (the Matrix route is then passed over for this
// message). Lookup must be safe for concurrent use and should answer from a
// cache quickly: it is called for every message.
type Directory interface {
	Lookup(ctx context.Context, e164 string) (Answer, error)
}

// Notifier is told what a person in the room should read. It is called
// synchronously, without the Router's locks held, from the goroutine that
// sent the message (a Send caller, or a confirmation timer): it should post
// the notice and return, not wait for long.
type Notifier interface {
	// RouteChanged reports that a conversation's messages now go by another
	// route (or go by a route for the first time), once per change.
	RouteChanged(ctx context.Context, c RouteChange)
	// MessageFellBack reports the end of a re-send down the ladder after a
	// message was not confirmed in time: successful (f.Receipt) or not
	// (f.Err).
	MessageFellBack(ctx context.Context, f FellBack)
}

// Clock is bubbled's one source of time: the Router's timers, the SMS line's
// backoff, pacing and watchdog, the RCS providers' retries and the
// directory's cache all take one. Production uses SystemClock; tests use a
// fake they advance by hand (fallbacktest.Clock), so they never sleep.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, like time.AfterFunc.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call of Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did.
	Stop() bool
}

// SystemClock is the Clock of the real world, built on package time.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc returns time.AfterFunc(d, f).
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// After returns a channel that receives the time once d has passed on c,
// like time.After. The timer cannot be stopped: use it in loops that wake
// for other reasons too, not for long waits in large numbers.
func After(c Clock, d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.AfterFunc(d, func() { ch <- c.Now() })
	return ch
}

// Sleep waits d on clock c, or until ctx is done (then it returns ctx.Err()).
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	done := make(chan struct{})
	t := c.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
