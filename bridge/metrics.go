package bridge

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/sms"
)

// metrics.go wires the pure packages' hooks to package metrics and answers
// its Sources with the lines bridgev2 has loaded. Counting happens where the
// glue already sees the event (handlematrix, handleremote, client's
// stateChanged); outcome handlers run at least once, so a retried handler
// may count an outcome twice.

// radioMaxAge is how long a modem's signal and registration are reused by
// scrapes: reading them takes several AT commands the outbox would wait for.
const radioMaxAge = 30 * time.Second

// radioCache keeps the last modem status of each line for the gauges.
type radioCache struct {
	mu sync.Mutex // guards byLine
	// byLine maps a line's modem ID to its last status and when it was read.
	byLine map[string]radioEntry
}

type radioEntry struct {
	at time.Time
	st *sms.ModemStatus
}

// sendTimes remembers when the Matrix events of SMS not sent yet were
// written, for the send latency histogram: the outcome "sent" may come
// before bridgev2 has saved the message. Entries go at the final outcome; a
// restart forgets them (those messages are not timed).
type sendTimes struct{ m sync.Map } // event ID -> time.Time

func (s *sendTimes) start(eventID string, at time.Time) { s.m.Store(eventID, at) }

func (s *sendTimes) forget(eventID string) { s.m.Delete(eventID) }

// took returns how long ago eventID was written, and forgets it.
func (s *sendTimes) took(eventID string, now time.Time) (time.Duration, bool) {
	v, ok := s.m.LoadAndDelete(eventID)
	if !ok {
		return 0, false
	}
	return now.Sub(v.(time.Time)), true
}

// UseMetrics makes the connector count into m (nil: count nothing). Call it
// before the bridge starts.
func (c *Connector) UseMetrics(m *metrics.Metrics) { c.metrics = m }

// directoryObserver counts directory answers for the cache hit metric.
func (c *Connector) directoryObserver(r directory.Result, err error) {
	switch {
	case err != nil:
		c.metrics.DirectoryLookup(string(r.Source), "error")
	case r.FromCache:
		c.metrics.DirectoryLookup(string(r.Source), "hit")
	default:
		c.metrics.DirectoryLookup(string(r.Source), "miss")
	}
}

// LineStates lists every loaded line (login) with its state, queue and
// radio, for /metrics and /readyz. Lines are named by their modem ID,
// never by their number.
func (c *Connector) LineStates(ctx context.Context) []metrics.LineState {
	if c.br == nil {
		return nil
	}
	var out []metrics.LineState
	for _, login := range c.br.GetAllCachedUserLogins() {
		if ls, ok := c.lineState(ctx, login); ok {
			out = append(out, ls)
		}
	}
	return out
}

// lineState describes one login's line.
func (c *Connector) lineState(ctx context.Context, login *bridgev2.UserLogin) (metrics.LineState, bool) {
	cl, ok := login.Client.(*Client)
	if !ok {
		return metrics.LineState{}, false
	}
	ls := metrics.LineState{ID: cl.modemKey, State: sms.StateClosed.String(), QueueLength: -1, RSSI: 99,
		Problem: "the line has not opened its modem yet"}
	line := cl.currentLine()
	if line == nil {
		return ls, true
	}
	st := line.State()
	ls.State, ls.Ready = st.String(), st == sms.StateReady
	switch st {
	case sms.StateReady:
		ls.Problem = ""
	case sms.StateDisconnected:
		ls.Problem = "the modem is gone (unplugged, or the port closed); bubbled reopens it when it is back"
	case sms.StateRecovering:
		ls.Problem = "the modem stopped answering; bubbled is recovering it"
	default:
		ls.Problem = "the line is closed"
	}
	if n, err := line.QueueLength(ctx); err == nil {
		ls.QueueLength = n
		if oldest, err := line.OldestQueued(ctx); err == nil && !oldest.IsZero() {
			ls.OldestQueued = time.Since(oldest)
		}
	}
	if ms := c.radio(ctx, cl.modemKey, line, ls.Ready); ms != nil {
		ls.HaveRadio, ls.Registered, ls.SignalDBm, ls.RSSI = true, ms.Registered, ms.SignalDBm, ms.RSSI
	}
	return ls, true
}

// radio returns the line's status, read at most every radioMaxAge, and only
// from a ready modem.
func (c *Connector) radio(ctx context.Context, key string, line *sms.Line, ready bool) *sms.ModemStatus {
	c.radios.mu.Lock()
	e, ok := c.radios.byLine[key]
	c.radios.mu.Unlock()
	if ok && time.Since(e.at) < radioMaxAge || !ready {
		return e.st
	}
	st, err := line.Status(ctx)
	if err != nil {
		c.log.Debug("failed to read the modem status for metrics", zap.String("line", key), zap.Error(err))
		return e.st
	}
	c.radios.mu.Lock()
	if c.radios.byLine == nil {
		c.radios.byLine = map[string]radioEntry{}
	}
	c.radios.byLine[key] = radioEntry{at: time.Now(), st: st}
	c.radios.mu.Unlock()
	return st
}
