package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/contacts/carddavtest"
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
	_, qroom := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.HasSuffix(b, ": who is this?") })
	alice.waitRoomName(qroom, func(n string) bool { return strings.HasPrefix(n, "Unknown senders") }, 30*time.Second)

	if err := e.sim.Deliver(contactNumber, "hello from Ann"); err != nil {
		t.Fatal(err)
	}
	_, annRoom := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hello from Ann" })
	if annRoom == qroom {
		t.Fatalf("a contact's SMS went to the Unknown senders room")
	}

	e.stopBubbled()
	e.startBubbled()
	alice.command(alice.managementRoom(), "accept "+stranger, 60*time.Second, func(b string) bool {
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
	if err := e.sim.Deliver(stranger, "thanks for accepting"); err != nil {
		t.Fatal(err)
	}
	_, next := alice.waitMessage(60*time.Second, sghost, func(b string) bool { return strings.Contains(b, "thanks for accepting") })
	if next != own {
		t.Errorf("after accept the stranger's SMS went to %s, want their own room %s", next, own)
	}
}
