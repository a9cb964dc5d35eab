package bridge_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

const mmsUA = "bubbled-e2e/1.0"

// newMMSEnv starts a fake MMSC and bubbled with MMS on, pointed at it.
func newMMSEnv(t *testing.T) (*env, *mmscfake.Server) {
	t.Helper()
	f := mmscfake.Start(mmscfake.Options{UserAgent: mmsUA})
	t.Cleanup(f.Close)
	e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		network: "  mms:\n    enabled: true\n    mmsc: " + f.URL() + "\n    user_agent: " + mmsUA + "\n    bearer: at\n    apn: mms.e2e\n    bearer_cid: 2\n"})
	return e, f
}

// picture is a small JPEG-looking payload; the bridge does not decode it.
var picture = append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, bytes.Repeat([]byte("bubbled mms picture "), 800)...)

const vcard = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Grandma\r\nTEL:+15557654321\r\nEND:VCARD\r\n"

// download fetches and decrypts the attachment of evt.
func download(t *testing.T, u *user, evt *event.Event) []byte {
	t.Helper()
	c := evt.Content.AsMessage()
	if c.File == nil {
		t.Fatalf("attachment %q is not encrypted (url %q)", c.Body, c.URL)
	}
	uri, err := c.File.URL.Parse()
	if err != nil {
		t.Fatal(err)
	}
	data, err := u.cli.DownloadBytes(context.Background(), uri)
	if err != nil {
		t.Fatalf("download %s: %v", uri, err)
	}
	if err := c.File.DecryptInPlace(data); err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return data
}

// TestMMSPictureAndGroup: a picture MMS with text from one number arrives
// as an encrypted image (bytes equal to what the MMSC served) and the
// text; a group MMS from three numbers lands in one group room with the
// three ghosts, and a second message of the same group in the same room.
func TestMMSPictureAndGroup(t *testing.T) {
	e, f := newMMSEnv(t)
	alice := e.newUser("alice")
	e.login(alice)

	push, loc := f.Hold(mmscfake.Message{From: contactNumber, To: []string{lineNumber}, Text: "look at this",
		Media: []mmscfake.Media{{Type: "image/jpeg", Name: "cat.jpg", Data: picture}, {Type: "text/x-vCard", Name: "grandma.vcf", Data: []byte(vcard)}}})
	if err := e.sim.DeliverWAPPush(contactNumber, push); err != nil {
		t.Fatal(err)
	}
	ghost := ghostMXID(contactNumber)
	img, room := alice.waitMessage(120*time.Second, ghost, func(b string) bool { return b == "cat.jpg" })
	if mt := img.Content.AsMessage().MsgType; mt != event.MsgImage {
		t.Errorf("attachment msgtype %s, want m.image", mt)
	}
	if got := download(t, alice, img); !bytes.Equal(got, f.Content(loc, 0)) {
		t.Errorf("decrypted image is %d bytes and differs from the %d the MMSC served", len(got), len(f.Content(loc, 0)))
	}
	card, _ := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "grandma.vcf" })
	if mt := card.Content.AsMessage().MsgType; mt != event.MsgFile || string(download(t, alice, card)) != vcard {
		t.Errorf("vCard arrived as %s", mt)
	}
	_, textRoom := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "look at this" })
	if textRoom != room {
		t.Errorf("text in %s, image in %s", textRoom, room)
	}
	alice.waitFor("notify response", 60*time.Second, func() bool { return len(f.NotifyResps()) == 1 })

	a, b, c := "+15551230001", "+15551230002", "+15551230003"
	push1, _ := f.Hold(mmscfake.Message{From: a, To: []string{lineNumber, b}, Cc: []string{c}, Text: "group hello"})
	if err := e.sim.DeliverWAPPush(a, push1); err != nil {
		t.Fatal(err)
	}
	_, group := alice.waitMessage(120*time.Second, ghostMXID(a), func(s string) bool { return s == "group hello" })
	push2, _ := f.Hold(mmscfake.Message{From: b, To: []string{c, lineNumber, a}, Text: "second in group"})
	if err := e.sim.DeliverWAPPush(b, push2); err != nil {
		t.Fatal(err)
	}
	_, group2 := alice.waitMessage(120*time.Second, ghostMXID(b), func(s string) bool { return s == "second in group" })
	if group2 != group || group == room {
		t.Errorf("group messages in %s and %s (DM %s), want one group room", group, group2, room)
	}
	members, err := alice.cli.JoinedMembers(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var ghosts []string
	for m := range members.Joined {
		if strings.HasPrefix(m.String(), "@sms_1555123") {
			ghosts = append(ghosts, m.String())
		}
	}
	sort.Strings(ghosts)
	if want := []id.UserID{ghostMXID(a), ghostMXID(b), ghostMXID(c)}; len(ghosts) != 3 || ghosts[0] != want[0].String() || ghosts[2] != want[2].String() {
		t.Errorf("group room ghosts %q, want %q", ghosts, want)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC found problems: %q", pr)
	}
	testGroupReply(t, e, f, alice, group, []string{a, b, c})
}

