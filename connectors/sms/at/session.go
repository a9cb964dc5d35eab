package at

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	wat "github.com/warthog618/modem/at"
	"go.uber.org/zap"
)

// escGuardTime is how long at waits after an ESC before the next command,
// draining whatever the modem says meanwhile.
const escGuardTime = 100 * time.Millisecond

// ProbeTimeout bounds the bare "AT" probe used to resynchronise after a
// timeout; callers use it for their own liveness probes too.
const ProbeTimeout = 2 * time.Second

// Options configures a Session.
type Options struct {
	// Timeout is the default per-command timeout (a command given a
	// timeout <= 0 uses it).
	Timeout time.Duration
	// Indications maps the unsolicited result code prefixes the caller
	// handles ("+CMTI:", "RING", ...) to the number of trailing lines each
	// carries (1 for the PDU line of +CMT and +CDS).
	Indications map[string]int
	// Notify is called, from at's goroutines in no particular order,
	// after each indication; the lines then wait in wire order in
	// NextURC. It must not block. Nil means nobody is told.
	Notify func()
	// Log receives debug traces of commands and the guard's decisions;
	// nil means none.
	Log *zap.Logger
}

// Session is one open port with its AT engine: the port, the guard that
// fixes upstream bug 4, and warthog618's at.AT. It is replaced as a whole
// when the port is reopened.
//
// All commands go through Command and SMSCommand, which hold mu: one
// command at a time, so the guard's sequence numbers identify the command
// in flight. Methods are safe for concurrent use.
type Session struct {
	port    io.ReadWriteCloser
	guard   *guard
	at      *wat.AT
	log     *zap.Logger
	timeout time.Duration // default per-command timeout

	mu sync.Mutex
}

// New wraps an open port (see OpenPort) and starts at's three goroutines
// (line reader, indication loop, command loop); they stop when the port is
// closed (Close, or EOF/error from the port). New does no I/O itself.
func New(port io.ReadWriteCloser, o Options) *Session {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	notify := o.Notify
	if notify == nil {
		notify = func() {}
	}
	g := newGuard(port, log, o.Indications)
	opts := []wat.Option{
		wat.WithTimeout(o.Timeout),
		wat.WithEscTime(escGuardTime),
	}
	for prefix, trailing := range o.Indications {
		opts = append(opts, wat.WithIndication(prefix, func([]string) { notify() }, wat.TrailingLinesOption(trailing)))
	}
	a := wat.New(g, opts...)
	return &Session{port: port, guard: g, at: a, log: log, timeout: o.Timeout}
}

// NextURC pops the oldest indication not handled yet (its line and its
// trailing lines), or nil.
func (s *Session) NextURC() []string { return s.guard.nextURC() }

// Closed is closed when the port reports EOF or an error, or was closed.
func (s *Session) Closed() <-chan struct{} { return s.at.Closed() }

// Close closes the port; at's goroutines then stop and Closed fires.
func (s *Session) Close() error { return s.port.Close() }

// Escape sends ESC to abort an SMS input left pending by a previous user of
// the port; the modem's answer, if any, is drained by at.
func (s *Session) Escape() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at.Escape('\r', '\n')
}

