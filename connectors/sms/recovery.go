package sms

import (
	"context"
	"errors"
	"fmt"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
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

// LastRecovery returns the rung that brought the modem back the last time
// it needed recovering (RecoveryNone if it never did).
func (l *Line) LastRecovery() RecoveryStep {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastRecovery
}

// requestRecovery asks the run loop to check the modem and recover it.
// It never blocks; a request already pending covers this one.
func (l *Line) requestRecovery(cause error) {
	select {
	case l.recoverReq <- cause:
	default:
	}
}

// watchdogTimer returns the channel of the next watchdog tick, or nil when
// the watchdog is off.
func (l *Line) watchdogTimer() <-chan time.Time {
	if l.cfg.WatchdogInterval < 0 {
		return nil
	}
	return l.clock.After(l.cfg.WatchdogInterval)
}

// watchdog checks that the modem answers and still routes new messages
// to us the way we set it; it returns the modem to use from now on (nil
// when the Line closes).
func (l *Line) watchdog(ctx context.Context, m *at.Session) *at.Session {
	if _, err := m.Command(ctx, "", at.ProbeTimeout); err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return m // the run loop sees the closed port next
		}
		return l.recover(ctx, m, fmt.Errorf("watchdog: %w", err))
	}
	l.checkCNMI(ctx, m)
	return m
}

// checkCNMI re-applies our +CNMI setting when the modem dropped it (27.005:
// a missed +CNMA makes the modem set <mt> and <ds> to 0, silently storing
// new messages), then drains what was stored meanwhile.
func (l *Line) checkCNMI(ctx context.Context, m *at.Session) {
	l.mu.Lock()
	want, receiving := l.cnmi, l.receiving
	l.mu.Unlock()
	if !receiving || want == "" {
		return
	}
	info, err := m.Command(ctx, "+CNMI?", 0)
	if err != nil {
		l.log.Debug("failed to read AT+CNMI?", zap.Error(err))
		return
	}
	var got string
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CNMI:"); ok {
			got = strings.TrimSpace(v)
		}
	}
	if got == "" || sameRouting(got, want) {
		return
	}
	l.log.Warn("found SMS routing dropped by the modem; re-applying it", zap.String("cnmi", got), zap.String("want", want))
	if _, err := m.Command(ctx, "+CNMI="+want, 0); err != nil {
		l.log.Error("failed to re-apply AT+CNMI", zap.Error(err))
		return
	}
	l.drain(ctx, m)
}

// sameRouting compares the <mt> and <ds> fields of two +CNMI settings.
func sameRouting(got, want string) bool {
	g, w := at.SplitParams(got), at.SplitParams(want)
	if len(g) < 4 || len(w) < 4 {
		return got == want
	}
	return g[1] == w[1] && g[3] == w[3]
}

// healthy probes the modem: it answers "AT", and when net is set and the
// SIM is ready, it is registered with a network (+CREG?/+CEREG? stat 1 or
// 5; a modem without those commands counts as registered).
func (l *Line) healthy(ctx context.Context, m *at.Session, net bool) error {
	if _, err := m.Command(ctx, "", at.ProbeTimeout); err != nil {
		return err
	}
	if !net {
		return nil
	}
	if st, err := l.pinStatus(ctx, m); err != nil || st != "READY" {
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

// recover climbs the recovery ladder and returns the modem to use from now
// on (nil when the Line closes). It runs on the run loop.
func (l *Line) recover(ctx context.Context, m *at.Session, cause error) *at.Session {
	l.log.Warn("checking the modem after a failure", zap.Error(cause))
	step := func(s RecoveryStep, st State) {
		l.log.Warn("recovering modem", zap.Stringer("rung", s), zap.Error(cause))
		l.setState(st, &RecoveryError{Step: s, Cause: cause})
	}
	done := func(s RecoveryStep, m *at.Session) *at.Session {
		l.mu.Lock()
		l.lastRecovery = s
		l.mu.Unlock()
		l.log.Info("recovered modem", zap.Stringer("rung", s))
		l.checkCNMI(ctx, m)
		l.setState(StateReady, nil)
		return m
	}

	step(RecoveryResync, StateRecovering)
	err := l.healthy(ctx, m, true)
	if err == nil {
		return done(RecoveryResync, m)
	}
	if ctx.Err() != nil {
		return nil
	}
	l.log.Warn("failed to recover modem by resynchronising", zap.Error(err))

	if !errors.Is(err, ErrClosed) {
		step(RecoveryRadio, StateRecovering)
		if err = l.cycleRadio(ctx, m); err == nil {
			return done(RecoveryRadio, m)
		}
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("failed to recover modem by switching the radio off and on", zap.Error(err))

		step(RecoveryReopen, StateRecovering)
		_ = m.Close()
		nm, err := l.connect(ctx)
		if err == nil {
			err = l.healthy(ctx, nm, false)
			if err == nil {
				l.mu.Lock()
				closed := l.closed
				l.m = nm
				receiving := l.receiving
				l.mu.Unlock()
				if closed {
					_ = nm.Close()
					return nil
				}
				if receiving {
					if err := l.setupReceive(ctx, nm); err != nil {
						l.log.Warn("failed to set up reception after reopening the modem", zap.Error(err))
					}
				}
				return done(RecoveryReopen, nm)
			}
			_ = nm.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("failed to recover modem by reopening its port", zap.Error(err))
	}
	_ = m.Close()
	step(RecoveryWaitDevice, StateDisconnected)
	nm := l.reconnect(ctx)
	if nm != nil {
		l.mu.Lock()
		l.lastRecovery = RecoveryWaitDevice
		l.mu.Unlock()
	}
	return nm
}

// cycleRadio switches the radio off and on and waits for registration.
func (l *Line) cycleRadio(ctx context.Context, m *at.Session) error {
	if _, err := m.Command(ctx, "+CFUN=0", max(l.cfg.CommandTimeout, 15*time.Second)); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresponsive) || ctx.Err() != nil {
			return err
		}
		if _, err := m.Command(ctx, "+CFUN=4", max(l.cfg.CommandTimeout, 15*time.Second)); err != nil {
			return fmt.Errorf("switch the radio off: %w", err)
		}
	}
	if _, err := m.Command(ctx, "+CFUN=1", max(l.cfg.CommandTimeout, 15*time.Second)); err != nil {
		return fmt.Errorf("switch the radio on: %w", err)
	}
	var err error
	for i := 0; i < 20; i++ {
		if err = l.healthy(ctx, m, true); err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresponsive) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.after(l.retryBase):
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
