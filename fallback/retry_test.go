package fallback_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		name   string
		policy fallback.RetryPolicy
		n      int
		u      float64
		want   time.Duration
	}{
		{"defaults first retry, mid jitter", fallback.RetryPolicy{}, 1, 0.5, 2 * time.Second},
		{"defaults second retry", fallback.RetryPolicy{}, 2, 0.5, 4 * time.Second},
		{"defaults capped at max", fallback.RetryPolicy{}, 10, 0.5, time.Minute},
		{"jitter low end", fallback.RetryPolicy{}, 1, 0, 1600 * time.Millisecond},
		{"jitter high end", fallback.RetryPolicy{}, 1, 0.999999, 2400 * time.Millisecond},
		{"no jitter", fallback.RetryPolicy{Jitter: -1}, 3, 0.9, 8 * time.Second},
		{"custom multiplier", fallback.RetryPolicy{Initial: time.Second, Multiplier: 3, Jitter: -1}, 3, 0, 9 * time.Second},
		{"huge n does not overflow", fallback.RetryPolicy{Jitter: -1}, 1000, 0, time.Minute},
		{"jitter down low end", fallback.RetryPolicy{Jitter: 0.5, JitterDown: true}, 1, 0, time.Second},
		{"jitter down mid", fallback.RetryPolicy{Jitter: 0.5, JitterDown: true}, 1, 0.5, 1500 * time.Millisecond},
		{"jitter down stays below max", fallback.RetryPolicy{Jitter: 0.5, JitterDown: true}, 10, 0.999999, time.Minute},
		{"jitter down without jitter", fallback.RetryPolicy{Jitter: -1, JitterDown: true}, 2, 0.3, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.policy.Delay(tt.n, tt.u)
			if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Errorf("Delay(%d, %g) = %s, want %s", tt.n, tt.u, got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	sms := fallbacktest.NewTransport(fallback.RouteSMS)
	tests := []struct {
		name    string
		opts    fallback.Options
		wantErr string
	}{
		{"no transports", fallback.Options{}, "no route of the order"},
		{"only routes outside the order", fallback.Options{Order: []fallback.Route{fallback.RouteRCS}, Transports: []fallback.Transport{sms}}, "no route of the order"},
		{"unknown route in order", fallback.Options{Order: []fallback.Route{"pigeon"}, Transports: []fallback.Transport{sms}}, `order[0]: unknown route "pigeon"`},
		{"auto in order", fallback.Options{Order: []fallback.Route{fallback.RouteAuto}, Transports: []fallback.Transport{sms}}, "unknown route"},
		{"duplicate in order", fallback.Options{Order: []fallback.Route{fallback.RouteSMS, fallback.RouteSMS}, Transports: []fallback.Transport{sms}}, "lists sms twice"},
		{"two transports for a route", fallback.Options{Transports: []fallback.Transport{sms, fallbacktest.NewTransport(fallback.RouteSMS)}}, "two transports for route sms"},
		{"transport with unknown route", fallback.Options{Transports: []fallback.Transport{fallbacktest.NewTransport("fax")}}, `unknown route "fax"`},
		{"negative confirm timeout", fallback.Options{Transports: []fallback.Transport{sms}, ConfirmTimeout: -time.Second}, "confirm timeout"},
		{"zero attempts means default, negative fails", fallback.Options{Transports: []fallback.Transport{sms}, Retry: fallback.RetryPolicy{Attempts: -1}}, "retry attempts -1"},
		{"max below initial", fallback.Options{Transports: []fallback.Transport{sms}, Retry: fallback.RetryPolicy{Initial: time.Minute, Max: time.Second}}, "max delay"},
		{"jitter above one", fallback.Options{Transports: []fallback.Transport{sms}, Retry: fallback.RetryPolicy{Jitter: 1.5}}, "jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := fallback.New(tt.opts)
			if err == nil {
				r.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLadderLeavesOutRoutesThatCannotWork(t *testing.T) {
	tests := []struct {
		name   string
		routes []fallback.Route
		noDir  bool
		order  []fallback.Route
		want   []fallback.Route
	}{
		{"all three", nil, false, nil, []fallback.Route{"matrix", "rcs", "sms"}},
		{"no rcs transport", []fallback.Route{"matrix", "sms"}, false, nil, []fallback.Route{"matrix", "sms"}},
		{"matrix needs a directory", nil, true, nil, []fallback.Route{"rcs", "sms"}},
		{"custom order", nil, false, []fallback.Route{"sms", "matrix"}, []fallback.Route{"sms", "matrix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.routes, func(o *fallback.Options) {
				o.Order = tt.order
				if tt.noDir {
					o.Directory = nil
				}
			})
			got := e.r.Ladder()
			if strings.Join(routeStrings(got), ",") != strings.Join(routeStrings(tt.want), ",") {
				t.Errorf("Ladder() = %v, want %v", got, tt.want)
			}
		})
	}
}

func routeStrings(rs []fallback.Route) []string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return s
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := fallback.Sleep(ctx, fallback.SystemClock{}, time.Hour); err == nil {
		t.Fatal("Sleep on a cancelled context returned nil")
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return at once")
	}
}
