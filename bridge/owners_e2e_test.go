package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// mgmtRoom makes u a management room with the bot.
func mgmtRoom(t *testing.T, u *user) id.RoomID {
	t.Helper()
	resp, err := u.cli.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	u.waitJoined(resp.RoomID, botMXID)
	return resp.RoomID
}

// ask sends cmd in room and waits for a new bot message that matches (one
// more than before: bot replies repeat).
func (u *user) ask(room id.RoomID, cmd string, timeout time.Duration, match func(string) bool) {
	u.t.Helper()
	count := func() int {
		n := 0
		for _, evts := range u.messages {
			for _, evt := range evts {
				if evt.Sender == botMXID && match(evt.Content.AsMessage().Body) {
					n++
				}
			}
		}
		return n
	}
	u.mu.Lock()
	before := count()
	u.mu.Unlock()
	if _, err := u.cli.SendText(context.Background(), room, cmd); err != nil {
		u.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		u.mu.Lock()
		n := count()
		u.mu.Unlock()
		if n > before {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("timed out waiting for the answer to %q; have: %s", cmd, u.dump())
		}
		select {
		case <-u.changed:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// has reports whether any message from sender contains part.
func (u *user) has(sender id.UserID, part string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, evts := range u.messages {
		for _, evt := range evts {
			if (sender == "" || evt.Sender == sender) && strings.Contains(evt.Content.AsMessage().Body, part) {
				return true
			}
		}
	}
	return false
}

// TestLinesBelongToTheirUsers: two Matrix users, two modems. Bob's modem
// answers AT+CNUM with Alice's number: it neither takes over nor deletes
// Alice's line, nor can Bob type her number. A typed number is proven by
// the SMS the line texts itself (a number the SIM does not have never comes
// back); a check cut by a restart is cleanly asked again. Bob cannot send
// from, re-route or log out Alice's line; only an admin gives her number to
// him, and then his login takes it without a check.
func TestLinesBelongToTheirUsers(t *testing.T) {
	e := newEnvWith(t, envOptions{
		sim:    modemsim.Options{OwnNumber: lineNumber, Echo: true},
		second: true,
		sim2:   &modemsim.Options{OwnNumber: lineNumber, Subscriber: "+15550002222", Echo: true},
		cnum:   true,
		env:    []string{"BUBBLED_NETWORK__SMS__NUMBER_CHECK_TIMEOUT=8s"},
	})
	alice, bob, boss := e.newUser("alice"), e.newUser("bob"), e.newUser("boss")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	// Alice: the SIM's +CNUM number is proven by the SMS the line texts it.
	am := mgmtRoom(t, alice)
	alice.ask(am, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "sim0") && strings.Contains(b, "sim1") })
	alice.ask(am, "sim0", 90*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-1111") })
	if sent := e.sim.Sent(); len(sent) != 1 || sent[0].To != lineNumber || !strings.HasPrefix(sent[0].Text, "bubbled line check ") {
		t.Fatalf("alice's modem sent %+v, want one number check to its own number", sent)
	}

	// Bob's modem says it is Alice's number: refused, asked for his own.
	bm := mgmtRoom(t, bob)
	enterNumber := func(b string) bool { return strings.Contains(b, "Please enter your Phone number") }
	bob.ask(bm, "login modem", 60*time.Second, enterNumber)
	if !bob.has(botMXID, "The SIM says its number is +1 555-000-1111, but that is another user's line") {
		t.Fatalf("bob was not told why the SIM's number is refused: %s", bob.dump())
	}
	bob.ask(bm, "+1 555 000 1111", 60*time.Second, func(b string) bool {
		return strings.Contains(b, "already the line of another user") && strings.Contains(b, "set-line-owner")
	})
	// A number the SIM does not have: the check never comes back.
	bob.ask(bm, "login modem", 60*time.Second, enterNumber)
	bob.ask(bm, "+1 555 000 3333", 90*time.Second, func(b string) bool { return strings.Contains(b, "did not come back within 8s") })

	// A restart cuts a check short (the modem answers +CMGS late, the check
	// SMS comes back while bubbled is down): the next login asks again, and
	// the old check SMS is swallowed, never shown.
	e.sim2.SetDelay("+CMGS", 6*time.Second)
	bob.ask(bm, "login modem", 60*time.Second, enterNumber)
	bob.ask(bm, "+1 555 000 2222", 60*time.Second, func(b string) bool { return strings.Contains(b, "Checking that this SIM's number is +1 555-000-2222") })
	e.stopBubbled()
	e.sim2.SetDelay("+CMGS", 0)
	e.startBubbled()
	bob.ask(bm, "login modem", 60*time.Second, enterNumber)
	bob.ask(bm, "+1 555 000 2222", 90*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-2222") })

	// Alice's line still works and is still hers.
	if err := e.sim.Deliver(contactNumber, "hello alice"); err != nil {
		t.Fatal(err)
	}
	_, portal := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hello alice" })
	if err := e.sim2.Deliver(contactNumber, "hello bob"); err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hello bob" })
	if bob.has("", "hello alice") || alice.has("", "bubbled line check") || bob.has("", "bubbled line check") {
		t.Fatalf("a message reached the wrong user or a number check was bridged:\nalice: %s\nbob: %s", alice.dump(), bob.dump())
	}

	// In Alice's chat, Bob can neither send from her line nor re-route it.
	if _, err := alice.cli.InviteUser(ctx, portal, &mautrix.ReqInviteUser{UserID: bob.cli.UserID}); err != nil {
		t.Fatal(err)
	}
	bob.waitJoined(portal, bob.cli.UserID)
	bob.ask(portal, "!sms sms sent by bob", 60*time.Second, func(b string) bool { return strings.Contains(b, "belongs to another user's line") })
	bob.ask(portal, "!sms route sms", 60*time.Second, func(b string) bool { return strings.Contains(b, "belongs to another user's line") })
	aliceSent := len(e.sim.Sent())
	// Nor log it out, by login ID or number.
	bob.ask(bm, "logout 15550001111", 60*time.Second, func(b string) bool { return strings.Contains(b, "not found") })
	// Nor give it to himself.
	bob.ask(bm, "set-line-owner +15550001111 @bob:localhost", 60*time.Second, func(b string) bool { return strings.Contains(b, "administrator") })
	if got := len(e.sim.Sent()); got != aliceSent || len(e.sim.Sent()) != 1 {
		t.Fatalf("alice's modem sent %d messages after bob's commands, want only the number check", got)
	}
	// The directory knows Alice's proven number as hers.
	bob.ask(bm, "whois +15550001111", 60*time.Second, func(b string) bool { return strings.Contains(b, "on Matrix as @alice:localhost") })

	// The admin gives Alice's number to Bob: her line is logged out (she is
	// told), and Bob's next login takes the number without a check.
	xm := mgmtRoom(t, boss)
	boss.ask(xm, "set-line-owner +1 555 000 1111 @bob:localhost", 60*time.Second, func(b string) bool {
		return strings.Contains(b, "now belongs to @bob:localhost") && strings.Contains(b, "The line of @alice:localhost with it is logged out")
	})
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "gave +1 555-000-1111 to another user") })
	bob.ask(bm, "login modem", 90*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-1111") })
	if got := len(e.sim.Sent()); got != 1 {
		t.Errorf("sim0 sent %d messages, want no second number check", got)
	}
	if err := e.sim.Deliver(contactNumber, "now for bob"); err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "now for bob" })

	// Bob logs that line out: its modem is free again, and the number,
	// which the admin gave to Bob, is still not Alice's to take.
	bob.ask(bm, "logout 15550001111", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged out") })
	alice.ask(am, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "Please enter your Phone number") })
	if !alice.has(botMXID, "The SIM says its number is +1 555-000-1111, but that is another user's line") {
		t.Fatalf("alice was not told that the SIM's number is not hers: %s", alice.dump())
	}
}

