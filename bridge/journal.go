package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/aslistener"
	"github.com/bubbled/bubbled/config"
)

// journal.go puts bubbled's own listener (bridge/aslistener) in front of
// mautrix's appservice: mautrix answers a transaction once its events are in
// an in-memory channel and checks no token before middleware runs, so a
// crash loses what a person wrote and a forged transaction could be stored.
// Here every transaction is authenticated, journaled, answered, and then
// handed to mautrix's event processor from the journal, in order.

// journaledTypes are the non-state timeline events bridgev2 and bubbled
// handle; state events are always kept (they feed the state store).
var journaledTypes = map[string]bool{
	event.EventMessage.Type:               true,
	event.EventEncrypted.Type:             true,
	event.EventSticker.Type:               true,
	event.EventReaction.Type:              true,
	event.EventRedaction.Type:             true,
	event.EventUnstablePollStart.Type:     true,
	event.EventUnstablePollResponse.Type:  true,
	event.BeeperDeleteChat.Type:           true,
	event.BeeperAcceptMessageRequest.Type: true,
}

// ListenerOptions are switches only tests use.
type ListenerOptions struct {
	// JournalOff keeps transactions in memory, as mautrix does.
	JournalOff bool
	// Failpoint is aslistener.FailpointAfterAck or "".
	Failpoint string
}

// ListenerOptionsFromEnv reads the test-only switches BUBBLED_JOURNAL=off
// and BUBBLED_FAILPOINT.
func ListenerOptionsFromEnv() ListenerOptions {
	return ListenerOptions{JournalOff: os.Getenv("BUBBLED_JOURNAL") == "off", Failpoint: os.Getenv("BUBBLED_FAILPOINT")}
}

// Listener is the appservice listener: it owns the http.Server, the
// journal and its worker. Create it with NewListener after
// bridgev2.NewBridge and before the bridge starts; Start once the bridge
// runs; Stop before the bridge stops.
type Listener struct {
	br      *bridgev2.Bridge
	mx      *matrix.Connector
	journal *aslistener.Journal
	server  *aslistener.Server
	log     *zap.Logger

	// sessions are the Megolm sessions the crypto store already had (the
	// worker's own: no lock); asking the store costs a query and an
	// unpickle per event.
	sessions map[sessionKey]struct{}
}

type sessionKey struct {
	room    id.RoomID
	session id.SessionID
}

// maxKnownSessions bounds sessions; it is emptied when full (a session
// rotates after 100 messages or a week).
const maxKnownSessions = 4096

// NewListener opens the journal, tells mautrix not to start its own
// server, and starts listening on appservice.hostname:port. Transactions
// are answered from then on and handled once Start runs.
func NewListener(ctx context.Context, br *bridgev2.Bridge, mx *matrix.Connector, cfg config.Listener, opts ListenerOptions, log *zap.Logger) (*Listener, error) {
	l := &Listener{br: br, mx: mx, log: log, sessions: map[sessionKey]struct{}{}}
	if opts.JournalOff || opts.Failpoint != "" {
		log.Warn("started with test-only switches", zap.Bool("journal_off", opts.JournalOff), zap.String("failpoint", opts.Failpoint))
	}
	var err error
	l.journal, err = aslistener.New(ctx, br.DB.Database, aslistener.Options{Keep: l.keep, Extras: l.extras, Ahead: l.ahead,
		Memory: opts.JournalOff, Failpoint: opts.Failpoint, Log: log.Named("journal")})
	if err != nil {
		return nil, err
	}
	mx.Config.AppService.NoServer = true
	h := aslistener.Handler(mx.AS.Registration.ServerToken, cfg.MaxBodyBytes, l.journal, mx.AS.Router, log)
	network, addr := "tcp", mx.AS.Host.Address()
	if mx.AS.Host.IsUnixSocket() {
		network, addr = "unix", mx.AS.Host.Hostname
		_ = os.Remove(addr)
	}
	l.server, err = aslistener.Listen(network, addr, h, aslistener.Limits{MaxBodyBytes: cfg.MaxBodyBytes,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, IdleTimeout: cfg.IdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes}, log)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Start hands journaled events to mautrix's event processor, oldest first,
// beginning with those a crash left behind.
func (l *Listener) Start(ctx context.Context) { l.journal.Start(ctx, l.handle) }

// Stop closes the listener and stops the journal's worker; what it has not
// handled stays journaled for the next start.
func (l *Listener) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.server.Close(ctx); err != nil {
		l.log.Warn("failed to close the appservice listener cleanly", zap.Error(err))
	}
	if err := l.journal.Stop(ctx); err != nil {
		l.log.Warn("stopped waiting for the journal worker", zap.Error(err))
	}
}

// keep journals what mautrix and bubbled act on: state events, the
// handled timeline types except from bubbled's own bot and ghosts (which
// bridgev2 ignores), and ephemeral and to-device events when the
// registration asks for them.
func (l *Listener) keep(e aslistener.Event) bool {
	switch {
	case e.Class != aslistener.ClassTimeline:
		return l.mx.AS.Registration.EphemeralEvents
	case e.State:
		return true
	}
	sender := id.UserID(e.Sender)
	if sender == l.mx.Bot.UserID || l.br.IsGhostMXID(sender) {
		return false
	}
	return journaledTypes[e.Type]
}

