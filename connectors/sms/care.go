package sms

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
	"github.com/bubbled/bubbled/fallback"
)

// DefaultWatchdogInterval is how often the watchdog checks the modem.
const DefaultWatchdogInterval = 45 * time.Second

// RecoveryStep is a rung of the recovery ladder for a modem that stopped
// answering properly, tried in this order.
type RecoveryStep int

// Rungs of the recovery ladder.
const (
	// RecoveryNone: the modem never needed recovering.
	RecoveryNone RecoveryStep = iota
	// RecoveryResync drops late replies and probes with "AT".
	RecoveryResync
	// RecoveryRadio switches the radio off and on (AT+CFUN=0, then =1;
	// =4/=1 when 0 is refused) and waits for the network.
	RecoveryRadio
	// RecoveryReopen closes and reopens the port and initialises the
	// modem again (ESC, ATZ, ...).
	RecoveryReopen
	// RecoveryWaitDevice waits for the device to reappear at its
	// configured path (e.g. /dev/serial/by-id/...) and reopens it, with
	// backoff; the state is StateDisconnected meanwhile.
	RecoveryWaitDevice
)

// String names the rung.
func (s RecoveryStep) String() string {
	switch s {
	case RecoveryNone:
		return "none"
	case RecoveryResync:
		return "resynchronise"
	case RecoveryRadio:
		return "radio off/on"
	case RecoveryReopen:
		return "reopen port"
	case RecoveryWaitDevice:
		return "wait for device"
	}
	return "RecoveryStep(" + strconv.Itoa(int(s)) + ")"
}

// RecoveryError is passed to Config.OnStateChange with StateRecovering (and
// StateDisconnected when the ladder waits for the device): Step is the rung
// being tried, Cause what made the Line start recovering.
type RecoveryError struct {
	Step  RecoveryStep
	Cause error
}

// Error implements error.
func (e *RecoveryError) Error() string {
	return fmt.Sprintf("recovering the modem (%s): %v", e.Step, e.Cause)
}

// Unwrap returns the cause.
func (e *RecoveryError) Unwrap() error { return e.Cause }

// care is the self-healing concern of a Line: the watchdog, the recovery
// ladder and reconnecting a lost port. It has no goroutine of its own: it
// runs on the run loop, because it replaces the session the loop owns;
// other goroutines reach it through requestRecovery.
type care struct {
	*link
	// reopened sets reception up again on a new session (Line.afterReopen).
	reopened func(context.Context, *at.Session)
	// checkRouting re-applies the inbox's +CNMI when the modem dropped it.
	checkRouting func(context.Context, *at.Session)
	// recoverReq asks the run loop to check the modem and climb the
	// ladder when needed.
	recoverReq chan error

	mu           sync.Mutex   // guards lastRecovery
	lastRecovery RecoveryStep // the rung that fixed the modem last
}

func newCare(k *link, reopened func(context.Context, *at.Session)) *care {
	return &care{link: k, reopened: reopened, recoverReq: make(chan error, 1)}
}

// last returns the rung that fixed the modem last.
func (c *care) last() RecoveryStep {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRecovery
}

func (c *care) setLast(s RecoveryStep) {
	c.mu.Lock()
	c.lastRecovery = s
	c.mu.Unlock()
}

// requestRecovery asks the run loop to check the modem and recover it.
// It never blocks; a request already pending covers this one.
func (c *care) requestRecovery(cause error) {
	select {
	case c.recoverReq <- cause:
	default:
	}
}

// watchdogTimer returns the channel of the next watchdog tick, or nil when
// the watchdog is off.
func (c *care) watchdogTimer() <-chan time.Time {
	if c.cfg.WatchdogInterval < 0 {
		return nil
	}
	return fallback.After(c.clock, c.cfg.WatchdogInterval)
}

// watchdog checks that the modem answers and still routes new messages
// to us the way we set it; it returns the modem to use from now on (nil
// when the Line closes).
func (c *care) watchdog(ctx context.Context, m *at.Session) *at.Session {
	if _, err := m.Command(ctx, "", at.ProbeTimeout); err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return m // the run loop sees the closed port next
		}
		return c.recover(ctx, m, fmt.Errorf("watchdog: %w", err))
	}
	c.checkRouting(ctx, m)
	return m
}

// recover climbs the recovery ladder and returns the session to use from
// now on (nil when the Line closes). It runs on the run loop.
func (c *care) recover(ctx context.Context, m *at.Session, cause error) *at.Session {
	c.log.Warn("checking the modem after a failure", zap.Error(cause))
	c.step(RecoveryResync, StateRecovering, cause)
	err := c.healthy(ctx, m, true)
	if err == nil {
		return c.recovered(ctx, RecoveryResync, m)
	}
	if ctx.Err() != nil {
		return nil
	}
	c.log.Warn("failed to recover modem by resynchronising", zap.Error(err))
	if !errors.Is(err, ErrClosed) {
		nm, err := c.radioOrReopen(ctx, m, cause)
		if nm != nil || err == nil {
			return nm
		}
	}
	_ = m.Close()
	c.step(RecoveryWaitDevice, StateDisconnected, cause)
	nm := c.reconnect(ctx)
	if nm != nil {
		c.setLast(RecoveryWaitDevice)
	}
	return nm
}

