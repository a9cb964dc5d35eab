package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestRCSRoute runs the RCS rung on Dendrite against the in-repo RBM fake:
// a message to an RCS-capable number leaves by RCS (not by the modem),
// DELIVERED and READ come back as receipts in Matrix, an inbound RCS message
// lands in the contact's room, and a message that is never delivered is
// revoked and re-sent as SMS with a notice.
func TestRCSRoute(t *testing.T) {
	const contact = "+15557654321"
	fake, rcsConfig := startRBM(t, "message_ttl: 1h", "public_url: {{AS_URL}}")
	fake.SetCapabilities(contact, "RICHCARD_STANDALONE", "ACTION_DIAL")
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: `  fallback:
    confirm_timeout: 10s
` + rcsConfig,
	})
	webhook := fmt.Sprintf("http://127.0.0.1:%d/rcs/rbm", e.asPort)
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contact)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()

	// Inbound RCS lands in the contact's (new) room.
	inID, res, err := fake.PushUserMessage(ctx, webhook, contact, "hello over RCS")
	if err != nil || res.Status != 200 {
		t.Fatalf("push: %+v %v; log:\n%s", res, err, e.tail())
	}
	inEvt, portal := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "hello over RCS" })

	// An inbound file is fetched from the provider and uploaded, encrypted.
	photo := bytes.Repeat([]byte("rcs photo "), 3000)
	fileMsg, _ := fake.UserFile(contact, fake.HostFile(photo, "image/jpeg"), "beach.jpg", "image/jpeg", len(photo))
	if res, err := fake.Push(ctx, webhook, fileMsg, rbmfake.Signed); err != nil || res.Status != 200 {
		t.Fatalf("push file: %+v %v", res, err)
	}
	img, imgRoom := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "beach.jpg" })
	if c := img.Content.AsMessage(); c.MsgType != event.MsgImage || imgRoom != portal || !bytes.Equal(download(t, alice, img), photo) {
		t.Errorf("RCS file arrived as %s in %s (DM %s), or its bytes differ", c.MsgType, imgRoom, portal)
	}

	// Outbound to an RCS-capable number leaves by RCS; the modem sees nothing.
	sentAt := time.Now()
	resp, err := alice.cli.SendText(ctx, portal, "answer by RCS")
	if err != nil {
		t.Fatal(err)
	}
	var msg rbmfake.Message
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := fake.Messages(); len(m) == 1 {
			msg = m[0]
			break
		}
	}
	if msg.Text != "answer by RCS" || msg.Phone != contact {
		t.Fatalf("RBM got %+v; log:\n%s", fake.Messages(), e.tail())
	}
	if want := rcs.MessageID(string(resp.EventID), 0); msg.MessageID != want {
		t.Errorf("RCS message ID %s, want %s (derived from the Matrix event ID)", msg.MessageID, want)
	}
	// DELIVERED and READ come back as receipts. DELIVERED is pushed at once:
	// the 10 s confirm timeout leaves room for a loaded machine.
	if _, res, err := fake.PushUserEvent(ctx, webhook, contact, "DELIVERED", msg.MessageID); err != nil || res.Status != 200 {
		t.Fatalf("push DELIVERED: %+v %v", res, err)
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "RCS") })
	alice.waitFor("a delivery status for the RCS message", 30*time.Second, func() bool {
		for _, st := range alice.statuses {
			c, ok := st.Content.Parsed.(*event.BeeperMessageStatusEventContent)
			if ok && c.RelatesTo.EventID == resp.EventID && c.DeliveredToUsers != nil && len(*c.DeliveredToUsers) > 0 {
				return true
			}
		}
		return false
	})
	if _, res, err := fake.PushUserEvent(ctx, webhook, contact, "READ", msg.MessageID); err != nil || res.Status != 200 {
		t.Fatalf("push READ: %+v %v", res, err)
	}
	alice.waitFor("the contact's read receipt", 30*time.Second, func() bool {
		for _, r := range alice.receipts {
			for evtID, byType := range *r.Content.AsReceipt() {
				if evtID == resp.EventID {
					if _, ok := byType[event.ReceiptTypeRead][ghost]; ok {
						return true
					}
				}
			}
		}
		return false
	})
	time.Sleep(time.Until(sentAt.Add(13 * time.Second))) // past the confirm timeout: delivered, so no SMS
	if sent := e.sim.Sent(); len(sent) != 0 {
		t.Fatalf("the modem sent %d messages (%+v) for a delivered RCS message; log:\n%s", len(sent), sent, e.tail())
	}

	// The owner reads the contact's message and types: RCS READ and IS_TYPING
	// go back to the contact (pushed as the homeserver would: Dendrite does
	// not push receipts and typing to appservices).
	e.pushReceipt(portal, inEvt.ID, alice.cli.UserID)
	e.pushTyping(portal, alice.cli.UserID)
	wantEvents := map[string]bool{"READ " + inID: false, "IS_TYPING ": false}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, ae := range fake.AgentEvents() {
			key := ae.EventType + " "
			if ae.EventType == "READ" {
				key += ae.MessageID
			}
			if _, ok := wantEvents[key]; ok {
				wantEvents[key] = true
			}
		}
		if wantEvents["READ "+inID] && wantEvents["IS_TYPING "] {
			break
		}
	}
	for k, seen := range wantEvents {
		if !seen {
			t.Errorf("the RBM fake got no agent event %q; got %+v", k, fake.AgentEvents())
		}
	}

	// A file (end-to-end encrypted in the room) goes by RCS: the provider
	// fetches it, decrypted, from bubbled's media URL.
	image := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("pixel data "), 200)...)
	encFile := attachment.NewEncryptedFile()
	upload, err := alice.cli.UploadBytes(ctx, encFile.Encrypt(image), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	fileEvt, err := alice.cli.SendMessageEvent(ctx, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "cat.png",
		File: &event.EncryptedFileInfo{EncryptedFile: *encFile, URL: upload.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "image/png", Size: len(image)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var fileURL string
	for deadline := time.Now().Add(30 * time.Second); fileURL == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, m := range fake.Messages() {
			if m.MessageID == rcs.MessageID(string(fileEvt.EventID), 0) {
				fileURL = m.FileURL
			}
		}
	}
	if fileURL == "" {
		t.Fatalf("the file did not go by RCS; RBM got %+v; log:\n%s", fake.Messages(), e.tail())
	}
	got, err := http.Get(fileURL)
	if err != nil {
		t.Fatal(err)
	}
	gotBytes, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if got.StatusCode != 200 || !bytes.Equal(gotBytes, image) || got.Header.Get("Content-Type") != "image/png" {
		t.Errorf("the provider fetched HTTP %d %q, %d bytes; want the decrypted image", got.StatusCode, got.Header.Get("Content-Type"), len(gotBytes))
	}
	if h := got.Header; h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Disposition") != "attachment" {
		t.Errorf("the file was served with %v; want nosniff and Content-Disposition attachment", h)
	}
	if _, res, err := fake.PushUserEvent(ctx, webhook, contact, "DELIVERED", rcs.MessageID(string(fileEvt.EventID), 0)); err != nil || res.Status != 200 {
		t.Fatalf("push DELIVERED: %+v %v", res, err)
	}

	// Unsending a message that went by RCS revokes it at the provider.
	unsend, err := alice.cli.SendText(ctx, portal, "oops, unsend this")
	if err != nil {
		t.Fatal(err)
	}
	unsendID := rcs.MessageID(string(unsend.EventID), 0)
	// A receipt can overtake the message it is about: DELIVERED is pushed
	// before bubbled has even received the Matrix event, so the message is
	// not saved yet when the receipt arrives; it must still become a
	// delivery status (it used to be dropped as "unknown message").
	if _, res, err := fake.PushUserEvent(ctx, webhook, contact, "DELIVERED", unsendID); err != nil || res.Status != 200 {
		t.Fatalf("push DELIVERED: %+v %v", res, err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(fake.Messages()) < 3 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	alice.waitFor("the delivery status of the message to unsend", 30*time.Second, func() bool { return alice.deliveredLocked(unsend.EventID, ghost) })
	// Dendrite v0.13.8 does not push redactions to appservices (seen here:
	// no transaction arrives), so the test pushes alice's redaction as the
	// homeserver would.
	red, err := alice.cli.RedactEvent(ctx, portal, unsend.EventID)
	if err != nil {
		t.Fatal(err)
	}
	e.pushTransaction(map[string]any{"events": []any{map[string]any{
		"type": "m.room.redaction", "room_id": portal, "sender": alice.cli.UserID, "event_id": red.EventID,
		"origin_server_ts": time.Now().UnixMilli(), "redacts": unsend.EventID,
		"content": map[string]any{"redacts": unsend.EventID},
	}}})
	revokedUnsend := false
	for deadline := time.Now().Add(30 * time.Second); !revokedUnsend && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range fake.Revocations() {
			revokedUnsend = revokedUnsend || r.MessageID == unsendID
		}
	}
	if !revokedUnsend {
		t.Errorf("unsending did not revoke the RCS message; revocations %+v", fake.Revocations())
	}

	// Never delivered: revoked and sent as SMS, with a notice.
	resp2, err := alice.cli.SendText(ctx, portal, "this one is never delivered")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "this one is never delivered" || sent[0].To != contact {
		t.Fatalf("modem got %+v, %v; log:\n%s", sent, err, e.tail())
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "Not confirmed by RCS") })
	revoked := false
	for _, r := range fake.Revocations() {
		if r.MessageID == rcs.MessageID(string(resp2.EventID), 0) {
			revoked = true
		}
	}
	if !revoked {
		t.Errorf("the undelivered RCS message was not revoked: %+v", fake.Revocations())
	}

	// A replayed webhook event is handled once.
	data, _ := fake.UserMessage(contact, "only once")
	for i := 0; i < 2; i++ {
		if res, err := fake.Push(ctx, webhook, data, rbmfake.Signed); err != nil || res.Status != 200 {
			t.Fatalf("push %d: %+v %v", i, res, err)
		}
	}
	alice.waitMessage(30*time.Second, ghost, func(b string) bool { return b == "only once" })
	time.Sleep(time.Second)
	if n := alice.count(ghost, "only once"); n != 1 {
		t.Errorf("a replayed RCS message arrived %d times", n)
	}
	// A tampered one is refused.
	if res, err := fake.Push(ctx, webhook, data, rbmfake.Tampered); err != nil || res.Status != 401 {
		t.Errorf("tampered push answered %+v %v, want 401", res, err)
	}
}

// startRBM starts the RBM fake and returns it with the network.rcs section
// that points bubbled at it; keys are further lines of that section
// ("owner: ...", "public_url: {{AS_URL}}").
func startRBM(t *testing.T, keys ...string) (*rbmfake.Server, string) {
	t.Helper()
	fake, err := rbmfake.Start(rbmfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	keyFile := filepath.Join(t.TempDir(), "rbm-key.json")
	if err := os.WriteFile(keyFile, fake.ServiceAccountJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	section := "  rcs:\n    provider: rbm\n"
	for _, k := range keys {
		section += "    " + k + "\n"
	}
	return fake, section + fmt.Sprintf(`    rbm:
      agent_id: %s
      service_account_file: %s
      webhook_client_token: %s
      base_url: %s
      token_url: %s`, fake.AgentID(), keyFile, fake.ClientToken(), fake.URL(), fake.TokenURL())
}
