package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestFirstSMSInNewPortalDecrypts repeats issue 9's "the first SMS in a
// brand-new portal was not decryptable" scenario: a user who just logged a
// line in gets first SMS from several new numbers, back to back, each
// making its own encrypted portal; every first message must reach the
// user's E2EE client decrypted, and must come after the user's join, even
// when the user takes a few seconds to accept invites (so the bridge had
// handled the user's invite before it made the Megolm session: handling it
// drops the room's session, see ownerJoinedFirst).
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

// TestFirstRCSAndMMSInNewPortalDecrypts is TestFirstSMSInNewPortalDecrypts
// for the other inbound routes: the first RCS message and the first group
// MMS of new contacts make new rooms; alice accepts invites after 3 s; each
// first message must come after her join and reach her client decrypted.
func TestFirstRCSAndMMSInNewPortalDecrypts(t *testing.T) {
	const rcsContact = "+15557650001"
	fake, rcsConfig := startRBM(t, "public_url: {{AS_URL}}")
	mmsc := mmscfake.Start(mmscfake.Options{UserAgent: mmsUA})
	t.Cleanup(mmsc.Close)
	e := newEnvWith(t, envOptions{
		sim:     modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: "  mms:\n    enabled: true\n    mmsc: " + mmsc.URL() + "\n    user_agent: " + mmsUA + "\n" + rcsConfig,
	})
	alice := e.newUser("alice")
	e.login(alice)
	alice.mu.Lock()
	alice.joinDelay = 3 * time.Second
	alice.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	webhook := fmt.Sprintf("http://127.0.0.1:%d/rcs/rbm", e.asPort)
	if _, res, err := fake.PushUserMessage(ctx, webhook, rcsContact, "first RCS message"); err != nil || res.Status != 200 {
		t.Fatalf("push: %+v %v; log:\n%s", res, err, e.tail())
	}
	group := []string{"+15557650002", "+15557650003"}
	push, _ := mmsc.Hold(mmscfake.Message{From: group[0], To: []string{lineNumber, group[1]}, Text: "first group MMS"})
	if err := e.sim.DeliverWAPPush(group[0], push); err != nil {
		t.Fatal(err)
	}
	for _, first := range []struct{ from, text string }{{rcsContact, "first RCS message"}, {group[0], "first group MMS"}} {
		evt, room := alice.waitMessage(120*time.Second, ghostMXID(first.from), func(b string) bool { return b == first.text })
		if !evt.Mautrix.WasEncrypted {
			t.Errorf("%q was not end-to-end encrypted", first.text)
		}
		if !alice.joinedBefore(room, evt.ID) {
			t.Errorf("in the room of %q the ghost's first message came before alice's join; want the join first", first.text)
		}
	}
}
