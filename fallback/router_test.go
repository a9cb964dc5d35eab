package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/fallback"
)

func TestSendLadder(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		order []fallback.Route
		to    string
		setup func(e *env, conv string)

		wantRoute    fallback.Route // "" when Send fails
		wantClass    fallback.Class // of the error; ClassNone on success
		wantErrIs    error
		wantSent     map[fallback.Route]int
		wantAttempts map[fallback.Route]int // checked when set
		wantSkipped  []fallback.Route
		wantDelays   []time.Duration
		wantDirInval []string
		wantPeer     id.UserID
		wantLookups  int // checked when >= 0; -1 to skip
	}{
		{
			name: "on Matrix and joined: Matrix", to: bobNumber,
			wantRoute: fallback.RouteMatrix, wantSent: map[fallback.Route]int{"matrix": 1}, wantPeer: bob, wantLookups: 1,
		},
		{
			name: "not on Matrix: RCS", to: carol,
			wantRoute: fallback.RouteRCS, wantSent: map[fallback.Route]int{"rcs": 1},
			wantSkipped: []fallback.Route{"matrix"}, wantLookups: 1,
		},
		{
			name: "not on Matrix, no RCS: SMS", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].SetReachable(carol, false) },
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1},
			wantSkipped: []fallback.Route{"matrix", "rcs"}, wantAttempts: map[fallback.Route]int{"rcs": 0}, wantLookups: 1,
		},
		{
			name: "on Matrix but not joined: next route, answer kept", to: bobNumber,
			setup:     func(e *env, _ string) { e.tr["matrix"].SetReachable(bobNumber, false) },
			wantRoute: fallback.RouteRCS, wantSent: map[fallback.Route]int{"rcs": 1},
			wantSkipped: []fallback.Route{"matrix"}, wantAttempts: map[fallback.Route]int{"matrix": 0}, wantLookups: 1,
		},
		{
			name: "Matrix transport says unreachable: next route, answer invalidated", to: bobNumber,
			setup:     func(e *env, _ string) { e.tr["matrix"].Fail(fmt.Errorf("left the room: %w", fallback.ErrUnreachable)) },
			wantRoute: fallback.RouteRCS, wantSent: map[fallback.Route]int{"rcs": 1},
			wantSkipped: []fallback.Route{"matrix"}, wantAttempts: map[fallback.Route]int{"matrix": 1},
			wantDirInval: []string{bobNumber}, wantLookups: 1,
		},
		{
			name: "directory down: Matrix passed over", to: bobNumber,
			setup:     func(e *env, _ string) { e.dir.SetError(errors.New("identity server: 502")) },
			wantRoute: fallback.RouteRCS, wantSent: map[fallback.Route]int{"rcs": 1},
			wantSkipped: []fallback.Route{"matrix"}, wantLookups: 1,
		},
		{
			name: "RCS capability check fails: SMS", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].SetReachError(errors.New("capability API 503")) },
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1},
			wantSkipped: []fallback.Route{"matrix", "rcs"}, wantLookups: 1,
		},
		{
			name: "temporary errors retried with backoff, then sent", to: carol,
			setup: func(e *env, _ string) {
				e.tr["rcs"].SetReachable(carol, false)
				e.tr["sms"].Fail(temporaryErr{38}, temporaryErr{42})
			},
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1},
			wantAttempts: map[fallback.Route]int{"sms": 3}, wantSkipped: []fallback.Route{"matrix", "rcs"},
			wantDelays: []time.Duration{2 * time.Second, 4 * time.Second}, wantLookups: 1,
		},
		{
			name: "attempt deadline counts as temporary", to: carol,
			setup: func(e *env, _ string) {
				e.tr["rcs"].SetReachable(carol, false)
				e.tr["sms"].Fail(fmt.Errorf("AT+CMGS: %w", context.DeadlineExceeded))
			},
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1},
			wantAttempts: map[fallback.Route]int{"sms": 2}, wantSkipped: []fallback.Route{"matrix", "rcs"},
			wantDelays: []time.Duration{2 * time.Second}, wantLookups: 1,
		},
		{
			name: "retry-after longer than the backoff is honoured", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].Fail(retryAfterErr{30 * time.Second}) },
			wantRoute: fallback.RouteRCS, wantSent: map[fallback.Route]int{"rcs": 1},
			wantSkipped: []fallback.Route{"matrix"}, wantDelays: []time.Duration{30 * time.Second}, wantLookups: 1,
		},
		{
			name: "temporary errors to the limit: next route, cache invalidated", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].Fail(temporaryErr{38}, temporaryErr{38}, temporaryErr{38}) },
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1},
			wantAttempts: map[fallback.Route]int{"rcs": 3, "sms": 1}, wantSkipped: []fallback.Route{"matrix", "rcs"},
			wantDelays: []time.Duration{2 * time.Second, 4 * time.Second}, wantLookups: 1,
		},
		{
			name: "temporary errors to the limit on the last route: temporary failure", to: carol,
			setup: func(e *env, _ string) {
				e.tr["rcs"].SetReachable(carol, false)
				e.tr["sms"].Fail(temporaryErr{38}, temporaryErr{38}, temporaryErr{38})
			},
			wantClass: fallback.ClassTemporary, wantSent: map[fallback.Route]int{},
			wantAttempts: map[fallback.Route]int{"sms": 3}, wantSkipped: []fallback.Route{"matrix", "rcs"},
			wantDelays: []time.Duration{2 * time.Second, 4 * time.Second}, wantLookups: 1,
		},
		{
			name: "permanent error fails at once, no other route", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].Fail(fallback.Permanent(errors.New("message rejected"))) },
			wantClass: fallback.ClassPermanent, wantSent: map[fallback.Route]int{},
			wantAttempts: map[fallback.Route]int{"rcs": 1, "sms": 0}, wantSkipped: []fallback.Route{"matrix"}, wantLookups: 1,
		},
		{
			name: "permanent CMS error fails at once", to: carol,
			setup: func(e *env, _ string) {
				e.tr["rcs"].SetReachable(carol, false)
				e.tr["sms"].Fail(fmt.Errorf("send PDU part 1/1: %w", temporaryErr{21}))
			},
			wantClass: fallback.ClassPermanent, wantSent: map[fallback.Route]int{},
			wantAttempts: map[fallback.Route]int{"sms": 1}, wantSkipped: []fallback.Route{"matrix", "rcs"}, wantLookups: 1,
		},
		{
			name: "unclassified error is permanent", to: carol,
			setup:     func(e *env, _ string) { e.tr["rcs"].Fail(boom) },
			wantClass: fallback.ClassPermanent, wantErrIs: boom, wantSent: map[fallback.Route]int{},
			wantAttempts: map[fallback.Route]int{"rcs": 1, "sms": 0}, wantSkipped: []fallback.Route{"matrix"}, wantLookups: 1,
		},
		{
			name: "no route reaches the contact", to: carol,
			setup: func(e *env, _ string) {
				e.tr["rcs"].SetReachable(carol, false)
				e.tr["sms"].Fail(fallback.ErrUnreachable)
			},
			wantClass: fallback.ClassUnreachable, wantErrIs: fallback.ErrNoRoute, wantSent: map[fallback.Route]int{},
			wantSkipped: []fallback.Route{"matrix", "rcs", "sms"}, wantLookups: 1,
		},
		{
			name: "pinned to SMS: no lookup", to: bobNumber,
			setup:     func(e *env, conv string) { must(e.r.Pin(conv, fallback.RouteSMS)) },
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1}, wantLookups: 0,
		},
		{
			name: "pinned to Matrix, not joined: fails, no ladder", to: bobNumber,
			setup: func(e *env, conv string) {
				must(e.r.Pin(conv, fallback.RouteMatrix))
				e.tr["matrix"].SetReachable(bobNumber, false)
			},
			wantClass: fallback.ClassUnreachable, wantErrIs: fallback.ErrNoRoute, wantSent: map[fallback.Route]int{},
			wantSkipped: []fallback.Route{"matrix"}, wantLookups: 1,
		},
		{
			name: "pin removed with auto", to: bobNumber,
			setup: func(e *env, conv string) {
				must(e.r.Pin(conv, fallback.RouteSMS))
				must(e.r.Pin(conv, fallback.RouteAuto))
			},
			wantRoute: fallback.RouteMatrix, wantSent: map[fallback.Route]int{"matrix": 1}, wantPeer: bob, wantLookups: 1,
		},
		{
			name: "custom order: SMS first", to: bobNumber, order: []fallback.Route{"sms", "matrix"},
			wantRoute: fallback.RouteSMS, wantSent: map[fallback.Route]int{"sms": 1}, wantLookups: 0,
		},
		{
			name: "route absent from the ladder is never used", to: carol, order: []fallback.Route{"matrix", "rcs"},
			setup:     func(e *env, _ string) { e.tr["rcs"].SetReachable(carol, false) },
			wantClass: fallback.ClassUnreachable, wantErrIs: fallback.ErrNoRoute, wantSent: map[fallback.Route]int{},
			wantAttempts: map[fallback.Route]int{"sms": 0}, wantSkipped: []fallback.Route{"matrix", "rcs"}, wantLookups: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, func(o *fallback.Options) { o.Order = tt.order })
			m := msg(tt.to)
			if tt.setup != nil {
				tt.setup(e, m.Conversation)
			}
			rcpt, err := e.r.Send(context.Background(), m)

			var skipped []fallback.Skip
			if tt.wantClass == fallback.ClassNone {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if rcpt.Route != tt.wantRoute {
					t.Errorf("route %s, want %s", rcpt.Route, tt.wantRoute)
				}
				if !rcpt.At.Equal(e.clock.Now()) {
					t.Errorf("receipt At %s, want the clock's now", rcpt.At)
				}
				if ch := e.note.Changes(); len(ch) == 1 {
					skipped = ch[0].Skipped
				} else {
					t.Errorf("%d route-change notices for a new conversation, want 1", len(ch))
				}
			} else {
				if got := fallback.Classify(err); got != tt.wantClass {
					t.Fatalf("Send error class %s (err %v), want %s", got, err, tt.wantClass)
				}
				if rcpt != nil {
					t.Errorf("receipt %+v with an error", rcpt)
				}
				var se *fallback.SendError
				if !errors.As(err, &se) {
					t.Fatalf("error %T is not a *SendError", err)
				}
				skipped = se.Skipped
				if len(e.note.Changes()) != 0 {
					t.Errorf("route-change notice for a message that was not sent")
				}
			}
			if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErrIs)
			}
			if got := e.sent(); !maps.Equal(got, tt.wantSent) {
				t.Errorf("sent %v, want %v", got, tt.wantSent)
			}
			for rt, n := range tt.wantAttempts {
				if got := e.tr[rt].Attempts(); got != n {
					t.Errorf("%s attempts %d, want %d", rt, got, n)
				}
			}
			var gotSkipped []fallback.Route
			for _, s := range skipped {
				gotSkipped = append(gotSkipped, s.Route)
				if s.Reason == "" {
					t.Errorf("skip of %s has no reason", s.Route)
				}
			}
			if !slices.Equal(gotSkipped, tt.wantSkipped) {
				t.Errorf("skipped %v, want %v", gotSkipped, tt.wantSkipped)
			}
			if got := e.sleep.Delays(); !slices.Equal(got, tt.wantDelays) {
				t.Errorf("backoff delays %v, want %v", got, tt.wantDelays)
			}
			if got := e.dir.Invalidated(); !slices.Equal(got, tt.wantDirInval) {
				t.Errorf("directory invalidated %v, want %v", got, tt.wantDirInval)
			}
			if tt.wantPeer != "" {
				if sent := e.tr["matrix"].Sent(); len(sent) != 1 || sent[0].Peer != tt.wantPeer {
					t.Errorf("Matrix transport got %+v, want one message with Peer %s", sent, tt.wantPeer)
				}
			}
			for rt, tr := range e.tr {
				for _, s := range tr.Sent() {
					if rt != fallback.RouteMatrix && s.Peer != "" {
						t.Errorf("%s transport got Peer %s", rt, s.Peer)
					}
					if s.ID != m.ID || s.Text != m.Text || s.To != m.To || s.Created.IsZero() {
						t.Errorf("%s transport got %+v, want the message", rt, s)
					}
				}
			}
			if tt.wantLookups >= 0 && e.dir.Lookups() != tt.wantLookups {
				t.Errorf("%d directory lookups, want %d", e.dir.Lookups(), tt.wantLookups)
			}
		})
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func TestRouteChangeNotices(t *testing.T) {
	type step struct {
		do         func(e *env, conv string)
		wantRoute  fallback.Route
		wantNotice string // "" = no notice expected for this send
	}
	tests := []struct {
		name   string
		routes []fallback.Route
		to     string
		steps  []step
	}{
		{
			name: "Matrix, then not joined, then back, then new Matrix ID, then pinned", to: bobNumber,
			steps: []step{
				{wantRoute: "matrix", wantNotice: "+15551230001 is on Matrix as @bob:example.org — messages now go end-to-end encrypted."},
				{wantRoute: "matrix"},
				{do: func(e *env, _ string) {
					e.tr["matrix"].SetReachable(bobNumber, false)
					e.tr["rcs"].SetReachable(bobNumber, false)
				}, wantRoute: "sms", wantNotice: "+15551230001 has not joined this chat on Matrix and cannot receive RCS, sending as SMS."},
				{wantRoute: "sms"},
				{do: func(e *env, _ string) { e.tr["matrix"].SetReachable(bobNumber, true) },
					wantRoute: "matrix", wantNotice: "+15551230001 is on Matrix as @bob:example.org — messages now go end-to-end encrypted."},
				{do: func(e *env, _ string) { e.dir.Set(bobNumber, "@robert:example.net", "identity-server", t0) },
					wantRoute: "matrix", wantNotice: "+15551230001 is on Matrix as @robert:example.net — messages now go end-to-end encrypted."},
				{do: func(e *env, conv string) { must(e.r.Pin(conv, fallback.RouteSMS)) },
					wantRoute: "sms", wantNotice: "This chat is set to SMS: messages to +15551230001 go as SMS."},
				{wantRoute: "sms"},
			},
		},
		{
			name: "not on Matrix: announced once", to: carol,
			steps: []step{
				{do: func(e *env, _ string) { e.tr["rcs"].SetReachable(carol, false) },
					wantRoute: "sms", wantNotice: "+15551230002 is not on Matrix and cannot receive RCS, sending as SMS."},
				{wantRoute: "sms"},
				{wantRoute: "sms"},
			},
		},
		{
			name: "one-route ladder: nothing to announce", routes: []fallback.Route{"sms"}, to: carol,
			steps: []step{{wantRoute: "sms"}, {wantRoute: "sms"}},
		},
		{
			name: "restored state is not announced again", to: bobNumber,
			steps: []step{
				{do: func(e *env, conv string) {
					e.r.Restore(conv, fallback.ConvState{Last: fallback.RouteMatrix, Peer: bob})
				}, wantRoute: "matrix"},
			},
		},
		{
			name: "restored pin on a missing route is dropped", routes: []fallback.Route{"matrix", "sms"}, to: bobNumber,
			steps: []step{
				{do: func(e *env, conv string) {
					e.r.Restore(conv, fallback.ConvState{Pin: fallback.RouteRCS, Last: fallback.RouteMatrix, Peer: bob})
				}, wantRoute: "matrix"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.routes, nil)
			m := msg(tt.to)
			seen := 0
			for i, s := range tt.steps {
				if s.do != nil {
					s.do(e, m.Conversation)
				}
				mi := *m
				mi.ID = fmt.Sprintf("%s-%d", m.ID, i)
				rcpt, err := e.r.Send(context.Background(), &mi)
				if err != nil {
					t.Fatalf("step %d: Send: %v", i, err)
				}
				if rcpt.Route != s.wantRoute {
					t.Errorf("step %d: route %s, want %s", i, rcpt.Route, s.wantRoute)
				}
				ch := e.note.Changes()
				switch {
				case s.wantNotice == "" && len(ch) != seen:
					t.Errorf("step %d: unexpected notice %q", i, ch[len(ch)-1].Text())
				case s.wantNotice != "" && len(ch) != seen+1:
					t.Errorf("step %d: %d new notices, want 1: %q", i, len(ch)-seen, s.wantNotice)
				case s.wantNotice != "":
					c := ch[seen]
					if c.Text() != s.wantNotice {
						t.Errorf("step %d: notice %q, want %q", i, c.Text(), s.wantNotice)
					}
					if c.Route != s.wantRoute || c.MessageID != mi.ID || c.Conversation != m.Conversation {
						t.Errorf("step %d: notice %+v does not match the send", i, c)
					}
				}
				seen = len(ch)
				if st := e.r.State(m.Conversation); st.Last != s.wantRoute {
					t.Errorf("step %d: State().Last = %s, want %s", i, st.Last, s.wantRoute)
				}
			}
		})
	}
}

