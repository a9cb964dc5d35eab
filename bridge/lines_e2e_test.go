package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestTwoLinesAndFailover logs two modems in as two lines of one user: each
// conversation answers from the line it came in on, and with failover on, a
// line whose modem is gone sends from the other line, saying so.
func TestTwoLinesAndFailover(t *testing.T) {
	e := newEnvWith(t, envOptions{
		sim:    modemsim.Options{OwnNumber: lineNumber, Echo: true},
		second: true,
		env:    []string{"BUBBLED_NETWORK__SMS__FAILOVER=true"},
	})
	alice := e.newUser("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	mgmt := resp.RoomID
	alice.waitJoined(mgmt, botMXID)
	// Two modems: the bot asks which one, then the second login takes the other.
	alice.command(mgmt, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "sim0") && strings.Contains(b, "sim1") })
	alice.command(mgmt, "sim0", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-1111") })
	alice.command(mgmt, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-2222") })

	ghost := ghostMXID(contactNumber)
	if err := e.sim.Deliver(contactNumber, "to line one"); err != nil {
		t.Fatal(err)
	}
	_, roomA := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "to line one" })
	if err := e.sim2.Deliver(contactNumber, "to line two"); err != nil {
		t.Fatal(err)
	}
	_, roomB := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "to line two" })
	if roomA == roomB {
		t.Fatalf("both lines' conversations with the contact share room %s", roomA)
	}

	// Each room answers from its own line.
	if _, err := alice.cli.SendText(ctx, roomB, "answer from line two"); err != nil {
		t.Fatal(err)
	}
	if sent, err := e.sim2.WaitSent(ctx, 1); err != nil || sent[0].Text != "answer from line two" || sent[0].To != contactNumber {
		t.Fatalf("line two's modem got %+v, %v", sent, err)
	}
	if _, err := alice.cli.SendText(ctx, roomA, "answer from line one"); err != nil {
		t.Fatal(err)
	}
	if sent, err := e.sim.WaitSent(ctx, 1); err != nil || sent[0].Text != "answer from line one" {
		t.Fatalf("line one's modem got %+v, %v", sent, err)
	}
	if n := len(e.sim2.Sent()); n != 1 {
		t.Errorf("line two sent %d messages, want 1", n)
	}

	// Line one's modem goes away: with failover on, its room sends from line two.
	e.sim.Unplug()
	time.Sleep(2 * time.Second)
	if _, err := alice.cli.SendText(ctx, roomA, "while line one is unplugged"); err != nil {
		t.Fatal(err)
	}
	sent, err := e.sim2.WaitSent(ctx, 2)
	if err != nil || sent[1].Text != "while line one is unplugged" || sent[1].To != contactNumber {
		t.Fatalf("line two's modem got %+v, %v; log:\n%s", sent, err, e.tail())
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "goes from your other line +1 555-000-2222")
	})
}
