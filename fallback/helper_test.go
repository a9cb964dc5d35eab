package fallback_test

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	bobNumber = "+15551230001" // on Matrix as @bob:example.org
	carol     = "+15551230002" // not on Matrix
	bob       = "@bob:example.org"
)

// env is a Router wired to fakes.
type env struct {
	r     *fallback.Router
	clock *fallbacktest.Clock
	sleep *fallbacktest.Sleeper
	dir   *fallbacktest.Directory
	note  *fallbacktest.Notifier
	tr    map[fallback.Route]*fallbacktest.Transport
}

// newEnv builds a Router with fake transports for routes (all three when
// nil), a directory that knows bob, a fake clock and a recording sleeper.
// edit may change the options before New.
func newEnv(t testing.TB, routes []fallback.Route, edit func(*fallback.Options)) *env {
	t.Helper()
	if routes == nil {
		routes = fallback.DefaultOrder()
	}
	e := &env{
		clock: fallbacktest.NewClock(t0),
		dir:   fallbacktest.NewDirectory(),
		note:  &fallbacktest.Notifier{},
		tr:    make(map[fallback.Route]*fallbacktest.Transport),
	}
	e.sleep = &fallbacktest.Sleeper{}
	e.dir.Set(bobNumber, bob, "static", t0)
	opts := fallback.Options{
		Directory:      e.dir,
		Notifier:       e.note,
		ConfirmTimeout: fallback.DefaultConfirmTimeout,
		Clock:          e.clock,
		Sleep:          e.sleep.Sleep,
		Random:         func() float64 { return 0.5 }, // no jitter: delays are exact
	}
	if tb, ok := t.(*testing.T); ok {
		opts.Log = zaptest.NewLogger(tb)
	}
	for _, rt := range routes {
		tr := fallbacktest.NewTransport(rt)
		e.tr[rt] = tr
		opts.Transports = append(opts.Transports, tr)
	}
	if edit != nil {
		edit(&opts)
	}
	r, err := fallback.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	e.r = r
	return e
}

// sent returns how many messages each route's transport took.
func (e *env) sent() map[fallback.Route]int {
	m := make(map[fallback.Route]int)
	for rt, tr := range e.tr {
		if n := len(tr.Sent()); n > 0 {
			m[rt] = n
		}
	}
	return m
}

var msgSeq int

// msg returns a new message to number in conversation "conv-<number>".
func msg(to string) *fallback.Message {
	msgSeq++
	return &fallback.Message{
		ID:           fmt.Sprintf("$ev%d", msgSeq),
		Conversation: "conv-" + to,
		To:           to,
		Text:         "hello",
	}
}

// temporaryErr is a transport error that says it is temporary, like the
// SMS line's *CMSError 38.
type temporaryErr struct{ code int }

func (e temporaryErr) Error() string   { return fmt.Sprintf("+CMS ERROR: %d", e.code) }
func (e temporaryErr) Temporary() bool { return e.code == 38 || e.code == 42 }

// retryAfterErr asks for a delay before the retry, like HTTP 429.
type retryAfterErr struct{ d time.Duration }

func (e retryAfterErr) Error() string             { return "429 too many requests" }
func (e retryAfterErr) Temporary() bool           { return true }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }
