package sms

import (
	"strings"
	"testing"
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
