package sms

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"go.mau.fi/util/dbutil"
)

// The inbound mailbox's lanes (mailbox.go): each sender's messages in
// order, one at a time; different senders concurrently. These tests store
// SMS on modemsim's SIM and hand them through a real Line.

// laneLog records what a handler took, per sender, and how many calls ran
// at once.
type laneLog struct {
	mu      sync.Mutex
	got     map[string][]string // sender -> texts accepted, in order
	calls   map[string]int      // text -> handler calls
	running int
	most    int
}

func newLaneLog() *laneLog {
	return &laneLog{got: map[string][]string{}, calls: map[string]int{}}
}

// enter counts a call and its concurrency; leave ends it.
func (g *laneLog) enter(m *Message) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls[m.Text]++
	g.running++
	g.most = max(g.most, g.running)
}

func (g *laneLog) leave(m *Message, took bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if took {
		g.got[m.From] = append(g.got[m.From], m.Text)
	}
}

func (g *laneLog) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, texts := range g.got {
		n += len(texts)
	}
	return n
}

func (g *laneLog) callCount(text string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[text]
}

func (g *laneLog) texts(from string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got[from])
}

// laneLine opens a Line on sim and db with handler h, receiving.
func laneLine(t *testing.T, sim *modemsim.Sim, db *dbutil.Database, h Handler) *Line {
	t.Helper()
	l := NewLine(Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second, WatchdogInterval: -1}, db, testLog(t), h)
	l.retry = fastRetry
	t.Cleanup(func() { _ = l.Close() })
	ctx := testCtx(t)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

// storeBurst stores n SMS from each sender on the SIM, interleaved:
// "<i> from <sender>".
func storeBurst(t *testing.T, sim *modemsim.Sim, senders []string, n int) map[string][]string {
	t.Helper()
	want := map[string][]string{}
	for i := range n {
		for _, s := range senders {
			text := fmt.Sprintf("%d from %s", i, s)
			if err := sim.StoreOnly(s, text); err != nil {
				t.Fatal(err)
			}
			want[s] = append(want[s], text)
		}
	}
	return want
}

