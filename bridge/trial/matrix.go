package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "go.mau.fi/util/dbutil/litestream" // sqlite3-fk-wal for the crypto store
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

// Timeouts of the Matrix steps.
const (
	botJoinTimeout  = 30 * time.Second
	commandTimeout  = 60 * time.Second
	requestTimeout  = 30 * time.Second
	syncStopTimeout = 10 * time.Second
)

// seenMessage is one message event from someone else, as the trial's client saw it.
type seenMessage struct {
	seq       int // order of arrival, from 1
	room      id.RoomID
	sender    id.UserID
	body      string // "" for an event that could not be decrypted
	encrypted bool   // it arrived as m.room.encrypted
	decrypted bool   // body is the decrypted text
	at        time.Time
}

// matrixUser is the trial user's own Matrix session: an end-to-end encrypted client that
// syncs, joins every room it is invited to and records the messages of others. Its sync
// goroutine is started by startSync and ended by close.
type matrixUser struct {
	cli    *mautrix.Client
	crypto *cryptohelper.CryptoHelper

	mu      sync.Mutex // guards seen
	seen    []seenMessage
	changed chan struct{} // signalled (without blocking) when seen grows

	stopSync context.CancelFunc // nil until startSync
	syncDone chan struct{}      // closed when the sync goroutine returns; syncErr is set before
	syncErr  error
	closed   bool
}

// connectUser returns the trial user's session: the saved one when its token still works, else
// a new registration or login. registered reports a new account. It saves what changed in st.
func connectUser(ctx context.Context, hs *dendritetest.Server, st *state, dir string) (u *matrixUser, registered bool, err error) {
	cryptoPath := filepath.Join(dir, cryptoDB)
	var cli *mautrix.Client
	if st.AccessToken != "" {
		cli, err = mautrix.NewClient(hs.URL, id.NewUserID(trialUser, serverName), st.AccessToken)
		if err != nil {
			return nil, false, fmt.Errorf("create Matrix client: %w", err)
		}
		cli.DeviceID = id.DeviceID(st.DeviceID)
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		who, err := cli.Whoami(rctx)
		cancel()
		switch {
		case err == nil && who.DeviceID == cli.DeviceID:
		case err == nil || errors.Is(err, mautrix.MUnknownToken):
			cli = nil // the homeserver forgot the session: log in again below
		default:
			return nil, false, fmt.Errorf("check the trial user's saved session: %w", err)
		}
	}
	if cli == nil {
		// A new device needs a new crypto store: the old one belongs to the old device.
		if err := removeSQLite(cryptoPath); err != nil {
			return nil, false, err
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		cli, err = hs.RegisterUser(rctx, trialUser, st.Password, false)
		cancel()
		switch {
		case err == nil:
			registered = true
		case errors.Is(err, mautrix.MUserInUse):
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			cli, err = hs.Login(rctx, trialUser, st.Password)
			cancel()
			if err != nil {
				return nil, false, fmt.Errorf("the Matrix user %s exists but does not take the saved password (%w); run the trial with -fresh to start over", trialUser, err)
			}
		default:
			return nil, false, err
		}
		st.AccessToken, st.DeviceID = cli.AccessToken, string(cli.DeviceID)
		st.ManagementRoom = ""
		if err := st.save(dir); err != nil {
			return nil, false, err
		}
	}
	u = &matrixUser{cli: cli, changed: make(chan struct{}, 1)}
	u.crypto, err = cryptohelper.NewCryptoHelper(cli, []byte(st.PickleKey), cryptoPath)
	if err != nil {
		return nil, false, fmt.Errorf("open the trial user's crypto store: %w", err)
	}
	if err := u.crypto.Init(ctx); err != nil {
		_ = u.crypto.Close()
		return nil, false, fmt.Errorf("set up end-to-end encryption for the trial user: %w; run the trial with -fresh to start over", err)
	}
	cli.Crypto = u.crypto
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.StateMember, u.onMember)
	syncer.OnEventType(event.EventMessage, u.onMessage)
	syncer.OnEventType(event.EventEncrypted, u.onEncrypted)
	return u, registered, nil
}

// removeSQLite deletes a SQLite database with its WAL files.
func removeSQLite(path string) error {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old crypto store: %w", err)
		}
	}
	return nil
}

