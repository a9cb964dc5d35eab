package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms"
)

// Bridge state error codes bubbled reports for a line.
const (
	stateModemUnavailable status.BridgeStateErrorCode = "sms-modem-unavailable"
	stateSIMLocked        status.BridgeStateErrorCode = "sms-sim-locked"
	stateModemLost        status.BridgeStateErrorCode = "sms-modem-lost"
	stateModemRecovering  status.BridgeStateErrorCode = "sms-modem-recovering"
)

// reconnectDelays is the back-off between attempts to open a line's modem.
var reconnectDelays = []time.Duration{2 * time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, 60 * time.Second}

// Client is the bridgev2 NetworkAPI of one phone line (one modem with its SIM).
// Connect starts one goroutine that opens the modem (retrying with back-off
// while it is missing) and starts reception; from then on the sms.Line itself
// reopens a lost port. Disconnect stops both and waits.
type Client struct {
	conn     *Connector
	login    *bridgev2.UserLogin
	meta     *LoginMetadata
	modem    config.Modem
	modemKey string
	log      *zap.Logger
	hooks    *lineHooks
	// troubled is set while the modem is away or recovering, so the owner
	// hears once when it goes and once when it is back.
	troubled atomic.Bool
	// ownGhost sets the line's own ghost's profile once, before the first
	// new room of an inbound SMS (see handleSMS).
	ownGhost sync.Once

	// mu guards the fields below.
	mu   sync.Mutex
	line *sms.Line // current line; a closed Line is replaced on the next Connect
	// mms is the line's MMS fetch queue (nil when MMS is off); set by
	// newClient, started by Connect, stopped by Disconnect.
	mms     *mms.Inbox
	opened  bool // line was opened (by the login flow or by run)
	cancel  context.CancelFunc
	done    chan struct{}
	running bool
}

var (
	_ bridgev2.NetworkAPI                    = (*Client)(nil)
	_ bridgev2.IdentifierResolvingNetworkAPI = (*Client)(nil)
)

// lineHooks lets an sms.Line reach the Client that owns it. The login flow
// makes the Line before the Client exists, so the Line is given the hooks and
// the Client attaches itself later.
type lineHooks struct {
	mu    sync.Mutex
	cl    *Client
	owner id.UserID         // the Matrix user whose line this is (or is becoming)
	check *sms.PendingCheck // the login flow's number check, while it runs
}

func (h *lineHooks) client() *Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cl
}

func (h *lineHooks) attach(cl *Client) {
	h.mu.Lock()
	h.cl, h.owner, h.check = cl, cl.login.UserMXID, nil
	h.mu.Unlock()
}

// state returns the line's owner and the login flow's number check (or nil).
func (h *lineHooks) state() (id.UserID, *sms.PendingCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.owner, h.check
}

// handle is the sms.Handler of the line. Number-check SMS are never bridged.
func (h *lineHooks) handle(ctx context.Context, m *sms.Message) error {
	if _, p := h.state(); p != nil && p.Consume(m) {
		return nil
	}
	cl := h.client()
	if cl == nil { // the login flow waits for its number check: let it pass
		return fmt.Errorf("the line has no login yet: %w", sms.ErrNotYet)
	}
	if sms.IsNumberCheck(m, cl.meta.Number) {
		cl.log.Info("ignored a number-check SMS that came back after its login ended")
		return nil
	}
	return cl.handleSMS(ctx, m)
}

// outcome is the line's sms.OutcomeHandler.
func (h *lineHooks) outcome(ctx context.Context, o sms.Outcome) error {
	if sms.IsNumberCheckOutcome(o) {
		if _, p := h.state(); p != nil {
			p.Outcome(o)
		}
		return nil
	}
	cl := h.client()
	if cl == nil {
		return errors.New("the line has no login yet")
	}
	if o.Kind == sms.OutcomeSent && strings.HasPrefix(o.MessageID, "$") {
		// A Matrix message's Sent outcome shows nowhere but in the
		// metrics: skip finding its message and room (queries each).
		cl.countOutcome(o)
		cl.log.Debug("SMS progressed", zap.String("sms_id", o.MessageID), zap.String("outcome", string(o.Kind)), zap.Int("parts", o.Parts))
		return nil
	}
	return cl.handleOutcome(ctx, o)
}

