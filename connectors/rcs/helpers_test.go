package rcs

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/fallback"
)

// fakeClock is a fallback.Clock that records the waits asked of it and
// ends each at once, advancing its time by the wait.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) fallback.Timer {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	f()
	return firedTimer{}
}

// firedTimer is a timer that has already fired.
type firedTimer struct{}

func (firedTimer) Stop() bool { return false }

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// cancelOnSleep is a clock whose waits never end and cancel the call's
// context instead, like a shutdown arriving during a backoff.
type cancelOnSleep struct {
	fakeClock
	cancel context.CancelFunc
}

func (c *cancelOnSleep) AfterFunc(d time.Duration, f func()) fallback.Timer {
	c.cancel()
	return firedTimer{}
}

// halfJitter makes backoff deterministic: with the RCS policy's equal
// jitter, each wait is d/2 + d/4.
func halfJitter() float64 { return 0.5 }

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
}

// observedLogger tees to the test log and an observer.
func observedLogger(t testing.TB) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(zapcore.NewTee(core, testLogger(t).Core())), logs
}

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
	t.Cleanup(func() { _ = db.Close() })
	if err := Upgrade(context.Background(), db); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return db
}

func startRBMFake(t testing.TB, opts rbmfake.Options) *rbmfake.Server {
	t.Helper()
	s, err := rbmfake.Start(opts)
	if err != nil {
		t.Fatalf("start RBM fake: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func startMaaPFake(t testing.TB, opts maapfake.Options) *maapfake.Server {
	t.Helper()
	s, err := maapfake.Start(opts)
	if err != nil {
		t.Fatalf("start MaaP fake: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newTestRBM(t testing.TB, fake *rbmfake.Server, clock fallback.Clock) *RBM {
	t.Helper()
	p, err := NewRBM(RBMConfig{
		AgentID:           fake.AgentID(),
		ServiceAccountKey: fake.ServiceAccountJSON(),
		BaseURL:           fake.URL(),
		HTTPClient:        fake.Client(),
		Clock:             clock,
		Retry:             RetryPolicy{Random: halfJitter},
		Logger:            testLogger(t),
	})
	if err != nil {
		t.Fatalf("NewRBM: %v", err)
	}
	return p
}

func newTestMaaP(t testing.TB, fake *maapfake.Server, clock fallback.Clock) *MaaP {
	t.Helper()
	p, err := NewMaaP(MaaPConfig{
		BotID:        fake.BotID(),
		BaseURL:      fake.URL(),
		TokenURL:     fake.TokenURL(),
		ClientID:     fake.ClientID(),
		ClientSecret: fake.ClientSecret(),
		Clock:        clock,
		Retry:        RetryPolicy{Random: halfJitter},
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatalf("NewMaaP: %v", err)
	}
	return p
}
