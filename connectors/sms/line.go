// Package sms is the modem line of bubbled: it opens a GSM modem (serial
// port or tcp:// serial server), drives it with AT commands in PDU mode
// through github.com/warthog618/modem/at, receives SMS (store-and-notify
// +CMTI or direct +CMT, with a drain of the SIM at start), reassembles and
// persists them before acknowledging or deleting them, hands complete
// messages to a Handler, and sends SMS (concatenated when long) with a
// persisted concatenation reference counter. See README.md for the AT
// commands used and the device quirks and upstream bugs handled.
package sms

import (
	"context"
	"errors"
	"fmt"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"
)

// Defaults applied by NewLine to zero Config fields.
const (
	// DefaultBaud is the serial speed used when Config.Baud is 0.
	DefaultBaud = 115200
	// DefaultCommandTimeout bounds ordinary AT commands.
	DefaultCommandTimeout = 10 * time.Second
	// DefaultSendTimeout bounds one AT+CMGS part (modem manuals allow up
	// to 120 s, decided by the network).
	DefaultSendTimeout = 120 * time.Second
)

// Config describes one modem line. Zero durations and Baud take the Default*
// values; MaxParts 0 means no limit on the number of parts of a message.
type Config struct {
	// ID names the line in the database and in message IDs; it must stay
	// the same across restarts (e.g. the login ID).
	ID string
	// Device is a serial device (prefer a stable /dev/serial/by-id/ path)
	// or tcp://host:port for a serial server such as ser2net.
	Device string
	// Baud is the serial speed (ignored for tcp://); default 115200.
	Baud int
	// PIN is entered once at Open when the SIM asks for it; never logged.
	PIN string
	// OwnNumber overrides what AT+CNUM says (many SIMs do not know it).
	OwnNumber string
	// CommandTimeout bounds each ordinary AT command; default 10 s.
	CommandTimeout time.Duration
	// SendTimeout bounds each AT+CMGS part; default 120 s (networks are slow).
	SendTimeout time.Duration
	// MaxParts limits the parts of one outbound message; 0 = no limit.
	MaxParts int
	// StatusReports asks the network for delivery reports (TP-SRR) and
	// routes them to the line (+CNMI <ds>=1).
	StatusReports bool
	// ReassemblyTimeout is how long an incomplete concatenated message waits
	// for its missing parts before it is delivered with gaps marked "[…]";
	// default 24 h.
	ReassemblyTimeout time.Duration
	// OnStateChange, if set, is called on every state change with the
	// error that caused it (nil for normal transitions). It runs on the
	// Line's goroutines and must not block or call back into the Line.
	// StateRecovering is reported once per rung of the recovery ladder,
	// with a *RecoveryError naming the rung.
	OnStateChange func(State, error)

	// OnOutcome receives the outcomes of enqueued messages (see
	// OutcomeHandler); it may also be set later with SetOutcomeHandler.
	OnOutcome OutcomeHandler
	// OnCall receives incoming calls (see CallHandler); nil keeps them in
	// the database until one is set with SetCallHandler. Calls are hung up
	// either way.
	OnCall CallHandler
	// MaxAttempts bounds the tries of a message refused with temporary
	// +CMS errors; default DefaultMaxAttempts.
	MaxAttempts int
	// RetryBase is the first retry delay after a temporary refusal,
	// doubled per try with ±20 % jitter; default DefaultRetryBase.
	RetryBase time.Duration
	// RetryMax caps the retry delay; default DefaultRetryMax.
	RetryMax time.Duration
	// LateReplyGrace is how long a timed-out AT+CMGS whose PDU reached the
	// modem may still be answered (and credited) before the message is
	// declared unknown; default DefaultLateReplyGrace.
	LateReplyGrace time.Duration
	// RatePerMinute, RatePerDay and RatePerMonth cap the SMS parts the
	// line sends per rolling minute, per calendar day and per calendar
	// month (in Location); 0 = no cap.
	RatePerMinute, RatePerDay, RatePerMonth int
	// Location is the time zone of the day and month caps; default
	// time.Local.
	Location *time.Location
	// WatchdogInterval is how often the watchdog checks the modem (AT,
	// AT+CNMI?); default DefaultWatchdogInterval, negative disables it.
	WatchdogInterval time.Duration
	// USSDTimeout bounds the wait for the network's answer to USSD;
	// default DefaultUSSDTimeout.
	USSDTimeout time.Duration
	// Clock is the time source of retries, pacing and the watchdog; nil
	// means the real clock. For tests.
	Clock Clock
}

