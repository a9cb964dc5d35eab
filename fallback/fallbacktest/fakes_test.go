package fallbacktest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestClockAdvance(t *testing.T) {
	tests := []struct {
		name    string
		timers  []time.Duration // set at t0
		stop    []int           // indexes stopped before advancing
		advance []time.Duration
		want    []int // indexes fired, in order
		wantNow time.Duration
	}{
		{name: "nothing due", timers: []time.Duration{time.Minute}, advance: []time.Duration{59 * time.Second}, wantNow: 59 * time.Second},
		{name: "fires in time order", timers: []time.Duration{3 * time.Second, time.Second, 2 * time.Second},
			advance: []time.Duration{5 * time.Second}, want: []int{1, 2, 0}, wantNow: 5 * time.Second},
		{name: "same time fires in creation order", timers: []time.Duration{time.Second, time.Second},
			advance: []time.Duration{time.Second}, want: []int{0, 1}, wantNow: time.Second},
		{name: "due now fires on Advance(0)", timers: []time.Duration{0, -time.Second},
			advance: []time.Duration{0}, want: []int{1, 0}},
		{name: "stopped does not fire", timers: []time.Duration{time.Second, 2 * time.Second}, stop: []int{0},
			advance: []time.Duration{time.Minute}, want: []int{1}, wantNow: time.Minute},
		{name: "step by step", timers: []time.Duration{time.Second, 3 * time.Second},
			advance: []time.Duration{2 * time.Second, 2 * time.Second}, want: []int{0, 1}, wantNow: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fallbacktest.NewClock(t0)
			var fired []int
			var handles []fallback.Timer
			for i, d := range tt.timers {
				at := t0.Add(d)
				handles = append(handles, c.AfterFunc(d, func() {
					fired = append(fired, i)
					if now := c.Now(); now.Before(at) {
						t.Errorf("timer %d ran at %s, before its time %s", i, now, at)
					}
				}))
			}
			for _, i := range tt.stop {
				if !handles[i].Stop() {
					t.Errorf("Stop(%d) = false, want true", i)
				}
				if handles[i].Stop() {
					t.Errorf("second Stop(%d) = true, want false", i)
				}
			}
			for _, d := range tt.advance {
				c.Advance(d)
			}
			if !slices.Equal(fired, tt.want) {
				t.Errorf("fired %v, want %v", fired, tt.want)
			}
			if got := c.Now().Sub(t0); got != tt.wantNow {
				t.Errorf("now = t0+%s, want t0+%s", got, tt.wantNow)
			}
			if got := c.Timers(); got != len(tt.timers)-len(tt.stop)-len(tt.want) {
				t.Errorf("%d timers left, want %d", got, len(tt.timers)-len(tt.stop)-len(tt.want))
			}
		})
	}
}

func TestClockTimerSetByTimerFires(t *testing.T) {
	c := fallbacktest.NewClock(t0)
	var fired []time.Duration
	c.AfterFunc(time.Second, func() {
		fired = append(fired, c.Now().Sub(t0))
		c.AfterFunc(time.Second, func() { fired = append(fired, c.Now().Sub(t0)) })
		c.AfterFunc(time.Hour, func() { fired = append(fired, c.Now().Sub(t0)) })
	})
	c.Advance(10 * time.Second)
	if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(fired, want) {
		t.Errorf("fired at %v, want %v", fired, want)
	}
	if c.Timers() != 1 {
		t.Errorf("%d timers left, want 1", c.Timers())
	}
}

func TestSleeper(t *testing.T) {
	c := fallbacktest.NewClock(t0)
	s := &fallbacktest.Sleeper{Clock: c}
	if err := s.Sleep(context.Background(), 3*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Sleep(ctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a cancelled context = %v, want context.Canceled", err)
	}
	if got := s.Delays(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Errorf("delays %v, want [3s]", got)
	}
	if got := c.Now().Sub(t0); got != 3*time.Second {
		t.Errorf("clock moved %s, want 3s", got)
	}
}

func TestTransportConformance(t *testing.T) {
	for _, rt := range []fallback.Route{fallback.RouteMatrix, fallback.RouteRCS, fallback.RouteSMS} {
		t.Run(string(rt), func(t *testing.T) {
			fallbacktest.Conformance(t, fallbacktest.Harness{
				New: func(t *testing.T) fallback.Transport {
					tr := fallbacktest.NewTransport(rt)
					tr.SetReachable("+15550000000", false)
					return tr
				},
				Message: func(n int) *fallback.Message {
					return &fallback.Message{ID: "$" + string(rune('a'+n)), Conversation: "c", To: "+15551234567", Text: "hi"}
				},
				Unreachable: func() *fallback.Message {
					return &fallback.Message{ID: "$u", Conversation: "c", To: "+15550000000", Text: "hi"}
				},
				Delivered: func(t *testing.T, tr fallback.Transport) int {
					return len(tr.(*fallbacktest.Transport).Sent())
				},
			})
		})
	}
}

func TestTransportScript(t *testing.T) {
	tr := fallbacktest.NewTransport(fallback.RouteSMS)
	boom := errors.New("boom")
	tr.Fail(boom, nil, boom)
	msg := &fallback.Message{ID: "$1", Conversation: "c", To: "+15551234567"}
	var got []error
	for range 4 {
		_, err := tr.Send(context.Background(), msg)
		got = append(got, err)
	}
	want := []error{boom, nil, boom, nil}
	for i := range want {
		if !errors.Is(got[i], want[i]) || (want[i] == nil) != (got[i] == nil) {
			t.Errorf("send %d: %v, want %v", i, got[i], want[i])
		}
	}
	if tr.Attempts() != 4 || len(tr.Sent()) != 2 {
		t.Errorf("attempts %d sent %d, want 4 and 2", tr.Attempts(), len(tr.Sent()))
	}
}
