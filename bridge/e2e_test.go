package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "go.mau.fi/util/dbutil/litestream" // sqlite3-fk-wal for the test client's crypto store
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// bubbledBin is the bubbled binary built once by TestMain.
var bubbledBin string

func TestMain(m *testing.M) {
	if os.Getenv("BUBBLED_SKIP_DENDRITE") == "1" {
		fmt.Println("skipping bridge end-to-end tests: BUBBLED_SKIP_DENDRITE=1")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "bubbled-bin-")
	if err != nil {
		panic(err)
	}
	bubbledBin = filepath.Join(dir, "bubbled")
	build := exec.Command("go", "build", "-tags", "goolm", "-o", bubbledBin, "github.com/bubbled/bubbled")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building bubbled failed: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// env is one bubbled + Dendrite + modemsim setup.
type env struct {
	t        *testing.T
	dir      string
	cfgPath  string
	regPath  string
	hs       *dendritetest.Server
	sim      *modemsim.Sim
	proc     *exec.Cmd
	procDone chan struct{}
	logPath  string
	asPort   int
	device   string   // the modem device in the config
	env      []string // extra environment of the bubbled process
	sim2     *modemsim.Sim
	more     []*modemsim.Sim // envOptions.more
	// metricsURL is bubbled's metrics listener (metrics.listen, pprof on).
	metricsURL string
}

const (
	lineNumber    = "+15550001111"
	contactNumber = "+15557654321"
	botMXID       = "@smsbot:localhost"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true}})
}

// envOptions shape one test environment.
type envOptions struct {
	sim modemsim.Options
	// postgres selects PostgreSQL (this URI) instead of the default SQLite file.
	postgres string
	// network is YAML added to the config's network section (2 spaces deep).
	network string
	// networkFor, when set, makes that YAML from the homeserver's URL.
	networkFor func(hsURL string) string
	// link makes the modem's device a symlink that follows the simulator
	// across Unplug/Replug, like /dev/serial/by-id does.
	link bool
	// env are extra BUBBLED_* variables for the bubbled process.
	env []string
	// second adds a second modem (sim1, +15550002222) as e.sim2.
	second bool
	// sim2 replaces the second modem's options.
	sim2 *modemsim.Options
	// cnum leaves own_number out of the modems' config: a line learns its
	// number from AT+CNUM (or its user) and proves it by SMS. Otherwise
	// each modem's own_number is its simulator's OwnNumber, set by the admin.
	cnum bool
	// top is YAML added at the top level of the config (whole sections).
	top string
	// more adds that many modems more (sim2, sim3, ...; own numbers
	// +15550003002, +15550003003, ...) as e.more.
	more int
}