// Message is one complete inbound SMS (all parts joined).
type Message struct {
	// ID is stable across restarts: reading the same SMS twice gives the
	// same ID ("sms:<line>:<hash>").
	ID string
	// LineID is Config.ID of the receiving line.
	LineID string
	// From is the sender: "+E164" for international numbers, national
	// digits as sent, or an alphanumeric sender name.
	From string
	// Text is the decoded text of all parts.
	Text string
	// Time is the service centre time stamp of the first part (or the
	// reception time when the network gave none).
	Time time.Time
	// Parts is the number of SMS parts joined.
	Parts int
}

// Handler receives complete inbound messages in order of arrival. Returning
// nil means the message is safely handed over (the Line marks it delivered
// and never passes it again, except if that mark cannot be stored); an
// error keeps it and retries it later with backoff, holding back later
// messages so order is kept. ctx is cancelled when the Line closes.
type Handler func(ctx context.Context, m *Message) error

// SendResult describes a sent message.
type SendResult struct {
	// Parts is the number of SMS parts the modem accepted.
	Parts int
	// MRs are the TP-MR message references returned by +CMGS, one per part
	// (-1 when the modem gave none); status reports carry them.
	MRs []int
}

// State is the connection state of a Line.
type State int

// States of a Line.
const (
	// StateClosed means not opened yet, or Close was called.
	StateClosed State = iota
	// StateReady means the port is open and the modem initialised.
	StateReady
	// StateDisconnected means the port was lost; the Line reopens it with
	// backoff (the last rung of the recovery ladder: waiting for the
	// device to reappear).
	StateDisconnected
	// StateRecovering means the modem stopped answering properly and the
	// Line is climbing its recovery ladder; the error passed to
	// OnStateChange is a *RecoveryError naming the rung.
	StateRecovering
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateReady:
		return "ready"
	case StateDisconnected:
		return "disconnected"
	case StateRecovering:
		return "recovering"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Line is one modem with its SIM. Its methods are safe for concurrent use;
// commands are serialised on the port, and Send keeps the parts of one
// message together. The Line owns two goroutines: the run loop (started by
// Open: unsolicited result codes, storage reads and deletes, reconnects) and
// the delivery loop (started by StartReceiving: calls the Handler). Close
// stops both.
type Line struct {
	cfg     Config
	log     *zap.Logger
	handler Handler
	store   *store

	// Injectable for tests.
	now       func() time.Time
	after     func(time.Duration) <-chan time.Time
	retryBase time.Duration
	retryMax  time.Duration

	// sendMu serialises Send so the parts of a message are contiguous.
	sendMu sync.Mutex

	// urcs wakes the run loop (its only reader) when at reported an
	// indication; the lines wait in wire order in the modem's queue.
	urcs chan struct{}
	// startReq asks the run loop to set up reception and drain storage.
	startReq chan startRequest
	// kick wakes the delivery loop.
	kick chan struct{}

	mu        sync.Mutex  // guards the fields below
	m         *at.Session // current modem; replaced by the run loop on reconnect
	state     State
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	receiving bool
	closed    bool
	pin       string      // the PIN the SIM accepted, to re-enter after a replug
	pinTried  bool        // cfg.PIN was tried (never auto-enter a rejected PIN twice)
	pduMode   bool        // AT+CMGF=0 accepted on the current modem
	ackNeeded bool        // AT+CSMS=1 accepted: +CMT/+CDS need AT+CNMA
	mem       string      // message storage in use ("" = modem default)
	cnmi      string      // accepted AT+CNMI setting
	noCMMS    bool        // AT+CMMS=2 refused once: don't ask again
	cmmsFor   *at.Session // the modem AT+CMMS=2 was last sent to

	// stateSig is closed (and replaced) on every state change: a
	// broadcast for goroutines waiting for the modem.
	stateSig chan struct{}
	// enqueued are messages Enqueue stored since the sender last looked;
	// outKick wakes the sender (its only reader).
	enqueued  []*outMsg
	onOutcome OutcomeHandler
	onCall    CallHandler
	// ussd is the reply channel of the USSD request in flight, if any.
	ussd chan ussdReply

	clock       Clock
	outKick     chan struct{}
	outcomeKick chan struct{}
	callKick    chan struct{}
	// recoverReq asks the run loop to check the modem and climb the
	// recovery ladder when needed.
	recoverReq chan error
	// lastRecovery is the rung that fixed the modem last (for tests and
	// status).
	lastRecovery RecoveryStep
	// call is owned by the run loop.
	call callState
}

type startRequest struct {
	ctx   context.Context
	reply chan error
}

// NewLine returns a Line for cfg that stores its state in db (run Upgrade
// first) and passes inbound messages to h. It does no I/O.
func NewLine(cfg Config, db *dbutil.Database, log *zap.Logger, h Handler) *Line {
	if cfg.Baud <= 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.ReassemblyTimeout <= 0 {
		cfg.ReassemblyTimeout = 24 * time.Hour
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.LateReplyGrace <= 0 {
		cfg.LateReplyGrace = DefaultLateReplyGrace
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.WatchdogInterval == 0 {
		cfg.WatchdogInterval = DefaultWatchdogInterval
	}
	if cfg.USSDTimeout <= 0 {
		cfg.USSDTimeout = DefaultUSSDTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("line_id", cfg.ID))
	l := &Line{
		cfg:       cfg,
		log:       log,
		handler:   h,
		now:       cfg.Clock.Now,
		after:     time.After,
		retryBase: time.Second,
		retryMax:  5 * time.Minute,
		urcs:      make(chan struct{}, 1),
		startReq:  make(chan startRequest),
		kick:      make(chan struct{}, 1),

		clock:       cfg.Clock,
		onOutcome:   cfg.OnOutcome,
		onCall:      cfg.OnCall,
		stateSig:    make(chan struct{}),
		outKick:     make(chan struct{}, 1),
		outcomeKick: make(chan struct{}, 1),
		callKick:    make(chan struct{}, 1),
		recoverReq:  make(chan error, 1),
	}
	l.store = &store{db: db, line: cfg.ID, now: func() time.Time { return l.now() }}
	return l
}

// State returns the current connection state.
func (l *Line) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

func (l *Line) setState(s State, err error) {
	l.mu.Lock()
	changed := l.state != s || s == StateRecovering
	l.state = s
	if changed {
		close(l.stateSig)
		l.stateSig = make(chan struct{})
	}
	l.mu.Unlock()
	if changed && l.cfg.OnStateChange != nil {
		l.cfg.OnStateChange(s, err)
	}
}

// broadcast wakes goroutines waiting for the modem (e.g. after the PIN).
func (l *Line) broadcast() {
	l.mu.Lock()
	close(l.stateSig)
	l.stateSig = make(chan struct{})
	l.mu.Unlock()
}

// current returns the open modem or ErrNotOpen.
func (l *Line) current() (*at.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.m == nil {
		return nil, ErrNotOpen
	}
	return l.m, nil
}

// Open opens the port, resets the modem to a known state (ATZ, ATE0,
// AT+CMEE=1), enters Config.PIN if the SIM asks for it, and selects PDU
// mode (AT+CMGF=0; ErrNoPDUMode if refused). A SIM that still needs a PIN
// does not make Open fail: use PINStatus and EnterPIN. Open starts the run
// loop, which reopens the port with backoff if it is lost.
func (l *Line) Open(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.m != nil {
		l.mu.Unlock()
		return errors.New("open SMS line: already open")
	}
	l.mu.Unlock()
	m, err := l.connect(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = m.Close()
		return ErrClosed
	}
	l.m = m
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(4)
	go l.run(l.ctx, m)
	go l.sendLoop(l.ctx)
	go l.outcomeLoop(l.ctx)
	go l.callLoop(l.ctx)
	l.mu.Unlock()
	l.setState(StateReady, nil)
	return nil
}

// connect opens the port and initialises the modem.
func (l *Line) connect(ctx context.Context) (*at.Session, error) {
	port, desc, err := at.OpenPort(ctx, l.cfg.Device, l.cfg.Baud)
	if err != nil {
		return nil, err
	}
	m := at.New(port, at.Options{Timeout: l.cfg.CommandTimeout, Indications: indications, Notify: l.onURC, Log: l.log})
	if err := l.initModem(ctx, m); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("initialise modem on %s: %w", desc, err)
	}
	l.log.Info("opened modem", zap.String("device", desc))
	return m, nil
}

// indications are the unsolicited result codes the Line handles, with the
// number of trailing lines (the PDU) each carries.
var indications = map[string]int{
	"+CMTI:": 0, "+CMT:": 1, "+CDSI:": 0, "+CDS:": 1,
	"+CUSD:": 0, "RING": 0, "+CLIP:": 0,
}

// onURC is called by at's indication handlers, each in its own goroutine,
// in no particular order. It only wakes the run loop, which then pops the
// queued indications in wire order; a wake-up already pending covers this
// one too.
func (l *Line) onURC() {
	select {
	case l.urcs <- struct{}{}:
	default:
	}
}

// initModem brings a freshly opened modem to a known state.
func (l *Line) initModem(ctx context.Context, m *at.Session) error {
	m.Escape()
	// ATZ reloads the stored profile (not the factory one); everything we
	// rely on is set again below, so its errors are harmless.
	if _, err := m.Command(ctx, "Z", 0); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || ctx.Err() != nil {
			return err
		}
		l.log.Debug("ignored ATZ failure", zap.Error(err))
	}
	if _, err := m.Command(ctx, "E0", 0); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || ctx.Err() != nil {
			return err
		}
		l.log.Warn("modem refused ATE0; continuing with echo", zap.Error(err))
	}
	if _, err := m.Command(ctx, "+CMEE=1", 0); err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return err
		}
		l.log.Warn("modem refused AT+CMEE=1; errors will be plain ERROR", zap.Error(err))
	}
	l.mu.Lock()
	l.pduMode = false
	l.mu.Unlock()

	status, err := l.pinStatus(ctx, m)
	if err != nil {
		l.log.Warn("could not read SIM PIN status", zap.Error(err))
	}
	if status == "SIM PIN" {
		l.mu.Lock()
		pin, tried := l.pin, l.pinTried
		if pin == "" && l.cfg.PIN != "" && !tried {
			pin = l.cfg.PIN
			l.pinTried = true
		}
		l.mu.Unlock()
		if pin != "" {
			if err := l.enterPIN(ctx, m, pin); err != nil {
				return fmt.Errorf("enter the configured SIM PIN: %w", err)
			}
			status = "READY"
		} else {
			l.log.Warn("SIM needs a PIN; set it in the config or enter it with EnterPIN")
		}
	}
	if status == "SIM PUK" {
		l.log.Error("SIM is blocked: it needs its PUK (no PIN is tried); unblock it in a phone", zap.Error(ErrPUKRequired))
	}
	if status != "" && status != "READY" {
		l.log.Info("left SMS setup for later: SIM not ready", zap.String("sim", status))
		return nil
	}
	return l.ensurePDU(ctx, m)
}