// testGroupReply: a reply in the group room reaches the MMSC as one
// m-send-req to all three; its m-delivery-ind becomes a delivery status; a
// 4 MB JPEG leaves under max_size and still decodes as a JPEG.
func testGroupReply(t *testing.T, e *env, f *mmscfake.Server, alice *user, group id.RoomID, members []string) {
	t.Helper()
	ctx := context.Background()
	resp, err := alice.cli.SendText(ctx, group, "reply to all")
	if err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the group reply at the MMSC", 60*time.Second, func() bool { return len(f.SendReqs()) == 1 })
	req := f.SendReqs()[0]
	if len(req.To) != 3 || req.Parts[len(req.Parts)-1].Data == nil || string(req.Parts[len(req.Parts)-1].Data) != "reply to all" {
		t.Errorf("m-send-req to %q with %d parts", req.To, len(req.Parts))
	}
	for i, m := range members {
		if !slices.Contains(req.To, m+"/TYPE=PLMN") {
			t.Errorf("member %d (%s) is not among the recipients %q", i, m, req.To)
		}
	}
	if n := len(e.sim.Sent()); n != 0 {
		t.Errorf("the modem sent %d SMS for a group reply", n)
	}
	// Two members' delivery reports: the status names both, not only the
	// latest reporter.
	for _, m := range members[:2] {
		if err := e.sim.DeliverWAPPush(m, f.DeliveryPush(mmscfake.MessageID(1), m, 0x81)); err != nil {
			t.Fatal(err)
		}
	}
	alice.waitFor("a delivery status for the group MMS naming both members", 60*time.Second, func() bool {
		for _, st := range alice.statuses {
			c, ok := st.Content.Parsed.(*event.BeeperMessageStatusEventContent)
			if ok && c.RelatesTo.EventID == resp.EventID && c.DeliveredToUsers != nil &&
				slices.Contains(*c.DeliveredToUsers, ghostMXID(members[0])) && slices.Contains(*c.DeliveredToUsers, ghostMXID(members[1])) {
				return true
			}
		}
		return false
	})

	photo := noisyJPEG(t)
	file := attachment.NewEncryptedFile()
	enc := append([]byte(nil), photo...)
	file.EncryptInPlace(enc)
	up, err := alice.cli.UploadBytes(ctx, enc, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	content := &event.MessageEventContent{MsgType: event.MsgImage, Body: "holiday.jpg",
		File: &event.EncryptedFileInfo{EncryptedFile: *file, URL: up.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "image/jpeg", Size: len(photo)}}
	if _, err := alice.cli.SendMessageEvent(ctx, group, event.EventMessage, content); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(180 * time.Second); len(f.SendReqs()) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			b, _ := os.ReadFile(e.logPath)
			_ = os.WriteFile("/tmp/h8-mms-e2e.log", b, 0o600)
			t.Fatalf("the photo never reached the MMSC (problems %q); log in /tmp/h8-mms-e2e.log", f.Problems())
		}
	}
	sent := f.SendReqs()[1]
	if len(sent.Raw) > 307200 {
		t.Errorf("the photo MMS is %d bytes, over max_size 307200", len(sent.Raw))
	}
	if len(sent.Parts) != 2 {
		t.Fatalf("photo MMS has %d parts, want SMIL + image", len(sent.Parts))
	}
	if _, err := jpeg.Decode(bytes.NewReader(sent.Parts[1].Data)); err != nil {
		t.Errorf("the sent photo does not decode as JPEG: %v", err)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC found problems: %q", pr)
	}
}