// newEnvWith starts modemsim, Dendrite, and bubbled.
func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	opts, postgresURI := o.sim, o.postgres
	ctx := context.Background()
	e := &env{t: t, dir: t.TempDir()}
	var err error
	e.sim, err = modemsim.Start(opts)
	if err != nil {
		t.Fatalf("start modemsim: %v", err)
	}
	t.Cleanup(func() { _ = e.sim.Close() })
	e.device = e.sim.Path()
	if o.link {
		e.device = filepath.Join(e.dir, "modem")
		if err := e.sim.Link(e.device); err != nil {
			t.Fatal(err)
		}
	}
	e.env = o.env
	ownNumber := func(n string) string {
		if o.cnum || n == "" {
			return ""
		}
		return "\n      own_number: \"" + n + "\""
	}
	firstModem := e.device + ownNumber(opts.OwnNumber)
	secondModem := ""
	if o.second {
		opts2 := modemsim.Options{OwnNumber: "+15550002222", Echo: true}
		if o.sim2 != nil {
			opts2 = *o.sim2
		}
		e.sim2, err = modemsim.Start(opts2)
		if err != nil {
			t.Fatalf("start the second modemsim: %v", err)
		}
		t.Cleanup(func() { _ = e.sim2.Close() })
		secondModem = "\n    - id: sim1\n      device: " + e.sim2.Path() + ownNumber(opts2.OwnNumber)
	}
	for i := 2; i < 2+o.more; i++ {
		own := fmt.Sprintf("+1555000300%d", i)
		sim, err := modemsim.Start(modemsim.Options{OwnNumber: own, Echo: true})
		if err != nil {
			t.Fatalf("start modemsim %d: %v", i, err)
		}
		t.Cleanup(func() { _ = sim.Close() })
		e.more = append(e.more, sim)
		secondModem += fmt.Sprintf("\n    - id: sim%d\n      device: %s", i, sim.Path()) + ownNumber(own)
	}
	hsPort, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.asPort, err = dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.metricsURL = fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	e.cfgPath = filepath.Join(e.dir, "config.yaml")
	e.regPath = filepath.Join(e.dir, "registration.yaml")
	e.logPath = filepath.Join(e.dir, "bubbled.log")
	o.network = strings.ReplaceAll(o.network, "{{AS_URL}}", fmt.Sprintf("http://127.0.0.1:%d", e.asPort))
	if o.networkFor != nil {
		o.network += "\n" + o.networkFor(fmt.Sprintf("http://127.0.0.1:%d", hsPort))
	}
	dbConfig := "type: sqlite3-fk-wal\n  uri: file:bubbled.db?_txlock=immediate"
	if postgresURI != "" {
		dbConfig = "type: postgres\n  uri: " + postgresURI
	}
	cfg := fmt.Sprintf(`homeserver:
  address: http://127.0.0.1:%d
  domain: localhost
appservice:
  address: http://127.0.0.1:%d
  hostname: 127.0.0.1
  port: %d
  id: bubbled
  bot:
    username: smsbot
  as_token: generate
  hs_token: generate
  username_template: "sms_{{.}}"
database:
  %s
bridge:
  permissions:
    "localhost": user
    "@boss:localhost": admin
encryption:
  allow: true
  default: true
  require: false
  pickle_key: generate
provisioning:
  shared_secret: generate
log:
  level: debug
  format: json
metrics:
  listen: %s
  pprof: true
network:
  default_region: US
  modems:
    - id: sim0
      device: %s%s
  sms:
    max_parts: 10
    command_timeout: 5s
    send_timeout: 30s
    status_reports: true
    rate_per_minute: 0
    rate_per_day: 0
    rate_per_month: 0
    user_rate_per_day: 0
%s
%s
`, hsPort, e.asPort, e.asPort, dbConfig, strings.TrimPrefix(e.metricsURL, "http://"), firstModem, secondModem, o.network, o.top)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bubbledBin, "-c", e.cfgPath, "-g", "-r", e.regPath).CombinedOutput()
	if err != nil {
		t.Fatalf("bubbled -g: %v\n%s", err, out)
	}
	e.hs, err = dendritetest.Start(ctx, dendritetest.Options{AppServiceRegistrations: []string{e.regPath}, Port: hsPort})
	if err != nil {
		t.Fatalf("start dendrite: %v", err)
	}
	t.Cleanup(e.hs.Stop)
	e.startBubbled()
	return e
}

// startBubbled runs the bubbled binary and waits until its bot answers.
func (e *env) startBubbled() {
	e.t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(bubbledBin, "-c", e.cfgPath, "--ignore-unsupported-server")
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), e.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.proc = cmd
	e.procDone = make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(e.procDone) }()
	e.t.Cleanup(e.stopBubbled)
	e.waitLog("started", 60*time.Second, func(line string) bool {
		return strings.Contains(line, "Bridge started") || strings.Contains(line, "bridge started")
	})
}

func (e *env) stopBubbled() {
	if e.proc == nil {
		return
	}
	_ = e.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.procDone:
	case <-time.After(20 * time.Second):
		_ = e.proc.Process.Kill()
		<-e.procDone
	}
	e.proc = nil
}

// waitLog waits until a line of bubbled's log matches.
func (e *env) waitLog(what string, timeout time.Duration, match func(string) bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-e.procDone:
			e.t.Fatalf("bubbled exited while waiting for %q; log:\n%s", what, e.tail())
		default:
		}
		f, err := os.Open(e.logPath)
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if match(sc.Text()) {
					_ = f.Close()
					return
				}
			}
			_ = f.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %q in bubbled's log:\n%s", what, e.tail())
}