// call is the line's sms.CallHandler.
func (h *lineHooks) call(ctx context.Context, c sms.Call) error {
	cl := h.client()
	if cl == nil {
		return errors.New("the line has no login yet")
	}
	return cl.handleCall(ctx, c)
}

// stateChanged is the line's sms.Config.OnStateChange: it turns line states
// into bridge states and tells the line's owner in their management room.
// It must not block, so the notices go out on their own goroutine.
func (h *lineHooks) stateChanged(st sms.State, err error) {
	cl := h.client()
	if cl == nil {
		return
	}
	var notice string
	switch st {
	case sms.StateReady:
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
		if cl.troubled.Swap(false) {
			notice = "The modem of line " + phone.Format(cl.meta.Number) + " is working again."
		}
	case sms.StateRecovering:
		msg := "The modem stopped answering; bubbled is recovering it"
		var rerr *sms.RecoveryError
		if errors.As(err, &rerr) {
			msg += " (" + rerr.Step.String() + ")"
			cl.conn.metrics.Recovery(cl.modemKey, rerr.Step.String())
		}
		msg += ". Messages wait in the queue meanwhile."
		cl.log.Warn("recovering the modem", zap.Error(err))
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: stateModemRecovering, Message: msg})
		if !cl.troubled.Swap(true) {
			notice = "Line " + phone.Format(cl.meta.Number) + ": " + msg
		}
	case sms.StateDisconnected:
		msg := "The modem is gone (unplugged, or the port closed); bubbled waits for it to come back. Messages wait in the queue meanwhile."
		if err != nil {
			msg = fmt.Sprintf("%s (%v)", msg, err)
		}
		cl.log.Warn("lost the modem; the line reopens it", zap.Error(err))
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: stateModemLost, Message: msg})
		if !cl.troubled.Swap(true) {
			notice = "Line " + phone.Format(cl.meta.Number) + ": " + msg
		}
	}
	if notice != "" {
		go cl.notifyOwner(notice)
	}
}

// newLine makes the sms.Line of a modem, wired to hooks. It does no I/O.
func (c *Connector) newLine(m config.Modem, ownNumber string, hooks *lineHooks, log *zap.Logger) *sms.Line {
	cfg := c.lineConfig(m, ownNumber)
	cfg.OnStateChange = hooks.stateChanged
	cfg.OnOutcome = hooks.outcome
	cfg.OnCall = hooks.call
	cfg.UserLines = func() []string { owner, _ := hooks.state(); return c.userLineIDs(owner) }
	line := sms.NewLine(cfg, c.br.DB.Database, log, hooks.handle)
	if c.cfg.MMS.Enabled {
		line.SetPushHandler(hooks.push)
	}
	return line
}

// newClient wires a Client for a login. line and hooks come from the login
// flow when it already opened the modem; otherwise both are nil. It does no I/O.
func (c *Connector) newClient(login *bridgev2.UserLogin, line *sms.Line, hooks *lineHooks) (*Client, error) {
	meta, ok := login.Metadata.(*LoginMetadata)
	if !ok || meta == nil {
		return nil, fmt.Errorf("login %s has no line metadata; log it out and in again", login.ID)
	}
	m, ok := c.modemConfig(meta)
	if !ok {
		return nil, fmt.Errorf("login %s uses modem %q, which is no longer in network.modems; add it back or log the line out", login.ID, meta.ModemID)
	}
	cl := &Client{
		conn:     c,
		login:    login,
		meta:     meta,
		modem:    m,
		modemKey: m.ID,
		log:      c.log.With(zap.String("line", m.ID)),
		hooks:    hooks,
		line:     line,
		opened:   line != nil,
	}
	if cl.hooks == nil {
		cl.hooks = &lineHooks{}
	}
	var err error
	if cl.mms, err = c.newMMSInbox(cl); err != nil {
		return nil, err
	}
	cl.hooks.attach(cl)
	return cl, nil
}

