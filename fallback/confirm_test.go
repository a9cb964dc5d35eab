package fallback_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
)

const timeout = fallback.DefaultConfirmTimeout

func TestConfirmationTimers(t *testing.T) {
	tests := []struct {
		name    string
		routes  []fallback.Route
		timeout time.Duration // 0 = the env default (5 min); -1 = off
		to      string
		// run sends and drives the clock; it returns the message sent first.
		run func(t *testing.T, e *env, m *fallback.Message)

		wantSent     map[fallback.Route]int
		wantFellBack []string // FellBack.Text() in order
		wantPending  int
		wantDirInval []string
	}{
		{
			name: "unconfirmed past the timeout: SMS and a notice", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				rcpt := send(t, e, m)
				if want := t0.Add(timeout); !rcpt.ConfirmBy.Equal(want) {
					t.Errorf("ConfirmBy %s, want %s", rcpt.ConfirmBy, want)
				}
				e.clock.Advance(timeout - time.Nanosecond)
				if n := len(e.tr["sms"].Sent()); n != 0 {
					t.Fatalf("fell back before the timeout")
				}
				e.clock.Advance(time.Nanosecond)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "unconfirmed on Matrix, then on RCS: SMS after both", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				if !e.r.Awaiting(fallback.RouteMatrix) || e.r.Awaiting(fallback.RouteRCS) {
					t.Errorf("Awaiting matrix %v, rcs %v after the Matrix send; want true, false", e.r.Awaiting(fallback.RouteMatrix), e.r.Awaiting(fallback.RouteRCS))
				}
				e.clock.Advance(timeout)
				if got := e.r.Pending(); !slices.Equal(got, []string{m.ID}) {
					t.Errorf("pending %v after the RCS re-send, want [%s]", got, m.ID)
				}
				if e.r.Awaiting(fallback.RouteMatrix) || !e.r.Awaiting(fallback.RouteRCS) {
					t.Errorf("Awaiting matrix %v, rcs %v after the RCS re-send; want false, true", e.r.Awaiting(fallback.RouteMatrix), e.r.Awaiting(fallback.RouteRCS))
				}
				e.clock.Advance(timeout)
				if e.r.Awaiting(fallback.RouteRCS) {
					t.Error("Awaiting rcs after the SMS")
				}
			},
			wantSent: map[fallback.Route]int{"matrix": 1, "rcs": 1, "sms": 1},
			wantFellBack: []string{
				"Not confirmed on Matrix within 5 minutes — sent by RCS instead.",
				"Not confirmed by RCS within 5 minutes — sent as SMS instead.",
			},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "read before the Router had it: no wait, nothing more", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				// The contact's receipt on this very message overtook it.
				if n := e.r.ConfirmRead(m.Conversation, fallback.RouteMatrix, m.Created); n != 0 {
					t.Errorf("ConfirmRead confirmed %d before any message", n)
				}
				send(t, e, m)
				e.clock.Advance(2 * timeout)
				// A later message still waits.
				later := msg(bobNumber)
				later.ID, later.Created = m.ID+"-later", m.Created.Add(time.Second)
				send(t, e, later)
			},
			wantSent:    map[fallback.Route]int{"matrix": 2},
			wantPending: 1,
		},
		{
			name: "confirmed in time: nothing more", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				e.clock.Advance(timeout - time.Second)
				if !e.r.Confirm(m.ID) {
					t.Error("Confirm = false for a waiting message")
				}
				if e.r.Confirm(m.ID) {
					t.Error("second Confirm = true")
				}
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
		},
		{
			name: "read receipt confirms the messages at or before it", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m) // created t0
				e.clock.Advance(time.Minute)
				later := *m
				later.ID += "-later"
				later.Created = time.Time{} // the Router stamps t0+1m
				send(t, e, &later)
				if n := e.r.ConfirmRead(m.Conversation, fallback.RouteRCS, t0.Add(time.Hour)); n != 0 {
					t.Errorf("ConfirmRead for RCS confirmed %d Matrix messages", n)
				}
				if n := e.r.ConfirmRead("other", fallback.RouteMatrix, t0.Add(time.Hour)); n != 0 {
					t.Errorf("ConfirmRead of another conversation confirmed %d", n)
				}
				if n := e.r.ConfirmRead(m.Conversation, fallback.RouteMatrix, t0.Add(30*time.Second)); n != 1 {
					t.Errorf("ConfirmRead confirmed %d, want 1", n)
				}
				e.clock.Advance(timeout)
			},
			wantSent:     map[fallback.Route]int{"matrix": 2, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "read receipt exactly at the message confirms it", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				if n := e.r.ConfirmRead(m.Conversation, fallback.RouteMatrix, t0); n != 1 {
					t.Errorf("ConfirmRead confirmed %d, want 1", n)
				}
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
		},
		{
			name: "timeout 0: off", to: bobNumber, timeout: -1,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				if rcpt := send(t, e, m); !rcpt.ConfirmBy.IsZero() {
					t.Errorf("ConfirmBy %s with timers off", rcpt.ConfirmBy)
				}
				if e.clock.Timers() != 0 {
					t.Errorf("%d timers with timers off", e.clock.Timers())
				}
				e.clock.Advance(24 * time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
		},
		{
			name: "custom timeout", to: bobNumber, timeout: 90 * time.Second,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.clock.Advance(90 * time.Second)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 90 seconds — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "confirmation after the fallback is ignored", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.clock.Advance(timeout)
				if e.r.Confirm(m.ID) {
					t.Error("Confirm = true after the fallback")
				}
				if n := e.r.ConfirmRead(m.Conversation, fallback.RouteMatrix, t0.Add(time.Hour)); n != 0 {
					t.Errorf("ConfirmRead = %d after the fallback", n)
				}
				e.clock.Advance(time.Hour)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "never twice on the same route", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.clock.Advance(timeout)
				if _, err := e.r.SendVia(context.Background(), m, fallback.RouteSMS); !errors.Is(err, fallback.ErrAlreadySent) {
					t.Errorf("SendVia SMS after the fallback: %v, want ErrAlreadySent", err)
				}
				if _, err := e.r.SendVia(context.Background(), m, fallback.RouteMatrix); !errors.Is(err, fallback.ErrAlreadySent) {
					t.Errorf("SendVia Matrix again: %v, want ErrAlreadySent", err)
				}
				rcpt, err := e.r.Send(context.Background(), m)
				if err != nil || rcpt.Route != fallback.RouteSMS {
					t.Errorf("Send again = %+v, %v; want the SMS receipt", rcpt, err)
				}
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "send as SMS now ends the wait", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				e.clock.Advance(time.Minute)
				rcpt, err := e.r.SendVia(context.Background(), m, fallback.RouteSMS)
				if err != nil || rcpt.Route != fallback.RouteSMS {
					t.Fatalf("SendVia = %+v, %v", rcpt, err)
				}
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1, "sms": 1},
		},
		{
			name: "failed send as SMS now keeps the wait", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.clock.Advance(time.Minute)
				e.tr["sms"].Fail(fallback.Permanent(errors.New("+CMS ERROR: 21")))
				if _, err := e.r.SendVia(context.Background(), m, fallback.RouteSMS); err == nil {
					t.Fatal("SendVia succeeded, want the scripted failure")
				}
				if got := e.r.Pending(); len(got) != 1 {
					t.Errorf("pending %v after a failed SendVia, want the message", got)
				}
				e.clock.Advance(timeout - time.Minute - time.Nanosecond)
				if n := len(e.tr["sms"].Sent()); n != 0 {
					t.Fatal("fell back before the original timeout")
				}
				e.clock.Advance(time.Nanosecond)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "SMS never waits", to: carol,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(carol, false)
				if rcpt := send(t, e, m); !rcpt.ConfirmBy.IsZero() {
					t.Error("SMS receipt waits for a confirmation")
				}
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"sms": 1},
		},
		{
			name: "lowest route of the ladder never waits", to: bobNumber, routes: []fallback.Route{"matrix"},
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
		},
		{
			name: "pinned conversation does not fall back", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				must(e.r.Pin(m.Conversation, fallback.RouteMatrix))
				send(t, e, m)
				e.clock.Advance(time.Hour)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
		},
		{
			name: "pinned to SMS while waiting: falls back to SMS", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				must(e.r.Pin(m.Conversation, fallback.RouteSMS))
				e.clock.Advance(timeout)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "pinned to Matrix while waiting: nothing left, said so", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				send(t, e, m)
				must(e.r.Pin(m.Conversation, fallback.RouteMatrix))
				e.clock.Advance(timeout)
			},
			wantSent:     map[fallback.Route]int{"matrix": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes, and no other route could take it."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "re-send fails: said so", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.tr["sms"].Fail(fallback.Permanent(errors.New("+CMS ERROR: 21 (short message transfer rejected)")))
				e.clock.Advance(timeout)
			},
			wantSent: map[fallback.Route]int{"matrix": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes, and sending it as SMS failed too: " +
				"send by SMS: +CMS ERROR: 21 (short message transfer rejected) (passed over: rcs: contact cannot receive RCS)"},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "re-send retries temporary errors", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.tr["sms"].Fail(temporaryErr{42})
				e.clock.Advance(timeout)
				if got := e.sleep.Delays(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
					t.Errorf("delays %v, want [2s]", got)
				}
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
		{
			name: "message that skipped Matrix falls back from RCS", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["matrix"].SetReachable(bobNumber, false)
				if rcpt := send(t, e, m); rcpt.Route != fallback.RouteRCS {
					t.Fatalf("route %s, want rcs", rcpt.Route)
				}
				e.tr["matrix"].SetReachable(bobNumber, true) // joined meanwhile: still not re-sent upwards
				e.clock.Advance(timeout)
			},
			wantSent:     map[fallback.Route]int{"rcs": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed by RCS within 5 minutes — sent as SMS instead."},
		},
		{
			name: "the route of the conversation does not flap", to: bobNumber,
			run: func(t *testing.T, e *env, m *fallback.Message) {
				e.tr["rcs"].SetReachable(bobNumber, false)
				send(t, e, m)
				e.clock.Advance(timeout)
				if st := e.r.State(m.Conversation); st.Last != fallback.RouteMatrix {
					t.Errorf("conversation route %s after a fallback, want matrix", st.Last)
				}
				if n := len(e.note.Changes()); n != 1 {
					t.Errorf("%d route-change notices, want 1 (the first)", n)
				}
			},
			wantSent:     map[fallback.Route]int{"matrix": 1, "sms": 1},
			wantFellBack: []string{"Not confirmed on Matrix within 5 minutes — sent as SMS instead."},
			wantDirInval: []string{bobNumber},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.routes, func(o *fallback.Options) {
				switch {
				case tt.timeout < 0:
					o.ConfirmTimeout = 0
				case tt.timeout > 0:
					o.ConfirmTimeout = tt.timeout
				}
			})
			m := msg(tt.to)
			m.Created = t0
			tt.run(t, e, m)
			if got := e.sent(); !maps.Equal(got, tt.wantSent) {
				t.Errorf("sent %v, want %v", got, tt.wantSent)
			}
			var texts []string
			for _, f := range e.note.FellBacks() {
				texts = append(texts, f.Text())
				if !strings.HasPrefix(f.Message.ID, m.ID) || f.Message.Text != m.Text {
					t.Errorf("FellBack for message %+v, want %s", f.Message, m.ID)
				}
				if (f.Err == nil) != (f.Receipt != nil) {
					t.Errorf("FellBack has Err %v and Receipt %v", f.Err, f.Receipt)
				}
				if f.Receipt != nil && f.Receipt.Route != f.To {
					t.Errorf("FellBack to %s with a %s receipt", f.To, f.Receipt.Route)
				}
			}
			if !slices.Equal(texts, tt.wantFellBack) {
				t.Errorf("fallback notices\n %q\nwant\n %q", texts, tt.wantFellBack)
			}
			if got := len(e.r.Pending()); got != tt.wantPending {
				t.Errorf("%d pending, want %d", got, tt.wantPending)
			}
			if got := e.dir.Invalidated(); !slices.Equal(got, tt.wantDirInval) {
				t.Errorf("directory invalidated %v, want %v", got, tt.wantDirInval)
			}
			// Every message went at most once by each route.
			for rt, tr := range e.tr {
				seen := map[string]bool{}
				for _, s := range tr.Sent() {
					if seen[s.ID] {
						t.Errorf("message %s sent twice by %s", s.ID, rt)
					}
					seen[s.ID] = true
				}
			}
		})
	}
}

