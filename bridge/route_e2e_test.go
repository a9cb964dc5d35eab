package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// pushReceipt plays the homeserver: it pushes a read receipt of user on
// eventID to bubbled's appservice endpoint as an ephemeral event
// (MSC2409), because Dendrite does not push receipts to appservices.
func (e *env) pushReceipt(room id.RoomID, eventID id.EventID, user id.UserID) {
	e.t.Helper()
	e.pushEphemeral(map[string]any{
		"type":    "m.receipt",
		"room_id": room,
		"content": map[string]any{string(eventID): map[string]any{"m.read": map[string]any{string(user): map[string]any{"ts": time.Now().UnixMilli()}}}},
	})
}

// pushTyping plays the homeserver pushing users' typing state in room.
func (e *env) pushTyping(room id.RoomID, users ...id.UserID) {
	e.t.Helper()
	e.pushEphemeral(map[string]any{"type": "m.typing", "room_id": room, "content": map[string]any{"user_ids": users}})
}

// pushEphemeral pushes one ephemeral event to bubbled's appservice endpoint.
func (e *env) pushEphemeral(evt map[string]any) {
	e.t.Helper()
	e.pushTransaction(map[string]any{"events": []any{}, "ephemeral": []any{evt}})
}

// pushTransaction plays the homeserver: it PUTs one appservice transaction.
func (e *env) pushTransaction(txn map[string]any) {
	e.t.Helper()
	raw, err := os.ReadFile(e.regPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var reg struct {
		HSToken string `yaml:"hs_token"`
	}
	if err := yaml.Unmarshal(raw, &reg); err != nil {
		e.t.Fatal(err)
	}
	body, _ := json.Marshal(txn)
	url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/app/v1/transactions/test-%d", e.asPort, time.Now().UnixNano())
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+reg.HSToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("pushing a transaction: HTTP %d", resp.StatusCode)
	}
}

// sentCount is how many messages the simulated modem has sent.
func (e *env) sentCount() int { return len(e.sim.Sent()) }

