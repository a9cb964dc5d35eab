package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// bobOnMatrix sets up a portal with bob (on Matrix by the static
// directory) joined, after a first message that went as SMS; the ladder
// is matrix then sms with the given confirm timeout.
func bobOnMatrix(t *testing.T, ctx context.Context, confirm time.Duration) (*env, *user, *user, id.RoomID) {
	t.Helper()
	const bobNumber = "+15557654321"
	bobID := id.UserID("@bob:localhost")
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: `  directory:
    static:
      "+15557654321": "@bob:localhost"
  fallback:
    order: [matrix, sms]
    confirm_timeout: ` + confirm.String(),
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
	// The first message goes as SMS and invites bob, who joins.
	if _, err := alice.cli.SendText(ctx, portal, "first, before bob joined"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.WaitSent(ctx, 1); err != nil {
		t.Fatal(err)
	}
	alice.waitJoined(portal, bobID)
	return e, alice, bob, portal
}

// TestResumeAfterRestart: a message sent through Matrix and not confirmed
// when bubbled is killed still falls back to SMS, with its notice, once its
// confirm timeout passes after the restart.
func TestResumeAfterRestart(t *testing.T) {
	const confirmTimeout = 25 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, alice, bob, portal := bobOnMatrix(t, ctx, confirmTimeout)

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

// TestReadWhileStopped: bob reads a message that went through Matrix while
// bubbled is down; after the restart the bot's /sync brings his receipt,
// and the resumed wait ends without an SMS.
func TestReadWhileStopped(t *testing.T) {
	const confirmTimeout = 25 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, alice, bob, portal := bobOnMatrix(t, ctx, confirmTimeout)

	sentAt := time.Now()
	resp, err := alice.cli.SendText(ctx, portal, "read while bubbled is down")
	if err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(60*time.Second, alice.cli.UserID, func(b string) bool { return b == "read while bubbled is down" })
	e.waitLog("the Matrix route took it", 30*time.Second, func(l string) bool {
		return strings.Contains(l, "sent a message") && strings.Contains(l, `"route":"matrix"`)
	})
	e.killBubbled()
	if err := bob.cli.MarkRead(ctx, portal, resp.EventID); err != nil {
		t.Fatal(err)
	}
	e.startBubbled()
	time.Sleep(time.Until(sentAt.Add(confirmTimeout + 10*time.Second)))
	if sent := e.sim.Sent(); len(sent) != 1 {
		t.Fatalf("the modem sent %d messages (%+v), want 1: a message read while bubbled was down must not go as SMS; log:\n%s", len(sent), sent, e.tail())
	}
}
