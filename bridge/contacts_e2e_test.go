package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/contacts/carddavtest"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// contactsEnv starts bubbled with a CardDAV server (go-webdav's own, basic
// auth) that knows contactNumber as "Ann Lee", plus extra network YAML.
func contactsEnv(t *testing.T, extra string) (*env, *carddavtest.Server) {
	t.Helper()
	srv := carddavtest.New("alice", "app-password-1")
	t.Cleanup(srv.Close)
	srv.Put("ann", "Ann Lee", contactNumber)
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: fmt.Sprintf(`  contacts:
    carddav:
      url: %s/
      username: alice
      password: app-password-1
    sync_interval: 2s
%s`, srv.URL(), extra),
	})
	return e, srv
}

func (u *user) waitDisplayName(ghost id.UserID, want string, timeout time.Duration) {
	u.t.Helper()
	var got string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		resp, err := u.cli.GetDisplayName(context.Background(), ghost)
		if err == nil && resp.DisplayName == want {
			return
		}
		if resp != nil {
			got = resp.DisplayName
		}
	}
	u.t.Fatalf("%s is named %q, want %q", ghost, got, want)
}

func (u *user) waitRoomName(room id.RoomID, want func(string) bool, timeout time.Duration) string {
	u.t.Helper()
	var name event.RoomNameEventContent
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := u.cli.StateEvent(context.Background(), room, event.StateRoomName, "", &name); err == nil && want(name.Name) {
			return name.Name
		}
	}
	u.t.Fatalf("room %s is named %q", room, name.Name)
	return ""
}

// TestContactNames: an SMS from a number in the CardDAV contacts comes from
// a ghost with the contact's name; renaming the contact on the server
// renames the ghost and its room after the next sync.
func TestContactNames(t *testing.T) {
	e, srv := contactsEnv(t, "")
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)
	if err := e.sim.Deliver(contactNumber, "hi, it's Ann"); err != nil {
		t.Fatal(err)
	}
	_, room := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "hi, it's Ann" })
	alice.waitDisplayName(ghost, "Ann Lee", 30*time.Second)
	alice.waitRoomName(room, func(n string) bool { return n == "Ann Lee" }, 30*time.Second)

	srv.Put("ann", "Ann Lee-Smith", contactNumber)
	alice.waitDisplayName(ghost, "Ann Lee-Smith", 60*time.Second)
	alice.waitRoomName(room, func(n string) bool { return n == "Ann Lee-Smith" }, 60*time.Second)

	// The server going away keeps the names, also across a restart.
	srv.SetRefuse(true)
	e.stopBubbled()
	e.startBubbled()
	e.waitLog("a refused sync", 60*time.Second, func(l string) bool {
		return strings.Contains(l, "failed to read contacts") && strings.Contains(l, "refused the username or password")
	})
	if err := e.sim.Deliver(contactNumber, "still me"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "still me" })
	alice.waitDisplayName(ghost, "Ann Lee-Smith", 10*time.Second)
}

// TestQuarantineAccept: with unknown_senders: quarantine, an SMS from a
// stranger lands in the line's Unknown senders room (also after a restart,
// accept still finds it); a contact's SMS gets its own room; accept moves
// the stranger's history into their own room, where their next SMS go.
func TestQuarantineAccept(t *testing.T) {
	const stranger = "+15550003333"
	e, _ := contactsEnv(t, "  privacy:\n    unknown_senders: quarantine\n")
	alice := e.newUser("alice")
	e.login(alice)
	sghost := ghostMXID(stranger)

	if err := e.sim.Deliver(stranger, "who is this?"); err != nil {
		t.Fatal(err)
	}
	held, qroom := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.HasSuffix(b, ": who is this?") })
	alice.waitRoomName(qroom, func(n string) bool { return strings.HasPrefix(n, "Unknown senders") }, 30*time.Second)

	if err := e.sim.Deliver(contactNumber, "hello from Ann"); err != nil {
		t.Fatal(err)
	}
	_, annRoom := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hello from Ann" })
	if annRoom == qroom {
		t.Fatalf("a contact's SMS went to the Unknown senders room")
	}

	// Typing in the gate room fails cleanly and says what to do instead.
	typed, err := alice.cli.SendText(context.Background(), qroom, "hello?")
	if err != nil {
		t.Fatal(err)
	}
	alice.waitFor("a failed status with a notice for a message typed in Unknown senders", 60*time.Second, func() bool {
		for _, st := range alice.statuses {
			c, ok := st.Content.Parsed.(*event.BeeperMessageStatusEventContent)
			if ok && c.RelatesTo.EventID == typed.EventID && c.Status == event.MessageStatusFail &&
				c.Reason == event.MessageStatusUnsupported && strings.Contains(c.Message, "accept <number>") {
				return true
			}
		}
		return false
	})
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "start-chat <number>") })

	e.stopBubbled()
	e.startBubbled()
	_, mgmt := alice.waitMessage(time.Second, botMXID, func(b string) bool { return strings.HasPrefix(b, "Logged in") })
	alice.command(mgmt, "accept "+stranger, 60*time.Second, func(b string) bool {
		return strings.HasPrefix(b, "Accepted") && strings.Contains(b, "1 quarantined message")
	})
	var own id.RoomID
	alice.waitFor("the stranger's history in their own room", 60*time.Second, func() bool {
		for room, evts := range alice.messages {
			for _, evt := range evts {
				if room != qroom && evt.Sender == sghost && evt.Content.AsMessage().Body == "who is this?" {
					own = room
					return true
				}
			}
		}
		return false
	})
	alice.waitRedacted(qroom, held.ID, 60*time.Second)
	alice.waitFor("the stranger's ghost to leave Unknown senders", 60*time.Second, func() bool {
		members, err := alice.cli.JoinedMembers(context.Background(), qroom)
		if err != nil {
			return false
		}
		_, in := members.Joined[sghost]
		return !in
	})
	if err := e.sim.Deliver(stranger, "thanks for accepting"); err != nil {
		t.Fatal(err)
	}
	_, next := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.Contains(b, "thanks for accepting") })
	if next != own {
		t.Errorf("after accept the stranger's SMS went to %s, want their own room %s", next, own)
	}
}

