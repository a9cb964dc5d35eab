package bridge_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// reactionLog records the reactions and redactions a user's client sees.
type reactionLog struct {
	mu         sync.Mutex
	reactions  []*event.Event
	redactions []*event.Event
}

func (u *user) watchReactions() *reactionLog {
	l := &reactionLog{}
	syncer := u.cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.EventReaction, func(_ context.Context, evt *event.Event) {
		l.mu.Lock()
		l.reactions = append(l.reactions, evt)
		l.mu.Unlock()
	})
	syncer.OnEventType(event.EventRedaction, func(_ context.Context, evt *event.Event) {
		l.mu.Lock()
		l.redactions = append(l.redactions, evt)
		l.mu.Unlock()
	})
	return l
}

// waitReaction waits for a reaction from sender with key on target.
func (l *reactionLog) waitReaction(t *testing.T, sender id.UserID, target id.EventID, key string) *event.Event {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, evt := range l.reactions {
			rel := evt.Content.AsReaction().RelatesTo
			if evt.Sender == sender && rel.EventID == target && rel.Key == key {
				l.mu.Unlock()
				return evt
			}
		}
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s reaction from %s on %s", key, sender, target)
	return nil
}

// waitRedaction waits for a redaction of target.
func (l *reactionLog) waitRedaction(t *testing.T, target id.EventID) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, evt := range l.redactions {
			if evt.Redacts == target || evt.Content.AsRedaction().Redacts == target {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s was not redacted", target)
}

// redact redacts target as u and pushes the redaction to bubbled as the
// homeserver would: Dendrite v0.13.8 does not push redactions to
// appservices (see TestRCSRoute).
func (e *env) redact(u *user, room id.RoomID, target id.EventID) {
	e.t.Helper()
	red, err := u.cli.RedactEvent(context.Background(), room, target)
	if err != nil {
		e.t.Fatal(err)
	}
	e.pushTransaction(map[string]any{"events": []any{map[string]any{
		"type": "m.room.redaction", "room_id": room, "sender": u.cli.UserID, "event_id": red.EventID,
		"origin_server_ts": time.Now().UnixMilli(), "redacts": target,
		"content": map[string]any{"redacts": target},
	}}})
}

// sentText waits for the modem's n-th sent SMS (1-based) and returns it.
func (e *env) sentText(n int) modemsim.Sent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sent, err := e.sim.WaitSent(ctx, n)
	if err != nil {
		e.t.Fatalf("the modem sent %d SMS, want %d: %v; log:\n%s", len(e.sim.Sent()), n, err, e.tail())
	}
	return sent[n-1]
}

// TestReactionsEditsRepliesOnSMS: Matrix reactions, removals, edits,
// replies and unsends on a bridged SMS reach the modem as the texts phones
// write; the contact's reaction texts become Matrix reactions (and their
// removal a redaction) when they quote a message of the room, and stay text
// when they quote nothing.
func TestReactionsEditsRepliesOnSMS(t *testing.T) {
	e := newEnv(t)
	alice := e.newUser("alice")
	reacts := alice.watchReactions()
	e.login(alice)
	ghost := ghostMXID(contactNumber)
	ctx := context.Background()

	const question = "Are we still on for dinner tonight at the new place on 5th?"
	if err := e.sim.Deliver(contactNumber, question); err != nil {
		t.Fatal(err)
	}
	q, room := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == question })

	// Matrix 👍 on the contact's SMS -> Liked “…” quoting its start.
	thumbs, err := alice.cli.SendReaction(ctx, room, q.ID, "👍")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.sentText(1); got.To != contactNumber || got.Text != "Liked “"+question+"”" {
		t.Fatalf("the reaction reached the modem as %q to %s, want Liked “%s”", got.Text, got.To, question)
	}

	// The contact's Loved “…” on alice's SMS -> a ❤️ reaction on it.
	const answer = "Yes! See you at 7"
	mine, err := alice.cli.SendText(ctx, room, answer)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.sentText(2); got.Text != answer {
		t.Fatalf("modem got %q, want %q", got.Text, answer)
	}
	if err := e.sim.Deliver(contactNumber, "Loved “"+answer+"”"); err != nil {
		t.Fatal(err)
	}
	heart := reacts.waitReaction(t, ghost, mine.EventID, "❤️")

	// One quoting nothing in the room stays text.
	const stray = "Loved “a message nobody here wrote”"
	if err := e.sim.Deliver(contactNumber, stray); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == stray })
	if n := alice.count(ghost, "Loved “"+answer+"”"); n != 0 {
		t.Errorf("the matched reaction text also arrived as a message %d times", n)
	}

	// Their removal text (French, straight quotes, other case) redacts it.
	if err := e.sim.Deliver(contactNumber, `A retiré la mention « Adore » de « yes! see you at 7 »`); err != nil {
		t.Fatal(err)
	}
	reacts.waitRedaction(t, heart.ID)

	// Taking the 👍 back -> Removed a like from “…”.
	e.redact(alice, room, thumbs.EventID)
	if got := e.sentText(3); got.Text != "Removed a like from “"+question+"”" {
		t.Fatalf("the removal reached the modem as %q", got.Text)
	}

	// An edit -> a marked correction.
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "* Yes! See you at 8",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "Yes! See you at 8"},
		RelatesTo:  &event.RelatesTo{Type: event.RelReplace, EventID: mine.EventID}}
	if _, err := alice.cli.SendMessageEvent(ctx, room, event.EventMessage, edit); err != nil {
		t.Fatal(err)
	}
	if got := e.sentText(4); got.Text != "Correction: Yes! See you at 8" {
		t.Fatalf("the edit reached the modem as %q", got.Text)
	}

	// A reply carries a short quote of what it answers.
	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "Booked a table",
		RelatesTo: &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: q.ID}}}
	if _, err := alice.cli.SendMessageEvent(ctx, room, event.EventMessage, reply); err != nil {
		t.Fatal(err)
	}
	if got := e.sentText(5); got.Text != "> "+question+"\nBooked a table" {
		t.Fatalf("the reply reached the modem as %q", got.Text)
	}

	// Unsending an SMS: a notice says it cannot be done, nothing is sent.
	e.redact(alice, room, mine.EventID)
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "SMS cannot be unsent") })
	if n := len(e.sim.Sent()); n != 5 {
		t.Errorf("the modem sent %d SMS, want 5", n)
	}
}

