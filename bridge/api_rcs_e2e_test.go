package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/api"
	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
)

// TestSendAPIFirstMessageByRCS: the first API message to a contact who has
// no room yet leaves by RCS, and its room (made before routing) carries
// the router's "sending by RCS" notice next to the message; the contact's
// DELIVERED moves the API status to delivered, as an SMS status report does.
func TestSendAPIFirstMessageByRCS(t *testing.T) {
	const contact = "+15557654321"
	fake, rcsConfig := startRBM(t, "message_ttl: 1h", "public_url: {{AS_URL}}")
	fake.SetCapabilities(contact, "RICHCARD_STANDALONE")
	a := newAPIEnv(t, envOptions{network: `  fallback:
    confirm_timeout: 10m
` + rcsConfig})
	webhook := fmt.Sprintf("http://127.0.0.1:%d/rcs/rbm", a.asPort)
	alice := a.newUser("alice")
	a.login(alice)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": contact, "text": "Backup finished"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %v, want 202; log:\n%s", code, out, a.tail())
	}
	id := out["id"].(string)
	var msg rbmfake.Message
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && msg.MessageID == ""; time.Sleep(100 * time.Millisecond) {
		if m := fake.Messages(); len(m) == 1 {
			msg = m[0]
		}
	}
	if want := rcs.MessageID(api.RouterIDPrefix+id, 0); msg.MessageID != want || msg.Text != "Backup finished" {
		t.Fatalf("RBM got %+v, want message %s; log:\n%s", fake.Messages(), want, a.tail())
	}
	if sent := a.sim.Sent(); len(sent) != 0 {
		t.Errorf("the modem sent %+v; the message went by RCS", sent)
	}
	_, room := alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return b == "API token alerts: Backup finished" })
	_, noticeRoom := alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "sending by RCS") })
	if noticeRoom != room {
		t.Errorf("the route notice is in %s, the API message in %s", noticeRoom, room)
	}
	a.waitStatus(id, "alerts", "sent")

	if _, res, err := fake.PushUserEvent(ctx, webhook, contact, "DELIVERED", msg.MessageID); err != nil || res.Status != 200 {
		t.Fatalf("push DELIVERED: %+v %v", res, err)
	}
	a.waitStatus(id, "alerts", "delivered")
}

// TestSendAPIReadOnMatrix: an API message to a contact who is on Matrix
// goes through the Matrix route; the contact's read receipt confirms it and
// moves its API status to delivered.
func TestSendAPIReadOnMatrix(t *testing.T) {
	bobID := id.UserID("@bob:localhost")
	a := newAPIEnv(t, envOptions{network: `  directory:
    static:
      "` + contactNumber + `": "@bob:localhost"
  fallback:
    order: [matrix, sms]
    confirm_timeout: 10m`})
	alice := a.newUser("alice")
	bob := a.newUser("bob")
	a.login(alice)
	alice.command(alice.managementRoom(), "start-chat "+contactNumber, 30*time.Second, func(b string) bool { return strings.Contains(b, "Created chat") })
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "invited them") })
	rooms := alice.roomsWith(ghostMXID(contactNumber))
	if len(rooms) != 1 {
		t.Fatalf("rooms with the contact: %v", rooms)
	}
	alice.waitJoined(rooms[0], bobID)

	code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": contactNumber, "text": "Read me on Matrix"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %v, want 202", code, out)
	}
	msgID := out["id"].(string)
	evt, _ := bob.waitMessage(60*time.Second, botMXID, func(b string) bool { return b == "API token alerts: Read me on Matrix" })
	if st := a.waitStatus(msgID, "alerts", "sent"); st["took_route"] != "matrix" {
		t.Fatalf("the API message took %v, want matrix", st["took_route"])
	}
	a.pushReceipt(rooms[0], evt.ID, bobID)
	a.waitStatus(msgID, "alerts", "delivered")
	if n := len(a.sim.Sent()); n != 0 {
		t.Errorf("the modem sent %d SMS; the message went on Matrix", n)
	}
}
