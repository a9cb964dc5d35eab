package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestResumeAfterRestart: a message sent through Matrix and not confirmed
// when bubbled is killed still falls back to SMS, with its notice, once its
// confirm timeout passes after the restart.
func TestResumeAfterRestart(t *testing.T) {
	const bobNumber = "+15557654321"
	const confirmTimeout = 25 * time.Second
	bobID := id.UserID("@bob:localhost")
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: `  directory:
    static:
      "+15557654321": "@bob:localhost"
  fallback:
    order: [matrix, sms]
    confirm_timeout: 25s`,
	})
	alice := e.newUser("alice")
	bob := e.newUser("bob")
	e.login(alice)
	alice.command(alice.managementRoom(), "start-chat "+bobNumber, 30*time.Second, func(b string) bool { return strings.Contains(b, "Created chat") })
	var portal id.RoomID
	for deadline := time.Now().Add(30 * time.Second); portal == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rooms := alice.roomsWith(ghostMXID(bobNumber)); len(rooms) == 1 {
			portal = rooms[0]
		}
	}
	if portal == "" {
		t.Fatalf("no portal; log:\n%s", e.tail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The first message goes as SMS and invites bob, who joins.
	if _, err := alice.cli.SendText(ctx, portal, "first, before bob joined"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.WaitSent(ctx, 1); err != nil {
		t.Fatal(err)
	}
	alice.waitJoined(portal, bobID)

	sentAt := time.Now()
	if _, err := alice.cli.SendText(ctx, portal, "waits across a restart"); err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(60*time.Second, alice.cli.UserID, func(b string) bool { return b == "waits across a restart" })
	e.waitLog("the Matrix route took it", 30*time.Second, func(l string) bool {
		return strings.Contains(l, "sent a message") && strings.Contains(l, `"route":"matrix"`)
	})
	e.killBubbled()
	e.startBubbled()
	if time.Since(sentAt) > confirmTimeout {
		t.Logf("the restart took longer than the confirm timeout; the fallback is then immediate")
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, confirmTimeout+90*time.Second)
	defer cancelWait()
	sent, err := e.sim.WaitSent(waitCtx, 2)
	if err != nil || sent[1].Text != "waits across a restart" {
		t.Fatalf("after the restart the modem sent %+v, %v; want the unconfirmed message as SMS; log:\n%s", sent, err, e.tail())
	}
	if waited := time.Since(sentAt); waited < confirmTimeout-time.Second {
		t.Errorf("fell back after %s, before the %s confirm timeout", waited, confirmTimeout)
	}
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "Not confirmed on Matrix") && strings.Contains(b, "SMS")
	})
}