// waitRedacted waits until an event is redacted (as a disappearing message is).
func (u *user) waitRedacted(room id.RoomID, evt id.EventID, timeout time.Duration) {
	u.t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Second) {
		got, err := u.cli.GetEvent(context.Background(), room, evt)
		if err == nil && (got.Unsigned.RedactedBecause != nil || len(got.Content.Raw) == 0) {
			return
		}
	}
	u.t.Fatalf("event %s in %s was not redacted", evt, room)
}

// TestGateCodesBlockDrop: a named sender's code lands in the Codes room and
// disappears after codes_ttl; with unknown_senders: drop a stranger's SMS
// and a configured-blocked contact's SMS never reach Matrix (yet leave the
// SIM: they are stored and acknowledged); block and unblock work per user.
func TestGateCodesBlockDrop(t *testing.T) {
	const stranger = "+15550003333"
	e, srv := contactsEnv(t, fmt.Sprintf("  privacy:\n    unknown_senders: drop\n    blocked: [%q]\n    codes_ttl: 1m\n", contactNumber))
	srv.Put("bob", "Bob", "+15550005555")
	alice := e.newUser("alice")
	e.login(alice)
	bob := ghostMXID("+15550005555")

	if err := e.sim.Deliver("BANK", "Your code is 123456"); err != nil {
		t.Fatal(err)
	}
	// bridgev2 escapes "_" in localparts: alpha_bank is @sms_alpha__bank.
	code, codes := alice.waitMessage(60*time.Second, "@sms_alpha__bank:localhost", func(b string) bool { return b == "Your code is 123456" })
	alice.waitRoomName(codes, func(n string) bool { return strings.HasPrefix(n, "Codes") }, 30*time.Second)
	if code.Content.Raw["com.beeper.disappearing_timer"] == nil {
		t.Errorf("the code has no disappearing timer: %v", code.Content.Raw)
	}

	// bob is let in as a contact: his SMS must not come before the first
	// CardDAV sync has read him (the gate would drop it as a stranger's).
	e.waitLog("the contacts", 60*time.Second, func(l string) bool { return strings.Contains(l, "updated contacts") })
	for _, from := range []string{stranger, contactNumber} {
		if err := e.sim.Deliver(from, "should not show from "+from); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sim.Deliver("+15550005555", "bob was here"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, bob, func(b string) bool { return b == "bob was here" })
	if dump := alice.dump(); strings.Contains(dump, "should not show") {
		t.Errorf("a dropped or blocked SMS reached Matrix:%s", dump)
	}
	if n := e.sim.Stored(); n != 0 {
		t.Errorf("the SIM still holds %d messages: dropped SMS must still be taken and acknowledged", n)
	}

	_, mgmt := alice.waitMessage(time.Second, botMXID, func(b string) bool { return strings.HasPrefix(b, "Logged in") })
	alice.command(mgmt, "block +1 555 000 5555", 30*time.Second, func(b string) bool { return strings.HasPrefix(b, "Blocked") })
	alice.command(mgmt, "unblock "+contactNumber, 30*time.Second, func(b string) bool { return strings.Contains(b, "network.privacy.blocked") })
	if err := e.sim.Deliver("+15550005555", "bob blocked"); err != nil {
		t.Fatal(err)
	}
	e.waitLog("the blocked SMS", 60*time.Second, func(l string) bool {
		return strings.Contains(l, "kept an SMS out of Matrix") && strings.Contains(l, `"blocked"`) && strings.Contains(l, phone.Mask("+15550005555"))
	})

	alice.command(mgmt, "unblock +15550005555", 30*time.Second, func(b string) bool { return strings.HasPrefix(b, "Unblocked") })
	if err := e.sim.Deliver("+15550005555", "bob is back"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, bob, func(b string) bool { return b == "bob is back" })
	if alice.count(bob, "bob blocked") != 0 {
		t.Errorf("the SMS sent while blocked reached Matrix")
	}

	alice.waitRedacted(codes, code.ID, 3*time.Minute)
}

// TestQuarantineBelongsToOwner: two users, one line each. Each line's
// strangers wait in its owner's Unknown senders room; bob's accept moves
// only his, and bob, invited into alice's room, cannot accept there.
func TestQuarantineBelongsToOwner(t *testing.T) {
	const stranger = "+15550003333"
	srv := carddavtest.New("op", "pw")
	t.Cleanup(srv.Close)
	e := newEnvWith(t, envOptions{
		sim:     modemsim.Options{OwnNumber: lineNumber, Echo: true},
		second:  true,
		network: fmt.Sprintf("  contacts:\n    carddav:\n      url: %s\n      username: op\n      password: pw\n  privacy:\n    unknown_senders: quarantine\n", srv.URL()),
	})
	alice, bob := e.newUser("alice"), e.newUser("bob")
	mgmt := map[*user]id.RoomID{}
	for _, u := range []struct {
		u    *user
		line string
	}{{alice, "sim0"}, {bob, "sim1"}} {
		resp, err := u.u.cli.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		u.u.waitJoined(resp.RoomID, botMXID)
		mgmt[u.u] = resp.RoomID
		// The first login picks sim0 from the list; the second gets the modem left.
		reply := u.u.command(resp.RoomID, "login modem", 60*time.Second, func(b string) bool { return strings.Contains(b, u.line) || strings.Contains(b, "Logged in") })
		if !strings.Contains(reply, "Logged in") {
			u.u.command(resp.RoomID, u.line, 60*time.Second, func(b string) bool { return strings.Contains(b, "Logged in") })
		}
	}
	sghost := ghostMXID(stranger)
	if err := e.sim.Deliver(stranger, "to alice"); err != nil {
		t.Fatal(err)
	}
	_, aliceQ := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.HasSuffix(b, ": to alice") })
	if err := e.sim2.Deliver(stranger, "to bob"); err != nil {
		t.Fatal(err)
	}
	_, bobQ := bob.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.HasSuffix(b, ": to bob") })
	if aliceQ == bobQ {
		t.Fatalf("both users share one Unknown senders room")
	}

	if _, err := alice.cli.InviteUser(context.Background(), aliceQ, &mautrix.ReqInviteUser{UserID: bob.cli.UserID}); err != nil {
		t.Fatal(err)
	}
	bob.waitJoined(aliceQ, bob.cli.UserID)
	bob.command(aliceQ, "!sms accept "+stranger, 60*time.Second, func(b string) bool { return strings.Contains(b, "belongs to another user's line") })

	bob.command(mgmt[bob], "accept "+stranger, 60*time.Second, func(b string) bool { return strings.Contains(b, "1 quarantined message") })
	bob.waitFor("bob's stranger in their own room", 60*time.Second, func() bool {
		for room, evts := range bob.messages {
			for _, evt := range evts {
				if room != bobQ && evt.Sender == sghost && evt.Content.AsMessage().Body == "to bob" {
					return true
				}
			}
		}
		return false
	})
	if err := e.sim.Deliver(stranger, "alice still quarantines"); err != nil {
		t.Fatal(err)
	}
	if _, room := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.HasSuffix(b, "alice still quarantines") }); room != aliceQ {
		t.Errorf("bob's accept let the stranger into alice's rooms (%s, want %s)", room, aliceQ)
	}
}