// TestCostCapsHoldAndSurviveRestart: the per-user daily SMS cap holds a
// message back with a notice in its room, the USSD cap refuses a code, and
// both counts survive a restart.
func TestCostCapsHoldAndSurviveRestart(t *testing.T) {
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		env: []string{"BUBBLED_NETWORK__SMS__USER_RATE_PER_DAY=2", "BUBBLED_NETWORK__SMS__USSD_PER_DAY=1"},
	})
	e.sim.SetUSSD(func(string) (string, int, bool) { return "Your balance is 1.00 EUR", 15, true })
	alice := e.newUser("alice")
	e.login(alice)
	mgmt := alice.managementRoom()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	alice.ask(mgmt, "ussd *100#", 60*time.Second, func(b string) bool { return strings.Contains(b, "Your balance is 1.00 EUR") })
	alice.ask(mgmt, "ussd *100#", 60*time.Second, func(b string) bool {
		return strings.Contains(b, "not sent") && strings.Contains(b, "limit of 1 per day") && strings.Contains(b, "ussd_per_day")
	})

	if err := e.sim.Deliver(contactNumber, "hi"); err != nil {
		t.Fatal(err)
	}
	_, portal := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hi" })
	for _, text := range []string{"one", "two", "three"} {
		if _, err := alice.cli.SendText(ctx, portal, text); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.sim.WaitSent(ctx, 2); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "Held back: your limit of 2 SMS per day across your lines is reached")
	})

	// A restart does not reset the day's count.
	e.stopBubbled()
	e.startBubbled()
	if _, err := alice.cli.SendText(ctx, portal, "four"); err != nil {
		t.Fatal(err)
	}
	// Generous: the homeserver backs off from a bridge that was down.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		n := 0
		for _, b := range alice.noticeTexts() {
			if strings.Contains(b, "Held back: your limit of 2 SMS per day") {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no held notice for the message sent after the restart; log:\n%s", e.tail())
		}
	}
	alice.ask(mgmt, "ussd *100#", 60*time.Second, func(b string) bool {
		return strings.Contains(b, "limit of 1 per day")
	})
	if sent := e.sim.Sent(); len(sent) != 2 {
		t.Fatalf("the modem sent %d messages, want 2 (the cap holds the rest): %+v", len(sent), sent)
	}
}