func (e *env) tail() string {
	b, _ := os.ReadFile(e.logPath)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// user is a Matrix user with an E2EE client that joins every invite.
type user struct {
	t   *testing.T
	cli *mautrix.Client

	mu       sync.Mutex
	messages map[id.RoomID][]*event.Event // decrypted or plain m.room.message events from others
	notices  []string
	statuses []*event.Event // com.beeper.message_send_status events
	receipts []*event.Event // m.receipt events
	// undecryptable lists encrypted events the client could not decrypt
	// (shown when a wait times out).
	undecryptable []string
	changed       chan struct{}
	// joinDelay is how long the client waits before it accepts an invite,
	// as a person would (0: at once).
	joinDelay time.Duration
}

func (e *env) newUser(name string) *user {
	e.t.Helper()
	ctx := context.Background()
	cli, err := e.hs.RegisterUser(ctx, name, "pw-"+name+"-123456", false)
	if err != nil {
		e.t.Fatalf("register %s: %v", name, err)
	}
	u := &user{t: e.t, cli: cli, messages: map[id.RoomID][]*event.Event{}, changed: make(chan struct{}, 1)}
	ch, err := cryptohelper.NewCryptoHelper(cli, []byte("test pickle key"), filepath.Join(e.dir, name+"-crypto.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := ch.Init(ctx); err != nil {
		e.t.Fatalf("init crypto for %s: %v", name, err)
	}
	cli.Crypto = ch
	ch.DecryptErrorCallback = func(evt *event.Event, err error) {
		u.mu.Lock()
		u.undecryptable = append(u.undecryptable, fmt.Sprintf("%s %s %s: %v", evt.RoomID, evt.Sender, evt.ID, err))
		u.mu.Unlock()
	}
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.StateMember, func(ctx context.Context, evt *event.Event) {
		if evt.GetStateKey() == cli.UserID.String() && evt.Content.AsMember().Membership == event.MembershipInvite {
			go func() {
				u.mu.Lock()
				d := u.joinDelay
				u.mu.Unlock()
				time.Sleep(d)
				_, _ = cli.JoinRoomByID(context.Background(), evt.RoomID)
			}()
		}
	})
	syncer.OnEventType(event.EventMessage, func(ctx context.Context, evt *event.Event) {
		if evt.Sender == cli.UserID {
			return
		}
		u.mu.Lock()
		u.messages[evt.RoomID] = append(u.messages[evt.RoomID], evt)
		if evt.Content.AsMessage().MsgType == event.MsgNotice {
			u.notices = append(u.notices, evt.Content.AsMessage().Body)
		}
		u.mu.Unlock()
		select {
		case u.changed <- struct{}{}:
		default:
		}
	})
	record := func(list *[]*event.Event) func(context.Context, *event.Event) {
		return func(_ context.Context, evt *event.Event) {
			u.mu.Lock()
			*list = append(*list, evt)
			u.mu.Unlock()
			select {
			case u.changed <- struct{}{}:
			default:
			}
		}
	}
	syncer.OnEventType(event.BeeperMessageStatus, record(&u.statuses))
	syncer.OnEventType(event.EphemeralEventReceipt, record(&u.receipts))
	syncCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cli.SyncWithContext(syncCtx) }()
	e.t.Cleanup(func() { cancel(); <-done; _ = ch.Close() })
	return u
}

// waitMessage waits for a message from sender whose body matches.
func (u *user) waitMessage(timeout time.Duration, sender id.UserID, match func(body string) bool) (*event.Event, id.RoomID) {
	u.t.Helper()
	deadline := time.After(timeout)
	for {
		u.mu.Lock()
		for room, evts := range u.messages {
			for _, evt := range evts {
				if (sender == "" || evt.Sender == sender) && match(evt.Content.AsMessage().Body) {
					u.mu.Unlock()
					return evt, room
				}
			}
		}
		u.mu.Unlock()
		select {
		case <-u.changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			u.t.Fatalf("timed out waiting for a message from %s; have: %s", sender, u.dump())
		}
	}
}

// waitFor waits until check, run under u's lock, returns true.
func (u *user) waitFor(what string, timeout time.Duration, check func() bool) {
	u.t.Helper()
	deadline := time.After(timeout)
	for {
		u.mu.Lock()
		ok := check()
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			u.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// noticeTexts returns the m.notice bodies u has received.
func (u *user) noticeTexts() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.notices...)
}

