package fallback_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/bubbled/bubbled/fallback"
)

// BenchmarkRouteDecisionCached measures the Router's decision for one
// message when the directory answers from its cache (the fake Directory is
// a map behind a mutex, like a warm cache): pin check, lookup, Reacher,
// ladder walk. Target: under 10 µs.
func BenchmarkRouteDecisionCached(b *testing.B) {
	cases := []struct {
		name  string
		to    string
		setup func(e *env)
		want  fallback.Route
	}{
		{name: "on Matrix", to: bobNumber, want: fallback.RouteMatrix},
		{name: "not on Matrix, RCS", to: carol, want: fallback.RouteRCS},
		{name: "not on Matrix, no RCS, SMS", to: carol, setup: func(e *env) { e.tr["rcs"].SetReachable(carol, false) }, want: fallback.RouteSMS},
		{name: "pinned", to: bobNumber, setup: func(e *env) { must(e.r.Pin("conv-"+bobNumber, fallback.RouteSMS)) }, want: fallback.RouteSMS},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, nil, nil)
			if c.setup != nil {
				c.setup(e)
			}
			m := &fallback.Message{ID: "$bench", Conversation: "conv-" + c.to, To: c.to, Text: "hello"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				d, err := e.r.Decide(ctx, m)
				if err != nil || d.Route != c.want {
					b.Fatalf("Decide = %+v, %v; want %s", d, err, c.want)
				}
			}
		})
	}
}

// BenchmarkSendCached measures a whole Send through fake transports that
// return at once: the decision plus de-duplication, receipts, conversation
// state (timers off, so nothing piles up on the fake clock).
func BenchmarkSendCached(b *testing.B) {
	cases := []struct {
		name string
		to   string
	}{
		{name: "Matrix", to: bobNumber},
		{name: "RCS", to: carol},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, nil, func(o *fallback.Options) { o.ConfirmTimeout = 0 })
			ctx := context.Background()
			ids := make([]string, 0, 1<<16)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(ids) {
					b.StopTimer()
					ids = append(ids, "$ev"+strconv.Itoa(i))
					b.StartTimer()
				}
				m := &fallback.Message{ID: ids[i], Conversation: "conv-" + c.to, To: c.to, Text: "hello"}
				i++
				if _, err := e.r.Send(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