// LoadUserLogin makes the Client of a stored login. It does no I/O.
func (c *Connector) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	cl, err := c.newClient(login, nil, nil)
	if err != nil {
		return err
	}
	login.Client = cl
	return nil
}

// currentLine returns the line to send with, or nil before the first Connect.
func (cl *Client) currentLine() *sms.Line {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.line
}

// Connect starts the line: open the modem, unlock the SIM with the configured
// PIN, then receive. Failures are reported as bridge state and retried with
// back-off until Disconnect.
func (cl *Client) Connect(ctx context.Context) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.running {
		return
	}
	if err := cl.conn.claim(cl.modemKey, cl.login.ID); err != nil {
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateUnknownError, Error: stateModemUnavailable, Message: err.Error()})
		return
	}
	if cl.line == nil || cl.line.State() == sms.StateClosed && !cl.opened {
		cl.line = cl.conn.newLine(cl.modem, cl.meta.Number, cl.hooks, cl.log)
		cl.opened = false
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cl.cancel = cancel
	cl.done = make(chan struct{})
	cl.running = true
	go cl.run(runCtx, cl.line, cl.opened, cl.done)
	if cl.mms != nil {
		cl.mms.Start(runCtx)
	}
}

// run opens the line (unless the login flow already did) and starts
// reception, retrying with back-off until it works or ctx ends.
func (cl *Client) run(ctx context.Context, line *sms.Line, opened bool, done chan struct{}) {
	defer close(done)
	for attempt := 0; ; attempt++ {
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnecting})
		err := cl.start(ctx, line, &opened)
		if err == nil {
			cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
			cl.log.Info("started receiving SMS", zap.String("number", phone.Mask(cl.meta.Number)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		var locked *SIMLockedError
		if errors.As(err, &locked) {
			cl.log.Error("stopped: the SIM is locked", zap.Error(err))
			cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateBadCredentials, Error: stateSIMLocked, Message: err.Error()})
			if locked.Status == simNeedsPIN {
				go cl.notifyOwner(fmt.Sprintf("Line %s is stopped: its SIM needs the PIN (the modem lost power). Send `pin <PIN>` here to unlock it, or put the PIN in network.modems[].pin.", phone.Format(cl.meta.Number)))
			} else {
				go cl.notifyOwner(fmt.Sprintf("Line %s is stopped: %v.", phone.Format(cl.meta.Number), err))
			}
			return
		}
		cl.log.Warn("failed to start the line", zap.Error(err), zap.Int("attempt", attempt+1))
		cl.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: stateModemUnavailable,
			Message: fmt.Sprintf("Can't use the modem: %v", err)})
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectDelays[min(attempt, len(reconnectDelays)-1)]):
		}
	}
}

// SIM states reported by AT+CPIN? (3GPP TS 27.007 8.3).
const (
	simReady    = "READY"
	simNeedsPIN = "SIM PIN"
)

// SIMLockedError means the SIM needs a PIN or PUK that bubbled must not guess.
type SIMLockedError struct{ Status string }

func (e *SIMLockedError) Error() string {
	if e.Status == simNeedsPIN {
		return "the SIM needs its PIN: put it in network.modems[].pin, or log the line in again and enter it"
	}
	return fmt.Sprintf("the SIM is locked (%s): unlock it in a phone first; bubbled does not try PINs blindly", e.Status)
}

// start opens the modem if needed, checks that the SIM is unlocked (the Line
// tries the configured PIN once at Open) and starts receiving.
func (cl *Client) start(ctx context.Context, line *sms.Line, opened *bool) error {
	if !*opened {
		if err := line.Open(ctx); err != nil {
			return err
		}
		*opened = true
		cl.mu.Lock()
		cl.opened = true
		cl.mu.Unlock()
	}
	st, err := line.PINStatus(ctx)
	if err != nil {
		return err
	}
	if st != simReady {
		return &SIMLockedError{Status: st}
	}
	if line.Receiving() { // the login flow started it for the number check
		return nil
	}
	return line.StartReceiving(ctx)
}

