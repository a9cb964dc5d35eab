package bridge

import (
	"context"
	"path/filepath"
	"testing"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap/zaptest"
)

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:29340":   "127.0.0.1:29340",
		":29340":          "127.0.0.1:29340",
		"[::]:29340":      "[::1]:29340",
		"127.0.0.1:29340": "127.0.0.1:29340",
		"bridge:29340":    "bridge:29340",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestJournalUpgradeKeepsOldTable: a database where the journal table was
// made before the journal had versioned upgrades keeps the table and its
// events, and the upgrade can run again on every start.
func TestJournalUpgradeKeepsOldTable(t *testing.T) {
	ctx := context.Background()
	db, err := dbutil.NewWithDialect("file:"+filepath.Join(t.TempDir(), "journal.db")+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := journalV1(ctx, db); err != nil { // what NewJournal used to run at start
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO bubbled_as_event (event_id, body, received_at) VALUES ('$old', '{}', 1)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := NewJournal(ctx, db, zaptest.NewLogger(t)); err != nil {
			t.Fatalf("NewJournal #%d: %v", i+1, err)
		}
	}
	var version, events int
	if err := db.QueryRow(ctx, `SELECT version FROM `+journalVersionTable).Scan(&version); err != nil || version != 1 {
		t.Fatalf("journal schema version = %d, %v; want 1", version, err)
	}
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_as_event WHERE handled_at IS NULL`).Scan(&events); err != nil || events != 1 {
		t.Fatalf("unhandled events after the upgrade = %d, %v; want the old one", events, err)
	}
}