// onMember joins rooms the user is invited to (portals), within the sync goroutine.
func (u *matrixUser) onMember(ctx context.Context, evt *event.Event) {
	if evt.GetStateKey() != u.cli.UserID.String() || evt.Content.AsMember().Membership != event.MembershipInvite {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	// A failed join shows up as a missing message in the step that waits for it.
	_, _ = u.cli.JoinRoomByID(rctx, evt.RoomID)
}

// onMessage records messages from others; decrypted events arrive here too, marked by
// evt.Mautrix.WasEncrypted.
func (u *matrixUser) onMessage(ctx context.Context, evt *event.Event) {
	if evt.Sender == u.cli.UserID {
		return
	}
	u.record(seenMessage{
		room: evt.RoomID, sender: evt.Sender, body: evt.Content.AsMessage().Body,
		encrypted: evt.Mautrix.WasEncrypted, decrypted: evt.Mautrix.WasEncrypted,
	})
}

// onEncrypted records that an encrypted event arrived, before the crypto helper decrypts it,
// so that a failed decryption can be told apart from a message that never came.
func (u *matrixUser) onEncrypted(ctx context.Context, evt *event.Event) {
	if evt.Sender == u.cli.UserID {
		return
	}
	u.record(seenMessage{room: evt.RoomID, sender: evt.Sender, encrypted: true})
}

func (u *matrixUser) record(m seenMessage) {
	u.mu.Lock()
	m.seq = len(u.seen) + 1
	m.at = time.Now()
	u.seen = append(u.seen, m)
	u.mu.Unlock()
	select {
	case u.changed <- struct{}{}:
	default:
	}
}

// mark returns the sequence number of the last recorded message; waitMessage(after: mark)
// then sees only later ones.
func (u *matrixUser) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// waitMessage waits for a recorded message after seq `after` that match accepts.
func (u *matrixUser) waitMessage(ctx context.Context, timeout time.Duration, after int, match func(seenMessage) bool) (seenMessage, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		for _, m := range u.seen[min(after, len(u.seen)):] {
			if match(m) {
				u.mu.Unlock()
				return m, nil
			}
		}
		u.mu.Unlock()
		select {
		case <-u.changed:
		case <-u.syncDone:
			return seenMessage{}, fmt.Errorf("the trial user's sync stopped: %v", u.syncErr)
		case <-ctx.Done():
			return seenMessage{}, ctx.Err()
		case <-deadline.C:
			return seenMessage{}, errTimeout
		}
	}
}

// errTimeout is waitMessage's error when nothing matched in time.
var errTimeout = errors.New("timed out")

// messagesAfter lists the recorded messages after seq, for error reports.
func (u *matrixUser) messagesAfter(after int, room id.RoomID) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	for _, m := range u.seen[min(after, len(u.seen)):] {
		if room != "" && m.room != room {
			continue
		}
		body := fmt.Sprintf("%q", m.body)
		if m.encrypted && !m.decrypted {
			body = "(encrypted, not decrypted)"
		}
		fmt.Fprintf(&b, "\n  %s in %s: %s", m.sender, m.room, body)
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

// startSync starts the sync goroutine; close stops it.
func (u *matrixUser) startSync(ctx context.Context) {
	ctx, u.stopSync = context.WithCancel(ctx)
	u.syncDone = make(chan struct{})
	go func() {
		defer close(u.syncDone)
		u.syncErr = u.cli.SyncWithContext(ctx)
	}()
}

// close stops syncing and closes the crypto store. Later calls do nothing. It is called from
// the goroutine that called startSync.
func (u *matrixUser) close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	if u.stopSync != nil {
		u.stopSync()
		select {
		case <-u.syncDone:
		case <-time.After(syncStopTimeout):
			return errors.New("stop the trial user's sync: it did not end")
		}
		u.stopSync = nil
	}
	if err := u.crypto.Close(); err != nil {
		return fmt.Errorf("close the trial user's crypto store: %w", err)
	}
	return nil
}

// loginOutcome says what ensureLineLogin found or did.
type loginOutcome struct {
	Room        id.RoomID // the management room
	RoomCreated bool      // the management room is new
	LoggedInNow bool      // `login` was sent in this run
	BotSaid     string    // the bot's answer (to `login`, or to `list-logins` when already logged in)
}