// TestBlueFromFirstMessage: a room made for a number the directory knows
// on Matrix (by start-chat, or by their first SMS) invites the contact's
// own account at once and says so, before anyone types; a number it does
// not know gets no invite.
func TestBlueFromFirstMessage(t *testing.T) {
	const bobNumber, carolNumber, daveNumber = "+15557654321", "+15557654322", "+15557654323"
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: `  directory:
    static:
      "+15557654321": "@bob:localhost"
      "+15557654322": "@carol:localhost"`,
	})
	alice := e.newUser("alice")
	bob := e.newUser("bob")
	carol := e.newUser("carol")
	e.login(alice)
	mgmt := alice.managementRoom()

	// start-chat: bob is invited with the room, and the room says so.
	alice.command(mgmt, "start-chat "+bobNumber, 30*time.Second, func(b string) bool { return strings.Contains(b, "Created chat") })
	_, room := alice.waitMessage(60*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "is on Matrix as @bob:localhost") && strings.Contains(b, "invited them")
	})
	alice.waitJoined(room, bob.cli.UserID)
	if rooms := alice.roomsWith(ghostMXID(bobNumber)); len(rooms) != 1 || rooms[0] != room {
		t.Errorf("the invite notice is in %s, want the portal %v", room, rooms)
	}

	// Their first SMS makes the room: carol is invited before anyone answers.
	if err := e.sim.Deliver(carolNumber, "hi, it's carol"); err != nil {
		t.Fatal(err)
	}
	_, carolRoom := alice.waitMessage(60*time.Second, ghostMXID(carolNumber), func(b string) bool { return b == "hi, it's carol" })
	alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "is on Matrix as @carol:localhost") })
	alice.waitJoined(carolRoom, carol.cli.UserID)

	// dave is on no directory: no invite, no such notice.
	if err := e.sim.Deliver(daveNumber, "hi, it's dave"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghostMXID(daveNumber), func(b string) bool { return b == "hi, it's dave" })
	time.Sleep(2 * time.Second)
	invites := 0
	for _, n := range alice.noticeTexts() {
		if strings.Contains(n, "invited them") {
			invites++
		}
	}
	if invites != 2 {
		t.Errorf("saw %d invite notices, want 2 (bob, carol); notices %q", invites, alice.noticeTexts())
	}
	if n := e.sentCount(); n != 0 {
		t.Errorf("the modem sent %d SMS, want none: nobody typed", n)
	}
}

// TestIncompleteLongSMS: a long SMS with a part that never comes is
// delivered after network.sms.reassembly_timeout with the gap marked and a
// notice naming the missing part, even across a restart of bubbled.
func TestIncompleteLongSMS(t *testing.T) {
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		env: []string{"BUBBLED_NETWORK__SMS__REASSEMBLY_TIMEOUT=3s"},
	})
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)

	// The network's PDUs for a 3-part message, from a second simulator.
	net, err := modemsim.Start(modemsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	long := strings.Repeat("abcdefghij", 40)
	if err := net.StoreOnly(contactNumber, long); err != nil {
		t.Fatal(err)
	}
	stored := net.Messages()
	if len(stored) != 3 {
		t.Fatalf("the network made %d parts, want 3", len(stored))
	}
	// Parts 1 and 3 reach the modem, then bubbled stops before the
	// deadline and starts again after it.
	for _, i := range []int{0, 2} {
		if err := e.sim.DeliverPDU(stored[i].PDU); err != nil {
			t.Fatal(err)
		}
	}
	e.waitLog("parts read", 60*time.Second, func(l string) bool { return strings.Contains(l, "AT+CMGD") && e.sim.Stored() == 0 })
	e.stopBubbled()
	time.Sleep(4 * time.Second)
	e.startBubbled()

	want := long[:153] + "[part 2 of 3 missing]" + long[306:]
	alice.waitMessage(90*time.Second, ghost, func(b string) bool { return b == want })
	alice.waitMessage(30*time.Second, ghost, func(b string) bool {
		return strings.Contains(b, "Part 2 of 3 of this SMS never arrived")
	})
}
