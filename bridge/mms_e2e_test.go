package bridge_test

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
	"time"

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
		network: "  mms:\n    enabled: true\n    mmsc: " + f.URL() + "\n    user_agent: " + mmsUA + "\n"})
	return e, f
}

// picture is a small JPEG-looking payload; the bridge does not decode it.
var picture = append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, bytes.Repeat([]byte("bubbled mms picture "), 800)...)

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
		Media: []mmscfake.Media{{Type: "image/jpeg", Name: "cat.jpg", Data: picture}}})
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
