package sms

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

func TestNumberCheck(t *testing.T) {
	c, err := NewNumberCheck("+15550001111")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewNumberCheck("+15550001111")
	if len(c.Code) != 8 || c.Code == other.Code {
		t.Fatalf("codes %q and %q: want 8 random digits each", c.Code, other.Code)
	}
	out := c.Message()
	back := &Message{From: "+15550001111", Text: out.Text}
	tests := []struct {
		name    string
		check   NumberCheck
		m       *Message
		matches bool
		isCheck bool
	}{
		{"came back", c, back, true, true},
		{"another check's code", other, back, false, true},
		{"from another number", c, &Message{From: "+15557654321", Text: out.Text}, false, false},
		{"a person's message", c, &Message{From: "+15550001111", Text: "hello " + c.Code}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check.Matches(tc.m); got != tc.matches {
				t.Errorf("Matches = %v, want %v", got, tc.matches)
			}
			if got := IsNumberCheck(tc.m, "+15550001111"); got != tc.isCheck {
				t.Errorf("IsNumberCheck = %v, want %v", got, tc.isCheck)
			}
		})
	}
	if !IsNumberCheckOutcome(Outcome{MessageID: out.ID}) || IsNumberCheckOutcome(Outcome{MessageID: "$event"}) {
		t.Error("IsNumberCheckOutcome does not tell check SMS from others")
	}
}

func TestPendingCheck(t *testing.T) {
	c, _ := NewNumberCheck("+15550001111")
	old, _ := NewNumberCheck("+15550001111")
	p := c.Start()
	if !p.Consume(&Message{From: c.Number, Text: old.Message().Text}) {
		t.Error("an older check of the same number is not consumed")
	}
	select {
	case err := <-p.Done():
		t.Fatalf("an older check completed this one: %v", err)
	default:
	}
	if p.Consume(&Message{From: c.Number, Text: "hi"}) {
		t.Error("a person's message was consumed")
	}
	p.Outcome(Outcome{MessageID: old.Message().ID, Kind: OutcomeFailed})
	p.Outcome(Outcome{MessageID: c.Message().ID, Kind: OutcomeSent})
	if !p.Consume(&Message{From: c.Number, Text: c.Message().Text}) {
		t.Fatal("the check's own SMS was not consumed")
	}
	if err := <-p.Done(); err != nil {
		t.Fatalf("done with %v, want nil", err)
	}

	held := c.Start()
	held.Outcome(Outcome{MessageID: c.Message().ID, Kind: OutcomeHeld, Reason: "the line's limit of 200 SMS per day is reached"})
	if err := <-held.Done(); err == nil || !strings.Contains(err.Error(), "limit of 200") {
		t.Fatalf("held check ended with %v, want the reason", err)
	}
}

// TestNotYetLetsANumberCheckPass: while the handler answers ErrNotYet to a
// contact's message (the login flow has no chat for it yet), the number
// check behind it still gets through; the contact's message stays pending
// and is handed over first once the handler takes it.
func TestNotYetLetsANumberCheckPass(t *testing.T) {
	sim := startSim(t, modemsim.Options{OwnNumber: "+15550001111"})
	check, _ := NewNumberCheck("+15550001111")
	p := check.Start()
	var mu sync.Mutex
	ready := false
	var got []string
	h := func(_ context.Context, m *Message) error {
		if p.Consume(m) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if !ready {
			return fmt.Errorf("no login yet: %w", ErrNotYet)
		}
		got = append(got, m.Text)
		return nil
	}
	l := NewLine(Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second, WatchdogInterval: -1}, testDB(t), testLog(t), h)
	l.retry = fastRetry
	t.Cleanup(func() { _ = l.Close() })
	ctx := testCtx(t)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sim.StoreOnly("+15557654321", "waiting on the SIM"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Enqueue(ctx, check.Message()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.Done():
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the number check did not get past the waiting message")
	}
	if err := sim.Deliver("+15557654321", "after the check"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	eventually(t, "both messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "waiting on the SIM" || got[1] != "after the check" {
		t.Errorf("handed over %q, want the waiting message first", got)
	}
}

// TestStaleNumberCheckIsDropped: a number check still queued when its Line
// closed (the login flow is gone) is failed at the next Open instead of
// texting a code to a number nobody checks; a person's message queued
// beside it is sent.
func TestStaleNumberCheckIsDropped(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	cfg := Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second, WatchdogInterval: -1}
	first := NewLine(cfg, db, testLog(t), newRecorder().handle)
	ctx := testCtx(t)
	check, _ := NewNumberCheck("+15557654321")
	for _, m := range []OutMessage{check.Message(), {ID: "$person", To: "+15557654321", Text: "hi"}} {
		if err := first.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	_ = first.Close()

	out := &outcomes{}
	cfg.OnOutcome = out.handle
	second := NewLine(cfg, db, testLog(t), newRecorder().handle)
	t.Cleanup(func() { _ = second.Close() })
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	sent, err := sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "hi" {
		t.Fatalf("sent %+v, %v; want the person's message", sent, err)
	}
	eventually(t, "the check's Failed outcome", func() bool {
		for _, o := range out.all() {
			if o.MessageID == check.Message().ID && o.Kind == OutcomeFailed {
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(sim.Sent()); n != 1 {
		t.Errorf("sent %d messages, want only the person's", n)
	}
}
