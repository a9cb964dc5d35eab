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

// TestModemCare covers the SIM and modem commands through the bot on
// Dendrite: the PIN asked at login, status, a USSD code, a missed-call
// notice, and a SIM that needs its PIN again after a power cut, unlocked
// with the pin command.
func TestModemCare(t *testing.T) {
	e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, PIN: "1234", Echo: true}, link: true})
	e.sim.SetUSSD(func(code string) (string, int, bool) {
		if code == "*100#" {
			return "Your balance is 12.34 EUR", 15, true
		}
		return "", 0, false
	})
	alice := e.newUser("alice")
	ctx := context.Background()

	// Login: the SIM is locked, so the bot asks for the PIN.
	resp, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	mgmt := resp.RoomID
	alice.waitJoined(mgmt, botMXID)
	alice.command(mgmt, "login modem", 60*time.Second, func(b string) bool { return strings.HasPrefix(b, "Please enter your SIM PIN") })
	alice.command(mgmt, "1234", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in") })

	defer func() {
		if t.Failed() {
			t.Log(e.tail())
		}
	}()
	alice.command(mgmt, "status", 30*time.Second, func(b string) bool {
		return strings.Contains(b, "+1 555-000-1111") && strings.Contains(b, "SIM READY") && strings.Contains(b, "dBm")
	})
	alice.command(mgmt, "ussd *100#", 30*time.Second, func(b string) bool { return strings.Contains(b, "Your balance is 12.34 EUR") })

	// A missed call: the line hangs up and the caller's room says so.
	if err := e.sim.Call(contactNumber); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool {
		return strings.Contains(b, "Missed call from +1 555-765-4321")
	})

	// A power cut: bubbled restarts, the SIM wants its PIN, the owner is told
	// and unlocks it with the pin command; then SMS flow again.
	e.stopBubbled()
	e.sim.Unplug()
	if err := e.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	e.startBubbled()
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "needs the PIN") })
	alice.command(mgmt, "pin 1234", 60*time.Second, func(b string) bool { return strings.Contains(b, "is unlocked") })
	if err := e.sim.Deliver(contactNumber, "after the PIN"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "after the PIN" })
}
