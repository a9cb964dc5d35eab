// Package sms is the modem line of bubbled: on the AT session of package
// at (a serial port or tcp:// serial server, PDU mode), it receives SMS
// (store-and-notify +CMTI or direct +CMT, with a drain of the SIM at start),
// reassembles and persists them before acknowledging or deleting them and
// hands complete messages to a Handler (inbox); it sends SMS from a durable
// queue with pacing, status reports and outcomes (outbox); it watches and
// recovers the modem (care); and it offers USSD, missed calls and a status
// (extras). See README.md for the layout, the AT commands used and the
// device quirks handled.
package sms

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"

	"github.com/bubbled/bubbled/fallback"
)

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
	// Missing lists the parts (1-based) a concatenated message was
	// delivered without after Config.ReassemblyTimeout; the text marks
	// each gap "[part 2 of 3 missing]". Nil for complete messages.
	Missing []int
}

// Handler receives complete inbound messages, each sender's in order of
// arrival; it is called concurrently for different senders (up to
// Config.InboundLanes at once). Returning nil means the message is safely
// handed over (the Line marks it delivered and never passes it again,
// except if that mark cannot be stored); an error keeps it and retries it
// later with backoff, holding back that sender's later messages so their
// order is kept (other senders go on). ctx is cancelled when the Line
// closes.
type Handler func(ctx context.Context, m *Message) error

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

// Line is one modem with its SIM. Its methods are safe for concurrent use.
// It composes one small type per concern, each with its own goroutines and
// one stop path, all ended by Close:
//   - the run loop (run.go, started by Open) owns the AT session: it
//     dispatches unsolicited result codes to the concern they belong to,
//     reads and deletes storage, and runs care (watchdog, recovery ladder,
//     reconnect) on its own goroutine;
//   - inbox (started by StartReceiving): the delivery pump to the Handler;
//   - outbox (started by Open): the sender and the outcome pump, and short
//     re-match goroutines for early status reports;
//   - extras (started by Open): the call pump.
type Line struct {
	*link
	in   *inbox
	out  *outbox
	care *care
	ex   *extras

	// urcs wakes the run loop (its only reader) when the session queued
	// an indication; the lines wait in wire order in the session.
	urcs chan struct{}
	// startReq asks the run loop to set up reception and drain storage.
	startReq chan startRequest

	runMu  sync.Mutex // guards ctx and cancel
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run loop
}

type startRequest struct {
	ctx   context.Context
	reply chan error
}

// NewLine returns a Line for cfg that stores its state in db (run Upgrade
// first) and passes inbound messages to h. It does no I/O.
func NewLine(cfg Config, db *dbutil.Database, log *zap.Logger, h Handler) *Line {
	cfg = withDefaults(cfg)
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("line_id", cfg.ID))
	k := &link{
		cfg:      cfg,
		log:      log,
		clock:    cfg.Clock,
		after:    func(d time.Duration) <-chan time.Time { return fallback.After(fallback.SystemClock{}, d) },
		retry:    DefaultLineRetry,
		stateSig: make(chan struct{}),
	}
	k.store = &store{db: db, line: cfg.ID, now: func() time.Time { return k.clock.Now() }}
	l := &Line{link: k, urcs: make(chan struct{}, 1), startReq: make(chan startRequest)}
	k.notify = func() { wake(l.urcs) }
	l.care = newCare(k, l.afterReopen)
	l.out = newOutbox(k, l.care.requestRecovery)
	l.in = newInbox(k, h, l.out.handleReport)
	l.ex = newExtras(k)
	l.care.checkRouting = l.in.checkRouting
	return l
}

// State returns the current connection state.
func (l *Line) State() State { return l.currentState() }