// Command runs AT<cmd> and returns its info lines without unsolicited
// result codes (upstream bug 3 appends a matching URC to the info of the
// command in flight). timeout <= 0 uses the default; ctx's deadline
// shortens it. A command already written cannot be aborted: ctx only
// shortens the timeout, and a timed-out command's late answer is dropped
// by the guard before the next command runs. Errors wrap ErrTimeout,
// ErrClosed, ErrUnresponsive, *CMSError or *CMEError.
func (s *Session) Command(ctx context.Context, cmd string, timeout time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resync(ctx); err != nil {
		return nil, fmt.Errorf("AT%s: %w", Redact(cmd), err)
	}
	d, err := s.deadline(ctx, timeout)
	if err != nil {
		return nil, err
	}
	seq := s.guard.seq() + 1
	start := time.Now()
	info, err := s.at.Command(cmd, wat.WithTimeout(d))
	info = s.filterURCs(cmd, info)
	s.log.Debug("ran AT command", zap.String("cmd", "AT"+Redact(cmd)), zap.Strings("info", info),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if errors.Is(err, wat.ErrDeadlineExceeded) {
		s.guard.abandon(seq)
	}
	if err != nil {
		return info, fmt.Errorf("AT%s: %w", Redact(cmd), convertError(err))
	}
	return info, nil
}

// SMSCommand runs a two-step command (AT<cmd>, "> ", body Ctrl-Z). On a
// timeout it returns ErrSendUnknown when the body reached the modem, else
// ErrTimeout. With grace > 0, a timed-out command whose body reached the
// modem first waits up to grace (still holding the port, so no other
// command can be confused by the late answer) for its late reply: a late
// "+CMGS: <mr>" is credited to it (the info is returned with a nil error:
// it WAS sent) and a late "+CMS ERROR" is returned as that error (nothing
// was sent).
func (s *Session) SMSCommand(ctx context.Context, cmd, body string, timeout, grace time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resync(ctx); err != nil {
		return nil, fmt.Errorf("AT%s: %w", cmd, err)
	}
	d, err := s.deadline(ctx, timeout)
	if err != nil {
		return nil, err
	}
	seq := s.guard.seq() + 1
	start := time.Now()
	info, err := s.at.SMSCommand(cmd, body, wat.WithTimeout(d))
	info = s.filterURCs(cmd, info)
	s.log.Debug("ran AT SMS command", zap.String("cmd", "AT"+cmd), zap.Strings("info", info),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if errors.Is(err, wat.ErrDeadlineExceeded) {
		s.guard.abandon(seq)
		if s.guard.bodySent(seq) {
			if grace > 0 {
				if info, err, ok := s.awaitLate(ctx, seq, grace); ok {
					return info, err
				}
			}
			return info, fmt.Errorf("AT%s: no answer after %s: %w", cmd, d, ErrSendUnknown)
		}
		return info, fmt.Errorf("AT%s: no prompt after %s, nothing sent: %w", cmd, d, ErrTimeout)
	}
	if err != nil {
		return info, fmt.Errorf("AT%s: %w", cmd, convertError(err))
	}
	return info, nil
}

// awaitLate waits up to grace for the final result code of the abandoned
// command seq and reports what it was: ok is false when none came. Called
// with mu held.
func (s *Session) awaitLate(ctx context.Context, seq uint64, grace time.Duration) ([]string, error, bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		cmgs, final := s.guard.reply(seq)
		if final != "" {
			s.log.Info("credited a late modem reply to the timed-out command", zap.String("final", final), zap.String("cmgs", cmgs))
			if final == "OK" {
				var info []string
				if cmgs != "" {
					info = []string{cmgs}
				}
				return info, nil, true
			}
			return nil, lateError(final), true
		}
		_, drained := s.guard.owed()
		select {
		case <-drained:
			// The final was dropped by the guard and recorded: look again.
			if _, f := s.guard.reply(seq); f == "" {
				return nil, nil, false
			}
		case <-ctx.Done():
			return nil, nil, false
		case <-s.Closed():
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
func (s *Session) deadline(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if timeout <= 0 {
		timeout = s.timeout
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
func (s *Session) resync(ctx context.Context) error {
	n, drained := s.guard.owed()
	if n == 0 {
		return nil
	}
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.Closed():
		return ErrClosed
	case <-t.C:
	}
	s.log.Warn("gave up waiting for the late reply of an abandoned command; probing the modem", zap.Int("owed", n))
	s.guard.forgive()
	seq := s.guard.seq() + 1
	info, err := s.at.Command("", wat.WithTimeout(min(s.timeout, ProbeTimeout)))
	var cms wat.CMSError
	var cme wat.CMEError
	switch {
	case errors.Is(err, wat.ErrDeadlineExceeded):
		s.guard.abandon(seq)
		return ErrUnresponsive
	case errors.As(err, &cms), errors.As(err, &cme), err == nil && len(s.filterURCs("", info)) > 0:
		// "AT" answers a bare OK: an error or information text is the late
		// reply of the forgiven command, read in place of the probe's
		// answer, which is still coming and must be dropped.
		logged := make([]string, len(info))
		for i, l := range info {
			logged[i] = LogLine(l)
		}
		s.log.Info("read a late reply in place of the resynchronisation probe", zap.Strings("info", logged), zap.Error(err))
		s.guard.owe(seq)
		return nil
	case err != nil:
		return convertError(err)
	}
	return nil
}

// filterURCs removes unsolicited result codes that leaked into a command's
// info (upstream bug 3), unless the command itself answers with that prefix
// (AT+CREG? answers "+CREG: ..."). Trailing PDU lines of +CMT/+CDS never
// leak: at's indication loop consumes them.
func (s *Session) filterURCs(cmd string, info []string) []string {
	id := cmd
	if i := strings.IndexAny(id, "=?"); i >= 0 {
		id = id[:i]
	}
	out := info[:0:0]
	for _, line := range info {
		if p := s.guard.urcPrefix(line); p != "" && !strings.HasPrefix(line, id+":") {
			continue
		}
		out = append(out, line)
	}
	return out
}