// ensureLineLogin makes sure the user has a management room with the bot and that the
// simulated line is logged in, sending `login` when `list-logins` says it is not.
func (u *matrixUser) ensureLineLogin(ctx context.Context, room id.RoomID) (*loginOutcome, error) {
	out := &loginOutcome{Room: room}
	prefix := ""
	if room == "" || !u.botIn(ctx, room) {
		var err error
		if out.Room, prefix, err = u.createManagementRoom(ctx); err != nil {
			return nil, err
		}
		out.RoomCreated = true
	}
	answer, err := u.command(ctx, out.Room, prefix+"list-logins", func(body string) bool {
		return strings.Contains(body, "not logged in") || strings.Contains(body, "* `")
	})
	if err != nil {
		return nil, err
	}
	if !strings.Contains(answer, "not logged in") {
		out.BotSaid = strings.TrimSpace(answer)
		return out, nil
	}
	answer, err = u.command(ctx, out.Room, prefix+"login", func(body string) bool {
		return strings.Contains(body, "Logged in") || loginFailed(body)
	})
	if err != nil {
		return nil, err
	}
	if loginFailed(answer) {
		return nil, fmt.Errorf("the bridge bot refused `login`: %s", answer)
	}
	out.LoggedInNow, out.BotSaid = true, strings.TrimSpace(answer)
	return out, nil
}

// loginFailed recognises bridgev2's answers to a login command that went wrong, and steps
// that ask for input the simulated modem should never need (a PIN, the line's number).
func loginFailed(body string) bool {
	for _, prefix := range []string{"Failed", "Login failed", "You already have", "Please specify", "Invalid", "No login flows", "The SIM", "Which modem"} {
		if strings.HasPrefix(body, prefix) {
			return true
		}
	}
	return false
}

// botIn reports whether the bot and the user are both joined to room.
func (u *matrixUser) botIn(ctx context.Context, room id.RoomID) bool {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	members, err := u.cli.JoinedMembers(rctx, room)
	if err != nil {
		return false
	}
	_, bot := members.Joined[id.UserID(botMXID)]
	_, me := members.Joined[u.cli.UserID]
	return bot && me
}

// createManagementRoom opens a direct chat with the bot and waits for its welcome. It returns
// the command prefix to use there: "" when the bot made it the management room, else the
// bridge's command prefix (the user already had a management room the trial lost track of).
func (u *matrixUser) createManagementRoom(ctx context.Context) (id.RoomID, string, error) {
	after := u.mark()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := u.cli.CreateRoom(rctx, &mautrix.ReqCreateRoom{
		Name:     "SMS bridge",
		Invite:   []id.UserID{id.UserID(botMXID)},
		IsDirect: true,
		Preset:   "trusted_private_chat",
	})
	cancel()
	if err != nil {
		return "", "", fmt.Errorf("create the direct chat with %s: %w", botMXID, err)
	}
	welcome, err := u.waitMessage(ctx, botJoinTimeout, after, func(m seenMessage) bool {
		return m.room == resp.RoomID && m.sender == botMXID && strings.Contains(m.body, "Hello")
	})
	if err != nil {
		return "", "", fmt.Errorf("wait for %s to join the direct chat and say hello: %w (is bubbled running, and is %s's registration loaded by Dendrite?)", botMXID, err, botMXID)
	}
	if strings.Contains(welcome.body, "management room") {
		return resp.RoomID, "", nil
	}
	return resp.RoomID, "!sms ", nil
}

// command sends a bot command in room and returns the first later answer of the bot that
// match accepts.
func (u *matrixUser) command(ctx context.Context, room id.RoomID, cmd string, match func(string) bool) (string, error) {
	after := u.mark()
	// A send that times out is sent once more with the same transaction
	// ID, as Matrix clients do: the homeserver keeps one event per ID, and
	// Dendrite, just restarted, has been seen to leave a send unanswered.
	txnID := u.cli.TxnID()
	var err error
	for attempt := range 2 {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, err = u.cli.SendMessageEvent(rctx, room, event.EventMessage,
			&event.MessageEventContent{MsgType: event.MsgText, Body: cmd}, mautrix.ReqSendEvent{TransactionID: txnID})
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) || attempt == 1 {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("send %q to the bridge bot: %w", cmd, err)
	}
	m, err := u.waitMessage(ctx, commandTimeout, after, func(m seenMessage) bool {
		return m.room == room && m.sender == botMXID && match(m.body)
	})
	if err != nil {
		return "", fmt.Errorf("wait for the bridge bot's answer to %q: %w; the bot said:%s", cmd, err, u.messagesAfter(after, room))
	}
	return m.body, nil
}