// TestLanesKeepEachSendersOrder: 4 senders x 8 SMS waiting on the SIM are
// handed concurrently (more than one handler call at a time) and each
// sender's in the order they arrived, each exactly once.
func TestLanesKeepEachSendersOrder(t *testing.T) {
	sim := startSim(t, modemsim.Options{StorageSize: 40})
	senders := []string{alice, bob, "+15557770000", "MyBank"}
	want := storeBurst(t, sim, senders, 8)
	g := newLaneLog()
	laneLine(t, sim, testDB(t), func(_ context.Context, m *Message) error {
		g.enter(m)
		time.Sleep(5 * time.Millisecond) // let the lanes overlap
		g.leave(m, true)
		return nil
	})
	eventually(t, "32 messages", func() bool { return g.count() == 32 })
	for _, s := range senders {
		if got := g.texts(s); !slices.Equal(got, want[s]) {
			t.Errorf("%s: handed %q, want %q", s, got, want[s])
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for text, n := range g.calls {
		if n != 1 {
			t.Errorf("%q handed %d times", text, n)
		}
	}
	if g.most < 2 {
		t.Errorf("at most %d handler calls ran at once, want senders handed concurrently", g.most)
	}
}

// TestLanesASlowSenderHoldsOnlyItself: while the handler is stuck on
// alice's first SMS, bob's SMS behind it are handed; alice's second waits
// for her first.
func TestLanesASlowSenderHoldsOnlyItself(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	want := storeBurst(t, sim, []string{alice, bob}, 2)
	bobDone := make(chan struct{})
	var passed bool // alice's first saw bob's SMS handed while it was stuck
	g := newLaneLog()
	laneLine(t, sim, testDB(t), func(ctx context.Context, m *Message) error {
		g.enter(m)
		if m.Text == want[alice][0] {
			select {
			case <-bobDone:
				passed = true
			case <-time.After(10 * time.Second): // the old one-at-a-time pump never gets here
			case <-ctx.Done():
			}
		}
		g.leave(m, true)
		if m.From == bob && len(g.texts(bob)) == 2 {
			close(bobDone)
		}
		return nil
	})
	eventually(t, "4 messages", func() bool { return g.count() == 4 })
	if !passed {
		t.Error("bob's SMS waited behind alice's stuck one")
	}
	if got := g.texts(alice); !slices.Equal(got, want[alice]) {
		t.Errorf("alice: handed %q, want %q", got, want[alice])
	}
}

// TestLanesAFailingSenderIsRetriedAlone: the handler fails alice's first SMS
// until bob's three are in (so with one lane for everyone it never
// succeeds); bob's are each handed once, alice's first is retried and her
// second is not offered before her first is taken.
func TestLanesAFailingSenderIsRetriedAlone(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	want := storeBurst(t, sim, []string{alice, bob}, 3)
	g := newLaneLog()
	var early []string // alice's SMS offered while her first was not taken
	laneLine(t, sim, testDB(t), func(_ context.Context, m *Message) error {
		g.enter(m)
		if m.From != alice {
			g.leave(m, true)
			return nil
		}
		if m.Text != want[alice][0] && len(g.texts(alice)) == 0 {
			early = append(early, m.Text) // alice's lane is one goroutine at a time
		}
		// Her first fails at least once (even when bob's lane already
		// finished: under load it may), and on until bob has all three.
		if m.Text == want[alice][0] && (g.callCount(m.Text) == 1 || len(g.texts(bob)) < 3) {
			g.leave(m, false)
			return fmt.Errorf("the portal is busy")
		}
		g.leave(m, true)
		return nil
	})
	eventually(t, "6 messages", func() bool { return g.count() == 6 })
	time.Sleep(100 * time.Millisecond) // a stray re-hand would show now
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, text := range want[bob] {
		if n := g.calls[text]; n != 1 {
			t.Errorf("bob's %q handed %d times, want once", text, n)
		}
	}
	if n := g.calls[want[alice][0]]; n < 2 {
		t.Errorf("alice's first handed %d times, want failures and a success", n)
	}
	if !slices.Equal(g.got[alice], want[alice]) || !slices.Equal(g.got[bob], want[bob]) {
		t.Errorf("handed alice %q, bob %q", g.got[alice], g.got[bob])
	}
	if len(early) > 0 {
		t.Errorf("alice's later SMS %q offered before her first was taken", early)
	}
}

// TestLanesStopWhileBusy: the Line closes while the handler holds alice's
// second SMS (it gives up: not taken) and bob's second (it takes it as the
// close comes); the next Line hands exactly what was not taken, in order.
func TestLanesStopWhileBusy(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	want := storeBurst(t, sim, []string{alice, bob}, 3)
	first := newLaneLog()
	held := make(chan struct{}, 2)
	l1 := laneLine(t, sim, db, func(ctx context.Context, m *Message) error {
		first.enter(m)
		if m.Text == want[alice][1] || m.Text == want[bob][1] {
			held <- struct{}{}
			<-ctx.Done()
			took := m.From == bob
			first.leave(m, took)
			if took {
				return nil
			}
			return ctx.Err()
		}
		first.leave(m, true)
		return nil
	})
	for range 2 { // both lanes busy at once (one-at-a-time never gets there)
		select {
		case <-held:
		case <-time.After(15 * time.Second):
			t.Fatal("alice's and bob's second SMS were not in the handler at the same time")
		}
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := first.count(); got != 3 {
		t.Fatalf("first Line took %d SMS, want alice's first and bob's first two", got)
	}
	second := newLaneLog()
	laneLine(t, sim, db, func(_ context.Context, m *Message) error {
		second.enter(m)
		second.leave(m, true)
		return nil
	})
	eventually(t, "the rest", func() bool { return second.count() == 3 })
	time.Sleep(100 * time.Millisecond) // a stray re-hand would show now
	if got := second.texts(alice); !slices.Equal(got, want[alice][1:]) {
		t.Errorf("second Line handed alice %q, want %q", got, want[alice][1:])
	}
	if got := second.texts(bob); !slices.Equal(got, want[bob][2:]) {
		t.Errorf("second Line handed bob %q, want %q", got, want[bob][2:])
	}
	if second.count() != 3 {
		t.Errorf("second Line handed %d SMS, want 3", second.count())
	}
}

// TestSenderKey: one number in national and international form shares a
// lane; sender names ignore case and punctuation.
func TestSenderKey(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"+447700900123", "07700900123"},
		{"+44 7700 900123", "447700900123"},
		{"MyBank", "my-bank"},
	} {
		if senderKey(c.a) != senderKey(c.b) {
			t.Errorf("senderKey(%q) = %q, senderKey(%q) = %q: want one lane", c.a, senderKey(c.a), c.b, senderKey(c.b))
		}
	}
	if senderKey(alice) == senderKey(bob) {
		t.Errorf("alice and bob share lane %q", senderKey(alice))
	}
}
