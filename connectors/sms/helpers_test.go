package sms

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/fallback"
)

// testDB opens a fresh SQLite database with the SMS tables.
func testDB(t testing.TB) *dbutil.Database {
	t.Helper()
	return openDB(t, filepath.Join(t.TempDir(), "bubbled.db"))
}

func openDB(t testing.TB, path string) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	// One connection surfaces any query that escapes its transaction as a
	// deadlock instead of a flaky success.
	db.RawDB.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if err := Upgrade(context.Background(), db); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return db
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLog(t testing.TB) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
	}
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// recorder is a fake Handler: it records delivered messages and can fail a
// number of times first.
type recorder struct {
	mu    sync.Mutex
	msgs  []*Message
	calls int
	fail  int // fail this many calls first
	ch    chan *Message
}

func newRecorder() *recorder { return &recorder{ch: make(chan *Message, 100)} }

func (r *recorder) handle(_ context.Context, m *Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail > 0 {
		r.fail--
		return errors.New("bridge not ready")
	}
	r.msgs = append(r.msgs, m)
	r.ch <- m
	return nil
}

func (r *recorder) delivered() []*Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Message(nil), r.msgs...)
}

func (r *recorder) wait(t testing.TB, ctx context.Context) *Message {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-ctx.Done():
		t.Fatalf("no message delivered: %v", ctx.Err())
		return nil
	}
}

// expectNone checks that nothing more is delivered within d.
func (r *recorder) expectNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-r.ch:
		t.Fatalf("unexpected delivery: %+v", m)
	case <-time.After(d):
	}
}

// simLine starts a simulator and a Line on it (opened, not receiving).
type simLine struct {
	sim  *modemsim.Sim
	line *Line
	rec  *recorder
	db   *dbutil.Database
	cfg  Config
}

func startSim(t testing.TB, opts modemsim.Options) *modemsim.Sim {
	t.Helper()
	sim, err := modemsim.Start(opts)
	if err != nil {
		t.Fatalf("start modem simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

func newSimLine(t testing.TB, opts modemsim.Options, cfg Config) *simLine {
	t.Helper()
	sim := startSim(t, opts)
	if cfg.ID == "" {
		cfg.ID = "line1"
	}
	if cfg.Device == "" {
		cfg.Device = sim.Path()
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 2 * time.Second
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 5 * time.Second
	}
	s := &simLine{sim: sim, db: testDB(t), cfg: cfg}
	s.line, s.rec = openLine(t, s.db, cfg, 0)
	return s
}

// openLine opens a Line on db with a fresh recorder failing fail times.
func openLine(t testing.TB, db *dbutil.Database, cfg Config, fail int) (*Line, *recorder) {
	t.Helper()
	rec := newRecorder()
	rec.fail = fail
	l := NewLine(cfg, db, testLog(t), rec.handle)
	l.retry = fastRetry
	if err := l.Open(testCtx(t)); err != nil {
		t.Fatalf("open line: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, rec
}

// fastRetry is the Line's retry policy in tests: 10 ms doubling to 50 ms.
var fastRetry = fallback.RetryPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2, Jitter: -1}

// eventually polls cond until it holds or the test times out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peer is the scripted pty modem of modemsim, closed with the test.
type peer struct{ *modemsim.Peer }

func startPeer(t testing.TB, script func(cmd string) string) *peer {
	t.Helper()
	p, err := modemsim.StartPeer(script)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(p.Close)
	return &peer{p}
}

func (p *peer) path() string       { return p.Path() }
func (p *peer) write(s string)     { p.Write(s) }
func (p *peer) commands() []string { return p.Commands() }

// okScript answers OK to everything, with extra answers per command.
var okScript = modemsim.OKScript

// lineOutcomes holds the outcome recorder send installs on each Line.
var lineOutcomes sync.Map // *Line -> *outcomes

// sendSeq numbers the messages send enqueues.
var sendSeq atomic.Int64

// outcomesOf returns the recorder of l's outcomes, installing it first.
func outcomesOf(l *Line) *outcomes {
	o, loaded := lineOutcomes.LoadOrStore(l, &outcomes{})
	if !loaded {
		l.out.outcomes.setHandler(o.(*outcomes).handle)
	}
	return o.(*outcomes)
}

// send texts to through l's outbox, the real path (Enqueue), and waits for
// the message's first outcome that is not Held: Sent, Failed
// or Unknown. It returns the message ID with the outcome.
func send(t testing.TB, ctx context.Context, l *Line, to, text string) (string, Outcome) {
	t.Helper()
	out := outcomesOf(l)
	id := fmt.Sprintf("$send%d", sendSeq.Add(1))
	if err := l.Enqueue(ctx, OutMessage{ID: id, To: to, Text: text}); err != nil {
		t.Fatalf("enqueue %q: %v", text, err)
	}
	for {
		for _, oc := range out.all() {
			if oc.MessageID == id && (oc.Kind == OutcomeSent || oc.Kind == OutcomeFailed || oc.Kind == OutcomeUnknown) {
				return id, oc
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no outcome for %q (have %v): %v", text, out.of(id), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// mustSend is send that expects the message sent.
func mustSend(t testing.TB, ctx context.Context, l *Line, to, text string) Outcome {
	t.Helper()
	_, oc := send(t, ctx, l, to, text)
	if oc.Kind != OutcomeSent {
		t.Fatalf("send %q: outcome %s (%s), want sent", text, oc.Kind, oc.Reason)
	}
	return oc
}