func TestSendDeduplicates(t *testing.T) {
	e := newEnv(t, nil, nil)
	m := msg(carol)
	first, err := e.r.Send(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.r.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if *again != *first {
		t.Errorf("second Send receipt %+v, want the first %+v", again, first)
	}
	if got := e.sent(); got["rcs"] != 1 || len(got) != 1 {
		t.Errorf("sent %v, want rcs once", got)
	}

	// While a Send runs, the same ID is refused.
	release := make(chan struct{})
	entered := make(chan struct{})
	e.tr["sms"].OnSend = func(ctx context.Context, _ *fallback.Message) error {
		close(entered)
		<-release
		return nil
	}
	must(e.r.Pin("slow", fallback.RouteSMS))
	slow := &fallback.Message{ID: "$slow", Conversation: "slow", To: carol}
	done := make(chan error)
	go func() { _, err := e.r.Send(context.Background(), slow); done <- err }()
	<-entered
	if _, err := e.r.Send(context.Background(), slow); !errors.Is(err, fallback.ErrDuplicate) {
		t.Errorf("Send during Send: %v, want ErrDuplicate", err)
	}
	if _, err := e.r.SendVia(context.Background(), slow, fallback.RouteRCS); !errors.Is(err, fallback.ErrDuplicate) {
		t.Errorf("SendVia during Send: %v, want ErrDuplicate", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("slow Send: %v", err)
	}
	if n := len(e.tr["sms"].Sent()); n != 1 {
		t.Errorf("SMS sent %d times, want 1", n)
	}
}

func TestFailedSendCanBeRetried(t *testing.T) {
	e := newEnv(t, []fallback.Route{"sms"}, nil)
	e.tr["sms"].Fail(fallback.Permanent(errors.New("modem may have sent it")))
	m := msg(carol)
	if _, err := e.r.Send(context.Background(), m); fallback.Classify(err) != fallback.ClassPermanent {
		t.Fatalf("first Send: %v, want a permanent error", err)
	}
	if _, err := e.r.Send(context.Background(), m); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if n := len(e.tr["sms"].Sent()); n != 1 {
		t.Errorf("sent %d, want 1", n)
	}
}

func TestSendVia(t *testing.T) {
	tests := []struct {
		name      string
		routes    []fallback.Route
		to        string
		via       fallback.Route
		setup     func(e *env, m *fallback.Message)
		wantErrIs error
		wantSent  map[fallback.Route]int
	}{
		{name: "sms command to a Matrix contact", to: bobNumber, via: "sms", wantSent: map[fallback.Route]int{"sms": 1}},
		{name: "via Matrix sets the peer", to: bobNumber, via: "matrix", wantSent: map[fallback.Route]int{"matrix": 1}},
		{name: "via Matrix for a number not on Matrix", to: carol, via: "matrix", wantErrIs: fallback.ErrNoRoute, wantSent: map[fallback.Route]int{}},
		{name: "route without transport", routes: []fallback.Route{"matrix", "sms"}, to: carol, via: "rcs", wantErrIs: fallback.ErrNoTransport, wantSent: map[fallback.Route]int{}},
		{name: "unknown route", to: carol, via: "fax", wantSent: map[fallback.Route]int{}},
		{
			name: "already sent on that route", to: carol, via: "rcs",
			setup: func(e *env, m *fallback.Message) {
				if _, err := e.r.Send(context.Background(), m); err != nil {
					panic(err)
				}
			},
			wantErrIs: fallback.ErrAlreadySent, wantSent: map[fallback.Route]int{"rcs": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.routes, nil)
			m := msg(tt.to)
			if tt.setup != nil {
				tt.setup(e, m)
			}
			before := e.r.State(m.Conversation)
			notices := len(e.note.Changes())
			rcpt, err := e.r.SendVia(context.Background(), m, tt.via)
			switch {
			case tt.wantErrIs != nil:
				if !errors.Is(err, tt.wantErrIs) {
					t.Errorf("SendVia error %v, want %v", err, tt.wantErrIs)
				}
			case maps.Equal(tt.wantSent, map[fallback.Route]int{}):
				if err == nil {
					t.Error("SendVia succeeded, want an error")
				}
			default:
				if err != nil {
					t.Fatalf("SendVia: %v", err)
				}
				if rcpt.Route != tt.via || !rcpt.ConfirmBy.IsZero() {
					t.Errorf("receipt %+v, want route %s and no confirmation wait", rcpt, tt.via)
				}
				if tt.via == fallback.RouteMatrix && e.tr["matrix"].Sent()[0].Peer != bob {
					t.Error("Matrix transport got no peer")
				}
			}
			if got := e.sent(); !maps.Equal(got, tt.wantSent) {
				t.Errorf("sent %v, want %v", got, tt.wantSent)
			}
			if after := e.r.State(m.Conversation); after != before {
				t.Errorf("conversation state changed from %+v to %+v", before, after)
			}
			if len(e.note.Changes()) != notices {
				t.Error("SendVia announced a route change")
			}
			if len(e.r.Pending()) != 0 && tt.setup == nil {
				t.Errorf("pending %v after SendVia, want none", e.r.Pending())
			}
		})
	}
}

func TestSendStopsWhenCancelled(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env, cancel context.CancelFunc)
	}{
		{name: "cancelled before", setup: func(_ *env, cancel context.CancelFunc) { cancel() }},
		{name: "cancelled during backoff", setup: func(e *env, cancel context.CancelFunc) {
			e.tr["sms"].OnSend = func(context.Context, *fallback.Message) error {
				cancel()
				return temporaryErr{38}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []fallback.Route{"matrix", "sms"}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.setup(e, cancel)
			_, err := e.r.Send(ctx, msg(carol))
			if got := fallback.Classify(err); got != fallback.ClassCancelled {
				t.Errorf("class %s (err %v), want cancelled", got, err)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			if got := e.sent(); len(got) != 0 {
				t.Errorf("sent %v after cancel", got)
			}
			if n := e.tr["sms"].Attempts(); n > 1 {
				t.Errorf("%d SMS attempts, want at most 1", n)
			}
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	e := newEnv(t, []fallback.Route{"sms"}, func(o *fallback.Options) { o.AttemptTimeout = 7 * time.Second })
	var left time.Duration
	e.tr["sms"].OnSend = func(ctx context.Context, _ *fallback.Message) error {
		dl, ok := ctx.Deadline()
		if !ok {
			return errors.New("no deadline")
		}
		left = time.Until(dl)
		return nil
	}
	if _, err := e.r.Send(context.Background(), msg(carol)); err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > 7*time.Second {
		t.Errorf("attempt deadline %s away, want within 7s", left)
	}
}

func TestPin(t *testing.T) {
	tests := []struct {
		name    string
		routes  []fallback.Route
		noDir   bool
		pin     fallback.Route
		want    fallback.Route
		wantErr string
	}{
		{name: "sms", pin: "sms", want: "sms"},
		{name: "auto", pin: "auto", want: ""},
		{name: "empty is auto", pin: "", want: ""},
		{name: "no transport", routes: []fallback.Route{"matrix", "sms"}, pin: "rcs", wantErr: "no transport is configured"},
		{name: "matrix without a directory", noDir: true, pin: "matrix", wantErr: "needs a directory"},
		{name: "unknown", pin: "pigeon", wantErr: "unknown route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.routes, func(o *fallback.Options) {
				if tt.noDir {
					o.Directory = nil
				}
			})
			must(e.r.Pin("c", fallback.RouteSMS))
			err := e.r.Pin("c", tt.pin)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Pin error %v, want %q", err, tt.wantErr)
				}
				if got := e.r.State("c").Pin; got != fallback.RouteSMS {
					t.Errorf("failed Pin changed the pin to %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.r.State("c").Pin; got != tt.want {
				t.Errorf("pin %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		to         string
		setup      func(e *env)
		wantRoute  fallback.Route
		wantPeer   id.UserID
		wantSkips  int
		wantPinned bool
	}{
		{name: "Matrix", to: bobNumber, wantRoute: "matrix", wantPeer: bob},
		{name: "RCS", to: carol, wantRoute: "rcs", wantSkips: 1},
		{name: "pinned", to: bobNumber, setup: func(e *env) { must(e.r.Pin("conv-"+bobNumber, "sms")) }, wantRoute: "sms", wantPinned: true},
		{name: "none", to: carol, setup: func(e *env) {
			e.tr["rcs"].SetReachable(carol, false)
			e.tr["sms"].SetReachable(carol, false)
		}, wantSkips: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			if tt.setup != nil {
				tt.setup(e)
			}
			d, err := e.r.Decide(context.Background(), msg(tt.to))
			if tt.wantRoute == "" {
				if !errors.Is(err, fallback.ErrNoRoute) {
					t.Errorf("Decide error %v, want ErrNoRoute", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if d.Route != tt.wantRoute || d.Peer != tt.wantPeer || len(d.Skipped) != tt.wantSkips || d.Pinned != tt.wantPinned {
				t.Errorf("Decide = %+v, want route %s peer %q %d skips pinned %v", d, tt.wantRoute, tt.wantPeer, tt.wantSkips, tt.wantPinned)
			}
			if len(e.sent()) != 0 {
				t.Error("Decide sent something")
			}
		})
	}
}

func TestInputErrors(t *testing.T) {
	e := newEnv(t, nil, nil)
	tests := []struct {
		name string
		msg  *fallback.Message
		want string
	}{
		{"nil", nil, "nil message"},
		{"no ID", &fallback.Message{Conversation: "c", To: carol}, "no ID"},
		{"no conversation", &fallback.Message{ID: "$1", To: carol}, "no conversation"},
		{"no number", &fallback.Message{ID: "$1", Conversation: "c"}, "no recipient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.r.Send(context.Background(), tt.msg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Send error %v, want %q", err, tt.want)
			}
			if _, err := e.r.SendVia(context.Background(), tt.msg, "sms"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SendVia error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConcurrentSends(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.tr["rcs"].SetReachable(carol, false)
	const workers, per = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				to := carol
				if (w+i)%2 == 0 {
					to = bobNumber
				}
				m := &fallback.Message{
					ID:           fmt.Sprintf("$w%d-%d", w, i),
					Conversation: fmt.Sprintf("conv-%d", w%3),
					To:           to,
				}
				if _, err := e.r.Send(context.Background(), m); err != nil {
					errs <- err
				}
				// The same message again from another goroutine's view.
				if _, err := e.r.Send(context.Background(), m); err != nil && !errors.Is(err, fallback.ErrDuplicate) {
					errs <- err
				}
				if i%5 == 0 {
					e.r.Confirm(m.ID)
				}
				if i%7 == 0 {
					e.r.ConfirmRead(m.Conversation, fallback.RouteMatrix, e.clock.Now())
				}
				if i%11 == 0 {
					e.clock.Advance(time.Minute)
				}
				_ = e.r.State(m.Conversation)
				_ = e.r.Pending()
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			must(e.r.Pin("conv-1", []fallback.Route{"sms", "auto"}[i%2]))
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.clock.Advance(time.Hour)
	// Every message went out exactly once on each route it used, and at
	// most once per route.
	per0 := make(map[string]map[fallback.Route]int)
	for rt, tr := range e.tr {
		for _, s := range tr.Sent() {
			if per0[s.ID] == nil {
				per0[s.ID] = make(map[fallback.Route]int)
			}
			per0[s.ID][rt]++
		}
	}
	if len(per0) != workers*per {
		t.Errorf("%d distinct messages sent, want %d", len(per0), workers*per)
	}
	for msgID, byRoute := range per0 {
		for rt, n := range byRoute {
			if n != 1 {
				t.Errorf("message %s sent %d times by %s", msgID, n, rt)
			}
		}
	}
	if p := e.r.Pending(); len(p) != 0 {
		t.Errorf("%d messages still pending after an hour", len(p))
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil, nil)
	if _, err := e.r.Send(context.Background(), msg(bobNumber)); err != nil {
		t.Fatal(err)
	}
	if e.clock.Timers() != 1 {
		t.Fatalf("%d timers, want 1", e.clock.Timers())
	}
	must(e.r.Close())
	must(e.r.Close())
	if e.clock.Timers() != 0 {
		t.Errorf("%d timers after Close, want 0", e.clock.Timers())
	}
	e.clock.Advance(time.Hour)
	if got := e.sent(); len(got) != 1 {
		t.Errorf("sent %v after Close, want only the Matrix message", got)
	}
	if _, err := e.r.Send(context.Background(), msg(carol)); !errors.Is(err, fallback.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if _, err := e.r.SendVia(context.Background(), msg(carol), "sms"); !errors.Is(err, fallback.ErrClosed) {
		t.Errorf("SendVia after Close: %v, want ErrClosed", err)
	}
}

func TestRememberWindow(t *testing.T) {
	tests := []struct {
		name     string
		to       string
		advance  time.Duration
		wantSent map[fallback.Route]int // after sending the same message twice
	}{
		{name: "within the window: sent once", to: carol, advance: 59 * time.Minute, wantSent: map[fallback.Route]int{"rcs": 1}},
		{name: "after the window: forgotten, sent again", to: carol, advance: 61 * time.Minute, wantSent: map[fallback.Route]int{"rcs": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, func(o *fallback.Options) {
				o.Remember = time.Hour
				o.ConfirmTimeout = 0
			})
			m := msg(tt.to)
			if _, err := e.r.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(tt.advance)
			if _, err := e.r.Send(context.Background(), msg(tt.to)); err != nil { // prunes
				t.Fatal(err)
			}
			if _, err := e.r.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			got := map[fallback.Route]int{}
			for rt, tr := range e.tr {
				for _, s := range tr.Sent() {
					if s.ID == m.ID {
						got[rt]++
					}
				}
			}
			if !maps.Equal(got, tt.wantSent) {
				t.Errorf("message sent %v, want %v", got, tt.wantSent)
			}
		})
	}

	t.Run("a waiting message is not forgotten", func(t *testing.T) {
		e := newEnv(t, nil, func(o *fallback.Options) { o.Remember = time.Minute })
		e.tr["rcs"].SetReachable(bobNumber, false)
		m := msg(bobNumber)
		if _, err := e.r.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		for range 4 { // prune on every send while m waits
			e.clock.Advance(time.Minute)
			if _, err := e.r.Send(context.Background(), msg(carol)); err != nil {
				t.Fatal(err)
			}
		}
		e.clock.Advance(time.Minute)
		if got := e.note.FellBacks(); len(got) != 1 || got[0].Message.ID != m.ID {
			t.Fatalf("fallbacks %+v, want one for %s", got, m.ID)
		}
		if _, err := e.r.SendVia(context.Background(), m, fallback.RouteSMS); !errors.Is(err, fallback.ErrAlreadySent) {
			t.Errorf("SendVia after the fallback: %v, want ErrAlreadySent", err)
		}
	})
}

// TestLogLinesRevealTwoDigits checks that the Router's log lines about one
// number, read together, reveal no more than its last two digits: every
// line masks by the same rule (phone.Mask).
func TestLogLinesRevealTwoDigits(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	e := newEnv(t, []fallback.Route{fallback.RouteRCS, fallback.RouteSMS}, func(o *fallback.Options) {
		o.Log = zap.New(core)
	})
	e.tr["rcs"].Fail(temporaryErr{38}, temporaryErr{38}, temporaryErr{38}) // "moved down the ladder"
	if _, err := e.r.Send(context.Background(), msg(carol)); err != nil {  // "sent message"
		t.Fatal(err)
	}
	e.tr["sms"].Fail(errors.New("rejected")) // "failed to send message"
	if _, err := e.r.SendVia(context.Background(), msg(carol), fallback.RouteSMS); err == nil {
		t.Fatal("SendVia did not fail")
	}
	revealed := map[int]rune{} // digit position from the end -> digit shown
	lines := 0
	for _, entry := range logs.All() {
		to, ok := entry.ContextMap()["to"].(string)
		if !ok {
			continue
		}
		lines++
		if strings.Contains(entry.Message+fmt.Sprint(entry.ContextMap()), carol[1:6]) {
			t.Errorf("log line %q shows the number: %v", entry.Message, entry.ContextMap())
		}
		digits := 0
		for i := len(to) - 1; i >= 0; i-- {
			switch c := rune(to[i]); {
			case c == '*':
				digits++
			case c >= '0' && c <= '9':
				digits++
				revealed[digits] = c
			}
		}
	}
	if lines < 2 {
		t.Fatalf("only %d log lines name the number; the test needs two or more", lines)
	}
	if len(revealed) > 2 || revealed[1] != rune(carol[len(carol)-1]) || revealed[2] != rune(carol[len(carol)-2]) {
		t.Errorf("log lines together reveal digits %v of %s; want only the last two", revealed, carol)
	}
}