// TestQuarantineManyStrangersAtOnce: SMS from six strangers, stored on the
// SIM while bubbled was down, are handed on several inbound lanes at once;
// they all land in one Unknown senders room (none gets its own room, no
// second gate room), each from its own ghost, readable.
func TestQuarantineManyStrangersAtOnce(t *testing.T) {
	e, _ := contactsEnv(t, "  privacy:\n    unknown_senders: quarantine\n")
	alice := e.newUser("alice")
	e.login(alice)
	e.stopBubbled()
	var strangers []string
	for i := range 6 {
		strangers = append(strangers, fmt.Sprintf("+1555000%04d", 4000+i))
	}
	for round := range 2 {
		for _, s := range strangers {
			if err := e.sim.StoreOnly(s, fmt.Sprintf("stranger %s, text %d", s, round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.startBubbled()
	rooms := map[id.RoomID]bool{}
	for _, s := range strangers {
		for round := range 2 {
			want := fmt.Sprintf("stranger %s, text %d", s, round)
			_, room := alice.waitMessage(90*time.Second, ghostMXID(s), func(b string) bool { return strings.HasSuffix(b, ": "+want) })
			rooms[room] = true
		}
	}
	if len(rooms) != 1 {
		t.Fatalf("the strangers' SMS landed in %d rooms, want the one Unknown senders room: %v", len(rooms), rooms)
	}
	for room := range rooms {
		alice.waitRoomName(room, func(n string) bool { return strings.HasPrefix(n, "Unknown senders") }, 30*time.Second)
	}
	for _, s := range strangers {
		if own := alice.roomsWith(ghostMXID(s)); len(own) != 1 {
			t.Errorf("%s is in %d of alice's rooms, want only Unknown senders", s, len(own))
		}
	}
}
