package fallback

import (
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// RouteChange tells that a conversation's messages now go another way. The
// Router sends one per change (see Router.Send for when), to be posted as a
// notice in the room and stored as the conversation's route.
type RouteChange struct {
	// Conversation is the conversation's key.
	Conversation string
	// To is the contact's number.
	To string
	// Peer is the contact's Matrix user when Route is RouteMatrix.
	Peer id.UserID
	// From is the route before; "" when the conversation had none yet.
	From Route
	// Route is the route the conversation's messages now go by.
	Route Route
	// Pinned tells that Route was chosen by a pin (Router.Pin).
	Pinned bool
	// Skipped lists the better routes passed over, and why.
	Skipped []Skip
	// MessageID is the message that went the new way.
	MessageID string
}

// Text returns the notice a person reads, e.g. "+15551234567 is on Matrix as
// @bob:example.org — messages now go end-to-end encrypted." or
// "+15551234567 is not on Matrix, sending as SMS."
func (c RouteChange) Text() string {
	switch {
	case c.Route == RouteMatrix && c.Peer != "":
		return fmt.Sprintf("%s is on Matrix as %s — messages now go end-to-end encrypted.", c.To, c.Peer)
	case c.Pinned:
		return fmt.Sprintf("This chat is set to %s: messages to %s go %s.", c.Route.Title(), c.To, c.Route.manner())
	case len(c.Skipped) > 0:
		return fmt.Sprintf("%s %s, %s.", c.To, reasons(c.Skipped), c.Route.sending())
	default:
		return fmt.Sprintf("Messages to %s now go %s.", c.To, c.Route.manner())
	}
}

// FellBack tells how a message that was not confirmed in time was re-sent
// down the ladder.
type FellBack struct {
	// Message is the message (as handed to the route it went by last).
	Message Message
	// From is the route that did not confirm it.
	From Route
	// To is the route it went by now; "" when no route took it.
	To Route
	// Waited is how long the Router waited for a confirmation.
	Waited time.Duration
	// Receipt is the new route's receipt; nil when Err is set.
	Receipt *Receipt
	// Err is why the re-send failed; nil when it succeeded.
	Err error
	// Skipped lists the routes passed over for the re-send, and why.
	Skipped []Skip
}

// Text returns the notice a person reads, e.g. "Not confirmed on Matrix
// within 5 minutes — sent as SMS instead."
func (f FellBack) Text() string {
	head := fmt.Sprintf("Not confirmed %s within %s", f.From.on(), humanDuration(f.Waited))
	switch {
	case f.Err == nil:
		return fmt.Sprintf("%s — sent %s instead.", head, f.To.manner())
	case f.To == "":
		if len(f.Skipped) > 0 {
			return fmt.Sprintf("%s, and no other route could take it: the contact %s.", head, reasons(f.Skipped))
		}
		return head + ", and no other route could take it."
	default:
		return fmt.Sprintf("%s, and sending it %s failed too: %v", head, f.To.manner(), f.Err)
	}
}

// manner is how a message goes by r: "as SMS", "by RCS", "on Matrix".
func (r Route) manner() string {
	switch r {
	case RouteSMS:
		return "as SMS"
	case RouteMatrix:
		return "on Matrix"
	}
	return "by " + r.Title()
}

// on is where a message was waiting: "on Matrix", "by RCS", "by SMS".
func (r Route) on() string {
	if r == RouteMatrix {
		return "on Matrix"
	}
	return "by " + r.Title()
}

// sending is the end of a route-change sentence: "sending as SMS".
func (r Route) sending() string { return "sending " + r.manner() }

// reasons joins the reasons of skips: "is not on Matrix and cannot receive
// RCS". Repeated reasons for the same route (a retry of the ladder) are kept
// once.
func reasons(skips []Skip) string {
	parts := make([]string, 0, len(skips))
	seen := make(map[Route]bool, len(skips))
	for _, s := range skips {
		if seen[s.Route] {
			continue
		}
		seen[s.Route] = true
		parts = append(parts, s.Reason)
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// humanDuration writes d for people: "5 minutes", "90 seconds", "1 hour".
func humanDuration(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d >= time.Second && d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	case d < time.Second:
		return d.String()
	}
	return d.Round(time.Second).String()
}