// Open opens the port, resets the modem to a known state (ATZ, ATE0,
// AT+CMEE=1), enters Config.PIN if the SIM asks for it, and selects PDU
// mode (AT+CMGF=0; ErrNoPDUMode if refused). A SIM that still needs a PIN
// does not make Open fail: use PINStatus and EnterPIN. Open starts the run
// loop, which reopens the port with backoff if it is lost, the outbox's
// sender and outcome pump, and the call pump.
func (l *Line) Open(ctx context.Context) error {
	if _, err := l.current(); !errors.Is(err, ErrNotOpen) {
		if err == nil {
			return errors.New("open SMS line: already open")
		}
		return err
	}
	m, err := l.connect(ctx)
	if err != nil {
		return err
	}
	if !l.install(m) {
		return ErrClosed
	}
	l.runMu.Lock()
	// Checked under runMu: a Close from now on finds cancel and waits for
	// the run loop.
	if l.isClosed() {
		l.runMu.Unlock()
		return ErrClosed
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.out.start(l.ctx)
	l.ex.start(l.ctx)
	l.wg.Add(1)
	go l.run(l.ctx, m)
	l.runMu.Unlock()
	l.setState(StateReady, nil)
	return nil
}

// StartReceiving sets up reception (AT+CSMS=1 if supported, message storage
// via AT+CPMS, new-message indications via AT+CNMI, probing the variants
// the modem accepts), drains messages already stored (AT+CMGL=4), then
// starts the inbox's delivery pump, which passes every undelivered message
// to the Handler, oldest first. It returns once storage is drained.
func (l *Line) StartReceiving(ctx context.Context) error {
	if !l.in.delivered.hasHandler() {
		return errors.New("start receiving SMS: no Handler given to NewLine")
	}
	if _, err := l.current(); err != nil {
		return err
	}
	if !l.in.setReceiving(true) {
		return errors.New("start receiving SMS: already receiving")
	}
	l.runMu.Lock()
	lctx := l.ctx
	l.runMu.Unlock()
	req := startRequest{ctx: ctx, reply: make(chan error, 1)}
	select {
	case l.startReq <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-lctx.Done():
		return ErrClosed
	}
	var err error
	select {
	case err = <-req.reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		l.in.setReceiving(false)
		return fmt.Errorf("start receiving SMS: %w", err)
	}
	if !l.isClosed() {
		l.in.start(lctx)
	}
	return nil
}

// Receiving reports whether StartReceiving succeeded on this Line (the
// login flow starts reception early to check the line's number).
func (l *Line) Receiving() bool { return l.in.isReceiving() }

// Close stops the Line's goroutines (the run loop, then each concern's)
// and closes the port. Messages being received stay in the database or on
// the SIM and are picked up by the next StartReceiving. Close is
// idempotent.
func (l *Line) Close() error {
	l.link.mu.Lock()
	if l.closed {
		l.link.mu.Unlock()
		return nil
	}
	l.closed = true
	m := l.m
	l.link.mu.Unlock()
	l.runMu.Lock()
	cancel := l.cancel
	l.runMu.Unlock()
	if cancel != nil {
		cancel()
	}
	var err error
	if m != nil {
		err = m.Close()
	}
	l.wg.Wait()
	l.in.stop()
	l.out.stop()
	l.ex.stop()
	// The run loop may have replaced the session while we waited.
	l.link.mu.Lock()
	if l.m != nil && l.m != m {
		_ = l.m.Close()
	}
	l.link.mu.Unlock()
	l.setState(StateClosed, nil)
	return err
}

// Enqueue stores msg in the line's durable outbox; see outbox.enqueue.
// It returns once msg is committed to the database (a Queued outcome is
// recorded with it). It does no modem I/O and works before Open: the
// outbox's sender sends queued messages when the modem is ready, resuming
// after restarts where it stopped. The parts are encoded here, once, with
// their concatenation reference, so a resumed message re-sends exactly the
// same PDUs. An ID already enqueued returns nil without queueing anything.
// Errors: wrapping pdu.ErrTooLong (more than Config.MaxParts parts;
// nothing queued), ErrClosed, or a database error. Safe for concurrent use.
func (l *Line) Enqueue(ctx context.Context, msg OutMessage) error { return l.out.enqueue(ctx, msg) }

// QueueLength returns the number of messages in the outbox not sent yet.
func (l *Line) QueueLength(ctx context.Context) (int, error) { return l.store.queueLength(ctx) }

// OldestQueued returns when the oldest outbound message still queued was
// enqueued (on the line's clock), or the zero time when the queue is empty.
func (l *Line) OldestQueued(ctx context.Context) (time.Time, error) { return l.store.oldestQueued(ctx) }

// LastRecovery returns the rung that brought the modem back the last time
// it needed recovering (RecoveryNone if it never did).
func (l *Line) LastRecovery() RecoveryStep { return l.care.last() }

// Status queries the modem (AT+CPIN?, +CGMI, +CGMM, +CGMR, +CGSN, +COPS?,
// +CREG?, +CEREG?, +CSQ, +CSCA?). Commands the modem refuses leave their
// fields empty; an error is returned only when the modem is not open or
// does not answer.
func (l *Line) Status(ctx context.Context) (*ModemStatus, error) {
	return l.ex.status(ctx, l.care.last())
}

// USSD sends a USSD code such as "*100#" (AT+CUSD=1,"<code>",15) and waits
// up to Config.USSDTimeout (or until ctx ends) for the network's +CUSD
// answer, decoded per its data coding scheme (GSM 7-bit, UCS-2 hex or
// plain text). A menu that expects an answer is returned as text and its
// session closed (AT+CUSD=2). Errors: ErrUSSDTimeout, the modem's refusal,
// or the network ending the session.
func (l *Line) USSD(ctx context.Context, code string) (string, error) { return l.ex.ussd(ctx, code) }

// MissingNote says which parts of m never arrived, for the reader of an
// incomplete message ("Part 2 of 3 of this SMS never arrived; …"), or ""
// for a complete message.
func (m *Message) MissingNote() string {
	if len(m.Missing) == 0 {
		return ""
	}
	total := m.Parts + len(m.Missing)
	nums := make([]string, len(m.Missing))
	for i, n := range m.Missing {
		nums[i] = strconv.Itoa(n)
	}
	verb := "Part " + nums[0]
	if len(nums) > 1 {
		verb = "Parts " + strings.Join(nums[:len(nums)-1], ", ") + " and " + nums[len(nums)-1]
	}
	return fmt.Sprintf("%s of %d of this SMS never arrived; the text shows where. The sender may send it again.", verb, total)
}