func (u *user) count(sender id.UserID, body string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, evts := range u.messages {
		for _, evt := range evts {
			if evt.Sender == sender && evt.Content.AsMessage().Body == body {
				n++
			}
		}
	}
	return n
}

func (u *user) dump() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	for room, evts := range u.messages {
		for _, evt := range evts {
			fmt.Fprintf(&b, "\n  %s %s %s: %q", room, evt.Sender, evt.Type.Type, evt.Content.AsMessage().Body)
		}
	}
	for _, u := range u.undecryptable {
		fmt.Fprintf(&b, "\n  undecryptable: %s", u)
	}
	return b.String()
}

// login runs the bot's login command from a fresh management room.
func (e *env) login(u *user) {
	e.t.Helper()
	ctx := context.Background()
	resp, err := u.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
	if err != nil {
		e.t.Fatalf("create management room: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		members, err := u.cli.JoinedMembers(ctx, resp.RoomID)
		if err == nil {
			if _, ok := members.Joined[botMXID]; ok {
				break
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the bot did not join the management room; log:\n%s", e.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := u.cli.SendText(ctx, resp.RoomID, "login modem"); err != nil {
		e.t.Fatal(err)
	}
	u.waitMessage(60*time.Second, botMXID, func(body string) bool { return strings.Contains(body, "Logged in") })
}

// roomsWith lists the rooms alice has joined that other has joined too.
func (u *user) roomsWith(other id.UserID) []id.RoomID {
	u.t.Helper()
	rooms, err := u.cli.JoinedRooms(context.Background())
	if err != nil {
		u.t.Fatal(err)
	}
	var out []id.RoomID
	for _, r := range rooms.JoinedRooms {
		members, err := u.cli.JoinedMembers(context.Background(), r)
		if err != nil {
			u.t.Fatal(err)
		}
		if _, ok := members.Joined[other]; ok {
			out = append(out, r)
		}
	}
	return out
}

func ghostMXID(number string) id.UserID {
	return id.UserID("@sms_" + strings.TrimPrefix(number, "+") + ":localhost")
}

func TestSMSMatrixRoundTrip(t *testing.T) {
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)

	// Inbound SMS -> encrypted portal, decrypted text is exactly the SMS.
	if err := e.sim.Deliver(contactNumber, "Hello from the phone"); err != nil {
		t.Fatal(err)
	}
	evt, room := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "Hello from the phone" })
	if !evt.Mautrix.WasEncrypted {
		t.Errorf("the portal message was not end-to-end encrypted")
	}
	var enc event.EncryptionEventContent
	if err := alice.cli.StateEvent(context.Background(), room, event.StateEncryption, "", &enc); err != nil {
		t.Errorf("the portal has no m.room.encryption state: %v", err)
	}
	if e.sim.Stored() != 0 {
		t.Errorf("the SIM still holds %d messages after bridging", e.sim.Stored())
	}

	// A 3-part UCS-2 message with emoji arrives as one message.
	long := strings.Repeat("Grüße 😀 ünïcödé ", 10) + "end"
	if err := e.sim.Deliver(contactNumber, long); err != nil {
		t.Fatal(err)
	}
	evt, room2 := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == long })
	if room2 != room {
		t.Errorf("the long message went to room %s, want the contact's portal %s", room2, room)
	}
	if !evt.Mautrix.WasEncrypted {
		t.Errorf("the long message was not encrypted")
	}

	// The user's reply leaves as PDU(s) the modem decodes to the same text.
	reply := "Reply from Matrix ✓ with a €uro and [brackets]"
	if _, err := alice.cli.SendText(context.Background(), room, reply); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil {
		t.Fatalf("the modem saw no SMS: %v; log:\n%s", err, e.tail())
	}
	if sent[0].To != contactNumber || sent[0].Text != reply {
		t.Errorf("modem got SMS to %q %q, want to %q %q", sent[0].To, sent[0].Text, contactNumber, reply)
	}
	// The number is not on Matrix (no directory knows it): the room says so once.
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "is not on Matrix") && strings.Contains(b, "SMS") })

	// A long reply leaves as a concatenated message with the same text.
	longReply := strings.Repeat("This is a long reply that needs several parts. ", 8)
	if _, err := alice.cli.SendText(context.Background(), room, longReply); err != nil {
		t.Fatal(err)
	}
	sent, err = e.sim.WaitSent(ctx, 2)
	if err != nil {
		t.Fatalf("the modem saw no second SMS: %v", err)
	}
	if sent[1].Text != longReply || sent[1].Parts < 3 {
		t.Errorf("long reply: modem got %d parts %q, want ≥3 parts %q", sent[1].Parts, sent[1].Text, longReply)
	}

	// Restart: messages stored on the SIM while bubbled was down arrive
	// exactly once, in the same portal.
	e.stopBubbled()
	if err := e.sim.StoreOnly(contactNumber, "Sent while the bridge was down"); err != nil {
		t.Fatal(err)
	}
	e.startBubbled()
	_, room3 := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "Sent while the bridge was down" })
	if room3 != room {
		t.Errorf("after restart the message went to room %s, want the existing portal %s", room3, room)
	}
	if err := e.sim.Deliver(contactNumber, "After restart"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "After restart" })
	for _, body := range []string{"Hello from the phone", long, "Sent while the bridge was down", "After restart"} {
		if n := alice.count(ghost, body); n != 1 {
			t.Errorf("message %.30q arrived %d times, want once", body, n)
		}
	}
	if n := len(alice.roomsWith(ghost)); n != 1 {
		t.Errorf("alice shares %d rooms with the contact's ghost, want exactly one portal", n)
	}
}