// noisyJPEG is a 12-MP JPEG of about 4 MB.
func noisyJPEG(t *testing.T) []byte {
	img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range img.Y {
		img.Y[i] = uint8(i%4000/16+i/4000/12) ^ uint8(r.IntN(40))
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(i%251), 128
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	if b.Len() < 3<<20 {
		t.Fatalf("test photo is only %d bytes", b.Len())
	}
	t.Logf("sending a %d-byte 12-MP JPEG", b.Len())
	return b.Bytes()
}

// TestMMSKilledBeforeFetch: bubbled is killed (SIGKILL) after the WAP push
// was stored and while the fetch hangs; after the restart the MMS is
// fetched once and delivered once.
func TestMMSKilledBeforeFetch(t *testing.T) {
	e, f := newMMSEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	f.Stall(true)
	push, loc := f.Hold(mmscfake.Message{From: contactNumber, To: []string{lineNumber}, Text: "survives a crash",
		Media: []mmscfake.Media{{Type: "image/png", Name: "p.png", Data: picture[:500]}}})
	if err := e.sim.DeliverWAPPush(contactNumber, push); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the fetch to start", 120*time.Second, func() bool { return f.GetsSeen() > 0 })
	if n := e.sim.Stored(); n != 0 {
		t.Errorf("%d SMS still on the SIM after the push was stored", n)
	}
	e.killBubbled()
	// The killed process's connection closes; wait until the fake has seen
	// that, or it would serve the stalled GET to nobody and count it.
	alice.waitFor("the MMSC to see the killed fetch end", 30*time.Second, func() bool { return f.Abandoned() == 1 })
	f.Stall(false)
	e.startBubbled()
	ghost := ghostMXID(contactNumber)
	alice.waitMessage(120*time.Second, ghost, func(b string) bool { return b == "survives a crash" })
	alice.waitFor("notify response", 60*time.Second, func() bool { return len(f.NotifyResps()) == 1 })
	time.Sleep(2 * time.Second)
	if n := f.Fetches(loc); n != 1 {
		t.Errorf("served %d times, want 1", n)
	}
	if n := alice.count(ghost, "survives a crash"); n != 1 {
		t.Errorf("delivered %d times, want 1", n)
	}
}

// TestMMSSendQueuedAcrossKill: a group reply the MMSC keeps refusing with a
// transient status is stored; bubbled is killed (SIGKILL) while it waits
// to retry, and after the restart the MMSC accepts exactly one m-send-req.
// A permanent refusal then fails the message with a notice in words.
func TestMMSSendQueuedAcrossKill(t *testing.T) {
	e, f := newMMSEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	a, b := "+15551230001", "+15551230002"
	push, _ := f.Hold(mmscfake.Message{From: a, To: []string{lineNumber, b}, Text: "group hello"})
	if err := e.sim.DeliverWAPPush(a, push); err != nil {
		t.Fatal(err)
	}
	_, group := alice.waitMessage(120*time.Second, ghostMXID(a), func(s string) bool { return s == "group hello" })
	f.Refuse(0xC0, "busy")
	if _, err := alice.cli.SendText(context.Background(), group, "queued reply"); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("a refused post", 60*time.Second, func() bool { return f.SendPosts() >= 1 })
	e.killBubbled()
	f.Refuse(0, "")
	e.startBubbled()
	alice.waitFor("the reply at the MMSC", 120*time.Second, func() bool { return len(f.SendReqs()) == 1 })
	time.Sleep(3 * time.Second)
	if got := f.SendReqs(); len(got) != 1 || string(got[0].Parts[len(got[0].Parts)-1].Data) != "queued reply" {
		t.Errorf("the MMSC accepted %d m-send-req, want exactly one with the reply", len(got))
	}

	f.Refuse(0xE1, "")
	if _, err := alice.cli.SendText(context.Background(), group, "refused reply"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(120*time.Second, botMXID, func(s string) bool {
		return strings.Contains(s, "refused your picture message") && strings.Contains(s, "not allowed on this SIM")
	})
	if n := len(f.SendReqs()); n != 1 {
		t.Errorf("the MMSC accepted %d m-send-req, want 1", n)
	}
}

// TestMMSImageInDM: an image sent in the DM room of a contact who is not on
// Matrix (no RCS) goes down the ladder to the SMS route, which carries it
// as one m-send-req to that number; the modem sends no SMS.
func TestMMSImageInDM(t *testing.T) {
	e, f := newMMSEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	if err := e.sim.Deliver(contactNumber, "hello, send me the photo"); err != nil {
		t.Fatal(err)
	}
	_, room := alice.waitMessage(120*time.Second, ghostMXID(contactNumber), func(s string) bool { return s == "hello, send me the photo" })
	ctx := context.Background()
	file := attachment.NewEncryptedFile()
	enc := append([]byte(nil), picture...)
	file.EncryptInPlace(enc)
	up, err := alice.cli.UploadBytes(ctx, enc, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	content := &event.MessageEventContent{MsgType: event.MsgImage, Body: "here it is", FileName: "cat.jpg",
		File: &event.EncryptedFileInfo{EncryptedFile: *file, URL: up.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "image/jpeg", Size: len(picture)}}
	if _, err := alice.cli.SendMessageEvent(ctx, room, event.EventMessage, content); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the image at the MMSC", 120*time.Second, func() bool { return len(f.SendReqs()) == 1 })
	time.Sleep(2 * time.Second)
	got := f.SendReqs()
	if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != contactNumber+"/TYPE=PLMN" {
		t.Fatalf("MMSC got %d m-send-req (to %q), want one to %s", len(got), got[0].To, contactNumber)
	}
	var image, caption bool
	for _, p := range got[0].Parts {
		image = image || bytes.Equal(p.Data, picture)
		caption = caption || string(p.Data) == "here it is"
	}
	if !image || !caption {
		t.Errorf("m-send-req parts: image %v, caption %v", image, caption)
	}
	if n := len(e.sim.Sent()); n != 0 {
		t.Errorf("the modem sent %d SMS for an image", n)
	}
	if b := e.sim.Bearers(); b[2] != (modemsim.Bearer{APN: "mms.e2e", Active: true}) {
		t.Errorf("MMS bearer (network.mms.bearer: at) is %+v, want context 2 active on mms.e2e", b)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC found problems: %q", pr)
	}
}