func TestResume(t *testing.T) {
	tests := []struct {
		name     string
		sentAgo  time.Duration
		route    fallback.Route
		pin      fallback.Route
		wantOK   bool
		wantBy   time.Duration // from t0
		advance  time.Duration
		wantSent map[fallback.Route]int
	}{
		{name: "time left", sentAgo: 4 * time.Minute, route: "matrix", wantOK: true, wantBy: time.Minute,
			advance: time.Minute, wantSent: map[fallback.Route]int{"sms": 1}},
		{name: "time left, not yet", sentAgo: 4 * time.Minute, route: "matrix", wantOK: true, wantBy: time.Minute,
			advance: time.Minute - time.Nanosecond, wantSent: map[fallback.Route]int{}},
		{name: "overdue fires at once", sentAgo: time.Hour, route: "matrix", wantOK: true, wantBy: 0,
			advance: 0, wantSent: map[fallback.Route]int{"sms": 1}},
		{name: "SMS does not wait", sentAgo: time.Minute, route: "sms", wantSent: map[fallback.Route]int{}, advance: time.Hour},
		{name: "pinned does not wait", sentAgo: time.Minute, route: "matrix", pin: "matrix", wantSent: map[fallback.Route]int{}, advance: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			e.tr["rcs"].SetReachable(bobNumber, false)
			m := msg(bobNumber)
			if tt.pin != "" {
				must(e.r.Pin(m.Conversation, tt.pin))
			}
			by, ok := e.r.Resume(m, fallback.Receipt{Route: tt.route, At: t0.Add(-tt.sentAgo)})
			if ok != tt.wantOK || (ok && !by.Equal(t0.Add(tt.wantBy))) {
				t.Errorf("Resume = %s, %v; want t0+%s, %v", by, ok, tt.wantBy, tt.wantOK)
			}
			if ok {
				if _, again := e.r.Resume(m, fallback.Receipt{Route: tt.route, At: t0}); again {
					t.Error("second Resume of the same message started another timer")
				}
			}
			e.clock.Advance(tt.advance)
			if got := e.sent(); !maps.Equal(got, tt.wantSent) {
				t.Errorf("sent %v, want %v", got, tt.wantSent)
			}
			if tt.wantSent["sms"] == 1 {
				if _, err := e.r.SendVia(context.Background(), m, tt.route); !errors.Is(err, fallback.ErrAlreadySent) {
					t.Errorf("SendVia on the resumed route: %v, want ErrAlreadySent", err)
				}
			}
		})
	}
}

// send sends m and fails the test on error.
func send(t *testing.T, e *env, m *fallback.Message) *fallback.Receipt {
	t.Helper()
	rcpt, err := e.r.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return rcpt
}