// command sends a bot command in the management room and waits for the reply.
func (u *user) command(room id.RoomID, cmd string, timeout time.Duration, match func(string) bool) string {
	u.t.Helper()
	if _, err := u.cli.SendText(context.Background(), room, cmd); err != nil {
		u.t.Fatal(err)
	}
	evt, _ := u.waitMessage(timeout, botMXID, match)
	return evt.Content.AsMessage().Body
}

func (u *user) managementRoom() id.RoomID {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for room, evts := range u.messages {
		for _, evt := range evts {
			if evt.Sender == botMXID {
				return room
			}
		}
	}
	u.t.Fatal("no management room")
	return ""
}

func TestStartChatAndBadInput(t *testing.T) {
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	mgmt := alice.managementRoom()

	// A number that does not parse gets a clear answer, and nothing is sent.
	body := alice.command(mgmt, "start-chat 12ab", 30*time.Second, func(b string) bool {
		return strings.Contains(b, "not a phone number")
	})
	if !strings.Contains(body, "international form") {
		t.Errorf("bad number reply %q does not say what to write instead", body)
	}

	// start-chat with a number in national form (default region US) makes the portal.
	alice.command(mgmt, "start-chat (555) 222-3333", 30*time.Second, func(b string) bool {
		return strings.Contains(b, "Created chat")
	})
	var portal id.RoomID
	deadline := time.Now().Add(30 * time.Second)
	for portal == "" && time.Now().Before(deadline) {
		if rooms := alice.roomsWith(ghostMXID("+15552223333")); len(rooms) == 1 {
			portal = rooms[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
	if portal == "" {
		t.Fatalf("no portal with the ghost of +15552223333 was joined; log:\n%s", e.tail())
	}
	if _, err := alice.cli.SendText(context.Background(), portal, "First message to a new number"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil {
		t.Fatalf("modem saw nothing: %v; log:\n%s", err, e.tail())
	}
	if sent[0].To != "+15552223333" || sent[0].Text != "First message to a new number" {
		t.Errorf("modem got %q to %q", sent[0].Text, sent[0].To)
	}

	// A message longer than network.sms.max_parts allows is refused with a notice.
	if _, err := alice.cli.SendText(context.Background(), portal, strings.Repeat("x", 160*11)); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool { return strings.Contains(b, "Too long for SMS") })

	// A file cannot go by SMS: the room features say so, bridgev2 refuses it
	// before it reaches the line, the user is told, the modem sees nothing.
	_, err = alice.cli.SendMessageEvent(context.Background(), portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "report.pdf", URL: "mxc://localhost/abc",
	})
	if err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(30*time.Second, botMXID, func(b string) bool {
		return strings.Contains(b, "not bridged") && strings.Contains(b, "unsupported message type")
	})
	if got := e.sim.Sent(); len(got) != 1 {
		t.Errorf("modem sent %d messages, want 1 (the refused ones must not be sent)", len(got))
	}
}

// provision calls bubbled's provisioning API as user.
func (e *env) provision(user id.UserID, method, path string, body any) map[string]any {
	e.t.Helper()
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var cfg struct {
		Provisioning struct {
			SharedSecret string `yaml:"shared_secret"`
		} `yaml:"provisioning"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		e.t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	u := fmt.Sprintf("http://127.0.0.1:%d/_matrix/provision%s?user_id=%s", e.asPort, path, url.QueryEscape(user.String()))
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Provisioning.SharedSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	out["_status"] = resp.StatusCode
	out["_raw"] = string(b)
	return out
}

func TestProvisioningLoginAsksPINAndNumber(t *testing.T) {
	// A locked SIM that does not know its number (+CNUM answers nothing);
	// on the network it is +15550002222.
	e := newEnvWith(t, envOptions{sim: modemsim.Options{PIN: "2468", Echo: true, Subscriber: "+15550002222"}})
	bob := e.newUser("bob")

	step := e.provision(bob.cli.UserID, http.MethodPost, "/v3/login/start/modem", nil)
	if step["step_id"] != "com.github.bubbled.modem.pin" {
		t.Fatalf("first step = %v, want the PIN step; log:\n%s", step["_raw"], e.tail())
	}
	proc := step["login_id"].(string)

	// A wrong PIN is refused with the modem's reason and the flow stays usable.
	bad := e.provision(bob.cli.UserID, http.MethodPost, "/v3/login/step/"+proc+"/com.github.bubbled.modem.pin/user_input", map[string]string{"pin": "1111"})
	if bad["step_id"] != "com.github.bubbled.modem.pin" || !strings.Contains(fmt.Sprint(bad["instructions"]), "refused that PIN") {
		t.Fatalf("after a wrong PIN, step = %v, want the PIN step again saying the PIN was refused", bad["_raw"])
	}
	step = e.provision(bob.cli.UserID, http.MethodPost, "/v3/login/step/"+proc+"/com.github.bubbled.modem.pin/user_input", map[string]string{"pin": "2468"})
	if step["step_id"] != "com.github.bubbled.modem.number" {
		t.Fatalf("after the PIN, step = %v, want the number step", step["_raw"])
	}
	step = e.provision(bob.cli.UserID, http.MethodPost, "/v3/login/step/"+proc+"/com.github.bubbled.modem.number/user_input", map[string]string{"number": "(555) 000-2222"})
	if step["step_id"] != "com.github.bubbled.modem.check" || step["type"] != "display_and_wait" {
		t.Fatalf("after the number, step = %v, want the number check", step["_raw"])
	}
	// The typed number is proven by the SMS the line texts to it.
	step = e.provision(bob.cli.UserID, http.MethodPost, "/v3/login/step/"+proc+"/com.github.bubbled.modem.check/display_and_wait", nil)
	if step["type"] != "complete" {
		t.Fatalf("after the number check, step = %v, want complete; log:\n%s", step["_raw"], e.tail())
	}
	if sent := e.sim.Sent(); len(sent) != 1 || sent[0].To != "+15550002222" || !strings.HasPrefix(sent[0].Text, "bubbled line check ") {
		t.Fatalf("the modem sent %+v, want one number check to +15550002222", sent)
	}
	logins := e.provision(bob.cli.UserID, http.MethodGet, "/v3/logins", nil)
	if !strings.Contains(fmt.Sprint(logins["_raw"]), "15550002222") {
		t.Errorf("logins %v do not list the line 15550002222", logins["_raw"])
	}

	// The line works: an SMS reaches bob.
	if err := e.sim.Deliver(contactNumber, "hi bob"); err != nil {
		t.Fatal(err)
	}
	bob.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "hi bob" })

	// Restart: the SIM stays unlocked (the modem kept power), so the stored
	// login comes back without a PIN and drains what arrived meanwhile.
	e.stopBubbled()
	if err := e.sim.StoreOnly(contactNumber, "while down"); err != nil {
		t.Fatal(err)
	}
	e.startBubbled()
	bob.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "while down" })
}
