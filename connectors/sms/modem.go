package sms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/warthog618/modem/at"
	"go.uber.org/zap"
)

// escGuardTime is how long at waits after an ESC before the next command,
// draining whatever the modem says meanwhile.
const escGuardTime = 100 * time.Millisecond

// probeTimeout bounds the "AT" probe used to resynchronise after a timeout.
const probeTimeout = 2 * time.Second

// modem is one open port with its AT engine: the port, the guard that fixes
// upstream bug 4, and the at.AT. It is replaced as a whole on reconnect.
//
// All commands go through command/smsCommand, which hold mu: one command at
// a time, so the guard's sequence numbers identify the command in flight.
type modem struct {
	port    io.ReadWriteCloser
	guard   *guard
	at      *at.AT
	log     *zap.Logger
	timeout time.Duration // default per-command timeout

	mu sync.Mutex
}

// indications are the unsolicited result codes the Line handles, with the
// number of trailing lines at must collect after each.
var indications = map[string]at.TrailingLinesOption{
	"+CMTI:": 0, "+CMT:": 1, "+CDSI:": 0, "+CDS:": 1,
	"+CUSD:": 0, "RING": 0, "+CLIP:": 0,
}

// newModem wraps an open port. notify is called (from at's goroutines, in
// no particular order) after each indication; the lines are then waiting
// in wire order in nextURC. notify must not block.
func newModem(port io.ReadWriteCloser, timeout time.Duration, log *zap.Logger, notify func()) *modem {
	g := newGuard(port, log)
	opts := []at.Option{
		at.WithTimeout(timeout),
		at.WithEscTime(escGuardTime),
	}
	for prefix, trailing := range indications {
		opts = append(opts, at.WithIndication(prefix, func([]string) { notify() }, trailing))
	}
	a := at.New(g, opts...)
	return &modem{port: port, guard: g, at: a, log: log, timeout: timeout}
}

// nextURC pops the oldest indication not handled yet, or nil.
func (m *modem) nextURC() []string { return m.guard.nextURC() }

// closed is closed when the port reports EOF or an error.
func (m *modem) closed() <-chan struct{} { return m.at.Closed() }

// close closes the port; at's goroutines then stop and closed() fires.
func (m *modem) close() error { return m.port.Close() }

// escape sends ESC to abort an SMS input left pending by a previous user of
// the port; the modem's answer, if any, is drained by at.
func (m *modem) escape() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.at.Escape('\r', '\n')
}

// command runs AT<cmd> and returns its info lines without unsolicited
// result codes (upstream bug 3 appends a matching URC to the info of the
// command in flight). timeout <= 0 uses the default. A command already
// written cannot be aborted: ctx only shortens the timeout.
func (m *modem) command(ctx context.Context, cmd string, timeout time.Duration) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.resync(ctx); err != nil {
		return nil, fmt.Errorf("AT%s: %w", redactLine(cmd), err)
	}
	d, err := m.deadline(ctx, timeout)
	if err != nil {
		return nil, err
	}
	seq := m.guard.seq() + 1
	start := time.Now()
	info, err := m.at.Command(cmd, at.WithTimeout(d))
	info = filterURCs(cmd, info)
	m.log.Debug("ran AT command", zap.String("cmd", "AT"+redactLine(cmd)), zap.Strings("info", info),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if errors.Is(err, at.ErrDeadlineExceeded) {
		m.guard.abandon(seq)
	}
	if err != nil {
		return info, fmt.Errorf("AT%s: %w", redactLine(cmd), convertATError(err))
	}
	return info, nil
}

// smsCommand runs a two-step command (AT<cmd>, "> ", body Ctrl-Z). On a
// timeout it returns ErrSendUnknown when the body reached the modem, else
// ErrTimeout. With grace > 0, a timed-out command whose body reached the
// modem first waits up to grace (still holding the port, so no other
// command can be confused by the late answer) for its late reply: a late
// "+CMGS: <mr>" is credited to it (the info is returned with a nil error:
// it WAS sent) and a late "+CMS ERROR" is returned as that error (nothing
// was sent).
func (m *modem) smsCommand(ctx context.Context, cmd, body string, timeout, grace time.Duration) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.resync(ctx); err != nil {
		return nil, fmt.Errorf("AT%s: %w", cmd, err)
	}
	d, err := m.deadline(ctx, timeout)
	if err != nil {
		return nil, err
	}
	seq := m.guard.seq() + 1
	start := time.Now()
	info, err := m.at.SMSCommand(cmd, body, at.WithTimeout(d))
	info = filterURCs(cmd, info)
	m.log.Debug("ran AT SMS command", zap.String("cmd", "AT"+cmd), zap.Strings("info", info),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if errors.Is(err, at.ErrDeadlineExceeded) {
		m.guard.abandon(seq)
		if m.guard.bodySent(seq) {
			if grace > 0 {
				if info, err, ok := m.awaitLate(ctx, seq, grace); ok {
					return info, err
				}
			}
			return info, fmt.Errorf("AT%s: no answer after %s: %w", cmd, d, ErrSendUnknown)
		}
		return info, fmt.Errorf("AT%s: no prompt after %s, nothing sent: %w", cmd, d, ErrTimeout)
	}
	if err != nil {
		return info, fmt.Errorf("AT%s: %w", cmd, convertATError(err))
	}
	return info, nil
}

