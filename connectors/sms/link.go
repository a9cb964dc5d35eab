package sms

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
	"github.com/bubbled/bubbled/fallback"
)

// DefaultLineRetry is the Line's own retry policy, apart from the outbox's
// (Config.MaxAttempts, RetryBase, RetryMax): handing the durable mailboxes
// (inbound messages, outcomes, calls) to the bridge, reopening a lost
// port, and, as Initial, the short pause after a database or modem
// hiccup. Handovers retry until they succeed, so Attempts is not used.
var DefaultLineRetry = fallback.RetryPolicy{Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: -1}

// link is what the concerns of a Line share: configuration, store, clocks,
// logger, the current AT session and the connection state. The run loop
// (run.go) is the only goroutine that replaces the session; the others take
// it with current and wait for a state change on changed.
type link struct {
	cfg   Config
	log   *zap.Logger
	store *store
	// clock is Config.Clock: the outbox's timing, the watchdog, times
	// recorded in the store.
	clock fallback.Clock
	// after waits on the system clock: pauses on the modem's and the
	// database's timescale, which a fake clock does not drive.
	after func(time.Duration) <-chan time.Time
	// retry is DefaultLineRetry (tests shorten it before Open).
	retry fallback.RetryPolicy
	// notify wakes the run loop when the session queued an indication.
	notify func()

	mu       sync.Mutex  // guards the fields below
	m        *at.Session // current session; replaced by the run loop on reconnect
	state    State
	stateSig chan struct{} // closed and replaced on every state change: a broadcast
	closed   bool
	pin      string // the PIN the SIM accepted, to re-enter after a replug
	pinTried bool   // cfg.PIN was tried (never auto-enter a rejected PIN twice)
	pduMode  bool   // AT+CMGF=0 accepted on the current session
}

// current returns the open session or ErrNotOpen.
func (k *link) current() (*at.Session, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, ErrClosed
	}
	if k.m == nil {
		return nil, ErrNotOpen
	}
	return k.m, nil
}

// install makes m the current session; when the Line closed meanwhile it
// closes m instead and reports false.
func (k *link) install(m *at.Session) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		_ = m.Close()
		return false
	}
	k.m = m
	return true
}

func (k *link) isClosed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

func (k *link) currentState() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

func (k *link) setState(s State, err error) {
	k.mu.Lock()
	changed := k.state != s || s == StateRecovering
	k.state = s
	if changed {
		close(k.stateSig)
		k.stateSig = make(chan struct{})
	}
	k.mu.Unlock()
	if changed && k.cfg.OnStateChange != nil {
		k.cfg.OnStateChange(s, err)
	}
}

// broadcast wakes goroutines waiting for the modem (e.g. after the PIN).
func (k *link) broadcast() {
	k.mu.Lock()
	close(k.stateSig)
	k.stateSig = make(chan struct{})
	k.mu.Unlock()
}

// readiness returns the session, the state, the channel closed at its next
// change, whether PDU mode is on and whether the Line closed, at once.
func (k *link) readiness() (*at.Session, State, <-chan struct{}, bool, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m, k.state, k.stateSig, k.pduMode, k.closed
}

// changed returns a channel closed at the next state change.
func (k *link) changed() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stateSig
}

// pause waits the short pause of the Line's retry policy; false when ctx
// ended first.
func (k *link) pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-k.after(k.retry.Initial):
		return true
	}
}

// keepBad stores an unusable PDU so it can be deleted from the modem; it
// reports whether that worked.
func (k *link) keepBad(ctx context.Context, source string, idx int, hexPDU, reason string) bool {
	if err := k.store.saveBad(ctx, source, idx, hexPDU, reason); err != nil {
		k.log.Error("failed to store unusable PDU; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
		return false
	}
	return true
}

// loop owns the goroutines of one concern and is their one stop path:
// start runs a goroutine on the loop's context (made from the first
// parent given), stop cancels that context and waits for all of them.
// After stop, start runs nothing.
type loop struct {
	mu     sync.Mutex // guards ctx and cancel
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start runs fn in a goroutine and reports whether it did.
func (lp *loop) start(parent context.Context, fn func(context.Context)) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.ctx == nil {
		lp.ctx, lp.cancel = context.WithCancel(parent)
	}
	if lp.ctx.Err() != nil {
		return false
	}
	lp.wg.Add(1)
	go func() {
		defer lp.wg.Done()
		fn(lp.ctx)
	}()
	return true
}

// stop cancels the loop's goroutines and waits for them.
func (lp *loop) stop() {
	lp.mu.Lock()
	if lp.cancel == nil {
		lp.ctx, lp.cancel = context.WithCancel(context.Background())
	}
	lp.cancel()
	lp.mu.Unlock()
	lp.wg.Wait()
}

// wake sends a non-blocking kick: a kick already pending covers this one.
func wake(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}
