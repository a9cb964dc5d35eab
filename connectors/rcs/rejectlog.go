package rcs

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/fallback"
)

// rejectLog keeps a flood of rejected webhook requests (a scanner, a
// misconfigured provider, an attacker) from flooding the log: the first
// rejection of an interval is logged in full, the others of that interval
// are only counted, and when the interval ends with a count one summary
// line says how many were left out and with which statuses. The interval's
// timer runs on the injected clock; Close logs what is still counted and
// stops it. Safe for concurrent use.
type rejectLog struct {
	log   *zap.Logger
	clock fallback.Clock
	every time.Duration

	mu       sync.Mutex
	open     bool           // an interval is running
	gen      int            // counts intervals, so a late timer finds it is stale
	timer    fallback.Timer // the running interval's end
	counts   map[int]int    // status -> requests left out in this interval
	lastAddr string         // remote address of the last one left out
}

func newRejectLog(log *zap.Logger, clock fallback.Clock, every time.Duration) *rejectLog {
	return &rejectLog{log: log, clock: clock, every: every, counts: map[int]int{}}
}

// allow reports whether this rejection gets its own log line; when not, it
// is counted for the interval's summary.
func (l *rejectLog) allow(status int, remoteAddr string) bool {
	l.mu.Lock()
	if l.open {
		l.counts[status]++
		l.lastAddr = remoteAddr
		l.mu.Unlock()
		return false
	}
	l.open = true
	l.gen++
	l.mu.Unlock()
	l.arm()
	return true
}

// arm starts the timer of the current interval. The clock is called
// without the lock held: a test clock may fire at once.
func (l *rejectLog) arm() {
	l.mu.Lock()
	gen := l.gen
	l.mu.Unlock()
	t := l.clock.AfterFunc(l.every, func() { l.end(gen) })
	l.mu.Lock()
	if l.open && l.gen == gen {
		l.timer = t
	}
	l.mu.Unlock()
}

// end closes interval gen: nothing left out closes the window (the next
// rejection is logged in full again); otherwise one summary line, and the
// next interval starts counting at once so a steady flood gives one line
// per interval.
func (l *rejectLog) end(gen int) {
	l.mu.Lock()
	if !l.open || l.gen != gen {
		l.mu.Unlock()
		return
	}
	total, summary, addr := l.take()
	if total == 0 {
		l.open, l.timer = false, nil
		l.mu.Unlock()
		return
	}
	l.gen++
	l.mu.Unlock()
	l.summarise(total, summary, addr)
	l.arm()
}

// take empties the counts; l.mu is held.
func (l *rejectLog) take() (total int, summary, addr string) {
	statuses := make([]int, 0, len(l.counts))
	for s, n := range l.counts {
		statuses = append(statuses, s)
		total += n
	}
	slices.Sort(statuses)
	parts := make([]string, len(statuses))
	for i, s := range statuses {
		parts[i] = fmt.Sprintf("%d×%d", l.counts[s], s)
	}
	addr = l.lastAddr
	clear(l.counts)
	l.lastAddr = ""
	return total, strings.Join(parts, " "), addr
}

func (l *rejectLog) summarise(total int, summary, addr string) {
	l.log.Warn("rejected more RCS webhook requests without logging each",
		zap.Int("count", total), zap.String("statuses", summary), zap.Duration("interval", l.every),
		zap.String("last_remote_addr", addr))
}

// Close logs the summary of the running interval, if anything was left
// out, and stops its timer. Rejections after Close start a new interval.
func (l *rejectLog) Close() {
	l.mu.Lock()
	t := l.timer
	total, summary, addr := l.take()
	l.open, l.timer = false, nil
	l.gen++
	l.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	if total > 0 {
		l.summarise(total, summary, addr)
	}
}
