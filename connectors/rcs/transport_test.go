package rcs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// The RCS transport passes the conformance suite every transport passes,
// against its real backend: the RBM provider over HTTP to the in-repo RBM
// fake. The setup here is self-contained (names prefixed tr).

const (
	trReachable   = "+15557654321"
	trUnreachable = "+15550000000"
)

func TestTransportConformance(t *testing.T) {
	fallbacktest.Conformance(t, fallbacktest.Harness{
		New: func(t *testing.T) fallback.Transport {
			fake, prov := trRBM(t)
			return &trConforming{Transport: NewTransport(prov, TransportConfig{ReachableTTL: time.Hour, UnreachableTTL: time.Hour, MessageTTL: time.Hour, Log: zaptest.NewLogger(t)}), fake: fake}
		},
		Message: func(n int) *fallback.Message {
			return &fallback.Message{ID: fmt.Sprintf("$rcs%d", n), Conversation: "line/15557654321", To: trReachable, Text: fmt.Sprintf("message %d", n)}
		},
		Unreachable: func() *fallback.Message {
			return &fallback.Message{ID: "$norcs", Conversation: "line/15550000000", To: trUnreachable, Text: "hi"}
		},
		Delivered: func(t *testing.T, tr fallback.Transport) int { return len(tr.(*trConforming).fake.Messages()) },
	})
}

// trConforming keeps the fake next to the transport for Delivered.
type trConforming struct {
	*Transport
	fake *rbmfake.Server
}

