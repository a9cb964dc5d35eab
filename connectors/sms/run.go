package sms

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
)

// staleCheckInterval is how often incomplete concatenations are checked
// against Config.ReassemblyTimeout.
const staleCheckInterval = 10 * time.Minute

// staleCheck is how often incomplete messages are checked: every
// staleCheckInterval, or a quarter of a shorter reassembly timeout (at
// least every second), so a message waits at most 1.25 timeouts.
func staleCheck(timeout time.Duration) time.Duration {
	return max(min(staleCheckInterval, timeout/4), time.Second)
}

// run is the Line's run loop, started by Open and ended by Close: the only
// goroutine that uses the session for reception, so receive processing is
// strictly sequential. It dispatches each unsolicited result code to its
// concern, and runs care (watchdog, recovery ladder, reconnect), which may
// replace the session.
func (l *Line) run(ctx context.Context, m *at.Session) {
	defer l.wg.Done()
	stale := time.NewTicker(staleCheck(l.cfg.ReassemblyTimeout))
	defer stale.Stop()
	wd := l.care.watchdogTimer()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Closed():
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("lost the modem port")
			l.setState(StateDisconnected, ErrClosed)
			m = l.care.reconnect(ctx)
		case req := <-l.startReq:
			req.reply <- l.setupReceive(req.ctx, m)
		case <-l.urcs:
			for lines := m.NextURC(); lines != nil; lines = m.NextURC() {
				l.dispatch(ctx, m, lines)
			}
		case <-stale.C:
			l.in.flushStale(ctx)
		case cause := <-l.care.recoverReq:
			m = l.care.recover(ctx, m, cause)
		case <-wd:
			m = l.care.watchdog(ctx, m)
			wd = l.care.watchdogTimer()
		}
		if m == nil {
			return // the Line closed while care replaced the session
		}
	}
}

// dispatch hands one unsolicited result code with its trailing lines to
// the concern it belongs to. Status reports reach the outbox through the
// inbox, which reads and acknowledges them like any received PDU.
func (l *Line) dispatch(ctx context.Context, m *at.Session, lines []string) {
	head := lines[0]
	switch {
	case strings.HasPrefix(head, "+CMTI:"), strings.HasPrefix(head, "+CDSI:"):
		l.in.handleIndication(ctx, m, head)
	case strings.HasPrefix(head, "+CMT:"), strings.HasPrefix(head, "+CDS:"):
		l.in.handleDirect(ctx, m, lines)
	case strings.HasPrefix(head, "+CUSD:"):
		l.ex.handleCUSD(ctx, m, head)
	case head == "RING", strings.HasPrefix(head, "+CLIP:"):
		l.ex.handleRing(ctx, m, head)
	default:
		l.log.Debug("ignored unsolicited line", zap.String("line", head))
	}
}

// setupReceive configures reception on m and drains the storage: the
// inbox's settings, caller ID for the extras, pruning of old bookkeeping.
func (l *Line) setupReceive(ctx context.Context, m *at.Session) error {
	if err := l.ensurePDU(ctx, m); err != nil {
		return err
	}
	l.in.prune(ctx)
	l.out.prune(ctx)
	if err := l.in.configure(ctx, m); err != nil {
		return err
	}
	l.ex.enableCallerID(ctx, m)
	l.in.drain(ctx, m)
	l.in.flushStale(ctx)
	return nil
}

// afterReopen sets reception up again on a freshly opened session when the
// Line was receiving; care calls it on the run loop.
func (l *Line) afterReopen(ctx context.Context, m *at.Session) {
	if !l.in.isReceiving() {
		return
	}
	if err := l.setupReceive(ctx, m); err != nil {
		l.log.Warn("failed to set up reception after reopening the modem", zap.Error(err))
	}
}
