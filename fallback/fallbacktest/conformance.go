package fallbacktest

import (
	"context"
	"sync"
	"testing"

	"github.com/bubbled/bubbled/fallback"
)

// Harness describes a fallback.Transport implementation for Conformance.
type Harness struct {
	// New returns a fresh transport, ready to send (its backend running);
	// it registers its own cleanup with t.
	New func(t *testing.T) fallback.Transport
	// Message returns a message the transport can deliver; n is distinct for
	// every call, for distinct IDs.
	Message func(n int) *fallback.Message
	// Unreachable, when set, returns a message to a contact the transport
	// cannot reach.
	Unreachable func() *fallback.Message
	// Delivered, when set, returns how many messages reached the backend so
	// far (e.g. the modem simulator's Sent()), to check that failed sends
	// sent nothing.
	Delivered func(t *testing.T, tr fallback.Transport) int
}

// Conformance checks the contract every fallback.Transport keeps with the
// Router: a known route; a receipt for the right route; an error classified
// ClassCancelled (and nothing sent) for a done context; ErrUnreachable (and
// nothing sent) for a contact it cannot reach, and a Reachable that agrees;
// and safe concurrent Sends.
func Conformance(t *testing.T, h Harness) {
	t.Helper()
	n := 0
	next := func() *fallback.Message { n++; return h.Message(n) }
	delivered := func(t *testing.T, tr fallback.Transport) int {
		if h.Delivered == nil {
			return 0
		}
		return h.Delivered(t, tr)
	}
	t.Run("route is known", func(t *testing.T) {
		tr := h.New(t)
		switch tr.Route() {
		case fallback.RouteMatrix, fallback.RouteRCS, fallback.RouteSMS:
		default:
			t.Fatalf("Route() = %q, want matrix, rcs or sms", tr.Route())
		}
	})
	t.Run("send returns a receipt for its route", func(t *testing.T) {
		tr := h.New(t)
		before := delivered(t, tr)
		rcpt, err := tr.Send(context.Background(), next())
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if rcpt != nil && rcpt.Route != "" && rcpt.Route != tr.Route() {
			t.Errorf("receipt route = %q, want %q or empty", rcpt.Route, tr.Route())
		}
		if h.Delivered != nil {
			if got := delivered(t, tr) - before; got != 1 {
				t.Errorf("backend got %d messages, want 1", got)
			}
		}
	})
	t.Run("done context sends nothing", func(t *testing.T) {
		tr := h.New(t)
		before := delivered(t, tr)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := tr.Send(ctx, next())
		if got := fallback.Classify(err); got != fallback.ClassCancelled {
			t.Errorf("Send with a cancelled context: class %s (err %v), want cancelled", got, err)
		}
		if got := delivered(t, tr) - before; got != 0 {
			t.Errorf("backend got %d messages after a cancelled Send, want 0", got)
		}
	})
	if h.Unreachable != nil {
		t.Run("unreachable contact", func(t *testing.T) {
			tr := h.New(t)
			before := delivered(t, tr)
			msg := h.Unreachable()
			if rc, ok := tr.(fallback.Reacher); ok {
				ok, err := rc.Reachable(context.Background(), msg)
				if err != nil || ok {
					t.Errorf("Reachable = %v, %v; want false, nil", ok, err)
				}
			}
			_, err := tr.Send(context.Background(), msg)
			if got := fallback.Classify(err); got != fallback.ClassUnreachable {
				t.Errorf("Send to an unreachable contact: class %s (err %v), want unreachable", got, err)
			}
			if got := delivered(t, tr) - before; got != 0 {
				t.Errorf("backend got %d messages for an unreachable contact, want 0", got)
			}
		})
	}
	t.Run("reachable contact", func(t *testing.T) {
		tr := h.New(t)
		rc, ok := tr.(fallback.Reacher)
		if !ok {
			t.Skip("not a Reacher")
		}
		if ok, err := rc.Reachable(context.Background(), next()); err != nil || !ok {
			t.Errorf("Reachable = %v, %v; want true, nil", ok, err)
		}
	})
	t.Run("concurrent sends", func(t *testing.T) {
		tr := h.New(t)
		before := delivered(t, tr)
		const k = 8
		msgs := make([]*fallback.Message, k)
		for i := range msgs {
			msgs[i] = next()
		}
		errs := make([]error, k)
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() { _, errs[i] = tr.Send(context.Background(), msgs[i]) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Send %d: %v", i, err)
			}
		}
		if h.Delivered != nil {
			if got := delivered(t, tr) - before; got != k {
				t.Errorf("backend got %d messages, want %d", got, k)
			}
		}
	})
}
