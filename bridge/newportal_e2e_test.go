package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFirstSMSInNewPortalDecrypts repeats issue 9's "the first SMS in a
// brand-new portal was not decryptable" scenario: a user who just logged a
// line in gets first SMS from several new numbers, back to back, each
// making its own encrypted portal; every first message must reach the
// user's E2EE client decrypted, and must come after the user's join, even
// when the user takes a few seconds to accept invites (so the bridge had
// handled the user's invite before it made the Megolm session: handling it
// drops the room's session, see afterOwnerJoined).
func TestFirstSMSInNewPortalDecrypts(t *testing.T) {
	const rounds = 6
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	alice.mu.Lock()
	alice.joinDelay = 3 * time.Second // accepts invites like a person, not at once
	alice.mu.Unlock()
	for i := range rounds {
		if err := e.sim.Deliver(fmt.Sprintf("+1555888000%d", i), fmt.Sprintf("first SMS %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range rounds {
		from := ghostMXID(fmt.Sprintf("+1555888000%d", i))
		want := fmt.Sprintf("first SMS %d", i)
		evt, room := alice.waitMessage(90*time.Second, from, func(b string) bool { return b == want })
		if !evt.Mautrix.WasEncrypted {
			t.Errorf("%q was not end-to-end encrypted", want)
		}
		if !alice.joinedBefore(room, evt.ID) {
			t.Errorf("in the room of %q the ghost's first message came before alice's join; want the join first", want)
		}
	}
}

// joinedBefore reports whether u's join precedes evt in room's timeline.
func (u *user) joinedBefore(room id.RoomID, evt id.EventID) bool {
	u.t.Helper()
	resp, err := u.cli.Context(context.Background(), room, evt, nil, 100)
	if err != nil {
		u.t.Fatalf("read the timeline of %s around %s: %v", room, evt, err)
	}
	for _, before := range resp.EventsBefore {
		if before.Type == event.StateMember && before.GetStateKey() == u.cli.UserID.String() &&
			before.Content.Raw["membership"] == string(event.MembershipJoin) {
			return true
		}
	}
	return false
}