// TestRCSNewContactGoesToOwner: with two users' lines, an RCS message from
// a new contact goes to network.rcs.owner's line (Bob, who logged in last),
// never to another user's; and past network.rcs.rate_per_day his answers
// take the next route (SMS from his line).
func TestRCSNewContactGoesToOwner(t *testing.T) {
	const contact = "+15557654321"
	fake, rcsConfig := startRBM(t, "owner: \"@bob:localhost\"", "rate_per_day: 1")
	fake.SetCapabilities(contact, "RICHCARD_STANDALONE")
	e := newEnvWith(t, envOptions{
		sim:    modemsim.Options{OwnNumber: lineNumber, Echo: true},
		second: true,
		network: `  fallback:
    confirm_timeout: 0s
` + rcsConfig,
	})
	webhook := fmt.Sprintf("http://127.0.0.1:%d/rcs/rbm", e.asPort)
	alice, bob := e.newUser("alice"), e.newUser("bob")
	am := mgmtRoom(t, alice)
	alice.ask(am, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "sim0") && strings.Contains(b, "sim1") })
	alice.ask(am, "sim0", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-1111") })
	bm := mgmtRoom(t, bob)
	bob.ask(bm, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in: SMS to +1 555-000-2222") })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if _, res, err := fake.PushUserMessage(ctx, webhook, contact, "hello over RCS"); err != nil || res.Status != 200 {
		t.Fatalf("push: %+v %v; log:\n%s", res, err, e.tail())
	}
	_, portal := bob.waitMessage(60*time.Second, ghostMXID(contact), func(b string) bool { return b == "hello over RCS" })
	if alice.has("", "hello over RCS") {
		t.Fatal("the RCS message of a new contact reached alice, not the owner bob")
	}

	// The first answer goes by RCS, the second is past the cap: SMS.
	for _, text := range []string{"first by RCS", "second past the cap"} {
		if _, err := bob.cli.SendText(ctx, portal, text); err != nil {
			t.Fatal(err)
		}
	}
	sent, err := e.sim2.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "second past the cap" || sent[0].To != contact {
		t.Fatalf("bob's modem sent %+v, %v; want the message past the RCS cap; log:\n%s", sent, err, e.tail())
	}
	if m := fake.Messages(); len(m) != 1 || m[0].Text != "first by RCS" {
		t.Fatalf("RBM got %+v, want only the first message", m)
	}
	if n := len(e.sim.Sent()); n != 0 {
		t.Errorf("alice's modem sent %d messages, want none", n)
	}
}