// awaitLate waits up to grace for the final result code of the abandoned
// command seq and reports what it was: ok is false when none came. Called
// with mu held.
func (m *modem) awaitLate(ctx context.Context, seq uint64, grace time.Duration) ([]string, error, bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		cmgs, final := m.guard.reply(seq)
		if final != "" {
			m.log.Info("credited a late modem reply to the timed-out command", zap.String("final", final), zap.String("cmgs", cmgs))
			if final == "OK" {
				var info []string
				if cmgs != "" {
					info = []string{cmgs}
				}
				return info, nil, true
			}
			return nil, lateError(final), true
		}
		_, drained := m.guard.owed()
		select {
		case <-drained:
			// The final was dropped by the guard and recorded: look again.
			if _, f := m.guard.reply(seq); f == "" {
				return nil, nil, false
			}
		case <-ctx.Done():
			return nil, nil, false
		case <-m.closed():
			return nil, nil, false
		case <-t.C:
			return nil, nil, false
		}
	}
}

// lateError turns a final result code line into our error types.
func lateError(final string) error {
	switch {
	case strings.HasPrefix(final, "+CMS ERROR:"):
		code, text := parseErrorCode(strings.TrimPrefix(final, "+CMS ERROR:"))
		return &CMSError{Code: code, Text: text}
	case strings.HasPrefix(final, "+CME ERROR:"):
		code, text := parseErrorCode(strings.TrimPrefix(final, "+CME ERROR:"))
		return &CMEError{Code: code, Text: text}
	}
	return fmt.Errorf("late answer %q", final)
}

// deadline maps ctx's deadline onto the at package's per-command timeout.
func (m *modem) deadline(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if timeout <= 0 {
		timeout = m.timeout
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		if left < timeout {
			timeout = left
		}
	}
	return timeout, nil
}

// resync runs before every command while the guard still owes finals of
// abandoned commands. It first waits (up to the command timeout) for the
// late answer, which the guard drops. If none comes the modem dropped the
// command: forgive it and check with a bare "AT" that the modem answers.
// Called with mu held.
func (m *modem) resync(ctx context.Context) error {
	n, drained := m.guard.owed()
	if n == 0 {
		return nil
	}
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.closed():
		return ErrClosed
	case <-t.C:
	}
	m.log.Warn("gave up waiting for the late reply of an abandoned command; probing the modem", zap.Int("owed", n))
	m.guard.forgive()
	seq := m.guard.seq() + 1
	info, err := m.at.Command("", at.WithTimeout(min(m.timeout, probeTimeout)))
	var cms at.CMSError
	var cme at.CMEError
	switch {
	case errors.Is(err, at.ErrDeadlineExceeded):
		m.guard.abandon(seq)
		return ErrUnresponsive
	case errors.As(err, &cms), errors.As(err, &cme), err == nil && len(filterURCs("", info)) > 0:
		// "AT" answers a bare OK: an error or information text is the late
		// reply of the forgiven command, read in place of the probe's
		// answer, which is still coming and must be dropped.
		m.log.Info("read a late reply in place of the resynchronisation probe", zap.Strings("info", info), zap.Error(err))
		m.guard.owe(seq)
		return nil
	case err != nil:
		return convertATError(err)
	}
	return nil
}

// filterURCs removes unsolicited result codes that leaked into a command's
// info (upstream bug 3), unless the command itself answers with that prefix
// (AT+CREG? answers "+CREG: ..."). Trailing PDU lines of +CMT/+CDS never
// leak: at's indication loop consumes them.
func filterURCs(cmd string, info []string) []string {
	id := cmd
	if i := strings.IndexAny(id, "=?"); i >= 0 {
		id = id[:i]
	}
	out := info[:0:0]
	for _, line := range info {
		if p := urcPrefix(line); p != "" && !strings.HasPrefix(line, id+":") {
			continue
		}
		out = append(out, line)
	}
	return out
}