// radioOrReopen tries rungs 2 and 3. It returns the session that works, or
// nil with a nil error when the Line closed, or nil with the last error.
func (c *care) radioOrReopen(ctx context.Context, m *at.Session, cause error) (*at.Session, error) {
	c.step(RecoveryRadio, StateRecovering, cause)
	err := c.cycleRadio(ctx, m)
	if err == nil {
		return c.recovered(ctx, RecoveryRadio, m), nil
	}
	if ctx.Err() != nil {
		return nil, nil
	}
	c.log.Warn("failed to recover modem by switching the radio off and on", zap.Error(err))

	c.step(RecoveryReopen, StateRecovering, cause)
	_ = m.Close()
	nm, err := c.connect(ctx)
	if err == nil {
		if err = c.healthy(ctx, nm, false); err == nil {
			if !c.install(nm) {
				return nil, nil
			}
			c.reopened(ctx, nm)
			return c.recovered(ctx, RecoveryReopen, nm), nil
		}
		_ = nm.Close()
	}
	if ctx.Err() != nil {
		return nil, nil
	}
	c.log.Warn("failed to recover modem by reopening its port", zap.Error(err))
	return nil, err
}

// step reports the rung being tried.
func (c *care) step(s RecoveryStep, st State, cause error) {
	c.log.Warn("recovering modem", zap.Stringer("rung", s), zap.Error(cause))
	c.setState(st, &RecoveryError{Step: s, Cause: cause})
}

// recovered records the rung that worked and makes the line ready.
func (c *care) recovered(ctx context.Context, s RecoveryStep, m *at.Session) *at.Session {
	c.setLast(s)
	c.log.Info("recovered modem", zap.Stringer("rung", s))
	c.checkRouting(ctx, m)
	c.setState(StateReady, nil)
	return m
}

// reconnect reopens the port with the Line's retry policy until it works
// or ctx ends (nil then).
func (c *care) reconnect(ctx context.Context) *at.Session {
	for attempt := 1; ; attempt++ {
		delay := c.retry.Delay(attempt, 0)
		select {
		case <-ctx.Done():
			return nil
		case <-c.after(delay):
		}
		m, err := c.connect(ctx)
		if err == nil {
			if !c.install(m) {
				return nil
			}
			c.reopened(ctx, m)
			c.log.Info("reopened modem", zap.Int("attempt", attempt))
			c.setState(StateReady, nil)
			return m
		}
		c.log.Warn("failed to reopen modem", zap.Int("attempt", attempt), zap.Duration("retry_in", c.retry.Delay(attempt+1, 0)), zap.Error(err))
	}
}

// healthy probes the modem: it answers "AT", and when net is set and the
// SIM is ready, it is registered with a network (+CREG?/+CEREG? stat 1 or
// 5; a modem without those commands counts as registered).
func (c *care) healthy(ctx context.Context, m *at.Session, net bool) error {
	if _, err := m.Command(ctx, "", at.ProbeTimeout); err != nil {
		return err
	}
	if !net {
		return nil
	}
	if st, err := c.pinStatus(ctx, m); err != nil || st != "READY" {
		return nil
	}
	reg, known := registration(ctx, m)
	if !known || reg == 1 || reg == 5 {
		return nil
	}
	return fmt.Errorf("not registered with a network (%s)", regName(reg))
}

// registration reads the registration state from +CREG? then +CEREG?.
func registration(ctx context.Context, m *at.Session) (int, bool) {
	best, known := 0, false
	for _, cmd := range []string{"+CREG?", "+CEREG?"} {
		info, err := m.Command(ctx, cmd, 0)
		if err != nil {
			continue
		}
		for _, line := range info {
			i := strings.IndexByte(line, ':')
			if i < 0 {
				continue
			}
			p := at.SplitParams(line[i+1:])
			if len(p) < 2 {
				continue
			}
			if st, err := strconv.Atoi(p[1]); err == nil {
				known = true
				if st == 1 || st == 5 {
					return st, true
				}
				best = st
			}
		}
	}
	return best, known
}

// cycleRadio switches the radio off and on and waits for registration.
func (c *care) cycleRadio(ctx context.Context, m *at.Session) error {
	if _, err := m.Command(ctx, "+CFUN=0", max(c.cfg.CommandTimeout, 15*time.Second)); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresponsive) || ctx.Err() != nil {
			return err
		}
		if _, err := m.Command(ctx, "+CFUN=4", max(c.cfg.CommandTimeout, 15*time.Second)); err != nil {
			return fmt.Errorf("switch the radio off: %w", err)
		}
	}
	if _, err := m.Command(ctx, "+CFUN=1", max(c.cfg.CommandTimeout, 15*time.Second)); err != nil {
		return fmt.Errorf("switch the radio on: %w", err)
	}
	var err error
	for i := 0; i < 20; i++ {
		if err = c.healthy(ctx, m, true); err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresponsive) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.after(c.retry.Initial):
		}
	}
	return err
}

// regName words a +CREG stat value.
func regName(st int) string {
	switch st {
	case 0:
		return "not registered, not searching"
	case 1:
		return "home network"
	case 2:
		return "searching"
	case 3:
		return "registration denied"
	case 5:
		return "roaming"
	}
	return "unknown"
}