// handle does for one journaled event what mautrix's transaction handler
// does, then dispatches it; the event processor runs its handlers before
// Dispatch returns (bridgev2 uses the Sync mode).
func (l *Listener) handle(ctx context.Context, e aslistener.Entry) {
	evt := l.parse(e)
	if evt == nil {
		return
	}
	if evt.Type.IsState() {
		mautrix.UpdateStateStore(ctx, l.mx.AS.StateStore, evt)
	}
	if evt.Type.Class == event.ToDeviceEventType {
		// journaled before a crash, or ahead found mautrix's channel full
		l.mx.AS.ToDeviceEvents <- evt
		return
	}
	if !l.waitForSession(ctx, evt) {
		return // stopping: the event stays journaled
	}
	l.mx.EventProcessor.Dispatch(ctx, evt)
}

// ahead hands a to-device event (a room key) to mautrix's encryption loop
// as soon as it is journaled, so that it never waits behind the message it
// decrypts (which the worker holds in waitForSession, up to sessionWait).
func (l *Listener) ahead(e aslistener.Entry) bool {
	if e.Class != aslistener.ClassToDevice {
		return false
	}
	evt := l.parse(e)
	if evt == nil {
		return false
	}
	select {
	case l.mx.AS.ToDeviceEvents <- evt:
		return true
	default:
		return false
	}
}

// parse decodes a journaled event as mautrix's transaction handler does;
// nil when it is not a Matrix event.
func (l *Listener) parse(e aslistener.Entry) *event.Event {
	evt := &event.Event{}
	if err := json.Unmarshal(e.Raw, evt); err != nil {
		l.log.Warn("dropped a journaled event that is not a Matrix event", zap.String("txn_id", e.TxnID), zap.Error(err))
		return nil
	}
	evt.Mautrix.ReceivedAt = time.Now()
	switch {
	case e.Class == aslistener.ClassEphemeral:
		evt.Mautrix.EventSource, evt.Type.Class = event.SourceEphemeral, event.EphemeralEventType
	case e.Class == aslistener.ClassToDevice:
		evt.Mautrix.EventSource, evt.Type.Class = event.SourceToDevice, event.ToDeviceEventType
	case evt.StateKey != nil:
		evt.Mautrix.EventSource, evt.Type.Class = event.SourceTimeline&event.SourceJoin, event.StateEventType // as mautrix
	default:
		evt.Mautrix.EventSource, evt.Type.Class = event.SourceTimeline, event.MessageEventType
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrUnsupportedContentType) {
		l.log.Warn("failed to parse a journaled event's content", zap.String("event_id", evt.ID.String()),
			zap.String("event_type", evt.Type.Type), zap.Error(err))
	}
	return evt
}

// sessionWait is how long the worker holds an encrypted event whose Megolm
// session has not arrived yet (Dendrite hands room keys to the bot's /sync,
// which may lag behind the transaction). bridgev2 itself waits 25 s more.
const sessionWait = 30 * time.Second

// waitForSession holds an encrypted event until its Megolm session is
// known, so that it is decrypted while it is still journaled: bridgev2
// waits for a missing session in a goroutine of its own, after Dispatch has
// returned and the event has left the journal, and a crash or a late key
// then lost it. It reports false only when ctx ended (bubbled stops).
func (l *Listener) waitForSession(ctx context.Context, evt *event.Event) bool {
	c, ok := evt.Content.Parsed.(*event.EncryptedEventContent)
	if !ok || l.mx.Crypto == nil || c.SessionID == "" {
		return true
	}
	key := sessionKey{evt.RoomID, c.SessionID}
	if _, ok := l.sessions[key]; ok {
		return true
	}
	if l.mx.Crypto.WaitForSession(ctx, evt.RoomID, c.SenderKey, c.SessionID, sessionWait) {
		if len(l.sessions) >= maxKnownSessions {
			clear(l.sessions)
		}
		l.sessions[key] = struct{}{}
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	l.log.Warn("handing over an encrypted event whose room key has not arrived", zap.String("event_id", evt.ID.String()),
		zap.Duration("waited", sessionWait))
	return true
}

// extras passes a transaction's MSC3202 device lists and one-time key
// counts on to mautrix's channels, dropping them when those are full as
// mautrix does.
func (l *Listener) extras(txn *aslistener.Transaction) {
	var dl mautrix.DeviceLists
	if txn.DeviceLists != nil && json.Unmarshal(txn.DeviceLists, &dl) == nil {
		select {
		case l.mx.AS.DeviceLists <- &dl:
		default:
		}
	}
	var otks appservice.OTKCountMap
	if txn.OTKCounts == nil || json.Unmarshal(txn.OTKCounts, &otks) != nil {
		return
	}
	for userID, devices := range otks {
		for deviceID, count := range devices {
			count.UserID, count.DeviceID = userID, deviceID
			select {
			case l.mx.AS.OTKCounts <- &count:
			default:
			}
		}
	}
}

// Backlog counts the journaled events not handled yet (for the
// bubbled_journal_backlog gauge).
func (l *Listener) Backlog(ctx context.Context) (int, error) { return l.journal.Backlog(ctx) }