// trRBM starts the RBM fake, which can reach trReachable only, and an RBM
// provider talking to it.
func trRBM(t *testing.T) (*rbmfake.Server, *RBM) {
	t.Helper()
	fake, err := rbmfake.Start(rbmfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	fake.SetCapabilities(trReachable, "RICHCARD_STANDALONE")
	prov, err := NewRBM(RBMConfig{AgentID: fake.AgentID(), ServiceAccountKey: fake.ServiceAccountJSON(), BaseURL: fake.URL(), TokenURL: fake.TokenURL()})
	if err != nil {
		t.Fatal(err)
	}
	return fake, prov
}

// TestTransportCapabilityCache: answers are reused for their lifetime (a
// positive and a negative one each their own), asked again after it or
// after Invalidate, and an unsubscribed contact is unreachable until they
// subscribe again.
func TestTransportCapabilityCache(t *testing.T) {
	fake, prov := trRBM(t)
	clock := fallbacktest.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	tr := NewTransport(prov, TransportConfig{ReachableTTL: time.Hour, UnreachableTTL: time.Minute, Clock: clock, Log: zaptest.NewLogger(t)})
	ctx := context.Background()
	yes, no := &fallback.Message{ID: "$y", To: trReachable}, &fallback.Message{ID: "$n", To: trUnreachable}
	reach := func(msg *fallback.Message, want bool, asks int) {
		t.Helper()
		before := fake.APIRequests()
		got, err := tr.Reachable(ctx, msg)
		if err != nil || got != want {
			t.Fatalf("Reachable(%s) = %v, %v; want %v", msg.To, got, err, want)
		}
		if n := fake.APIRequests() - before; n != asks {
			t.Fatalf("Reachable(%s) asked the provider %d times, want %d", msg.To, n, asks)
		}
	}
	reach(yes, true, 1)
	reach(no, false, 1)
	reach(yes, true, 0)
	reach(no, false, 0)
	clock.Advance(2 * time.Minute) // the negative answer expired, the positive one not
	reach(no, false, 1)
	reach(yes, true, 0)
	tr.Invalidate(trReachable)
	reach(yes, true, 1)
	tr.SetSubscribed(trReachable, false)
	reach(yes, false, 0)
	tr.SetSubscribed(trReachable, true)
	reach(yes, true, 0)
	if ok, err := tr.Reachable(ctx, &fallback.Message{ID: "$f", To: trReachable, File: &fallback.File{URL: "https://x/y"}}); ok || err != nil {
		t.Fatalf("Reachable(file) without a media store = %v, %v; want false", ok, err)
	}
}

// TestTransportNotRCSAndRevoke: a number the provider no longer reaches is
// unreachable and forgotten by the cache; Revoke takes back the message of
// a Matrix event by its derived ID.
func TestTransportNotRCSAndRevoke(t *testing.T) {
	fake, prov := trRBM(t)
	tr := NewTransport(prov, TransportConfig{ReachableTTL: time.Hour, UnreachableTTL: time.Hour, Log: zaptest.NewLogger(t)})
	ctx := context.Background()
	msg := &fallback.Message{ID: "$ev1", To: trReachable, Text: "hi"}
	if ok, err := tr.Reachable(ctx, msg); !ok || err != nil {
		t.Fatalf("Reachable = %v, %v", ok, err)
	}
	rcpt, err := tr.Send(ctx, msg)
	if err != nil || rcpt.Route != fallback.RouteRCS || rcpt.RemoteID != MessageID("$ev1", 0) || rcpt.Parts != 1 {
		t.Fatalf("Send = %+v, %v", rcpt, err)
	}
	tr.Revoke(ctx, trReachable, "$ev1")
	if revs := fake.Revocations(); len(revs) != 1 || revs[0].MessageID != MessageID("$ev1", 0) || revs[0].Phone != trReachable {
		t.Fatalf("revocations = %+v, want the message of $ev1", revs)
	}
	fake.RemoveNumber(trReachable)
	_, err = tr.Send(ctx, &fallback.Message{ID: "$ev2", To: trReachable, Text: "hi"})
	if got := fallback.Classify(err); got != fallback.ClassUnreachable {
		t.Fatalf("Send to a number gone from RCS: class %s (%v), want unreachable", got, err)
	}
	if ok, err := tr.Reachable(ctx, msg); ok || err != nil {
		t.Fatalf("Reachable after ErrNotRCS = %v, %v; want the cache forgotten and false", ok, err)
	}
}

// fakeBudget is a Budget in memory.
type fakeBudget struct {
	used  map[string]int
	taken int
}

func (b *fakeBudget) Take(_ context.Context, name string, limit int) error {
	if limit > 0 && b.used[name] >= limit {
		return errors.New("the limit of 2 per day is reached")
	}
	b.used[name]++
	b.taken++
	return nil
}

func (b *fakeBudget) Return(_ context.Context, name string) error {
	b.used[name]--
	return nil
}

// TestTransportBudget: past the daily cap Send is unreachable (the next
// route takes the message) and the provider is not asked; a failed send
// gives its use back.
func TestTransportBudget(t *testing.T) {
	fake, prov := trRBM(t)
	b := &fakeBudget{used: map[string]int{}}
	tr := NewTransport(prov, TransportConfig{ReachableTTL: time.Hour, UnreachableTTL: time.Hour, Log: zaptest.NewLogger(t), Budget: b, PerDay: 2})
	ctx := context.Background()
	fake.RemoveNumber(trReachable)
	if _, err := tr.Send(ctx, &fallback.Message{ID: "$gone", To: trReachable, Text: "hi"}); err == nil {
		t.Fatal("send to a number without RCS worked")
	}
	if b.used["rcs"] != 0 {
		t.Fatalf("a failed send used %d of the budget, want 0", b.used["rcs"])
	}
	fake.SetCapabilities(trReachable, "RICHCARD_STANDALONE")
	for i := 0; i < 2; i++ {
		if _, err := tr.Send(ctx, &fallback.Message{ID: fmt.Sprint("$ok", i), To: trReachable, Text: "hi"}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	_, err := tr.Send(ctx, &fallback.Message{ID: "$over", To: trReachable, Text: "hi"})
	if got := fallback.Classify(err); got != fallback.ClassUnreachable || !strings.Contains(err.Error(), "rate_per_day") {
		t.Fatalf("send past the cap: class %s (%v), want unreachable naming the key", got, err)
	}
	if n := len(fake.Messages()); n != 2 {
		t.Errorf("the provider got %d messages, want 2", n)
	}
}