// waitJoined waits until u's client sees member joined in room.
func (u *user) waitJoined(room id.RoomID, member id.UserID) {
	u.t.Helper()
	// Both the homeserver and u's own client must see the join: the
	// client encrypts for the members its state store knows (fed by its
	// /sync), so a message sent before its sync brought the join is
	// encrypted without member's devices, and member can never read it.
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		members, err := u.cli.JoinedMembers(ctx, room)
		if err == nil {
			if _, ok := members.Joined[member]; ok && u.cli.StateStore.IsMembership(ctx, room, member, event.MembershipJoin) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.t.Fatalf("%s did not join %s", member, room)
}

// TestRouteLadder is the blue-bubble scenario matrix: a contact whose
// number is registered on Matrix (static directory table) is invited into
// the portal; messages then go through Matrix itself, fall back to SMS when
// not confirmed in time, and follow a pinned route.
func TestRouteLadder(t *testing.T) {
	const bobNumber = "+15557654321"
	bobID := id.UserID("@bob:localhost")
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: `  directory:
    static:
      "+15557654321": "@bob:localhost"
  fallback:
    order: [matrix, rcs, sms]
    confirm_timeout: 10s`,
	})
	alice := e.newUser("alice")
	bob := e.newUser("bob")
	e.login(alice)
	mgmt := alice.managementRoom()
	alice.command(mgmt, "start-chat "+bobNumber, 30*time.Second, func(b string) bool { return strings.Contains(b, "Created chat") })
	var portal id.RoomID
	for deadline := time.Now().Add(30 * time.Second); portal == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rooms := alice.roomsWith(ghostMXID(bobNumber)); len(rooms) == 1 {
			portal = rooms[0]
		}
	}
	if portal == "" {
		t.Fatalf("no portal; log:\n%s", e.tail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()

	// bob is invited when the room is created, before anything is typed
	// (TestBlueFromFirstMessage); his client joins by itself. The first
	// message goes through Matrix; unconfirmed, it also goes as SMS.
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "invited them") })
	alice.waitJoined(portal, bobID)
	if _, err := alice.cli.SendText(ctx, portal, "first, before bob joined"); err != nil {
		t.Fatal(err)
	}
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "first, before bob joined" || sent[0].To != bobNumber {
		t.Fatalf("first message: modem got %+v, %v; log:\n%s", sent, err, e.tail())
	}

	// Registered and joined: the message goes through Matrix; bob decrypts
	// it; read in time, the modem sends nothing.
	resp, err := alice.cli.SendText(ctx, portal, "second, end-to-end encrypted")
	if err != nil {
		t.Fatal(err)
	}
	evt, _ := bob.waitMessage(30*time.Second, alice.cli.UserID, func(b string) bool { return b == "second, end-to-end encrypted" })
	if !evt.Mautrix.WasEncrypted {
		t.Errorf("bob's copy was not end-to-end encrypted")
	}
	// bob's client marks it read at once. Dendrite does not push receipts
	// to appservices: bubbled reads it from its bot's /sync (receiptsync).
	// 10 s leaves room for a loaded machine between bob's sync and the
	// receipt reaching bubbled.
	if err := bob.cli.MarkRead(ctx, portal, resp.EventID); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "is on Matrix as @bob:localhost") && strings.Contains(b, "end-to-end encrypted")
	})
	time.Sleep(13 * time.Second) // past the 10 s confirm timeout
	if sent := e.sim.Sent(); len(sent) != 1 {
		t.Fatalf("the modem sent %d messages (%+v), want 1: a message read on Matrix must not go as SMS; log:\n%s", len(sent), sent, e.tail())
	}

	// Unconfirmed past the timeout: sent as SMS, with a notice.
	if _, err := alice.cli.SendText(ctx, portal, "third, never read"); err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(30*time.Second, alice.cli.UserID, func(b string) bool { return b == "third, never read" })
	sent, err = e.sim.WaitSent(ctx, 2)
	if err != nil || sent[1].Text != "third, never read" {
		t.Fatalf("third message: modem got %+v, %v", sent, err)
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "Not confirmed on Matrix") && strings.Contains(b, "SMS")
	})

	// bob writes in the room: a native Matrix message, never sent out and
	// never answered with an error.
	if _, err := bob.cli.SendText(ctx, portal, "hello from bob's own account"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(30*time.Second, bobID, func(b string) bool { return b == "hello from bob's own account" })

	// Pinned to SMS: the next message goes as SMS at once.
	alice.command(portal, "!sms route sms", 30*time.Second, func(b string) bool { return strings.Contains(b, "pinned to sms") })
	if _, err := alice.cli.SendText(ctx, portal, "fourth, pinned to SMS"); err != nil {
		t.Fatal(err)
	}
	sent, err = e.sim.WaitSent(ctx, 3)
	if err != nil || sent[2].Text != "fourth, pinned to SMS" {
		t.Fatalf("fourth message: modem got %+v, %v", sent, err)
	}
	time.Sleep(time.Second)
	if n := e.sentCount(); n != 3 {
		t.Errorf("the modem sent %d messages, want 3 (bob's own message must not go out)", n)
	}
	for _, n := range alice.noticeTexts() {
		if strings.Contains(n, "not logged in") || strings.Contains(n, "not bridged") {
			t.Errorf("unexpected error notice: %q", n)
		}
	}

	// Back to automatic; bob leaves mid-conversation: the next message goes
	// as SMS, and bob is not invited again.
	alice.command(portal, "!sms route auto", 30*time.Second, func(b string) bool { return strings.Contains(b, "best route") })
	if _, err := bob.cli.LeaveRoom(ctx, portal); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the bridge see the leave
	if _, err := alice.cli.SendText(ctx, portal, "fifth, after bob left"); err != nil {
		t.Fatal(err)
	}
	sent, err = e.sim.WaitSent(ctx, 4)
	if err != nil || sent[3].Text != "fifth, after bob left" {
		t.Fatalf("fifth message: modem got %+v, %v", sent, err)
	}
	time.Sleep(time.Second)
	if rooms, _ := bob.cli.JoinedRooms(ctx); rooms != nil {
		for _, r := range rooms.JoinedRooms {
			if r == portal {
				t.Errorf("bob was invited back into the portal after leaving")
			}
		}
	}

	// whois says where the answer came from.
	alice.command(mgmt, "whois "+bobNumber, 30*time.Second, func(b string) bool {
		return strings.Contains(b, "@bob:localhost") && strings.Contains(b, "static")
	})
	_ = event.EventMessage
}
