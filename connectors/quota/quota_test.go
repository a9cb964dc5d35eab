package quota

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
)

func openDB(t *testing.T, path string) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := Upgrade(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestTakeLimitResetAndRestart: a budget refuses the use past its limit
// with the time it refills, refills the next calendar day, is kept apart
// from other names, and keeps its count across a new Counter on the same
// database (a restart).
func TestTakeLimitResetAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	loc := time.FixedZone("X", 2*3600)
	now := time.Date(2026, 5, 4, 22, 30, 0, 0, loc)
	clock := func() time.Time { return now }
	c := New(openDB(t, path), Options{Location: loc, Now: clock})
	for i := 0; i < 2; i++ {
		if err := c.Take(ctx, "ussd:sim0", 2); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	err := c.Take(ctx, "ussd:sim0", 2)
	var ex *ExceededError
	if !errors.As(err, &ex) || !errors.Is(err, ErrExceeded) || ex.Limit != 2 || !ex.Reset.Equal(time.Date(2026, 5, 5, 0, 0, 0, 0, loc)) {
		t.Fatalf("third use: %v, want ExceededError resetting at midnight", err)
	}
	if err := c.Take(ctx, "ussd:sim1", 2); err != nil {
		t.Fatalf("another name shares the count: %v", err)
	}

	// A restart keeps the day's count.
	c2 := New(openDB(t, path), Options{Location: loc, Now: clock})
	if err := c2.Take(ctx, "ussd:sim0", 2); !errors.Is(err, ErrExceeded) {
		t.Fatalf("after a restart: %v, want the limit to hold", err)
	}
	if n, err := c2.Used(ctx, "ussd:sim0"); err != nil || n != 2 {
		t.Fatalf("used = %d, %v; want 2", n, err)
	}
	// A returned use can be taken again.
	if err := c2.Return(ctx, "ussd:sim0"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Take(ctx, "ussd:sim0", 2); err != nil {
		t.Fatalf("after a return: %v", err)
	}
	// Next day (in the counter's zone, not UTC) the budget is full again.
	now = now.Add(90 * time.Minute)
	if err := c2.Take(ctx, "ussd:sim0", 2); err != nil {
		t.Fatalf("next day: %v", err)
	}
	// No limit counts without refusing.
	for i := 0; i < 5; i++ {
		if err := c2.Take(ctx, "rcs", 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := c2.Used(ctx, "rcs"); n != 5 {
		t.Errorf("rcs used = %d, want 5", n)
	}
}

// BenchmarkTake is one counted use (read, then upsert) on SQLite: the cost a
// USSD code or an RCS message pays for its cap.
func BenchmarkTake(b *testing.B) {
	db, err := dbutil.NewWithDialect("file:"+filepath.Join(b.TempDir(), "q.db")+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := Upgrade(ctx, db); err != nil {
		b.Fatal(err)
	}
	c := New(db, Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Take(ctx, "rcs", 0); err != nil {
			b.Fatal(err)
		}
	}
}
