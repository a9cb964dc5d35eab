package fallback_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// withdrawing is an RCS fake that can take messages back, recording when
// that happened relative to the SMS sends.
type withdrawing struct {
	*fallbacktest.Transport
	mu    *sync.Mutex
	order *[]string
}

func (w withdrawing) Withdraw(_ context.Context, m *fallback.Message) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*w.order = append(*w.order, "withdraw "+m.ID)
}

// recording is an SMS fake that records its sends in the same order.
type recording struct {
	*fallbacktest.Transport
	mu    *sync.Mutex
	order *[]string
}

func (r recording) Send(ctx context.Context, m *fallback.Message) (*fallback.Receipt, error) {
	r.mu.Lock()
	*r.order = append(*r.order, "sms "+m.ID)
	r.mu.Unlock()
	return r.Transport.Send(ctx, m)
}

// TestWithdrawBeforeFallingBack: an RCS message that stays unconfirmed is
// withdrawn before the SMS that replaces it is sent; a route that cannot
// withdraw is simply re-sent.
func TestWithdrawBeforeFallingBack(t *testing.T) {
	var mu sync.Mutex
	var order []string
	e := newEnv(t, []fallback.Route{fallback.RouteRCS, fallback.RouteSMS}, func(o *fallback.Options) {
		for i, tr := range o.Transports {
			ft := tr.(*fallbacktest.Transport)
			switch ft.Route() {
			case fallback.RouteRCS:
				o.Transports[i] = withdrawing{ft, &mu, &order}
			case fallback.RouteSMS:
				o.Transports[i] = recording{ft, &mu, &order}
			}
		}
	})
	m := msg(carol)
	if _, err := e.r.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(timeout)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"withdraw " + m.ID, "sms " + m.ID}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}
