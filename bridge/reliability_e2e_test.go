package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// delivered reports whether u has seen a message status saying eventID was
// delivered to the contact's ghost. Call it under u's lock (waitFor).
func (u *user) deliveredLocked(eventID id.EventID, ghost id.UserID) bool {
	for _, st := range u.statuses {
		c, ok := st.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		if !ok || c.RelatesTo.EventID != eventID || c.DeliveredToUsers == nil {
			continue
		}
		for _, to := range *c.DeliveredToUsers {
			if to == ghost {
				return true
			}
		}
	}
	return false
}

// TestSMSReliability runs issue 3's line through the whole bridge on
// Dendrite: delivery reports of a 3-part message folded into one delivery
// receipt, a temporary network error retried, a permanent one reported in
// the room, a hung modem recovered, and an unplug/replug in the middle of a
// burst losing nothing.
func TestSMSReliability(t *testing.T) {
	e := newEnvWith(t, envOptions{
		sim:  modemsim.Options{OwnNumber: lineNumber, Echo: true},
		link: true,
		env: []string{
			"BUBBLED_NETWORK__SMS__WATCHDOG_INTERVAL=5s",
			"BUBBLED_NETWORK__SMS__COMMAND_TIMEOUT=2s",
			"BUBBLED_NETWORK__SMS__SEND_TIMEOUT=5s",
		},
	})
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)
	if err := e.sim.Deliver(contactNumber, "hi"); err != nil {
		t.Fatal(err)
	}
	_, portal := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "hi" })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	send := func(text string) id.EventID {
		t.Helper()
		resp, err := alice.cli.SendText(ctx, portal, text)
		if err != nil {
			t.Fatal(err)
		}
		return resp.EventID
	}

	// Status reports for the 3 parts fold into one delivery receipt.
	long := strings.Repeat("A reply long enough for three parts. ", 11)
	longEvt := send(long)
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != long || len(sent[0].MRs) != 3 || !sent[0].StatusReport {
		t.Fatalf("modem got %+v, %v; want 3 parts asking for status reports", sent, err)
	}
	for i, mr := range sent[0].MRs {
		if i == 2 {
			time.Sleep(time.Second)
			alice.mu.Lock()
			early := alice.deliveredLocked(longEvt, ghost)
			alice.mu.Unlock()
			if early {
				t.Fatalf("delivered after 2 of 3 status reports")
			}
		}
		if err := e.sim.DeliverStatusReport(mr, 0); err != nil {
			t.Fatal(err)
		}
	}
	alice.waitFor("the delivery receipt of the 3-part SMS", 30*time.Second, func() bool { return alice.deliveredLocked(longEvt, ghost) })

	// CMS 38 (network out of order) is temporary: retried, then sent and delivered.
	e.sim.FailCMGS(38, 1)
	retried := send("after a network hiccup")
	sent, err = e.sim.WaitSent(ctx, 2)
	if err != nil || sent[1].Text != "after a network hiccup" {
		t.Fatalf("modem got %+v, %v", sent, err)
	}
	if err := e.sim.DeliverStatusReport(sent[1].MRs[0], 0); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the delivery receipt after CMS 38", 30*time.Second, func() bool { return alice.deliveredLocked(retried, ghost) })

	// CMS 21 (rejected) is permanent: a notice says why; nothing is sent.
	e.sim.FailCMGS(21, 1)
	send("this one is rejected")
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "was not delivered") && strings.Contains(b, "rejected")
	})
	if n := e.sentCount(); n != 2 {
		t.Errorf("the modem sent %d messages, want 2", n)
	}

	// A modem that hangs is recovered by the ladder; the queued message goes out.
	e.sim.HangUntilReset()
	send("after the modem hung")
	sent, err = e.sim.WaitSent(ctx, 3)
	if err != nil || sent[2].Text != "after the modem hung" {
		t.Fatalf("after the hang the modem got %+v, %v; log:\n%s", sent, err, e.tail())
	}
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "working again") })

	// Unplug in the middle of a burst, replug: nothing is lost.
	burst := []string{"burst one", "burst two", "burst three", "burst four"}
	send(burst[0])
	if _, err := e.sim.WaitSent(ctx, 4); err != nil {
		t.Fatal(err)
	}
	e.sim.Unplug()
	for _, text := range burst[1:] {
		send(text)
	}
	time.Sleep(2 * time.Second)
	if err := e.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]int{}
		for _, s := range e.sim.Sent() {
			got[s.Text]++
		}
		missing := 0
		for _, text := range burst {
			if got[text] == 0 {
				missing++
			}
		}
		if missing == 0 {
			for _, text := range burst {
				if got[text] > 2 {
					t.Errorf("%q was sent %d times", text, got[text])
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d burst messages never reached the modem after the replug; log:\n%s", missing, e.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