// Disconnect stops the line and waits for its goroutines. A later Connect
// makes a new Line.
func (cl *Client) Disconnect() {
	cl.mu.Lock()
	cancel, done, running, line := cl.cancel, cl.done, cl.running, cl.line
	cl.running = false
	cl.opened = false
	cl.line = nil
	cl.mu.Unlock()
	if running {
		cancel()
		<-done
	}
	if cl.mms != nil {
		cl.mms.Stop()
	}
	if line != nil {
		_ = line.Close()
	}
	cl.conn.release(cl.modemKey, cl.login.ID)
}

// IsLoggedIn is true: a line stays logged in while its modem is away.
func (cl *Client) IsLoggedIn() bool { return true }

// LogoutRemote has nothing to tell the network (the SIM stays as it is); it
// stops the line, so that the modem is free for another login.
func (cl *Client) LogoutRemote(ctx context.Context) { cl.Disconnect() }

// IsThisUser reports whether a ghost is the line's own number.
func (cl *Client) IsThisUser(ctx context.Context, userID networkid.UserID) bool {
	return userID == UserIDForNumber(cl.meta.Number)
}

// GetChatInfo describes a contact's portal: a DM between the line and the contact.
func (cl *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	if info := cl.gateChatInfo(portal); info != nil {
		return info, nil
	}
	if members, ok := groupMembers(portal.ID); ok {
		return cl.groupChatInfo(members), nil
	}
	contact := networkid.UserID(portal.ID)
	return &bridgev2.ChatInfo{
		Type:         ptr(database.RoomTypeDM),
		ExtraUpdates: cl.conn.inviteOnCreate,
		Members: &bridgev2.ChatMemberList{
			IsFull:      true,
			OtherUserID: contact,
			Members: []bridgev2.ChatMember{
				{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: UserIDForNumber(cl.meta.Number)}, Membership: event.MembershipJoin},
				{EventSender: bridgev2.EventSender{Sender: contact}, Membership: event.MembershipJoin},
			},
		},
	}, nil
}

// GetUserInfo names a ghost after its contact, else by its formatted number.
func (cl *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	return cl.conn.userInfo(ghost.ID), nil
}

func userInfoFor(uid networkid.UserID) *bridgev2.UserInfo {
	if num, ok := NumberForUserID(uid); ok && strings.HasPrefix(num, "+") {
		return &bridgev2.UserInfo{
			Identifiers: []string{"tel:" + num},
			Name:        ptr(phone.Format(num)),
			IsBot:       ptr(false),
		}
	}
	name, _ := strings.CutPrefix(string(uid), alphaPrefix)
	return &bridgev2.UserInfo{Name: ptr(name), IsBot: ptr(false)}
}

// ResolveIdentifier turns a phone number typed by the user (start-chat,
// provisioning create_dm) into the contact's ghost and, if asked, portal.
func (cl *Client) ResolveIdentifier(ctx context.Context, identifier string, createChat bool) (*bridgev2.ResolveIdentifierResponse, error) {
	e164, err := phone.Parse(identifier, cl.conn.cfg.DefaultRegion)
	if err != nil {
		return nil, bridgev2.WrapRespErr(err, mautrix.MInvalidParam)
	}
	uid := UserIDForNumber(e164)
	ghost, err := cl.conn.br.GetGhostByID(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("get ghost of %s: %w", phone.Mask(e164), err)
	}
	resp := &bridgev2.ResolveIdentifierResponse{Ghost: ghost, UserID: uid, UserInfo: cl.conn.userInfo(uid)}
	if createChat {
		key := PortalKeyFor(uid, cl.login.ID)
		portal, err := cl.conn.br.GetPortalByKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("get portal of %s: %w", phone.Mask(e164), err)
		}
		info, _ := cl.GetChatInfo(ctx, portal)
		resp.Chat = &bridgev2.CreateChatResponse{PortalKey: key, Portal: portal, PortalInfo: info}
	}
	return resp, nil
}

func ptr[T any](v T) *T { return &v }