// ensurePDU selects PDU mode once per modem.
func (l *Line) ensurePDU(ctx context.Context, m *at.Session) error {
	l.mu.Lock()
	done := l.pduMode
	l.mu.Unlock()
	if done {
		return nil
	}
	if _, err := m.Command(ctx, "+CMGF=0", 0); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || ctx.Err() != nil {
			return err
		}
		if st, perr := l.pinStatus(ctx, m); perr == nil && st != "READY" {
			return fmt.Errorf("select PDU mode: SIM not ready (%s): %w", st, err)
		}
		return fmt.Errorf("%w: %w", ErrNoPDUMode, err)
	}
	l.mu.Lock()
	l.pduMode = true
	l.mu.Unlock()
	return nil
}

// PINStatus returns the SIM state from AT+CPIN?: "READY", "SIM PIN",
// "SIM PUK", ...
func (l *Line) PINStatus(ctx context.Context) (string, error) {
	m, err := l.current()
	if err != nil {
		return "", err
	}
	return l.pinStatus(ctx, m)
}

func (l *Line) pinStatus(ctx context.Context, m *at.Session) (string, error) {
	info, err := m.Command(ctx, "+CPIN?", 0)
	if err != nil {
		if c := at.CMECode(err); c == 10 || at.CMSCode(err) == 310 {
			return "", fmt.Errorf("read SIM status: no SIM inserted: %w", err)
		}
		return "", fmt.Errorf("read SIM status: %w", err)
	}
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CPIN:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`), nil
		}
	}
	return "", errors.New("read SIM status: the modem gave no +CPIN line")
}

var pinRE = regexp.MustCompile(`^[0-9]{4,8}$`)

// EnterPIN unlocks the SIM with pin (4-8 digits) and then selects PDU mode.
// A wrong PIN returns the modem's error (usually +CME ERROR: 16); the SIM
// blocks after three wrong PINs, so callers must not retry blindly.
func (l *Line) EnterPIN(ctx context.Context, pin string) error {
	if !pinRE.MatchString(pin) {
		return errors.New("enter SIM PIN: a PIN is 4 to 8 digits")
	}
	m, err := l.current()
	if err != nil {
		return err
	}
	if st, err := l.pinStatus(ctx, m); err == nil && st == "SIM PUK" {
		return fmt.Errorf("enter SIM PIN: %w", ErrPUKRequired)
	}
	if err := l.enterPIN(ctx, m, pin); err != nil {
		if st, serr := l.pinStatus(ctx, m); serr == nil && st == "SIM PUK" {
			return fmt.Errorf("enter SIM PIN: %w: %w", ErrPUKRequired, err)
		}
		return fmt.Errorf("enter SIM PIN: %w", err)
	}
	if err := l.ensurePDU(ctx, m); err != nil {
		return err
	}
	l.broadcast()
	return nil
}

func (l *Line) enterPIN(ctx context.Context, m *at.Session, pin string) error {
	if !pinRE.MatchString(pin) {
		return errors.New("a PIN is 4 to 8 digits")
	}
	if _, err := m.Command(ctx, `+CPIN="`+pin+`"`, 0); err != nil {
		if at.CMECode(err) == 16 {
			return fmt.Errorf("the SIM rejected the PIN (check it; the SIM blocks after 3 wrong tries): %w", err)
		}
		return err
	}
	l.mu.Lock()
	l.pin = pin
	l.mu.Unlock()
	// The SIM takes a moment to become ready after the PIN.
	for i := 0; ; i++ {
		st, err := l.pinStatus(ctx, m)
		if err == nil && st == "READY" {
			l.log.Info("unlocked SIM")
			return nil
		}
		if i >= 20 {
			return fmt.Errorf("SIM not ready after the PIN (status %q): %w", st, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.after(250 * time.Millisecond):
		}
	}
}

// OwnNumber returns Config.OwnNumber if set, else the first number of
// AT+CNUM ("+E164" for international numbers), or "" when the SIM does not
// know it.
func (l *Line) OwnNumber(ctx context.Context) (string, error) {
	if l.cfg.OwnNumber != "" {
		return l.cfg.OwnNumber, nil
	}
	m, err := l.current()
	if err != nil {
		return "", err
	}
	info, err := m.Command(ctx, "+CNUM", 0)
	if err != nil {
		var cms *CMSError
		var cme *CMEError
		if errors.As(err, &cms) || errors.As(err, &cme) || at.IsPlainError(err) {
			l.log.Debug("modem does not know its own number", zap.Error(err))
			return "", nil
		}
		return "", fmt.Errorf("read own number: %w", err)
	}
	for _, line := range info {
		v, ok := strings.CutPrefix(line, "+CNUM:")
		if !ok {
			continue
		}
		p := at.SplitParams(v)
		if len(p) < 2 || p[1] == "" {
			continue
		}
		num := p[1]
		if len(p) >= 3 && p[2] == "145" && !strings.HasPrefix(num, "+") {
			num = "+" + num
		}
		return num, nil
	}
	return "", nil
}

// Close stops the Line's goroutines and closes the port. Messages being
// received stay in the database or on the SIM and are picked up by the
// next StartReceiving. Close is idempotent.
func (l *Line) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	m := l.m
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	var err error
	if m != nil {
		err = m.Close()
	}
	l.wg.Wait()
	// The run loop may have replaced the modem while we waited.
	l.mu.Lock()
	if l.m != nil && l.m != m {
		_ = l.m.Close()
	}
	l.mu.Unlock()
	l.setState(StateClosed, nil)
	return err
}
